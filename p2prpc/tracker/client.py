"""One WebTorrent tracker connection, as bittorrent-tracker's ``WebSocketTracker`` is for P2PT.

The client keeps a WebSocket to the tracker open (reconnecting with exponential backoff and
jitter through tenacity), announces with fresh offers on connect, at the tracker's interval and on
request, answers the offers the tracker relays from other peers, and hands the answers it relays
back to the offers they name. It is one signalling path of its swarm: the offers, their expiry and
the connections they become live in the swarm's :class:`~p2prpc.swarm.pool.OfferPool`, as those
the mesh carries do. Closing the client closes its offers and leaves the connections already made
alone: they belong to the swarm (this is how P2PT removes a tracker without dropping peers).

How many offers an announce carries is the swarm's choice (:meth:`Swarm.offers_wanted`). The
tracker hands each offer of an announce to a different peer of the swarm, and each offer gathers
its candidates before it leaves: with a TURN server configured, an allocation on it. P2PT makes
its full count whatever the swarm holds (offers to peers already connected become backup
channels); a swarm with a TURN server makes no more than the tracker's last answer counted
other peers, less those connected. So an announce that finds the count unknown (the first of
each connection to the tracker) and carries no offer for it is followed, as soon as the answer
tells the count, by one with the offers then wanted; so is an announce asked for
(:meth:`TrackerClient.announce`) whose answer counts more peers than it was made for.

Unanswered offers are bounded: each holds a peer connection and its UDP sockets, so before an
announce makes new ones, the oldest are retired (closed, sockets released) until at most
``max_outstanding_offers`` (two announces' worth by default) remain with the new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Coroutine
from typing import Any, Protocol

import websockets
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential
from websockets.asyncio.client import ClientConnection, connect

from ..errors import IceServersUnavailable, P2PRPCError, TrackerFailure, TrackerProtocolError
from ..swarm.connectivity import TrackerState
from ..swarm.pool import OfferPool, UnusableSDP
from ..wire.restart import RestartError
from ..wire.secret import SealError
from ..wire.tracker import (
    Announce,
    AnnounceReply,
    Answer,
    AnswerRelay,
    FailureReply,
    OfferPayload,
    OfferRelay,
    ScrapeReply,
    encode_client_message,
    parse_server_message,
)

logger = logging.getLogger(__name__)

#: P2PT asks for 50 peers; bittorrent-tracker's client caps the offers of one announce at 5.
NUMWANT = 50
MAX_OFFERS = 5
#: bittorrent-tracker's client drops offers nobody answered after 50 s.
OFFER_TIMEOUT = 50.0
#: A connection we answered that has not opened this many seconds later is closed: ICE and DTLS
#: take a few round trips (seconds through TURN); one that cannot open (an offer played back by
#: someone who will never take the answer) must not hold its place for the offer's 50 s.
ANSWER_TIMEOUT = 15.0
#: Until the tracker says otherwise, re-announce this often (bittorrent-tracker's default).
DEFAULT_INTERVAL = 30.0
#: A longer interval from a tracker is read as this many seconds (a JSON number can have any
#: number of digits, more than a float holds).
MAX_INTERVAL = 86400.0


def describe_error(error: BaseException, url: str) -> str:
    """What went wrong connecting to ``url``, never empty: the error's text, or its kind when it
    has none (a reset connection), with a hint when a ``wss://`` URL met a tracker without TLS."""
    text = str(error) or type(error).__name__
    if url.startswith("wss://") and isinstance(error, ConnectionResetError | ssl.SSLError):
        text += " (the tracker may not speak TLS: is it ws://?)"
    return text


class Swarm(Protocol):
    """What a tracker client needs from the swarm it serves (the P2PT instance)."""

    @property
    def info_hash(self) -> bytes: ...
    @property
    def peer_id_bytes(self) -> bytes: ...
    @property
    def pool(self) -> OfferPool:
        """Where offers are made, answered and accepted, sealed as the swarm seals them."""
        ...

    def offers_wanted(self, tracker: TrackerClient, most: int, *, requested: bool = False) -> int:
        """How many offers to announce to ``tracker`` with, at most ``most``: the swarm may be
        at its bound on peers, or make no more than its :attr:`~TrackerClient.counted` peers
        not connected yet. ``requested``: the announce was asked for (:meth:`announce`)."""
        ...

    def hungry(self) -> bool:
        """Whether to announce again soon rather than at the tracker's interval."""
        ...

    def tracker_update(self, tracker: TrackerClient, reply: AnnounceReply) -> None: ...

    def tracker_warning(self, tracker: TrackerClient, error: Exception) -> None: ...

    async def restart_signal(self, from_id: bytes, offer_id: bytes, text: str) -> bool:
        """An answer for no offer of ours: an ICE restart message (true) or not (false);
        :class:`~p2prpc.wire.restart.RestartError` for one refused."""
        ...


class TrackerDisconnected(P2PRPCError, ConnectionError):
    """The tracker could not be reached, or its connection dropped."""


#: Seconds a tracker has to answer a :meth:`TrackerClient.probe` before its socket is dropped.
PROBE_TIMEOUT = 5.0


class TrackerClient:
    """A connection to one announce URL, serving one swarm: one of its signalling paths
    (:class:`~p2prpc.swarm.pool.SignallingPath`).

    Each announce carries up to ``max_offers`` (5) fresh offers, as many as the swarm wants
    (:meth:`Swarm.offers_wanted`: with a TURN server, no more than it has peers to take them,
    :attr:`counted` less those connected, and none in the first announce of each connection to
    the tracker, answered at once by one with the offers then wanted); unanswered ones expire
    after ``offer_timeout`` (50 s) and at most ``max_outstanding_offers`` (default twice
    ``max_offers``) are kept: an announce first closes the oldest beyond that
    (:attr:`outstanding_offers`).
    A connection whose answer we took is closed unless it opens within ``connect_timeout``
    seconds (50), one we answered within ``answer_timeout`` (15).

    :attr:`state` says where it stands for finding peers (:class:`TrackerState`), since
    :attr:`since`; :attr:`problem` why it failed. Each change to or from FAILED is logged once
    (WARNING when it fails, INFO when it answers again), not at every reconnection attempt.
    """

    def __init__(
        self,
        announce_url: str,
        swarm: Swarm,
        *,
        numwant: int = NUMWANT,
        max_offers: int = MAX_OFFERS,
        offer_timeout: float = OFFER_TIMEOUT,
        connect_timeout: float = OFFER_TIMEOUT,
        answer_timeout: float = ANSWER_TIMEOUT,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 60.0,
        max_message_size: int = 1024 * 1024,
        open_timeout: float = 10.0,
        hungry_interval: float = 3.0,
        max_outstanding_offers: int | None = None,
    ) -> None:
        self.announce_url = announce_url
        self.swarm = swarm
        self.numwant = numwant
        self.max_offers = max_offers
        self.offer_timeout = offer_timeout
        self.connect_timeout = connect_timeout
        self.answer_timeout = answer_timeout
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self.max_message_size = max_message_size
        self.open_timeout = open_timeout
        self.hungry_interval = hungry_interval
        self.max_outstanding_offers = (
            2 * max_offers if max_outstanding_offers is None else max_outstanding_offers
        )
        if self.max_outstanding_offers < max_offers:
            raise ValueError("max_outstanding_offers must be at least max_offers")
        self.interval = DEFAULT_INTERVAL
        self.tracker_id: str | None = None
        #: Other peers the tracker's latest answer in this connection counted in the swarm: 0
        #: until it answers, ``None`` when its answers count none (then offers are made as if
        #: every peer could take one).
        self.counted: int | None = 0
        self._uncounted = False  # the first announce of a connection went out; no answer yet
        # What the latest announce was made with: the count it knew, the offers it carried,
        # and whether it may be followed up (the first of a connection, or one asked for).
        self._announced: tuple[int | None, int, bool] = (0, 0, False)
        self._ws: ClientConnection | None = None
        self._announce_wanted = False
        self._requested = False  # the announce wanted was asked for (announce())
        self._wake = asyncio.Event()  # an announce is wanted, or the interval changed
        self._run_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Where it stands for finding peers, since when (``time.monotonic()``), and why it
        #: failed (a sentence naming the tracker; ``None`` unless FAILED).
        self.state = TrackerState.CONNECTING
        self.since = time.monotonic()
        self.problem: str | None = None
        #: Other peers the first answer since it (re)connected counted in the swarm, and
        #: whether the swarm has been connected to that many at once since (set by the swarm).
        self.others = 0
        self.met = False
        self._failure_logged = False
        self._probing = False

    @property
    def origin(self) -> str:
        """What the connections this path makes are labelled with: its announce URL."""
        return self.announce_url

    @property
    def outstanding_offers(self) -> int:
        """How many of our offers await an answer now (at most ``max_outstanding_offers``)."""
        return self.swarm.pool.count(self.announce_url)

    @property
    def connected(self) -> bool:
        """Whether the WebSocket to the tracker is open now."""
        ws = self._ws
        return ws is not None and ws.state is websockets.State.OPEN

    def start(self) -> None:
        """Connect (in the background) and announce; reconnects until :meth:`close`."""
        if self._run_task is None and not self._closed:
            self.since = time.monotonic()
            self._run_task = asyncio.get_running_loop().create_task(self._run())

    def announce(self) -> None:
        """Ask for an announce now (with fresh offers), as ``requestMorePeers`` does."""
        self._requested = True
        self._announce_again()

    def _announce_again(self) -> None:
        self._announce_wanted = True
        self._wake.set()

    async def close(self) -> None:
        """Stop: send ``stopped`` if connected, close the socket and every unanswered offer."""
        if self._closed:
            return
        self._closed = True
        ws = self._ws
        if ws is not None and ws.state is websockets.State.OPEN:
            stopped = Announce(
                info_hash=self.swarm.info_hash,
                peer_id=self.swarm.peer_id_bytes,
                numwant=0,
                event="stopped",
                trackerid=self.tracker_id,
            )
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(encode_client_message(stopped))
        tasks = [t for t in (self._run_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if ws is not None:
            await ws.close()
        await asyncio.gather(*(c.wait_closed() for c in self.swarm.pool.close(self.announce_url)))

    # -- connection ---------------------------------------------------------------------------

    async def _run(self) -> None:
        retrying = AsyncRetrying(
            wait=wait_random_exponential(multiplier=self.reconnect_initial, max=self.reconnect_max),
            retry=retry_if_exception_type(TrackerDisconnected),
            before_sleep=self._before_reconnect,
        )
        while not self._closed:
            # Each connection that got through starts a fresh backoff when it drops.
            async for attempt in retrying:
                with attempt:
                    ws = await self._connect()
            await self._session(ws)
            # Not at once after a drop: a restarting tracker is not hit by every peer together.
            await asyncio.sleep(random.uniform(0, self.reconnect_initial))

    def _before_reconnect(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, Exception):
            cause = error.__cause__ if error.__cause__ is not None else error
            why = describe_error(cause, self.announce_url)
            self._fail(f"tracker {self.announce_url} unreachable: {why}")
            self.swarm.tracker_warning(self, error)

    def _enter(self, state: TrackerState, problem: str | None = None) -> None:
        """Move to ``state``. A failure is logged once (not at every retry), and so is the
        first answer after it."""
        if state is TrackerState.FAILED and not self._failure_logged:
            logger.warning("%s (retrying in the background)", problem)
            self._failure_logged = True
        elif state is TrackerState.ANSWERED and self._failure_logged:
            logger.info("tracker %s answers again", self.announce_url)
            self._failure_logged = False
        if state is not self.state:
            self.since = time.monotonic()
        self.state = state
        self.problem = problem

    def _fail(self, problem: str) -> None:
        self._enter(TrackerState.FAILED, problem)

    async def _connect(self) -> ClientConnection:
        try:
            return await connect(
                self.announce_url,
                max_size=self.max_message_size,
                open_timeout=self.open_timeout,
                compression=None,
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as e:
            raise TrackerDisconnected(
                f"cannot connect to {self.announce_url}: {describe_error(e, self.announce_url)}"
            ) from e

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.counted = 0  # until the tracker says: the swarm it knows may have changed
        self._uncounted = True
        if self.state is not TrackerState.CONNECTING:  # its first answer is awaited anew
            self._enter(TrackerState.CONNECTING)
        announcer = asyncio.get_running_loop().create_task(self._announce_loop(ws))
        try:
            async for data in ws:
                self._on_data(data)
        except websockets.ConnectionClosed:
            pass
        finally:
            announcer.cancel()
            await asyncio.gather(announcer, return_exceptions=True)
            self._ws = None
        if not self._closed:
            if self.state is not TrackerState.FAILED:
                logger.info("tracker %s closed the connection: reconnecting", self.announce_url)
                self._enter(TrackerState.CONNECTING)
            self.swarm.tracker_warning(
                self, TrackerDisconnected(f"connection to {self.announce_url} closed")
            )

    async def _announce_loop(self, ws: ClientConnection) -> None:
        """Announce on every (re)connect, on request, and at the interval since the last one:
        the tracker's, once it said (as bittorrent-tracker re-arms its timer), or every few
        seconds while the swarm is hungry."""
        loop = asyncio.get_running_loop()
        self._announce_wanted = True
        last = loop.time()
        jitter = 1.0
        while True:
            if not self._announce_wanted:
                wait = self.interval
                if self.swarm.hungry():  # too few peers, more are there: ask again soon
                    wait = min(wait, jitter * self.hungry_interval)
                remaining = last + wait - loop.time()
                if remaining > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), remaining)
                    continue  # an announce asked for, a new interval, or the time came
            self._announce_wanted = False
            last = loop.time()
            jitter = random.uniform(0.5, 1.0)
            await self._announce(ws)

    async def _announce(self, ws: ClientConnection) -> None:
        requested, self._requested = self._requested, False
        counted = self.counted
        count = self.swarm.offers_wanted(
            self, min(self.numwant, self.max_offers), requested=requested
        )
        pool = self.swarm.pool
        pool.retire(self.announce_url, self.max_outstanding_offers - count)
        made = await asyncio.gather(
            *(pool.make(self) for _ in range(count)), return_exceptions=True
        )
        failed = None
        for result in made:
            if isinstance(result, IceServersUnavailable):
                failed = result  # no offer without ICE servers: told once per announce
            elif isinstance(result, Exception):
                # Anything else that stops an offer being made (the transport refusing the
                # options) stops every announce: say so where calls and the log look, and try
                # again at the next announce, rather than end this loop without a word.
                self._cannot_connect("an offer", result)
                return
            elif isinstance(result, BaseException):
                raise result
        if failed is not None:
            self.swarm.tracker_warning(self, failed)
        offers = tuple(OfferPayload(offer_id=o[0], sdp=o[1]) for o in made if isinstance(o, tuple))
        self._announced = (counted, len(offers), requested or self._uncounted)
        message = Announce(
            info_hash=self.swarm.info_hash,
            peer_id=self.swarm.peer_id_bytes,
            numwant=len(offers),
            offers=offers,
            trackerid=self.tracker_id,
        )
        # When the connection is gone, the session ends and reconnects; these offers expire.
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(encode_client_message(message))

    # -- messages from the tracker ------------------------------------------------------------

    def _on_data(self, data: str | bytes) -> None:
        try:
            messages = parse_server_message(data)
        except TrackerProtocolError as e:
            self.swarm.tracker_warning(self, e)
            return
        for message in messages:
            if message_info_hash(message) not in (None, self.swarm.info_hash):
                continue  # another swarm's (a shared socket, as JavaScript clients pool them)
            if isinstance(message, FailureReply):
                self._fail(f"tracker {self.announce_url} refused the announce: {message.reason}")
                self.swarm.tracker_warning(self, TrackerFailure(message.reason))
                return
            if isinstance(message, AnnounceReply):
                self._on_announce_reply(message)
            elif isinstance(message, OfferRelay) and message.peer_id != self.swarm.peer_id_bytes:
                self._spawn(self._answer(message))
            elif isinstance(message, AnswerRelay) and message.peer_id != self.swarm.peer_id_bytes:
                self._spawn(self._accept_answer(message))

    def _on_announce_reply(self, reply: AnnounceReply) -> None:
        if reply.warning:
            self.swarm.tracker_warning(self, TrackerFailure(reply.warning))
        if reply.interval:
            interval = float(min(reply.interval, MAX_INTERVAL))
            if interval != self.interval:
                self.interval = interval
                self._wake.set()  # the timer runs on the new interval from the last announce
        if reply.tracker_id:
            self.tracker_id = reply.tracker_id
        counts = reply.complete is not None or reply.incomplete is not None
        if counts:
            self.counted = max((reply.complete or 0) + (reply.incomplete or 0) - 1, 0)
        elif self._uncounted:
            self.counted = None  # a tracker that counts nothing: offers as if all could take one
        self._uncounted = False
        # The first announce of a connection knew no count, and one asked for may have known
        # an old one: made for fewer peers than this answer counts, it may have carried fewer
        # offers than are wanted now, so announce again with them, once (with the same count,
        # later answers wait their turn). Those at the interval are not followed up: peers new
        # to the swarm offer to those there, who would otherwise offer back at the same time.
        before, carried, eligible = self._announced
        after = self.counted
        rose = before is not None and (after is None or after > before)
        wanted = self.swarm.offers_wanted(self, min(self.numwant, self.max_offers))
        if eligible and rose and wanted > carried:
            self._announce_again()
        if reply.complete is not None:
            if self.state is not TrackerState.ANSWERED:  # the first answer of this session
                self.others = max((reply.complete or 0) + (reply.incomplete or 0) - 1, 0)
                self.met = False
                self._enter(TrackerState.ANSWERED)
            self.swarm.tracker_update(self, reply)

    def _cannot_connect(self, what: str, error: Exception) -> None:
        """Making ``what`` failed for ``error``, which is no peer's doing (the transport refused
        this swarm's options): the tracker fails with it, for the log and calls to say."""
        problem = f"tracker {self.announce_url}: cannot make {what}: {error!r}"
        if not self._failure_logged:  # once, with where it came from
            logger.warning("%s (retrying in the background)", problem, exc_info=error)
            self._failure_logged = True
        self._fail(problem)
        self.swarm.tracker_warning(self, error)

    async def _answer(self, relay: OfferRelay) -> None:
        try:
            answered = await self.swarm.pool.answer(
                self, relay.peer_id.hex(), relay.offer_id, relay.sdp
            )
        except SealError as e:  # never answered: the offer may come from anyone but the swarm
            self.swarm.tracker_warning(self, e)
            return
        except UnusableSDP as e:
            self.swarm.tracker_warning(self, TrackerProtocolError(str(e)))
            return
        except IceServersUnavailable as e:  # not answered: the offerer's offer expires
            self.swarm.tracker_warning(self, e)
            return
        except Exception as e:
            self._cannot_connect("an answer", e)
            return
        if answered is None:
            return
        text, connection = answered
        ws = self._ws
        if ws is None:
            connection.close()
            return
        answer = Answer(
            info_hash=self.swarm.info_hash,
            peer_id=self.swarm.peer_id_bytes,
            to_peer_id=relay.peer_id,
            offer_id=relay.offer_id,
            sdp=text,
            trackerid=self.tracker_id,
        )
        try:
            await ws.send(encode_client_message(answer))
        except websockets.ConnectionClosed:
            connection.close()

    def probe(self, timeout: float = PROBE_TIMEOUT) -> None:
        """Check that the tracker still answers on this socket (a WebSocket ping): one that
        does not within ``timeout`` seconds is dropped and reconnected at once (the network
        under it changed: an address went away, a link was down). A socket's own pings notice
        that only after 20 + 20 s."""
        ws = self._ws
        if ws is None or self._probing:
            return
        self._probing = True
        self._spawn(self._probe(ws, timeout))

    async def _probe(self, ws: ClientConnection, timeout: float) -> None:
        try:
            pong = await ws.ping()
            await asyncio.wait_for(pong, timeout)
        except TimeoutError:
            logger.info("tracker %s did not answer a ping in %g s: reconnecting",
                        self.announce_url, timeout)  # fmt: skip
            ws.transport.abort()
        except websockets.ConnectionClosed:
            pass
        finally:
            self._probing = False

    def send_answer(self, to_peer_id: bytes, offer_id: bytes, text: str) -> bool:
        """Send an ``answer`` to ``to_peer_id`` on ``offer_id`` (whatever its offer: trackers
        relay it by ``to_peer_id``; ICE restarts travel so); false when not connected."""
        ws = self._ws
        if ws is None or ws.state is not websockets.State.OPEN:
            return False
        answer = Answer(
            info_hash=self.swarm.info_hash,
            peer_id=self.swarm.peer_id_bytes,
            to_peer_id=to_peer_id,
            offer_id=offer_id,
            sdp=text,
            trackerid=self.tracker_id,
        )
        self._spawn(self._send(ws, encode_client_message(answer)))
        return True

    async def _send(self, ws: ClientConnection, text: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(text)

    async def _accept_answer(self, relay: AnswerRelay) -> None:
        if self.swarm.pool.waiting(relay.offer_id) is None:
            try:
                if not await self.swarm.restart_signal(relay.peer_id, relay.offer_id, relay.sdp):
                    logger.debug("answer for unknown offer %s", relay.offer_id.hex())
            except RestartError as e:  # forged, altered, played back: refused and counted
                self.swarm.tracker_warning(self, e)
            return
        try:
            await self.swarm.pool.accept(relay.peer_id.hex(), relay.offer_id, relay.sdp)
        except SealError as e:  # the offer stays open for the answer of a peer of the swarm
            self.swarm.tracker_warning(self, e)
        except UnusableSDP as e:
            self.swarm.tracker_warning(self, TrackerProtocolError(str(e)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def message_info_hash(message: object) -> bytes | None:
    """The info_hash a tracker message is about, if it names one."""
    if isinstance(message, ScrapeReply):
        return None
    value = getattr(message, "info_hash", None)
    return value if isinstance(value, bytes) else None
