"""Delivered or reported, whatever a subscriber's neighbours do, over real WebRTC on loopback.

A subscriber frozen (a process stopped with SIGSTOP) or deaf (what reaches its sockets is dropped:
iptables, tests/rpc/netcut.py) holds up no other subscriber, and once back gets what it missed, or
is told it was lost. Connections that drop and come back, a relay lost and back, a relay replaced
by another: every message published is delivered in order or counted in
``subscription.lost``/``gaps``, never silently missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from rpc.netcut import deafen, unavailable_reason

from p2prpc.node import Node
from p2prpc.pubsub import Subscription, Topic, router_of
from p2prpc.testing import loopback_node, mesh, until
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.envelope import Envelope, Kind

pytestmark = pytest.mark.asyncio

HERE = Path(__file__).resolve().parent
TOPIC = "t"
#: The longest a healthy subscriber may go without a message while another is frozen (messages
#: are published every 5 ms; before, it waited on the frozen one for seconds).
MAX_GAP = 1.0


class Watched(Subscription[StringValue]):
    """A subscription that records what it is given and what it is told was lost, as it
    happens, and when (``changed`` is set at each)."""

    def __init__(self, node: Node) -> None:
        super().__init__(Topic(node, TOPIC, StringValue), maxsize=1_000_000)
        self.seqs: list[int] = []
        self.times: list[float] = []
        self.reported: list[int] = []
        self.changed = asyncio.Event()

    def deliver(self, envelope: Envelope) -> None:
        super().deliver(envelope)
        self.seqs.append(envelope.seq)
        self.times.append(time.monotonic())
        self.changed.set()

    def lost_messages(
        self, sender: str, first: int, last: int, publisher: bytes | None = None
    ) -> None:
        super().lost_messages(sender, first, last, publisher)
        self.reported += range(first, last + 1)
        self.changed.set()


async def wait_for(condition: Callable[[], bool], changed: asyncio.Event, timeout: float) -> None:
    """Wait until ``condition()`` holds, checked now and whenever ``changed`` is set."""
    async with asyncio.timeout(timeout):
        while not condition():
            changed.clear()
            await changed.wait()


def assert_accounted(delivered: list[int], reported: list[int], published: int) -> None:
    """Every message published was delivered, in order and once, or reported lost, once."""
    assert delivered == sorted(set(delivered)), "delivered out of order or twice"
    assert sorted(delivered + reported) == list(range(published))


class Publisher:
    """Publishes numbered messages of ``size`` bytes every 5 ms in the background."""

    def __init__(self, node: Node, size: int = 100) -> None:
        self.topic = Topic(node, TOPIC, StringValue)
        self.size = size
        self.count = 0
        self.changed = asyncio.Event()
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop:
            await self.topic.publish(StringValue(value="x" * self.size))
            self.count += 1
            self.changed.set()
            await asyncio.sleep(0.005)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    @property
    def running(self) -> bool:
        return not self._stop

    async def published(self, count: int) -> None:
        await wait_for(lambda: self.count >= count, self.changed, 30)

    async def stop(self) -> int:
        """Stop after the message being published; how many were."""
        self._stop = True
        if self._task is not None:
            await self._task
        return self.count


def subscribes(node: Node, subscriber: Node) -> bool:
    info = node.peers.get(subscriber.peer_id)
    return info is not None and TOPIC in info.topics


def relays(node: Node, relay: Node) -> bool:
    info = node.peers.get(relay.peer_id)
    return info is not None and info.extra.get("relay") is True


def drop(node: Node, other: Node) -> None:
    """Close every connection from ``node`` to ``other`` (as keepalive does with a peer that
    stopped answering), and ask for peers again so that they meet again."""
    for connection in node.p2pt.connections(other.peer_id):
        node.p2pt.close_connection(other.peer_id, connection)
    node.p2pt.request_more_peers()


# -- a frozen or deaf subscriber holds up no one ---------------------------------------------------


@asynccontextmanager
async def subscriber_process(
    tracker: str, keepalive_timeout: float
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, Any]]]:
    """``subscriber_process.py`` in its own process, and what it said so far (``peer_id``,
    ``seqs`` delivered, ``reported`` lost, ``changed``); killed (and thawed) on the way out."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "subscriber_process.py"),
        tracker,
        TOPIC,
        str(keepalive_timeout),
        stdout=asyncio.subprocess.PIPE,
    )
    heard: dict[str, Any] = {"seqs": [], "reported": [], "changed": asyncio.Event()}

    async def listen() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            said = json.loads(line)
            if "peer_id" in said:
                heard["peer_id"] = said["peer_id"]
            elif "seq" in said:
                heard["seqs"].append(said["seq"])
            else:
                first, last = said["lost"]
                heard["reported"] += range(first, last + 1)
            heard["changed"].set()

    listener = asyncio.create_task(listen())
    try:
        await wait_for(lambda: "peer_id" in heard, heard["changed"], 30)
        yield proc, heard
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        await proc.wait()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


def longest_silence(times: list[float], start: float, end: float) -> float:
    """The longest time between ``start`` and ``end`` with no delivery."""
    inside = [t for t in times if start < t < end]
    moments = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(moments))


@pytest.mark.parametrize(
    "keepalive_timeout", [2.0, 10.0], ids=["keepalive-timeout-2", "keepalive-timeout-10"]
)
async def test_a_frozen_subscriber_process_holds_up_no_one_and_catches_up(
    keepalive_timeout: float,
) -> None:
    """A publisher, a healthy subscriber, and a subscriber in its own process frozen with
    SIGSTOP while 10 KB messages go out every 5 ms (2 MB/s, so that what waits for the frozen
    one passes its bound). The healthy one never goes a second without
    a message; the frozen one, thawed (and, with a 2 s keepalive timeout and 1 s of grace,
    dropped and met again), gets every message or is told which it lost."""
    async with AsyncExitStack() as stack:
        tracker = await stack.enter_async_context(TrackerServer("127.0.0.1", 0))
        proc, frozen = await stack.enter_async_context(
            subscriber_process(tracker.url, keepalive_timeout)
        )
        options = {"keepalive_timeout": keepalive_timeout}
        if keepalive_timeout == 2.0:
            options["keepalive_grace"] = 1.0  # dropped a second after it turns suspect
            # (no ICE restart: a connection being restarted is kept for ice_restart_timeout)
            options["ice_restart_timeout"] = 0.0
        publisher = await stack.enter_async_context(loopback_node([tracker.url], **options))
        healthy = await stack.enter_async_context(loopback_node([tracker.url], **options))
        router_of(publisher).neighbour_queue_bytes = 2 * 2**20
        watched = Watched(healthy)
        await publisher.wait_until(
            lambda: (
                subscribes(publisher, healthy)
                and TOPIC in getattr(publisher.peers.get(frozen["peer_id"]), "topics", ())
            ),
            30,
        )
        publishing = Publisher(publisher, size=10_000)
        publishing.start()
        await wait_for(lambda: len(frozen["seqs"]) >= 50, frozen["changed"], 30)
        proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        stats = router_of(publisher).stats
        # Frozen for 2 s, and until what waits for it has passed its bound (and, with the
        # short keepalive, until the publisher has given up on it).
        await asyncio.sleep(2)
        await wait_for(lambda: stats.skipped >= 50, publishing.changed, 30)
        if keepalive_timeout == 2.0:
            await until(lambda: frozen["peer_id"] not in publisher.peers, (publisher, "peerclose"))
        proc.send_signal(signal.SIGCONT)
        thawed = time.monotonic()
        silence = longest_silence(watched.times, stopped, thawed)
        assert silence < MAX_GAP, f"the healthy subscriber waited {silence:.2f} s"
        count = len(frozen["seqs"])
        await wait_for(lambda: len(frozen["seqs"]) > count + 50, frozen["changed"], 30)
        published = await publishing.stop()
        await wait_for(
            lambda: len(frozen["seqs"]) + len(frozen["reported"]) >= published,
            frozen["changed"],
            30,
        )
        assert_accounted(frozen["seqs"], frozen["reported"], published)
        assert frozen["reported"] == []  # the repair caches held it all
        await wait_for(lambda: len(watched.seqs) >= published, watched.changed, 30)
        assert watched.seqs == list(range(published)) and watched.lost == 0


async def test_a_subscriber_dropped_by_keepalive_gets_what_was_published_while_it_was_away() -> (
    None
):
    """A subscriber in its own process frozen with SIGSTOP until keepalive drops it (a 2 s
    timeout and 1 s of grace, so that the test need not wait out the default 15 s), while 10 KB
    messages go out every 5 ms; publishing ends before it is thawed, with nothing after the gap
    to show it. Met again, it is repaired from the publisher's cache: every message delivered,
    in order, none lost."""
    async with AsyncExitStack() as stack:
        tracker = await stack.enter_async_context(TrackerServer("127.0.0.1", 0))
        proc, frozen = await stack.enter_async_context(subscriber_process(tracker.url, 2.0))
        publisher = await stack.enter_async_context(
            # No ICE restart: a connection being restarted is kept for ice_restart_timeout.
            loopback_node(
                [tracker.url], keepalive_timeout=2.0, keepalive_grace=1.0, ice_restart_timeout=0
            )
        )
        cache = router_of(publisher)
        cache.cache_bytes = 10 * 2**20  # what is published fits, each message held once
        await publisher.wait_until(
            lambda: TOPIC in getattr(publisher.peers.get(frozen["peer_id"]), "topics", ()), 30
        )
        publishing = Publisher(publisher, size=10_000)
        publishing.start()
        await wait_for(lambda: len(frozen["seqs"]) >= 50, frozen["changed"], 30)
        proc.send_signal(signal.SIGSTOP)
        stats = router_of(publisher).stats
        await until(
            lambda: frozen["peer_id"] not in publisher.peers, (publisher, "peerclose"), timeout=30
        )
        await wait_for(lambda: stats.skipped >= 50, publishing.changed, 30)
        published = await publishing.stop()
        assert published <= cache.cache_max and published * 10_200 < cache.cache_bytes
        proc.send_signal(signal.SIGCONT)
        await wait_for(
            lambda: len(frozen["seqs"]) + len(frozen["reported"]) >= published,
            frozen["changed"],
            30,
        )
        assert frozen["reported"] == []
        assert frozen["seqs"] == list(range(published))


deaf_skip = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@deaf_skip
async def test_a_subscriber_that_reads_nothing_holds_up_no_one_and_catches_up() -> None:
    """In one process: the deaf subscriber's connection to the publisher takes nothing in for
    2 s (and until what waits for it passed its bound); the healthy one never goes a second
    without a message, and the deaf one, hearing again, gets every message or is told."""
    async with mesh(3, keepalive_timeout=10) as m:
        publisher, healthy, slow = m.nodes
        router_of(publisher).neighbour_queue_bytes = 2 * 2**20
        watched, behind = Watched(healthy), Watched(slow)
        await publisher.wait_until(
            lambda: subscribes(publisher, healthy) and subscribes(publisher, slow), 10
        )
        publishing = Publisher(publisher, size=10_000)
        publishing.start()
        await wait_for(lambda: len(behind.seqs) >= 50, behind.changed, 30)
        stats = router_of(publisher).stats
        with deafen(slow, publisher.peer_id):
            stopped = time.monotonic()
            await asyncio.sleep(2)
            await wait_for(lambda: stats.skipped >= 50, publishing.changed, 30)
            heard = time.monotonic()
        silence = longest_silence(watched.times, stopped, heard)
        assert silence < MAX_GAP, f"the healthy subscriber waited {silence:.2f} s"
        count = len(behind.seqs)
        await wait_for(lambda: len(behind.seqs) > count + 50, behind.changed, 30)
        published = await publishing.stop()
        await wait_for(
            lambda: len(behind.seqs) + len(behind.reported) >= published, behind.changed, 30
        )
        assert_accounted(behind.seqs, behind.reported, published)
        assert behind.lost == len(behind.reported) == 0  # the repair caches held it all
        await wait_for(lambda: len(watched.seqs) >= published, watched.changed, 30)
        assert watched.seqs == list(range(published)) and watched.lost == 0


@deaf_skip
async def test_publishing_on_to_neighbours_that_take_nothing_lets_the_node_run() -> None:
    """A publisher in a tight loop whose only neighbour is deaf: once that neighbour is past its
    bound (and publish has stopped waiting for it), each publish still lets the event loop run
    (what comes in, keepalive), rather than holding it until the loop ends."""
    async with mesh(2, keepalive_timeout=10) as m:
        publisher, deaf_one = m.nodes
        router = router_of(publisher)
        router.neighbour_queue_bytes = 2 * 2**20
        router.drain_timeout = 0.2
        Watched(deaf_one)
        await publisher.wait_until(lambda: subscribes(publisher, deaf_one), 10)
        turns = 0

        async def count_turns() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        counter = asyncio.create_task(count_turns())
        topic = Topic(publisher, TOPIC, StringValue)
        try:
            with deafen(deaf_one, publisher.peer_id):
                message = StringValue(value="x" * 10_000)
                while router.stats.skipped == 0:  # until it is past its bound
                    await topic.publish(message)
                held_up = 0
                for _ in range(200):
                    before = turns
                    await topic.publish(message)
                    held_up += turns == before
        finally:
            counter.cancel()
        assert router.stats.skipped >= 200
        assert held_up == 0


# -- connections that drop and come back --------------------------------------------------------


@asynccontextmanager
async def nodes(*trackers: list[TrackerServer]) -> AsyncIterator[list[Node]]:
    """One started node per list of trackers (no peer exchange: the topology is the trackers')."""
    async with AsyncExitStack() as stack:
        started = []
        for announce in trackers:
            node = loopback_node([t.url for t in announce], mesh=False, keepalive_timeout=10)
            started.append(await stack.enter_async_context(node))
        yield started


@asynccontextmanager
async def trackers(count: int) -> AsyncIterator[list[TrackerServer]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(TrackerServer("127.0.0.1", 0)) for _ in range(count)]


Transition = Callable[[list[Node], list[TrackerServer], Publisher], Awaitable[None]]


async def _gone(node: Node, other: Node, p: Publisher, *, tail: bool = True) -> None:
    """Once ``node`` has lost ``other``, 20 more messages are published (which cannot reach the
    subscriber on that path), then the publisher stops (``tail``): nothing after them shows
    the subscriber what it missed."""
    await until(lambda: other.peer_id not in node.peers, (node, "peerclose"))
    await p.published(p.count + 20)
    if tail:
        await p.stop()


async def _subscriber_drops(n: list[Node], t: list[TrackerServer], p: Publisher) -> None:
    drop(n[1], n[0])
    await _gone(n[0], n[1], p)


async def _subscriber_drops_publishing_on(
    n: list[Node], t: list[TrackerServer], p: Publisher
) -> None:
    drop(n[1], n[0])
    await _gone(n[0], n[1], p, tail=False)


async def _publisher_drops(n: list[Node], t: list[TrackerServer], p: Publisher) -> None:
    drop(n[0], n[1])
    await _gone(n[0], n[1], p)


async def _outage(n: list[Node], t: list[TrackerServer], p: Publisher) -> None:
    """The subscriber gone for a second: off its tracker, its connection closed."""
    publisher, subscriber = n
    subscriber.p2pt.remove_tracker(t[0].url)
    drop(subscriber, publisher)
    await until(lambda: publisher.peer_id not in subscriber.peers, (subscriber, "peerclose"))
    await p.published(p.count + 100)  # what it misses, for a second or so
    await p.stop()
    subscriber.p2pt.add_tracker(t[0].url)


async def _relay_link_drops(n: list[Node], t: list[TrackerServer], p: Publisher) -> None:
    """The relay's link to the subscriber closes: the relay holds what the subscriber missed."""
    _, relay, subscriber = n
    subscriber.p2pt.remove_tracker(t[1].url)  # not to meet again before the publisher stops
    drop(relay, subscriber)
    await _gone(relay, subscriber, p)
    subscriber.p2pt.add_tracker(t[1].url)


async def _relay_lost(n: list[Node], t: list[TrackerServer], p: Publisher) -> None:
    """The relay gone for a second: off its trackers, its connections closed."""
    publisher, relay, subscriber = n
    for tracker in t:
        relay.p2pt.remove_tracker(tracker.url)
    drop(relay, publisher)
    drop(relay, subscriber)
    await until(lambda: not relay.peers, (relay, "peerclose"))
    await p.published(p.count + 100)
    await p.stop()
    for tracker in t:
        relay.p2pt.add_tracker(tracker.url)


async def _relay_replaced(n: list[Node], t: list[TrackerServer], p: Publisher) -> None:
    """The subscriber loses its relay and finds another (which carried the topic all along)."""
    _, relay, subscriber, _ = n
    subscriber.p2pt.remove_tracker(t[1].url)
    drop(subscriber, relay)
    await until(lambda: relay.peer_id not in subscriber.peers, (subscriber, "peerclose"))
    await p.published(p.count + 100)
    await p.stop()
    subscriber.p2pt.add_tracker(t[2].url)


#: (how many trackers, each node's trackers by index: the publisher first, then the relays and the
#: subscriber; the transition; the subscriber's index; the index of the node it hears the topic
#: from once the transition is over)
TRANSITIONS: dict[str, tuple[int, list[list[int]], Transition, int, int]] = {
    "subscriber-drops": (1, [[0], [0]], _subscriber_drops, 1, 0),
    "subscriber-drops-publishing-on": (1, [[0], [0]], _subscriber_drops_publishing_on, 1, 0),
    "publisher-drops": (1, [[0], [0]], _publisher_drops, 1, 0),
    "outage-1s": (1, [[0], [0]], _outage, 1, 0),
    "relay-link-drops": (2, [[0], [0, 1], [1]], _relay_link_drops, 2, 1),
    "relay-lost": (2, [[0], [0, 1], [1]], _relay_lost, 2, 1),
    "relay-replaced": (3, [[0], [0, 1], [1], [0, 2]], _relay_replaced, 2, 3),
}


@pytest.mark.parametrize("name", list(TRANSITIONS))
async def test_messages_published_across_a_transition_are_delivered_or_reported(
    name: str,
) -> None:
    """Small messages every 5 ms, then the transition; the publisher publishes on during it and
    stops (but in one case) before it is over, so that no later message shows the subscriber
    what it missed. Once the
    subscriber hears the topic again, every message is delivered in order or reported; here
    every one is delivered (the publisher's and the relays' repair caches hold them all)."""
    count, layout, transition, index, source = TRANSITIONS[name]
    async with trackers(count) as t, nodes(*[[t[i] for i in ts] for ts in layout]) as n:
        publisher, subscriber = n[0], n[index]
        relays_ = [node for node in n[1:] if node is not subscriber]
        for relay in relays_:
            Topic(relay, TOPIC, StringValue)  # its router: it relays the topic
        watched = Watched(subscriber)
        first_hop = n[1]  # the relay in a line, else the subscriber
        await until(
            lambda: (
                subscribes(first_hop, subscriber) if relays_ else subscribes(publisher, subscriber)
            ),
            (first_hop, "peer"),
            (publisher, "peer"),
            timeout=30,
        )
        for relay in relays_:
            await until(lambda r=relay: relays(publisher, r), (publisher, "peer"), timeout=30)
        if relays_:
            assert publisher.peer_id not in subscriber.peers  # a line: relays carry it all
        publishing = Publisher(publisher)
        publishing.start()
        await wait_for(lambda: len(watched.seqs) >= 50, watched.changed, 30)
        await transition(n, t, publishing)
        back = n[source]
        await until(
            lambda: subscribes(back, subscriber) and back.peer_id in subscriber.peers,
            (back, "peer"),
            (subscriber, "peer"),
            timeout=30,
        )
        if publishing.running:
            await publishing.published(publishing.count + 50)  # after the transition
        published = await publishing.stop()
        await wait_for(
            lambda: len(watched.seqs) + len(watched.reported) >= published, watched.changed, 30
        )
        assert_accounted(watched.seqs, watched.reported, published)
        assert watched.lost == len(watched.reported) == 0


async def test_a_gap_longer_than_the_neighbours_caches_gets_what_they_still_hold() -> None:
    """The subscriber away while 290 messages are published, of which the publisher's cache
    keeps the latest 100: met again, it is sent what is still held (200 to 299) and told it
    lost the rest (10 to 199), rather than asking for the lowest forever and losing it all."""
    async with trackers(1) as t, nodes([t[0]], [t[0]]) as n:
        publisher, subscriber = n
        topic = Topic(publisher, TOPIC, StringValue)
        router_of(publisher).cache_max = 100
        router_of(subscriber).repair_after = 0.1
        router_of(subscriber).reorder_timeout = 5
        watched = Watched(subscriber)
        await until(lambda: subscribes(publisher, subscriber), (publisher, "peer"), timeout=30)
        for _ in range(10):
            await topic.publish(StringValue(value="x"))
        await wait_for(lambda: len(watched.seqs) >= 10, watched.changed, 30)
        subscriber.p2pt.remove_tracker(t[0].url)
        drop(subscriber, publisher)
        await until(lambda: subscriber.peer_id not in publisher.peers, (publisher, "peerclose"))
        for _ in range(290):
            await topic.publish(StringValue(value="x"))
        subscriber.p2pt.add_tracker(t[0].url)
        await wait_for(
            lambda: len(watched.seqs) + len(watched.reported) >= 300, watched.changed, 30
        )
        assert_accounted(watched.seqs, watched.reported, 300)
        assert watched.reported == list(range(10, 200))


async def test_a_relay_fetches_what_the_publisher_still_caches_of_a_gap_longer_than_its_cache() -> (
    None
):
    """A line publisher, relay, subscriber; the relay away while 290 messages are published, of
    which the publisher keeps the latest 100: met again, the relay fetches what is still held
    and the subscriber gets it from the relay (200 to 299), told it lost the rest."""
    async with trackers(2) as t, nodes([t[0]], [t[0], t[1]], [t[1]]) as n:
        publisher, relay, subscriber = n
        topic = Topic(publisher, TOPIC, StringValue)
        Topic(relay, TOPIC, StringValue)
        router_of(publisher).cache_max = 100
        for node in (relay, subscriber):
            router_of(node).repair_after = 0.1
        router_of(subscriber).reorder_timeout = 8
        watched = Watched(subscriber)
        await until(lambda: subscribes(relay, subscriber), (relay, "peer"), timeout=30)
        await until(lambda: relays(publisher, relay), (publisher, "peer"), timeout=30)
        for _ in range(10):
            await topic.publish(StringValue(value="x"))
        await wait_for(lambda: len(watched.seqs) >= 10, watched.changed, 30)
        relay.p2pt.remove_tracker(t[0].url)
        drop(relay, publisher)
        await until(lambda: relay.peer_id not in publisher.peers, (publisher, "peerclose"))
        for _ in range(290):
            await topic.publish(StringValue(value="x"))
        relay.p2pt.add_tracker(t[0].url)
        await wait_for(
            lambda: len(watched.seqs) + len(watched.reported) >= 300, watched.changed, 30
        )
        assert_accounted(watched.seqs, watched.reported, 300)
        assert watched.reported == list(range(10, 200))


async def test_a_connection_closed_under_a_burst_loses_nothing_when_another_remains() -> None:
    """Two trackers give two nodes two connections. 20 messages, then a burst of 280 of 3 KB,
    and the connection they went on closes with most of them still unsent: the subscriber keeps the
    other connection, hears on it the latest its publisher holds, and gets them all."""
    async with trackers(2) as t, nodes(t, t) as (publisher, subscriber):
        watched = Watched(subscriber)
        await until(
            lambda: (
                subscribes(publisher, subscriber)
                and len(publisher.p2pt.connections(subscriber.peer_id)) >= 2
            ),
            (publisher, "peer"),
            (publisher.p2pt, "data"),  # keepalive pings each connection that is idle
            timeout=30,
        )
        topic = Topic(publisher, TOPIC, StringValue)
        for _ in range(20):  # the subscriber meets the stream
            await topic.publish(StringValue(value="x"))
        await wait_for(lambda: len(watched.seqs) == 20, watched.changed, 10)
        for _ in range(280):
            await topic.publish(StringValue(value="y" * 3000))
        p2pt, peer = publisher.p2pt, subscriber.peer_id
        used = max(p2pt.connections(peer), key=lambda c: p2pt.buffered_amount(peer, c))
        assert p2pt.buffered_amount(peer, used) > 100 * 3000  # much of the burst waits on it
        p2pt.close_connection(peer, used)
        assert p2pt.connections(peer)  # the other remains
        accounted = lambda: len(watched.seqs) + len(watched.reported) >= 300  # noqa: E731
        await wait_for(accounted, watched.changed, 30)
        assert_accounted(watched.seqs, watched.reported, 300)
        assert watched.lost == 0


# -- the router's rules --------------------------------------------------------------------------


def _publish(origin: str, seq: int) -> Envelope:
    return Envelope(
        Kind.PUBLISH,
        1,
        seq,
        payload=StringValue(value=str(seq)).SerializeToString(),
        has_payload=True,
        topic=TOPIC,
        origin=origin,
    )


async def test_a_have_never_makes_a_subscriber_skip_what_was_published() -> None:
    """A neighbour says a publisher's latest message is number 1000 (a lie, or one it cannot
    send): the subscriber asks for it, and when it never comes, gives the claim up without
    reporting anything lost; the publisher's next message is delivered, not taken as late."""
    node = loopback_node([])  # never started: the router's rules need no network
    router = router_of(node)
    watched = Watched(node)
    alice, liar = "a" * 40, "c" * 40
    for seq in range(3):
        router._on_publish(alice, _publish(alice, seq))
    have = Envelope(Kind.HAVE, 1, 1000, topic=TOPIC, origin=alice)
    router._on_have(liar, have)
    order = router._order[(alice, TOPIC)]
    assert order.announced == 1000 and order.gap_timer is not None
    router._skip_gap((alice, TOPIC))  # its time is up
    assert order.announced == -1 and order.gap_timer is None and order.repair_timer is None
    router._on_publish(alice, _publish(alice, 3))
    assert watched.seqs == [0, 1, 2, 3] and watched.lost == 0 and router.stats.late == 0
    await node.close()


def _neighbours(node: Node, *peer_ids: str) -> list[tuple[str, tuple[int, ...]]]:
    """Make ``peer_ids`` neighbours that carry the topic and read ``have``; returns where the
    node's wants go, as (peer, numbers asked)."""
    from p2prpc.mux import PeerInfo

    for pid in peer_ids:
        node.peers[pid] = PeerInfo(pid, hello=True, topics=frozenset({TOPIC}), extra={"have": True})
    wants: list[tuple[str, tuple[int, ...]]] = []

    def send(peer_id: str, envelope: Envelope, **_: Any) -> int:
        if envelope.kind is Kind.WANT:
            wants.append((peer_id, envelope.seqs))
        return 0

    node.send = send  # type: ignore[method-assign]
    return wants


async def test_a_relay_asks_for_what_it_lacks_whatever_number_a_liar_claims() -> None:
    """A relay holds messages 0-2; a liar says it holds number 2**32 - 1, then an honest
    neighbour says 5 (3-5 were lost on the way). The relay asks for 3, 4 and 5 (not for numbers
    near 2**32 that nobody published), and of the honest neighbour too."""
    node = loopback_node([])  # never started: the router's rules need no network
    router = router_of(node)
    alice, bob, liar = "a" * 40, "b" * 40, "c" * 40
    wants = _neighbours(node, bob, liar)
    node.p2pt.is_connected = lambda peer_id: True  # type: ignore[method-assign]
    for seq in range(3):
        router._on_publish(bob, _publish(alice, seq))
    router._on_have(liar, Envelope(Kind.HAVE, 1, 2**32 - 1, topic=TOPIC, origin=alice))
    router._on_have(bob, Envelope(Kind.HAVE, 2, 5, topic=TOPIC, origin=alice))
    for _ in range(2):
        router._fetch_round((alice, TOPIC))
    assert {3, 4, 5} <= set(wants[0][1]) and max(wants[0][1]) < 3 + router.cache_max
    assert {peer for peer, _ in wants} == {bob, liar}  # each announcer is asked in turn
    await node.close()


async def test_a_liars_claim_does_not_keep_a_subscriber_from_asking_the_honest_announcer() -> None:
    """A liar says it holds number 2**32 - 1 of a stream, then an honest neighbour says 5: the
    subscriber's repair rounds ask each of them in turn, not the liar alone."""
    node = loopback_node([])
    router = router_of(node)
    watched = Watched(node)
    alice, bob, liar = "a" * 40, "b" * 40, "c" * 40
    others = [f"{i:040x}" for i in range(60)]  # so that chance alone seldom picks bob twice
    wants = _neighbours(node, bob, liar, *others)
    for seq in range(3):
        router._on_publish(alice, _publish(alice, seq))
    router._on_have(liar, Envelope(Kind.HAVE, 1, 2**32 - 1, topic=TOPIC, origin=alice))
    router._on_have(bob, Envelope(Kind.HAVE, 2, 5, topic=TOPIC, origin=alice))
    for _ in range(4):
        router._repair((alice, TOPIC))
    asked = [peer for peer, _ in wants]
    assert asked.count(bob) >= 2 and asked.count(liar) >= 2, asked
    assert watched.seqs == [0, 1, 2] and watched.lost == 0
    await node.close()


async def test_a_new_subscription_starts_afresh_with_each_publisher() -> None:
    """What a publisher sent while nobody here subscribed is not missing: a subscription made
    after the last one closed starts with the next message that comes, nothing reported."""
    node = loopback_node([])
    router = router_of(node)
    router.start_window = 0.01
    alice = "a" * 40
    first = Watched(node)
    for seq in range(3):
        router._on_publish(alice, _publish(alice, seq))
    first.close()
    for seq in range(3, 6):  # nobody subscribes
        router._on_publish(alice, _publish(alice, seq))
    second = Watched(node)
    router._on_publish(alice, _publish(alice, 6))
    await wait_for(lambda: bool(second.seqs), second.changed, 5)
    assert first.seqs == [0, 1, 2] and second.seqs == [6] and second.lost == 0
    await node.close()
