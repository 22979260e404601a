"""What we queue toward a peer has a cap in bytes; queued data can be withdrawn by tag.

Over real WebRTC on loopback. A peer that "stops reading" is played by dropping every datagram
that reaches its sockets (iptables, tests/rpc/netcut.py), as a stopped process would leave them
unread.
"""

from __future__ import annotations

import asyncio

import pytest
from rpc.netcut import deafen, unavailable_reason

from p2prpc import P2PT
from p2prpc.errors import PeerError, SendQueueFull
from p2prpc.swarm.connection import Connection
from p2prpc.testing import swarm

pytestmark = pytest.mark.asyncio

BLOCK = 60 * 1024  # under aiortc's 64 KiB data-channel message limit
MEGABYTE = [b"\x01" * BLOCK] * 17  # about 1 MB, as 17 binary data-channel messages


def channel_to(p2pt: P2PT, other: P2PT) -> Connection:
    return next(iter(p2pt._remotes[other.peer_id].channels.values()))


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
async def test_a_peer_that_stops_reading_costs_at_most_the_send_queue_cap() -> None:
    cap = 3 * 2**20
    async with swarm(2, max_send_queue=cap) as s:
        a, b = s.peers
        with deafen(b, a.peer_id):
            channel = channel_to(a, b)
            high = channel.options.high_water_mark
            sent = 0
            with pytest.raises(SendQueueFull) as refused:
                while True:  # ends when the cap is spent: nothing drains toward a deaf peer
                    a.send_raw(b.peer_id, MEGABYTE)
                    sent += 1
                    assert channel.queued_bytes <= cap
                    await asyncio.sleep(0)  # let the writer hand what it can to aiortc
            assert isinstance(refused.value, PeerError)
            assert 2 <= sent <= 10  # the cap, 1 MiB in aiortc and what SCTP has in flight
            assert channel.queued_bytes <= cap
            dc = channel.link._dc
            assert dc is not None
            assert dc.bufferedAmount <= high + BLOCK
            queued = channel.queued_bytes
            # send/respond fail through their reply, and send nothing either.
            with pytest.raises(SendQueueFull):
                await a.send(a.peers[b.peer_id], "x" * (cap - queued + 1))
            assert channel.queued_bytes == queued
            # A message that fits is still taken.
            a.send_raw(b.peer_id, [b"\x02" * (cap - queued)])
            assert channel.queued_bytes == cap


async def test_drain_frees_the_queue_for_the_next_send() -> None:
    cap = 2 * 2**20
    async with swarm(2, max_send_queue=cap) as s:
        a, b = s.peers
        received = asyncio.Queue[bytes]()
        b.binary_handler = lambda peer_id, data, connection: received.put_nowait(data)
        channel = channel_to(a, b)
        for _ in range(40):
            try:
                a.send_raw(b.peer_id, MEGABYTE)
            except SendQueueFull:
                await a.drain(b.peer_id)
                assert channel.queued_bytes == 0
                a.send_raw(b.peer_id, MEGABYTE)  # fits now
        count = 0
        while count < 40 * len(MEGABYTE):
            assert len(await asyncio.wait_for(received.get(), 30)) == BLOCK
            count += 1


async def test_withdraw_drops_what_is_still_queued_with_that_tag() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        received: list[bytes] = []
        done = asyncio.Event()

        def on_binary(peer_id: str, data: bytes, connection: int) -> None:
            received.append(data[:1])
            if data[:1] == b"\x09":
                done.set()

        b.binary_handler = on_binary
        channel = channel_to(a, b)
        filler = [b"\x01" * BLOCK] * 40  # past the high-water mark: what follows waits
        a.send_raw(b.peer_id, filler)
        a.send_raw(b.peer_id, [b"\x02" * BLOCK] * 10, tag="call 1")
        a.send_raw(b.peer_id, [b"\x03" * BLOCK] * 5, tag="call 2")
        a.send_raw(b.peer_id, [b"\x09"])
        assert channel.queued_bytes > 0
        before = channel.queued_bytes
        withdrawn = a.withdraw(b.peer_id, "call 1")
        assert withdrawn == 10
        assert channel.queued_bytes == before - 10 * BLOCK
        assert a.withdraw(b.peer_id, "call 1") == 0
        await asyncio.wait_for(done.wait(), 30)
        assert b"\x02" not in received
        assert received.count(b"\x03") == 5
        assert received.count(b"\x01") == 40
        assert received[-1] == b"\x09"


async def test_withdraw_needs_a_tag() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        with pytest.raises(ValueError):
            channel_to(a, b).withdraw(None)  # type: ignore[arg-type]
        assert a.withdraw("0" * 40, "anything") == 0  # an unknown peer has nothing queued
