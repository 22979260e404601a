"""Keepalive: a p2prpc peer that dies without a word is found within seconds, not WebRTC's ~30 s.

The server runs in its own process (``examples/server.py``) and is frozen with SIGSTOP, so that its
sockets stay open and nothing tells the client: only the missing answers to pings can.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from google.protobuf.empty_pb2 import Empty
from rpc_processes import example_server

from p2prpc.errors import RpcError
from p2prpc.rpc import Channel, RetryPolicy, StatusCode
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]


async def test_a_silently_dead_server_is_closed_and_its_calls_fail_within_five_seconds() -> None:
    import routeguide_p2prpc

    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        example_server(tracker.url, "keepalive-test") as server,
        loopback_node([tracker.url], "keepalive-test") as client,
    ):
        server_id = await client.wait_for_server("routeguide.RouteGuide", timeout=30)
        channel = Channel(client, retry_policy=RetryPolicy(max_attempts=1))
        watch = routeguide_p2prpc.RouteGuideStub(channel).WatchFeatures(Empty())
        assert await asyncio.wait_for(watch.read(), 10) is not None  # a live stream
        closed = asyncio.get_running_loop().create_future()
        client.on("peerclose", lambda pid: closed.done() or closed.set_result(pid))
        server.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        with pytest.raises(RpcError) as caught:
            while True:  # the replies already queued, then the failure
                await asyncio.wait_for(watch.read(), 10)
        assert caught.value.code() is StatusCode.UNAVAILABLE
        assert await asyncio.wait_for(closed, 10) == server_id
        assert time.monotonic() - frozen < 5.0


async def test_a_peer_dropped_and_back_is_fully_usable_again() -> None:
    """The node-level transitions: a peer's connection closed (as keepalive does), the node asks
    for peers again at once, and the same peer is back with its hello: services known, calls
    routed."""
    from google.protobuf.wrappers_pb2 import StringValue

    from p2prpc.rpc import Cardinality, Handler, UnaryUnaryMethod
    from p2prpc.testing import mesh

    async def echo(request: StringValue, context: object) -> StringValue:
        return request

    async with mesh(2) as m:
        server, client = m.nodes
        server.add_service(
            "t.E", {"/t.E/Echo": Handler(echo, Cardinality.UNARY_UNARY, StringValue, StringValue)}
        )
        await client.wait_for_server("t.E", 10)
        stub = UnaryUnaryMethod(client, "/t.E/Echo", StringValue, StringValue)
        for _ in range(2):  # dropped twice, back twice
            closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            client.once("peerclose", closed.set_result)
            client._drop_peer(server.peer_id)
            assert await asyncio.wait_for(closed, 10) == server.peer_id
            assert server.peer_id not in client.servers_of("t.E")
            await client.wait_for_server("t.E", 20)  # the same peer, back with its hello
            assert client.peers[server.peer_id].hello
            assert (await stub(StringValue(value="again"), timeout=10)).value == "again"
