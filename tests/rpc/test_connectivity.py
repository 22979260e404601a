"""A channel's connectivity, as grpc.aio's, for a swarm: whole peers over real WebRTC, with the
embedded tracker (and, for the failures, trackers that cannot be reached or never answer).

IDLE until the node starts; CONNECTING while trackers have not answered, a tracker counts peers
not connected yet, a connection is in progress or a hello is awaited (each within the node's
``connect_timeout``); READY with a peer to call; TRANSIENT_FAILURE with none and nothing in
progress; SHUTDOWN once the channel is closed or the node stops. Calls with no serving peer wait
while CONNECTING and fail fast, saying why, otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from websockets.asyncio.server import ServerConnection, serve

from p2prpc.errors import RpcError
from p2prpc.node import Node
from p2prpc.p2pt import EVENTS as P2PT_EVENTS
from p2prpc.p2pt import Peer
from p2prpc.rpc import (
    NO_RETRY,
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    StatusCode,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.testing import LOOPBACK, loopback_node, until
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.tracker import (
    Announce,
    AnnounceReply,
    encode_server_message,
    parse_client_message,
)

pytestmark = pytest.mark.asyncio

State = grpc.ChannelConnectivity
SERVICE = "connectivity.Service"
S = StringValue


class Servicer:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0
        self.two_cancelled = asyncio.Event()

    def _cancel(self) -> None:
        self.cancelled += 1
        if self.cancelled == 2:
            self.two_cancelled.set()

    async def Echo(self, request: S, context: ServicerContext) -> S:
        return S(value=request.value)

    async def Slow(self, request: S, context: ServicerContext) -> S:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self._cancel()
            raise
        return S(value="finished")

    async def Watch(self, request: S, context: ServicerContext) -> AsyncIterator[S]:
        self.started.set()
        try:
            yield S(value="first")
            await self.release.wait()
        except asyncio.CancelledError:
            self._cancel()
            raise

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        unary, stream = Cardinality.UNARY_UNARY, Cardinality.UNARY_STREAM
        return {
            f"/{SERVICE}/Echo": Handler(self.Echo, unary, S, S),
            f"/{SERVICE}/Slow": Handler(self.Slow, unary, S, S),
            f"/{SERVICE}/Watch": Handler(self.Watch, stream, S, S),
        }


class Stub:
    def __init__(self, channel: Any) -> None:
        self.Echo = UnaryUnaryMethod(channel, f"/{SERVICE}/Echo", S, S)
        self.Slow = UnaryUnaryMethod(channel, f"/{SERVICE}/Slow", S, S)
        self.Watch = UnaryStreamMethod(channel, f"/{SERVICE}/Watch", S, S)
        self.Nobody = UnaryUnaryMethod(channel, "/connectivity.Nobody/Call", S, S)


class HeldHello(Node):
    """A server slow to say hello: its hellos wait until :meth:`let_go` (its connections open
    as any peer's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[Peer] = []
        self.free = False

    def _send_hello(self, peer: Peer) -> None:
        if self.free:
            super()._send_hello(peer)
        else:
            self.held.append(peer)

    def let_go(self) -> None:
        self.free = True
        for peer in self.held:
            super()._send_hello(peer)


def closed_port() -> int:
    """A local TCP port nothing listens on (connecting to it is refused at once)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
    return port


@asynccontextmanager
async def tracker_with_server(
    make: type[Node] = Node, **options: Any
) -> AsyncIterator[tuple[TrackerServer, Node, Servicer]]:
    """An embedded tracker and a node serving :data:`SERVICE`, counted in the swarm."""
    async with TrackerServer(LOOPBACK, 0) as tracker:
        server = make([tracker.url], "p2prpc", ice_servers=[], host_addresses=[LOOPBACK], **options)
        servicer = Servicer()
        server.add_service(SERVICE, servicer.handlers())
        try:
            await server.start()
            await asyncio.wait_for(tracker.wait_for(lambda stats: stats.peers >= 1), 10)
            yield tracker, server, servicer
        finally:
            await server.close()


async def test_a_call_right_after_start_waits_for_the_swarm_instead_of_failing() -> None:
    async with tracker_with_server() as (tracker, _, _):
        for attempt in range(5):  # each a fresh node: no peer can be connected yet
            async with loopback_node([tracker.url]) as client:
                channel = Channel(client, retry_policy=NO_RETRY)
                assert channel.get_state() is State.CONNECTING  # no tracker has answered yet
                reply = await Stub(channel).Echo(S(value=str(attempt)), timeout=20)
                assert reply.value == str(attempt)
                assert channel.get_state() is State.READY


async def test_a_call_waits_for_a_connected_peer_to_say_hello() -> None:
    async with tracker_with_server(HeldHello) as (tracker, server, _):
        assert isinstance(server, HeldHello)
        async with loopback_node([tracker.url]) as client:
            quick = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.01)
            channel = Channel(client, retry_policy=quick)
            call = asyncio.ensure_future(Stub(channel).Echo(S(value="late"), timeout=20))
            await until(
                lambda: call.done() or client.p2pt.is_connected(server.peer_id),
                (client.p2pt, "peerconnect"),
            )
            assert not call.done()  # connected, its hello awaited: still connecting
            assert channel.get_state() is State.CONNECTING
            server.let_go()
            assert (await call).value == "late"
            assert channel.get_state() is State.READY


async def test_an_unreachable_tracker_is_a_transient_failure_and_calls_say_so_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"ws://{LOOPBACK}:{closed_port()}"
    caplog.set_level(logging.WARNING)
    async with loopback_node([url]) as node:
        warnings: list[Exception] = []
        node.on("trackerwarning", lambda error, stats: warnings.append(error))
        channel = Channel(node)
        await until(
            lambda: channel.get_state() is State.TRANSIENT_FAILURE, (node.p2pt, "connectivity")
        )
        with pytest.raises(RpcError) as caught:
            async with asyncio.timeout(10):  # not the call's 60 s: at once
                await Stub(channel).Echo(S(), timeout=60)
        assert caught.value.code() is StatusCode.UNAVAILABLE
        assert f"tracker {url} unreachable" in caught.value.details()
        assert "connect call failed" in caught.value.details().lower()  # the socket's error
        # Reconnection goes on in the background, warned of each time, logged once.
        await until(lambda: len(warnings) >= 3, (node.p2pt, "trackerwarning"), timeout=20)
        logged = [r for r in caplog.records if url in r.getMessage()]
        assert [r.levelno for r in logged] == [logging.WARNING]
        assert channel.get_state() is State.TRANSIENT_FAILURE


async def test_a_tracker_that_never_answers_connects_only_for_connect_timeout() -> None:
    silent: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # the WebSocket handshake is never answered

    listener = await asyncio.start_server(accept, LOOPBACK, 0)
    port = listener.sockets[0].getsockname()[1]
    url = f"ws://{LOOPBACK}:{port}"
    try:
        async with loopback_node([url], connect_timeout=0.5) as node:
            channel = Channel(node)
            assert channel.get_state() is State.CONNECTING
            await channel.wait_for_state_change(State.CONNECTING)  # the bound passes
            assert channel.get_state() is State.TRANSIENT_FAILURE
            with pytest.raises(RpcError) as caught:
                await Stub(channel).Echo(S(), timeout=60)
            assert caught.value.code() is StatusCode.UNAVAILABLE
            assert f"tracker {url} did not answer within 0.5 s" in caught.value.details()
    finally:
        for writer in silent:
            writer.close()
        listener.close()
        await listener.wait_closed()


async def test_a_call_waits_at_most_connect_timeout_however_long_the_swarm_keeps_finding() -> None:
    # A tracker that counts one other peer (never there) and drops the connection after each
    # answer: each reconnection and each answer begins something in progress again, so the
    # swarm is always finding; the call still waits at most connect_timeout.
    async def session(ws: ServerConnection) -> None:
        message = parse_client_message(await ws.recv())
        assert isinstance(message, Announce)
        reply = AnnounceReply(info_hash=message.info_hash, interval=120, complete=2, incomplete=0)
        await ws.send(encode_server_message(reply))
        await asyncio.sleep(0.2)

    async with serve(session, LOOPBACK, 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url = f"ws://{LOOPBACK}:{port}"
        async with loopback_node([url], connect_timeout=2.0) as node:
            channel = Channel(node, retry_policy=NO_RETRY)
            with pytest.raises(RpcError) as caught:
                async with asyncio.timeout(20):  # the swarm keeps finding for ever
                    await Stub(channel).Echo(S(value="x"))  # no timeout, no wait_for_ready
            assert caught.value.code() is StatusCode.UNAVAILABLE
            details = caught.value.details()
            assert details.startswith(
                f"no connected peer serves {SERVICE} within the connect timeout (2 s)"
            ), details
            # A deadline shorter than connect_timeout is the call's own: DEADLINE_EXCEEDED.
            with pytest.raises(RpcError) as caught:
                await Stub(channel).Echo(S(value="x"), timeout=0.5)
            assert caught.value.code() is StatusCode.DEADLINE_EXCEEDED


class Watcher:
    """Every state a channel goes through, as ``wait_for_state_change`` reports them."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.seen = [channel.get_state()]
        self.moved = asyncio.Event()
        self.task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                await self.channel.wait_for_state_change(self.seen[-1])
            except grpc.aio.UsageError:
                return  # closed: SHUTDOWN never changes
            state = self.channel.get_state()
            if state is not self.seen[-1]:
                self.seen.append(state)
                self.moved.set()

    async def reach(self, state: State) -> None:
        async with asyncio.timeout(20):
            while self.seen[-1] is not state:
                self.moved.clear()
                await self.moved.wait()


async def test_every_state_in_order_as_wait_for_state_change_sees_them() -> None:
    async with tracker_with_server() as (tracker, server, _):
        client = loopback_node([tracker.url])
        channel = Channel(client)
        watcher = Watcher(channel)
        try:
            assert watcher.seen == [State.IDLE]  # not started
            await asyncio.wait_for(channel.channel_ready(), 20)  # starts the node, as gRPC's
            assert client.started
            await server.close()  # the only peer leaves; the tracker knew it was there
            await watcher.reach(State.TRANSIENT_FAILURE)
            assert "no peer in the swarm" in await _details(Stub(channel).Echo(S(), timeout=30))
            # A new peer joins: its offer reaches the client, which connects to it.
            async with loopback_node([tracker.url]) as newcomer:
                newcomer.add_service(SERVICE, Servicer().handlers())
                await watcher.reach(State.READY)
                assert (await Stub(channel).Echo(S(value="new"), timeout=20)).value == "new"
                await channel.close()
                await asyncio.wait_for(watcher.task, 10)
            assert watcher.seen == [
                State.IDLE,
                State.CONNECTING,
                State.READY,
                State.TRANSIENT_FAILURE,
                State.CONNECTING,
                State.READY,
                State.SHUTDOWN,
            ]
            # A stopped node shuts every channel down, and the wait says so instead of hanging.
            other = Channel(client)
            assert other.get_state() is not State.SHUTDOWN
            await client.stop()
            assert other.get_state() is State.SHUTDOWN
            with pytest.raises(grpc.aio.UsageError):
                await asyncio.wait_for(other.wait_for_state_change(State.SHUTDOWN), 5)
        finally:
            watcher.task.cancel()
            await client.close()


async def _details(call: Any) -> str:
    try:
        await call
    except RpcError as e:
        assert e.code() is StatusCode.UNAVAILABLE
        return e.details()
    raise AssertionError("the call succeeded")


async def test_a_channel_to_one_peer_is_ready_only_with_that_peer() -> None:
    async with (
        tracker_with_server() as (tracker, server, _),
        loopback_node([tracker.url]) as client,
    ):
        await asyncio.wait_for(Channel(client).channel_ready(), 20)
        assert Channel(client).to(server.peer_id).get_state() is State.READY
        assert Channel(client).to("ab" * 20).get_state() is State.TRANSIENT_FAILURE
        stranger = Channel(client, allowed_servers=[b"\x01" * 32])
        assert stranger.get_state() is State.TRANSIENT_FAILURE
        details = await _details(Stub(stranger).Echo(S(), timeout=30))
        assert "with an allowed identity" in details


async def test_close_cancels_calls_in_flight_and_later_calls_are_a_usage_error() -> None:
    async with (
        tracker_with_server() as (tracker, _, servicer),
        loopback_node([tracker.url]) as client,
    ):
        channel = Channel(client, retry_policy=NO_RETRY)
        unary = Stub(channel).Slow(S(), timeout=60)
        stream = Stub(channel).Watch(S(), timeout=60)
        assert (await stream.read()).value == "first"
        await asyncio.wait_for(servicer.started.wait(), 10)
        other = Stub(Channel(client))  # another channel on the same node
        await channel.close()  # no grace: cancelled now
        assert channel.get_state() is State.SHUTDOWN
        for call in (unary, stream):
            assert await call.code() is StatusCode.CANCELLED
            assert call.cancelled()
        with pytest.raises(asyncio.CancelledError):
            await unary
        await asyncio.wait_for(servicer.two_cancelled.wait(), 10)  # the server was told
        with pytest.raises(grpc.aio.UsageError, match="Channel is closed"):
            Stub(channel).Echo(S())
        with pytest.raises(grpc.aio.UsageError):
            Stub(channel.to(client.peer_id)).Echo(S())  # made from it: closed too
        with pytest.raises(grpc.aio.UsageError):
            await channel.channel_ready()
        assert (await other.Echo(S(value="on"), timeout=20)).value == "on"


async def test_close_with_grace_lets_calls_finish_then_cancels_the_rest() -> None:
    async with (
        tracker_with_server() as (tracker, _, servicer),
        loopback_node([tracker.url]) as client,
    ):
        async with Channel(client, retry_policy=NO_RETRY) as channel:
            finishing = Stub(channel).Slow(S(), timeout=60)
            await asyncio.wait_for(servicer.started.wait(), 20)
            closing = asyncio.ensure_future(channel.close(grace=30))
            await asyncio.sleep(0)  # the task runs up to its wait for the call
            assert channel.get_state() is State.SHUTDOWN
            with pytest.raises(grpc.aio.UsageError):
                Stub(channel).Echo(S())  # closing: no new call
            assert not closing.done()  # waiting for the call in flight
            servicer.release.set()
            assert (await finishing).value == "finished"
            await asyncio.wait_for(closing, 10)
            servicer.release.clear()
            servicer.started.clear()
        # ``async with`` closed it again (a no-op); a fresh channel's call outlives a grace.
        late_channel = Channel(client, retry_policy=NO_RETRY)
        late = Stub(late_channel).Slow(S(), timeout=60)
        await asyncio.wait_for(servicer.started.wait(), 20)
        await late_channel.close(grace=0.2)
        assert await late.code() is StatusCode.CANCELLED
        with pytest.raises(ValueError, match="non-negative"):
            await Channel(client).close(grace=-1)


async def test_a_call_whose_server_died_on_a_live_swarm_still_fails_fast() -> None:
    async with (
        tracker_with_server() as (tracker, server, _),
        loopback_node([tracker.url]) as client,
    ):
        channel = Channel(client, retry_policy=NO_RETRY)
        await asyncio.wait_for(channel.channel_ready(), 20)
        await server.close()
        await until(lambda: not client.peers, (client, "peerclose"))
        # The tracker's count of the swarm is stale for a moment: it is not waited on.
        with pytest.raises(RpcError) as caught:
            async with asyncio.timeout(5):
                await Stub(channel).Echo(S(), timeout=60)
        assert caught.value.code() is StatusCode.UNAVAILABLE


async def test_p2pt_events_register_on_the_node_and_unknown_names_are_refused() -> None:
    async with TrackerServer(LOOPBACK, 0) as tracker:
        node = loopback_node([tracker.url])
        for name in P2PT_EVENTS | {"peer", "peerclose", "peerwarning", "stopping"}:
            node.on(name, print)  # every name a node or its P2PT emits registers
            node.remove_listener(name, print)
            assert print not in node.listeners(name)
        with pytest.raises(ValueError, match="trackerwarning") as refused:
            node.on("trackerwarnings", print)
        assert "peerconnect" in str(refused.value) and "stopping" in str(refused.value)
        connected = asyncio.Event()
        stats_seen: list[dict[str, int]] = []

        @node.on("trackerconnect")
        def answered(tracker: Any, stats: dict[str, int]) -> None:
            stats_seen.append(stats)
            connected.set()

        started: list[str] = []
        node.once("connectivity", lambda: started.append("changed"))
        try:
            await node.start()
            await asyncio.wait_for(connected.wait(), 10)
            assert stats_seen[0] == {"connected": 1, "total": 1}
            assert started == ["changed"]  # once: removed after the first
        finally:
            await node.close()
