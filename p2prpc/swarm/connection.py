"""A connection to one remote peer: a transport link, its send queue, and what it proved.

A :class:`Connection` is what P2PT calls a "peer" in JavaScript: one WebRTC connection to one
remote peer with one data channel on it (a :class:`~p2prpc.transport.Link`, from whichever
transport). Above the link it keeps what p2prpc needs of every connection, the same on every
transport: its number in this process (what calls are attributed to), the peer id it was made
with, the key its handshake proved, how it was made (``origin``), and a bounded send queue with
coalescing.

Life of a connection, as explicit states::

    new ──offer/answer──▶ connecting ──data channel open──▶ open ──▶ closed
      └───────────────────────────────────────────────────────────────▲
                            (closed from any state: close(), failure, expiry)

ICE restarts (``docs/PROTOCOL.md`` section 9): on a link that restarts ICE, once both ends gave
their restart keys (:attr:`Connection.restart`), an open connection whose ICE is lost
(disconnected or failed, or its peer silent: :meth:`Connection.ice_suspect`) stays open while it
restarts ICE: its offerer sends a restart offer through ``send_restart`` (set by the swarm)
every :data:`RESTART_RETRY` seconds, the answerer answers what :meth:`Connection.take_restart`
verifies, and the restart is done when something arrives on the connection after that. Past
``ice_restart_timeout`` seconds from the loss it is closed, as a lost connection is.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence

from ..errors import PeerClosed, TooLargeForPeer
from ..errors import SendQueueFull as SendQueueFull  # it lives in p2prpc.errors
from ..transport import IceServerError, Link, RTCOptions, Transport, default_transport
from ..wire.restart import RestartError, RestartKind, RestartMessage, RestartState
from .attempt import Failure, Stage

logger = logging.getLogger(__name__)

#: The stages from which ICE is at work (both descriptions set): ``ice_timeout`` runs from them.
_ICE_STARTS = frozenset({Stage.ANSWER_SENT, Stage.ANSWER_RECEIVED, Stage.ICE_CHECKING})

#: A path whose round trip is at least this many seconds is long: data-channel messages on it are
#: kept to what the transport puts on the wire at once (:meth:`Connection.message_size`).
LONG_PATH = 0.01

#: A size larger than any message: ``message_size(UNBOUNDED)`` is the most a message may take.
UNBOUNDED = 2**62

#: Seconds a restart offer waits for ICE to connect before the offerer makes another.
RESTART_RETRY = 5.0

#: Numbers each connection of this process: what the layers above attribute calls to.
_connection_numbers = itertools.count(1)


class ConnectionState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


#: Packs binary messages into one (``Connection.send``'s ``pack``).
_Pack = Callable[[Sequence[bytes]], bytes]


def _size(data: str | bytes) -> int:
    """The bytes a data-channel message takes on the wire (UTF-8 for text)."""
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


class Connection:
    """One WebRTC connection with one data channel to a remote peer.

    Callbacks (set by the owner before the channel can open): ``on_open()``, ``on_message(data)``,
    ``on_close()``. ``on_close`` is called exactly once, whatever closes the channel.

    Memory toward a peer that reads slowly or not at all: the data channel's buffer holds at
    most ``high_water_mark`` bytes plus one message (data is handed to it only below that mark),
    and our queue above it at most ``max_send_queue`` bytes (:attr:`queued_bytes`); a ``send``
    that does not fit raises :class:`SendQueueFull`.

    Coalescing: small binary messages sent with a ``pack`` function (:meth:`send`) while an
    earlier one has just gone out in the same turn of the event loop wait until the end of that
    turn, and leave packed together in one data-channel message (at most ``pack_limit`` bytes of
    them, and a packed message of at most :meth:`message_size`); so do those that waited in the
    queue together. The first of a burst is never delayed.

    Limits of the other side: no data-channel message larger than the remote's announced
    :attr:`max_message_size` is sent (:class:`~p2prpc.errors.TooLargeForPeer` for one, nothing
    sent); packed ones are kept within it.
    """

    def __init__(
        self, options: RTCOptions, *, initiator: bool, transport: Transport | None = None
    ) -> None:
        self.options = options
        self.initiator = initiator
        self.name: str = secrets.token_hex(20) if initiator else ""
        #: The transport's peer connection under this one.
        self.link: Link = (transport or default_transport()).link(
            options, initiator=initiator, label=self.name
        )
        #: This connection's number in this process (never reused; the label above is chosen by
        #: the offerer, so it cannot tell two peers' connections apart).
        self.connection: int = next(_connection_numbers)
        self.peer_id: str | None = None  # hex, known once the tracker tells us who answered
        #: The Ed25519 key the peer proved on this connection's handshake (``None``: none, yet).
        self.public_key: bytes | None = None
        #: The key the path that made this connection says the peer holds (a neighbour's peer
        #: exchange, the key an offer was sealed to): the connection counts only if it proves it.
        self.expected_key: bytes | None = None
        #: How it was made: the tracker's announce URL, or ``relay:<peer id>`` through the mesh.
        self.origin = ""
        #: Made past the degree bound to reach a service (``P2PT.max_extra_peers``).
        self.extra = False
        #: A circuit through a relay (:mod:`p2prpc.circuit`), not a direct connection: a peer's
        #: direct connections are preferred to it.
        self.relayed = False
        self.state = ConnectionState.NEW
        #: The furthest stage this connection's attempt reached (:class:`~.attempt.Stage`).
        self.stage = Stage.NEW
        #: Why it ended before it opened or counted (``None``: it did not fail).
        self.failure: Failure | None = None
        #: What the failure's cause said, if anything (a handshake's refusal).
        self.failure_detail = ""
        #: ICE candidates in the description this end sent and in the one it took (``None``:
        #: none sent or taken yet).
        self.local_candidates: int | None = None
        self.remote_candidates: int | None = None
        self._ice_timer: asyncio.TimerHandle | None = None
        self.on_open: Callable[[], None] = lambda: None
        self.on_message: Callable[[str | bytes], None] = lambda data: None
        self.on_close: Callable[[], None] = lambda: None
        # (message, its size, its tag, how it may be packed: see send, the pack's limit, and the
        # bytes it adds a message)
        self._queue: deque[tuple[str | bytes, int, Hashable | None, _Pack | None, int, int]] = (
            deque()
        )
        self._queued_bytes = 0
        # Coalescing (see the class docstring): what waits for the end of this turn of the loop.
        self._corked: list[bytes] = []
        self._corked_bytes = 0
        self._corked_pack: _Pack | None = None
        self._turn_open = False  # something went to the data channel in this turn of the loop
        self.opened_at: float | None = None  # loop time when the data channel opened
        #: When this connection was built (``time.monotonic()``): how long it has been connecting.
        self.created_at = time.monotonic()
        #: When the swarm took it over to connect (its offer answered; ``time.monotonic()``).
        self.adopted_at: float | None = None
        self._round_trip: float | None = None  # the shortest the transport measured
        self._writer: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        #: This connection's ICE restart keys and counters, when its link restarts ICE and
        #: restarts are on (``ice_restart_timeout`` > 0); armed once the peer gives its key.
        self.restart: RestartState | None = (
            RestartState(initiator=initiator)
            if self.link.ice_restarts and options.ice_restart_timeout > 0
            else None
        )
        #: Sends a restart message's text to the peer (set by the swarm; ``False``: no path).
        self.send_restart: Callable[[Connection, str], bool] = lambda connection, text: False
        #: Called with ``"armed"`` (both restart keys known), then ``"lost"``, ``"negotiated"``
        #: (new ICE parameters on both ends: time to hear from the peer), ``"restarted"`` or
        #: ``"gave up"`` as each restart goes.
        self.on_restart: Callable[[str], None] = lambda what: None
        #: Since when (loop time) ICE is lost and being restarted; ``None``: it is not.
        self.restarting_since: float | None = None
        #: Restarts that brought ICE back on this connection.
        self.restarts = 0
        #: Our own peer id (20 bytes), set by the swarm: what restart messages are bound to.
        self.local_id = b""
        self._restart_timer: asyncio.TimerHandle | None = None
        self._restarter: asyncio.Task[None] | None = None
        self._reconnected = asyncio.Event()
        self._negotiated = False  # new ICE parameters applied on both ends since the loss
        link = self.link
        link.on_open = self._on_link_open
        link.on_message = self._on_link_message
        link.on_close = self._on_link_close
        link.on_ice_state = self._on_ice_state

    # -- how far the attempt got ---------------------------------------------------------------

    def _reach(self, stage: Stage) -> None:
        if list(Stage).index(stage) > list(Stage).index(self.stage):
            self.stage = stage
        if stage in _ICE_STARTS:
            self._start_ice_timer()

    def _start_ice_timer(self) -> None:
        """ICE has ``ice_timeout`` seconds from when both descriptions are set (or it starts
        checking) to find a working pair: a side with no candidate to check never starts."""
        if self._ice_timer is None and self.state is not ConnectionState.CLOSED:
            self._ice_timer = asyncio.get_running_loop().call_later(
                self.options.ice_timeout, self._ice_timed_out
            )

    def fail(self, failure: Failure, detail: str = "") -> None:
        """Close this connection as failed for ``failure`` (the first failure named stays)."""
        if self.state is ConnectionState.CLOSED:
            return
        if self.failure is None:
            self.failure, self.failure_detail = failure, detail
        self.close()

    def _on_ice_state(self, state: str) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        logger.debug("connection %d to %s: ICE %s", self.connection, self.peer_id, state)
        if state == "checking":
            self._reach(Stage.ICE_CHECKING)
        elif state in ("connected", "completed"):
            self._reach(Stage.ICE_CONNECTED)
            if self._ice_timer is not None:
                self._ice_timer.cancel()
        elif state in ("disconnected", "failed") and self._restartable():
            self._ice_lost()
        elif state == "failed" and self.stage is not Stage.OPEN:
            connected = self.stage is Stage.ICE_CONNECTED
            self.fail(Failure.DTLS_FAILED if connected else Failure.ICE_FAILED)

    # -- ICE restarts --------------------------------------------------------------------------

    def arm_restart(self, remote_key: bytes) -> None:
        """Take the peer's restart key (from its hello on this connection): from now on a lost
        ICE is restarted (:class:`~p2prpc.wire.restart.RestartError` for a changed key)."""
        if self.restart is None:
            return
        armed = self.restart.armed
        self.restart.set_remote_key(remote_key)
        self.link.keep_on_ice_failure = True
        if not armed:
            self.on_restart("armed")

    def _restartable(self) -> bool:
        return self.stage is Stage.OPEN and self.restart is not None and self.restart.armed

    @property
    def restarting(self) -> bool:
        """Whether ICE is lost on this open connection and being restarted."""
        return self.restarting_since is not None

    def ice_suspect(self) -> None:
        """The peer has been silent on this connection (keepalive): restart ICE now, if it
        restarts, rather than wait for ICE to give the path up (libwebrtc: about 15 s)."""
        if self._restartable():
            self._ice_lost()

    def _ice_lost(self) -> None:
        if self.restarting_since is not None or self.state is not ConnectionState.OPEN:
            return
        self._negotiated = False
        loop = asyncio.get_running_loop()
        self.restarting_since = loop.time()
        self._reconnected.clear()
        self._restart_timer = loop.call_later(
            self.options.ice_restart_timeout, self._restart_timed_out
        )
        logger.info("ICE to %s lost on connection %d: restarting it", self.peer_id, self.connection)
        assert self.restart is not None  # _restartable
        if self.restart.initiator:  # the offerer offers; the answerer waits for its offer
            self._restarter = loop.create_task(self._offer_restarts())
        self.on_restart("lost")

    async def _offer_restarts(self) -> None:
        restart = self.restart
        assert restart is not None
        while self.state is ConnectionState.OPEN and not self._reconnected.is_set():
            try:
                sdp = await self.link.restart_offer()
                text = self._seal(restart, RestartKind.OFFER, sdp)
            except PeerClosed:
                return
            except Exception:  # libwebrtc refused: tried again, until the restart times out
                logger.exception("an ICE restart offer to %s failed", self.peer_id)
                text = ""
            if text and not self.send_restart(self, text):
                logger.debug("no signalling path to %s for an ICE restart yet", self.peer_id)
            try:
                await asyncio.wait_for(self._reconnected.wait(), RESTART_RETRY)
            except TimeoutError:
                continue

    def _seal(self, restart: RestartState, kind: RestartKind, sdp: str) -> str:
        from_id, to_id = self._ids()
        return restart.seal(
            kind,
            sender=from_id,
            receiver=to_id,
            fingerprints=self.link.fingerprints(),
            connection_id=bytes.fromhex(self.name),
            sdp=sdp,
        )

    def _ids(self) -> tuple[bytes, bytes]:
        return self.local_id, bytes.fromhex(self.peer_id or "")

    async def take_restart(self, message: RestartMessage) -> None:
        """Apply a restart offer or answer that came for this connection from its peer.

        :class:`~p2prpc.wire.restart.RestartError` (nothing applied) when its MAC does not
        verify for this connection and direction, its counter was seen, it is of the wrong kind,
        the connection has no restart keys, or its description cannot be applied."""
        restart = self.restart
        if restart is None or not restart.armed or self.state is not ConnectionState.OPEN:
            raise RestartError(f"connection {self.connection} takes no ICE restart")
        peer_id, own_id = self._ids()[1], self._ids()[0]
        try:
            fingerprints = self.link.fingerprints()
        except PeerClosed as e:
            raise RestartError(str(e)) from None
        sdp = restart.open(
            message,
            sender=peer_id,
            receiver=own_id,
            fingerprints=fingerprints,
            connection_id=bytes.fromhex(self.name),
        )
        try:
            if message.kind is RestartKind.OFFER:
                answer = await self.link.accept_restart_offer(sdp)
                if self.restarting_since is None:  # the peer saw the loss first
                    self._ice_lost()
                self.send_restart(self, self._seal(restart, RestartKind.ANSWER, answer))
            else:
                await self.link.accept_restart_answer(sdp)
        except PeerClosed:
            return
        except Exception as e:  # libwebrtc refused the description: it was not applied
            raise RestartError(f"an ICE restart description was not applied: {e}") from None
        if self.restarting_since is not None and not self._negotiated:
            self._negotiated = True
            self.on_restart("negotiated")

    def _restarted(self) -> None:
        since = self.restarting_since
        assert since is not None
        self.restarting_since = None
        self._negotiated = False
        self.restarts += 1
        self._reconnected.set()
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None
        logger.info(
            "ICE to %s restarted on connection %d after %.1f s",
            self.peer_id,
            self.connection,
            asyncio.get_running_loop().time() - since,
        )
        self.on_restart("restarted")

    def _restart_timed_out(self) -> None:
        self._restart_timer = None
        if self.restarting_since is None or self.state is ConnectionState.CLOSED:
            return
        logger.info(
            "ICE to %s not restarted within %g s on connection %d: closing it",
            self.peer_id,
            self.options.ice_restart_timeout,
            self.connection,
        )
        self.on_restart("gave up")
        self.close()

    def _ice_timed_out(self) -> None:
        if self.stage in _ICE_STARTS:
            self.fail(Failure.ICE_FAILED)

    def _on_link_close(self) -> None:
        """The transport closed the link: after ICE connected and before the data channel
        opened, DTLS (or SCTP) failed."""
        if self.failure is None and self.state is not ConnectionState.CLOSED:
            if self.stage is Stage.ICE_CONNECTED:
                self.failure = Failure.DTLS_FAILED
            elif self.stage is Stage.ICE_CHECKING:
                self.failure = Failure.ICE_FAILED
        self.close()

    @property
    def ice_errors(self) -> list[IceServerError]:
        """What the ICE servers refused while this connection gathered its candidates."""
        return self.link.ice_errors

    # -- signalling ---------------------------------------------------------------------------

    async def create_offer(self) -> str:
        """Initiator: return the offer SDP with every candidate in it."""
        self.state = ConnectionState.CONNECTING
        sdp = await self.link.create_offer()
        self.local_candidates = _candidates(sdp)
        self._reach(Stage.OFFER_SENT)
        return sdp

    async def accept_offer(self, sdp: str) -> str:
        """Answerer: take the remote offer and return the answer SDP."""
        self.state = ConnectionState.CONNECTING
        self.remote_candidates = _candidates(sdp)
        answer = await self.link.accept_offer(sdp)
        self.local_candidates = _candidates(answer)
        self._reach(Stage.ANSWER_SENT)
        return answer

    async def accept_answer(self, sdp: str) -> None:
        """Initiator: take the remote answer; the data channel opens once ICE and DTLS are done."""
        self._reach(Stage.ANSWER_RECEIVED)
        self.remote_candidates = _candidates(sdp)
        await self.link.accept_answer(sdp)

    def fingerprints(self) -> tuple[bytes, bytes]:
        """(local, remote) SHA-256 DTLS certificate fingerprints of this connection, as the
        descriptions name them (the transport refuses a remote certificate that does not match).
        :class:`PeerClosed` before both descriptions are set."""
        return self.link.fingerprints()

    # -- data ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state is ConnectionState.OPEN

    @property
    def buffered_amount(self) -> int:
        """Bytes waiting to be sent: in the data channel plus in our own queue."""
        dc_amount = self.link.buffered_amount
        return dc_amount + self._corked_bytes + self._queued_bytes

    @property
    def max_message_size(self) -> int | None:
        """The largest data-channel message the remote takes, in bytes, as it announced it
        (``a=max-message-size``; 65536 when it names none; ``None``: any size)."""
        return self.link.max_message_size

    @property
    def round_trip(self) -> float | None:
        """The shortest round trip the transport has measured on this connection, in seconds
        (``None`` before any: :attr:`~p2prpc.transport.Link.round_trip`)."""
        return self.link.round_trip

    def message_size(self, size: int) -> int:
        """How large to make data-channel messages here (bytes), for data one would otherwise
        cut into ``size``-byte messages: never more than the remote's :attr:`max_message_size`,
        and on a long path (a :attr:`round_trip` of :data:`LONG_PATH` seconds or more) no more
        than the transport puts on the wire at once (its ``burst_size``): a larger message would
        leave a few packets per acknowledgement, round trips after the first, where messages of
        one burst each fill the transport's window at once. On a short path larger messages
        cost less CPU, and acknowledgements come back at once."""
        link = self.link
        limit = link.max_message_size
        if limit is not None and limit < size:
            size = limit
        burst = link.burst_size
        if burst is not None and burst < size:
            rtt = link.round_trip
            if rtt is not None and rtt >= LONG_PATH:
                size = burst
        return size

    @property
    def acknowledged(self) -> int:
        """Changes whenever the remote peer acknowledges data sent to it (:attr:`Link.acknowledged
        <p2prpc.transport.Link.acknowledged>`): a sign of life while our data waits on it."""
        return self.link.acknowledged

    @property
    def queued_bytes(self) -> int:
        """Bytes in our queue, not yet handed to the data channel (at most ``max_send_queue``)."""
        return self._queued_bytes

    def send(
        self,
        messages: Sequence[str | bytes],
        *,
        tag: Hashable | None = None,
        pack: Callable[[Sequence[bytes]], bytes] | None = None,
        pack_limit: int = 16 * 1024,
        pack_overhead: int = 0,
    ) -> None:
        """Send data-channel messages in order, queueing what the channel's buffer cannot take yet.

        Never blocks: below the high-water mark messages go straight to the data channel; above it
        they wait in a queue that a writer task drains as the buffer empties. ``tag`` marks the
        queued ones so that :meth:`withdraw` can take them back before they leave.

        ``pack``: these messages (bytes, each at most ``pack_limit // 2`` bytes) may travel packed
        with others, at most ``pack_limit`` bytes of them together, in one data-channel message
        that ``pack`` builds (the receiver must read what it builds); see the class docstring.
        ``pack_overhead``: the bytes ``pack`` adds for each message it packs (and at most as many
        for the whole), so that what it builds is kept within :meth:`message_size`. Order is
        kept whatever is packed.

        All or nothing: raises :class:`SendQueueFull` (sending none of ``messages``) when those
        that would wait do not fit in ``max_send_queue`` bytes with what waits already,
        :class:`~p2prpc.errors.TooLargeForPeer` when one of them is larger than the remote's
        :attr:`max_message_size`, and :class:`PeerClosed` when the channel is not open.
        """
        link = self.link
        if self.state is not ConnectionState.OPEN:
            raise PeerClosed(f"data channel {self.name or '?'} is {self.state.value}")
        if not link.writable:  # closing under us: the transport would raise its own error
            self.close()
            raise PeerClosed(f"data channel {self.name or '?'} is closing")
        if len(messages) == 1 and not self._turn_open and not self._queue:
            # The commonest case, the first message of a turn: it goes straight to the data
            # channel below the high-water mark (as below, with nothing corked or queued).
            message = messages[0]
            if type(message) is bytes:
                size = len(message)
                limit = link.max_message_size
                if (limit is None or size <= limit) and (
                    link.buffered_amount <= self.options.high_water_mark
                ):
                    link.send(message)
                    self._turn_open = True
                    asyncio.get_running_loop().call_soon(self._end_turn)
                    return
        sizes = []
        all_bytes = True
        for m in messages:
            if type(m) is bytes:
                sizes.append(len(m))
            else:
                sizes.append(_size(m))
                all_bytes = False
        largest = max(sizes, default=0)
        limit = link.max_message_size
        if limit is not None and largest > limit:
            raise TooLargeForPeer(
                f"a data-channel message of {largest} bytes for {self.peer_id or '?'}, whose "
                f"session description takes at most {limit}",
                size=largest,
                limit=limit,
            )
        high = self.options.high_water_mark
        direct = 0
        if not self._queue:  # as many as go straight to the data channel, as below
            buffered = link.buffered_amount + self._corked_bytes
            while direct < len(sizes) and buffered <= high:
                buffered += sizes[direct]
                direct += 1
        waiting = sum(sizes[direct:])
        if waiting and self._queued_bytes + waiting > self.options.max_send_queue:
            raise SendQueueFull(
                f"{waiting} bytes to queue for data channel {self.name} where "
                f"{self._queued_bytes} of {self.options.max_send_queue} are queued already"
            )
        if pack is not None and (not all_bytes or largest > pack_limit // 2):
            pack = None
        if pack is not None and direct == len(messages) and self._turn_open:
            if self._corked_pack is not pack:
                self._uncork()
            room = self.message_size(UNBOUNDED)
            for message, size in zip(messages, sizes, strict=True):
                corked = self._corked_bytes + size
                if (  # a batch never holds more, nor makes a larger message than the path takes
                    corked > pack_limit or corked + pack_overhead * (len(self._corked) + 2) > room
                ):
                    self._uncork()
                self._corked_pack = pack
                self._corked.append(message)  # type: ignore[arg-type]  # bytes, as pack says
                self._corked_bytes += size
            return
        self._uncork()
        if self.state is not ConnectionState.OPEN:  # it closed while handing over what waited
            raise PeerClosed(f"data channel {self.name or '?'} is {self.state.value}")
        for i in range(direct):
            link.send(messages[i])
        if direct and not self._turn_open:
            self._turn_open = True
            asyncio.get_running_loop().call_soon(self._end_turn)
        if direct < len(messages):
            self._queue.extend(
                (m, size, tag, pack, pack_limit, pack_overhead)
                for m, size in zip(messages[direct:], sizes[direct:], strict=True)
            )
            self._queued_bytes += waiting
            self._drained.clear()
            if self._writer is None:
                self._writer = asyncio.get_running_loop().create_task(self._write_queue())

    def _uncork(self) -> None:
        """Hand what waits for the end of the turn to the data channel, packed, in order."""
        corked = self._corked
        if not corked:
            return
        pack = self._corked_pack
        self._corked, self._corked_bytes, self._corked_pack = [], 0, None
        link = self.link
        if self.state is not ConnectionState.OPEN:
            return
        if not link.writable:  # closing under us: the connection is lost, and so is this
            self.close()
            return
        link.send(corked[0] if len(corked) == 1 or pack is None else pack(corked))

    def _end_turn(self) -> None:
        self._turn_open = False
        self._uncork()

    def withdraw(self, tag: Hashable) -> int:
        """Take back the queued messages sent with ``tag`` that have not reached the data channel.

        Returns how many were withdrawn. Those already handed to aiortc are sent regardless, so
        a receiver may be left with the beginning of something (P2PT frames expire there).
        """
        if tag is None:
            raise ValueError("withdraw needs the tag the messages were sent with, not None")
        if not self._queue:
            return 0
        kept = deque(entry for entry in self._queue if entry[2] != tag)
        withdrawn = len(self._queue) - len(kept)
        if withdrawn:
            self._queue = kept
            self._queued_bytes = sum(entry[1] for entry in kept)
            if not kept:
                self._drained.set()
        return withdrawn

    async def drain(self) -> None:
        """Wait until everything queued by :meth:`send` has been handed to the data channel.

        Then the whole ``max_send_queue`` is free again. Raises :class:`PeerClosed` if the channel
        closed meanwhile (what was queued is lost).
        """
        if not self._drained.is_set():
            await self._drained.wait()
        if self.state is ConnectionState.CLOSED:
            raise PeerClosed(f"data channel {self.name} closed")

    async def _write_queue(self) -> None:
        link = self.link
        low = asyncio.Event()
        link.set_low_threshold(self.options.low_water_mark)
        link.on_buffered_low = low.set
        try:
            while self._queue and self.state is ConnectionState.OPEN:
                if link.buffered_amount > self.options.high_water_mark:
                    low.clear()
                    await low.wait()
                    continue
                queue = self._queue  # withdraw() replaces it, but never across this block
                data, size, _, pack, limit, overhead = queue.popleft()
                self._queued_bytes -= size
                if pack is None or not queue or queue[0][3] is not pack:
                    link.send(data)
                    continue
                # Messages that waited together leave together, as many as one batch holds and
                # in a message no larger than the path takes.
                batch, room = [data], limit - size
                packed = size + 2 * overhead
                path_room = self.message_size(UNBOUNDED)
                while (
                    queue
                    and queue[0][3] is pack
                    and queue[0][1] <= room
                    and packed + queue[0][1] + overhead <= path_room
                ):
                    more, more_size, _, _, _, _ = queue.popleft()
                    self._queued_bytes -= more_size
                    room -= more_size
                    packed += more_size + overhead
                    batch.append(more)
                link.send(pack(batch) if len(batch) > 1 else data)  # type: ignore[arg-type]
        finally:
            link.on_buffered_low = None
            self._writer = None
            if not self._queue:
                self._drained.set()

    # -- life ---------------------------------------------------------------------------------

    def _on_link_open(self) -> None:
        if self.state in (ConnectionState.NEW, ConnectionState.CONNECTING):
            self.name = self.link.label  # the answerer learns it with the remote's channel
            self.state = ConnectionState.OPEN
            self._reach(Stage.OPEN)
            if self._ice_timer is not None:
                self._ice_timer.cancel()
            self.opened_at = asyncio.get_running_loop().time()
            self.on_open()

    def _on_link_message(self, data: str | bytes) -> None:
        if self.state is not ConnectionState.OPEN:
            return
        if self._negotiated:  # heard over the restarted ICE
            self._restarted()
        try:
            self.on_message(data)
        except Exception:
            # A handler's bug must not reach the transport: raised from its receive path, it can
            # kill the connection, and every later message with it. It stays a traceback.
            logger.exception("handling a message from %s failed", self.peer_id)

    def close(self) -> None:
        """Close the connection (idempotent); ``on_close`` runs now, the teardown in background."""
        if self.state is ConnectionState.CLOSED:
            return
        was_started = self.state is not ConnectionState.NEW
        if self._corked and self.link.writable:
            try:  # sent before the close: handed to the transport like the unpacked ones
                self._uncork()
            except Exception:  # on_close runs whatever happens here
                logger.exception("flushing data channel %s on close failed", self.name)
        self.state = ConnectionState.CLOSED
        if self._ice_timer is not None:
            self._ice_timer.cancel()
        if self._restart_timer is not None:
            self._restart_timer.cancel()
        if self._restarter is not None:
            self._restarter.cancel()
        self._reconnected.set()
        self._queue.clear()
        self._queued_bytes = 0
        self._corked, self._corked_bytes, self._corked_pack = [], 0, None
        self._drained.set()
        if self._writer is not None:
            self._writer.cancel()
        self.link.close()
        if was_started:
            logger.debug("connection %s to %s closed", self.name, self.peer_id)
        self.on_close()

    async def wait_closed(self) -> None:
        """Close and wait until the peer connection has released its sockets."""
        self.close()
        for task in (self._writer, self._restarter):
            if task is not None:
                await asyncio.wait([task])
        await self.link.wait_closed()


def _candidates(sdp: str) -> int:
    """How many ICE candidates a session description carries (``a=candidate:`` lines)."""
    return sdp.count("a=candidate:")
