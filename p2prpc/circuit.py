"""Relayed connections: calls and topics through a mutual neighbour when no direct path exists.

Two nodes that cannot connect (both behind NATs that map per destination, no TURN) but share a
neighbour that carries others' traffic (a node built with ``relay=True``) still reach each
other: one opens a *circuit* through that neighbour, a connection whose frames ride the relay's
two real connections (``docs/PROTOCOL.md`` section 8). The circuit is one more connection of the
peer (:class:`~p2prpc.transport.circuit.CircuitLink` behind the transport seam), so the
handshake, hello, calls, streams, topics, keepalive and flow control work on it unchanged; it
shows as ``relay:<relay's peer id>`` in ``node.peers[id].via`` and ``p2prpc peers``.

- **Sealed end to end.** The ends agree keys over the circuit (X25519, HKDF-SHA256,
  ChaCha20-Poly1305 with counters: :mod:`p2prpc.wire.circuit`); a relay reads nothing, and a
  frame it alters, drops or replays closes the circuit (both ends are told). With identities the
  handshake binds to the two ends' ephemeral keys, so a relay in the middle fails it; without
  them a relay could sit in the middle, as a tracker can (``docs/SECURITY.md``).
- **Opt-in and bounded.** Only a node with ``relay=True`` carries circuits, within
  :class:`RelayLimits` enforced before the work: circuits at once (in all and per peer), bytes a
  second (each circuit and in all: past them frames wait, within the window), and the window:
  the bytes of one direction in flight, which the ends honour (credit) and the relay checks
  (a circuit past it is closed). Past a budget a circuit is refused or closed, with a reason
  both ends are told.
- **When.** An attempt to a peer the exchange lists that fails (``peerunreachable``) opens a
  circuit through a relay neighbour that lists it, as does :meth:`Circuits.open`.
- **Direct preferred.** While a peer is reached only through a circuit, a direct connection is
  tried again (signalled through the relay) every ``direct_retry`` seconds; once one counts, new
  calls go on it and the circuit closes when no call is left on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from array import array
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import LocalProtocolError, PeerClosed, RemoteProtocolError, SendQueueFull
from .swarm.connection import Connection
from .transport.circuit import CircuitLink, CircuitTransport
from .wire.circuit import (
    CIRCUIT_VERSION,
    MAX_SEALED,
    MAX_WINDOW,
    MIN_WINDOW,
    SEAL_OVERHEAD,
    CircuitError,
    Control,
    Ephemeral,
    Op,
    decode_control,
    encode_control,
    is_to_relay,
)
from .wire.envelope import Envelope, Kind
from .wire.mesh import RateLimiter
from .wire.work import OPEN_COST

if TYPE_CHECKING:
    from .mesh import Mesh
    from .mux import Mux, PeerInfo

logger = logging.getLogger(__name__)

#: A circuit's ids on a leg are 32-bit, never 0.
_MAX_ID = 2**32 - 1


@dataclass(frozen=True)
class RelayLimits:
    """What a relay (``relay=True``) carries at most for others.

    ``max_circuits`` (16): circuits at once; ``max_circuits_per_peer`` (4): circuits one peer
    may be an end of at once; ``window`` (bytes; 256 KiB): the bytes of one direction of a
    circuit in flight (sent by one end, not yet granted back by the other), which both ends are
    told and honour; a circuit past it (plus one frame) is closed. ``circuit_rate`` (bytes a
    second; 1 MiB) each circuit and ``total_rate`` (4 MiB) all together forward at most: past
    them frames wait in the relay, which the window bounds. ``connect_rate`` (2 a second, bursts
    of 4): circuits one peer may ask for. So a relay holds at most ``max_circuits × 2 × (window
    + 16 KiB)`` bytes of others' frames (8.5 MiB by default; kept end to end, with 8 bytes a
    frame besides, so in at most 1.5 times that even for frames of the smallest size), and
    sends at most ``total_rate`` bytes a second of them.

    As an end (every node): ``incoming_rate`` (4 a second, bursts of 8): circuits one relay may
    bring this node; past it a circuit is refused, and the relay told why. Each one taken is
    charged to the relay's work budget as a key exchange (``OPEN_COST``, 128 KiB).
    """

    max_circuits: int = 16
    max_circuits_per_peer: int = 4
    window: int = 256 * 1024
    circuit_rate: float = 1024 * 1024
    total_rate: float = 4 * 1024 * 1024
    connect_rate: float = 2.0
    connect_burst: int = 4
    incoming_rate: float = 4.0
    incoming_burst: int = 8

    def __post_init__(self) -> None:
        if not MIN_WINDOW <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be from {MIN_WINDOW} to {MAX_WINDOW} bytes")
        if self.max_circuits < 0 or self.max_circuits_per_peer < 0:
            raise ValueError("circuit counts must not be negative")
        if self.circuit_rate < MAX_SEALED or self.total_rate < MAX_SEALED:
            raise ValueError(f"rates must be at least {MAX_SEALED} bytes a second (one frame)")
        if not (self.connect_rate > 0 and self.incoming_rate > 0):
            raise ValueError("connect_rate and incoming_rate must be positive")
        if self.connect_burst < 1 or self.incoming_burst < 1:
            raise ValueError("connect_burst and incoming_burst must be at least 1")


@dataclass
class CircuitStats:
    """Counters, for tests and for watching a node."""

    opened: int = 0  # circuits of ours that connected (as either end)
    relayed: int = 0  # circuits carried for others
    refused: int = 0  # circuits refused here, as a relay or an end
    closed_over_budget: int = 0  # circuits carried here closed past the window
    forwarded_bytes: int = 0  # sealed bytes passed on as a relay
    bad_frames: int = 0  # frames of ours that did not open


class _Frames:
    """Data frames waiting in a relay for the rate, in order, held at about their bytes: end to
    end in one buffer, their numbers and sizes in two arrays (8 bytes a frame besides its own;
    an object each would hold some 140, eight times a frame of the smallest size)."""

    __slots__ = ("_data", "_first", "_seqs", "_sizes")

    def __init__(self) -> None:
        self._data = bytearray()
        self._seqs = array("I")
        self._sizes = array("I")
        self._first = 0  # the index of the first frame still waiting

    def __len__(self) -> int:
        return len(self._sizes) - self._first

    @property
    def size(self) -> int:
        """Bytes of the frames waiting."""
        return len(self._data)

    def append(self, seq: int, frame: bytes) -> None:
        self._data += frame
        self._seqs.append(seq & 0xFFFF_FFFF)
        self._sizes.append(len(frame))

    def first_size(self) -> int:
        return self._sizes[self._first]

    def popleft(self) -> tuple[int, bytes]:
        first = self._first
        size, seq = self._sizes[first], self._seqs[first]
        frame = bytes(self._data[:size])
        del self._data[:size]  # from the front of a bytearray: no copy of the rest
        self._first = first = first + 1
        if first == len(self._sizes):
            self.clear()
        elif first >= 1024 and 2 * first >= len(self._sizes):
            del self._seqs[:first], self._sizes[:first]
            self._first = 0
        return seq, frame

    def clear(self) -> None:
        self._data = bytearray()
        self._seqs = array("I")
        self._sizes = array("I")
        self._first = 0


@dataclass
class _Leg:
    """One side of a circuit this node relays: the peer, its circuit id, its connection."""

    peer_id: str
    cid: int
    connection: int
    in_flight: int = 0  # bytes from this side not yet granted back by the other
    waiting: _Frames = field(default_factory=_Frames)  # throttled frames
    timer: asyncio.TimerHandle | None = None
    closing: str | None = None  # this side closed: why, passed on once its frames are


@dataclass
class _Relayed:
    a: _Leg
    b: _Leg
    accepted: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass
class _End:
    """A circuit of ours: its relay, its id and connection on that leg, the other end."""

    relay: str
    cid: int
    connection: int
    peer_id: str
    ephemeral: Ephemeral | None
    link: CircuitLink | None = None
    channel: Connection | None = None
    timer: asyncio.TimerHandle | None = None
    future: asyncio.Future[bool] | None = None
    #: A connect from ``peer_id`` that crossed this one, held until this one is accepted or not.
    crossed: tuple[str, int, int, Control] | None = None


class Circuits:
    """Circuits for one node: as an end always, as a relay with ``relay=True`` (made by every
    node with the mesh; :func:`circuits_of` gives it).

    ``relay``: carry others' circuits, within ``limits`` (:class:`RelayLimits`).
    ``connect_timeout`` (seconds; 10): a circuit not accepted by then is given up (at the end
    and at the relay). ``direct_retry`` (seconds; 10): how often a direct connection is tried
    while a peer is reached only through a circuit. ``auto`` (true): open a circuit when an
    attempt to a peer the exchange lists fails.
    """

    def __init__(
        self,
        node: Mux,
        *,
        relay: bool = False,
        limits: RelayLimits | None = None,
        connect_timeout: float = 10.0,
        direct_retry: float = 10.0,
        auto: bool = True,
    ) -> None:
        self.node = node
        self.p2pt = node.p2pt
        self.relay = relay
        self.limits = limits or RelayLimits()
        self.connect_timeout = connect_timeout
        self.direct_retry = direct_retry
        self.auto = auto
        self.stats = CircuitStats()
        self._relayed: dict[tuple[str, int], tuple[_Relayed, _Leg, _Leg]] = {}
        self._ends: dict[tuple[str, int], _End] = {}
        self._connects = RateLimiter(self.limits.connect_rate, self.limits.connect_burst)
        self._incoming = RateLimiter(self.limits.incoming_rate, self.limits.incoming_burst)
        self._circuit_buckets: dict[int, tuple[float, float]] = {}
        self._total_bucket = (self.limits.total_rate, time.monotonic())
        self._backoff: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._direct_timer: asyncio.TimerHandle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._closed = False
        node.register(self, [Kind.CIRCUIT])
        hello: dict[str, Any] = {"v": CIRCUIT_VERSION}
        if relay:
            hello["relay"] = True
        node.set_hello("circuit", hello)
        self.p2pt.relays_for = self._relays_for
        self.p2pt.on("peerunreachable", self._on_unreachable)
        self.p2pt.on("connectionopen", self._on_counted)
        self.p2pt.on("peerconnect", self._on_peerconnect)

    # -- what the application sees ----------------------------------------------------------------

    def circuits(self) -> dict[str, list[str]]:
        """Peers reached through circuits: peer id → the relays carrying them."""
        out: dict[str, list[str]] = {}
        for end in self._ends.values():
            if end.channel is not None and end.channel.is_open:
                out.setdefault(end.peer_id, []).append(end.relay)
        return out

    def opening(self) -> set[str]:
        """Peers a circuit of ours is being opened to (sent to the relay, not yet open or given
        up: at most ``connect_timeout`` seconds each)."""
        return {
            end.peer_id
            for end in self._ends.values()
            if end.future is not None and not end.future.done()
        }

    @property
    def relayed_circuits(self) -> int:
        """Circuits this node carries for others now."""
        return len(self._relayed) // 2

    def held_bytes(self) -> int:
        """Bytes of others' frames this node holds as a relay (throttled, waiting to go on)."""
        return sum(leg.waiting.size for _, leg, _ in self._relayed.values())

    def relays_for(self, peer_id: str) -> list[str]:
        """Neighbours that carry circuits and that the exchange says are connected to
        ``peer_id``."""
        mesh = self._mesh()
        known = mesh.known_peers.get(peer_id) if mesh is not None else None
        if known is None:
            return []
        return sorted(pid for pid in known.via if self._is_relay(pid))

    async def open(self, peer_id: str, via: str | None = None) -> bool:
        """Reach ``peer_id`` through a circuit carried by ``via`` (by default a relay neighbour
        the exchange says is connected to it). True once the circuit's connection counts
        (``peerconnect`` or ``connectionopen``); false when no relay is known, it refused, or
        ``connect_timeout`` passed."""
        if via is None:
            relays = self.relays_for(peer_id)
            if not relays:
                return False
            via = random.choice(relays)
        end = self._connect(peer_id, via)
        if end is None or end.future is None:
            return False
        return await end.future

    # -- the node's Layer -------------------------------------------------------------------------

    def on_envelope(self, peer_id: str, envelope: Envelope, connection: int) -> None:
        key = (peer_id, envelope.call_id)
        if envelope.body is None:  # data
            if not envelope.has_payload or not isinstance(envelope.payload, bytes):
                raise CircuitError("a circuit data frame carries its sealed message")
            self._on_data(key, envelope.seq, envelope.payload, connection)
            return
        control = decode_control(envelope.body)
        if control.op is Op.CONNECT:
            if is_to_relay(envelope.body):
                self._on_relay_request(peer_id, envelope.call_id, connection, control)
            elif self._admits(peer_id, envelope.call_id, connection, control):
                self._on_incoming(peer_id, envelope.call_id, connection, control)
            return
        relayed = self._relayed.get(key)
        if relayed is not None:
            self._relay_control(relayed, control, envelope.seq)
            return
        end = self._ends.get(key)
        if end is not None:
            self._end_control(end, control, envelope.seq)

    def on_connection_lost(self, peer_id: str, connection: int) -> None:
        for key, (relayed, leg, _) in list(self._relayed.items()):
            if key[0] == peer_id and leg.connection == connection:
                self._drop_relayed(relayed, "the relay lost a leg of the circuit", tell=leg)
        for key, end in list(self._ends.items()):
            if key[0] == peer_id and end.connection == connection:
                self._end_lost(end, "the connection to the relay closed")

    def on_peer_lost(self, peer_id: str) -> None:
        self._connects.discard(peer_id)
        self._incoming.discard(peer_id)
        for key, (relayed, leg, _) in list(self._relayed.items()):
            if key[0] == peer_id:
                self._drop_relayed(relayed, "the relay lost a leg of the circuit", tell=leg)
        for key, end in list(self._ends.items()):
            if key[0] == peer_id:
                self._end_lost(end, "the relay left")

    def on_refused(
        self,
        peer_id: str,
        kind: Kind | None,
        call_id: int,
        error: RemoteProtocolError,
        *,
        binary: bool | None = None,
    ) -> None:
        """A malformed circuit frame: the circuit it names ends, both sides told."""
        key = (peer_id, call_id)
        found = self._relayed.get(key)
        if found is not None:
            self._drop_relayed(found[0], f"a malformed circuit frame: {error}")
        end = self._ends.get(key)
        if end is not None:
            self._close_end(end, f"a malformed circuit frame: {error}")

    async def wait_idle(self) -> None:
        return

    def close(self) -> None:
        self._closed = True
        self.p2pt.remove_listener("peerunreachable", self._on_unreachable)
        self.p2pt.remove_listener("connectionopen", self._on_counted)
        self.p2pt.remove_listener("peerconnect", self._on_peerconnect)
        for timer in (self._direct_timer, self._ticker):
            if timer is not None:
                timer.cancel()
        for relayed, _, _ in list(self._relayed.values()):
            self._drop_relayed(relayed, "the relay is stopping")
        for end in list(self._ends.values()):
            self._close_end(end, "the node is stopping")
        for task in list(self._tasks):
            task.cancel()

    # -- helpers ----------------------------------------------------------------------------------

    def _mesh(self) -> Mesh | None:
        from .mesh import mesh_of

        return mesh_of(self.node)

    def _speaks(self, peer_id: str) -> dict[str, Any] | None:
        info: PeerInfo | None = self.node.peers.get(peer_id)
        value = info.extra.get("circuit") if info is not None else None
        if isinstance(value, dict) and value.get("v") == CIRCUIT_VERSION:
            return value
        return None

    def _is_relay(self, peer_id: str) -> bool:
        hello = self._speaks(peer_id)
        return hello is not None and hello.get("relay") is True and self.p2pt.is_connected(peer_id)

    def _send(
        self,
        peer_id: str,
        cid: int,
        connection: int,
        *,
        control: Control | None = None,
        to: bool = True,
        seq: int = 0,
        payload: bytes | None = None,
    ) -> bool:
        body = encode_control(control, to=to) if control is not None else None
        envelope = Envelope(
            Kind.CIRCUIT,
            cid,
            seq,
            payload=payload,
            has_payload=payload is not None,
            body=body,
        )
        try:
            self.node.send(peer_id, envelope, binary=True, connection=connection)
        except (PeerClosed, SendQueueFull, LocalProtocolError):
            return False
        return True

    def _new_id(self, peer_id: str) -> int:
        while True:
            cid = secrets.randbelow(_MAX_ID) + 1
            if (peer_id, cid) not in self._relayed and (peer_id, cid) not in self._ends:
                return cid

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.node.track_task(task)

    # -- as an end --------------------------------------------------------------------------------

    def _connect(self, peer_id: str, via: str) -> _End | None:
        if self._closed or self._speaks(via) is None or peer_id == self.node.peer_id:
            return None
        try:
            connection = self.p2pt.channel(via).connection
        except PeerClosed:
            return None
        cid = self._new_id(via)
        ephemeral = Ephemeral()
        end = _End(via, cid, connection, peer_id, ephemeral)
        end.future = asyncio.get_running_loop().create_future()
        self._ends[(via, cid)] = end
        if not self._send(
            via, cid, connection, control=Control(Op.CONNECT, peer_id, ephemeral.public)
        ):
            self._end_lost(end, "the relay's connection is gone")
            return end
        end.timer = asyncio.get_running_loop().call_later(
            self.connect_timeout, self._close_end, end, "the circuit was not accepted in time"
        )
        return end

    def _admits(self, relay: str, cid: int, connection: int, control: Control) -> bool:
        """Whether a circuit ``relay`` brings (a connect naming ``from``) may be taken up: from a
        neighbour whose hello says it relays, from another peer than this node and the relay
        itself, within ``incoming_rate``. Otherwise it is refused, and the relay told why."""
        refusal: str | None = None
        if control.peer == self.node.peer_id:
            refusal = "a circuit from this node itself"
        elif control.peer == relay:
            refusal = "a circuit from the relay bringing it (it is a neighbour already)"
        elif not self._is_relay(relay):
            refusal = "a circuit brought by a peer whose hello says it relays none"
        elif not self._incoming.allow(relay, time.monotonic()):
            refusal = "too many circuits brought: try again later"
        if refusal is None:
            return True
        logger.info("circuit from %s through %s refused: %s",
                    str(control.peer)[:8], relay[:8], refusal)  # fmt: skip
        self._refuse_incoming(relay, cid, connection, refusal)
        return False

    def _on_incoming(
        self,
        relay: str,
        cid: int,
        connection: int,
        control: Control,
        waiting: asyncio.Future[bool] | None = None,
    ) -> None:
        """A relay brings a circuit from ``control.peer``: accept it (keys, then the link).
        ``waiting``: the future of an opener of ours that this circuit settles (one of ours it
        crossed, given up)."""
        assert control.peer is not None and control.key is not None
        origin = control.peer
        refusal: str | None = None
        if self._closed or self.node.stopping:
            refusal = "the node is stopping"
        elif (relay, cid) in self._ends:
            refusal = "a circuit id in use"
        elif not self.p2pt.accepts_offer_from(origin):
            refusal = "the peer takes no more connections from this one"
        # Crossing circuits (each end opened one to the other at once) end as one: the one the
        # end with the lower peer id opened. That end holds the other's connect until its own
        # is accepted (then refuses it) or fails (then accepts it, so that a relay refusing its
        # own leaves the other); the other end accepts at once and gives its own up.
        crossing = [
            e
            for e in self._ends.values()
            if e.peer_id == origin and e.ephemeral is not None and e.link is None
        ]
        if refusal is None and crossing and self.node.peer_id < origin and waiting is None:
            mine = crossing[0]
            if mine.crossed is None:
                mine.crossed = (relay, cid, connection, control)
                return
            refusal = "a crossing circuit: the one this end opened stands"
        if refusal is not None:
            self._refuse_incoming(relay, cid, connection, refusal, waiting)
            return
        self.node.charge_work(relay, OPEN_COST)  # a key pair made, an exchange, HKDF
        ephemeral = Ephemeral()
        try:
            cipher = ephemeral.cipher(
                control.key,
                initiator=False,
                initiator_id=bytes.fromhex(origin),
                responder_id=self.p2pt.peer_id_bytes,
            )
        except CircuitError as e:
            self._refuse_incoming(relay, cid, connection, str(e), waiting)
            return
        end = _End(relay, cid, connection, origin, None, future=waiting)
        self._ends[(relay, cid)] = end
        if not self._send(relay, cid, connection, control=Control(Op.ACCEPT, key=ephemeral.public)):
            del self._ends[(relay, cid)]
            self._settle(end, False)
            return
        for mine in crossing:  # the other end's stands: ours is given up, its opener waits on that
            if end.future is None:
                end.future, mine.future = mine.future, None
            self._close_end(mine, "a crossing circuit: the one the other end opened stands")
        self._establish(end, cipher, control.window or self.limits.window, initiator=False)

    def _refuse_incoming(
        self,
        relay: str,
        cid: int,
        connection: int,
        reason: str,
        waiting: asyncio.Future[bool] | None = None,
    ) -> None:
        self.stats.refused += 1
        self._send(relay, cid, connection, control=Control(Op.REFUSE, reason=reason))
        if waiting is not None and not waiting.done():
            waiting.set_result(False)

    def _uncross(self, end: _End, stands: bool) -> None:
        """Settle the connect ``end`` held back (it crossed ``end``): refused when ``end``
        stands, else taken up (its opener then waits on it)."""
        crossed, end.crossed = end.crossed, None
        if crossed is None:
            return
        if stands:
            relay, cid, connection, _ = crossed
            self._refuse_incoming(
                relay, cid, connection, "a crossing circuit: the one this end opened stands"
            )
            return
        waiting, end.future = end.future, None
        self._on_incoming(*crossed, waiting=waiting)

    def _end_control(self, end: _End, control: Control, seq: int) -> None:
        if control.op is Op.ACCEPT and end.link is None and end.ephemeral is not None:
            assert control.key is not None
            try:
                cipher = end.ephemeral.cipher(
                    control.key,
                    initiator=True,
                    initiator_id=self.p2pt.peer_id_bytes,
                    responder_id=bytes.fromhex(end.peer_id),
                )
            except CircuitError as e:
                self._close_end(end, str(e))
                return
            end.ephemeral = None
            if end.timer is not None:
                end.timer.cancel()
                end.timer = None
            self._uncross(end, True)
            self._establish(end, cipher, control.window or self.limits.window, initiator=True)
        elif control.op is Op.CREDIT and end.link is not None:
            if not 1 <= seq <= MAX_WINDOW:
                self._close_end(end, "a credit out of range")
                return
            end.link.credit(seq)
        elif control.op in (Op.REFUSE, Op.CLOSE):
            self._end_lost(end, control.reason or control.op.value)

    def _establish(self, end: _End, cipher: Any, window: int, *, initiator: bool) -> None:
        relay, cid, connection = end.relay, end.cid, end.connection
        link = CircuitLink(
            label=cipher.fingerprints()[0 if initiator else 1].hex()[:40],
            window=window,
            send_data=lambda sealed: self._send(relay, cid, connection, payload=sealed),
            send_credit=lambda n: self._send(
                relay, cid, connection, control=Control(Op.CREDIT), seq=n
            ),
            send_close=lambda reason: self._closed_by_link(end, reason),
        )
        channel = Connection(
            self.p2pt.rtc_options, initiator=initiator, transport=CircuitTransport(link)
        )
        channel.peer_id = end.peer_id
        channel.origin = f"relay:{relay}"
        channel.relayed = True
        mesh = self._mesh()
        known = mesh.known_peers.get(end.peer_id) if mesh is not None else None
        if known is not None and known.public_key is not None:
            channel.expected_key = known.public_key
        end.link, end.channel = link, channel
        self.p2pt.adopt(channel)
        link.established(cipher)

    def _closed_by_link(self, end: _End, reason: str) -> None:
        """Our link closed (the connection above closed it, or a frame did not open): tell the
        other end through the relay, and forget the circuit."""
        if self._ends.pop((end.relay, end.cid), None) is None:
            return
        if "did not open" in reason:
            self.stats.bad_frames += 1
        self._send(end.relay, end.cid, end.connection, control=Control(Op.CLOSE, reason=reason))
        self._settle(end, False)

    def _close_end(self, end: _End, reason: str) -> None:
        if end.link is not None:
            end.link.close(reason)  # tells the other end (_closed_by_link)
            return
        if self._ends.pop((end.relay, end.cid), None) is not None:
            self._send(end.relay, end.cid, end.connection, control=Control(Op.CLOSE, reason=reason))
        self._settle(end, False)

    def _end_lost(self, end: _End, reason: str) -> None:
        if self._ends.pop((end.relay, end.cid), None) is None:
            return
        logger.info("circuit to %s through %s ended: %s", end.peer_id[:8], end.relay[:8], reason)
        if end.link is not None:
            end.link.lost(reason)
        else:
            self.stats.refused += 1
        self._settle(end, False)

    def _settle(self, end: _End, result: bool) -> None:
        if end.timer is not None:
            end.timer.cancel()
            end.timer = None
        self._uncross(end, result)
        if end.future is not None and not end.future.done():
            end.future.set_result(result)

    def _on_data(self, key: tuple[str, int], seq: int, sealed: bytes, connection: int) -> None:
        found = self._relayed.get(key)
        if found is not None:
            self._forward(found, sealed, seq)
            return
        end = self._ends.get(key)
        if end is not None and end.link is not None and end.connection == connection:
            end.link.receive(sealed)

    def _on_peerconnect(self, peer: Any) -> None:
        self._on_counted(peer, peer.connection)

    def _on_counted(self, peer: Any, connection: int) -> None:
        """A connection counted: settle the circuit that made it; or, a direct one, close the
        circuits it replaces (once their calls are done)."""
        for end in self._ends.values():
            if end.channel is not None and end.channel.connection == connection:
                if end.future is not None and not end.future.done():
                    self.stats.opened += 1
                self._settle(end, True)
                self._schedule_direct()
                return
        self._retire(peer.id)

    # -- when circuits are opened, and closed again -----------------------------------------------

    def _relays_for(self, peer_id: str) -> list[str]:
        """The relays a circuit to ``peer_id`` may go through when its attempt fails (none when
        circuits are not opened of themselves)."""
        if not self.auto or self._closed:
            return []
        return self.relays_for(peer_id)

    def _on_unreachable(self, peer_id: str, reason: Any) -> None:
        if not self.auto or self._closed or self.node.stopping:
            return
        if self._ticker is None:  # the exchange may list a relay for it later
            self._schedule_tick()
        if self.p2pt.is_connected(peer_id) or any(
            e.peer_id == peer_id for e in self._ends.values()
        ):
            return
        now = time.monotonic()
        if self._backoff.get(peer_id, 0.0) > now:
            return
        relays = self.relays_for(peer_id)
        if not relays:
            return
        for done in [pid for pid, until in self._backoff.items() if until <= now]:
            del self._backoff[done]  # only peers tried within connect_timeout are remembered
        self._backoff[peer_id] = now + self.connect_timeout
        logger.info(
            "peer %s not reachable directly (%s): trying a circuit through %s",
            peer_id[:8],
            getattr(reason, "reason", reason),
            relays[0][:8],
        )
        self._connect(peer_id, random.choice(relays))

    def _schedule_tick(self) -> None:
        self._ticker = asyncio.get_running_loop().call_later(
            random.uniform(0.8, 1.2), self._on_tick
        )

    def _on_tick(self) -> None:
        """While peers are unreachable, open circuits to those a relay neighbour now lists."""
        self._ticker = None
        if self._closed or self.node.stopping:
            return
        unreachable = self.p2pt.unreachable()
        for reason in unreachable:
            self._on_unreachable(reason.peer_id, reason)
        if unreachable and self._ticker is None:
            self._schedule_tick()

    def _only_relayed(self, peer_id: str) -> bool:
        return bool(self.p2pt.connections(peer_id)) and all(
            getattr(self.p2pt.channel(peer_id, c), "relayed", False)
            for c in self.p2pt.connections(peer_id)
        )

    def _schedule_direct(self) -> None:
        if self._direct_timer is None and not self._closed and self.direct_retry > 0:
            self._direct_timer = asyncio.get_running_loop().call_later(
                self.direct_retry, self._try_direct
            )

    def _try_direct(self) -> None:
        """Try a direct connection to each peer reached only through circuits (signalled
        through the relay: the mesh)."""
        self._direct_timer = None
        if self._closed or self.node.stopping:
            return
        mesh = self._mesh()
        waiting = False
        for peer_id in {end.peer_id for end in self._ends.values() if end.link is not None}:
            if self._only_relayed(peer_id):
                waiting = True
                if mesh is not None:
                    mesh.try_direct(peer_id)
        if waiting:
            self._schedule_direct()

    def _retire(self, peer_id: str) -> None:
        """Close the circuits to ``peer_id`` once it has a direct connection and no call is left
        on them."""
        if not self.p2pt.is_connected(peer_id) or self._only_relayed(peer_id):
            return
        direct = any(
            not getattr(self.p2pt.channel(peer_id, c), "relayed", False)
            for c in self.p2pt.connections(peer_id)
        )
        if not direct:
            return
        from .rpc.endpoint import Endpoint

        endpoint = self.node.get_layer("rpc")
        busy = False
        for end in list(self._ends.values()):
            if end.peer_id != peer_id or end.channel is None or not end.channel.is_open:
                continue
            connection = end.channel.connection
            if end.channel.buffered_amount or (
                isinstance(endpoint, Endpoint) and endpoint.calls_on(peer_id, connection)
            ):
                busy = True  # a call, or what one sent that has not left yet: not lost
                continue
            self._close_end(end, "a direct connection replaces the circuit")
        if busy:
            asyncio.get_running_loop().call_later(0.2, self._retire, peer_id)

    # -- as a relay -------------------------------------------------------------------------------

    def _on_relay_request(self, peer_id: str, cid: int, connection: int, control: Control) -> None:
        assert control.peer is not None and control.key is not None
        target = control.peer
        limits = self.limits
        refusal: str | None = None
        ends = [leg.peer_id for relayed, leg, _ in self._relayed.values() if leg is relayed.a]
        ends += [leg.peer_id for relayed, leg, _ in self._relayed.values() if leg is relayed.b]
        if not self.relay:
            refusal = "this node relays no circuits (relay=False)"
        elif not self._connects.allow(peer_id, time.monotonic()):
            refusal = "too many circuits asked for: try again later"
        elif (peer_id, cid) in self._relayed:
            refusal = "a circuit id in use"
        elif self.relayed_circuits >= limits.max_circuits:
            refusal = f"the relay carries its most circuits ({limits.max_circuits})"
        elif (
            ends.count(peer_id) >= limits.max_circuits_per_peer
            or ends.count(target) >= limits.max_circuits_per_peer
        ):
            refusal = (
                f"the relay carries its most circuits for one peer ({limits.max_circuits_per_peer})"
            )
        elif (
            target == peer_id or not self.p2pt.is_connected(target) or self._speaks(target) is None
        ):
            refusal = "the relay has no connection to that peer that carries circuits"
        if refusal is not None:
            self.stats.refused += 1
            logger.info("circuit from %s to %s refused: %s", peer_id[:8], target[:8], refusal)
            self._send(peer_id, cid, connection, control=Control(Op.REFUSE, reason=refusal))
            return
        try:
            onward = self.p2pt.channel(target).connection
        except PeerClosed:
            self._send(peer_id, cid, connection, control=Control(Op.REFUSE, reason="peer left"))
            return
        a = _Leg(peer_id, cid, connection)
        b = _Leg(target, self._new_id(target), onward)
        relayed = _Relayed(a, b)
        self._relayed[(a.peer_id, a.cid)] = (relayed, a, b)
        self._relayed[(b.peer_id, b.cid)] = (relayed, b, a)
        sent = self._send(
            target,
            b.cid,
            onward,
            control=Control(Op.CONNECT, peer_id, control.key, limits.window),
            to=False,
        )
        if not sent:
            self._drop_relayed(relayed, "the relay could not reach that peer")
            return
        relayed.timer = asyncio.get_running_loop().call_later(
            self.connect_timeout, self._drop_relayed, relayed, "the peer did not accept in time"
        )

    def _relay_control(
        self, found: tuple[_Relayed, _Leg, _Leg], control: Control, seq: int
    ) -> None:
        relayed, source, sink = found
        if control.op is Op.ACCEPT and source is relayed.b and not relayed.accepted:
            relayed.accepted = True
            if relayed.timer is not None:
                relayed.timer.cancel()
                relayed.timer = None
            self.stats.relayed += 1
            self._send(
                sink.peer_id,
                sink.cid,
                sink.connection,
                control=Control(Op.ACCEPT, key=control.key, window=self.limits.window),
            )
        elif control.op is Op.CREDIT and relayed.accepted:
            # ``source`` read what ``sink`` sent: that much of sink's direction is no longer
            # in flight.
            if not 1 <= seq <= sink.in_flight + MAX_SEALED:
                self._drop_relayed(relayed, "a credit for more than was sent")
                return
            sink.in_flight = max(0, sink.in_flight - seq)
            self._send(sink.peer_id, sink.cid, sink.connection, control=Control(Op.CREDIT), seq=seq)
        elif control.op is Op.CLOSE and relayed.accepted and source.waiting:
            # What the closing side sent before its close still goes on, then the close.
            source.closing = control.reason or control.op.value
        elif control.op in (Op.REFUSE, Op.CLOSE):
            self._drop_relayed(relayed, control.reason or control.op.value, tell=source)
        else:
            self._drop_relayed(relayed, f"an unexpected {control.op.value} on the circuit")

    def _forward(self, found: tuple[_Relayed, _Leg, _Leg], sealed: bytes, seq: int) -> None:
        """Pass a data frame on, within the window (checked before anything is held) and the
        rates (past them it waits, in order)."""
        relayed, source, sink = found
        if not relayed.accepted:
            self._drop_relayed(relayed, "data before the circuit was accepted")
            return
        if len(sealed) > MAX_SEALED:
            self._drop_relayed(relayed, f"a frame over {MAX_SEALED} bytes")
            return
        if len(sealed) < SEAL_OVERHEAD:  # it holds no sealed message, and counts nothing
            self._drop_relayed(
                relayed, f"a data frame of {len(sealed)} bytes, shorter than any sealed message"
            )
            return
        if source.in_flight + len(sealed) > self.limits.window + MAX_SEALED:
            self.stats.closed_over_budget += 1
            self._drop_relayed(
                relayed, f"past the relay's window of {self.limits.window} bytes in flight"
            )
            return
        source.in_flight += len(sealed)
        source.waiting.append(seq, sealed)
        if source.timer is None:  # else the pump already waiting for the rate sends it, in turn
            self._pump(relayed, source, sink)

    def _take(self, circuit: int, size: int, now: float) -> float:
        """Seconds until ``size`` bytes may go for ``circuit`` (0: now, and taken)."""
        limits = self.limits
        tokens, last = self._circuit_buckets.get(circuit, (limits.circuit_rate, now))
        tokens = min(limits.circuit_rate, tokens + (now - last) * limits.circuit_rate)
        total, total_last = self._total_bucket
        total = min(limits.total_rate, total + (now - total_last) * limits.total_rate)
        if tokens >= size and total >= size:
            self._circuit_buckets[circuit] = (tokens - size, now)
            self._total_bucket = (total - size, now)
            return 0.0
        self._circuit_buckets[circuit] = (tokens, now)
        self._total_bucket = (total, now)
        return max(
            (size - tokens) / limits.circuit_rate if tokens < size else 0.0,
            (size - total) / limits.total_rate if total < size else 0.0,
        )

    def _pump(self, relayed: _Relayed, source: _Leg, sink: _Leg) -> None:
        source.timer = None
        circuit = id(relayed)
        while source.waiting:
            wait = self._take(circuit, source.waiting.first_size(), time.monotonic())
            if wait > 0:
                source.timer = asyncio.get_running_loop().call_later(
                    wait, self._pump, relayed, source, sink
                )
                return
            seq, sealed = source.waiting.popleft()
            if not self._send(sink.peer_id, sink.cid, sink.connection, seq=seq, payload=sealed):
                self._drop_relayed(relayed, "the next hop's connection is gone or full")
                return
            self.stats.forwarded_bytes += len(sealed)
        if source.closing is not None:
            self._drop_relayed(relayed, source.closing, tell=source)

    def _drop_relayed(self, relayed: _Relayed, reason: str, *, tell: _Leg | None = None) -> None:
        """Forget a circuit this node carries; its ends are told ``reason`` (except ``tell``'s
        side when that side ended it)."""
        a, b = relayed.a, relayed.b
        if self._relayed.pop((a.peer_id, a.cid), None) is None:
            return
        self._relayed.pop((b.peer_id, b.cid), None)
        self._circuit_buckets.pop(id(relayed), None)
        for timer in (relayed.timer, a.timer, b.timer):
            if timer is not None:
                timer.cancel()
        a.waiting.clear()
        b.waiting.clear()
        op = Op.CLOSE if relayed.accepted else Op.REFUSE
        for leg in (a, b):
            if leg is not tell:
                self._send(leg.peer_id, leg.cid, leg.connection, control=Control(op, reason=reason))
        logger.info("circuit %s ↔ %s closed: %s", a.peer_id[:8], b.peer_id[:8], reason)


def circuits_of(node: Mux) -> Circuits | None:
    """The node's circuit layer (``None`` when it has none)."""
    found = node.get_layer("circuits")
    return found if isinstance(found, Circuits) else None
