"""Signed topic messages across a relay: what a relay can and cannot do to them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc import Identity
from p2prpc.node import Node
from p2prpc.pubsub import Topic, router_of
from p2prpc.pubsub.router import Payload, Router
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.envelope import Envelope, Kind
from p2prpc.wire.frames import new_message_id

pytestmark = pytest.mark.asyncio


@asynccontextmanager
async def line() -> AsyncIterator[tuple[Node, Node, Node]]:
    """Publisher — relay — subscriber: the two ends admit only the relay, so every message
    between them crosses it."""
    p_id, r_id, s_id = (Identity.generate() for _ in range(3))
    async with TrackerServer("127.0.0.1", 0) as tracker:
        only_relay = [r_id.public_key]
        nodes = [
            loopback_node([tracker.url], "topics", identity=p_id, allowed_peers=only_relay),
            loopback_node([tracker.url], "topics", identity=r_id),
            loopback_node([tracker.url], "topics", identity=s_id, allowed_peers=only_relay),
        ]
        try:
            for node in nodes:
                await node.start()
            publisher, relay, subscriber = nodes
            router_of(relay)  # it runs pub/sub, so it relays
            async with asyncio.timeout(20):
                await relay.wait_for_peers(2)
                await publisher.wait_until(
                    lambda: (
                        getattr(publisher.peers.get(relay.peer_id), "extra", {}).get("relay")
                        is True
                    )
                )
                await subscriber.wait_for_peers(1)
            assert set(subscriber.peers) == {relay.peer_id}
            yield publisher, relay, subscriber
        finally:
            for node in nodes:
                await node.close()


async def subscribed(node: Node, topic: str, *others: Node) -> None:
    async with asyncio.timeout(10):
        await asyncio.gather(
            *(
                o.wait_until(lambda o=o: topic in getattr(o.peers.get(node.peer_id), "topics", ()))
                for o in others
            )
        )


async def test_signed_messages_cross_a_relay_and_an_altered_one_is_dropped() -> None:
    async with line() as (publisher, relay, subscriber):
        subscriber.layer("pubsub", lambda node: Router(node, reorder_timeout=0.2))
        news = Topic(subscriber, "news", StringValue)
        async with news.subscribe() as received:
            await subscribed(subscriber, "news", relay)
            topic = Topic(publisher, "news", StringValue)
            await topic.publish(StringValue(value="hello"))
            async with asyncio.timeout(10):
                first = await anext(received)
            assert first.message.value == "hello" and first.sender == publisher.peer_id
            assert first.publisher == publisher.identity.public_key  # type: ignore[union-attr]

            router = router_of(relay)
            honest = router._send_on

            def alter(
                envelope: Envelope, payload: Payload, exclude: set[str], sign: Any = None
            ) -> int:
                form = payload.form_for(True)
                assert form is not None and form[0]
                return honest(
                    envelope,
                    Payload(binary=form[1].replace(b"hello again", b"HELLO again")),
                    exclude,
                    sign,
                )

            router._send_on = alter  # type: ignore[method-assign]
            await topic.publish(StringValue(value="hello again"))
            await topic.publish(StringValue(value="hello once more"))
            async with asyncio.timeout(10):  # after the gap left by the altered one
                last = await anext(received)
            assert last.message.value == "hello once more"  # "HELLO again" never came
            stats = router_of(subscriber).stats
            assert stats.skipped_gaps == 1
            assert stats.bad_signatures == 1 and received.pending() == 0


async def test_a_stranger_cannot_spoil_a_publishers_stream_and_filters_hold() -> None:
    async with line() as (publisher, relay, subscriber):
        key = publisher.identity.public_key  # type: ignore[union-attr]
        news = Topic(subscriber, "news", StringValue)
        async with news.subscribe() as everyone, news.subscribe(publishers=[key]) as signed:
            await subscribed(subscriber, "news", relay)
            # The relay claims the publisher's peer id with a sequence number far ahead.
            forged = StringValue(value="forged").SerializeToString()
            relay.send(
                subscriber.peer_id,
                Envelope(
                    Kind.PUBLISH,
                    new_message_id(),
                    10**6,
                    payload=forged,
                    has_payload=True,
                    topic="news",
                    origin=publisher.peer_id,
                ),
            )
            async with asyncio.timeout(10):
                spoof = await anext(everyone)
            assert spoof.message.value == "forged" and spoof.publisher is None
            await Topic(publisher, "news", StringValue).publish(StringValue(value="real"))
            async with asyncio.timeout(10):
                real = await anext(signed)
                also = await anext(everyone)
            assert real.message.value == "real" and real.publisher == key and real.seq == 0
            assert also == real  # not dropped as late behind the forgery's number
            assert signed.pending() == 0 and router_of(subscriber).stats.late == 0
