"""Batches (kind 14) against hostile peers and careless senders, over real WebRTC on loopback:
what waits to be packed survives a close, one frame's failure costs only that frame, a dropped
peer's batch is not read further, junk costs one refusal, and no batch passes its limit."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.errors import SendQueueFull
from p2prpc.node import Node
from p2prpc.rpc import Cardinality, Handler, ServicerContext
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.testing import mesh, swarm
from p2prpc.wire.envelope import (
    BATCH_SIZE,
    MAGIC,
    Envelope,
    EnvelopeError,
    Kind,
    is_batch,
    iter_batch,
    pack_batch,
    to_binary,
)

pytestmark = pytest.mark.asyncio


def frame(n: int, size: int = 100) -> bytes:
    return bytes((MAGIC,)) + n.to_bytes(4) + b"\x00" * (size - 5)


def number(data: bytes) -> int:
    return int.from_bytes(data[1:5])


def frames_of(data: bytes) -> list[bytes]:
    return list(iter_batch(data)) if is_batch(data) else [data]


class AfterHandling:
    """``check(peer_id, data)`` run right after ``node`` handles each binary message (same turn)."""

    def __init__(self, node: Node, check: Any) -> None:
        self.seen: list[Any] = []
        self.changed = asyncio.Event()
        handler = node.p2pt.binary_handler
        assert handler is not None

        def on_binary(peer_id: str, data: bytes, connection: int) -> None:
            handler(peer_id, data, connection)
            self.seen.append(check(peer_id, data))
            self.changed.set()

        node.p2pt.binary_handler = on_binary

    async def first(self) -> Any:
        await asyncio.wait_for(self.changed.wait(), 10)
        return self.seen[0]


# -- 1. What waits for the end of the turn is lost when the channel closes in that turn --------


@pytest.mark.parametrize("pack", [None, pack_batch], ids=["unpacked", "packed"])
async def test_messages_sent_just_before_destroy_still_leave(pack: Any) -> None:
    async with swarm(2) as s:
        a, b = s.peers
        got: list[bytes] = []
        b.binary_handler = lambda peer_id, data, connection: got.extend(frames_of(data))
        closed = asyncio.Event()
        b.on("peerclose", lambda peer: closed.set())
        for n in range(5):
            a.send_raw(b.peer_id, [frame(n)], pack=pack)
        a.peers[b.peer_id].destroy()  # in the same turn: "send a goodbye, then hang up"
        await asyncio.wait_for(closed.wait(), 30)  # SCTP delivers the data before the abort
        assert [number(f) for f in got] == list(range(5))


# -- 2. One frame whose handling raises drops the rest of its batch ----------------------------


async def test_a_ping_that_cannot_be_answered_does_not_drop_the_rest_of_its_batch() -> None:
    cap = 256 * 1024
    async with mesh(2, max_send_queue=cap, keepalive_interval=None) as m:
        a, b = m.nodes
        channel = b.p2pt._channel_for(a.peer_id)
        real = b.p2pt.binary_handler
        assert real is not None

        def on_binary(peer_id: str, data: bytes, connection: int) -> None:
            # b's send queue toward a is full when the batch comes (a reads slowly).
            for size in (60_000, 1_000, 20):
                while True:
                    try:
                        b.p2pt.send_raw(a.peer_id, [frame(0, size)])
                    except SendQueueFull:
                        break
            assert channel.queued_bytes > cap - 20
            real(peer_id, data, connection)

        b.p2pt.binary_handler = on_binary
        ping = to_binary(Envelope(Kind.PING, 1), compact=True)
        hello = to_binary(Envelope(Kind.HELLO, 2, hello={**a.hello(), "topics": ["fresh"]}))
        changed = asyncio.Event()
        b.on("peer", lambda info: changed.set())
        a.p2pt.send_raw(b.peer_id, [pack_batch(ping + hello)])  # as a's node packs them
        await asyncio.wait_for(changed.wait(), 10)  # the hello after the ping was read
        assert "fresh" in b.peers[a.peer_id].topics


# -- 3. Frames after the peer was dropped, in the same batch, are still handled ----------------


async def test_nothing_is_handled_from_a_peer_dropped_in_the_middle_of_its_batch() -> None:
    called: list[str] = []

    async def echo(request: StringValue, context: ServicerContext) -> StringValue:
        called.append(request.value)
        return request

    async with mesh(2, keepalive_interval=None) as m:
        a, b = m.nodes
        handler = Handler[Any, Any](echo, Cardinality.UNARY_UNARY, StringValue, StringValue)
        b.add_service("t.Hostile", {"/t.Hostile/Echo": handler})
        # b drops any peer that sends malformed input (a ban policy in the application).
        b.on("peerwarning", lambda peer_id, error: b.p2pt.peers[peer_id].destroy())
        served = AfterHandling(
            b, lambda peer_id, data: [k for k in endpoint_of(b)._server if k[0] == peer_id]
        )
        call = to_binary(
            Envelope(
                Kind.CALL,
                7,
                method="/t.Hostile/Echo",
                payload=StringValue(value="from a banned peer").SerializeToString(),
                has_payload=True,
            )
        )
        a.p2pt.send_raw(b.peer_id, [pack_batch([bytes((MAGIC, 99)) + bytes(20), *call])])
        calls = await served.first()  # as b has handled the batch, in its turn
        assert a.peer_id not in b.peers  # dropped by the first frame
        assert calls == []  # ...so the call in the same batch was not served


# -- 4. One message from a hostile peer: per-frame refusals, replies and work without bound ----


JUNK = {
    "short": bytes((MAGIC, Kind.CALL, 0)) + (5).to_bytes(4),  # a call too short to read
    "bad-flags": bytes((MAGIC, Kind.CALL, 0xFF)) + (5).to_bytes(4) + bytes(6),  # whole header
}


@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
async def test_a_batch_of_junk_frames_is_refused_once_and_answered_at_most_once(
    junk: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with mesh(2, keepalive_interval=None) as m:
        a, b = m.nodes
        warnings: list[Exception] = []
        b.on("peerwarning", lambda peer_id, error: warnings.append(error))
        channel = b.p2pt._channel_for(a.peer_id)
        sent_back = AfterHandling(b, lambda peer_id, data: channel.buffered_amount)
        count = 220_000 // (len(junk) + 4)
        a.p2pt.send_raw(b.peer_id, [pack_batch([junk] * count)])  # 220 KB, one message
        buffered = await sent_back.first()
        assert len(warnings) <= 1
        assert buffered <= BATCH_SIZE  # not one INVALID_ARGUMENT status each


async def test_a_batch_larger_than_any_sender_packs_is_refused() -> None:
    async with mesh(2, keepalive_interval=None) as m:
        a, b = m.nodes
        warned = asyncio.Event()
        b.on("peerwarning", lambda peer_id, error: warned.set())
        channel = b.p2pt._channel_for(a.peer_id)
        sent_back = AfterHandling(b, lambda peer_id, data: channel.buffered_amount)
        ping = to_binary(Envelope(Kind.PING, 1), compact=True)[0]
        a.p2pt.send_raw(b.peer_id, [pack_batch([ping] * 14_000)])  # 238 KB: 14,000 pongs
        await asyncio.wait_for(warned.wait(), 10)
        assert await sent_back.first() <= BATCH_SIZE


async def test_a_frame_shorter_than_a_header_is_a_malformed_batch() -> None:
    # The fuzz property (f[1] != 14 for every frame) assumes none; a 1-byte frame reads today.
    with pytest.raises(EnvelopeError):
        list(iter_batch(pack_batch([bytes((MAGIC,))])))


# -- 5. One send of many packable messages: one batch past the limit (and past aiortc's) -------


@pytest.mark.parametrize("count", [3, 40])
async def test_one_send_of_many_small_messages_never_packs_past_the_limit(count: int) -> None:
    async with swarm(2) as s:
        a, b = s.peers
        got: list[bytes] = []
        messages: list[bytes] = []
        done = asyncio.Event()

        def on_binary(peer_id: str, data: bytes, connection: int) -> None:
            messages.append(data)
            got.extend(frames_of(data))
            if number(data) == 999_999:
                done.set()

        b.binary_handler = on_binary
        a.send_raw(b.peer_id, [frame(0)], pack=pack_batch)  # opens the turn
        a.send_raw(b.peer_id, [frame(n, 8 * 1024) for n in range(1, count + 1)], pack=pack_batch)
        a.send_raw(b.peer_id, [frame(999_999)])  # unpacked: what waits to be packed leaves first
        await asyncio.wait_for(done.wait(), 10)
        assert [number(f) for f in got] == [*range(count + 1), 999_999]
        assert all(sum(map(len, iter_batch(m))) <= BATCH_SIZE for m in messages if is_batch(m))
