"""Small binary messages sent together leave packed into one data-channel message, in order.

Over real WebRTC on loopback, with the node's batch layout (``p2prpc.wire.envelope.pack_batch``);
the receiving side here is raw P2PT, so each test sees exactly which data-channel messages came.
"""

from __future__ import annotations

import asyncio

import pytest

from p2prpc import P2PT
from p2prpc.errors import PeerError, SendQueueFull
from p2prpc.swarm.connection import Connection
from p2prpc.testing import swarm
from p2prpc.wire.envelope import MAGIC, is_batch, iter_batch, pack_batch

pytestmark = pytest.mark.asyncio

LIMIT = 16 * 1024


def channel_to(p2pt: P2PT, other: P2PT) -> Connection:
    return next(iter(p2pt._remotes[other.peer_id].channels.values()))


def frame(n: int, size: int = 100) -> bytes:
    """A stand-in binary frame: the magic byte, then ``n`` in four bytes, padded to ``size``."""
    return bytes((MAGIC,)) + n.to_bytes(4) + b"\x00" * (size - 5)


def number(data: bytes) -> int:
    return int.from_bytes(data[1:5])


class Received:
    """What ``b`` receives from ``a``: each data-channel message, and the frames in them."""

    def __init__(self, b: P2PT) -> None:
        self.messages: list[bytes] = []
        self.frames: list[bytes] = []
        self.changed = asyncio.Event()
        b.binary_handler = self.on_binary

    def on_binary(self, peer_id: str, data: bytes, connection: int) -> None:
        self.messages.append(data)
        self.frames += list(iter_batch(data)) if is_batch(data) else [data]
        self.changed.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(30):
            while len(self.frames) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_a_burst_leaves_packed_and_in_order_and_its_first_message_at_once() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        got = Received(b)
        channel = channel_to(a, b)
        dc = channel.link._dc
        assert dc is not None
        a.send_raw(b.peer_id, [frame(0)], pack=pack_batch)
        assert dc.bufferedAmount == 100  # the first of the burst went to the data channel now
        for n in range(1, 1000):
            a.send_raw(b.peer_id, [frame(n)], pack=pack_batch)
        # The rest wait for the end of this turn of the loop, or leave each time a batch is full.
        assert channel.buffered_amount == dc.bufferedAmount + channel._corked_bytes
        assert channel._corked_bytes > 0
        await got.until(1000)
        assert [number(f) for f in got.frames] == list(range(1000))
        assert not is_batch(got.messages[0])
        # 999 × 100 bytes in batches of at most 16 KiB: 7 of them, and the first alone.
        assert len(got.messages) <= 1 + -(-999 * 100 // LIMIT) + 1
        # The limit bounds the frames packed together (the batch adds 3 + 4 bytes per frame).
        assert all(sum(map(len, iter_batch(m))) <= LIMIT for m in got.messages[1:])


async def test_messages_without_pack_large_ones_and_text_keep_their_order_unpacked() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        order: list[str] = []
        done = asyncio.Event()

        def seen(what: str) -> None:
            order.append(what)
            if len(order) == 8:
                done.set()

        def on_binary(peer_id: str, data: bytes, connection: int) -> None:
            for f in iter_batch(data) if is_batch(data) else [data]:
                seen(f"b{number(f)}:{len(f)}")

        b.binary_handler = on_binary
        b.on("msg", lambda peer, msg: seen(f"text:{msg}"))
        a.send_raw(b.peer_id, [frame(0)], pack=pack_batch)
        a.send_raw(b.peer_id, [frame(1)], pack=pack_batch)
        a.send_raw(b.peer_id, [frame(2, LIMIT // 2 + 1)], pack=pack_batch)  # too big to pack
        a.send_raw(b.peer_id, [frame(3)], pack=pack_batch)
        a.send_raw(b.peer_id, [frame(4)])  # not packable: flushes what waits, then goes
        a.post(a.peers[b.peer_id], "hello", 7)  # a P2PT text message between them
        a.send_raw(b.peer_id, [frame(5)], pack=pack_batch)
        a.send_raw(b.peer_id, [frame(99)], pack=pack_batch)
        await asyncio.wait_for(done.wait(), 30)
        assert order == [
            "b0:100",
            "b1:100",
            f"b2:{LIMIT // 2 + 1}",
            "b3:100",
            "b4:100",
            "text:hello",
            "b5:100",
            "b99:100",
        ]


async def test_messages_that_waited_in_the_queue_leave_packed_and_can_be_withdrawn() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        got = Received(b)
        channel = channel_to(a, b)
        block = 60 * 1024
        filler = [frame(10_000 + i, block) for i in range(40)]  # past the high-water mark
        a.send_raw(b.peer_id, filler)
        assert channel.queued_bytes > 0
        a.send_raw(b.peer_id, [frame(n) for n in range(500)], tag="kept", pack=pack_batch)
        a.send_raw(b.peer_id, [frame(n) for n in range(500, 600)], tag="gone", pack=pack_batch)
        a.send_raw(b.peer_id, [frame(n) for n in range(600, 700)], tag="kept", pack=pack_batch)
        assert a.withdraw(b.peer_id, "gone") == 100
        await got.until(40 + 600)
        small = [number(f) for f in got.frames if len(f) == 100]
        assert small == list(range(500)) + list(range(600, 700))
        packed = [m for m in got.messages if is_batch(m)]
        assert len(got.messages) - 40 == len(packed) <= 6  # 600 × 104 bytes in 16 KiB batches


async def test_what_waits_to_be_packed_counts_toward_the_send_queue_cap() -> None:
    cap = 2 * 2**20
    async with swarm(2, max_send_queue=cap) as s:
        a, b = s.peers
        channel = channel_to(a, b)
        high = channel.options.high_water_mark
        a.send_raw(b.peer_id, [frame(0)], pack=pack_batch)  # opens the turn
        corked = 0
        while channel._corked_bytes + 100 <= LIMIT:
            a.send_raw(b.peer_id, [frame(1)], pack=pack_batch)
            corked += 100
        assert channel._corked_bytes == corked
        # The data channel's room is what the high-water mark leaves past what waits packed.
        dc = channel.link._dc
        assert dc is not None
        room = high - dc.bufferedAmount - channel._corked_bytes
        a.send_raw(b.peer_id, [frame(2, 60_000) for _ in range(room // 60_000 + 1)])
        assert channel._corked_bytes == 0  # what waited left first, in order
        assert channel.queued_bytes == 0  # all of that went to the data channel
        a.send_raw(b.peer_id, [frame(3, 60_000)])  # now past the mark: it waits in the queue
        assert channel.queued_bytes == 60_000
        with pytest.raises(SendQueueFull):
            a.send_raw(b.peer_id, [frame(4, 60_000)] * (cap // 60_000), pack=pack_batch)
        assert channel.queued_bytes == 60_000


async def test_a_data_channel_closing_under_us_is_a_lost_peer_not_an_aiortc_error() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        lost = asyncio.Event()
        a.on("peerclose", lambda peer: lost.set())
        channel = channel_to(a, b)
        dc = channel.link._dc
        assert dc is not None
        a.send_raw(b.peer_id, [frame(0)], pack=pack_batch)
        a.send_raw(b.peer_id, [frame(1)], pack=pack_batch)  # waits for the end of the turn
        dc.close()  # aiortc's readyState is "closing" now: its send would raise
        with pytest.raises(PeerError):
            a.send_raw(b.peer_id, [frame(2)])
        assert channel._corked == []
        await asyncio.wait_for(lost.wait(), 10)  # the peer is lost, as for any closed channel
