"""The P2PT port: a swarm of peers found through WebTorrent trackers, messages with send/respond.

Wire-compatible with P2PT 1.6.2 (``src/p2pt.js``): the same info_hash, peer ids, ``^``-prefixed JSON
frames chunked at 16000 characters, and message ids answered through the send/respond chain. The API
keeps P2PT's names and events; where P2PT is defective this port is correct without changing the
wire: reassembly is keyed by (peer, id) and bounded, a pending send fails when its peer goes away or
its timeout passes, and ``respond`` answers the message it was handed with, even when other messages
from the same peer arrive meanwhile.

Events (``p2pt.on(name, handler)``; handlers may be plain or async functions):

- ``peerconnect(peer)``: the first data channel to a new peer opened.
- ``data(peer, data)``: any data-channel message, raw, before decoding.
- ``msg(peer, msg)``: a whole message nobody was waiting for; ``peer.respond(...)`` answers it.
- ``peerclose(peer)``: the last data channel to a peer closed.
- ``peerkey(peer)``: a connection counted before any proof (open swarms) proved the key its
  peer id is bound to while other connections under that id proved nothing: what they brought
  is not this peer's, and whatever was said to the peer over them did not reach it.
- ``connectionopen(peer, connection)``: one more counted connection to a peer already connected
  (the first is ``peerconnect``); ``connection`` is its number (:attr:`Peer.connection`). The
  peer may count it as its first (it let the others go unseen by us).
- ``connectionclose(peer, connection)``: one counted connection to a peer closed (before
  ``peerclose`` when it was the last); ``connection`` is its number (:attr:`Peer.connection`).
  What was under way on that connection has ended, whatever other connections the peer keeps.
- ``trackerconnect(tracker, stats)``: a tracker answered an announce.
- ``trackerwarning(error, stats)``: a tracker could not be reached, dropped, failed or sent garbage.
- ``peerwarning(peer, error)``: a peer sent something malformed (it stays connected).
- ``peerrefused(peer_id, error)``: a connection was closed before ``peerconnect`` because the
  peer did not prove the swarm secret or an identity we accept (secret and identity modes).
- ``peerunreachable(peer_id, reason)``: a connection attempt to a peer not connected ended
  before it counted; ``reason`` (:class:`~p2prpc.swarm.attempt.Unreachable`) says how far it
  got, why it ended and what to do (``str(reason)``: "ICE found no working candidate pair (both
  behind NATs that map per destination?): add a TURN server"). Logged too, at WARNING, once per
  peer and reason every ``unreachable_log_interval`` seconds.
- ``offerfailed(peer_id, offer_id)``: an offer of ours from :meth:`P2PT.make_offer` ended without
  connecting: abandoned (:meth:`P2PT.abandon_offer`, or no answer in ``direct_offer_timeout``), its
  answer refused or unusable, or its connection closed before it counted (it never opened, or
  opened one peer past ``max_peers`` at either end). Whoever carries the offer learns at once
  that it is over, instead of waiting out its timeout.
- ``connectivity()``: what :meth:`P2PT.connectivity` reports may have changed: a tracker
  answered, failed or dropped, a connection began connecting or ended.
- ``morepeers()``: more peers are wanted (``request_more_peers``, or a peer left below the
  bound); a signalling path other than the trackers (the p2prpc mesh) may find them.
- ``destroy()``: ``destroy`` was called; nothing more will happen.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Hashable,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Final, TypedDict

from pyee.asyncio import AsyncIOEventEmitter

from .errors import (
    Destroyed,
    IceServersUnavailable,
    NothingToRespond,
    PeerClosed,
    RemoteProtocolError,
    ReplyTimeout,
    SendQueueFull,
    TooLargeForPeer,
)
from .swarm.attempt import Failure, Unreachable
from .swarm.connection import UNBOUNDED, Connection, ConnectionState
from .swarm.connectivity import Finding, SwarmConnectivity, TrackerState, assess
from .swarm.handshake import Admission, Handshake, admit
from .swarm.peers import PeerTable, RemotePeer, surplus_channel
from .swarm.pool import OfferPool, RelayPath, UnusableSDP
from .swarm.sealing import Signalling
from .tracker.client import ANSWER_TIMEOUT, TrackerClient
from .transport import (
    GATHER_TIMEOUT,
    ICE_RESTART_TIMEOUT,
    ICE_TIMEOUT,
    MAX_SEND_QUEUE,
    UDP_BUFFER_SIZE,
    IceTransportPolicy,
    RTCOptions,
    Transport,
    choose_transport,
)
from .transport import prepare as prepare_transport
from .transport.ice import (
    PROVIDER_TIMEOUT,
    IceServerLike,
    IceServers,
    ice_servers_from_environment,
)
from .wire.frames import (
    MAX_PARSED_SIZE,
    MAX_PEER_BYTES,
    MAX_TOTAL_BYTES,
    JSONValue,
    MessageExpired,
    Reassembler,
    decode_frame,
    encode_message,
    new_message_id,
)
from .wire.held import held_size
from .wire.restart import RestartError, decode_key, encode_key, is_restart
from .wire.restart import decode as decode_restart
from .wire.sealbox import SealKey, SealKeyPair
from .wire.secret import (
    AUTH_MAGIC,
    ID_NONCE_SIZE,
    SEAL_CLOCK_SKEW,
    SEAL_MAX_AGE,
    AuthError,
    SealError,
    bound_peer_id,
    derive_keys,
    is_auth_frame,
)
from .wire.tracker import AnnounceReply, info_hash_of

if TYPE_CHECKING:
    from .identity import Identity

#: Peers whose failed attempts are remembered at most (the oldest report is dropped first).
_MAX_UNREACHABLE = 256
#: Seconds a failed attempt's report is kept (:meth:`P2PT.unreachable`).
UNREACHABLE_AGE = 300.0

#: Default bytes of messages :meth:`P2PT.messages` holds for a reader that has not read them.
MESSAGES_MAX_BYTES = 16 * 2**20

_CARET = ord("^")  # every P2PT frame starts with it, as text or as UTF-8 bytes

logger = logging.getLogger(__name__)

__all__ = ["EVENTS", "P2PT", "Peer", "Reply", "SendQueueFull", "TrackerStats"]

#: The events a P2PT emits (this module's docstring says when, and with what).
EVENTS = frozenset(
    {
        "peerconnect",
        "data",
        "msg",
        "peerclose",
        "peerkey",
        "connectionopen",
        "connectionclose",
        "trackerconnect",
        "trackerwarning",
        "peerwarning",
        "peerrefused",
        "offerfailed",
        "connectivity",
        "morepeers",
        "destroy",
    }
)


class TrackerStats(TypedDict):
    """``getTrackerStats()``: how many trackers are connected out of how many configured."""

    connected: int
    total: int


class _Default:
    pass


_DEFAULT: Final = _Default()


class Peer:
    """A remote peer as handed to event handlers and returned with replies.

    ``id`` is the peer's id (40 hex characters). A peer handed over with a message (to a ``msg``
    handler, or with a reply) can ``respond`` to that message; peers compare equal by ``id``.
    """

    __slots__ = ("_channel_name", "_msg_id", "_p2pt", "_remote")

    def __init__(
        self, p2pt: P2PT, remote: RemotePeer, channel_name: str, msg_id: int | None = None
    ) -> None:
        self._p2pt = p2pt
        self._remote = remote
        self._channel_name = channel_name
        self._msg_id = msg_id

    @property
    def id(self) -> str:
        return self._remote.id

    @property
    def public_key(self) -> bytes | None:
        """The peer's Ed25519 public key (32 bytes) when it proved holding it on a connection
        of ours, else ``None``. Every connection of a peer proves this key, or is closed within
        ``auth_timeout`` (see :attr:`connection_key` for the one this handle refers to)."""
        return self._remote.public_key

    @property
    def connection(self) -> int:
        """The number of the connection this handle refers to (a message came on it), unique in
        this process (:attr:`~p2prpc.swarm.connection.Connection.connection`); 0 when it is
        closed."""
        channel = self._remote.channels.get(self._channel_name)
        return channel.connection if channel is not None else 0

    @property
    def connection_key(self) -> bytes | None:
        """The key proven on the connection this handle refers to (``None``: none proven there
        yet). What arrived on that connection comes from the holder of this key."""
        channel = self._remote.channels.get(self._channel_name)
        return channel.public_key if channel is not None else None

    @property
    def channel_name(self) -> str:
        """The label of the data channel this handle prefers (one per tracker offer)."""
        return self._channel_name

    @property
    def origins(self) -> tuple[str, ...]:
        """How each open channel to this peer was made: the tracker's announce URL, or
        ``relay:<peer id>`` for a connection signalled through that neighbour (the mesh)."""
        return tuple(c.origin for c in self._remote.channels.values() if c.is_open)

    @property
    def channels(self) -> int:
        """How many data channels to this peer are open (the rest are backups)."""
        return sum(1 for c in self._remote.channels.values() if c.is_open)

    @property
    def connected(self) -> bool:
        return self._remote.open_channel() is not None

    @property
    def message_id(self) -> int | None:
        """The id of the message this handle came with (what ``respond`` answers), if any."""
        return self._msg_id

    def respond(self, msg: JSONValue, *, timeout: float | _Default | None = _DEFAULT) -> Reply:
        """Answer the message this handle came with; await the result for the peer's next answer."""
        if self._msg_id is None:
            raise NothingToRespond("this peer handle came with no message to respond to")
        return self._p2pt._send(self, msg, self._msg_id, timeout)

    def destroy(self) -> None:
        """Close the data channel this handle refers to, as ``peer.destroy()`` does in P2PT.

        Other channels to the same peer stay open and carry later messages; the peer is closed
        (``peerclose``) only when its last channel closes.
        """
        channel = self._remote.channels.get(self._channel_name)
        if channel is not None:
            channel.close()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Peer) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Peer {self.id[:8]} channels={self.channels}>"


class Reply(Awaitable[tuple[Peer, JSONValue]]):
    """A sent message; awaiting it gives ``(peer, reply)`` once the peer responds.

    The message is on its way as soon as ``send``/``respond`` returns, whether or not the reply is
    awaited (so a last ``respond`` in a conversation need not be awaited). The wait ends with the
    reply, or with :class:`~p2prpc.errors.PeerClosed` when the peer goes away, or with
    :class:`~p2prpc.errors.ReplyTimeout` when the timeout passes.
    """

    __slots__ = ("_future", "id")

    def __init__(self, future: asyncio.Future[tuple[Peer, JSONValue]], msg_id: int) -> None:
        self._future = future
        self.id = msg_id
        # Nobody has to await a reply: mark failures as retrieved so they are not logged as lost.
        future.add_done_callback(_retrieve)

    def __await__(self) -> Generator[Any, None, tuple[Peer, JSONValue]]:
        return self._future.__await__()

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        """Stop waiting for the reply (the message itself is already sent)."""
        return self._future.cancel()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class P2PT(AsyncIOEventEmitter):
    """A P2PT swarm: ``P2PT(announce_urls, identifier)``, then ``await start()``.
    ``announce_urls``: the trackers' WebSocket URLs, a list (as P2PT's array); one string is a
    ``TypeError``.

    Limits (keyword arguments): ``reply_timeout`` seconds a ``send`` waits for its reply (``None``:
    forever, as P2PT does); ``max_message_length`` UTF-16 units of one incoming message;
    ``max_pending`` unfinished incoming messages per peer; ``max_message_age`` seconds an unfinished
    message may wait for its next chunk; ``max_channels_per_peer``: the most data channels to one
    peer (each tracker and each re-announce would add one), held on every path: offers from a peer
    with that many channels open or connecting are not answered, answers to our offers are not
    taken from a peer with that many open, and a channel that opens past the cap anyway (offers
    crossing) is closed at both ends: the one with the greatest label among those opened in the
    last few seconds. ``max_connecting`` (32): offers are not answered while this many channels
    are connecting (each holds a connection and its sockets; peer ids cost a flooding tracker
    client nothing). A connection we answered that has not opened ``answer_timeout`` seconds
    (15) later is closed. The slots are shared so that a new peer always finds one: at most
    ``max_connecting_per_peer`` (2) of them connect to one peer, at most half of them are backup
    channels to peers already connected, and when they are full an offer from a new peer closes
    the connection we answered that has been connecting longest, if for ``answer_grace``
    seconds (3) or more.

    Memory budgets: unfinished incoming P2PT messages hold at most ``max_peer_bytes`` (64 MiB) per
    peer and ``max_total_bytes`` (256 MiB) over all peers, each for at most ``max_message_age``
    (60 s); a chunk past a budget drops its message (``peerwarning`` with
    :class:`~p2prpc.errors.TooManyPending`), a message left unfinished too long is dropped
    (``peerwarning`` with :class:`~p2prpc.wire.frames.MessageExpired`), and the peer stays
    connected. A ``send`` waiting for its reply on the id of a refused message fails at once
    with the refusal (the same error the ``peerwarning`` carries). Bytes are what the text takes
    in memory (1 to 4 bytes a character, by the widest in a chunk). On top, while one message
    completes, its joined text and decoded value exist once: a message marked as JSON whose parsed
    value would hold more than ``max_parsed_size`` bytes (64 MiB; estimated from the text before
    parsing, never below what it would hold) is dropped unparsed (``peerwarning`` with
    :class:`~p2prpc.errors.ParsedTooBig`, which names the message).

    Toward a peer that reads slowly or not at all, each data channel queues at most
    ``max_send_queue`` bytes (16 MiB) above aiortc's own buffer (which we fill only up to 1 MiB,
    plus one data-channel message of at most 64 KiB): a send that does not fit fails with
    :class:`~p2prpc.errors.SendQueueFull` (``send``/``respond``: their reply does;
    ``post``/``send_raw``: they raise) and sends nothing;
    ``await drain(peer)`` waits until the queue is empty again. So each peer costs at most
    ``max_channels_per_peer × (max_send_queue + 1 MiB + 64 KiB)`` bytes of outgoing data.
    ``udp_buffer_size``: bytes of receive and send buffer asked for each connection's UDP sockets
    (:class:`~p2prpc.transport.RTCOptions`; aiortc only: libwebrtc sizes its own).

    ICE: ``ice_servers``: STUN and TURN servers, a list of URLs (``"stun:HOST[:PORT]"``,
    ``"turn:USERNAME:CREDENTIAL@HOST[:PORT][?transport=tcp]"``, ``"turns:..."``: the form of
    :mod:`p2prpc.transport.ice`), aiortc's ``RTCIceServer`` objects (``urls``, ``username``,
    ``credential``) and providers: functions, plain or async, called before each connection
    attempt for the servers to use then (:class:`~p2prpc.transport.ice.TurnRestCredentials`
    makes short-lived TURN credentials from a secret shared with coturn or eturnal). A provider
    that raises, returns no ICE server or does not return within ``ice_servers_timeout`` seconds
    (10) fails that attempt with :class:`~p2prpc.errors.IceServersUnavailable`: no offer is
    made or answered then (``trackerwarning`` on a tracker's path, a warning in the log), and
    the next attempt asks it again. ``None`` (the default): the servers the environment
    variable ``P2PRPC_ICE_SERVERS`` lists (URLs separated by commas or spaces; TURN URLs without
    credentials take TURN REST credentials from ``P2PRPC_TURN_SECRET``), else P2PT's STUN
    servers; ``[]``: none. A malformed URL, or a TURN server without credentials, raises
    :class:`~p2prpc.errors.InvalidIceServer` here, naming the part that is wrong; credentials
    are never logged nor shown in errors. ``host_addresses`` (the only addresses offered as
    host candidates), ``ice_transport_policy`` (``"all"``, or ``"relay"``: only candidates
    relayed by a TURN server, so no peer learns this machine's addresses). libwebrtc uses every
    server given; aiortc only the first STUN and the first TURN server it can use, and logs a
    warning naming the others (:class:`~p2prpc.transport.RTCOptions`). ``gather_timeout``:
    seconds (2) an offer or answer waits, once one STUN or TURN server has given a candidate,
    for the others to answer before it leaves without them (libwebrtc; with none answering it
    leaves after 5 s, as on aiortc): a TURN server that has not answered by then is reported
    as giving no answer.
    ``ice_restart_timeout``: seconds (30) an open connection whose ICE was lost keeps restarting
    ICE before it is closed (``peerclose`` when it was the peer's last), on libwebrtc between
    p2prpc peers that both restart (its calls ride it out: the connection, its data channel and
    its calls stay); 0: no restarts, a failed ICE closes the connection (aiortc: never
    restarts). Counted in :attr:`ice_restarts`.

    ``transport``: the WebRTC implementation connections are made with: ``"aiortc"`` (pure
    Python, always installed), ``"libwebrtc"`` (Chrome's engine through the ``wrtc`` package,
    ``pip install p2prpc[native]``; it gathers no loopback candidates), ``"auto"`` (libwebrtc
    when installed, else aiortc), or a :class:`~p2prpc.transport.Transport`; ``None`` (the
    default): what the environment variable ``P2PRPC_TRANSPORT`` names, aiortc when it is unset.
    ``"libwebrtc"`` without ``wrtc`` raises :class:`~p2prpc.transport.TransportUnavailable` (an
    ``ImportError``), and on libwebrtc ``host_addresses`` naming a loopback address after the
    process made a connection without loopback candidates raises
    :class:`~p2prpc.transport.wrtc.LoopbackRefused` (a ``RuntimeError`` saying how to allow
    them), here. The other peer cannot tell which one a peer uses: both interoperate.

    Closed swarms: with ``secret`` (str or bytes) the info_hash is derived from the secret and
    the identifier (scrypt and HKDF-SHA256: about 0.1 s and 64 MiB, once per secret and
    identifier in a process, while this constructor runs), offers and answers are sealed
    (ChaCha20-Poly1305; what does not
    open is dropped, counted in ``signalling.refused`` and reported as ``trackerwarning``), and
    each new connection must prove the secret over its own DTLS fingerprints within
    ``auth_timeout`` seconds before ``peerconnect``; a connection that does not is closed
    (``peerrefused``, counted in ``refused_peers``). A sealed offer or answer opens once, and
    only if it was sealed at most ``seal_max_age`` seconds (80) ago and is dated at most
    ``seal_clock_skew`` seconds (30) ahead by this machine's clock: what a third party recorded
    is refused (and counted) when played back. ``identity`` (a
    :class:`~p2prpc.identity.Identity`) proves this peer's public key on every connection;
    ``allowed_peers`` (public keys) admits only peers that prove one of them. Without any of these
    the wire is exactly P2PT's. See ``docs/SECURITY.md``. A secret with fewer than 16 characters
    or bytes, or under an estimated 64 bits of entropy, raises
    :class:`~p2prpc.errors.WeakSecret` here (``p2prpc secret`` makes a good one; the rule is
    :func:`p2prpc.wire.secret.secret_strength`).

    Degree: P2PT connects every peer with every other. ``max_peers`` bounds how many peers this one
    connects to (offers from more are not answered, announces carry only the offers still
    wanted); below ``min_peers`` (half of ``max_peers`` by default) while the trackers know more
    peers, it announces again every few seconds, and whenever a peer leaves it asks for more.
    ``max_extra_peers`` (2) connections past ``max_peers`` are made and taken through other
    signalling paths (:meth:`make_offer`, :meth:`answer_offer`) when they ask for it, to reach a
    service no neighbour serves.

    Other signalling paths: :meth:`make_offer`, :meth:`answer_offer`, :meth:`take_answer` make
    connections whose offers and answers something else carries (the p2prpc mesh relays them
    through neighbours), sealed exactly as through a tracker, or, with ``identity`` and ``secret``,
    to the peer's own key (:attr:`seal_key`). At most ``max_direct_offers`` (16) such offers
    wait for an answer, each at most ``direct_offer_timeout`` seconds (20).
    ``more_peers_handler``: asked first whenever more peers are wanted; when it returns true
    (it is finding some) and this peer has ``min_peers``, a peer leaving does not make it
    announce to the trackers again before their interval.
    """

    def __init__(
        self,
        announce_urls: Sequence[str] = (),
        identifier: str = "",
        *,
        ice_servers: Sequence[IceServerLike] | None = None,
        host_addresses: Sequence[str] | None = None,
        ice_transport_policy: IceTransportPolicy = "all",
        ice_servers_timeout: float = PROVIDER_TIMEOUT,
        ice_timeout: float = ICE_TIMEOUT,
        ice_restart_timeout: float = ICE_RESTART_TIMEOUT,
        gather_timeout: float = GATHER_TIMEOUT,
        unreachable_log_interval: float = 60.0,
        udp_buffer_size: int | None = UDP_BUFFER_SIZE,
        transport: str | Transport | None = None,
        reply_timeout: float | None = 60.0,
        max_message_length: int = 16 * 2**20,
        max_pending: int = 64,
        max_message_age: float = 60.0,
        max_peer_bytes: int = MAX_PEER_BYTES,
        max_total_bytes: int = MAX_TOTAL_BYTES,
        max_parsed_size: int = MAX_PARSED_SIZE,
        max_channels_per_peer: int = 4,
        max_send_queue: int = MAX_SEND_QUEUE,
        max_connecting: int = 32,
        max_connecting_per_peer: int = 2,
        answer_timeout: float = ANSWER_TIMEOUT,
        answer_grace: float = 3.0,
        max_peers: int | None = None,
        min_peers: int | None = None,
        max_extra_peers: int = 2,
        max_direct_offers: int = 16,
        direct_offer_timeout: float = 20.0,
        tracker_options: dict[str, Any] | None = None,
        secret: str | bytes | None = None,
        identity: Identity | None = None,
        allowed_peers: Sequence[bytes] | None = None,
        auth_timeout: float = 10.0,
        seal_max_age: float = SEAL_MAX_AGE,
        seal_clock_skew: float = SEAL_CLOCK_SKEW,
    ) -> None:
        super().__init__()
        if isinstance(announce_urls, str | bytes):
            raise TypeError(
                f"announce_urls is a list of tracker URLs, not one string: [{announce_urls!r}]"
            )
        #: The WebRTC implementation this peer's connections are made with (its ``name``:
        #: ``"aiortc"`` or ``"libwebrtc"``).
        self.transport: Transport = (
            transport
            if transport is not None and not isinstance(transport, str)
            else choose_transport(transport)
        )
        self.announce_urls: list[str] = list(announce_urls)
        self.identifier = identifier
        keys = derive_keys(secret, identifier) if secret is not None else None
        self.info_hash = keys.info_hash if keys is not None else info_hash_of(identifier)
        if identity is not None:
            from .identity import Identity  # cryptography is loaded only for identities

            if not isinstance(identity, Identity):
                raise TypeError(
                    f"identity must be a p2prpc.Identity (Identity.generate() or "
                    f"Identity.load(path)), not {type(identity).__name__}"
                )
        self.identity = identity
        # With an identity the peer id is bound to the key (wire.secret.bound_peer_id), so no
        # other peer can prove a key under it; without one it is random, as in P2PT.
        self._id_nonce = secrets.token_bytes(ID_NONCE_SIZE) if identity is not None else None
        self._peer_id = (
            bound_peer_id(identity.public_key, self._id_nonce)
            if identity is not None and self._id_nonce is not None
            else secrets.token_bytes(20)
        )
        self.peer_id = self._peer_id.hex()
        self._signalling = Signalling(
            self.info_hash, self._peer_id, keys, max_age=seal_max_age, max_skew=seal_clock_skew
        )
        self._proof_key = keys.proof_key if keys is not None else None
        if identity is not None and keys is not None:  # relayed offers are sealed to this key
            self._signalling.own_key = SealKeyPair.generate(
                identity=identity.public_key,
                sign=identity.sign,
                info_hash=self.info_hash,
                peer_id=self._peer_id,
            )
        self.allowed_peers = frozenset(allowed_peers) if allowed_peers is not None else None
        if self.allowed_peers is not None and any(len(k) != 32 for k in self.allowed_peers):
            raise ValueError("allowed_peers are 32-byte Ed25519 public keys")
        self.auth_timeout = auth_timeout
        self._handshake = Handshake(
            info_hash=self.info_hash,
            peer_id=self._peer_id,
            proof_key=self._proof_key,
            identity=identity,
            id_nonce=self._id_nonce,
            allowed_peers=self.allowed_peers,
        )
        #: Connections closed because the peer proved no secret or identity we accept.
        self.refused_peers = 0
        #: Messages :meth:`messages` dropped unread (its queue was full, in messages or bytes).
        self.messages_dropped = 0
        self._proving: dict[Connection, asyncio.TimerHandle] = {}
        #: The ICE servers connections are made with (static ones and providers).
        self.ice_servers = IceServers(
            ice_servers if ice_servers is not None else ice_servers_from_environment(),
            timeout=ice_servers_timeout,
        )
        self._rtc_options = RTCOptions(
            ice_servers=self.ice_servers.static,
            host_addresses=host_addresses,
            ice_transport_policy=ice_transport_policy,
            max_send_queue=max_send_queue,
            udp_buffer_size=udp_buffer_size,
            ice_timeout=ice_timeout,
            ice_restart_timeout=ice_restart_timeout,
            gather_timeout=gather_timeout,
        )
        prepare_transport(self.transport, self._rtc_options)  # its refusals raise here
        #: The neighbours a failed attempt to a peer is followed by a circuit through (set by
        #: :mod:`p2prpc.circuit`): its report advises that instead of a TURN server.
        self.relays_for: Callable[[str], list[str]] = lambda peer_id: []
        #: Peers found whose last connection attempt failed, by peer id (until they connect).
        self._unreachable: dict[str, tuple[float, Unreachable]] = {}
        self._unreachable_logged: dict[str, tuple[float, str]] = {}
        self.unreachable_log_interval = unreachable_log_interval
        self.reply_timeout = reply_timeout
        self._peers = PeerTable(
            max_channels_per_peer=max_channels_per_peer,
            max_connecting=max_connecting,
            max_connecting_per_peer=max_connecting_per_peer,
            max_peers=max_peers,
            min_peers=min_peers,
            max_extra_peers=max_extra_peers,
            answer_grace=answer_grace,
        )
        self._remotes = self._peers.remotes
        self._connecting = self._peers.connecting
        self.answer_timeout = answer_timeout
        self.max_direct_offers = max_direct_offers
        self._pool = OfferPool(
            self,
            self._signalling,
            self._rtc_options,
            transport=self.transport,
            max_offers=max_direct_offers,
            ice=self.ice_servers,
        )
        self.direct_offer_timeout = direct_offer_timeout
        self.more_peers_handler: Callable[[], bool] | None = None
        self._swarm_sizes: dict[str, int] = {}
        self._reassembler = Reassembler(
            max_message_length=max_message_length,
            max_pending=max_pending,
            max_age=max_message_age,
            max_peer_bytes=max_peer_bytes,
            max_total_bytes=max_total_bytes,
            max_parsed_size=max_parsed_size,
        )
        self.max_message_age = max_message_age
        self._expiry: asyncio.TimerHandle | None = None
        self._tracker_options = dict(tracker_options or {})
        self._tracker_options.setdefault("answer_timeout", answer_timeout)
        self.trackers: dict[str, TrackerClient] = {}
        self._background_tasks: set[asyncio.Task[None]] = set()
        #: Connections closed whose sockets are still being released (destroy waits for them).
        self._closing: set[Connection] = set()
        #: Receives every binary data-channel message (``peer_id, data, connection``: the number
        #: of the connection it came on, as :attr:`Peer.connection`); P2PT itself only reads
        #: text frames. The p2prpc node reads its binary envelope here, off the event path.
        self.binary_handler: Callable[[str, bytes, int], None] | None = None
        #: ICE restarts (libwebrtc, between p2prpc peers that both restart: ``docs/PROTOCOL.md``
        #: section 9; each step is also an ``icerestart`` event: peer, connection, step), counted:
        #: ``lost`` (ICE lost on an open connection, a restart began), ``restarted`` (heard
        #: from the peer over the renegotiated ICE), ``gave_up`` (closed after
        #: ``ice_restart_timeout``), ``refused`` (a restart message forged, altered, replayed,
        #: for no connection of its sender, or not applicable: never applied).
        self.ice_restarts: dict[str, int] = {"lost": 0, "restarted": 0, "gave_up": 0, "refused": 0}
        self._started = False
        self._destroyed = False

    # -- P2PT API -----------------------------------------------------------------------------

    @property
    def peers(self) -> dict[str, Peer]:
        """The connected peers by id."""
        return {
            pid: Peer(self, remote, next(iter(remote.channels)))
            for pid, remote in self._remotes.items()
            if remote.open_channel() is not None
        }

    def is_connected(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is a connected peer (``peer_id in p2pt.peers``, without building
        the mapping)."""
        remote = self._remotes.get(peer_id)
        return remote is not None and remote.open_channel() is not None

    async def start(self) -> None:
        """Connect to every tracker and start discovering peers."""
        if self._destroyed:
            raise Destroyed("this P2PT instance was destroyed")
        if self._started:
            return
        self._started = True
        for url in self.announce_urls:
            self._open_tracker(url)

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called (and :meth:`destroy` not yet)."""
        return self._started and not self._destroyed

    def connectivity(
        self, connect_timeout: float, awaiting: Callable[[str], bool] | None = None
    ) -> SwarmConnectivity:
        """What this swarm is doing to find peers (:mod:`p2prpc.swarm.connectivity`): its
        trackers, and connections to new peers in progress (not another attempt to a peer
        whose last one failed: that peer is reported unreachable meanwhile), each counted for
        ``connect_timeout`` seconds from when it began. ``awaiting(peer_id)``: whether a
        connected peer is still being waited on (a p2prpc node waits for its hello); such a
        peer counts as connecting, from when its connection began. The ``connectivity`` event
        says when this may have changed (besides the bound passing:
        :attr:`SwarmConnectivity.changes_at`)."""
        unreachable = self.unreachable()
        failed = {u.peer_id for u in unreachable}
        # An attempt again to a peer whose last one failed is not something in progress: as
        # gRPC's channel stays in TRANSIENT_FAILURE while it reconnects (gRFC A62), calls are
        # told why now, not after every retry.
        found = [
            Finding(c.adopted_at, f"connecting to peer {c.peer_id[:8]}")
            for c in self._connecting
            if c.adopted_at is not None
            and c.peer_id is not None
            and c.peer_id not in failed
            and not self.is_connected(c.peer_id)
        ]
        if awaiting is not None:
            for peer_id, remote in self._remotes.items():
                if remote.channels and awaiting(peer_id):
                    since = min(c.adopted_at or c.created_at for c in remote.channels.values())
                    found.append(Finding(since, f"waiting for peer {peer_id[:8]} to say hello"))
        return assess(
            [self.trackers[url] for url in self.announce_urls if url in self.trackers],
            found,
            degree=self._peers.degree(),
            connect_timeout=connect_timeout,
            now=time.monotonic(),
            unreachable=unreachable,
        )

    def attempts(self) -> list[Connection]:
        """Connection attempts in progress to peers not connected yet (their answer taken, not
        open yet): each ends open or, within about ``ice_timeout`` seconds of ICE checking, as
        a ``peerunreachable`` report; ``relayed``: a circuit through a relay."""
        return [
            c
            for c in self._connecting
            if c.adopted_at is not None
            and c.peer_id is not None
            and not self.is_connected(c.peer_id)
        ]

    def _note_degree(self) -> None:
        """Trackers whose count of the swarm this peer's degree has reached: met."""
        degree = self._peers.degree()
        bound = self.max_peers
        for tracker in self.trackers.values():
            wanted = tracker.others if bound is None else min(tracker.others, bound)
            if not tracker.met and degree >= wanted:
                tracker.met = True

    def send(
        self, peer: Peer, msg: JSONValue, *, timeout: float | _Default | None = _DEFAULT
    ) -> Reply:
        """Send ``msg`` (a str, or any JSON value) to ``peer``; await the result for its reply."""
        return self._send(peer, msg, None, timeout)

    def post(
        self,
        peer: Peer | str,
        msg: JSONValue,
        msg_id: int,
        *,
        tag: Hashable | None = None,
        connection: int | None = None,
    ) -> int:
        """Send ``msg`` on message id ``msg_id`` without waiting for a reply; returns the number
        of the connection it went on.

        For protocols that run their own conversation over P2PT messages (the RPC layer): replies
        to ``msg_id`` arrive as ``msg`` events. ``tag``: see :meth:`withdraw`. ``connection``:
        only on that connection (:attr:`Peer.connection`). Raises :class:`PeerClosed` when the
        peer (or that connection) is gone and :class:`~p2prpc.errors.SendQueueFull` when the
        message does not fit in the channel's send queue (then nothing of it is sent).

        Frames are cut to what the connection takes
        (:meth:`~p2prpc.swarm.connection.Connection.message_size`: the peer's announced
        max-message-size in UTF-8 bytes, and on a long path one burst of the transport).
        """
        channel = self._channel_for(peer, connection)
        frames = encode_message(msg, msg_id, max_frame_bytes=channel.message_size(UNBOUNDED))
        channel.send(frames, tag=tag)
        return channel.connection

    def send_raw(
        self,
        peer: Peer | str,
        data: Sequence[str | bytes],
        *,
        tag: Hashable | None = None,
        pack: Callable[[Sequence[bytes]], bytes] | None = None,
        pack_limit: int = 16 * 1024,
        pack_overhead: int = 0,
        connection: int | None = None,
    ) -> Connection:
        """Send data-channel messages as they are (not P2PT frames); returns the channel used.

        All or nothing, with the errors of :meth:`post`, and
        :class:`~p2prpc.errors.TooLargeForPeer` for a message larger than the peer's data
        channel takes; ``tag``: see :meth:`withdraw`; ``connection``: as for :meth:`post`;
        ``pack``, ``pack_limit`` and ``pack_overhead`` (bytes): they may leave packed with others
        (:meth:`p2prpc.swarm.connection.Connection.send`).
        """
        channel = self._channel_for(peer, connection)
        channel.send(data, tag=tag, pack=pack, pack_limit=pack_limit, pack_overhead=pack_overhead)
        return channel

    def withdraw(self, peer: Peer | str, tag: Hashable) -> int:
        """Drop what was sent to ``peer`` with ``tag`` and still waits in a send queue.

        Data already handed to aiortc leaves regardless. Returns how many data-channel messages
        were withdrawn (0 when the peer is gone). The RPC layer tags the frames of a call so that
        those of a call that has ended are not sent.
        """
        remote = self._remotes.get(peer if isinstance(peer, str) else peer.id)
        if remote is None:
            return 0
        return sum(channel.withdraw(tag) for channel in remote.channels.values())

    async def drain(self, peer: Peer | str, connection: int | None = None) -> None:
        """Wait until what was sent to ``peer`` (on ``connection``, if given) has left our queue
        for its data channel's buffer.

        Raises :class:`PeerClosed` when the peer is gone or its channel closes meanwhile.
        """
        await self._channel_for(peer, connection).drain()

    def channel(self, peer: Peer | str, connection: int | None = None) -> Connection:
        """The connection :meth:`send_raw` would send on with the same arguments (to cut data to
        its :meth:`~p2prpc.swarm.connection.Connection.message_size` first); the errors of
        :meth:`post`."""
        return self._channel_for(peer, connection)

    def _channel_for(self, peer: Peer | str, connection: int | None = None) -> Connection:
        peer_id = peer if isinstance(peer, str) else peer.id
        remote = self._remotes.get(peer_id)
        if connection is not None:
            channel = remote.by_connection(connection) if remote is not None else None
            if channel is None:
                raise PeerClosed(f"connection {connection} to peer {peer_id} is closed")
            return channel
        preferred = None if isinstance(peer, str) else peer.channel_name
        channel = remote.open_channel(preferred) if remote is not None else None
        if channel is None:
            raise PeerClosed(f"peer {peer_id} is not connected")
        return channel

    def connections(self, peer_id: str) -> list[int]:
        """The numbers of the usable connections to ``peer_id`` (:attr:`Peer.connection`)."""
        remote = self._remotes.get(peer_id)
        if remote is None:
            return []
        return [c.connection for c in remote.channels.values() if remote.usable(c)]

    def buffered_amount(self, peer_id: str, connection: int) -> int:
        """Bytes waiting to be sent on that connection (0 when it is closed)."""
        remote = self._remotes.get(peer_id)
        channel = remote.by_connection(connection) if remote is not None else None
        return channel.buffered_amount if channel is not None else 0

    def acknowledged(self, peer_id: str, connection: int) -> int:
        """A number that changes whenever the peer acknowledges data sent on that connection (0
        when it is closed): its transport is alive even while its answers wait behind our data."""
        remote = self._remotes.get(peer_id)
        channel = remote.by_connection(connection) if remote is not None else None
        return channel.acknowledged if channel is not None else 0

    def close_connection(self, peer_id: str, connection: int) -> None:
        """Close one connection to ``peer_id`` (``connectionclose``; ``peerclose`` too when it
        was the last)."""
        remote = self._remotes.get(peer_id)
        for channel in list(remote.channels.values()) if remote is not None else ():
            if channel.connection == connection:
                channel.close()

    def close_peer(self, peer_id: str) -> None:
        """Close every connection to ``peer_id`` (``peerclose``)."""
        remote = self._remotes.get(peer_id)
        for channel in list(remote.channels.values()) if remote is not None else ():
            channel.close()

    def connection_key(self, peer_id: str, connection: int) -> bytes | None:
        """The key proven on connection ``connection`` to ``peer_id`` (``None``: none proven,
        or the connection is closed)."""
        remote = self._remotes.get(peer_id)
        channel = remote.by_connection(connection) if remote is not None else None
        return channel.public_key if channel is not None else None

    def add_tracker(self, announce_url: str) -> None:
        """Add a tracker and announce to it (``addTracker``)."""
        if announce_url in self.announce_urls:
            raise ValueError("Tracker already added")
        self.announce_urls.append(announce_url)
        if self._started:
            self._open_tracker(announce_url)

    def remove_tracker(self, announce_url: str) -> None:
        """Remove a tracker without dropping the peers found through it (``removeTracker``)."""
        if announce_url not in self.announce_urls:
            raise ValueError("Tracker does not exist")
        self.announce_urls.remove(announce_url)
        tracker = self.trackers.pop(announce_url, None)
        if tracker is not None:
            self._background(tracker.close())
        self.emit("connectivity")

    def request_more_peers(self) -> dict[str, Peer]:
        """Announce again to every tracker with fresh offers (and emit ``morepeers``, for other
        signalling paths); returns the current peers."""
        if self.more_peers_handler is not None:
            self.more_peers_handler()
        self.emit("morepeers")
        self._announce_all()
        return self.peers

    def _want_more_peers(self) -> None:
        """A peer left below the bound: other paths first; the trackers too while below
        ``min_peers`` or when no other path is finding peers."""
        handler = self.more_peers_handler
        finding = handler is not None and handler()
        self.emit("morepeers")
        if not finding or self._peers.degree() < self.min_peers:
            self._announce_all()

    def _announce_all(self) -> None:
        for tracker in self.trackers.values():
            tracker.announce()

    @property
    def swarm_sizes(self) -> dict[str, int]:
        """How many peers each tracker last said the swarm has, this one included, by announce
        URL (trackers that have not answered yet are missing)."""
        return dict(self._swarm_sizes)

    def get_tracker_stats(self) -> TrackerStats:
        connected = sum(1 for t in self.trackers.values() if t.connected)
        return {"connected": connected, "total": len(self.announce_urls)}

    async def destroy(self) -> None:
        """Leave the swarm: close trackers and every connection; fail every pending reply."""
        if self._destroyed:
            return
        self._destroyed = True
        self.emit("destroy")  # ends waits and iterations (wait_for_peer, messages)
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        trackers = list(self.trackers.values())
        self.trackers.clear()
        channels = [c for r in self._remotes.values() for c in r.channels.values()]
        channels += self._connecting
        channels += self._pool.close()
        for remote in list(self._remotes.values()):
            self._fail_waiting(remote, Destroyed("P2PT destroyed"))
        await asyncio.gather(*(t.close() for t in trackers), *self._background_tasks)
        # What trackers' last tasks made meanwhile is closed at once (adopt), and waited for too.
        channels += [c for r in self._remotes.values() for c in r.channels.values()]
        channels += self._connecting
        await asyncio.gather(*(c.wait_closed() for c in {*channels, *self._closing}))
        self._remotes.clear()
        self._connecting.clear()
        self.cancel()  # pyee: handler tasks still running
        self.remove_all_listeners()

    async def __aenter__(self) -> P2PT:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.destroy()

    # -- Pythonic extras ----------------------------------------------------------------------

    async def wait_for_peer(self, timeout: float | None = None) -> Peer:
        """Return a connected peer, waiting (up to ``timeout``) for one to connect.

        Raises :class:`TimeoutError` when none connects in time, :class:`Destroyed` when this
        instance is destroyed meanwhile.
        """
        if self._destroyed:
            raise Destroyed("P2PT destroyed")
        peers = self.peers
        if peers:
            return next(iter(peers.values()))
        future: asyncio.Future[Peer] = asyncio.get_running_loop().create_future()

        def connected(peer: Peer) -> None:
            if not future.done():
                future.set_result(peer)

        def destroyed() -> None:
            if not future.done():
                future.set_exception(Destroyed("P2PT destroyed"))

        self.on("peerconnect", connected)
        self.on("destroy", destroyed)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.remove_listener("peerconnect", connected)
            self.remove_listener("destroy", destroyed)

    async def messages(
        self, maxsize: int = 1024, *, max_bytes: int = MESSAGES_MAX_BYTES
    ) -> AsyncIterator[tuple[Peer, JSONValue]]:
        """Iterate over incoming ``msg`` events; the iteration ends when this instance is
        destroyed. Messages not read yet wait in a queue of at most ``maxsize`` messages and
        ``max_bytes`` bytes (16 MiB) as they are held in memory
        (:func:`~p2prpc.wire.held.held_size`); past either, the oldest are dropped, and
        :attr:`messages_dropped` counts them. One message larger than ``max_bytes`` still
        waits, alone."""
        queue: deque[tuple[Peer, JSONValue, int]] = deque()
        ready = asyncio.Event()
        held = 0
        ended = False

        def put(peer: Peer, msg: JSONValue) -> None:
            nonlocal held
            size = held_size(msg)
            while queue and (len(queue) >= maxsize or held + size > max_bytes):
                held -= queue.popleft()[2]
                self.messages_dropped += 1
            queue.append((peer, msg, size))
            held += size
            ready.set()

        def destroyed() -> None:
            nonlocal ended
            ended = True
            ready.set()

        if self._destroyed:
            return
        self.on("msg", put)
        self.on("destroy", destroyed)
        try:
            while True:
                if queue:
                    peer, msg, size = queue.popleft()
                    held -= size
                    yield peer, msg
                elif ended:
                    return
                else:
                    ready.clear()
                    await ready.wait()
        finally:
            self.remove_listener("msg", put)
            self.remove_listener("destroy", destroyed)

    # -- Swarm protocol, for the tracker clients ----------------------------------------------

    @property
    def peer_id_bytes(self) -> bytes:
        return self._peer_id

    @property
    def rtc_options(self) -> RTCOptions:
        return self._rtc_options

    @property
    def signalling(self) -> Signalling:
        """How offers and answers are sealed and opened (plain SDP in an open swarm)."""
        return self._signalling

    @property
    def seal_key(self) -> SealKey | None:
        """The signed record of this peer's X25519 key, to which peers seal relayed offers and
        answers (:mod:`p2prpc.wire.sealbox`): with an identity in a secret swarm, else ``None``."""
        own = self._signalling.own_key
        return own.record if own is not None else None

    @property
    def secret_mode(self) -> bool:
        """Whether this is a closed swarm (``secret`` was given)."""
        return self._proof_key is not None

    def accepts_offer_from(self, peer_id: str, extra: bool = False) -> bool:
        """Whether to answer an offer (one that opened) from ``peer_id``
        (:meth:`~p2prpc.swarm.peers.PeerTable.accepts_offer_from`)."""
        return not self._destroyed and self._peers.accepts_offer_from(peer_id, extra)

    def accepts_answer_from(self, peer_id: str, extra: bool = False) -> bool:
        """Whether to take ``peer_id``'s answer to one of our offers
        (:meth:`~p2prpc.swarm.peers.PeerTable.accepts_answer_from`)."""
        return not self._destroyed and self._peers.accepts_answer_from(peer_id, extra)

    def offers_wanted(self, tracker: TrackerClient, most: int, *, requested: bool = False) -> int:
        """How many offers the next announce to ``tracker`` should carry, at most ``most`` and
        within ``max_peers``.

        Without a TURN server among the ICE servers, all ``most``, as P2PT makes them: the
        tracker hands some to peers already connected, whose answers open backup channels.
        With one (:attr:`~p2prpc.transport.ice.IceServers.relaying`), each offer costs an
        allocation on it, so as many as the tracker counted other peers
        (:attr:`~TrackerClient.counted`; all ``most`` when it counts none) less those
        connected; and, unless the announce was ``requested`` (:meth:`request_more_peers`, or
        a peer lost), less those connecting and our offers through a tracker that may still be
        answered (made less than its ``answer_timeout`` ago: each went to a peer of the swarm,
        which may be gathering its answer)."""
        counted = tracker.counted
        if counted is not None and self.ice_servers.relaying:
            peers = self._peers
            if requested:
                return self._peers.offers_wanted(max(min(most, counted - peers.degree()), 0))
            connecting = {c.peer_id for c in peers.connecting if c.peer_id is not None}
            connecting -= {p for p, r in peers.remotes.items() if r.channels}
            recent = time.monotonic() - tracker.answer_timeout
            in_flight = sum(
                1
                for c in self._pool.connections()
                if c.origin in self.trackers and c.created_at > recent
            )
            most = min(most, counted - peers.degree() - len(connecting) - in_flight)
        return self._peers.offers_wanted(max(most, 0))

    def _release_offers(self) -> None:
        """Close the offers waiting through a tracker all of whose counted peers are connected:
        the peers it handed them to need them no more, and each holds its sockets (and a TURN
        allocation) until it expires. Only with a TURN server among the ICE servers: without
        one, offers wait for their answers or expiry as P2PT's do."""
        if not self.ice_servers.relaying:
            return
        degree = self._peers.degree()
        for url, tracker in self.trackers.items():
            answered = tracker.state is TrackerState.ANSWERED  # in this connection
            if answered and tracker.counted is not None and degree >= tracker.counted:
                self._pool.retire(url, 0)

    def hungry(self) -> bool:
        """Below ``min_peers`` while the trackers know of more peers: announce again soon."""
        return not self._destroyed and self._peers.hungry(self._swarm_sizes)

    @property
    def degree(self) -> int:
        """How many peers are connected (those with a channel that counted)."""
        return self._peers.degree()

    @property
    def max_peers(self) -> int | None:
        """The most peers this one connects to (``None``: every peer, as P2PT)."""
        return self._peers.max_peers

    @max_peers.setter
    def max_peers(self, value: int | None) -> None:
        self._peers.max_peers = value

    @property
    def min_peers(self) -> int:
        """Below this many peers, announce again every few seconds."""
        return self._peers.min_peers

    @property
    def max_extra_peers(self) -> int:
        """Connections past ``max_peers`` made to reach a service no neighbour serves."""
        return self._peers.max_extra_peers

    @property
    def max_channels_per_peer(self) -> int:
        """The most data channels open or connecting to one peer."""
        return self._peers.max_channels_per_peer

    @property
    def max_connecting(self) -> int:
        """The most connections connecting at once."""
        return self._peers.max_connecting

    @property
    def pool(self) -> OfferPool:
        """Every offer of ours waiting for an answer, whichever path carries it, and the
        answering of others' offers (:class:`~p2prpc.swarm.pool.OfferPool`)."""
        return self._pool

    def adopt(
        self,
        channel: Connection,
        connect_timeout: float | None = None,
        offer_id: bytes | None = None,
    ) -> None:
        """Take over a connecting channel; close it unless it opens within ``connect_timeout``.
        ``offer_id``: it is the connection of that offer from :meth:`make_offer` (``offerfailed``
        if it closes before it counts)."""
        if self._destroyed:
            channel.close()
            self.closing(channel)  # destroy waits for its sockets
            return
        self._peers.make_room(channel)
        self._connecting.add(channel)
        channel.adopted_at = time.monotonic()
        self.emit("connectivity")
        channel.on_open = lambda: self._on_channel_ready(channel)
        channel.on_close = lambda: self._on_channel_close(channel, offer_id)
        if connect_timeout is not None:
            timer = asyncio.get_running_loop().call_later(
                connect_timeout, _close_unless_open, channel
            )

            def opened() -> None:
                timer.cancel()
                self._on_channel_ready(channel)

            channel.on_open = opened

    # -- signalling through other paths (the mesh) ---------------------------------------------

    async def make_offer(
        self,
        peer_id: str,
        *,
        origin: str,
        extra: bool = False,
        seal_to: SealKey | None = None,
        expect_key: bytes | None = None,
    ) -> tuple[bytes, str] | None:
        """A fresh offer for ``peer_id``, to be carried by another path than a tracker.

        Returns ``(offer_id, text)``: the text is the SDP, sealed for ``peer_id`` in a secret
        swarm (as an offer through a tracker, its recipient bound too); with ``seal_to`` (the
        peer's :class:`~p2prpc.wire.sealbox.SealKey`, verified for ``peer_id`` by the caller) and
        our own :attr:`seal_key`, sealed to that key, and its answer must be sealed back to ours.
        ``None`` when no offer is wanted: the peer is this one, ``max_direct_offers`` wait
        already, the caps of :meth:`accepts_answer_from` refuse it, ``seal_to`` is unusable, or
        an ICE server provider failed (:class:`~p2prpc.errors.IceServersUnavailable`, logged).
        ``origin`` names the path (``relay:<peer id>``); ``extra``: a connection past
        ``max_peers`` (within ``max_extra_peers``); ``expect_key``: the key the path says the
        peer holds (by default that of ``seal_to``): its connection counts only if it proves it.
        The offer waits for :meth:`take_answer` at most ``direct_offer_timeout`` seconds;
        ``offerfailed`` says when it ends without connecting.
        """
        if (
            self._destroyed
            or peer_id == self.peer_id
            or not self.accepts_answer_from(peer_id, extra)
        ):
            return None
        try:
            return await self._pool.make(
                self._relay_path(origin),
                to=peer_id,
                extra=extra,
                seal_to=seal_to,
                expect_key=expect_key,
            )
        except IceServersUnavailable:  # logged where it failed; the next attempt asks again
            return None

    def _relay_path(self, origin: str) -> RelayPath:
        """The path of offers and answers relayed through a neighbour (``origin``)."""
        return RelayPath(
            origin=origin,
            offer_timeout=self.direct_offer_timeout,
            connect_timeout=self.direct_offer_timeout,
            answer_timeout=min(self.answer_timeout, self.direct_offer_timeout),
        )

    def abandon_offer(self, offer_id: bytes) -> None:
        """Close one of our offers from :meth:`make_offer` that no answer will reach."""
        offer = self._pool.waiting(offer_id)
        if offer is not None and offer.to is not None:
            self._pool.abandon(offer_id)

    def waiting_offer(self, offer_id: bytes) -> str | None:
        """The peer an offer of ours from :meth:`make_offer` waits for, if it still does."""
        offer = self._pool.waiting(offer_id)
        return offer.to if offer is not None else None

    async def answer_offer(
        self,
        peer_id: str,
        offer_id: bytes,
        text: str,
        *,
        origin: str,
        extra: bool = False,
        sender_identity: bytes | None = None,
    ) -> str | None:
        """Answer ``peer_id``'s offer carried by another path than a tracker.

        Returns the answer's text (sealed for ``peer_id`` in a secret swarm; to its key when the
        offer was sealed to ours), or ``None`` when it is not answered: the offer does not open
        (counted in ``signalling.refused``: forged, too old, or opened already), the caps of
        :meth:`accepts_offer_from` refuse it, its SDP is unusable, or an ICE server provider
        failed (logged). ``sender_identity``: the
        Ed25519 key the path says ``peer_id`` has; with it (or ``allowed_peers``) and our own
        :attr:`seal_key`, the offer must be sealed to our key by that identity (one of
        ``allowed_peers``): one sealed with the swarm key could have been opened or made by a
        relay. The connection, once open, counts as any other (``peerconnect`` after the
        handshake); it is closed unless it opens within ``answer_timeout`` seconds.
        """
        if peer_id == self.peer_id:
            return None
        senders = {sender_identity} if sender_identity is not None else self.allowed_peers
        try:
            answered = await self._pool.answer(
                self._relay_path(origin),
                peer_id,
                offer_id,
                text,
                addressed=True,
                extra=extra,
                senders=senders,
                expect_key=sender_identity,
            )
        except (SealError, UnusableSDP) as e:
            logger.warning("relayed offer from %s not answered: %s", peer_id[:8], e)
            return None
        except IceServersUnavailable:  # logged where it failed
            return None
        return answered[0] if answered is not None else None

    async def take_answer(self, peer_id: str, offer_id: bytes, text: str) -> bool:
        """Take ``peer_id``'s answer to our offer ``offer_id`` (from :meth:`make_offer`).

        False when no such offer waits for that peer, the answer does not open (the offer then
        keeps waiting for a genuine one), the caps refuse it, or its connection closed while
        the answer was applied (the peer may refuse it as soon as it opens). An offer sealed to
        the peer's key takes only an answer sealed to ours by that key's holder.
        """
        offer = self._pool.waiting(offer_id)
        if offer is None or offer.to != peer_id:
            return False
        try:
            return await self._pool.accept(peer_id, offer_id, text)
        except (SealError, UnusableSDP) as e:
            logger.warning("relayed answer from %s not taken: %s", peer_id[:8], e)
            return False

    def tracker_update(self, tracker: TrackerClient, reply: AnnounceReply) -> None:
        self._swarm_sizes[tracker.announce_url] = (reply.complete or 0) + (reply.incomplete or 0)
        self._note_degree()
        self._release_offers()
        self.emit("trackerconnect", tracker, self.get_tracker_stats())
        self.emit("connectivity")

    def tracker_warning(self, tracker: TrackerClient, error: Exception) -> None:
        # An unreachable or refusing tracker is logged by its client, once per change.
        logger.debug("tracker %s: %s", tracker.announce_url, error)
        self.emit("trackerwarning", error, self.get_tracker_stats())
        self.emit("connectivity")

    # -- internals ----------------------------------------------------------------------------

    def _open_tracker(self, url: str) -> None:
        tracker = TrackerClient(url, self, **self._tracker_options)
        self.trackers[url] = tracker
        tracker.start()
        self.emit("connectivity")

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    # -- the handshake (secret and identity modes) ---------------------------------------------

    def _on_channel_ready(self, channel: Connection) -> None:
        """The data channel opened: say who we are first, then wait for the peer's proof (closed
        swarms, known peers) or count the connection at once (open swarms)."""
        handshake = self._handshake
        if not handshake.speaks:
            self._on_channel_open(channel)
            return
        try:
            channel.send([handshake.frame(channel)])
        except (PeerClosed, AuthError, TooLargeForPeer) as e:
            self._refuse(channel, e)
            return
        known = self._remotes.get(channel.peer_id or "")
        if (
            not handshake.gated
            and (known is None or known.public_key is None)
            and channel.expected_key is None
        ):
            self._on_channel_open(channel)  # counted now; a proof may follow (_on_late_proof)
            return
        # A closed swarm, another connection to a peer that proved a key, or one made to reach
        # a key: nothing from it counts until it proves what is required.
        channel.on_message = lambda data: self._on_proof(channel, data)
        self._proving[channel] = asyncio.get_running_loop().call_later(
            self.auth_timeout,
            self._refuse,
            channel,
            AuthError(f"no proof within {self.auth_timeout} s"),
        )

    def _on_proof(self, channel: Connection, data: str | bytes) -> None:
        timer = self._proving.pop(channel, None)
        if timer is not None:
            timer.cancel()
        if not is_auth_frame(data):
            self._refuse(channel, AuthError("the peer spoke before proving itself"))
            return
        assert isinstance(data, bytes)
        try:
            key = self._handshake.verify(channel, data)
        except AuthError as e:
            self._refuse(channel, e)
            return
        self._on_channel_open(channel, key)

    def _refuse(self, channel: Connection, error: Exception) -> None:
        timer = self._proving.pop(channel, None)
        if timer is not None:
            timer.cancel()
        if channel.state is ConnectionState.CLOSED:
            return
        self.refused_peers += 1
        logger.warning("refused peer %s: %s", (channel.peer_id or "?")[:8], error)
        channel.fail(Failure.HANDSHAKE_REFUSED, str(error))
        self.emit("peerrefused", channel.peer_id, error)

    def _on_late_proof(self, remote: RemotePeer, channel: Connection, data: bytes) -> None:
        """A handshake frame on a connection already counted (open swarms: the peer's first
        connections count before any proof, as P2PT peers prove nothing).

        A key proven here becomes the peer's: its other connections, which proved none, must
        prove the same key within ``auth_timeout`` or are closed. What arrived on a connection
        is attributed to what that connection proved (:attr:`Peer.connection_key`), never to
        what another connection under the same peer id proved."""
        if channel.public_key is not None or remote.channels.get(channel.name) is not channel:
            self._refuse(channel, AuthError("a second handshake frame on one connection"))
            return
        try:
            key = self._handshake.verify(channel, data)
        except AuthError as e:
            self._refuse(channel, e)
            return
        if key is None:
            if remote.public_key is not None:
                self._refuse(channel, AuthError("the peer proves no key where it proved one"))
            return
        if remote.public_key not in (None, key):  # bound ids make this a forgery
            self._refuse(channel, AuthError("the peer proves another key than its peer id's"))
            return
        timer = self._proving.pop(channel, None)
        if timer is not None:
            timer.cancel()
        was_key = remote.public_key
        channel.public_key = remote.public_key = key
        others = False
        for other in remote.channels.values():
            if other.public_key is None:
                others = True
                if other not in self._proving:
                    self._expect_proof(other)
        if was_key is None and others and not self._destroyed:
            # What came under this id before came over connections that proved nothing: the
            # peer is, from now on, the holder of this key.
            self.emit("peerkey", Peer(self, remote, channel.name))

    def _expect_proof(self, channel: Connection) -> None:
        """Close ``channel`` unless it proves its peer's key within ``auth_timeout``."""
        self._proving[channel] = asyncio.get_running_loop().call_later(
            self.auth_timeout,
            self._refuse,
            channel,
            AuthError(f"no proof of the peer's key within {self.auth_timeout} s"),
        )

    def _on_channel_open(self, channel: Connection, public_key: bytes | None = None) -> None:
        """Count a connection: a new peer, or one more connection of a known one, as
        :func:`~p2prpc.swarm.handshake.admit` rules (``peerrefused`` for one it refuses; for one
        that takes its id over, the connections that held it are closed first, and the peer is
        new: ``peerclose``, then ``peerconnect``)."""
        self._connecting.discard(channel)
        assert channel.peer_id is not None
        channel.public_key = public_key
        remote = self._remotes.get(channel.peer_id)
        if channel.expected_key is not None and public_key != channel.expected_key:
            self._refuse(channel, AuthError("the peer proves not the key it was reached for"))
            return
        admission, why = admit(
            remote.public_key if remote is not None else None,
            remote is not None and bool(remote.channels),
            public_key,
        )
        if admission is Admission.REFUSE:
            self._refuse(channel, AuthError(why))
            return
        if admission is Admission.TAKE_OVER and remote is not None:
            logger.warning(
                "peer %s: a connection proves the key its id is bound to; closing the %d "
                "that proved none under that id",
                channel.peer_id[:8],
                len(remote.channels),
            )
            for other in list(remote.channels.values()):
                self._refuse(other, AuthError("another connection proves the key of this id"))
            remote = self._remotes.get(channel.peer_id)
        new = remote is None or not remote.channels
        if new and self._peers.degree() >= self._peers.peer_limit(channel.extra):
            channel.close()  # answers to several offers can arrive at once: keep the bound
            return
        if remote is None:
            remote = self._remotes[channel.peer_id] = RemotePeer(channel.peer_id)
        if new:
            remote.public_key = public_key
        if remote.channels.get(channel.name, channel) is not channel:
            # Labels are the offerer's choice: another connection under this id with the same
            # one would take its place in the table and leave it open and unseen.
            self._refuse(channel, AuthError("a connection with the label of another"))
            return
        surplus = None
        if len(remote.channels) >= self._peers.max_channels_per_peer:
            surplus = surplus_channel(remote, channel)
            if surplus is channel:
                logger.debug("channel %s to %s: one too many, closed", channel.name, remote.id)
                channel.close()
                return
        remote.add(channel)
        channel.on_message = lambda data: self._on_data(remote, channel, data)
        channel.local_id = self._peer_id
        channel.send_restart = self._send_restart
        channel.on_restart = lambda what: self._on_restart(remote, channel, what)
        if new:
            self._unreachable.pop(channel.peer_id, None)
            self._note_degree()
            self._release_offers()
            self.emit("peerconnect", Peer(self, remote, channel.name))
        else:
            self.emit("connectionopen", Peer(self, remote, channel.name), channel.connection)
        if surplus is not None:
            logger.debug("channel %s to %s: one too many, closed", surplus.name, remote.id)
            surplus.close()

    # -- ICE restarts (docs/PROTOCOL.md section 9) ---------------------------------------------

    def restart_hello(self, peer_id: str, connection: int) -> JSONValue | None:
        """What this peer's hello on that connection says under ``"restart"``: ``None`` (say
        nothing: it cannot restart ICE), ``True`` (it restarts, and the peer has not said it
        does), or this end's restart key, once the peer's hello on it said ``"restart"``."""
        channel = self._channel_on(peer_id, connection)
        restart = channel.restart if channel is not None else None
        if restart is None:
            return None
        if not restart.remote_restarts:
            return True
        restart.key_sent = True
        return encode_key(restart.local_key)

    def take_restart_hello(self, peer_id: str, connection: int, value: object) -> bool:
        """Take what the peer's hello on that connection says under ``"restart"``; true when
        this end's key is now owed to it (say hello again on that connection).
        :class:`~p2prpc.wire.restart.RestartError` for a key that is not one, or another than
        the peer gave before on that connection: refused (the first one stands) and counted in
        :attr:`ice_restarts` (``refused``)."""
        channel = self._channel_on(peer_id, connection)
        restart = channel.restart if channel is not None else None
        if channel is None or restart is None or value is None or value is False:
            return False
        if isinstance(value, str):
            try:
                channel.arm_restart(decode_key(value))
            except RestartError:
                self.ice_restarts["refused"] += 1
                raise
        elif value is True:
            restart.remote_restarts = True
        else:
            return False
        return not restart.key_sent

    def restarting(self, peer_id: str, connection: int) -> bool:
        """Whether ICE is lost on that connection and being restarted (it is not closed for
        silence meanwhile: its restart times out on its own)."""
        channel = self._channel_on(peer_id, connection)
        return channel is not None and channel.restarting

    def _channel_on(self, peer_id: str, connection: int) -> Connection | None:
        remote = self._remotes.get(peer_id)
        return remote.by_connection(connection) if remote is not None else None

    def _on_restart(self, remote: RemotePeer, channel: Connection, what: str) -> None:
        """A restart of ``channel``'s ICE went a step further: count it, and tell (``icerestart``
        with the peer, the connection's number and the step)."""
        key = what.replace(" ", "_")
        if key in self.ice_restarts:
            self.ice_restarts[key] += 1
        if what == "lost":  # the restart's signalling needs a tracker that still hears us
            for tracker in self.trackers.values():
                tracker.probe()
        if not self._destroyed:
            self.emit("icerestart", Peer(self, remote, channel.name), channel.connection, what)

    def ice_suspect(self, peer_id: str, connection: int) -> None:
        """The peer has been silent on that connection (the node's keepalive): restart its ICE
        now if it restarts, rather than wait for ICE to give the path up."""
        channel = self._channel_on(peer_id, connection)
        if channel is not None:
            channel.ice_suspect()

    def _send_restart(self, channel: Connection, text: str) -> bool:
        """Send a restart message to the peer of ``channel`` as a tracker ``answer`` (to its
        peer id, on a fresh random offer id; sealed as an answer in a secret swarm): through
        the tracker that made the connection if it is connected, else through any that is."""
        if channel.peer_id is None:
            return False
        to_id = bytes.fromhex(channel.peer_id)
        trackers = sorted(
            (t for t in self.trackers.values() if t.connected),
            key=lambda t: t.announce_url != channel.origin,
        )
        for tracker in trackers:
            offer_id = secrets.token_bytes(20)
            sealed = self._signalling.seal_answer(to_id, offer_id, text)
            if tracker.send_answer(to_id, offer_id, sealed):
                return True
        return False

    async def restart_signal(self, from_id: bytes, offer_id: bytes, text: str) -> bool:
        """Take an answer no offer of ours waits for: a restart message (section 9) if it is
        one; false when it is not. One that is and fails its checks is refused, never applied:
        counted in :attr:`ice_restarts` (``refused``), and raised
        (:class:`~p2prpc.wire.restart.RestartError`: the path reports it)."""
        if self._signalling.sealed:
            try:
                text = self._signalling.open_answer(from_id, offer_id, text)
            except SealError:
                return False
        if not is_restart(text):
            return False
        peer_id = from_id.hex()
        try:
            message = decode_restart(text)
            remote = self._remotes.get(peer_id)
            channel = remote.channels.get(message.connection_id.hex()) if remote else None
            if channel is None:
                raise RestartError(f"an ICE restart from {peer_id[:8]} for no connection of its")
            await channel.take_restart(message)
        except RestartError as e:
            self.ice_restarts["refused"] += 1
            logger.info("ICE restart message from %s refused: %s", peer_id[:8], e)
            raise
        return True

    def closing(self, connection: Connection) -> None:
        """``connection`` was closed: :meth:`destroy` waits for its sockets too."""
        closing = self._closing
        if connection in closing:
            return
        closing.add(connection)
        task = asyncio.get_running_loop().create_task(connection.wait_closed())
        task.add_done_callback(lambda _: closing.discard(connection))

    def _on_channel_close(self, channel: Connection, offer_id: bytes | None = None) -> None:
        self.closing(channel)
        self._connecting.discard(channel)
        timer = self._proving.pop(channel, None)
        if timer is not None:
            timer.cancel()
        remote = self._remotes.get(channel.peer_id or "")
        if remote is None or remote.channels.get(channel.name) is not channel:
            if offer_id is not None and channel.peer_id is not None:
                self.offer_failed(channel.peer_id, offer_id)  # it closed before it counted
            if channel.failure is not None and not self._destroyed:
                self._report_unreachable(channel)
            if not self._destroyed:
                self.emit("connectivity")  # a connection ended without counting
            return
        remote.remove(channel)
        if not self._destroyed:
            self.emit("connectionclose", Peer(self, remote, channel.name), channel.connection)
        if not remote.channels:
            del self._remotes[remote.id]
            self._reassembler.discard(remote.id)
            self._fail_waiting(remote, PeerClosed(f"peer {remote.id} closed"))
            if not self._destroyed:
                self.emit("peerclose", Peer(self, remote, channel.name))
                if self.max_peers is not None and self._peers.degree() < self.max_peers:
                    self._want_more_peers()

    def _report_unreachable(self, channel: Connection) -> None:
        """A connection attempt to a peer ended before it counted, for ``channel.failure``:
        remember why, log it (rate-limited), and emit ``peerunreachable``."""
        peer_id = channel.peer_id
        failure = channel.failure
        if peer_id is None or failure is None or self.is_connected(peer_id):
            return
        servers = channel.options.servers()
        urls = [u for s in servers for u in ([s.urls] if isinstance(s.urls, str) else s.urls)]
        reason = Unreachable(
            peer_id,
            channel.stage,
            failure,
            tuple(channel.ice_errors),
            turn=any(u.startswith(("turn:", "turns:")) for u in urls),
            stun=any(u.startswith("stun:") for u in urls),
            detail=channel.failure_detail,
            relays=() if channel.relayed else tuple(self.relays_for(peer_id)),
            # Limited to relayed candidates, a missing TURN server says more (aiortc even
            # answers such an offer, with none of its own, without candidates).
            no_candidates=_no_candidates(channel.local_candidates, channel.remote_candidates)
            if channel.options.ice_transport_policy == "all"
            else "",
        )
        now = time.monotonic()
        self._unreachable.pop(peer_id, None)
        self._unreachable[peer_id] = (now, reason)
        while len(self._unreachable) > _MAX_UNREACHABLE:
            del self._unreachable[next(iter(self._unreachable))]
        text = str(reason)
        logged = self._unreachable_logged.get(peer_id)
        if logged is None or logged[1] != text or now - logged[0] >= self.unreachable_log_interval:
            self._unreachable_logged[peer_id] = (now, text)
            while len(self._unreachable_logged) > _MAX_UNREACHABLE:
                del self._unreachable_logged[next(iter(self._unreachable_logged))]
            logger.warning(
                "peer %s not reachable (%s, reached: %s): %s",
                peer_id[:8],
                channel.origin or "?",
                channel.stage.value,
                text,
            )
        self.emit("peerunreachable", peer_id, reason)
        self.emit("connectivity")

    def unreachable(self) -> list[Unreachable]:
        """Peers found and not connected whose last connection attempt failed, each with how
        far it got, why and what to do (:class:`~p2prpc.swarm.attempt.Unreachable`); reports
        older than ``UNREACHABLE_AGE`` seconds (300) are dropped."""
        now = time.monotonic()
        for peer_id, (at, _) in list(self._unreachable.items()):
            if now - at > UNREACHABLE_AGE or self.is_connected(peer_id):
                del self._unreachable[peer_id]
        return [reason for _, reason in self._unreachable.values()]

    def offer_failed(self, peer_id: str, offer_id: bytes) -> None:
        """An offer of ours addressed to ``peer_id`` ended without connecting (``offerfailed``)."""
        if not self._destroyed:
            self.emit("offerfailed", peer_id, offer_id)

    def _schedule_expiry(self) -> None:
        """Expire unfinished messages on a timer while any are held, even if nothing arrives."""
        if self._expiry is None and self._reassembler.pending and not self._destroyed:
            delay = min(max(self.max_message_age / 4, 0.05), 5.0)
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        for key, msg_id in self._reassembler.expired(time.monotonic()):
            remote = self._remotes.get(str(key))
            error = MessageExpired(
                f"message {msg_id} left unfinished for over {self.max_message_age} s; dropped"
            )
            error.message_id = msg_id
            logger.warning("peer %s: %s", key, error)
            if remote is not None:
                self._refused(remote, error)
            if remote is not None and remote.channels:
                self.emit("peerwarning", Peer(self, remote, next(iter(remote.channels))), error)
        self._schedule_expiry()

    def _refused(self, remote: RemotePeer, error: RemoteProtocolError) -> None:
        """A message of ``remote`` was refused: a ``send`` waiting for a reply on its id fails
        with ``error`` at once, instead of waiting out its timeout for a reply that is gone."""
        if error.message_id is None:
            return
        future = remote.waiting.pop(error.message_id, None)
        if future is not None and not future.done():
            future.set_exception(error)

    def _fail_waiting(self, remote: RemotePeer, error: Exception) -> None:
        waiting = list(remote.waiting.values())
        remote.waiting.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(error)

    def _on_data(self, remote: RemotePeer, channel: Connection, data: str | bytes) -> None:
        if channel.public_key != remote.public_key:  # yet to prove the peer's key: only that
            if isinstance(data, bytes) and is_auth_frame(data):
                self._on_late_proof(remote, channel, data)
            return
        if "data" in self.event_names() and self.listeners("data"):  # (a name may stay, empty)
            self.emit("data", Peer(self, remote, channel.name), data)
        if isinstance(data, bytes):
            first = data[0] if data else -1
            if first == AUTH_MAGIC:
                self._on_late_proof(remote, channel, data)
                return
            if first != _CARET:
                # Not a P2PT frame (P2PT reads binary messages too, as UTF-8 text): the layer
                # above may read it (the binary RPC envelope).
                if self.binary_handler is not None:
                    self.binary_handler(remote.id, data, channel.connection)
                return
        peer = Peer(self, remote, channel.name)
        try:
            frame = decode_frame(data)
            if frame is None:
                return
            message = self._reassembler.feed(remote.id, frame, time.monotonic())
        except RemoteProtocolError as e:
            logger.warning("bad message from peer %s: %s", remote.id, e)
            self._refused(remote, e)
            self.emit("peerwarning", peer, e)
            return
        finally:
            self._schedule_expiry()
        if message is None:
            return
        handle = Peer(self, remote, channel.name, message.id)
        future = remote.waiting.pop(message.id, None)
        if future is not None and not future.done():
            future.set_result((handle, message.value))
        else:
            self.emit("msg", handle, message.value)

    def _send(
        self,
        peer: Peer,
        msg: JSONValue,
        msg_id: int | None,
        timeout: float | _Default | None,
    ) -> Reply:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Peer, JSONValue]] = loop.create_future()
        remote = self._remotes.get(peer.id)
        reply_id = msg_id
        if msg_id is None:
            msg_id = new_message_id()
            if remote is not None:
                while msg_id in remote.waiting:
                    msg_id = new_message_id()
        reply = Reply(future, msg_id)
        if self._destroyed:
            future.set_exception(Destroyed("P2PT destroyed"))
            return reply
        if remote is None:
            channel = None
        elif reply_id is None:
            channel = remote.open_channel(peer.channel_name)
        else:  # a respond answers on the connection its message came on, as in P2PT
            channel = remote.by_connection(peer.connection)
        if remote is None or channel is None:
            future.set_exception(PeerClosed(f"peer {peer.id} is not connected"))
            return reply
        # LocalProtocolError for what JSON cannot carry (TooLargeForPeer: for what this
        # connection's frames cannot carry either)
        frames = encode_message(msg, msg_id, max_frame_bytes=channel.message_size(UNBOUNDED))
        previous = remote.waiting.get(msg_id)
        if previous is not None and not previous.done():
            previous.cancel()  # a newer message on this id takes its reply over
        remote.waiting[msg_id] = future
        try:
            channel.send(frames)
        except (PeerClosed, SendQueueFull) as e:
            remote.waiting.pop(msg_id, None)
            future.set_exception(e)
            return reply
        seconds = self.reply_timeout if isinstance(timeout, _Default) else timeout
        if seconds is not None and math.isfinite(seconds):
            handle = loop.call_later(seconds, _time_out, remote, msg_id, future, seconds)
            future.add_done_callback(lambda _: handle.cancel())
        return reply


def _close_unless_open(channel: Connection) -> None:
    if not channel.is_open:
        channel.fail(Failure.TIMED_OUT)


def _time_out(remote: RemotePeer, msg_id: int, future: asyncio.Future[Any], seconds: float) -> None:
    if remote.waiting.get(msg_id) is future:
        del remote.waiting[msg_id]
    if not future.done():
        future.set_exception(ReplyTimeout(f"no reply from {remote.id} within {seconds} s"))


def _no_candidates(local: int | None, remote: int | None) -> str:
    """Which description of a connection carried no ICE candidate (:class:`Unreachable`)."""
    ours, theirs = local == 0, remote == 0
    return "both" if ours and theirs else "ours" if ours else "theirs" if theirs else ""
