"""What a peer's session description announces it takes (``a=max-message-size``) is honoured in
bytes, on every path a data-channel message leaves by; a message that cannot fit fails alone.

The peer here is aiortc announcing a smaller size (``lab.peers.Announcing``), as a WebRTC stack
with a smaller receive limit would; aiortc itself refuses to send past what the remote announced,
from inside whatever handed it the message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from lab.peers import Announcing

from p2prpc import P2PT, TooLargeForPeer
from p2prpc.testing import LOOPBACK, loopback_p2pt, until, wait_connected
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.envelope import MAGIC, is_batch, iter_batch, pack_batch

pytestmark = pytest.mark.asyncio

SMALL = 4096


@asynccontextmanager
async def small_peer(**options: Any) -> AsyncIterator[tuple[P2PT, P2PT, list[str | bytes]]]:
    """``a``, a plain peer, and ``b``, which announces SMALL bytes; and every data-channel
    message ``b`` receives, as it came."""
    async with TrackerServer(LOOPBACK, 0) as tracker:
        a = loopback_p2pt([tracker.url], "limits", **options)
        b = loopback_p2pt([tracker.url], "limits", **options)
        b.pool.transport = Announcing(SMALL)
        received: list[str | bytes] = []
        b.on("data", lambda peer, data: received.append(data))
        try:
            await a.start()
            await b.start()
            await wait_connected([a, b], 1)
            yield a, b, received
        finally:
            await a.destroy()
            await b.destroy()


def wire_size(data: str | bytes) -> int:
    return len(data.encode()) if isinstance(data, str) else len(data)


def frame(n: int, size: int = 100) -> bytes:
    """A stand-in binary frame: the magic byte, ``n`` in four bytes, padded to ``size``."""
    return bytes((MAGIC,)) + n.to_bytes(4) + b"\x00" * (size - 5)


def numbers(received: list[str | bytes]) -> list[int]:
    found = []
    for data in received:
        if isinstance(data, bytes):
            for f in iter_batch(data) if is_batch(data) else [data]:
                found.append(int.from_bytes(f[1:5]))
    return found


async def test_p2pt_messages_are_cut_to_what_the_peer_takes_in_utf8_bytes() -> None:
    async with small_peer() as (a, b, received):
        assert a.channel(b.peer_id).max_message_size == SMALL
        assert b.channel(a.peer_id).max_message_size == 262144  # what aiortc announces
        peer = a.peers[b.peer_id]
        # 16000 units of these take up to 6 bytes each as frame text: far past 4096.
        text = '\x01é😀"' * 5000
        value = {"k": ["\x02" * 3000, "ü" * 7000]}
        got: list[Any] = []
        b.on("msg", lambda peer, msg: got.append(msg))
        a.post(peer, text, 111111)
        reply = a.send(peer, value)
        await until(lambda: len(got) == 2, (b, "msg"), timeout=20)
        assert got == [text, value]
        assert max(map(wire_size, received)) <= SMALL
        assert len(received) > 4  # finer than P2PT's 16000 units, which would make 2 + 2
        reply.cancel()


async def test_a_raw_message_larger_than_the_peer_takes_fails_alone() -> None:
    async with small_peer() as (a, b, received):
        with pytest.raises(TooLargeForPeer) as caught:
            a.send_raw(b.peer_id, [frame(1), frame(2, SMALL + 1)])  # all or nothing
        assert (caught.value.size, caught.value.limit) == (SMALL + 1, SMALL)
        a.send_raw(b.peer_id, [frame(3, SMALL)])
        await until(lambda: numbers(received) == [3], (b, "data"))


async def test_batches_keep_within_what_the_peer_takes() -> None:
    async with small_peer() as (a, b, received):
        for n in range(400):  # in one turn of the loop: they leave packed
            a.send_raw(b.peer_id, [frame(n, 1000)], pack=pack_batch, pack_limit=16 * 1024)
        await until(lambda: len(numbers(received)) == 400, (b, "data"), timeout=20)
        assert numbers(received) == list(range(400))
        assert any(is_batch(m) for m in received if isinstance(m, bytes))
        assert max(map(wire_size, received)) <= SMALL


async def test_what_waits_in_the_send_queue_behind_a_refused_message_still_leaves() -> None:
    async with small_peer() as (a, b, received):
        channel = a.channel(b.peer_id)
        count = 2 * channel.options.high_water_mark // SMALL  # past the high-water mark
        a.send_raw(b.peer_id, [frame(n, SMALL) for n in range(count)])
        assert channel.queued_bytes > 0  # the writer drains them as the buffer empties
        with pytest.raises(TooLargeForPeer):
            a.send_raw(b.peer_id, [frame(count, SMALL + 1)])
        for n in range(count + 1, count + 200):  # queued, and packed as they leave
            a.send_raw(b.peer_id, [frame(n, 1000)], pack=pack_batch)
        await until(lambda: len(numbers(received)) == count + 199, (b, "data"), timeout=30)
        assert numbers(received) == [n for n in range(count + 200) if n != count]
        assert max(map(wire_size, received)) <= SMALL
