"""What a publisher's messages make a subscriber hold, counted as held in memory: JSON-form
messages (a raw P2PT peer writes them by hand, as a JavaScript P2PT app can) kept as compact text
or decoded, never as parsed, in the reorder buffers (per stream and over all streams), the repair
cache and each subscription's queue."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from p2prpc.node import Node
from p2prpc.pubsub import RawTopic, router_of
from p2prpc.testing import loopback_p2pt, mesh, until

pytestmark = pytest.mark.asyncio

#: A message of 9 KB of text that holds about 216 KB parsed, and about 9.7 KB kept (as compact
#: text, with its envelope).
JUNK = [{}] * 3_000
KEPT = 3 * 3_000 + 650


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
                (node.p2pt, "peerconnect"),  # the node lists a peer on connecting, before hello
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
        router.reorder_bytes = 45_000  # 4 messages kept, not 5
        subscription = RawTopic(node, "t").subscribe()
        publish(raw, node, raw.peer_id, 0)
        for seq in (2, 3, 4):  # message 1 never comes: these wait for it
            publish(raw, node, raw.peer_id, seq)
        await until(lambda: router.stats.received == 4, (node.p2pt, "msg"))
        assert 3 * KEPT * 0.9 < router.waiting_bytes <= 3 * KEPT * 1.1
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
        router.reorder_total_bytes = 50_000
        router.cache_bytes = 10_000
        subscription = RawTopic(node, "t").subscribe(max_bytes=25_000)
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
        # What waits, what the subscription holds and the cache, and nothing else (but what the
        # test's own peers allocate meanwhile).
        assert after - before < 1.5 * (50_000 + 25_000 + 10_000) + 300_000
        subscription.close()


async def test_a_subscription_holds_at_most_max_bytes_for_a_reader_that_does_not_read() -> None:
    async with publisher() as (node, raw):
        subscription = RawTopic(node, "t").subscribe(maxsize=1000, max_bytes=25_000)
        for seq in range(10):  # in order: each goes to the subscription at once
            publish(raw, node, raw.peer_id, seq)
        await until(lambda: router_of(node).stats.delivered == 10, (node.p2pt, "msg"))
        assert 0 < subscription.held_bytes <= subscription.max_bytes
        assert subscription.dropped == 10 - subscription.pending() >= 7  # 2 of 9.7 KB fit
        first = await asyncio.wait_for(subscription.__anext__(), 5)
        assert first.message == JUNK and first.seq == subscription.dropped
        subscription.close()


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "raw"])
@pytest.mark.parametrize("gaps", [True, False], ids=["gaps", "in-order"])
async def test_json_messages_are_kept_as_about_what_was_sent(typed: bool, gaps: bool) -> None:
    """Messages of 30 KB of ``[{},{},...]`` (720 KB parsed each) that wait in the reorder
    buffer behind a gap, or in a subscription nobody reads, and in the repair cache: a typed
    topic keeps each decoded, a raw one as compact text, so that the node keeps at most 4 times
    what was sent; the reader then gets each message as it was published."""
    from grpc_health.v1.health_pb2 import HealthCheckRequest

    from p2prpc.pubsub import Topic

    count, junk = 8, [{}] * 10_000
    message = {"service": "s", "x": junk}
    async with publisher() as (node, raw):
        router = router_of(node)
        topic: Any = Topic(node, "t", HealthCheckRequest) if typed else RawTopic(node, "t")
        subscription = topic.subscribe()
        seqs = [0, *range(2, count + 1)] if gaps else list(range(count))
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for seq in seqs:
                publish(raw, node, raw.peer_id, seq, message)
            await until(lambda: router.stats.received == count, (node.p2pt, "msg"))
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        sent = count * (3 * len(junk) + 100)
        assert after - before < 4 * sent + 1024 * count + 300_000
        if gaps:
            assert router.waiting_bytes > 0  # they wait behind message 1
            assert subscription.pending() == 1
            router._skip_gap((raw.peer_id, "t"))
        else:
            assert subscription.held_bytes > 0
        received = await take(subscription, count)
        assert [r.seq for r in received] == seqs
        expected = HealthCheckRequest(service="s") if typed else message
        assert all(r.message == expected for r in received)
        subscription.close()


async def test_no_message_waits_past_the_reorder_timeout_however_many_gaps() -> None:
    """A publisher that sends only every other number leaves a gap before each message: all of
    them are given up on once they have waited ``reorder_timeout``, not one gap a timeout."""
    async with publisher() as (node, raw):
        router = router_of(node)
        router.reorder_timeout = 0.5
        subscription = RawTopic(node, "t").subscribe()
        publish(raw, node, raw.peer_id, 0, "first")
        for seq in range(2, 42, 2):  # 20 messages, each behind a gap of one
            publish(raw, node, raw.peer_id, seq, "x")
        await until(lambda: router.stats.received == 21, (node.p2pt, "msg"))
        async with asyncio.timeout(4 * router.reorder_timeout):  # not 20 timeouts
            delivered = [m.seq for m in await take(subscription, 21)]
        assert delivered == [0, *range(2, 42, 2)]
        assert subscription.lost == 20 and router.waiting_bytes == 0
        subscription.close()
