"""A topic message larger than a neighbour's hello says it reads is not sent to that neighbour,
and goes to the others as ever: the publisher honours the limit, instead of the neighbour
refusing what crossed."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf.wrappers_pb2 import BytesValue

from p2prpc.pubsub import Topic, router_of
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.envelope import is_batch, iter_batch

pytestmark = pytest.mark.asyncio


async def test_a_neighbour_is_sent_no_topic_message_larger_than_it_reads() -> None:
    async with TrackerServer(LOOPBACK, 0) as tracker:
        publisher = loopback_node([tracker.url], "lim")
        small = loopback_node([tracker.url], "lim", max_message_size=2000)
        large = loopback_node([tracker.url], "lim")
        nodes = (publisher, small, large)
        try:
            for node in nodes:
                await node.start()
            seen: list[bytes] = []  # every binary data-channel message ``small`` receives
            handler = small.p2pt.binary_handler
            assert handler is not None

            def recorded(peer_id: str, data: bytes, connection: int) -> None:
                seen.append(data)
                handler(peer_id, data, connection)

            small.p2pt.binary_handler = recorded
            subs = {n: Topic(n, "t", BytesValue).subscribe() for n in (small, large)}
            await publisher.wait_until(
                lambda: (
                    all(
                        "t" in info.topics and info.max_message_size is not None
                        for pid, info in publisher.peers.items()
                        if pid in (small.peer_id, large.peer_id)
                    )
                    and len(publisher.peers) == 2
                ),
                20,
            )
            topic = Topic(publisher, "t", BytesValue)
            assert await topic.publish(BytesValue(value=bytes(3000))) == 1  # to ``large`` only
            assert await topic.publish(BytesValue(value=b"small")) == 2
            async with asyncio.timeout(20):
                got_large = [await anext(subs[large]) for _ in range(2)]
                got_small = await anext(subs[small])
            assert [len(r.message.value) for r in got_large] == [3000, 5]
            assert got_small.message.value == b"small"
            assert router_of(publisher).stats.too_large == 1
            assert router_of(small).stats.bad_payloads == 0  # nothing came that it refused
            frames = [f for m in seen for f in (iter_batch(m) if is_batch(m) else [m])]
            assert max(map(len, frames)) < 2000
        finally:
            for node in nodes:
                await node.close()
