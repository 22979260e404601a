"""p2prpc topics in a worker process: the ``pubsub.*`` commands (fan-out and swarm rows).

Written against p2prpc's topic API::

    from p2prpc.pubsub import Topic
    topic = Topic(node, "bench", BytesValue)
    await topic.publish(message)
    async for received in topic.subscribe():
        received.message, received.sender

:func:`make_topic` is the only place that touches ``p2prpc.pubsub`` (imported at run time, so
that this module loads, and type-checks, against a p2prpc without topics, whose rows are then
skipped), and :data:`SWARM_NODE_OPTIONS` the only place that knows how a node's degree is bounded:
adapt those two if the API changes.

A message carries its publish time and a sequence number (``bench.stamp``), so subscribers measure
latency and count distinct deliveries themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Protocol

from google.protobuf.wrappers_pb2 import BytesValue

from p2prpc.node import Node

from . import udp
from .peer_rpc import rss
from .stamp import Receipts, now_ms, stamped

TOPIC = "bench"

DEGREE = 8
"""The degree bound the swarm row gives each node: P2PT's ``max_peers``."""

SWARM_NODE_OPTIONS: dict[str, Any] = {"max_peers": DEGREE}
"""Node keyword arguments for the swarm row's nodes."""

MIN_DEGREE = DEGREE // 2
"""A swarm counts as formed once every node has said hello to this many peers (P2PT's default
``min_peers``: below it a node keeps asking the trackers for more)."""


class Received(Protocol):
    @property
    def message(self) -> BytesValue: ...

    @property
    def sender(self) -> str: ...


class TopicLike(Protocol):
    async def publish(self, message: BytesValue) -> object: ...

    def subscribe(self) -> AsyncIterator[Received]: ...


def make_topic(node: Node) -> TopicLike:
    """``Topic(node, "bench", BytesValue)`` from ``p2prpc.pubsub``."""
    module = importlib.import_module("p2prpc.pubsub")
    topic: TopicLike = module.Topic(node, TOPIC, BytesValue)
    return topic


class _Member:
    """One node with its topic, and what its subscription received."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.topic = make_topic(node)
        self.receipts = Receipts()
        self.task: asyncio.Task[None] | None = None
        self.published = False
        self.subscription: AsyncIterator[Received] | None = None

    def subscribe(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._receive())

    async def _receive(self) -> None:
        subscription = self.subscription = self.topic.subscribe()
        async for received in subscription:
            self.receipts.record(received.message.value)

    def counters(self) -> dict[str, int]:
        """The router's counters and the subscription's drops, where the API offers them."""
        found: dict[str, int] = {}
        stats = getattr(self.topic, "stats", None)
        if stats is not None and hasattr(stats, "__dict__"):
            found.update({k: v for k, v in vars(stats).items() if isinstance(v, int)})
        dropped = getattr(self.subscription, "dropped", None)
        if isinstance(dropped, int):
            found["subscription_dropped"] = dropped
        return found

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.node.close()


class PubSubPeer:
    """One or more nodes (``join``: one, ``swarm_join``: several), each with the bench topic."""

    def __init__(self) -> None:
        self.members: list[_Member] = []

    async def _start(self, urls: list[str], identifier: str, **options: Any) -> _Member:
        node = Node(
            urls,
            identifier,
            ice_servers=[],
            host_addresses=["127.0.0.1"],
            udp_buffer_size=udp.buffer_size(),
            **options,
        )
        member = _Member(node)
        self.members.append(member)
        await node.start()
        return member

    async def cmd_join(self, urls: list[str], identifier: str, transport: str = "aiortc") -> str:
        """Start a node on ``transport`` (``aiortc`` or ``libwebrtc``); its peer id."""
        member = await self._start(urls, identifier, transport=transport)
        return member.node.peer_id

    async def cmd_subscribe(self) -> None:
        for member in self.members:
            member.subscribe()

    async def cmd_wait_subscribers(self, count: int, timeout: float = 60.0) -> str:
        """Wait until ``count`` peers said they subscribe (or, failing that, said hello).

        Says how the wait ended: ``their topics`` when hellos list the topic, ``their hellos``
        when they never did and the wait settled for hellos and a grace period; or, at the
        timeout, how many peers were connected, said hello and subscribe (the others may still
        be reached through relays).
        """
        node = self.members[0].node
        deadline = time.monotonic() + timeout
        hello_since: float | None = None
        while True:
            infos = list(node.peers.values())
            subscribed = sum(TOPIC in info.topics for info in infos)
            said_hello = sum(info.hello for info in infos)
            if subscribed >= count:
                return "their topics"
            if said_hello >= count:
                hello_since = hello_since or time.monotonic()
                if time.monotonic() - hello_since > 5.0:
                    return "their hellos"
            if time.monotonic() > deadline:
                return (
                    f"an incomplete mesh after {timeout:.0f} s: {len(node.p2pt.peers)} peers "
                    f"connected, {said_hello} said hello, {subscribed} subscribe"
                )
            await asyncio.sleep(0.05)

    async def cmd_reset(self) -> None:
        for member in self.members:
            member.receipts.reset()

    async def cmd_publish(self, count: int, size: int, interval: float = 0.0) -> dict[str, float]:
        """Publish ``count`` messages of ``size`` bytes, ``interval`` seconds apart (0: at once)."""
        member = self.members[0]
        member.published = True
        first = now_ms()
        for seq in range(count):
            message = BytesValue(value=stamped(seq, size))
            await member.topic.publish(message)
            if interval:
                await asyncio.sleep(interval)
        return {"t_first_ms": first, "t_done_ms": now_ms()}

    async def cmd_collect(
        self, count: int, timeout: float = 60.0, quiet: float = 3.0
    ) -> dict[str, Any]:
        """Wait for ``count`` messages (or ``quiet`` seconds without one); what came."""
        member = self.members[0]
        await member.receipts.wait(count, timeout, quiet)
        return {**member.receipts.result(), "counters": member.counters()}

    # -- the swarm ----------------------------------------------------------------------------

    async def cmd_swarm_join(
        self, urls: list[str], identifier: str, count: int, transport: str = "aiortc"
    ) -> None:
        """Start ``count`` nodes on ``transport``, each subscribed to the topic."""
        for _ in range(count):
            member = await self._start(urls, identifier, transport=transport, **SWARM_NODE_OPTIONS)
            member.subscribe()

    async def cmd_swarm_formed(self, timeout: float = 120.0) -> None:
        """Wait until every node here has said hello to ``MIN_DEGREE`` peers."""
        async with asyncio.timeout(timeout):
            for member in self.members:
                await member.node.wait_for_peers(MIN_DEGREE)

    async def cmd_swarm_connections(self) -> int:
        """Peers connected, summed over this process's nodes."""
        return sum(len(member.node.p2pt.peers) for member in self.members)

    async def cmd_swarm_collect(
        self, count: int, timeout: float = 120.0, quiet: float = 10.0
    ) -> dict[str, Any]:
        """Distinct messages received, summed over this process's nodes that did not publish,
        and their counters, summed."""
        listeners = [m for m in self.members if not m.published]
        await asyncio.gather(*(m.receipts.wait(count, timeout, quiet) for m in listeners))
        counters: Counter[str] = Counter()
        for member in listeners:
            counters.update(member.counters())
        received = sum(len(m.receipts.latencies) for m in listeners)
        return {"received": received, "counters": counters}

    # -- healing (the heal row) -----------------------------------------------------------------

    async def cmd_leave(self, count: int) -> list[str]:
        """Close ``count`` of this process's nodes, the last started first (never the first,
        which publishes); returns their peer ids."""
        leaving = [m for m in self.members[1:] if not m.published][-count:] if count else []
        for member in leaving:
            self.members.remove(member)
            await member.close()
        return [m.node.peer_id for m in leaving]

    async def cmd_neighbours(self) -> dict[str, list[str]]:
        """Each node's connected peers, by the node's peer id."""
        return {m.node.peer_id: list(m.node.p2pt.peers) for m in self.members}

    async def cmd_rss(self) -> int:
        return rss()

    async def aclose(self) -> None:
        members, self.members = self.members, []
        await asyncio.gather(*(m.close() for m in members), return_exceptions=True)
