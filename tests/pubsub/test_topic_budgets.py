"""What a publisher's messages make a subscriber hold, counted as held in memory: JSON-form
messages parsed (a raw P2PT peer writes them by hand, as a JavaScript P2PT app can), in the reorder
buffers (per stream and over all streams) and in each subscription's queue."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from p2prpc.node import Node
from p2prpc.pubsub import RawTopic, router_of
from p2prpc.testing import loopback_p2pt, mesh

pytestmark = pytest.mark.asyncio

#: A message of 9 KB of text that holds about 216 KB parsed.
JUNK = [{}] * 3_000
HELD = 3_000 * 72 + 2_000


async def until(
    condition: Callable[[], bool], *sources: tuple[Any, str], timeout: float = 10
) -> None:
    """Wait until ``condition()`` holds, checked now and after each ``(emitter, event)`` of
    ``sources`` (what changes what it reads)."""
    changed = asyncio.Event()
    listeners = [
        (emitter, event, emitter.on(event, lambda *_: changed.set())) for emitter, event in sources
    ]
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                changed.clear()
                await changed.wait()
    finally:
        for emitter, event, listener in listeners:
            emitter.remove_listener(event, listener)


@asynccontextmanager
async def publisher() -> AsyncIterator[tuple[Node, Any]]:
    """A node and a plain P2PT peer connected to it."""
    async with mesh(1) as m:
        node = m.nodes[0]
        raw = loopback_p2pt([m.tracker.url], "p2prpc")
        try:
            await raw.start()
            await until(
                lambda: node.peer_id in raw.peers and raw.peer_id in node.peers,
                (raw, "peerconnect"),
                (node, "peer"),
                timeout=30,
            )
            yield node, raw
        finally:
            await raw.destroy()


async def take(subscription: Any, count: int) -> list[Any]:
    return [await asyncio.wait_for(subscription.__anext__(), 5) for _ in range(count)]


def publish(raw: Any, node: Node, origin: str, seq: int, msg: Any = JUNK) -> None:
    envelope = {"pub": "t", "from": origin, "hops": 0, "seq": seq, "msg": msg}
    raw.post(raw.peers[node.peer_id], envelope, 700_000 + seq)


async def test_the_reorder_buffer_counts_json_messages_by_what_they_hold() -> None:
    async with publisher() as (node, raw):
        router = router_of(node)
        router.reorder_bytes = 1_000_000
        subscription = RawTopic(node, "t").subscribe()
        publish(raw, node, raw.peer_id, 0)
        for seq in (2, 3, 4):  # message 1 never comes: these wait for it
            publish(raw, node, raw.peer_id, seq)
        await until(lambda: router.stats.received == 4, (node.p2pt, "msg"))
        assert 3 * HELD * 0.9 < router.waiting_bytes <= router.reorder_bytes
        assert router.stats.skipped_gaps == 0
        for seq in (5, 6):  # over the stream's budget: message 1 is given up on
            publish(raw, node, raw.peer_id, seq)
        await until(lambda: router.stats.received == 6, (node.p2pt, "msg"))
        assert router.stats.skipped_gaps == 1 and subscription.lost == 1
        assert router.waiting_bytes == 0
        assert [m.seq for m in await take(subscription, 6)] == [0, 2, 3, 4, 5, 6]
        subscription.close()


async def test_the_reorder_buffers_together_hold_at_most_their_total() -> None:
    async with publisher() as (node, raw):
        router = router_of(node)
        router.reorder_total_bytes = 1_000_000
        router.cache_bytes = 100_000
        subscription = RawTopic(node, "t").subscribe(max_bytes=500_000)
        origins = [f"{i:040x}" for i in range(1, 6)]
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for origin in origins:  # five streams, each with a gap at 0 after its start
                publish(raw, node, origin, 0, "first")
                for seq in (2, 3, 4):
                    publish(raw, node, origin, seq)
            await until(lambda: router.stats.received == 20, (node.p2pt, "msg"))
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert router.waiting_bytes <= router.reorder_total_bytes
        assert router.stats.skipped_gaps >= 1
        assert subscription.held_bytes <= subscription.max_bytes
        # What waits, what the subscription holds and the cache, and nothing else.
        assert after - before < 1.5 * (1_000_000 + 500_000 + 100_000)
        subscription.close()


async def test_a_subscription_holds_at_most_max_bytes_for_a_reader_that_does_not_read() -> None:
    async with publisher() as (node, raw):
        subscription = RawTopic(node, "t").subscribe(maxsize=1000, max_bytes=600_000)
        for seq in range(10):  # in order: each goes to the subscription at once
            publish(raw, node, raw.peer_id, seq)
        await until(lambda: router_of(node).stats.delivered == 10, (node.p2pt, "msg"))
        assert 0 < subscription.held_bytes <= subscription.max_bytes
        assert subscription.dropped == 10 - subscription.pending() >= 7  # 2 of 216 KB fit
        first = await asyncio.wait_for(subscription.__anext__(), 5)
        assert first.message == JUNK and first.seq == subscription.dropped
        subscription.close()
