"""Publish/subscribe over a swarm that need not be a full mesh.

Every published message has a unique id, (publisher, topic, sequence number). The publisher sends
it to every neighbour that relays or subscribes; a node that receives a message it has not seen
delivers it to its local subscribers and relays it to its own neighbours, minus the ones the
previous hop already sent it to, while its hop budget lasts. A seen cache with a time to live drops
the copies that arrive by other paths, and a small reorder buffer per (publisher, topic) delivers
each publisher's messages in order.

Memory is bounded: the seen cache remembers each id for ``seen_ttl`` seconds (120) to twice that,
at most ``seen_max`` ids (100,000; past it the older half is forgotten first), each as a keyed
16-byte digest (about 100 bytes held, whatever the id's strings); a reorder buffer per
(publisher, topic) holds at most ``reorder_window`` messages (4,096) and ``reorder_bytes``
(16 MiB), none for longer than ``reorder_timeout`` seconds (20) before giving up on its gap, and
all of them together at most ``reorder_total_bytes`` (64 MiB: past it, the gaps of the streams
holding most are given up on, and what waits is delivered); each subscription queues at most its
``maxsize`` messages and ``max_bytes`` (past either the oldest are dropped and counted). Bytes are
what a message holds in memory: its payload as kept (bytes as they came; a JSON payload decoded
into the topic's message when the node knows its type, else as compact JSON text, parsed again
when it is read or sent: :func:`~p2prpc.wire.payload.kept_size`) and its envelope
(:data:`~p2prpc.wire.held.ENVELOPE_OVERHEAD`).

Delivered or reported: each subscriber gets each publisher's messages in order, from the lowest
that reached it within ``start_window`` seconds of the first (earlier ones may come by longer
paths), and is told of every gap it was given up on (``Subscription.lost``/``gaps``). What a
subscriber has seen of a stream (the next number it expects) outlives the connections that carried
it: a publisher that leaves and comes back within ``forget_after`` seconds (120) is taken up where
it was, and what it published meanwhile is asked for again or reported. A node tells a neighbour
that may have missed messages which is the latest of each stream it holds (``have``: when the
neighbour says hello on a new connection, when one of its connections closes, and when messages
were not queued for it), so that a gap at the end of a stream, with nothing after it to show it,
is noticed too; a ``have`` only makes a node ask for that message, and a gap is what the messages
that come show, so a ``have`` cannot make anyone skip what a publisher really sent.

No neighbour holds up another: a message is queued for a neighbour only while less than
``neighbour_queue_bytes`` (4 MiB) wait to be sent to it; past that it is not sent there
(``skipped``), and the neighbour asks for it again when it catches up, or reports it lost.
``publish`` waits only while every neighbour it sent to has more than the data channel's
high-water mark waiting, until one of them drains, and never again for one that did not drain
within ``drain_timeout`` seconds (1) until it has: a fast neighbour sets the pace, and a frozen one
delays a publish once, by at most ``drain_timeout``, however many other neighbours wait.

Signed messages: a node with an identity signs each message it publishes (Ed25519 over topic,
its peer id, seq and the payload bytes of the form sent), and relays pass signed messages on in
the form they received, unchanged. A message whose signature fails, or that claims to come from a
neighbour with a proven identity without its signature, is dropped and counted
(``bad_signatures``). Signed messages are told apart by publisher key as well as peer id, so
nobody can use another's peer id to spoil its sequence numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf.message import Message

from ..errors import PeerClosed, RemoteProtocolError, RpcError, SendQueueFull, TooLargeForPeer
from ..wire.envelope import MAX_WANTED, Envelope, Kind
from ..wire.frames import JSONValue, new_message_id
from ..wire.held import ENVELOPE_OVERHEAD
from ..wire.payload import Decoded, JSONText, MessageCodec, kept_size
from ..wire.secret import canonical_json, publication_bytes, verify_publication

#: Topic messages are held to the size a gRPC message may have (``Node.max_message_size`` when the
#: node checks what it delivers; this bound when a relay converts a message between forms).
MAX_PAYLOAD = 64 * 2**20

if TYPE_CHECKING:
    from ..mux import Mux, PeerInfo

logger = logging.getLogger(__name__)

#: Bytes of messages sent again to one neighbour a second, at most (room for the largest
#: message a node takes by default, 4 MiB, twice).
REPAIR_BYTES_PER_SECOND = 8 * 2**20

#: Bytes waiting to be sent to a neighbour past which what it asks for again is not sent: a
#: neighbour that does not read what it asked for makes the node hold at most this (plus one
#: message) for it, not its whole send queue.
REPAIR_BACKLOG = 2**20

#: Streams (publisher, topic) a node keeps delivery order for, at most.
MAX_STREAMS = 4096

#: How many ``want`` asks a second one neighbour may make (each for at most MAX_WANTED messages).
WANTS_PER_SECOND = 20

#: How many ``have`` announcements a second one neighbour may make (each costs a lookup, and
#: at most one ``want`` back to it).
HAVES_PER_SECOND = 256

#: The most streams one announcement to a neighbour names (the most recently heard from first).
MAX_ANNOUNCED = 256

#: Seconds between two rounds of asking for a gap when the last round was answered in full.
REPAIR_PACE = 0.05

#: How many times a message may be relayed beyond its publisher's neighbours.
DEFAULT_HOPS = 8

_MISSING: Any = object()


class Sink(Protocol):
    """A local reader of a topic (a :class:`~p2prpc.pubsub.Subscription`)."""

    def deliver(self, envelope: Envelope) -> None: ...

    def end(self) -> None:
        """The node is closing: no more messages will come."""
        ...

    def lost_messages(
        self, sender: str, first: int, last: int, publisher: bytes | None = None
    ) -> None:
        """Messages ``first`` to ``last`` of ``sender`` (signed by ``publisher``, if any) never
        came and are given up on."""
        ...


@dataclass(slots=True)
class _Order:
    """Delivery order of one (publisher, topic): the next sequence number and what waits."""

    next_seq: int
    stream: tuple[str, str] = ("", "")  # its key in the router's table
    waiting: dict[int, tuple[Envelope, int]] = field(default_factory=dict)  # seq → (it, bytes)
    # seq → when it came, oldest first (a copy keeps its first arrival)
    since: dict[int, float] = field(default_factory=dict)
    gap_timer: asyncio.TimerHandle | None = None
    # Until it fires, earlier messages may still arrive by longer paths: where delivery starts
    # is not settled (a publisher's first message, seq 0, settles it at once).
    start_timer: asyncio.TimerHandle | None = None
    waiting_bytes: int = 0  # bytes the messages that wait hold (:func:`message_size`)
    repair_timer: asyncio.TimerHandle | None = None  # when to ask neighbours for what is missing
    repair_rounds: int = 0  # asks for the current gap so far (they back off)
    asked: int = -1  # the highest number the last round asked for
    progress: int = 0  # how many messages waited when the last round asked
    # The highest number a neighbour said it holds (``have``) that has not come yet, and the
    # neighbours that said they hold one not come yet (at most MAX_ANNOUNCERS, latest last): it
    # is asked for, of each in turn, and once it comes the gap below it is a gap like any other.
    announced: int = -1
    announcers: list[str] = field(default_factory=list)
    left_at: float | None = None  # when its publisher, a neighbour, left (None: it is here)

    def gap(self) -> bool:
        """Whether messages are missing: some wait for earlier ones, or a neighbour holds one
        this node has not seen."""
        return bool(self.waiting) or self.announced >= self.next_seq

    def wait(self, envelope: Envelope) -> int:
        """Hold a message until its turn; returns the bytes it holds (0 for a copy of one that
        waits already, which replaces it)."""
        old = self.waiting.get(envelope.seq)
        size = message_size(envelope)
        self.waiting[envelope.seq] = (envelope, size)
        self.since.setdefault(envelope.seq, time.monotonic())
        added = size - (old[1] if old is not None else 0)
        self.waiting_bytes += added
        return added

    def take(self, seq: int) -> tuple[Envelope, int]:
        envelope, size = self.waiting.pop(seq)
        del self.since[seq]
        self.waiting_bytes -= size
        return envelope, size

    def oldest(self) -> float:
        """When the message that has waited longest came (``waiting`` must not be empty)."""
        return next(iter(self.since.values()))


@dataclass(slots=True)
class _Fetch:
    """Messages of one stream a relay lacks and asks for, into its repair cache."""

    first: int  # the lowest it may lack
    last: int  # the latest a neighbour announced, at most ``cache_max`` above ``first``
    announcers: list[str]  # who announced messages it lacks (asked in turn, MAX_ANNOUNCERS)
    key: bytes | None  # the stream's publisher key
    until: float = 0.0  # when it stops asking
    asked: tuple[int, ...] = ()  # what the last round asked for
    rounds: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _Cached:
    """A recent message, as it is sent again to a neighbour that asks for it."""

    template: Envelope  # hops 0: a message sent again is not relayed further
    payload: Payload
    sign: Callable[[bool, Any], bytes] | None  # the publisher's own: signs each form it sends
    size: int


def message_size(envelope: Envelope) -> int:
    """The bytes a received topic message holds while it waits: its payload as kept (bytes as
    they came; a JSON payload decoded into the topic's message, or as compact text:
    :func:`~p2prpc.wire.payload.kept_size`) and the envelope around it."""
    return kept_size(envelope.payload) + ENVELOPE_OVERHEAD


@dataclass
class PubSubStats:
    """Counters, for tests and for watching a node."""

    published: int = 0
    received: int = 0
    duplicates: int = 0
    delivered: int = 0
    relayed: int = 0
    skipped_gaps: int = 0
    late: int = 0
    bad_payloads: int = 0
    unconvertible: int = 0
    bad_signatures: int = 0
    wanted: int = 0  # message numbers asked for again, to fill gaps
    repaired: int = 0  # messages sent again to a neighbour that asked
    unsent: int = 0  # sends refused by a full or closed channel
    too_large: int = 0  # not sent to a neighbour that announced it takes none this large
    skipped: int = 0  # copies not queued for a neighbour with neighbour_queue_bytes waiting
    announced: int = 0  # latest numbers told to neighbours that may have missed them (have)


class Router:
    """The pub/sub state of one node; :func:`router_of` gives the node's one router.

    Its keywords are the bounds in the module's docstring; change them on the node's router
    (``router_of(node).reorder_timeout = 5``) before the first message. Those that keep one
    neighbour from holding up another: ``neighbour_queue_bytes`` (bytes, 4 MiB: what may wait to
    be sent to one neighbour, past which topic messages are not queued for it),
    ``drain_timeout`` (seconds, 1: the longest ``publish`` waits for busy neighbours before it
    stops waiting for them until they drain). ``forget_after`` (seconds, 120): how long the
    delivery state of a publisher that left is kept for its return.
    """

    def __init__(
        self,
        node: Mux,
        *,
        hops: int = DEFAULT_HOPS,
        seen_ttl: float = 120.0,
        seen_max: int = 100_000,
        reorder_window: int = 4096,
        reorder_bytes: int = 16 * 2**20,
        reorder_total_bytes: int = 64 * 2**20,
        reorder_timeout: float = 20.0,
        start_window: float = 0.5,
        repair_after: float = 0.5,
        cache_max: int = 4096,
        cache_bytes: int = 16 * 2**20,
        neighbour_queue_bytes: int = 4 * 2**20,
        drain_timeout: float = 1.0,
        forget_after: float = 120.0,
    ) -> None:
        if neighbour_queue_bytes < 1 or not drain_timeout > 0 or not forget_after >= 0:
            raise ValueError(
                "neighbour_queue_bytes must be positive bytes, drain_timeout positive seconds "
                "and forget_after seconds"
            )
        self.node = node
        self.neighbour_queue_bytes = neighbour_queue_bytes
        self.drain_timeout = drain_timeout
        self.forget_after = forget_after
        self.hops = hops
        self.seen_ttl = seen_ttl
        self.seen_max = seen_max
        # Two generations of digests of the ids seen: the newer takes what is seen now, the
        # older is forgotten when the newer is seen_ttl old or holds half of seen_max.
        self._seen_key = os.urandom(16)
        self._seen_new: set[bytes] = set()
        self._seen_old: set[bytes] = set()
        self._seen_since = time.monotonic()
        self.reorder_window = reorder_window
        self.reorder_timeout = reorder_timeout
        self.reorder_bytes = reorder_bytes
        self.reorder_total_bytes = reorder_total_bytes
        self._waiting_bytes = 0  # over every stream
        self.start_window = start_window
        self.repair_after = repair_after
        # Recent messages, to send again to a neighbour that missed them: (stream, topic, seq) →
        # (the envelope to resend, the payload's forms); at most cache_max, cache_bytes in all.
        self.cache_max = cache_max
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[str, str, int], _Cached] = OrderedDict()
        self._cached_bytes = 0
        self._want_budget: dict[str, tuple[float, float]] = {}  # peer → (tokens, when)
        self._repair_budget: dict[str, tuple[float, float]] = {}  # peer → (bytes, when)
        self.stats = PubSubStats()
        self._sinks: dict[str, set[Sink]] = {}
        self._seq: dict[str, int] = {}
        # Per stream (publisher, topic): delivery order; and numbering for publishers that number
        # nothing. At most MAX_STREAMS each, the least recently heard from forgotten first.
        self._order: OrderedDict[tuple[str, str], _Order] = OrderedDict()
        self._anonymous_seq: OrderedDict[str, int] = OrderedDict()
        self._types: dict[str, type[Message]] = {}
        # The highest number seen of each stream, and when: what a ``have`` announces. At most
        # MAX_STREAMS, the least recently heard from forgotten first.
        self._latest: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        # Per neighbour: streams whose latest message was not queued for it (stream → number),
        # announced once it has room again; neighbours a publish stopped waiting for (until they
        # drain); neighbours told what this node holds since they connected.
        self._owed: dict[str, OrderedDict[tuple[str, str], int]] = {}
        self._owed_timer: asyncio.TimerHandle | None = None
        self._stalled: dict[str, asyncio.Future[None]] = {}  # peer → its drain, awaited
        self._greeted: set[str] = set()
        self._have_budget: dict[str, tuple[float, float]] = {}
        # Streams whose latest number a neighbour announced beyond what this node had: when
        # that message comes, this node announces it to its own neighbours.
        self._fetching: OrderedDict[tuple[str, str], int] = OrderedDict()
        # Streams whose messages a relay lacks, fetched into its repair cache (:meth:`_fetch`).
        self._fetches: OrderedDict[tuple[str, str], _Fetch] = OrderedDict()
        self._sweep_timer: asyncio.TimerHandle | None = None
        node.register(self, [Kind.PUBLISH, Kind.WANT, Kind.HAVE])
        node.set_hello("relay", True)
        node.set_hello("have", True)
        node.on("peer", self._on_peer)

    # -- the node's Layer ---------------------------------------------------------------------

    def on_envelope(self, peer_id: str, envelope: Envelope, connection: int) -> None:
        if envelope.kind is Kind.PUBLISH:
            self._on_publish(peer_id, envelope)
        elif envelope.kind is Kind.WANT:
            self._on_want(peer_id, envelope)
        else:
            self._on_have(peer_id, envelope)

    def on_connection_lost(self, peer_id: str, connection: int) -> None:
        """Topic delivery is per neighbour, not per connection: what a neighbour was sent is
        tracked by sequence numbers, whichever connection carried it. What was on its way on
        the connection that closed may be lost: a neighbour that keeps another is told the
        latest of each stream (``have``) on it."""
        if self.node.p2pt.is_connected(peer_id):
            self._announce_to(peer_id)

    def on_peer_lost(self, peer_id: str) -> None:
        self._on_peerclose(peer_id)

    def on_refused(
        self,
        peer_id: str,
        kind: Kind | None,
        call_id: int,
        error: RemoteProtocolError,
        *,
        binary: bool | None = None,
    ) -> None:
        """A topic message that cannot be read is dropped (the node reported it)."""
        self.stats.bad_payloads += 1

    async def wait_idle(self) -> None:
        """Nothing to wait for: a published message is sent when ``publish`` returns."""

    # -- local subscribers --------------------------------------------------------------------

    def register_type(self, topic: str, message_type: type[Message]) -> None:
        """Know a topic's message type, so relayed messages can change form; the hello says it
        (``topic_types``), and reflection describes it, for peers without the ``.proto``."""
        known = self._types.get(topic)
        self._types[topic] = message_type
        if known is not message_type:
            names = {t: m.DESCRIPTOR.full_name for t, m in sorted(self._types.items())}
            self.node.set_hello("topic_types", dict[str, JSONValue](names))

    @property
    def types(self) -> dict[str, type[Message]]:
        """The message type of each typed topic this node knows, by topic name."""
        return dict(self._types)

    def add_sink(self, topic: str, sink: Sink) -> None:
        """Hand every message of ``topic`` to ``sink``; the node then says it subscribes."""
        sinks = self._sinks.setdefault(topic, set())
        sinks.add(sink)
        if len(sinks) == 1:
            self.node.add_topic(topic)

    def remove_sink(self, topic: str, sink: Sink) -> None:
        sinks = self._sinks.get(topic)
        if sinks is None:
            return
        sinks.discard(sink)
        if not sinks:
            del self._sinks[topic]
            self.node.remove_topic(topic)
            # What was published while nobody here subscribed is not missing: a new
            # subscription starts afresh with each publisher.
            for stream in [s for s in self._order if s[1] == topic]:
                self._forget_stream(stream)

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, topic: str, payload: Payload) -> int:
        """Publish one message; returns how many neighbours it was sent to.

        A neighbour with ``neighbour_queue_bytes`` waiting to be sent to it already is not sent
        this message (it asks for it again when it catches up, or reports it lost). Then waits
        while every neighbour it was sent to has more unsent data than its data channel's
        high-water mark, until one of them drains (so that a fast publisher cannot queue without
        bound, nor overrun its neighbours' sockets), and at most ``drain_timeout`` seconds: a
        neighbour that did not drain by then is not waited for again until it has.
        """
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        origin = self.node.peer_id
        identity = self.node.identity
        publisher = identity.public_key if identity is not None else None
        self._first_sight((_source(origin, publisher), topic, seq))
        self.stats.published += 1
        envelope = Envelope(
            Kind.PUBLISH,
            0,
            seq,
            topic=topic,
            origin=origin,
            hops=self.hops,
            has_payload=True,
            publisher=publisher,
        )
        signatures: dict[bool, bytes] = {}

        def sign(binary: bool, data: Any) -> bytes:
            """The signature of this message in one form (each form is signed once)."""
            assert identity is not None
            if binary not in signatures:
                signed = publication_bytes(topic, origin, seq, _signed_payload(data))
                signatures[binary] = identity.sign(signed)
            return signatures[binary]

        signer = sign if identity is not None else None
        skipped = self.stats.skipped
        sent = self._send_on(envelope, payload, exclude={origin}, sign=signer)
        self._cache_put(
            (_source(origin, publisher), topic, seq), replace(envelope, hops=0), payload, signer
        )
        if not await self._room(sent) and self.stats.skipped > skipped:
            # Nobody made it wait, but some neighbour could take nothing: let the event loop
            # run (what is sent, what comes, keepalive) before the next message.
            await asyncio.sleep(0)
        return len(sent)

    async def _room(self, sent: list[tuple[str, int]]) -> bool:
        """Wait while every neighbour just sent to (but those stalled) holds more than the
        high-water mark unsent, until one drains or ``drain_timeout`` passes; those that made
        it wait the whole time are stalled: not waited for again until they drain. Whether it
        waited."""
        p2pt = self.node.p2pt
        high = p2pt.rtc_options.high_water_mark
        busy: list[tuple[str, int]] = []
        for peer_id, connection in sent:
            if peer_id in self._stalled:
                continue
            if p2pt.buffered_amount(peer_id, connection) <= high:
                return False  # it takes more now: no need to wait
            busy.append((peer_id, connection))
        if not busy:
            return False
        drains = {asyncio.ensure_future(self.node.drain(p, c)): p for p, c in busy}
        try:
            done, pending = await asyncio.wait(
                drains, timeout=self.drain_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            for drain in drains:
                drain.cancel()
            raise
        for drain in done:
            drain.exception()  # PeerClosed: it went away, which ends the wait too
        if done:
            for drain in pending:
                drain.cancel()
            return True
        for drain, peer_id in drains.items():
            old = self._stalled.pop(peer_id, None)
            if old is not None:
                old.cancel()
            self._stalled[peer_id] = drain
            drain.add_done_callback(self._unstall)
        logger.info(
            "topic neighbours %s did not drain in %.1f s: publishing on without waiting for them",
            ", ".join(peer_id[:8] for peer_id in drains.values()),
            self.drain_timeout,
        )
        return True

    def _unstall(self, drain: asyncio.Future[None]) -> None:
        """A stalled neighbour drained (or went away): publishing waits for it again."""
        if not drain.cancelled():
            drain.exception()
        for peer_id, waiting in list(self._stalled.items()):
            if waiting is drain:
                del self._stalled[peer_id]

    def _send_on(
        self,
        envelope: Envelope,
        payload: Payload,
        exclude: set[str],
        sign: Callable[[bool, Any], bytes] | None = None,
    ) -> list[tuple[str, int]]:
        """Send a message to the neighbours that want its topic, but those in ``exclude``;
        returns (peer id, connection) of each it was sent to. One with
        ``neighbour_queue_bytes`` waiting already is skipped, and told later (``have``)."""
        topic = envelope.topic
        assert topic is not None and envelope.origin is not None
        targets = [
            pid
            for pid, info in self.node.peers.items()
            if pid not in exclude and _wants(info, topic)
        ]
        if not targets:
            return []
        stream = (_source(envelope.origin, envelope.publisher), topic)
        relayed_to = tuple(sorted(targets))
        sent: list[tuple[str, int]] = []
        for pid in targets:
            if self._backlog(pid) >= self.neighbour_queue_bytes:
                self.stats.skipped += 1
                self._owe(pid, stream, envelope.seq)
                continue
            form = payload.form_for(self.node.is_binary(pid))
            if form is None:
                self.stats.unconvertible += 1
                continue
            binary, data = form
            if type(data) is bytes and len(data) > self.node.message_limit(pid):
                self.stats.too_large += 1  # its hello says it reads none this large
                continue
            out = Envelope(
                Kind.PUBLISH,
                new_message_id(),
                envelope.seq,
                payload=data,
                has_payload=True,
                topic=topic,
                origin=envelope.origin,
                hops=envelope.hops,
                relayed_to=relayed_to,
                publisher=envelope.publisher,
                signature=sign(binary, data) if sign is not None else envelope.signature,
            )
            try:
                sent.append((pid, self.node.send(pid, out, binary=binary)))
            except TooLargeForPeer:  # its data channel takes no header this large
                self.stats.too_large += 1
                continue
            except (PeerClosed, SendQueueFull):
                self.stats.unsent += 1  # a gap there, which its subscribers ask to fill
                self._owe(pid, stream, envelope.seq)
                continue
            owed = self._owed.get(pid) if self._owed else None
            if owed:  # what it gets now shows it what it missed before
                owed.pop(stream, None)
        return sent

    # -- telling neighbours what they may have missed ------------------------------------------

    def _owe(self, peer_id: str, stream: tuple[str, str], seq: int) -> None:
        """A message of ``stream`` was not queued for ``peer_id``: announce the stream's latest
        to it once it has room again (unless a later message reaches it first)."""
        owed = self._owed.setdefault(peer_id, OrderedDict())
        owed[stream] = max(seq, owed.get(stream, seq))
        owed.move_to_end(stream)
        if len(owed) > MAX_STREAMS:
            owed.popitem(last=False)
        if self._owed_timer is None:
            loop = asyncio.get_running_loop()
            self._owed_timer = loop.call_later(self.repair_after, self._pay_owed)

    def _pay_owed(self) -> None:
        """Announce to each neighbour that has room again the streams it was not sent."""
        self._owed_timer = None
        for peer_id, owed in list(self._owed.items()):
            if peer_id not in self.node.peers:
                del self._owed[peer_id]  # it is told everything when it is back
            elif self._backlog(peer_id) < REPAIR_BACKLOG:
                del self._owed[peer_id]
                for stream in owed:
                    self._tell(peer_id, stream)
        if self._owed:
            loop = asyncio.get_running_loop()
            self._owed_timer = loop.call_later(self.repair_after, self._pay_owed)

    def _on_peer(self, info: PeerInfo) -> None:
        """A neighbour said hello: the first time on its connections, tell it the latest of each
        stream this node holds (it may be back from an outage, or have lost another path)."""
        if info.peer_id not in self._greeted and self.node.p2pt.is_connected(info.peer_id):
            self._greeted.add(info.peer_id)
            self._announce_to(info.peer_id)

    def _announce_to(self, peer_id: str) -> None:
        """Tell a neighbour the latest number of each stream this node heard from within
        ``seen_ttl`` and can send again, on the topics it takes (at most MAX_ANNOUNCED streams,
        the most recent first)."""
        info = self.node.peers.get(peer_id)
        if info is None or info.extra.get("have") is not True:
            return
        told = 0
        oldest = time.monotonic() - self.seen_ttl
        for stream, (_, when) in reversed(self._latest.items()):
            if when < oldest or told >= MAX_ANNOUNCED:
                break
            if stream[0].partition("/")[0] != peer_id and _wants(info, stream[1]):
                told += self._tell(peer_id, stream)

    def _tell(self, peer_id: str, stream: tuple[str, str]) -> bool:
        """Send ``peer_id`` a ``have`` naming the latest message of ``stream`` this node can
        send again; whether one was sent."""
        info = self.node.peers.get(peer_id)
        latest = self._latest.get(stream)
        if info is None or info.extra.get("have") is not True or latest is None:
            return False
        source, topic = stream
        if (source, topic, latest[0]) not in self._cache:
            return False  # it could not be sent again: a have would promise what is not here
        origin, _, key = source.partition("/")
        have = Envelope(
            Kind.HAVE,
            new_message_id(),
            latest[0],
            topic=topic,
            origin=origin,
            publisher=bytes.fromhex(key) if key else None,
        )
        try:
            self.node.send(peer_id, have)
        except (PeerClosed, SendQueueFull):
            return False
        self.stats.announced += 1
        return True

    def _on_have(self, peer_id: str, envelope: Envelope) -> None:
        """A neighbour holds message ``seq`` of a stream: if this node has not seen it, ask for
        it (a subscriber keeps asking, with the gap below it, as for any gap), and once it comes,
        tell its own neighbours. A stream this node never carried is none of its business."""
        if not self._spend(self._have_budget, peer_id, 1, HAVES_PER_SECOND):
            return
        topic, origin, seq = envelope.topic, envelope.origin, envelope.seq
        assert topic is not None and origin is not None
        if origin == self.node.peer_id:
            return
        stream = (_source(origin, envelope.publisher), topic)
        order = self._order.get(stream) if topic in self._sinks else None
        if order is not None and order.start_timer is None:
            if seq < order.next_seq:
                return
            # Every neighbour that says it holds a message not come yet is asked in turn, so
            # that one that claims numbers never published (2**32 - 1) cannot keep the others'
            # true claims from being asked.
            _announced_by(order.announcers, peer_id)
            if seq <= order.announced or (order.waiting and seq <= max(order.waiting)):
                return  # a message that came, or a claim, shows that gap already
            order.announced = seq
            loop = asyncio.get_running_loop()
            if order.gap_timer is None:
                order.gap_timer = loop.call_later(self.reorder_timeout, self._skip_gap, stream)
            if order.repair_timer is None:
                order.repair_timer = loop.call_later(self.repair_after, self._repair, stream)
        else:
            latest = self._latest.get(stream)
            if latest is None or seq <= latest[0]:
                return
            self._fetch(stream, latest[0] + 1, seq, peer_id, envelope.publisher)
        self._fetching[stream] = max(seq, self._fetching.get(stream, seq))
        self._fetching.move_to_end(stream)
        if len(self._fetching) > MAX_STREAMS:
            self._fetching.popitem(last=False)

    def _fetch(
        self, stream: tuple[str, str], first: int, last: int, announcer: str, key: bytes | None
    ) -> None:
        """A relay lacks messages ``first`` to ``last`` of a stream a neighbour holds: fill its
        repair cache with them (at most ``cache_max`` of the latest), so that the neighbours it
        tells can ask it in turn; rounds as a subscriber's repair (the first ``repair_after``
        seconds after the announcement), for ``reorder_timeout`` at most."""
        fetch = self._fetches.get(stream)
        # What is lacking starts after the latest this node holds, whatever a neighbour claims:
        # a claim of 2**32 - 1 must not move the fetch past the messages really missing.
        last = min(last, first + self.cache_max - 1)
        if fetch is None:
            fetch = _Fetch(first, last, [announcer], key)
            fetch.until = time.monotonic() + self.reorder_timeout
            self._fetches[stream] = fetch
            if len(self._fetches) > MAX_STREAMS:
                _, dropped = self._fetches.popitem(last=False)
                if dropped.timer is not None:
                    dropped.timer.cancel()
            # What is on its way by other paths comes meanwhile, as a subscriber's gap waits.
            loop = asyncio.get_running_loop()
            fetch.timer = loop.call_later(self.repair_after, self._fetch_round, stream)
        else:
            fetch.last = max(fetch.last, min(last, fetch.first + self.cache_max - 1))
            _announced_by(fetch.announcers, announcer)

    def _fetch_round(self, stream: tuple[str, str]) -> None:
        """Ask for the next MAX_WANTED messages a relay lacks (the announced one first)."""
        fetch = self._fetches.get(stream)
        if fetch is None:
            return
        fetch.timer = None
        source, topic = stream

        def lacking(start: int) -> tuple[int, ...]:
            numbers = range(start, fetch.last + 1)
            wanted = (n for n in numbers if (source, topic, n) not in self._cache)
            return tuple(itertools.islice(wanted, MAX_WANTED))

        missing = lacking(fetch.first)
        if not missing or time.monotonic() > fetch.until:
            del self._fetches[stream]
            return
        fetch.first = missing[0]  # what came below it stays (the cache keeps the latest)
        # After what the last round asked for and did not get (the lowest may be gone from every
        # neighbour's cache while the rest is held), from the lowest again once past the end.
        unanswered = [
            n for n in fetch.asked if n != fetch.last and (source, topic, n) not in self._cache
        ]
        if unanswered:
            missing = lacking(max(unanswered) + 1) or missing
        if (source, topic, fetch.last) not in self._cache and fetch.last not in missing:
            missing = (*missing[:-1], fetch.last)
        fetch.asked = missing
        origin = source.partition("/")[0]
        carriers = [
            pid for pid, info in self.node.peers.items() if pid == origin or _wants(info, topic)
        ]
        ask = _in_turn(fetch.announcers, fetch.rounds, carriers)
        if ask is None and carriers:
            ask = random.choice(carriers)
        if ask is not None:
            want = Envelope(
                Kind.WANT,
                new_message_id(),
                topic=topic,
                origin=origin,
                seqs=missing,
                publisher=fetch.key,
            )
            with contextlib.suppress(PeerClosed, SendQueueFull):
                self.node.send(ask, want)
                self.stats.wanted += len(missing)
        fetch.rounds += 1
        delay = self.repair_after * min(2**fetch.rounds, 8)
        fetch.timer = asyncio.get_running_loop().call_later(delay, self._fetch_round, stream)

    def _fetched(self, stream: tuple[str, str], fetch: _Fetch) -> None:
        """A message a relay asked for came: once all the round asked for has, ask for more."""
        source, topic = stream
        if fetch.timer is not None and all((source, topic, n) in self._cache for n in fetch.asked):
            fetch.timer.cancel()
            fetch.rounds = 0
            loop = asyncio.get_running_loop()
            fetch.timer = loop.call_later(REPAIR_PACE, self._fetch_round, stream)

    # -- receiving ----------------------------------------------------------------------------

    def _on_publish(self, peer_id: str, envelope: Envelope) -> None:
        topic = envelope.topic
        assert topic is not None
        origin = envelope.origin or peer_id
        seq = envelope.seq
        if seq < 0:  # a publisher that numbers nothing: number its messages as they come
            name = f"{origin}/{topic}"
            seq = self._anonymous_seq.pop(name, 0)
            self._anonymous_seq[name] = seq + 1
            if len(self._anonymous_seq) > MAX_STREAMS:
                self._anonymous_seq.popitem(last=False)
        self.stats.received += 1
        if not self._authentic(origin, topic, seq, envelope):
            self.stats.bad_signatures += 1
            logger.warning("dropped a %s message said to be from %s: bad signature", topic, origin)
            return
        key = (_source(origin, envelope.publisher), topic, seq)
        if origin == self.node.peer_id or not self._first_sight(key):
            self.stats.duplicates += 1
            return
        # What is kept of a JSON payload beyond this message (the repair cache, the reorder
        # buffer, subscriptions) is compact: a parsed value can hold 24 times what was sent.
        kept = cached = envelope.payload
        if not isinstance(kept, bytes | bytearray | memoryview):
            kept = cached = JSONText(envelope.payload)
            message_type = self._types.get(topic)
            if message_type is not None and topic in self._sinks:
                with contextlib.suppress(RpcError):  # a typed reader refuses it when it comes
                    message = MessageCodec(message_type).decode(
                        envelope.payload, self.node.max_message_size
                    )
                    kept = Decoded(message_type, message)
        numbered = Envelope(
            Kind.PUBLISH,
            envelope.call_id,
            seq,
            payload=kept,
            has_payload=True,
            topic=topic,
            origin=origin,
            hops=envelope.hops,
            # Who the previous hop sent it to matters only to relaying it, below: what waits or
            # is queued keeps none of it (up to 255 peer ids, uncharged).
            publisher=envelope.publisher,
            signature=envelope.signature,
        )
        # A signed message is passed on in the form it was signed in; others may change form.
        self._cache_put(
            key,
            Envelope(  # as ``numbered``, without its payload, not to be relayed further
                Kind.PUBLISH,
                envelope.call_id,
                seq,
                has_payload=True,
                topic=topic,
                origin=origin,
                publisher=envelope.publisher,
                signature=envelope.signature,
            ),
            Payload.received(cached, None if envelope.signature else self._types.get(topic)),
            None,
        )
        if self._fetches or self._fetching:
            self._arrived(peer_id, key, envelope.hops)
        if envelope.hops > 0:
            exclude = {peer_id, origin, *envelope.relayed_to}
            relay = Envelope(
                Kind.PUBLISH,
                0,
                seq,
                topic=topic,
                origin=origin,
                hops=envelope.hops - 1,
                publisher=envelope.publisher,
                signature=envelope.signature,
            )
            # A signed message goes on exactly as it came: another form would not verify.
            message_type = self._types.get(topic) if envelope.signature is None else None
            payload = Payload.received(envelope.payload, message_type)
            self.stats.relayed += len(self._send_on(relay, payload, exclude))
        if topic in self._sinks:
            self._in_order(numbered)

    def _arrived(self, peer_id: str, key: tuple[str, str, int], hops: int) -> None:
        """A message new here came from ``peer_id``, perhaps one this node asked for after a
        neighbour announced it: a relay's fetch asks for more once its round is answered, and
        the announced one, come as a copy that goes no further (``hops`` 0), is announced in
        turn to the neighbours that take its topic."""
        stream, seq = key[:2], key[2]
        fetch = self._fetches.get(stream)
        if fetch is not None and hops == 0:
            self._fetched(stream, fetch)
        fetching = self._fetching.get(stream)
        if fetching is None or seq < fetching:
            return
        del self._fetching[stream]
        if hops == 0:  # else it is relayed as it came
            origin = stream[0].partition("/")[0]
            for pid, info in list(self.node.peers.items()):
                if pid not in (peer_id, origin) and _wants(info, stream[1]):
                    self._tell(pid, stream)

    def _authentic(self, origin: str, topic: str, seq: int, envelope: Envelope) -> bool:
        """Whether a message's signature (if any) holds, and a neighbour that proved an identity
        is not impersonated (its messages must carry its signature)."""
        neighbour = self.node.peers.get(origin)
        known = neighbour.public_key if neighbour is not None else None
        if envelope.publisher is None or envelope.signature is None:
            return known is None
        if known is not None and envelope.publisher != known:
            return False
        signed = publication_bytes(topic, origin, seq, _signed_payload(envelope.payload))
        return verify_publication(envelope.publisher, envelope.signature, signed)

    def _in_order(self, envelope: Envelope) -> None:
        assert envelope.origin is not None and envelope.topic is not None
        stream = (_source(envelope.origin, envelope.publisher), envelope.topic)
        order = self._order.get(stream)
        if order is None:  # the first we hear of this publisher
            order = self._order[stream] = _Order(envelope.seq, stream)
            if len(self._order) > MAX_STREAMS:
                self._forget_stream(next(iter(self._order)))
            if envelope.seq > 0:  # earlier ones may be on their way by longer paths
                loop = asyncio.get_running_loop()
                order.start_timer = loop.call_later(self.start_window, self._start, stream)
        else:
            self._order.move_to_end(stream)
            order.left_at = None
            if envelope.seq >= order.announced >= 0:
                order.announced = -1  # it came: the gap below it, if any, is a gap like any other
        if order.start_timer is not None:
            self._waiting_bytes += order.wait(envelope)
            order.next_seq = min(order.next_seq, envelope.seq)
            if envelope.seq == 0 or self._overflows(order):
                self._start(stream)
                self._shed()
            return
        if envelope.seq < order.next_seq:
            self.stats.late += 1
            return
        if envelope.seq > order.next_seq:
            self._waiting_bytes += order.wait(envelope)
            if self._overflows(order):
                self._skip_gap(stream)
                self._shed()
                return
            loop = asyncio.get_running_loop()
            if order.gap_timer is None:
                order.gap_timer = loop.call_later(self.reorder_timeout, self._skip_gap, stream)
            if order.repair_timer is None:
                order.repair_timer = loop.call_later(self.repair_after, self._repair, stream)
            return
        self._deliver(envelope)
        order.next_seq += 1
        self._drain(order)

    def _drain(self, order: _Order) -> None:
        while order.next_seq in order.waiting:
            envelope, size = order.take(order.next_seq)
            self._waiting_bytes -= size
            self._deliver(envelope)
            order.next_seq += 1
        if not order.gap():
            for timer in (order.gap_timer, order.repair_timer):
                if timer is not None:
                    timer.cancel()
            order.gap_timer = order.repair_timer = None
            order.repair_rounds = 0
            order.asked = order.announced = -1
        elif order.next_seq > order.asked >= 0 and order.repair_timer is not None:
            # All the last round asked for came: ask for the rest of the gap now, not after
            # the round's back-off (a long outage leaves more than one round can ask for).
            order.repair_timer.cancel()
            order.repair_rounds = 0
            order.asked = -1
            loop = asyncio.get_running_loop()
            order.repair_timer = loop.call_later(REPAIR_PACE, self._repair, order.stream)

    def _forget_stream(self, stream: tuple[str, str]) -> None:
        order = self._order.pop(stream)
        self._waiting_bytes -= order.waiting_bytes
        for timer in (order.gap_timer, order.start_timer, order.repair_timer):
            if timer is not None:
                timer.cancel()

    def _overflows(self, order: _Order) -> bool:
        return (
            len(order.waiting) > self.reorder_window
            or order.waiting_bytes > self.reorder_bytes
            or self._waiting_bytes > self.reorder_total_bytes
        )

    @property
    def waiting_bytes(self) -> int:
        """Bytes the messages waiting for their turn hold, over every stream."""
        return self._waiting_bytes

    def _shed(self) -> None:
        """While the messages waiting in all streams hold more than ``reorder_total_bytes``,
        give up on the gap of the stream that holds most (what waits there is delivered, the
        gap reported to the subscribers)."""
        while self._waiting_bytes > self.reorder_total_bytes:
            stream = max(self._order, key=lambda s: self._order[s].waiting_bytes, default=None)
            if stream is None or not self._order[stream].waiting:
                return
            order = self._order[stream]
            if order.start_timer is not None:
                order.start_timer.cancel()
                order.start_timer = None
            self._skip_gap(stream)

    def _start(self, stream: tuple[str, str]) -> None:
        """Settle where a publisher's messages start here: at the lowest that came."""
        order = self._order.get(stream)
        if order is None or order.start_timer is None:
            return
        order.start_timer.cancel()
        order.start_timer = None
        self._drain(order)
        if order.waiting:
            loop = asyncio.get_running_loop()
            if order.gap_timer is None:
                order.gap_timer = loop.call_later(self.reorder_timeout, self._skip_gap, stream)
            if order.repair_timer is None:
                order.repair_timer = loop.call_later(self.repair_after, self._repair, stream)

    def _skip_gap(self, stream: tuple[str, str]) -> None:
        """Give up on missing messages: tell the subscribers which, and deliver what waits from
        the lowest number on; then give up on every later gap that keeps a message waiting past
        ``reorder_timeout``, so that no message waits longer than that, however many gaps a
        publisher leaves."""
        order = self._order.get(stream)
        if order is None:
            return
        if order.gap_timer is not None:
            order.gap_timer.cancel()
            order.gap_timer = None
        if not order.waiting:
            # What a neighbour said it holds never came (nothing shows it was published: a
            # have promises, only a message proves): stop asking for it.
            if order.announced >= order.next_seq:
                logger.info(
                    "topic %s: message %d of %s, announced by %s, never came",
                    stream[1],
                    order.announced,
                    stream[0][:8],
                    ", ".join(pid[:8] for pid in order.announcers) or "?",
                )
            order.announced = -1
            order.announcers.clear()
            self._drain(order)
            return
        self._give_up_to(stream, order, min(order.waiting))
        now = time.monotonic()
        if order.waiting and now - order.oldest() >= self.reorder_timeout:
            cutoff = now - self.reorder_timeout
            self._give_up_to(stream, order, max(n for n, t in order.since.items() if t <= cutoff))
        if order.waiting:
            loop = asyncio.get_running_loop()
            wait = max(0.0, order.oldest() + self.reorder_timeout - time.monotonic())
            order.gap_timer = loop.call_later(wait, self._skip_gap, stream)
        elif order.gap():  # announced beyond what waited: its own time to come
            loop = asyncio.get_running_loop()
            order.gap_timer = loop.call_later(self.reorder_timeout, self._skip_gap, stream)

    def _give_up_to(self, stream: tuple[str, str], order: _Order, last: int) -> None:
        """Deliver what waits up to number ``last`` (and what follows it without a gap),
        reporting each gap below it lost."""
        source, topic = stream
        origin, _, key = source.partition("/")
        publisher = bytes.fromhex(key) if key else None
        for seq in sorted(n for n in order.waiting if n <= last):
            if seq > order.next_seq:
                self.stats.skipped_gaps += seq - order.next_seq
                for sink in list(self._sinks.get(topic, ())):
                    sink.lost_messages(origin, order.next_seq, seq - 1, publisher)
                order.next_seq = seq
            self._drain(order)

    # -- filling gaps ---------------------------------------------------------------------------

    def _repair(self, stream: tuple[str, str]) -> None:
        """Ask the neighbours for the messages of a gap (``want``), and again while it lasts:
        two a round, the one that announced the gap (``have``) among them."""
        order = self._order.get(stream)
        if order is None:
            return
        order.repair_timer = None
        if not order.gap():
            return
        # The first MAX_WANTED numbers missing, found lazily: the gap's ends are numbers a peer
        # chose (up to 2**32), so its size says nothing of the work a peer may cause, while
        # this skips at most the messages that wait (reorder_window).
        announced = order.announced if order.announced >= order.next_seq else -1
        highest = max(max(order.waiting, default=-1), announced)
        room = MAX_WANTED - 1 if announced >= 0 else MAX_WANTED
        # Each round asks for the numbers after those the last one asked for while some of
        # those have not come (from the lowest again once past the gap): the neighbours' caches
        # keep the latest messages, so the lowest of a long gap may be gone from every one of
        # them while the rest is still held; asking for the lowest alone would never get it.
        start = order.asked + 1 if order.asked >= order.next_seq else order.next_seq
        missing: tuple[int, ...] = ()
        for first in (start, order.next_seq) if start > order.next_seq else (start,):
            gap = range(first, highest)
            missing = tuple(itertools.islice((n for n in gap if n not in order.waiting), room))
            if missing:
                break
        if len(order.waiting) > order.progress:
            order.repair_rounds = 0  # the last round brought messages: no back-off
        order.progress = len(order.waiting)
        order.asked = max(missing, default=-1)
        if announced >= 0:
            missing += (announced,)  # it comes first, and shows the gap below it
        source, topic = stream
        origin, _, key = source.partition("/")
        want = Envelope(
            Kind.WANT,
            new_message_id(),
            topic=topic,
            origin=origin,
            seqs=missing,
            publisher=bytes.fromhex(key) if key else None,
        )
        # Two neighbours a round, others the next: asking every neighbour at once under load
        # brings back as many copies as there are neighbours.
        carriers = [
            pid for pid, info in self.node.peers.items() if pid == origin or _wants(info, topic)
        ]
        chosen = random.sample(carriers, min(2, len(carriers)))
        announcer = (
            _in_turn(order.announcers, order.repair_rounds, carriers) if announced >= 0 else None
        )
        if announcer is not None and announcer not in chosen:
            chosen[-1] = announcer
        for pid in chosen:
            with contextlib.suppress(PeerClosed, SendQueueFull):
                self.node.send(pid, want)
                self.stats.wanted += len(missing)
        order.repair_rounds += 1
        delay = self.repair_after * min(2**order.repair_rounds, 8)  # 1, 2, 4, 4... × repair_after
        loop = asyncio.get_running_loop()
        order.repair_timer = loop.call_later(delay, self._repair, stream)

    def _on_want(self, peer_id: str, envelope: Envelope) -> None:
        """Send a neighbour the recent messages it asks for: at most ``WANTS_PER_SECOND`` asks a
        second from one peer, each for at most ``MAX_WANTED`` messages, and at most
        ``REPAIR_BYTES_PER_SECOND`` of them, so that a small ask cannot make a node send much;
        none while ``REPAIR_BACKLOG`` bytes already wait to be sent to it, so that a small ask
        cannot make a node hold much either."""
        if not self._may_want(peer_id):
            return
        assert envelope.topic is not None and envelope.origin is not None
        source = _source(envelope.origin, envelope.publisher)
        for seq in envelope.seqs:
            key = (source, envelope.topic, seq)
            cached = self._cache.get(key)
            if cached is None:
                continue
            if self._backlog(peer_id) >= REPAIR_BACKLOG:
                return
            if not self._spend(self._repair_budget, peer_id, cached.size, REPAIR_BYTES_PER_SECOND):
                return
            sent = self._send_one(peer_id, cached)
            self._recount(key, cached)  # sending may have converted it to a form it did not hold
            if sent:
                self.stats.repaired += 1

    def _backlog(self, peer_id: str) -> int:
        """Bytes waiting to be sent to ``peer_id``, over its connections."""
        p2pt = self.node.p2pt
        return sum(p2pt.buffered_amount(peer_id, c) for c in p2pt.connections(peer_id))

    def _may_want(self, peer_id: str) -> bool:
        return self._spend(self._want_budget, peer_id, 1, WANTS_PER_SECOND)

    @staticmethod
    def _spend(
        budgets: dict[str, tuple[float, float]], peer_id: str, cost: float, rate: float
    ) -> bool:
        """Take ``cost`` from a peer's bucket, which refills at ``rate`` a second up to ``rate``."""
        now = time.monotonic()
        tokens, then = budgets.get(peer_id, (rate, now))
        tokens = min(rate, tokens + (now - then) * rate)
        if tokens < cost:
            budgets[peer_id] = (tokens, now)
            return False
        budgets[peer_id] = (tokens - cost, now)
        return True

    def _send_one(self, peer_id: str, cached: _Cached) -> bool:
        info = self.node.peers.get(peer_id)
        form = cached.payload.form_for(info is not None and self.node.is_binary(peer_id))
        if form is None:
            return False
        binary, data = form
        template = cached.template
        out = replace(
            template,
            call_id=new_message_id(),
            payload=data,
            signature=cached.sign(binary, data) if cached.sign is not None else template.signature,
        )
        try:
            self.node.send(peer_id, out, binary=binary)
        except (PeerClosed, SendQueueFull, TooLargeForPeer):
            return False
        return True

    def _cache_put(
        self,
        key: tuple[str, str, int],
        template: Envelope,
        payload: Payload,
        sign: Callable[[bool, Any], bytes] | None,
    ) -> None:
        size = payload.held_size() + ENVELOPE_OVERHEAD
        old = self._cache.pop(key, None)
        if old is not None:
            self._cached_bytes -= old.size
        stream = key[:2]
        latest = self._latest.get(stream)
        if latest is None or key[2] >= latest[0]:
            self._latest[stream] = (key[2], time.monotonic())
            self._latest.move_to_end(stream)
            if len(self._latest) > MAX_STREAMS:
                self._latest.popitem(last=False)
        self._cache[key] = _Cached(template, payload, sign, size)
        self._cached_bytes += size
        while self._cache and (
            len(self._cache) > self.cache_max or self._cached_bytes > self.cache_bytes
        ):
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= dropped.size

    def _recount(self, key: tuple[str, str, int], cached: _Cached) -> None:
        size = cached.payload.held_size() + ENVELOPE_OVERHEAD
        if size != cached.size and self._cache.get(key) is cached:
            self._cached_bytes += size - cached.size
            cached.size = size
            while self._cache and self._cached_bytes > self.cache_bytes:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= dropped.size

    def _deliver(self, envelope: Envelope) -> None:
        assert envelope.topic is not None
        self.stats.delivered += 1
        for sink in list(self._sinks.get(envelope.topic, ())):
            sink.deliver(envelope)

    # -- the seen cache -----------------------------------------------------------------------

    def _first_sight(self, key: tuple[str, str, int]) -> bool:
        """Whether a message id is new (then it is remembered): an id is kept as a 16-byte
        digest keyed with a secret of this node, so that what a message's strings weigh (a
        peer id, a topic) costs nothing here, and nobody can make two ids collide."""
        now = time.monotonic()
        if now - self._seen_since >= self.seen_ttl:
            aged_out = now - self._seen_since >= 2 * self.seen_ttl
            self._seen_old = set() if aged_out else self._seen_new
            self._seen_new = set()
            self._seen_since = now
        source, topic, seq = key
        digest = hashlib.blake2b(
            f"{source}\0{topic}\0{seq}".encode("utf-8", "surrogatepass"),
            digest_size=16,
            key=self._seen_key,
        ).digest()
        if digest in self._seen_new or digest in self._seen_old:
            return False
        self._seen_new.add(digest)
        if len(self._seen_new) >= max(1, self.seen_max // 2):  # each generation: half of it
            self._seen_old, self._seen_new = self._seen_new, set()
            self._seen_since = now
        return True

    def _on_peerclose(self, peer_id: str) -> None:
        """A neighbour left: forget what was kept for it as a neighbour at once; its streams'
        delivery state ``forget_after`` seconds later, unless it is back by then."""
        self._want_budget.pop(peer_id, None)
        self._repair_budget.pop(peer_id, None)
        self._have_budget.pop(peer_id, None)
        self._owed.pop(peer_id, None)
        self._greeted.discard(peer_id)
        stalled = self._stalled.pop(peer_id, None)
        if stalled is not None:
            stalled.cancel()
        now = time.monotonic()
        left = False
        for stream, order in self._order.items():
            if stream[0].partition("/")[0] == peer_id:
                order.left_at = now
                left = True
        if left and self._sweep_timer is None:
            loop = asyncio.get_running_loop()
            self._sweep_timer = loop.call_later(self.forget_after, self._sweep)

    def _sweep(self) -> None:
        """Forget the streams of publishers that left ``forget_after`` seconds ago or more and
        are not back (those with messages waiting once these are given up on)."""
        self._sweep_timer = None
        cutoff = time.monotonic() - self.forget_after
        soonest: float | None = None
        for stream, order in list(self._order.items()):
            if order.left_at is None:
                continue
            if stream[0].partition("/")[0] in self.node.peers:
                order.left_at = None  # back, saying nothing yet
            elif order.left_at <= cutoff and not order.waiting:
                self._forget_stream(stream)
            else:
                soonest = min(soonest if soonest is not None else order.left_at, order.left_at)
        if soonest is not None:
            loop = asyncio.get_running_loop()
            wait = max(self.repair_after, soonest - cutoff)
            self._sweep_timer = loop.call_later(wait, self._sweep)

    def close(self) -> None:
        """The node is closing: stop timers, end every subscription."""
        for order in self._order.values():
            for timer in (order.gap_timer, order.start_timer, order.repair_timer):
                if timer is not None:
                    timer.cancel()
        self._order.clear()
        for timer in (self._owed_timer, self._sweep_timer):
            if timer is not None:
                timer.cancel()
        for fetch in self._fetches.values():
            if fetch.timer is not None:
                fetch.timer.cancel()
        self._fetches.clear()
        self._owed_timer = self._sweep_timer = None
        self._owed.clear()
        for drain in self._stalled.values():
            drain.cancel()
        self._stalled.clear()
        self._waiting_bytes = 0
        sinks = [sink for sinks in self._sinks.values() for sink in sinks]
        self._sinks.clear()
        for sink in sinks:
            sink.end()


def _source(origin: str, publisher: bytes | None) -> str:
    """Whose message stream this is: the peer id, and the key it was signed with."""
    return origin if publisher is None else f"{origin}/{publisher.hex()}"


def _signed_payload(data: Any) -> bytes:
    """A payload's bytes as signed: protobuf bytes as they are, JSON in canonical form."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    return canonical_json(data)


def _wants(info: PeerInfo, topic: str) -> bool:
    """Whether a neighbour gets a topic's messages: it subscribes, or it relays for others."""
    return topic in info.topics or info.extra.get("relay") is True


class Payload:
    """A message in the forms it can be sent in: protobuf bytes, proto3 JSON, or both.

    A relay that knows the topic's message type converts between the forms; one that does not
    passes on the form it received (every node reads JSON; only binary-capable nodes read bytes).
    """

    __slots__ = ("_binary", "_json", "_message", "_type")

    def __init__(
        self,
        *,
        message: Message | None = None,
        binary: bytes | None = None,
        json: Any = _MISSING,
        message_type: type[Message] | None = None,
    ) -> None:
        self._message = message
        self._binary = binary
        self._json = json
        self._type = message_type

    def held_size(self) -> int:
        """About the bytes this payload takes: each form it holds (bytes, a message by its
        serialized size, JSON as compact text or as parsed), summed."""
        size = len(self._binary) if self._binary is not None else 0
        if self._message is not None:
            size += self._message.ByteSize()
        if self._json is not _MISSING:
            size += kept_size(self._json)
        return size

    @classmethod
    def of(cls, message: Message) -> Payload:
        return cls(message=message, message_type=type(message))

    @classmethod
    def received(cls, data: Any, message_type: type[Message] | None) -> Payload:
        """A received payload: bytes, a JSON value, or JSON as kept (:class:`JSONText`)."""
        if isinstance(data, bytes | bytearray | memoryview):
            return cls(binary=bytes(data), message_type=message_type)
        return cls(json=data, message_type=message_type)

    def form_for(self, binary_peer: bool) -> tuple[bool, Any] | None:
        """(binary?, data) to send to a peer that does (or does not) read binary envelopes."""
        if binary_peer:
            data = self._bytes()
            if data is not None:
                return True, data
        json_value = self._json_value()
        if json_value is not _MISSING:
            return False, json_value
        return None

    def _bytes(self) -> bytes | None:
        if self._binary is None:
            message = self._parsed()
            if message is not None:
                self._binary = MessageCodec(type(message)).encode(message, True, MAX_PAYLOAD)
                if self._type is not None:
                    # The bytes give it back when needed: a cache holding both forms of each
                    # message would hold half the messages its bytes allow.
                    self._message = None
        return self._binary

    def _json_value(self) -> Any:
        if self._json is _MISSING:
            message = self._parsed()
            if message is not None:
                self._json = MessageCodec(type(message)).encode(message, False, MAX_PAYLOAD)
        if isinstance(self._json, JSONText):
            return self._json.value()  # parsed for this send only: the text is what stays
        return self._json

    def _parsed(self) -> Message | None:
        if self._message is None and self._type is not None:
            data = self._binary if self._binary is not None else self._json
            if data is _MISSING:
                return None
            try:
                self._message = MessageCodec(self._type).decode(data, MAX_PAYLOAD)
            except RpcError:
                return None
        return self._message


def router_of(node: Mux) -> Router:
    """The node's pub/sub router, created on first use."""
    return node.layer("pubsub", Router)


#: Neighbours remembered as announcers of one gap (the latest ones).
MAX_ANNOUNCERS = 4


def _announced_by(announcers: list[str], peer_id: str) -> None:
    """Remember ``peer_id`` as one that announced the gap, the latest last, at most
    :data:`MAX_ANNOUNCERS`."""
    if peer_id in announcers:
        announcers.remove(peer_id)
    announcers.append(peer_id)
    del announcers[:-MAX_ANNOUNCERS]


def _in_turn(announcers: list[str], turn: int, carriers: list[str]) -> str | None:
    """The announcer to ask in round ``turn``: each still connected one in turn."""
    present = [pid for pid in announcers if pid in carriers]
    return present[turn % len(present)] if present else None
