"""Keepalive: a p2prpc peer that dies without a word is found within seconds, not WebRTC's ~30 s.

The server runs in its own process (``examples/server.py``) and is frozen with SIGSTOP, so that its
sockets stay open and nothing tells the client: only the missing answers to pings can.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf.empty_pb2 import Empty
from rpc_processes import blocking_server, example_server

from p2prpc.errors import RpcError
from p2prpc.rpc import NO_RETRY, Channel, RetryPolicy, StatusCode
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
GREETER = "helloworld.Greeter"


async def test_a_silently_dead_server_is_suspect_in_seconds_and_its_calls_wait_the_grace() -> None:
    import routeguide_p2prpc

    grace = 2.0
    restart_timeout = 6.0  # on libwebrtc the lost connection restarts ICE, this long at most
    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        example_server(tracker.url, "keepalive-test") as server,
        loopback_node(
            [tracker.url],
            "keepalive-test",
            keepalive_grace=grace,
            ice_restart_timeout=restart_timeout,
        ) as client,
    ):
        server_id = await client.wait_for_server("routeguide.RouteGuide", timeout=30)
        channel = Channel(client, retry_policy=RetryPolicy(max_attempts=1))
        watch = routeguide_p2prpc.RouteGuideStub(channel).WatchFeatures(Empty())
        assert await asyncio.wait_for(watch.read(), 10) is not None  # a live stream
        loop = asyncio.get_running_loop()
        suspect: asyncio.Future[float] = loop.create_future()
        closed: asyncio.Future[float] = loop.create_future()
        client.on(
            "connectionsuspect",
            lambda pid, _: pid == server_id and not suspect.done() and suspect.set_result(now()),
        )
        client.on(
            "peerclose",
            lambda pid: pid == server_id and not closed.done() and closed.set_result(now()),
        )
        restarts: list[str] = []
        client.p2pt.on("icerestart", lambda peer, _, step: restarts.append(step))
        server.send_signal(signal.SIGSTOP)
        frozen = now()
        with pytest.raises(RpcError) as caught:
            while True:  # the replies already queued, then the failure
                await asyncio.wait_for(watch.read(), 30)
        failed = now()
        assert caught.value.code() is StatusCode.UNAVAILABLE
        # Suspect once a ping went unanswered for the timeout (it is pinged after the interval).
        found = await suspect
        assert found - frozen < client.keepalive_interval + client.keepalive_timeout + 1.5
        assert server_id not in client.servers_of("routeguide.RouteGuide")  # no new calls
        # Its calls wait out the grace, then fail, whether or not its ICE is being restarted.
        assert grace <= failed - found < grace + 2.0
        # The connection closes then too, or, while its ICE restarts, by the restart's timeout.
        gone = await asyncio.wait_for(closed, restart_timeout + 10) - found
        if restarts:
            assert grace + 2.0 <= gone < restart_timeout + 3.0
        else:
            assert gone < grace + 2.0


def now() -> float:
    return time.monotonic()


async def polled(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait until ``condition()`` holds, checked every 10 ms (what it reads changes with time,
    not with an event)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110  # nothing to wait on but time
            await asyncio.sleep(0.01)


async def test_a_servicer_blocking_its_loop_under_the_timeout_never_makes_it_look_dead() -> None:
    """A servicer that blocks its event loop for 2.5 s (under ``keepalive_timeout``, 3.5 s) after
    its connection was idle long enough to be pinged: the ping waits with everything else, and
    the server is neither suspect nor dropped, whenever the ping lands in the block. Two servers,
    three blocks each, at the defaults."""
    from helloworld_p2prpc import GreeterStub
    from helloworld_pb2 import HelloRequest

    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        blocking_server(tracker.url, "blocked-loop") as (_, first),
        blocking_server(tracker.url, "blocked-loop") as (_, second),
        loopback_node([tracker.url], "blocked-loop") as client,
    ):
        await client.wait_until(lambda: {first, second} <= set(client.servers_of(GREETER)), 60)
        looked_dead: list[tuple[str, str]] = []
        client.on("connectionsuspect", lambda pid, _: looked_dead.append(("suspect", pid)))
        client.on("peerclose", lambda pid: looked_dead.append(("closed", pid)))

        async def blocks(server_id: str) -> None:
            stub = GreeterStub(Channel(client, server_id, retry_policy=NO_RETRY))
            for _ in range(3):
                # Idle for the keepalive interval: the server is pinged about as it blocks.
                await asyncio.sleep(client.keepalive_interval)
                reply = await stub.SayHello(HelloRequest(name="block:2.5"), timeout=30)
                assert reply.message == "hello block:2.5"

        await asyncio.gather(blocks(first), blocks(second))
        assert looked_dead == []


async def test_time_this_node_spends_blocked_is_not_held_against_its_peers() -> None:
    """This node pings a peer, the peer answers while this node's own loop is blocked for longer
    than the timeout: the answer waits unread in the socket, and is read before the peer is
    judged, so the peer is not suspect."""
    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        blocking_server(tracker.url, "blocked-here") as (server, server_id),
        loopback_node(
            [tracker.url], "blocked-here", keepalive_interval=0.3, keepalive_timeout=1.0
        ) as client,
    ):
        await client.wait_for_server(GREETER, 60)
        looked_dead: list[tuple[str, str]] = []
        client.on("connectionsuspect", lambda pid, _: looked_dead.append(("suspect", pid)))
        client.on("peerclose", lambda pid: looked_dead.append(("closed", pid)))
        server.send_signal(signal.SIGSTOP)  # so that a ping to it is left unanswered
        await polled(lambda: not client.responsive(server_id))
        server.send_signal(signal.SIGCONT)  # it answers the ping at once...
        time.sleep(1.5)  # noqa: ASYNC251  # ...while this loop is blocked for longer than the timeout
        await polled(lambda: client.responsive(server_id))
        assert looked_dead == []
        assert client.p2pt.is_connected(server_id)


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
