"""Flow control: a window per call that the reader opens as it reads and a writer waits on.

A slow but reading peer is slowed, never failed, in both directions (replies to a slow caller,
requests to a slow servicer), and what the reader holds for a call stays within its window and
one message; a peer that ignores the window still meets the per-call caps, window updates that
cannot be honoured end their call with a typed refusal, and a writer waiting on a shut window
wakes as soon as its call ends, however it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.errors import RpcError
from p2prpc.node import Node
from p2prpc.p2pt import Peer
from p2prpc.rpc import (
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    StatusCode,
    StreamStreamMethod,
    StreamUnaryMethod,
    UnaryStreamMethod,
)
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.testing import loopback_p2pt, mesh
from p2prpc.wire.envelope import BinaryReader, Envelope, EnvelopeError, Kind, from_json, to_binary
from p2prpc.wire.frames import new_message_id
from p2prpc.wire.held import ENVELOPE_OVERHEAD
from p2prpc.wire.window import FlowControlError

pytestmark = pytest.mark.asyncio

S = StringValue
ONCE = RetryPolicy(max_attempts=1)
FORMS = pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])


class Servicer:
    """``Count`` streams ``"n,pad"`` replies (each its number, padded with ``pad`` bytes);
    ``Sink`` reads its requests at 1 ms each and answers how many came in order; ``Deaf``
    never reads and ends when told to."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.closed = asyncio.Event()  # Count's generator was closed
        self.held: list[int] = []  # what the node held for the caller before each read (Sink)
        self.node: Node | None = None

    async def count(self, request: S, context: ServicerContext) -> AsyncIterator[S]:
        count, pad = map(int, request.value.split(","))
        try:
            for n in range(count):
                yield S(value=f"{n:06d}" + "x" * pad)
        finally:
            self.closed.set()

    async def sink(self, requests: AsyncIterator[S], context: ServicerContext) -> S:
        in_order = 0
        async for request in requests:
            in_order += int(request.value[:6]) == in_order
            await asyncio.sleep(0.001)  # the servicer's own work, 1 ms a request
            if self.node is not None:  # before the next read
                self.held.append(self.node.queued.held(context.peer()))
        return S(value=str(in_order))

    async def deaf(self, requests: AsyncIterator[S], context: ServicerContext) -> AsyncIterator[S]:
        await self.release.wait()
        await context.abort(StatusCode.FAILED_PRECONDITION, "stopped listening")
        yield S()  # never reached

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        return {
            "/f.S/Count": Handler(self.count, Cardinality.UNARY_STREAM, S, S),
            "/f.S/Sink": Handler(self.sink, Cardinality.STREAM_UNARY, S, S),
            "/f.S/Deaf": Handler(self.deaf, Cardinality.STREAM_STREAM, S, S),
        }


@asynccontextmanager
async def served(**options: Any) -> AsyncIterator[tuple[Node, Node, Servicer, Channel]]:
    """A server of ``f.S`` and a client, both with ``options``."""
    async with mesh(2, **options) as m:
        server, client = m.nodes
        servicer = Servicer()
        server.add_service("f.S", servicer.handlers())
        await client.wait_for_server("f.S", timeout=10)
        yield server, client, servicer, Channel(client, retry_policy=ONCE)


def request(n: int, pad: int = 0) -> S:
    return S(value=f"{n:06d}" + "x" * pad)


# -- slowed, not failed -----------------------------------------------------------------------


@FORMS
async def test_a_slow_reader_of_a_long_stream_is_slowed_not_failed(binary: bool) -> None:
    """6,000 replies read at 1 ms each: more than a call may hold unread (4,096), all of them
    arrive, in order, because the server waits while the caller's window is shut."""
    count = 6000
    async with served(binary=binary) as (_, _, _, channel):
        stream = UnaryStreamMethod(channel, "/f.S/Count", S, S)
        got = []
        async for reply in stream(S(value=f"{count},0"), timeout=60):
            got.append(int(reply.value))
            await asyncio.sleep(0.001)  # the reader's own work, 1 ms a reply
        assert got == list(range(count))


@FORMS
@pytest.mark.parametrize("how", ["write", "iterator"])
async def test_a_client_stream_to_a_slow_servicer_is_slowed_not_failed(
    binary: bool, how: str
) -> None:
    """2,000 requests to a servicer that takes 1 ms each: more than a call may hold unread
    (1,024), all of them read, in order, because ``write()`` and the request iterator wait
    while the server's window is shut."""
    count = 2000
    async with served(binary=binary) as (_, _, _, channel):
        sink = StreamUnaryMethod(channel, "/f.S/Sink", S, S)
        if how == "iterator":
            reply = await sink((request(n) for n in range(count)), timeout=60)
        else:
            call = sink(timeout=60)
            for n in range(count):
                await call.write(request(n))
            await call.done_writing()
            reply = await call
        assert reply.value == str(count)


async def test_what_a_caller_holds_for_a_stream_stays_within_its_window() -> None:
    """A caller with a 64 KiB window reads 600 replies of 1 KB (900 KB counted) slowly: the
    bytes it holds unread for the call, sampled before each read, never pass the window and
    one message, and do fill it."""
    window, pad = 64 * 1024, 1024
    async with served(window=window) as (server, client, _, channel):
        stream = UnaryStreamMethod(channel, "/f.S/Count", S, S)
        held = []
        async for _ in stream(S(value=f"600,{pad}"), timeout=60):
            await asyncio.sleep(0.001)
            held.append(client.queued.held(server.peer_id))  # before the next read
        message = len(request(0, pad).SerializeToString()) + ENVELOPE_OVERHEAD
        assert max(held) <= window + message
        assert max(held) > window // 2  # the window was used, not a trickle


async def test_what_a_servicer_holds_for_a_request_stream_stays_within_its_window() -> None:
    window, pad = 64 * 1024, 1024
    async with served(window=window) as (server, _, servicer, channel):
        servicer.node = server
        sink = StreamUnaryMethod(channel, "/f.S/Sink", S, S)
        reply = await sink((request(n, pad) for n in range(600)), timeout=60)
        assert reply.value == "600"
        message = len(request(0, pad).SerializeToString()) + ENVELOPE_OVERHEAD
        assert max(servicer.held) <= window + message
        assert max(servicer.held) > window // 2


# -- a peer that ignores the window, or sends window updates that cannot be honoured -----------


class Hostile:
    """A raw P2PT peer that says a p2prpc hello with a window (so the node honours windows with
    it and grants it window), then writes envelopes by hand, in the JSON or the binary form."""

    def __init__(self, p2pt: Any, peer: Peer, binary: bool, window: int = 4096) -> None:
        self.p2pt = p2pt
        self.peer = peer
        self.binary = binary
        self.got: dict[int, list[Envelope]] = {}
        self.changed = asyncio.Event()
        self._reader = BinaryReader()
        p2pt.on("msg", self._on_msg)
        p2pt.binary_handler = self._on_binary
        self.hello = {"v": 1, "binary": binary, "window": window, "services": ["h.S"]}
        p2pt.post(peer, {"hello": self.hello}, new_message_id())

    def _on_msg(self, peer: Any, msg: Any) -> None:
        if isinstance(msg, dict) and peer.message_id is not None and "hello" not in msg:
            self._got(from_json(msg, peer.message_id))

    def _on_binary(self, peer_id: str, data: bytes, connection: int) -> None:
        envelope = self._reader.feed(peer_id, data)
        if envelope is not None:
            self._got(envelope)

    def _got(self, envelope: Envelope) -> None:
        self.got.setdefault(envelope.call_id, []).append(envelope)
        self.changed.set()

    def send(self, envelope: Envelope) -> None:
        if self.binary:
            self.p2pt.send_raw(self.peer, to_binary(envelope))
        else:
            from p2prpc.wire.envelope import to_json

            self.p2pt.post(self.peer, to_json(envelope), envelope.call_id)

    async def wait(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    def kinds(self, call_id: int) -> list[Kind]:
        return [e.kind for e in self.got.get(call_id, [])]

    def status(self, call_id: int) -> Any:
        return next((e.status for e in self.got.get(call_id, []) if e.status is not None), None)


@asynccontextmanager
async def hostile_peer(binary: bool, **options: Any) -> AsyncIterator[tuple[Node, Hostile]]:
    async with mesh(1, keepalive_interval=None, **options) as m:
        (node,) = m.nodes
        servicer = Servicer()
        node.add_service("f.S", servicer.handlers())
        p2pt = loopback_p2pt([m.tracker.url], "p2prpc")
        warnings: list[Exception] = []
        node.on("peerwarning", lambda peer_id, error: warnings.append(error))
        try:
            await p2pt.start()
            hostile = Hostile(p2pt, await p2pt.wait_for_peer(timeout=10), binary)
            await node.wait_until(
                lambda: (info := node.peers.get(p2pt.peer_id)) is not None and bool(info.window),
                10,
            )
            hostile.warnings = warnings  # type: ignore[attr-defined]
            yield node, hostile
        finally:
            await p2pt.destroy()


def msg(call_id: int, seq: int, size: int) -> Envelope:
    payload: Any = request(seq, size).SerializeToString()
    return Envelope(Kind.MSG, call_id, seq, payload=payload, has_payload=True)


def json_msg(call_id: int, seq: int, size: int) -> Envelope:
    return Envelope(Kind.MSG, call_id, seq, payload=request(seq, size).value, has_payload=True)


@FORMS
async def test_a_client_that_overruns_the_window_still_meets_the_per_call_cap(binary: bool) -> None:
    """A client that announced windows and then ignores the server's: its requests pile up
    past the per-call cap (4 × 64 KiB), and the call ends RESOURCE_EXHAUSTED on its id."""
    async with hostile_peer(binary, max_message_size=64 * 1024, window=16 * 1024) as (_, h):
        call_id = new_message_id()
        h.send(Envelope(Kind.CALL, call_id, method="/f.S/Deaf"))
        make = msg if binary else json_msg
        for seq in range(40):  # 40 × 8 KB: 20 times the window, past the cap
            h.send(make(call_id, seq, 8000))
        await h.wait(lambda: h.status(call_id) is not None)
        assert h.status(call_id).code is StatusCode.RESOURCE_EXHAUSTED
        assert Kind.MSG_WINDOW not in h.kinds(call_id)  # it read none: it granted nothing


@FORMS
async def test_a_server_that_overruns_the_window_still_meets_the_per_call_cap(binary: bool) -> None:
    """A server that announced windows and then ignores the caller's: the caller's call ends
    RESOURCE_EXHAUSTED, and the server is sent ``cancel``."""
    async with hostile_peer(binary, max_message_size=64 * 1024, window=16 * 1024) as (node, h):
        await node.wait_for_server("h.S", 10)
        call = UnaryStreamMethod(Channel(node, retry_policy=ONCE), "/h.S/Feed", S, S)(
            S(), timeout=30
        )
        await h.wait(lambda: any(Kind.CALL in h.kinds(c) for c in h.got))
        call_id = next(c for c in h.got if Kind.CALL in h.kinds(c))
        for seq in range(40):
            payload: Any = S(value="x" * 8000)
            payload = payload.SerializeToString() if binary else payload.value
            h.send(Envelope(Kind.REPLY, call_id, seq, payload=payload, has_payload=True))
        assert await asyncio.wait_for(call.code(), 10) is StatusCode.RESOURCE_EXHAUSTED
        await h.wait(lambda: Kind.CANCEL in h.kinds(call_id))


BAD_UPDATES = {
    "not a number": ({"reply_window": "lots"}, EnvelopeError),
    "zero": ({"reply_window": 0}, EnvelopeError),
    "past the largest window": ({"reply_window": 2**31}, EnvelopeError),
    "past what was sent": ({"reply_window": 2**31 - 1}, FlowControlError),
}


@pytest.mark.parametrize("case", BAD_UPDATES.keys())
async def test_a_window_update_that_cannot_be_honoured_ends_its_call_with_a_typed_refusal(
    case: str,
) -> None:
    """Sent to a server streaming replies: the call ends INVALID_ARGUMENT on both sides (its
    generator is closed), the peer is told on the call's id, and the node reports the typed
    error (a ``peerwarning``)."""
    update, error = BAD_UPDATES[case]
    async with hostile_peer(False) as (node, h):
        call_id = new_message_id()
        h.p2pt.post(h.peer, {"call": "/f.S/Count", "msg": "100000,100"}, call_id)
        await h.wait(lambda: Kind.REPLY in h.kinds(call_id))  # streaming, its window shut
        h.p2pt.post(h.peer, update, call_id)
        await h.wait(lambda: h.status(call_id) is not None)
        status = h.status(call_id)
        assert status.code is StatusCode.INVALID_ARGUMENT
        assert "window update refused" in status.details
        assert any(isinstance(e, error) for e in h.warnings)  # type: ignore[attr-defined]
        await asyncio.wait_for(endpoint_of(node).wait_idle(), 5)  # nothing left running


async def test_a_binary_window_update_with_a_payload_is_refused_on_its_call() -> None:
    async with hostile_peer(True) as (_, h):
        call_id = new_message_id()
        streaming = S(value="100000,100").SerializeToString()
        h.send(
            Envelope(Kind.CALL, call_id, method="/f.S/Count", payload=streaming, has_payload=True)
        )
        await h.wait(lambda: Kind.REPLY in h.kinds(call_id))
        frame = to_binary(Envelope(Kind.REPLY, call_id, 0, payload=b"x", has_payload=True))[0]
        bad = frame[:1] + bytes([Kind.REPLY_WINDOW]) + frame[2:]  # a window carrying a payload
        h.p2pt.send_raw(h.peer, [bad])
        await h.wait(lambda: h.status(call_id) is not None)
        assert h.status(call_id).code is StatusCode.INVALID_ARGUMENT
        assert any(isinstance(e, EnvelopeError) for e in h.warnings)  # type: ignore[attr-defined]


@FORMS
async def test_a_window_update_for_no_call_in_progress_is_dropped(binary: bool) -> None:
    """As HTTP/2 ignores WINDOW_UPDATE on a closed stream (the call may have just ended): no
    answer, no state kept, and the node goes on serving the peer."""
    async with hostile_peer(binary) as (node, h):
        stray = new_message_id()
        for kind in (Kind.REPLY_WINDOW, Kind.MSG_WINDOW):
            h.send(Envelope(kind, stray, 2**31 - 1))
        call_id = new_message_id()
        payload: Any = S(value="3,0").SerializeToString() if binary else "3,0"
        h.send(Envelope(Kind.CALL, call_id, method="/f.S/Count", payload=payload, has_payload=True))
        await h.wait(lambda: h.status(call_id) is not None)
        assert h.status(call_id).code is StatusCode.OK
        assert stray not in h.got
        assert not h.warnings  # type: ignore[attr-defined]
        assert not endpoint_of(node)._server and not endpoint_of(node)._client


async def test_a_server_granting_more_than_was_sent_ends_the_callers_call() -> None:
    """A server that announced windows grants a caller's request stream past its window: the
    caller's call ends INTERNAL (a typed refusal) and the server is sent ``cancel``."""
    async with hostile_peer(False) as (node, h):
        await node.wait_for_server("h.S", 10)
        call = StreamUnaryMethod(Channel(node, retry_policy=ONCE), "/h.S/Take", S, S)(timeout=30)
        await h.wait(lambda: any(Kind.CALL in h.kinds(c) for c in h.got))
        call_id = next(c for c in h.got if Kind.CALL in h.kinds(c))
        h.p2pt.post(h.peer, {"msg_window": 2**31 - 1}, call_id)
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(call, 10)
        assert caught.value.code() is StatusCode.INTERNAL
        assert "window update refused" in caught.value.details()
        await h.wait(lambda: Kind.CANCEL in h.kinds(call_id))


# -- a writer waiting on a shut window wakes when its call ends -------------------------------


async def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait until ``condition()`` holds: a call's window has no event of its own to wait on."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


ENDINGS = ["deadline", "cancel", "peer lost", "status"]


@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_write_waiting_on_a_shut_window_wakes_when_its_call_ends(ending: str) -> None:
    """A client writing to a servicer that never reads, through a 1 KiB window: the write that
    finds it shut waits, and returns or raises as soon as the call ends, whatever ends it,
    long before the call's own deadline would."""
    async with served(window=1024) as (server, _, servicer, channel):
        timeout = 1.0 if ending == "deadline" else 60.0
        call = StreamStreamMethod(channel, "/f.S/Deaf", S, S)(timeout=timeout)
        await call.write(request(0, 600))  # the window's first message
        writer = asyncio.ensure_future(call.write(request(1, 600)))
        await _until(lambda: call._attempt is not None and not call._attempt.window.credit.open)
        await asyncio.sleep(0)
        assert not writer.done()  # shut: it waits
        started = time.monotonic()
        if ending == "cancel":
            call.cancel()
        elif ending == "peer lost":
            await server.close()
        elif ending == "status":
            servicer.release.set()
        await asyncio.wait([writer], timeout=10)
        assert writer.done()
        assert time.monotonic() - started < 10
        if not writer.cancelled() and writer.exception() is not None:
            assert isinstance(writer.exception(), RpcError | asyncio.InvalidStateError)
        expected = {
            "deadline": StatusCode.DEADLINE_EXCEEDED,
            "cancel": StatusCode.CANCELLED,
            "peer lost": StatusCode.UNAVAILABLE,
            "status": StatusCode.FAILED_PRECONDITION,
        }[ending]
        assert await call.code() is expected


async def test_a_request_iterator_waiting_on_a_shut_window_stops_when_its_call_ends() -> None:
    async with served(window=1024) as (_, _, _, channel):
        sent = 0

        async def forever() -> AsyncIterator[S]:
            nonlocal sent
            while True:
                yield request(sent, 600)
                sent += 1

        call = StreamStreamMethod(channel, "/f.S/Deaf", S, S)(forever(), timeout=60)
        await _until(lambda: call._attempt is not None and not call._attempt.window.credit.open)
        assert sent <= 2  # the pump waits for the window, it does not run on
        assert call._pump is not None and not call._pump.done()
        call.cancel()
        await _until(lambda: call._pump is not None and call._pump.done(), 5)


@pytest.mark.parametrize("ending", ["deadline", "cancel", "peer lost"])
async def test_a_servicer_waiting_on_a_shut_window_is_closed_when_its_call_ends(
    ending: str,
) -> None:
    """A caller that never reads, through a 1 KiB window: the servicer's generator waits at its
    ``yield``, and is closed as soon as the call ends."""
    async with served(window=1024) as (server, client, servicer, channel):
        timeout = 1.0 if ending == "deadline" else 60.0
        call = UnaryStreamMethod(channel, "/f.S/Count", S, S)(
            S(value="100000,600"), timeout=timeout
        )
        calls = endpoint_of(server)._server
        await _until(lambda: any(not c.window.credit.open for c in calls.values()))  # type: ignore[attr-defined]
        assert not servicer.closed.is_set()
        if ending == "cancel":
            call.cancel()
        elif ending == "peer lost":
            await client.close()
        await asyncio.wait_for(servicer.closed.wait(), 10)
        await asyncio.wait_for(endpoint_of(server).wait_idle(), 5)


async def test_the_window_is_checked_against_the_message_size() -> None:
    with pytest.raises(ValueError, match="window"):
        Node(window=100)  # less than one message's envelope
    with pytest.raises(ValueError, match="window"):
        Node(max_message_size=4096, window=16384)  # more than two messages
    node = Node(max_message_size=4096)
    assert node.window == 8192  # the default, within both
    assert node.hello()["window"] == 8192
    await node.close()
