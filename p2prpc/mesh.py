"""The swarm outlives its trackers: peer exchange and signalling relayed through neighbours.

Every node tells its neighbours which peers it is connected to and what they serve (a ``pex``:
services, topics, proven public keys), again whenever that changes, so each node knows the peers
two hops away (:attr:`Mesh.known_peers`). To connect to one of them it makes an offer
(:meth:`~p2prpc.p2pt.P2PT.make_offer`) and sends it in a ``signal`` to a neighbour that lists
it; that neighbour passes it on, the peer answers the same way, and the connection is made with
no tracker involved. In a secret swarm offers and answers are sealed exactly as through a tracker
(and bound to their recipient), so relays that are not members can neither read nor alter them;
between peers with identities they are sealed to the recipient's own X25519 key, announced in the
hello and in pex entries and signed by the peer's identity (:mod:`p2prpc.wire.sealbox`), so that
no member relaying them can either. A pex entry whose seal key its identity did not sign for its
peer id is dropped and counted (:attr:`MeshStats.bad_seal_keys`). A node with a seal key never
falls back to the swarm seal for a peer listed with an identity (a relay could open that), and
refuses an offer so sealed from a peer it knows has one.

The mesh is used where it matters: a node below ``min_peers`` (or unbounded: short of every peer
it knows of), or whose ``request_more_peers()`` is called, connects through it as well as
through the trackers; a stub that needs a service no neighbour serves connects to a peer that
serves it (:meth:`Mesh.reach_service`), past the degree bound if need be (``max_extra_peers``).
With every tracker gone, the swarm keeps repairing itself as peers leave.

Only peers whose hello says ``"mesh": 1`` are sent anything of this; plain P2PT peers see
nothing new. Bounded: a pex lists at most 64 peers (``wire.mesh`` caps its names too) and each
neighbour's latest one replaces its previous; signals from each neighbour are limited to
``signal_rate`` a second (bursts of ``signal_burst``), pexes to ``pex_rate`` (past that they are
dropped and counted in :attr:`MeshStats.throttled`); a signal passes at most ``hops`` relays
(``wire.mesh.MAX_HOPS`` at most); at most ``max_attempts`` connections are being made at once.
Relays keep no state per signal. Pexes go out in rounds at least ``pex_interval`` apart, each
neighbour getting one only when its list changed.

An attempt (a connection being made through the mesh) ends as soon as the mesh can tell it will
not connect: refused, its relay gone or no longer listing the peer, its answer refused by our
caps, or its connection closed before the peer said hello (one past ``max_peers`` at either end).
Whatever is left (a signal lost with a relay, a connection that does not open) holds its place
among the attempts and in the degree for at most ``attempt_timeout`` seconds (5), not P2PT's
``direct_offer_timeout`` (20): a relayed answer takes a few data-channel hops, tens of
milliseconds, and a node below ``min_peers`` must not wait 20 s to try another peer. Past it the
attempt stops counting, but its offer keeps waiting for an answer and its connection may still
open, until ``direct_offer_timeout``: on a slow path, it only means another peer is tried too.

A node below ``min_peers`` says so in its offers (``short``). A node at its ``max_peers`` that
gets one makes room rather than refuse, when it can without harm: it answers past its bound,
and once the peer has said hello it closes its connection to a *redundant* neighbour, one whose
pex lists at least ``min_peers`` others (it keeps its minimum), that another neighbour lists
too (the two stay connected through it) and that no call is in progress with (closing it would
end the call), so it is back at its bound; while every such neighbour is in a call, it stays
past its bound and looks again each tick. Else the short node could
stay below its minimum for ever: when the trackers are gone, every peer it knows of may be full.
At most one peer is so taken past the bound at a time, and a neighbour is closed to make room
at most once every ``retry_after`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Collection, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import PeerClosed, RemoteProtocolError, SendQueueFull
from .wire.envelope import Envelope, Kind
from .wire.frames import new_message_id
from .wire.mesh import (
    MAX_HOPS,
    MAX_LISTED,
    ListedPeer,
    RateLimiter,
    Signal,
    SignalType,
    decode_pex,
    decode_signal,
    encode_pex,
    encode_signal,
)
from .wire.sealbox import SealKey, SealKeyError
from .wire.work import OPEN_COST, VERIFY_COST

if TYPE_CHECKING:
    from .mux import Mux, PeerInfo

logger = logging.getLogger(__name__)

#: What a node's hello says under ``"mesh"`` when it exchanges peers and relays signalling.
MESH_VERSION = 1
#: How long a service asked for through :meth:`Mesh.reach_service` stays wanted, at most.
MAX_WANT = 300.0


@dataclass(frozen=True)
class KnownPeer:
    """A peer the exchange told of: what it serves, its public key (as a neighbour proved it
    saw it), the neighbours that list it (``via``), and the X25519 key it signed with that
    public key for offers sealed to it (``seal_key``, verified)."""

    peer_id: str
    services: frozenset[str]
    topics: frozenset[str]
    public_key: bytes | None
    via: frozenset[str]
    seal_key: SealKey | None = None


@dataclass
class MeshStats:
    """Counters, for tests and for watching a node."""

    pex_sent: int = 0
    pex_received: int = 0
    offers_sent: int = 0
    answers_sent: int = 0
    refusals: int = 0
    relayed: int = 0
    unroutable: int = 0
    throttled: int = 0
    connected: int = 0
    #: Seal keys not signed by the identity they came with, for their peer id (in a hello or a
    #: pex entry: a neighbour putting another X25519 key in a peer's place); they are ignored.
    bad_seal_keys: int = 0
    #: Redundant neighbours closed to make room for a peer below its minimum degree.
    made_room: int = 0


@dataclass
class _Attempt:
    """A connection being made through the mesh (until the peer connects or it times out)."""

    target: str
    via: str
    started: float
    offer_id: bytes | None = None


class Mesh:
    """Peer exchange and relayed signalling for one node (made by every node unless
    ``Node(mesh=False)``; :func:`mesh_of` gives it)."""

    def __init__(
        self,
        node: Mux,
        *,
        hops: int = 2,
        signal_rate: float = 8.0,
        signal_burst: int = 16,
        pex_rate: float = 4.0,
        pex_burst: int = 8,
        pex_delay: float = 0.1,
        pex_interval: float = 0.5,
        max_attempts: int = 4,
        retry_after: float = 5.0,
        attempt_timeout: float = 5.0,
        tick: float = 1.0,
    ) -> None:
        if not 1 <= hops <= MAX_HOPS:
            raise ValueError(f"hops must be from 1 to {MAX_HOPS}")
        self.node = node
        self.p2pt = node.p2pt
        self.hops = hops
        self.pex_delay = pex_delay
        self.pex_interval = pex_interval
        self._last_pex = -pex_interval
        self.max_attempts = max_attempts
        self.retry_after = retry_after
        self.attempt_timeout = attempt_timeout
        self.tick = tick
        self.stats = MeshStats()
        self._signals = RateLimiter(signal_rate, signal_burst)
        self._pexes = RateLimiter(pex_rate, pex_burst)
        self._reports: dict[str, tuple[ListedPeer, ...]] = {}
        self._seal_keys: dict[str, SealKey] = {}  # neighbours' seal keys, verified
        self._sent: dict[str, dict[str, Any]] = {}
        self._attempts: dict[str, _Attempt] = {}
        self._backoff: dict[str, float] = {}
        # A peer below its minimum whose offer we answered past our bound → until when its
        # connection may open (then a redundant neighbour is closed); one at a time.
        self._room_for: dict[str, float] = {}
        self._past_bound: set[str] = set()  # such peers connected, no neighbour closed for yet
        self._last_room = -retry_after
        # Neighbours whose pexes dropped ``max_attempts`` peers we were offering to through them:
        # no new attempt goes through one until then, so that listing fresh ids and dropping them
        # cannot make this node build offer after offer (each a peer connection) for a few bytes.
        self._paused_via: dict[str, float] = {}
        self._abandons: dict[str, deque[float]] = {}  # when attempts through each ended so
        # (service, the keys its server must hold, or None: any) → until when it is wanted
        self._wanted: dict[tuple[str, frozenset[bytes] | None], float] = {}
        self._more = 0
        self._pex_timer: asyncio.TimerHandle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        node.register(self, [Kind.PEX, Kind.SIGNAL])
        node.service_finder = self.reach_service
        node.set_hello("mesh", MESH_VERSION)
        if self.p2pt.seal_key is not None:
            node.set_hello("seal", self.p2pt.seal_key.to_text())
        node.on("peer", self._on_peer)
        self.p2pt.on("offerfailed", self._on_offer_failed)
        self.p2pt.more_peers_handler = self._more_peers

    # -- what the exchange taught ---------------------------------------------------------------

    @property
    def known_peers(self) -> dict[str, KnownPeer]:
        """Every peer some neighbour lists (this node excluded), by id."""
        merged: dict[str, tuple[set[str], set[str], set[str]]] = {}
        keys: dict[str, bytes] = {}
        seals: dict[str, SealKey] = {}
        for neighbour, listed in self._reports.items():
            for peer in listed:
                pid = peer.peer_id
                if pid == self.node.peer_id:
                    continue
                services, topics, via = merged.setdefault(pid, (set(), set(), set()))
                services |= peer.services
                topics |= peer.topics
                via.add(neighbour)
                if peer.public_key is not None:
                    key = keys.setdefault(pid, peer.public_key)
                    if peer.seal_key is not None and peer.seal_key.identity == key:
                        seals.setdefault(pid, peer.seal_key)
        return {
            pid: KnownPeer(
                pid, frozenset(s), frozenset(t), keys.get(pid), frozenset(v), seals.get(pid)
            )
            for pid, (s, t, v) in merged.items()
        }

    def _neighbours(self) -> dict[str, PeerInfo]:
        """Connected peers that speak the mesh protocol."""
        connected = self.p2pt.peers
        return {
            pid: info
            for pid, info in self.node.peers.items()
            if pid in connected and _speaks_mesh(info)
        }

    # -- the node's Layer -----------------------------------------------------------------------

    def on_envelope(self, peer_id: str, envelope: Envelope, connection: int) -> None:
        now = time.monotonic()
        if envelope.kind is Kind.PEX:
            if not self._pexes.allow(peer_id, now):
                self.stats.throttled += 1
                return
            listed = decode_pex(envelope.body)
            if peer_id not in self.p2pt.peers:
                return
            listed = self._signed_seal_keys(peer_id, listed)
            self.stats.pex_received += 1
            self._reports[peer_id] = listed
            if len(listed) < MAX_LISTED:  # a full list may be a sample: leaving out is no loss
                self._drop_unreachable(peer_id, {peer.peer_id for peer in listed})
            self._maintain()
            self._notify()
            return
        if not self._signals.allow(peer_id, now):
            self.stats.throttled += 1
            return
        self.node.charge_work(peer_id, OPEN_COST)  # it may be opened (X25519, HKDF, AEAD)
        self._on_signal(peer_id, decode_signal(envelope.body))

    def on_connection_lost(self, peer_id: str, connection: int) -> None:
        """Nothing of the mesh is bound to one connection: a neighbour's list and its signals
        hold while any connection to it does."""

    def on_peer_lost(self, peer_id: str) -> None:
        self._reports.pop(peer_id, None)
        self._seal_keys.pop(peer_id, None)
        self._sent.pop(peer_id, None)
        self._signals.discard(peer_id)
        self._pexes.discard(peer_id)
        # A peer we were connecting to that connected and left before its hello (it closed the
        # connection as one past its max_peers): that attempt is over.
        self._end_attempt(peer_id, backoff=True)
        for attempt in list(self._attempts.values()):
            if attempt.via == peer_id and attempt.target not in self.p2pt.peers:
                self._end_attempt(attempt.target, backoff=False)
        self._schedule_pex()
        self._maintain()
        self._notify()

    def _binds(self, peer_id: str, public_key: bytes | None, record: SealKey, sender: str) -> bool:
        """Whether ``record`` is signed by ``public_key`` (the identity known for ``peer_id``)
        for ``peer_id`` in this swarm; the check is charged to ``sender``'s work budget."""
        if public_key is None or record.identity != public_key:
            return False
        self.node.charge_work(sender, VERIFY_COST)
        return record.verify(info_hash=self.p2pt.info_hash, peer_id=bytes.fromhex(peer_id))

    def _signed_seal_keys(
        self, neighbour: str, listed: tuple[ListedPeer, ...]
    ) -> tuple[ListedPeer, ...]:
        """``listed`` without the entries whose seal key the listed identity did not sign for
        that peer id (counted): a neighbour that puts another X25519 key in a peer's place, so
        that offers to the peer would be sealed to it, is not believed about that peer at all.
        Entries as the neighbour listed them last time were checked then."""
        before = set(self._reports.get(neighbour, ()))
        kept = []
        for peer in listed:
            if (
                peer.seal_key is None
                or peer in before
                or self._binds(peer.peer_id, peer.public_key, peer.seal_key, neighbour)
            ):
                kept.append(peer)
                continue
            self.stats.bad_seal_keys += 1
            logger.warning(
                "neighbour %s lists %s with a seal key its identity did not sign; ignored",
                neighbour[:8],
                peer.peer_id[:8],
            )
        return tuple(kept)

    def _learn_seal_key(self, info: PeerInfo) -> None:
        """Keep the seal key a neighbour's hello announces if its proven identity signed it."""
        value = info.extra.get("seal")
        known = self._seal_keys.pop(info.peer_id, None)
        if value is None:
            return
        try:
            record = SealKey.from_text(value)
        except SealKeyError:
            record = None
        if record is not None and (
            record == known or self._binds(info.peer_id, info.public_key, record, info.peer_id)
        ):
            self._seal_keys[info.peer_id] = record
            return
        self.stats.bad_seal_keys += 1
        logger.warning("peer %s announces a seal key it did not sign; ignored", info.peer_id[:8])

    def _drop_unreachable(self, via: str, listed: set[str]) -> None:
        """End the attempts whose offer went through ``via`` to a peer ``via`` no longer lists,
        while no answer came: the peer left or lost ``via`` (its answer goes back through
        ``via``), so neither an answer nor a refusal will come. Left to time out, they would hold
        their places for ``direct_offer_timeout`` (20 s); ended, the peer is tried again at once
        through another neighbour that lists it, if any. Not called for a pex of
        :data:`MAX_LISTED` peers: a neighbour with more sends each a random sample of them."""
        for attempt in list(self._attempts.values()):
            if attempt.via != via or attempt.target in listed or attempt.offer_id is None:
                continue
            if self.p2pt.waiting_offer(attempt.offer_id) is not None:
                self._end_attempt(attempt.target, backoff=False)
                self._abandoned_through(via)

    def _abandoned_through(self, via: str) -> None:
        """One more attempt through ``via`` ended because its pex dropped the peer: a peer
        leaving now and then is no cause, but ``max_attempts`` of them within ``2 ×
        retry_after`` pause ``via`` for ``retry_after`` to twice that."""
        now = time.monotonic()
        times = self._abandons.setdefault(via, deque())
        times.append(now)
        while times and now - times[0] > 2 * self.retry_after:
            times.popleft()
        if len(times) >= self.max_attempts:
            times.clear()
            self._paused_via[via] = now + self.retry_after * random.uniform(1, 2)

    def on_refused(
        self,
        peer_id: str,
        kind: Kind | None,
        call_id: int,
        error: RemoteProtocolError,
        *,
        binary: bool | None = None,
    ) -> None:
        """A malformed pex or signal: the node reports it; nothing waits on it."""

    async def wait_idle(self) -> None:
        return

    def close(self) -> None:
        self._closed = True
        self.p2pt.remove_listener("offerfailed", self._on_offer_failed)
        for timer in (self._pex_timer, self._ticker):
            if timer is not None:
                timer.cancel()
        for target in list(self._attempts):
            self._end_attempt(target, backoff=False)
        for task in list(self._tasks):
            task.cancel()
        self._notify()

    # -- peer exchange --------------------------------------------------------------------------

    def _on_peer(self, info: PeerInfo) -> None:
        """A peer said hello (again): our list changed; a peer we were connecting to is here."""
        if self._closed:
            return
        if self._ticker is None:
            self._schedule_tick()
        self._learn_seal_key(info)
        if info.peer_id in self._attempts and self._direct(info.peer_id):
            self._end_attempt(info.peer_id, backoff=False)
            self.stats.connected += 1
        if self._room_for.pop(info.peer_id, None) is not None:
            self._past_bound.add(info.peer_id)
            asyncio.get_running_loop().call_soon(self._shed)
        self._schedule_pex()
        self._notify()

    def _direct(self, peer_id: str) -> bool:
        """Whether ``peer_id`` has a connection that is not a circuit through a relay."""
        return any(
            not self.p2pt.channel(peer_id, c).relayed for c in self.p2pt.connections(peer_id)
        )

    def _schedule_pex(self) -> None:
        """Send pexes soon: changes within ``pex_delay`` go together, and rounds are at least
        ``pex_interval`` apart (under what receivers take, 4 a second)."""
        if self._pex_timer is None and not self._closed:
            loop = asyncio.get_running_loop()
            delay = max(self.pex_delay, self._last_pex + self.pex_interval - loop.time())
            self._pex_timer = loop.call_later(delay, self._send_pex)

    def _send_pex(self) -> None:
        """Tell each mesh neighbour of the others (only when that changed for it)."""
        self._pex_timer = None
        self._last_pex = asyncio.get_running_loop().time()
        neighbours = self._neighbours()
        entries = [
            ListedPeer(pid, info.services, info.topics, info.public_key, self._seal_keys.get(pid))
            for pid, info in neighbours.items()
        ]
        for pid in neighbours:
            others = [e for e in entries if e.peer_id != pid]
            random.shuffle(others)  # past the cap, each neighbour hears of a different sample
            body = encode_pex(others)
            body["peers"].sort(key=lambda entry: entry["id"])
            if self._sent.get(pid) == body:
                continue
            if self._post(pid, Envelope(Kind.PEX, new_message_id(), body=body)):
                self._sent[pid] = body
                self.stats.pex_sent += 1

    # -- finding peers --------------------------------------------------------------------------

    def _more_peers(self) -> bool:
        """``request_more_peers``, or a peer left: one more connection through the mesh, if
        the mesh knows of a peer to make it to."""
        if self._closed:
            return False
        limit = self.p2pt.max_peers
        room = (limit - self.p2pt.degree - len(self._attempts)) if limit is not None else 1
        found = bool(self._candidates())
        if found and room > 0:
            self._more = min(self._more + 1, room)
            self._maintain()
        return found

    def _candidates(self) -> list[KnownPeer]:
        now = time.monotonic()
        connected = self.p2pt.peers
        usable = self._usable_vias(now)
        return [
            peer
            for pid, peer in self.known_peers.items()
            if pid not in connected
            and pid not in self._attempts
            and self._backoff.get(pid, 0.0) <= now
            and peer.via & usable
            and self._sealable(peer)
        ]

    def _usable_vias(self, now: float) -> set[str]:
        """Neighbours an offer may go through now (those paused by :meth:`_drop_unreachable`
        excepted)."""
        paused = self._paused_via
        return {pid for pid in self._neighbours() if paused.get(pid, 0.0) <= now}

    def _sealable(self, peer: KnownPeer) -> bool:
        """Whether an offer to ``peer`` can be sealed as it must be. A node that seals to keys
        (an identity in a secret swarm) seals to the peer's key; it offers nothing sealed with
        the swarm key, which the relays hold, to a peer listed with an identity but no seal key,
        nor to any peer when ``allowed_peers`` says every peer has one."""
        if self.p2pt.seal_key is None or peer.seal_key is not None:
            return True
        return peer.public_key is None and self.p2pt.allowed_peers is None

    def _maintain(self) -> None:
        """Start connections while below the degree wanted, or a wanted service has no server."""
        if self._closed or self.node.stopping:
            return
        for service, keys in self._services_wanted():
            if len(self._attempts) >= self.max_attempts:
                return
            servers = [p for p in self._candidates() if _serves(p, service, keys)]
            if servers and not any(
                self._attempting(a.target, service, keys) for a in self._attempts.values()
            ):
                limit = self.p2pt.max_peers
                extra = limit is not None and self.p2pt.degree + len(self._attempts) >= limit
                self._attempt(random.choice(servers), extra=extra)
        while len(self._attempts) < self.max_attempts and self._short() > 0:
            candidates = self._candidates()
            if not candidates:
                return
            if self._more > 0:
                self._more -= 1
            self._attempt(random.choice(candidates), extra=False)

    def _short(self) -> int:
        """How many more connections to start for the degree (unbounded: one per known peer)."""
        limit = self.p2pt.max_peers
        if limit is None:
            return len(self.known_peers)
        degree = self.p2pt.degree + len(self._attempts)
        return min(max(self.p2pt.min_peers - degree, 0) + self._more, limit - degree)

    def _services_wanted(self) -> list[tuple[str, frozenset[bytes] | None]]:
        now = time.monotonic()
        for wanted, until in list(self._wanted.items()):
            if until <= now:
                del self._wanted[wanted]
        return [w for w in self._wanted if not self._served(*w)]

    def _served(self, service: str, keys: frozenset[bytes] | None) -> bool:
        """Whether a connected peer serves ``service`` (and proved one of ``keys``, if given)."""
        node = self.node
        return any(
            keys is None or node.peer_identity(pid) in keys for pid in node.servers_of(service)
        )

    def _attempting(self, target: str, service: str, keys: frozenset[bytes] | None) -> bool:
        known = self.known_peers.get(target)
        return known is not None and _serves(known, service, keys)

    def _known_services(self, peer_id: str) -> frozenset[str]:
        known = self.known_peers.get(peer_id)
        return known.services if known is not None else frozenset()

    def try_direct(self, peer_id: str) -> bool:
        """Try a direct connection to ``peer_id``, a peer reached only through a circuit (so
        connected, which :meth:`_maintain` skips), through a neighbour that lists it; false when
        none does, or one is being made already."""
        known = self.known_peers.get(peer_id)
        if (
            self._closed
            or known is None
            or peer_id in self._attempts
            or not known.via & self._usable_vias(time.monotonic())
            or not self._sealable(known)
        ):
            return False
        self._attempt(known, extra=False)
        return True

    def _attempt(self, peer: KnownPeer, *, extra: bool) -> None:
        via = random.choice(sorted(peer.via & self._usable_vias(time.monotonic())))
        attempt = self._attempts[peer.peer_id] = _Attempt(peer.peer_id, via, time.monotonic())
        p2pt = self.p2pt
        short = p2pt.max_peers is not None and p2pt.degree < p2pt.min_peers
        self._spawn(self._offer(attempt, extra, short, peer.seal_key, peer.public_key))

    async def _offer(
        self,
        attempt: _Attempt,
        extra: bool,
        short: bool,
        seal_to: SealKey | None,
        key: bytes | None,
    ) -> None:
        made = await self.p2pt.make_offer(
            attempt.target,
            origin=f"signalled:{attempt.via}",
            extra=extra,
            seal_to=seal_to,
            expect_key=key,
        )
        if self._attempts.get(attempt.target) is not attempt:
            if made is not None:
                self.p2pt.abandon_offer(made[0])
            return
        if made is None:
            self._end_attempt(attempt.target, backoff=True)
            return
        attempt.offer_id, text = made
        signal = Signal(
            SignalType.OFFER,
            self.node.peer_id,
            attempt.target,
            attempt.offer_id.hex(),
            text,
            self.hops,
            extra,
            short,
        )
        if self._send_signal(attempt.via, signal):
            self.stats.offers_sent += 1
        else:
            self._end_attempt(attempt.target, backoff=True)

    def _on_offer_failed(self, peer_id: str, offer_id: bytes) -> None:
        """The connection an attempt's offer was making will not be: its answer was refused by
        our caps, or it closed before it counted (one peer past max_peers here or at the peer,
        or it never opened). End the attempt now and try another peer: left to time out, it
        would hold its place among the attempts and in the degree (:meth:`_short`) for
        ``direct_offer_timeout`` (20 s), and a node below ``min_peers`` would start none."""
        attempt = self._attempts.get(peer_id)
        if attempt is None or attempt.offer_id != offer_id or peer_id in self.p2pt.peers:
            return  # not ours, or the peer is connected another way (its hello ends it)
        self._end_attempt(peer_id, backoff=True)
        self._maintain()

    def _end_attempt(self, target: str, *, backoff: bool, abandon: bool = True) -> None:
        """Forget an attempt; ``abandon``: close its offer and connection too (else they wait
        out ``direct_offer_timeout``, and may still connect)."""
        attempt = self._attempts.pop(target, None)
        if attempt is None:
            return
        if abandon and attempt.offer_id is not None:
            self.p2pt.abandon_offer(attempt.offer_id)
        if backoff:
            self._backoff[target] = time.monotonic() + self.retry_after * random.uniform(1, 2)
        self._notify()

    # -- services -------------------------------------------------------------------------------

    async def reach_service(
        self, service: str, timeout: float | None, keys: Collection[bytes] | None = None
    ) -> bool:
        """Connect to a peer that serves ``service`` when no neighbour does, through the mesh;
        ``keys``: only a peer the exchange lists with one of these keys, and that proves it (a
        client pinned to servers' keys).

        Returns true once a connected peer serves it (and proved one of ``keys``); false at once
        when none is known, or when every attempt failed, or after ``timeout`` seconds. The
        service stays wanted for ``timeout`` seconds (60 when ``None``; at most
        :data:`MAX_WANT`): a server the exchange reveals meanwhile is connected to.
        """
        wanted = (service, frozenset(keys) if keys is not None else None)
        if self._served(*wanted):
            return True
        if self._closed:
            return False
        want = min(timeout if timeout is not None else 60.0, MAX_WANT)
        until = time.monotonic() + want
        self._wanted[wanted] = max(self._wanted.get(wanted, 0.0), until)
        self._maintain()
        while not self._served(*wanted) and self._seeking(*wanted):
            left = until - time.monotonic()
            if left <= 0:
                break
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.add(future)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, left)
            finally:
                self._waiters.discard(future)
        return self._served(*wanted)

    def _seeking(self, service: str, keys: frozenset[bytes] | None) -> bool:
        if self._closed:
            return False
        attempting = any(self._attempting(t, service, keys) for t in self._attempts)
        return attempting or any(_serves(p, service, keys) for p in self._candidates())

    def _notify(self) -> None:
        for future in self._waiters:
            if not future.done():
                future.set_result(None)

    # -- relayed signalling ---------------------------------------------------------------------

    def _on_signal(self, neighbour: str, signal: Signal) -> None:
        if signal.to_id != self.node.peer_id:
            self._relay(neighbour, signal)
            return
        origin = f"signalled:{neighbour}"
        offer_id = bytes.fromhex(signal.offer_id)
        if signal.type is SignalType.OFFER:
            ours = self._attempts.get(signal.from_id)
            if ours is not None and ours.offer_id is not None:
                # Offers crossed: the greater peer id answers, the other's offer stands.
                if self.node.peer_id < signal.from_id:
                    self._refuse(neighbour, signal)
                    return
                self._end_attempt(signal.from_id, backoff=False)
            self._spawn(self._answer(neighbour, signal, origin, offer_id))
        elif signal.type is SignalType.ANSWER:
            assert signal.sdp is not None
            self._spawn(self._take(signal.from_id, offer_id, signal.sdp))
        else:
            for attempt in list(self._attempts.values()):
                if attempt.offer_id == offer_id:
                    self.stats.refusals += 1
                    self._end_attempt(attempt.target, backoff=True)

    async def _answer(self, neighbour: str, offer: Signal, origin: str, offer_id: bytes) -> None:
        assert offer.sdp is not None
        room = offer.short and not offer.extra and self._can_make_room(offer.from_id)
        if room:  # held before the first await: one peer at a time is taken past the bound
            self._room_for[offer.from_id] = time.monotonic() + self.p2pt.direct_offer_timeout
        text = await self.p2pt.answer_offer(
            offer.from_id,
            offer_id,
            offer.sdp,
            origin=origin,
            extra=offer.extra or room,
            sender_identity=self._identity_of(offer.from_id),
        )
        if text is None:
            if room:
                self._room_for.pop(offer.from_id, None)
            self._refuse(neighbour, offer)
            return
        answer = Signal(
            SignalType.ANSWER, self.node.peer_id, offer.from_id, offer.offer_id, text, self.hops
        )
        if self._send_signal(neighbour, answer):
            self.stats.answers_sent += 1

    def _can_make_room(self, peer_id: str) -> bool:
        """Whether to answer ``peer_id``'s offer (it is below its minimum degree) past our bound:
        we are at it, and a redundant neighbour could be closed for it (module docstring)."""
        p2pt = self.p2pt
        limit = p2pt.max_peers
        return (
            limit is not None
            and p2pt.degree >= limit
            and peer_id not in p2pt.peers
            and not self._room_for
            and not self._past_bound
            and time.monotonic() - self._last_room >= self.retry_after
            and self._redundant(peer_id) is not None
        )

    def _redundant(self, keep: str) -> str | None:
        """The neighbour (not ``keep``) whose connection to us is the least needed, if one is not
        needed at all: its pex lists at least ``min_peers`` others, and another neighbour lists
        it. Of those, the one that lists the most."""
        reports = self._reports
        neighbours = self._neighbours()
        listed_by: dict[str, int] = {}
        for neighbour in neighbours:
            for peer in reports.get(neighbour, ()):
                listed_by[peer.peer_id] = listed_by.get(peer.peer_id, 0) + 1
        needed = self.p2pt.min_peers
        spare = [
            (len(reports[pid]), pid)
            for pid in neighbours
            if pid != keep
            and len(reports.get(pid, ())) >= needed
            and listed_by.get(pid, 0) > 0
            and not self._in_calls(pid)
        ]
        return max(spare)[1] if spare else None

    def _in_calls(self, peer_id: str) -> bool:
        """Whether a call to or from ``peer_id`` is in progress: closing it would end the call."""
        return self.node.calls_with(peer_id) > 0

    def _shed(self) -> None:
        """Peers below their minimum connected past our bound: close the connection to a
        redundant neighbour for each, while we are still past it (and again each tick, until
        one is found)."""
        limit = self.p2pt.max_peers
        for arrived in list(self._past_bound):
            if self._closed or limit is None or self.p2pt.degree <= limit:
                self._past_bound.clear()
                return
            if arrived not in self.p2pt.peers:
                self._past_bound.discard(arrived)
                continue
            spare = self._redundant(arrived)
            if spare is None:
                return
            self._past_bound.discard(arrived)
            self._last_room = time.monotonic()
            self.stats.made_room += 1
            logger.debug("closing %s, a redundant neighbour, to make room for %s", spare, arrived)
            self.p2pt.close_peer(spare)

    def _identity_of(self, peer_id: str) -> bytes | None:
        """The Ed25519 key ``peer_id`` proved to us, else the one the exchange lists for it."""
        info = self.node.peers.get(peer_id)
        if info is not None and info.public_key is not None:
            return info.public_key
        known = self.known_peers.get(peer_id)
        return known.public_key if known is not None else None

    async def _take(self, peer_id: str, offer_id: bytes, text: str) -> None:
        await self.p2pt.take_answer(peer_id, offer_id, text)

    def _refuse(self, neighbour: str, offer: Signal) -> None:
        refusal = Signal(
            SignalType.REFUSE, self.node.peer_id, offer.from_id, offer.offer_id, None, self.hops
        )
        self._send_signal(neighbour, refusal)

    def _relay(self, neighbour: str, signal: Signal) -> None:
        """Pass a signal on toward its recipient: straight to it when it is a neighbour, else
        through a neighbour that lists it, while hops last; an offer that cannot go on is
        refused back."""
        neighbours = self._neighbours()
        hop: str | None = None
        if signal.hops >= 1 and signal.to_id != neighbour:
            if signal.to_id in neighbours:
                hop = signal.to_id
            else:
                known = self.known_peers.get(signal.to_id)
                routes = sorted((known.via if known else frozenset()) & neighbours.keys())
                routes = [r for r in routes if r != neighbour]
                hop = random.choice(routes) if routes and signal.hops >= 2 else None
        if hop is not None and self._send_signal(hop, _hop(signal)):
            self.stats.relayed += 1
            return
        self.stats.unroutable += 1
        if signal.type is SignalType.OFFER:
            self._refuse(neighbour, signal)

    def _send_signal(self, peer_id: str, signal: Signal) -> bool:
        return self._post(
            peer_id, Envelope(Kind.SIGNAL, new_message_id(), body=encode_signal(signal))
        )

    def _post(self, peer_id: str, envelope: Envelope) -> bool:
        try:
            self.node.send(peer_id, envelope, binary=False)
        except (PeerClosed, SendQueueFull):
            return False
        return True

    # -- housekeeping ---------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        delay = self.tick * random.uniform(0.8, 1.2)
        self._ticker = asyncio.get_running_loop().call_later(delay, self._on_tick)

    def _on_tick(self) -> None:
        if self._closed:
            return
        now = time.monotonic()
        for target, attempt in list(self._attempts.items()):
            if now - attempt.started > min(self.attempt_timeout, self.p2pt.direct_offer_timeout):
                self._end_attempt(target, backoff=True, abandon=False)
        for pid, until in list(self._backoff.items()):
            if until <= now:
                del self._backoff[pid]
        for pid, until in list(self._room_for.items()):
            if until <= now:
                del self._room_for[pid]
        if self._past_bound:
            self._shed()
        for pid, until in list(self._paused_via.items()):
            if until <= now:
                del self._paused_via[pid]
        for pid, times in list(self._abandons.items()):
            if not times or now - times[-1] > 2 * self.retry_after:
                del self._abandons[pid]
        self._maintain()
        self._schedule_tick()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.node.track_task(task)


def _hop(signal: Signal) -> Signal:
    return Signal(
        signal.type,
        signal.from_id,
        signal.to_id,
        signal.offer_id,
        signal.sdp,
        signal.hops - 1,
        signal.extra,
        signal.short,
    )


def _speaks_mesh(info: PeerInfo) -> bool:
    version = info.extra.get("mesh")
    return isinstance(version, int) and not isinstance(version, bool) and version >= 1


def mesh_of(node: Mux) -> Mesh | None:
    """The node's mesh layer (``None`` when it was made with ``mesh=False``)."""
    found = node.get_layer("mesh")
    return found if isinstance(found, Mesh) else None


def _serves(peer: KnownPeer, service: str, keys: frozenset[bytes] | None) -> bool:
    """Whether the exchange lists ``peer`` as serving ``service`` (with one of ``keys``)."""
    return service in peer.services and (keys is None or peer.public_key in keys)
