"""The embedded WebTorrent tracker (``p2prpc tracker``), a stand-in for bittorrent-tracker 11.

It serves bittorrent-tracker's WebSocket client unchanged, and so JavaScript P2PT and p2prpc's own
tracker client: peers announce into swarms keyed by info_hash, the tracker relays each offer of an
announce to a different random peer of the swarm and routes answers back to the offerer by peer id.
It keeps no state beyond the swarms in memory, and nothing a client sends can stop it: a malformed
or refused request gets a ``failure reason`` reply and the connection stays up.

The module has two halves. :class:`Swarms` is the tracker's state and rules with no I/O: messages
in, messages out, time passed in explicitly, so it can be tested deterministically. Its caps keep
memory bounded whatever clients send. :class:`TrackerServer` moves JSON between WebSockets and
:class:`Swarms`, with one bounded send queue per socket so that a peer that does not read cannot
stall the others.

Where bittorrent-tracker is loose, this tracker is stricter without changing the wire:

- a refusal always names its action (and info_hash when known); bittorrent-tracker's refusal of an
  unparsable request has no action, which makes its own JavaScript client drop the socket;
- a peer is identified by (info_hash, peer_id) and belongs to the socket that last announced it;
  ``stopped`` from another socket does not remove it; a closed socket removes all its peers;
- empty swarms are forgotten; an answer refreshes its sender but does not add it to the swarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Generic, Self, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from ..errors import TrackerRequestError
from ..wire.tracker import (
    Announce,
    AnnounceReply,
    Answer,
    AnswerRelay,
    ClientMessage,
    FailureReply,
    OfferRelay,
    Scrape,
    ScrapeFile,
    ScrapeReply,
    ServerMessage,
    encode_server_message,
    parse_client_message,
)

if sys.platform != "win32":
    import resource

__all__ = ["ServerStats", "Swarms", "TrackerServer", "nofile_limit"]

logger = logging.getLogger("p2prpc.tracker.server")

C = TypeVar("C", bound=Hashable)

#: Default caps; see :class:`TrackerServer` for what each bounds.
DEFAULT_INTERVAL = 120.0
DEFAULT_MAX_MESSAGE_SIZE = 128 * 1024
DEFAULT_MAX_SWARMS = 10_000
DEFAULT_MAX_PEERS_PER_SWARM = 1_000
DEFAULT_MAX_OFFERS = 10
DEFAULT_MAX_INFO_HASHES_PER_SOCKET = 32
DEFAULT_MAX_SEND_QUEUE = 256
DEFAULT_MAX_SEND_BYTES = 2**20
#: Seconds a socket closed for not reading has to answer the close before it is dropped.
SLOW_CLOSE_TIMEOUT = 1.0
DEFAULT_OFFER_RATE = 10.0
DEFAULT_OFFER_BURST = 100
#: The most swarms a scrape that names none (bittorrent-tracker's "all") lists.
MAX_SCRAPE_ALL = 64
DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_MAX_CONNECTIONS_PER_IP = 256
#: File descriptors left for the rest of the process when the socket cap is fitted to its limit.
DEFAULT_RESERVED_FDS = 128
#: Seconds a new socket has to send its first request.
DEFAULT_HELLO_TIMEOUT = 30.0
#: Per-source caps default to this fraction of the global cap: filling a table takes this many
#: addresses.
SOURCE_SHARE = 16


@dataclass(frozen=True, slots=True)
class ServerStats:
    """How much the tracker holds now: swarms, peers over all swarms, open sockets."""

    swarms: int
    peers: int
    sockets: int


class _Peer(Generic[C]):
    __slots__ = ("complete", "conn", "last_seen", "peer_id")

    def __init__(self, peer_id: bytes, conn: C, last_seen: float) -> None:
        self.peer_id = peer_id
        self.conn = conn
        self.complete = False
        self.last_seen = last_seen


class _Swarm(Generic[C]):
    __slots__ = ("complete", "peers")

    def __init__(self) -> None:
        self.peers: dict[bytes, _Peer[C]] = {}
        self.complete = 0  # seeders; the rest of the peers are leechers

    @property
    def incomplete(self) -> int:
        return len(self.peers) - self.complete


class Swarms(Generic[C]):
    """The tracker's state and rules, with no I/O.

    ``C`` identifies a connection (any hashable; the server uses its connection objects), and
    ``source(conn)`` the party behind it (the server uses the IP address; by default each
    connection is its own source). The caps hold per source as well as in all, so that a few
    sources cannot fill the tracker for everyone: ``max_swarms_per_source`` (default
    ``max_swarms // 16``, at least 1) bounds the swarms a source's peers are in, and
    ``max_peers_per_source_per_swarm`` (default ``max_peers_per_swarm // 16``, at least 1) its
    peers in one swarm. A request past a cap is refused with a :class:`FailureReply`.
    :meth:`receive` takes a parsed request and returns the messages to send, each with the
    connection to send it on, in order. Refusals come back as :class:`FailureReply` messages.
    Times are seconds on any monotonic clock, passed in so that tests need not wait.

    Offers relayed for one connection are rate-limited (a token bucket: ``offer_burst`` at once,
    ``offer_rate`` a second after that); offers beyond are not relayed and the announce reply
    says so in its ``warning message``, so that one socket cannot flood a swarm with offers.

    Invariant: a peer is in ``_recency`` exactly when it is in its swarm's ``peers`` and in its
    connection's membership, and ``_recency`` is ordered by ``last_seen``.
    """

    def __init__(
        self,
        *,
        interval: float = DEFAULT_INTERVAL,
        peer_timeout: float | None = None,
        max_swarms: int = DEFAULT_MAX_SWARMS,
        max_peers_per_swarm: int = DEFAULT_MAX_PEERS_PER_SWARM,
        max_info_hashes_per_socket: int = DEFAULT_MAX_INFO_HASHES_PER_SOCKET,
        offer_rate: float = DEFAULT_OFFER_RATE,
        offer_burst: int = DEFAULT_OFFER_BURST,
        max_swarms_per_source: int | None = None,
        max_peers_per_source_per_swarm: int | None = None,
        source: Callable[[C], Hashable] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        _require_positive(interval=interval)
        self.interval = math.ceil(interval)
        self.peer_timeout = 3 * interval if peer_timeout is None else peer_timeout
        _require_positive(peer_timeout=self.peer_timeout)
        _require_positive(
            max_swarms=max_swarms,
            max_peers_per_swarm=max_peers_per_swarm,
            max_info_hashes_per_socket=max_info_hashes_per_socket,
        )
        _require_positive(offer_rate=offer_rate, offer_burst=offer_burst)
        self.max_swarms = max_swarms
        self.max_peers_per_swarm = max_peers_per_swarm
        self.max_info_hashes_per_socket = max_info_hashes_per_socket
        self.max_swarms_per_source = _share(max_swarms, max_swarms_per_source)
        self.max_peers_per_source_per_swarm = _share(
            max_peers_per_swarm, max_peers_per_source_per_swarm
        )
        _require_positive(
            max_swarms_per_source=self.max_swarms_per_source,
            max_peers_per_source_per_swarm=self.max_peers_per_source_per_swarm,
        )
        self._source: Callable[[C], Hashable] = source or _itself
        # source -> info_hash -> how many of the source's peers are in that swarm
        self._by_source: dict[Hashable, Counter[bytes]] = {}
        self.offer_rate = offer_rate
        self.offer_burst = offer_burst
        # connection -> (offers it may still have relayed, when that was counted)
        self._offer_tokens: dict[C, tuple[float, float]] = {}
        self._rng = rng or random.Random()
        self._swarms: dict[bytes, _Swarm[C]] = {}
        # connection -> info_hash -> peer ids it announced there
        self._members: dict[C, dict[bytes, set[bytes]]] = {}
        self._recency: OrderedDict[tuple[bytes, bytes], _Peer[C]] = OrderedDict()

    # -- queries ----------------------------------------------------------------------------

    def counts(self, info_hash: bytes) -> tuple[int, int]:
        """(complete, incomplete) of a swarm; (0, 0) for one the tracker does not know."""
        swarm = self._swarms.get(info_hash)
        return (0, 0) if swarm is None else (swarm.complete, swarm.incomplete)

    def stats(self, sockets: int = 0) -> ServerStats:
        """Swarm and peer totals (``sockets`` is passed through: connections are the caller's)."""
        return ServerStats(len(self._swarms), len(self._recency), sockets)

    # -- events -----------------------------------------------------------------------------

    def receive(self, conn: C, message: ClientMessage, now: float) -> list[tuple[C, ServerMessage]]:
        """Apply one request from ``conn``; the messages to send in answer, in order."""
        try:
            if isinstance(message, Announce):
                return self._announce(conn, message, now)
            if isinstance(message, Answer):
                return self._answer(conn, message, now)
            return [(conn, self._scrape(conn, message, now))]
        except TrackerRequestError as e:
            return [(conn, FailureReply(e.reason, e.info_hash, e.action))]

    def disconnect(self, conn: C) -> None:
        """``conn`` closed: remove every peer it announced, from every swarm."""
        self._offer_tokens.pop(conn, None)
        members = self._members.pop(conn, {})
        for info_hash, peer_ids in members.items():
            for peer_id in peer_ids:
                peer = self._peer(info_hash, peer_id)
                if peer is not None and peer.conn == conn:
                    self._drop(info_hash, peer_id, members=None)

    def expire(self, now: float) -> int:
        """Drop the peers not heard from for ``peer_timeout`` seconds; how many were dropped."""
        deadline = now - self.peer_timeout
        dropped = 0
        while self._recency:
            (info_hash, peer_id), peer = next(iter(self._recency.items()))
            if peer.last_seen > deadline:
                break
            self._drop(info_hash, peer_id, members=self._members.get(peer.conn))
            dropped += 1
        return dropped

    # -- rules ------------------------------------------------------------------------------

    def _announce(self, conn: C, m: Announce, now: float) -> list[tuple[C, ServerMessage]]:
        if m.event == "stopped":
            peer = self._peer(m.info_hash, m.peer_id)
            if peer is not None and peer.conn == conn:
                self._drop(m.info_hash, m.peer_id, members=self._members.get(conn))
            return [(conn, self._reply(m.info_hash))]

        peer = self._join(conn, m.info_hash, m.peer_id, now)
        if (m.left == 0 or m.event == "completed") and not peer.complete:
            peer.complete = True
            self._swarms[m.info_hash].complete += 1
        wanted = min(len(m.offers), m.numwant)
        relays: list[tuple[C, ServerMessage]] = []
        if wanted:
            others = [p for p in self._swarms[m.info_hash].peers.values() if p.peer_id != m.peer_id]
            chosen = self._rng.sample(others, min(wanted, len(others)))
            allowed = self._take_offers(conn, len(chosen), now)
            for offer, target in zip(m.offers, chosen[:allowed], strict=False):
                relay = OfferRelay(m.info_hash, m.peer_id, offer.offer_id, offer.sdp)
                relays.append((target.conn, relay))
            if allowed < len(chosen):
                warning = (
                    f"{len(chosen) - allowed} offers not relayed: at most {self.offer_burst} at "
                    f"once and {self.offer_rate:g} a second from one socket"
                )
                return [(conn, self._reply(m.info_hash, warning)), *relays]
        return [(conn, self._reply(m.info_hash)), *relays]

    def _take_offers(self, conn: C, wanted: int, now: float) -> int:
        """How many of ``wanted`` offers ``conn`` may have relayed now; those are counted."""
        tokens, then = self._offer_tokens.get(conn, (float(self.offer_burst), now))
        tokens = min(float(self.offer_burst), tokens + max(now - then, 0.0) * self.offer_rate)
        allowed = min(wanted, int(tokens))
        self._offer_tokens[conn] = (tokens - allowed, now)
        return allowed

    def _answer(self, conn: C, m: Answer, now: float) -> list[tuple[C, ServerMessage]]:
        sender = self._peer(m.info_hash, m.peer_id)
        if sender is not None and sender.conn == conn:
            self._touch(m.info_hash, sender, now)
        target = self._peer(m.info_hash, m.to_peer_id)
        if target is None:
            logger.debug("answer for %s, which is not in the swarm", m.to_peer_id.hex())
            return []
        return [(target.conn, AnswerRelay(m.info_hash, m.peer_id, m.offer_id, m.sdp))]

    def _scrape(self, conn: C, m: Scrape, now: float) -> ScrapeReply:
        """The counts of the swarms a scrape names, one entry per name it sent. One that names
        none lists at most :data:`MAX_SCRAPE_ALL` swarms, and takes one of the socket's offer
        tokens, so that a request of 20 bytes cannot make the tracker list, encode and send
        every swarm it holds, over and over."""
        hashes = m.info_hashes
        if not hashes:
            if not self._take_offers(conn, 1, now):
                raise TrackerRequestError(
                    f"at most {self.offer_burst} scrapes of every swarm at once and "
                    f"{self.offer_rate:g} a second from one socket",
                    action="scrape",
                )
            hashes = tuple(itertools.islice(self._swarms, MAX_SCRAPE_ALL))
        files = {}
        for info_hash in hashes:
            complete, incomplete = self.counts(info_hash)
            # bittorrent-tracker reports the seeders as a lower bound of the downloads.
            files[info_hash] = ScrapeFile(complete, incomplete, complete)
        return ScrapeReply(files, self.interval)

    def _reply(self, info_hash: bytes, warning: str | None = None) -> AnnounceReply:
        complete, incomplete = self.counts(info_hash)
        return AnnounceReply(info_hash, self.interval, complete, incomplete, warning)

    # -- state ------------------------------------------------------------------------------

    def _peer(self, info_hash: bytes, peer_id: bytes) -> _Peer[C] | None:
        swarm = self._swarms.get(info_hash)
        return None if swarm is None else swarm.peers.get(peer_id)

    def _join(self, conn: C, info_hash: bytes, peer_id: bytes, now: float) -> _Peer[C]:
        """The peer (info_hash, peer_id), created or moved to ``conn`` as needed, refreshed."""
        members = self._members.setdefault(conn, {})
        if info_hash not in members and len(members) >= self.max_info_hashes_per_socket:
            raise TrackerRequestError(
                f"too many swarms on one socket (at most {self.max_info_hashes_per_socket})",
                info_hash=info_hash,
            )
        swarm = self._swarms.get(info_hash)
        peer = None if swarm is None else swarm.peers.get(peer_id)
        source = self._source(conn)
        old_sources = () if peer is None else (self._source(peer.conn),)
        joins = old_sources != (source,)  # a peer new to this source
        if joins:
            held = self._by_source.get(source, Counter[bytes]())
            if info_hash not in held and len(held) >= self.max_swarms_per_source:
                raise TrackerRequestError(
                    f"too many swarms from one address (at most {self.max_swarms_per_source})",
                    info_hash=info_hash,
                )
            if held[info_hash] >= self.max_peers_per_source_per_swarm:
                raise TrackerRequestError(
                    "too many peers from one address in this swarm "
                    f"(at most {self.max_peers_per_source_per_swarm})",
                    info_hash=info_hash,
                )
        if swarm is None:
            if len(self._swarms) >= self.max_swarms:
                raise TrackerRequestError(
                    f"tracker is full (at most {self.max_swarms} swarms)", info_hash=info_hash
                )
            swarm = self._swarms[info_hash] = _Swarm()
        if peer is None:
            if len(swarm.peers) >= self.max_peers_per_swarm:
                raise TrackerRequestError(
                    f"swarm is full (at most {self.max_peers_per_swarm} peers)",
                    info_hash=info_hash,
                )
            peer = swarm.peers[peer_id] = _Peer(peer_id, conn, now)
        elif peer.conn != conn:
            # The peer reconnected (or its socket is shared now): it lives on the newest socket.
            old = self._members.get(peer.conn, {})
            _discard(old, info_hash, peer_id)
            peer.conn = conn
        if joins:
            for old_source in old_sources:
                self._count(old_source, info_hash, -1)
            self._count(source, info_hash, 1)
        members.setdefault(info_hash, set()).add(peer_id)
        self._touch(info_hash, peer, now)
        return peer

    def _touch(self, info_hash: bytes, peer: _Peer[C], now: float) -> None:
        peer.last_seen = max(now, peer.last_seen)
        key = (info_hash, peer.peer_id)
        self._recency[key] = peer
        self._recency.move_to_end(key)

    def _drop(
        self, info_hash: bytes, peer_id: bytes, *, members: dict[bytes, set[bytes]] | None
    ) -> None:
        """Remove a peer from its swarm (and from ``members``, its connection's membership)."""
        swarm = self._swarms.get(info_hash)
        peer = None if swarm is None else swarm.peers.pop(peer_id, None)
        if swarm is None or peer is None:
            return
        if peer.complete:
            swarm.complete -= 1
        if not swarm.peers:
            del self._swarms[info_hash]
        self._recency.pop((info_hash, peer_id), None)
        self._count(self._source(peer.conn), info_hash, -1)
        if members is not None:
            _discard(members, info_hash, peer_id)

    def _count(self, source: Hashable, info_hash: bytes, delta: int) -> None:
        """Add ``delta`` to the peers ``source`` has in the swarm ``info_hash``."""
        held = self._by_source.setdefault(source, Counter())
        held[info_hash] += delta
        if held[info_hash] <= 0:
            del held[info_hash]
            if not held:
                del self._by_source[source]


def _itself(conn: Hashable) -> Hashable:
    return conn


def _share(total: int, given: int | None) -> int:
    """A per-source cap: ``given``, or by default 1/:data:`SOURCE_SHARE` of ``total``."""
    return max(1, total // SOURCE_SHARE) if given is None else given


def _discard(members: dict[bytes, set[bytes]], info_hash: bytes, peer_id: bytes) -> None:
    peer_ids = members.get(info_hash)
    if peer_ids is not None:
        peer_ids.discard(peer_id)
        if not peer_ids:
            del members[info_hash]


def _require_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")


class _Connection:
    """One client socket, its queue of frames to send and when it was last heard from."""

    __slots__ = (
        "closing",
        "greeted",
        "heard",
        "ip",
        "name",
        "queue",
        "queued_bytes",
        "ws",
    )

    def __init__(self, ws: ServerConnection, now: float) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue()  # bounded by TrackerServer._send
        self.queued_bytes = 0  # UTF-8 bytes of the frames in the queue
        self.closing = False
        self.greeted = False  # whether it has sent a valid request
        self.heard = now  # when it opened, then when it last sent a valid request
        address = ws.remote_address
        self.ip = _ip(ws)
        self.name = f"{address[0]}:{address[1]}" if address else "?"

    def unsent_bytes(self) -> int:
        """Bytes queued for this socket and not yet sent: ours and the transport's."""
        return self.queued_bytes + self.ws.transport.get_write_buffer_size()


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _source_ip(conn: _Connection) -> str:
    return conn.ip


def _ip(ws: ServerConnection) -> str:
    address = ws.remote_address
    return str(address[0]) if address else "?"


def nofile_limit() -> int | None:
    """The soft ``RLIMIT_NOFILE`` of this process: how many file descriptors it may hold open
    (``None`` where there is no such limit, or it is unlimited)."""
    if sys.platform == "win32":
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class TrackerServer:
    """A WebTorrent tracker on a WebSocket server: ``ws://host:port``.

    Every cap holds per source (IP address) as well as in all, so that a few addresses cannot
    take the tracker from everyone else, and the total of sockets fits in what the process may
    hold. Caps, each a keyword argument (the memory bound assumes every cap is reached):

    - ``max_connections`` (10 000), lowered to fit the process's file descriptors: at most
      ``fd_limit - reserved_fds`` sockets are held at once, handshakes included, where
      ``fd_limit`` defaults to the soft ``RLIMIT_NOFILE`` and ``reserved_fds`` (128) is left for
      the rest of the process; 1/16 of those are kept for handshakes in progress, and the rest
      bound the open WebSockets (:attr:`max_connections` holds the result: 840 at
      ``ulimit -n 1024``). ``max_connections_per_ip`` (default 1/16 of that, at most 256) bounds
      those of one IP address. A connection past either is refused during the opening handshake
      with HTTP 503 and the reason; a TCP connection past twice the per-address cap, or past
      every socket the tracker may hold, is reset as soon as it is accepted. A socket that does
      not finish its handshake within ``open_timeout`` (10 s) is dropped.
    - ``hello_timeout`` (30 s) and ``idle_timeout`` (default two intervals: 240 s): a socket that
      sends no valid request within ``hello_timeout`` of opening, or none for ``idle_timeout``
      after its last, is closed (code 1008). Clients announce at every interval.
    - ``max_message_size`` (128 KiB): the largest frame a client may send; a bigger one closes that
      socket with code 1009 (the WebSocket layer enforces it while reading the frame header, before
      the payload). bittorrent-tracker's client sends at most 5 offers of a few KiB each.
    - ``max_swarms`` (10 000) and ``max_peers_per_swarm`` (1 000): an announce that would exceed
      either is refused with a ``failure reason``. So is one past ``max_swarms_per_source``
      (default 1/16 of ``max_swarms``: 625) swarms that one IP address's peers are in, or past
      ``max_peers_per_source_per_swarm`` (default 1/16 of ``max_peers_per_swarm``: 62) peers of
      one IP address in one swarm: it takes 16 addresses to fill either table.
    - ``max_offers`` (10): an announce with more offers is refused (offers are relayed one per
      other peer, at most ``numwant`` of them).
    - ``offer_rate`` (10 a second) and ``offer_burst`` (100): offers relayed for one socket;
      past that they are not relayed and the announce reply carries a ``warning message``. A
      scrape naming no swarm takes one of the same tokens (past them: a ``failure reason``) and
      lists at most :data:`MAX_SCRAPE_ALL` (64) swarms.
    - ``max_info_hashes_per_socket`` (32): the swarms one socket may join (JavaScript clients share
      one socket per tracker URL between all their swarms).
    - ``max_send_bytes`` (1 MiB) and ``max_send_queue`` (256 frames): what may wait unsent for a
      socket, counting what the transport holds beyond the ``write_limit`` (32 KiB) of the
      WebSocket layer. A socket is closed as not reading (code 1013) and leaves its swarms when
      more than ``max_send_bytes`` would wait for it, or more than ``max_send_queue`` frames while
      its transport is full; a client that reads what it is sent is never closed so, however many
      requests it sends at once (requests are handled one at a time, letting replies go out in
      between). One that stops reading holds at most ``max_send_bytes + max_message_size``
      bytes (about 1.2 MiB at the defaults), for at most a second more (then its TCP connection
      is dropped).

    ``interval`` (120 s, bittorrent-tracker's WebSocket default) is the re-announce interval told
    to clients; peers not heard from for ``peer_timeout`` (default: three intervals) are dropped.

    Raises :class:`ValueError` for a cap that is not positive, or when ``fd_limit`` leaves no
    room for sockets after ``reserved_fds``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        interval: float = DEFAULT_INTERVAL,
        peer_timeout: float | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_swarms: int = DEFAULT_MAX_SWARMS,
        max_peers_per_swarm: int = DEFAULT_MAX_PEERS_PER_SWARM,
        max_offers: int = DEFAULT_MAX_OFFERS,
        offer_rate: float = DEFAULT_OFFER_RATE,
        offer_burst: int = DEFAULT_OFFER_BURST,
        max_info_hashes_per_socket: int = DEFAULT_MAX_INFO_HASHES_PER_SOCKET,
        max_swarms_per_source: int | None = None,
        max_peers_per_source_per_swarm: int | None = None,
        max_send_queue: int = DEFAULT_MAX_SEND_QUEUE,
        max_send_bytes: int = DEFAULT_MAX_SEND_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_ip: int | None = None,
        fd_limit: int | None = None,
        reserved_fds: int = DEFAULT_RESERVED_FDS,
        hello_timeout: float = DEFAULT_HELLO_TIMEOUT,
        idle_timeout: float | None = None,
        write_limit: int = 32 * 1024,
        open_timeout: float = 10.0,
        close_timeout: float = 10.0,
    ) -> None:
        _require_positive(
            max_message_size=max_message_size,
            max_offers=max_offers,
            max_send_queue=max_send_queue,
            max_send_bytes=max_send_bytes,
            max_connections=max_connections,
            reserved_fds=reserved_fds,
            hello_timeout=hello_timeout,
            write_limit=write_limit,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
        )
        self.host = host
        self.port = port
        self.max_message_size = max_message_size
        self.max_offers = max_offers
        self.max_send_queue = max_send_queue
        self.max_send_bytes = max_send_bytes
        self.fd_limit = nofile_limit() if fd_limit is None else fd_limit
        handshakes = max(1, max_connections // SOURCE_SHARE)
        budget = max_connections + handshakes
        if self.fd_limit is not None and self.fd_limit - reserved_fds < budget:
            budget = self.fd_limit - reserved_fds
            if budget < 2:
                raise ValueError(
                    f"a limit of {self.fd_limit} file descriptors leaves no room for sockets "
                    f"after the {reserved_fds} reserved for the rest of the process"
                )
            handshakes = max(1, budget // SOURCE_SHARE)
        #: Open WebSockets at once, and TCP sockets at once (those plus handshakes in progress).
        self.max_connections = budget - handshakes
        self.max_sockets = self.max_connections + handshakes
        self.max_connections_per_ip = (
            min(DEFAULT_MAX_CONNECTIONS_PER_IP, max(1, self.max_connections // SOURCE_SHARE))
            if max_connections_per_ip is None
            else max_connections_per_ip
        )
        self.idle_timeout = 2 * interval if idle_timeout is None else idle_timeout
        _require_positive(
            max_connections_per_ip=self.max_connections_per_ip, idle_timeout=self.idle_timeout
        )
        self.hello_timeout = hello_timeout
        self.write_limit = write_limit
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.swarms: Swarms[_Connection] = Swarms(
            interval=interval,
            peer_timeout=peer_timeout,
            max_swarms=max_swarms,
            max_peers_per_swarm=max_peers_per_swarm,
            max_info_hashes_per_socket=max_info_hashes_per_socket,
            offer_rate=offer_rate,
            offer_burst=offer_burst,
            max_swarms_per_source=max_swarms_per_source,
            max_peers_per_source_per_swarm=max_peers_per_source_per_swarm,
            source=_source_ip,
        )
        self._server: Server | None = None
        self._url: str | None = None
        self._connections: set[_Connection] = set()
        # Every TCP socket held, by IP, from its accept until it is lost; and those admitted
        # past their handshake's request.
        self._sockets: dict[ServerConnection, str] = {}
        self._sockets_per_ip: Counter[str] = Counter()
        self._admitted: dict[ServerConnection, str] = {}
        self._per_ip: Counter[str] = Counter()
        self._closing: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        self._changed = asyncio.Event()  # set, and replaced, whenever the state may have changed
        #: How many connections were refused for the caps (at the handshake or reset at once),
        #: sockets closed for not reading, and sockets closed for saying nothing.
        self.refused_connections = 0
        self.closed_slow = 0
        self.closed_idle = 0

    @property
    def url(self) -> str:
        """The announce URL ``ws://HOST:PORT`` with the port bound by :meth:`start`."""
        if self._url is None:
            raise RuntimeError("the tracker has not been started")
        return self._url

    def stats(self) -> ServerStats:
        """How many swarms, peers (over all swarms) and open sockets the tracker has now."""
        return self.swarms.stats(len(self._connections))

    async def wait_for(self, predicate: Callable[[ServerStats], bool]) -> ServerStats:
        """Wait until ``predicate(self.stats())`` holds, and return those stats.

        The predicate is checked again after every request, connection, disconnection and expiry,
        so a test or a harness can wait for "both peers announced" or "that socket is gone" without
        polling. Bound it with ``asyncio.timeout``.
        """
        while not predicate(stats := self.stats()):
            await self._changed.wait()
        return stats

    async def start(self) -> None:
        """Listen; :attr:`url` then holds the announce URL."""
        if self._server is not None or self._closed:
            raise RuntimeError("a tracker starts once")
        self._server = await serve(
            self._serve,
            self.host,
            self.port,
            create_connection=self._socket_class(),
            process_request=self._admit,
            max_size=self.max_message_size,
            write_limit=self.write_limit,
            open_timeout=self.open_timeout,
            close_timeout=self.close_timeout,
            compression=None,  # as bittorrent-tracker: no per-message deflate
        )
        port = self._server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._url = f"ws://{host}:{port}"
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        logger.info(
            "tracker listening on %s (at most %d sockets, %d from one address)",
            self._url,
            self.max_connections,
            self.max_connections_per_ip,
        )

    async def close(self) -> None:
        """Stop listening and close every socket; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            logger.info("tracker on %s closed", self._url)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- I/O --------------------------------------------------------------------------------

    def _socket_class(self) -> type[ServerConnection]:
        """The WebSocket connection class of this tracker: it counts its TCP sockets."""
        tracker = self

        class _Socket(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                tracker._accepted(self)

            def connection_lost(self, exc: Exception | None) -> None:
                super().connection_lost(exc)
                tracker._lost(self)

        return _Socket

    def _accepted(self, ws: ServerConnection) -> None:
        """A TCP connection was accepted: count it, or reset it at once past the socket caps."""
        ip = _ip(ws)
        if len(self._sockets) >= self.max_sockets:
            reason = f"at most {self.max_sockets} sockets"
        elif self._sockets_per_ip[ip] >= 2 * self.max_connections_per_ip:
            reason = f"at most {2 * self.max_connections_per_ip} sockets from {ip}"
        else:
            self._sockets[ws] = ip
            self._sockets_per_ip[ip] += 1
            return
        self.refused_connections += 1
        logger.warning("reset a connection from %s: %s", ip, reason)
        ws.transport.abort()

    def _lost(self, ws: ServerConnection) -> None:
        """A TCP connection is gone: it no longer counts against any cap."""
        _uncount(self._sockets, self._sockets_per_ip, ws)
        _uncount(self._admitted, self._per_ip, ws)  # when the handler never ran

    def _admit(self, ws: ServerConnection, request: Request) -> Response | None:
        """``process_request``: refuse a connection past ``max_connections`` or the per-IP cap."""
        ip = _ip(ws)
        if len(self._admitted) >= self.max_connections:
            reason = f"tracker is full (at most {self.max_connections} connections)"
        elif self._per_ip[ip] >= self.max_connections_per_ip:
            reason = f"too many connections from {ip} (at most {self.max_connections_per_ip})"
        elif ws not in self._sockets:
            reason = "connection already reset"  # past the socket caps at its accept
        else:
            self._admitted[ws] = ip
            self._per_ip[ip] += 1
            return None
        self.refused_connections += 1
        logger.warning("refused a connection: %s", reason)
        return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, reason + "\n")

    async def _serve(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        conn = _Connection(ws, loop.time())
        self._connections.add(conn)
        self._notify()
        writer = loop.create_task(self._write(conn))
        logger.debug("%s connected", conn.name)
        try:
            async for data in ws:
                self._receive(conn, data)
                # Requests a client sent at once arrive at once: let the replies to each go out
                # before handling the next, rather than queue them all.
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        finally:
            self.swarms.disconnect(conn)
            self._connections.discard(conn)
            # Its WebSocket is closed: it no longer counts as open, while its TCP socket counts
            # against the socket caps until it is lost.
            _uncount(self._admitted, self._per_ip, ws)
            self._notify()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            logger.debug("%s disconnected", conn.name)

    def _receive(self, conn: _Connection, data: str | bytes) -> None:
        try:
            self._handle(conn, data)
        finally:
            self._notify()

    def _handle(self, conn: _Connection, data: str | bytes) -> None:
        try:
            message = parse_client_message(data, max_offers=self.max_offers)
        except TrackerRequestError as e:
            logger.info("refused a request from %s: %s", conn.name, e.reason)
            self._send(conn, FailureReply(e.reason, e.info_hash, e.action))
            return
        now = asyncio.get_running_loop().time()
        conn.greeted = True
        conn.heard = now
        for target, reply in self.swarms.receive(conn, message, now):
            if isinstance(reply, FailureReply):
                logger.info("refused a request from %s: %s", conn.name, reply.reason)
            self._send(target, reply)

    def _send(self, conn: _Connection, message: ServerMessage) -> None:
        if conn.closing:
            return  # closed for not reading: nothing more is queued for it
        text = encode_server_message(message)
        size = _utf8_size(text)
        unsent = conn.unsent_bytes()
        transport_full = conn.ws.transport.get_write_buffer_size() >= self.write_limit
        if unsent + size > self.max_send_bytes or (
            transport_full and conn.queue.qsize() >= self.max_send_queue
        ):
            # Dropping frames would break the protocol in silence (a lost answer, a lost reply):
            # a socket that does not read is closed instead, and its peers leave the swarms.
            logger.warning(
                "%s does not read (%d frames queued, %d bytes unsent): closing it",
                conn.name,
                conn.queue.qsize(),
                unsent,
            )
            self.closed_slow += 1
            self._close(conn, CloseCode.TRY_AGAIN_LATER, "not reading")
            return
        conn.queue.put_nowait(text)
        conn.queued_bytes += size

    def _close(self, conn: _Connection, code: CloseCode, reason: str) -> None:
        """Close ``conn`` now: it leaves its swarms and nothing more is sent to it."""
        conn.closing = True
        self.swarms.disconnect(conn)
        task = asyncio.get_running_loop().create_task(self._close_or_drop(conn, code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._notify()

    async def _close_or_drop(self, conn: _Connection, code: CloseCode, reason: str) -> None:
        """Close a socket that may not read the close frame either (which may not even fit in its
        buffer): after :data:`SLOW_CLOSE_TIMEOUT` its TCP connection is dropped."""
        try:
            async with asyncio.timeout(min(self.close_timeout, SLOW_CLOSE_TIMEOUT)):
                await conn.ws.close(code, reason)
        except TimeoutError:
            conn.ws.transport.abort()

    async def _write(self, conn: _Connection) -> None:
        try:
            while True:
                text = await conn.queue.get()
                conn.queued_bytes -= _utf8_size(text)  # the transport's buffer holds it now
                await conn.ws.send(text)
        except ConnectionClosed:
            pass

    async def _sweep(self) -> None:
        period = min(
            max(self.swarms.peer_timeout / 4, 0.01),
            self.hello_timeout / 8,
            self.idle_timeout / 8,
            30.0,
        )
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            dropped = self.swarms.expire(now)
            if dropped:
                logger.debug("dropped %d peers that stopped announcing", dropped)
                self._notify()
            self._close_silent(now)

    def _close_silent(self, now: float) -> None:
        """Close the sockets that said nothing within ``hello_timeout`` of opening, or for
        ``idle_timeout``."""
        for conn in list(self._connections):
            if conn.closing:
                continue
            if not conn.greeted and now - conn.heard >= self.hello_timeout:
                reason = f"no request within {self.hello_timeout:g} s of opening"
            elif conn.greeted and now - conn.heard >= self.idle_timeout:
                reason = f"no request for {self.idle_timeout:g} s"
            else:
                continue
            logger.info("closing %s: %s", conn.name, reason)
            self.closed_idle += 1
            self._close(conn, CloseCode.POLICY_VIOLATION, reason)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _uncount(held: dict[ServerConnection, str], per_ip: Counter[str], ws: ServerConnection) -> None:
    ip = held.pop(ws, None)
    if ip is not None:
        per_ip[ip] -= 1
        if per_ip[ip] <= 0:
            del per_ip[ip]
