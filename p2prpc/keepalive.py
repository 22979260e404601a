"""Keepalive: the layer of a :class:`~p2prpc.mux.Mux` that watches each connection for life,
pings the silent ones, and answers pings (the PING and PONG envelope kinds).

Each connection is watched on its own (traffic on a new connection says nothing of an older one,
and the calls made on one end with it)::

  alive ──ping unanswered for keepalive_timeout──▶ suspect ──keepalive_grace──▶ closed
    ▲                                                  │
    └──────────────── anything heard from it ──────────┘

Life is anything that arrives on the connection (the node tells :meth:`Keepalive.hear`), or its
transport acknowledging our data (so a ping waiting behind our own data is not held against the
peer). A suspect connection takes no new call; calls in flight on it wait (the layers decide: the
RPC layer moves the calls that may move, on the node's ``connectionsuspect`` event). Time this
node's own event loop spent blocked is not held against its peers: what they sent meanwhile is
read before they are judged. Only peers whose hello says ``keepalive`` are pinged.

The node keeps this layer's public names as its own (``node.life``, ``node.is_suspect``,
``node.responsive``, ``node.silence``, ``node.probe``, the ``keepalive_*`` keywords).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .errors import PeerClosed, RemoteProtocolError, SendQueueFull
from .p2pt import P2PT
from .wire.envelope import Envelope, Kind
from .wire.frames import new_message_id

logger = logging.getLogger(__name__)

#: Keepalive's defaults, in seconds (``Mux(keepalive_interval=..., keepalive_timeout=...,
#: keepalive_grace=...)``): a connection silent for the interval is pinged; one that leaves a
#: ping unanswered for the timeout is suspect; a suspect one is closed after the grace. A peer
#: whose event loop is blocked for less than the timeout never looks dead.
KEEPALIVE_INTERVAL = 1.5
KEEPALIVE_TIMEOUT = 3.5
KEEPALIVE_GRACE = 15.0
#: A call sent on a connection silent for longer than this (seconds) carries a ping, so that a
#: peer that died since it last spoke is known within moments (:meth:`Keepalive.probe`).
PROBE_SILENCE = 0.1
#: A ping unanswered for this long (seconds), or for four of the connection's round trips if
#: more, makes its peer unresponsive: new calls prefer peers that answer (:meth:`Keepalive.life`).
ANSWER_WAIT = 0.25
#: A peer heard from within this many seconds is answering (:attr:`Life.ANSWERING`).
RECENT = 0.25


class Life(enum.IntEnum):
    """What a node knows of a peer's recent life (:meth:`Keepalive.life`), best first: new
    calls go to the best a service has."""

    #: Heard from within :data:`RECENT` seconds.
    ANSWERING = 0
    #: Nothing heard lately, and no ping to it is overdue.
    QUIET = 1
    #: A ping to it went unanswered for :data:`ANSWER_WAIT` (or four round trips).
    UNANSWERED = 2
    #: Every connection to it is suspect (keepalive): no new call goes to it.
    SUSPECT = 3


class _Hello(Protocol):
    """What keepalive reads of a peer's hello."""

    @property
    def keepalive(self) -> bool:
        """Whether the peer answers pings."""


class Host(Protocol):
    """What keepalive needs of its node (a :class:`~p2prpc.mux.Mux`)."""

    @property
    def p2pt(self) -> P2PT:
        """The swarm: its connections, their acknowledgements, closing them."""

    @property
    def peers(self) -> Mapping[str, _Hello]:
        """Connected peers and their hellos, by peer id."""

    @property
    def stopping(self) -> bool:
        """Whether the node is stopping."""

    def send(self, peer_id: str, envelope: Envelope, *, connection: int | None = None) -> int:
        """Send ``envelope`` to ``peer_id`` (on ``connection``, if given)."""

    def emit(self, event: str, *args: Any, **kwargs: Any) -> bool:
        """Tell the node's listeners (``connectionsuspect``, ``connectionalive``)."""

    def end_calls_on(self, peer_id: str, connection: int) -> None:
        """End the calls on ``connection`` as its closing would, leaving it open."""


class Keepalive:
    """The keepalive layer of ``node`` (registered for PING and PONG envelopes).

    ``interval``, ``timeout``, ``grace``: seconds, as the node's ``keepalive_interval``,
    ``keepalive_timeout`` and ``keepalive_grace`` (``interval=None``: no pings, nothing is
    judged; a ``ValueError`` for others than positive seconds, and 0 or more for ``grace``).
    ``on_check(now)``: called at the start of every check (every quarter of the shorter of the
    interval and the timeout), ``now`` being ``time.monotonic()``.
    """

    def __init__(
        self,
        node: Host,
        interval: float | None = KEEPALIVE_INTERVAL,
        timeout: float = KEEPALIVE_TIMEOUT,
        grace: float = KEEPALIVE_GRACE,
        *,
        on_check: Callable[[float], object] | None = None,
    ) -> None:
        if interval is not None and not (interval > 0 and timeout > 0 and grace >= 0):
            raise ValueError(
                "keepalive_interval and keepalive_timeout must be positive seconds, "
                "keepalive_grace seconds (0 or more)"
            )
        self.node = node
        self.interval = interval
        self.timeout = timeout
        self.grace = grace
        self._on_check = on_check
        # Each connection is keyed (peer id, connection): a call lives on one.
        self._heard: dict[tuple[str, int], float] = {}  # when it last showed life
        self._pinged: dict[tuple[str, int], float] = {}  # when it was pinged, unanswered
        self._acked: dict[tuple[str, int], int] = {}  # its transport's acknowledgement, last seen
        self._suspect: dict[tuple[str, int], float] = {}  # since when it is suspect
        #: Suspect connections past the grace whose calls were ended while their ICE restarts.
        self._calls_ended: set[tuple[str, int]] = set()
        self._round_trip: dict[tuple[str, int], float] = {}  # smoothed ping round trip
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # when the next check should run (time.monotonic())

    # -- the Layer contract (p2prpc.mux.Layer) --------------------------------------------------

    def on_envelope(self, peer_id: str, envelope: Envelope, connection: int) -> None:
        """A ping is answered on the connection it came on; a pong was heard, which was all."""
        if envelope.kind is Kind.PING:
            self._send_control(peer_id, Kind.PONG, connection)

    def on_connection_lost(self, peer_id: str, connection: int) -> None:
        self._forget((peer_id, connection))

    def on_peer_lost(self, peer_id: str) -> None:
        for key in [key for key in self._heard if key[0] == peer_id]:
            self._forget(key)

    def on_refused(
        self,
        peer_id: str,
        kind: Kind | None,
        call_id: int,
        error: RemoteProtocolError,
        *,
        binary: bool | None = None,
    ) -> None:
        """Nobody waits on a ping or a pong: the node's ``peerwarning`` says it all."""

    async def wait_idle(self) -> None:
        """Keepalive has nothing in progress to finish."""

    def close(self) -> None:
        """Stop checking (the node is stopping)."""
        if self._timer is not None:
            self._timer.cancel()

    # -- checking ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin checking every connection (nothing happens with keepalive off)."""
        if self.interval is not None:
            self._schedule()

    def _tick(self) -> float:
        assert self.interval is not None
        return min(self.interval, self.timeout) / 4

    def _schedule(self) -> None:
        tick = self._tick()
        self._due = time.monotonic() + tick
        self._timer = asyncio.get_running_loop().call_later(tick, self._check_peers)

    def _check_peers(self) -> None:
        """Ping idle connections; make suspect those that left a ping unanswered past the
        timeout; close those suspect for longer than the grace."""
        now = time.monotonic()
        if self._on_check is not None:
            self._on_check(now)
        tick = self._tick()
        late = now - self._due
        if late > tick / 2:
            # This node's loop was blocked: what peers sent meanwhile waits unread, and their
            # silence is ours. Their clocks stop for as long, and they are judged next time.
            stalled = late + tick
            for stamps in (self._pinged, self._suspect):
                for key, since in stamps.items():
                    stamps[key] = min(since + stalled, now)
        else:
            p2pt = self.node.p2pt
            for peer_id, info in list(self.node.peers.items()):
                if not info.keepalive:
                    continue
                for connection in p2pt.connections(peer_id):
                    self._check_connection((peer_id, connection), now)
        if not self.node.stopping:
            self._schedule()

    def _check_connection(self, key: tuple[str, int], now: float) -> None:
        assert self.interval is not None  # only called while keepalive runs
        peer_id, connection = key
        p2pt = self.node.p2pt
        heard = self._heard.setdefault(key, now)
        acked = p2pt.acknowledged(peer_id, connection)
        if self._acked.setdefault(key, acked) != acked:
            self._acked[key] = acked
            heard = self._heard[key] = now  # its transport acknowledges what we send
            self._alive(key, now)
        suspect = self._suspect.get(key)
        pinged = self._pinged.get(key)
        if suspect is not None:
            if now - suspect >= self.grace and p2pt.restarting(peer_id, connection):
                # Its ICE is being restarted, and the restart's own timeout closes it; its calls
                # have waited their grace, as on a connection that closes now.
                if key not in self._calls_ended:
                    self._calls_ended.add(key)
                    logger.info(
                        "peer %s answered nothing on connection %d for %.1f s: its calls end, "
                        "the connection waits for its ICE restart",
                        peer_id[:8],
                        connection,
                        now - heard,
                    )
                    self.node.end_calls_on(peer_id, connection)
            elif now - suspect >= self.grace:
                logger.info(
                    "peer %s answered nothing on connection %d for %.1f s: closing it",
                    peer_id[:8],
                    connection,
                    now - heard,
                )
                p2pt.close_connection(peer_id, connection)
                if not p2pt.is_connected(peer_id) and not self.node.stopping:
                    p2pt.request_more_peers()  # if it was only paused, it is found again soon
        elif pinged is not None and now - pinged >= self.timeout:
            logger.info(
                "peer %s answered no ping on connection %d in %.1f s: suspect",
                peer_id[:8],
                connection,
                now - pinged,
            )
            self._suspect[key] = now
            self.node.emit("connectionsuspect", peer_id, connection)
            if self.grace == 0:
                self._check_connection(key, now)
        elif pinged is None and now - heard >= self.interval:
            self._ping(key, now)

    def _ping(self, key: tuple[str, int], now: float) -> None:
        self._pinged[key] = now
        self._send_control(key[0], Kind.PING, key[1])

    def _send_control(self, peer_id: str, kind: Kind, connection: int | None = None) -> None:
        with contextlib.suppress(PeerClosed, SendQueueFull):  # a full queue shows it is alive
            self.node.send(peer_id, Envelope(kind, new_message_id()), connection=connection)

    def _answers_pings(self, peer_id: str) -> bool:
        info = self.node.peers.get(peer_id)
        return info is not None and info.keepalive

    # -- life -------------------------------------------------------------------------------------

    def hear(self, peer_id: str, connection: int) -> None:
        """Something arrived from ``peer_id`` on ``connection``: it is alive."""
        key = (peer_id, connection)
        now = self._heard[key] = time.monotonic()
        if self._pinged:
            self._alive(key, now)

    def _alive(self, key: tuple[str, int], now: float) -> None:
        """The connection showed life at ``now``: its ping is answered, and it is no longer
        suspect."""
        pinged = self._pinged.pop(key, None)
        self._calls_ended.discard(key)
        if self._suspect.pop(key, None) is not None:
            logger.info("peer %s on connection %d speaks again", key[0][:8], key[1])
            self.node.emit("connectionalive", key[0], key[1])
        elif pinged is not None:
            sample = now - pinged
            rtt = self._round_trip.get(key)
            self._round_trip[key] = sample if rtt is None else 0.875 * rtt + 0.125 * sample

    def _forget(self, key: tuple[str, int]) -> None:
        self._calls_ended.discard(key)
        self._heard.pop(key, None)
        self._pinged.pop(key, None)
        self._acked.pop(key, None)
        self._suspect.pop(key, None)
        self._round_trip.pop(key, None)

    def ping_now(self, peer_id: str, connection: int) -> None:
        """Ping ``connection`` now (its path was just renegotiated: its pong tells that it
        works), whatever waits for an answer on it already."""
        if self._answers_pings(peer_id):
            self._pinged.setdefault((peer_id, connection), time.monotonic())
            self._send_control(peer_id, Kind.PING, connection)

    def probe(self, peer_id: str, connection: int) -> None:
        """A call just went on ``connection`` to ``peer_id``: if nothing was heard on it for
        :data:`PROBE_SILENCE`, ping it, so that a peer that died since it last spoke is
        unresponsive within moments (new calls go elsewhere) instead of after the interval."""
        if self.interval is None:
            return
        key = (peer_id, connection)
        heard = self._heard.get(key)
        if heard is None or key in self._pinged:
            return
        now = time.monotonic()
        if now - heard > PROBE_SILENCE and self._answers_pings(peer_id):
            self._ping(key, now)

    @property
    def any_suspect(self) -> bool:
        """Whether any connection is suspect (when none is, no peer needs to be passed over)."""
        return bool(self._suspect)

    def is_suspect(self, peer_id: str, connection: int | None = None) -> bool:
        """Whether ``connection`` to ``peer_id`` (``None``: every connection to it) is suspect:
        it left a ping unanswered for the timeout and has said nothing since. No new call goes
        to a suspect peer; it is closed after the grace."""
        if not self._suspect:
            return False
        if connection is not None:
            return (peer_id, connection) in self._suspect
        connections = self.node.p2pt.connections(peer_id)
        return bool(connections) and all((peer_id, c) in self._suspect for c in connections)

    def life(self, peer_id: str, *, probe: bool = False) -> Life:
        """What is known of ``peer_id``'s recent life on the connection new calls to it take
        (:class:`Life`, best first): how new calls rank it. ``probe``: ping it if nothing was
        heard from it for :data:`PROBE_SILENCE` (at most one ping waits on a connection), so
        that what is known stays recent while calls are being made. With keepalive off nothing
        is known: every peer is :attr:`Life.ANSWERING`."""
        if self.interval is None:
            return Life.ANSWERING
        connection = self.lively_connection(peer_id)
        if connection is None:
            return Life.SUSPECT if self.is_suspect(peer_id) else Life.QUIET
        key = (peer_id, connection)
        heard = self._heard.get(key)
        if heard is None:
            return Life.QUIET
        now = time.monotonic()
        pinged = self._pinged.get(key)
        if pinged is not None:
            if now - pinged >= max(ANSWER_WAIT, 4 * self._round_trip.get(key, 0.0)):
                return Life.UNANSWERED
        elif probe and now - heard > PROBE_SILENCE and self._answers_pings(peer_id):
            self._ping(key, now)
        return Life.ANSWERING if now - heard <= RECENT else Life.QUIET

    def responsive(self, peer_id: str) -> bool:
        """Whether ``peer_id`` answers: not suspect, and no ping to it waits longer than
        :data:`ANSWER_WAIT` or four of its round trips (:meth:`life`). A peer that died since
        it last spoke stops being responsive a moment after a call probes it, long before it
        is found suspect."""
        return self.life(peer_id) < Life.UNANSWERED

    def silence(self, peer_id: str) -> float | None:
        """Seconds since anything was heard from ``peer_id`` on the connection new calls to it
        take (``None``: not known, keepalive off or not yet watched)."""
        connection = self.lively_connection(peer_id)
        heard = self._heard.get((peer_id, connection)) if connection is not None else None
        return None if heard is None else time.monotonic() - heard

    def lively_connection(self, peer_id: str) -> int | None:
        """The connection a new call to ``peer_id`` takes: its first usable one that is not
        suspect (``None``: none is usable, or all are suspect)."""
        for connection in self.node.p2pt.connections(peer_id):
            if (peer_id, connection) not in self._suspect:
                return connection
        return None
