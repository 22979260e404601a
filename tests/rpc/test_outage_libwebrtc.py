"""Outages on libwebrtc: a link cut for 10 s mid-stream survives (libwebrtc's ICE consent checks
and SCTP retransmissions carry it over, or an ICE restart), and without ICE restarts one cut for
longer fails: libwebrtc's ICE turns ``failed`` about 15 s into the cut, whatever the node's
keepalive would allow, and the peer closes. A restart that cannot be signalled gives up after
``ice_restart_timeout``. Cut by every local port of one end (tests/rpc/netcut.py); the lab
(tests/lab/test_ice_restart.py) cuts whole links and changes addresses."""

from __future__ import annotations

import asyncio
import time

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from netcut import cut, link_ports, unavailable_reason
from test_outage import FOLLOW, SERVICE, Events, Feed

from p2prpc.rpc import StatusCode, UnaryStreamMethod
from p2prpc.testing import mesh, until

pytest.importorskip("webrtc.aiortc", reason="the libwebrtc transport needs wrtc (p2prpc[native])")

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.transport_only(
        "libwebrtc", reason="its nodes are on libwebrtc whatever the default"
    ),
]

#: Seconds into a cut at which libwebrtc's ICE gives up on a connection (measured: 15.2 s).
ICE_FAILS_AFTER = 15.0


async def test_a_stream_rides_out_a_ten_second_cut_on_libwebrtc() -> None:
    async with mesh(2, transport="libwebrtc") as m:
        server, client = m.nodes
        Feed(server).serve()
        await client.wait_for_server(SERVICE, 10)
        events = Events(client, server.peer_id)
        follow = UnaryStreamMethod(client, FOLLOW, StringValue, StringValue)
        call = follow(StringValue(value="600"), timeout=60)
        got = [(await call.read()).value for _ in range(100)]
        # selected_pair() names no remote address here (a peer-reflexive one): cut by ports.
        assert link_ports(client, server.peer_id)
        with cut(client, server.peer_id):
            started = time.monotonic()
            await events.wait_for("suspect", 15)
            await asyncio.sleep(10 - (time.monotonic() - started))  # the outage lasts 10 s
        async for reply in call:
            got.append(reply.value)
        assert got == [str(i) for i in range(600)]
        assert await call.code() is StatusCode.OK
        assert events.names() == ["suspect", "alive"]


async def test_libwebrtc_gives_a_cut_connection_up_about_fifteen_seconds_in() -> None:
    """With the node's keepalive off and no ICE restarts, the connection's end is libwebrtc's
    own: its ICE turns ``failed`` and the peer closes on both sides."""
    async with mesh(2, transport="libwebrtc", keepalive_interval=None, ice_restart_timeout=0) as m:
        a, b = m.nodes
        closed: dict[str, float] = {}
        a.on("peerclose", lambda pid: closed.setdefault("a", time.monotonic()))
        b.on("peerclose", lambda pid: closed.setdefault("b", time.monotonic()))
        with cut(a, b.peer_id):
            started = time.monotonic()
            await until(lambda: len(closed) == 2, (a, "peerclose"), (b, "peerclose"), timeout=40)
        for at in closed.values():
            assert ICE_FAILS_AFTER - 5 < at - started < ICE_FAILS_AFTER + 10


async def test_a_restart_that_cannot_be_signalled_gives_up_after_its_timeout() -> None:
    """No tracker left to carry the restart: the connection closes ``ice_restart_timeout``
    seconds after ICE was lost, on both sides, and the peer is told (``peerclose``)."""
    async with mesh(2, transport="libwebrtc", ice_restart_timeout=3) as m:
        a, b = m.nodes
        closed: dict[str, float] = {}
        a.on("peerclose", lambda pid: closed.setdefault("a", time.monotonic()))
        b.on("peerclose", lambda pid: closed.setdefault("b", time.monotonic()))
        await m.tracker.close()
        lost = [(node.p2pt, "icerestart") for node in (a, b)]
        with cut(a, b.peer_id):
            started = time.monotonic()
            await until(lambda: all(n.p2pt.ice_restarts["lost"] for n in (a, b)), *lost,
                        timeout=20)  # fmt: skip
            await until(lambda: len(closed) == 2, (a, "peerclose"), (b, "peerclose"), timeout=20)
        for node in (a, b):
            assert node.p2pt.ice_restarts["gave_up"] >= 1
            assert node.p2pt.ice_restarts["restarted"] == 0
        # Given up well before libwebrtc would have (about 15 s in).
        assert all(at - started < ICE_FAILS_AFTER - 3 for at in closed.values())
