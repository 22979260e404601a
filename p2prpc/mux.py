"""A p2prpc peer's multiplexer: one P2PT swarm, a hello handshake, and envelopes dispatched to
the layers registered for them, keepalive (:mod:`p2prpc.keepalive`) among them (the
:class:`~p2prpc.node.Node` users make is this with the standard layers built on it).

Every node says hello to every peer it meets, on each connection to it (and again whenever what it
serves changes): its protocol version, whether it reads binary envelopes, and which services and
topics it serves. A JavaScript P2PT peer that never says hello can still call services: it is
answered in the JSON form.

The node is a typed multiplexer. It decodes envelopes and hands each kind to the :class:`Layer`
registered for it (``p2prpc.rpc`` for calls, ``p2prpc.pubsub`` for topics, its own
:class:`~p2prpc.keepalive.Keepalive` for pings and pongs); it keeps the peer table
and the hello, and the names of the services and topics it announces. It holds no RPC settings:
those live in ``p2prpc.rpc.Channel``. No exception raised while handling one envelope, by a peer's
bad input or by a layer, stops the handling of the next: malformed input is reported as a
``peerwarning`` (and a malformed call is answered INVALID_ARGUMENT), anything else is logged with
its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, overload, runtime_checkable

from pyee.asyncio import AsyncIOEventEmitter

from .errors import (
    LocalProtocolError,
    PeerClosed,
    RemoteProtocolError,
    SendQueueFull,
    TooManyPending,
)
from .keepalive import KEEPALIVE_GRACE, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, Keepalive
from .keepalive import Life as Life  # also p2prpc.mux.Life: node, rpc and users import it here
from .p2pt import EVENTS as P2PT_EVENTS
from .p2pt import P2PT, Peer
from .swarm.connectivity import SwarmConnectivity
from .transport.ice import IceServerLike
from .wire.compression import CODECS, MAX_RATIO
from .wire.envelope import (
    BATCH_KIND,
    BATCH_OVERHEAD,
    BATCH_SIZE,
    BINARY_FRAME_SIZE,
    MAGIC,
    MAX_WINDOW,
    BinaryReader,
    Envelope,
    EnvelopeError,
    Kind,
    from_json,
    is_envelope,
    iter_batch,
    json_kind,
    pack_batch,
    to_binary,
    to_json,
)
from .wire.frames import MAX_PARSED_SIZE, JSONValue, new_message_id
from .wire.held import ENVELOPE_OVERHEAD, ByteBudget, held_size
from .wire.payload import JSONText
from .wire.restart import RestartError
from .wire.status import Status, StatusCode, unsendable
from .wire.work import ENVELOPE_COST, WorkBudget, envelope_work, settled_work

if TYPE_CHECKING:
    from .identity import Identity

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
#: Seconds ``stop`` waits for cancelled tasks to end before it leaves them behind.
STOP_TIMEOUT = 2.0

#: Bytes of work a second a peer may make a node do (``Mux(work_rate=...)``), and how much of it
#: may come at once (``work_burst``); see :mod:`p2prpc.wire.work`. The rate is several times what
#: the fastest transfer here makes a node decode (about 200 MB/s of work for zstd-compressed
#: records at 90 MB/s), and about a third of one core's time when spent parsing protobuf.
WORK_RATE = 256 * 2**20
WORK_BURST = 16 * 2**20
#: Bytes of envelopes a peer whose work is paced may have waiting (``max_delayed_bytes``).
MAX_DELAYED_BYTES = 16 * 2**20
#: The window a node gives each call whose messages it reads, in bytes (``Mux(window=...)``; see
#: :mod:`p2prpc.wire.window`), unless twice ``max_message_size`` is less. A stream moves at most
#: a window a round trip, so the window holds what aiortc's SCTP receive window (1 MiB of
#: payload) lets through in one, counted as a window counts (512 bytes more a message: 1.5 MiB
#: for 1 KB messages), twice (the reader grants back half a window at a time): on a long path the
#: transport holds a stream back first. With 1 MiB, a stream of 1 KB messages moved 0.6× what
#: raw aiortc does at 150 ms.
WINDOW = 4 * 1024 * 1024

#: Seconds a node keeps looking for a peer to call (``Mux(connect_timeout=...)``): each tracker's
#: first answer, each connection and each hello awaited counts as connecting for this long from
#: when it began (gRPC's minimum connect timeout, ``grpc.min_reconnect_backoff_ms``: 20 s).
CONNECT_TIMEOUT = 20.0

#: The events a node emits itself (:class:`~p2prpc.node.Node` says when); P2PT's events
#: (:data:`p2prpc.p2pt.EVENTS`) registered on a node are registered on its P2PT.
EVENTS = frozenset(
    {"peer", "peerclose", "peerwarning", "stopping", "connectionsuspect", "connectionalive"}
)
_PYEE_EVENTS = frozenset({"new_listener", "error"})


@dataclass
class _Delayed:
    """A paced peer's envelopes, waiting for its work budget in the order they came."""

    #: Each with the connection it came on, its work (``None``: not measured yet: a JSON payload
    #: is measured by walking it, work no budget would pace while the peer is paced already)
    #: and the bytes it holds.
    queue: deque[tuple[Envelope, int, int | None, int]] = field(default_factory=deque)
    held: int = 0
    timer: asyncio.TimerHandle | None = None


class Layer(Protocol):
    """What handles some envelope kinds for a node (see :meth:`Mux.register`)."""

    def on_envelope(self, peer_id: str, envelope: Envelope, connection: int) -> None:
        """One envelope of a registered kind from ``peer_id``, arrived on ``connection`` (the
        connection's number, :attr:`p2prpc.p2pt.Peer.connection`)."""

    def on_connection_lost(self, peer_id: str, connection: int) -> None:
        """One connection to ``peer_id`` closed: whatever was under way on it has ended, even
        if the peer keeps other connections (``on_peer_lost`` follows when it was the last)."""

    def on_peer_lost(self, peer_id: str) -> None:
        """``peer_id`` went away: whatever is in progress with it has ended."""

    def on_refused(
        self,
        peer_id: str,
        kind: Kind | None,
        call_id: int,
        error: RemoteProtocolError,
        *,
        binary: bool | None = None,
    ) -> None:
        """An envelope of a registered kind from ``peer_id`` could not be read (over a size cap,
        malformed): tell whoever waits on it, and the peer. ``kind`` is ``None`` when only the
        message's id is known (a P2PT message refused before its envelope could be read, a
        binary frame of a kind this node does not know). ``binary``: the form to answer in
        (``False``: it came in the JSON form; ``None``: the form the peer reads)."""

    async def wait_idle(self) -> None:
        """Return once nothing is in progress (graceful stop waits for this)."""

    def close(self) -> None:
        """End everything in progress now (the node is stopping)."""


@runtime_checkable
class CallLayer(Protocol):
    """A layer whose work with a peer is calls (the RPC endpoint): what closing the peer ends."""

    def calls_with(self, peer_id: str) -> int:
        """How many calls to or from ``peer_id`` are in progress, on any of its connections."""

    def end_calls_on(self, peer_id: str, connection: int) -> None:
        """End the calls to or from ``peer_id`` on ``connection`` as if it had closed
        (``UNAVAILABLE``), though it stays open."""


L = TypeVar("L", bound=Layer)
Handler = TypeVar("Handler", bound=Callable[..., Any])

_KIND_VALUES = frozenset(kind.value for kind in Kind)

#: What a node keeps of a peer's hello, at most: names of services, topics and encodings (each
#: list, and each name's length), and the bytes the other keys and values hold together
#: (:func:`~p2prpc.wire.held.held_size`).
HELLO_MAX_NAMES = 1024
HELLO_MAX_NAME = 256
HELLO_MAX_EXTRA = 64 * 1024

_HELLO_KEYS = frozenset(
    {
        "v",
        "binary",
        "services",
        "topics",
        "encodings",
        "keepalive",
        "compact",
        "compact_publish",
        "batch",
        "window",
        "max_message_size",
        "restart",
    }
)


@dataclass
class PeerInfo:
    """What a peer said in its hello (``hello`` is false for peers that never said one)."""

    peer_id: str
    hello: bool = False
    version: int = 0
    binary: bool = False
    services: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    encodings: frozenset[str] = frozenset()
    keepalive: bool = False
    compact: bool = False  # reads the binary form's compact call and status headers
    compact_publish: bool = False  # reads the binary form's compact publish headers
    batch: bool = False  # reads batches of binary frames
    #: The window it gives each call, in bytes, when it reads and honours window updates
    #: (``docs/PROTOCOL.md`` §2.2); 0: it does not (a plain P2PT app, an older node).
    window: int = 0
    #: The largest message (serialized, bytes) it reads, as its hello says (``None``: unsaid).
    max_message_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The peer's Ed25519 public key, proven on this connection (``None``: it showed none).
    public_key: bytes | None = None
    #: How each open connection to it was made: a tracker's announce URL, or
    #: ``relay:<peer id>`` when signalled through that neighbour (the mesh).
    via: tuple[str, ...] = ()

    @classmethod
    def from_hello(cls, peer_id: str, hello: Mapping[str, Any]) -> PeerInfo:
        """What a hello says, read leniently: a field of the wrong type reads as absent."""

        def names(key: str) -> frozenset[str]:
            value = hello.get(key)
            if isinstance(value, list):
                kept = (v for v in value[:HELLO_MAX_NAMES] if isinstance(v, str))
                return frozenset(v for v in kept if len(v) <= HELLO_MAX_NAME)
            return frozenset()

        extra: dict[str, Any] = {}
        room = HELLO_MAX_EXTRA
        for key, value in hello.items():
            if key in _HELLO_KEYS or len(key) > HELLO_MAX_NAME:
                continue
            # Charged at what it holds parsed (up to 24 times its JSON), not at its length.
            room -= held_size(key) + held_size(value)
            if room < 0:
                break  # the rest is not kept: a hello cannot pin more than this
            extra[key] = value

        version = hello.get("v")
        window = hello.get("window")
        largest = hello.get("max_message_size")
        return cls(
            peer_id,
            hello=True,
            version=version if isinstance(version, int) and not isinstance(version, bool) else 0,
            binary=hello.get("binary") is True,
            services=names("services"),
            topics=names("topics"),
            encodings=names("encodings"),
            keepalive=hello.get("keepalive") is True,
            compact=hello.get("compact") is True,
            compact_publish=hello.get("compact_publish") is True,
            batch=hello.get("batch") is True,
            window=(
                window
                if isinstance(window, int)
                and not isinstance(window, bool)
                and 0 < window <= MAX_WINDOW
                else 0
            ),
            max_message_size=(
                largest if isinstance(largest, int) and not isinstance(largest, bool) else None
            ),
            extra=extra,
        )


class Mux(AsyncIOEventEmitter):
    """The layer multiplexer under a :class:`~p2prpc.node.Node`: the swarm, the peer table and
    hellos, sending, and envelopes routed by kind to the layers registered for them (keepalive
    among them: :class:`~p2prpc.keepalive.Keepalive`, whose names this keeps as its own). Its
    keywords are :class:`~p2prpc.node.Node`'s, less the standard layers.
    """

    def __init__(
        self,
        announce_urls: Sequence[str] = (),
        identifier: str = "p2prpc",
        *,
        ice_servers: Sequence[IceServerLike] | None = None,
        host_addresses: Sequence[str] | None = None,
        binary: bool = True,
        max_message_size: int = 4 * 2**20,
        max_calls_per_peer: int = 256,
        max_queued_bytes_per_peer: int = 64 * 2**20,
        max_queued_bytes: int = 256 * 2**20,
        keepalive_interval: float | None = KEEPALIVE_INTERVAL,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        keepalive_grace: float = KEEPALIVE_GRACE,
        max_decompression_ratio: float = MAX_RATIO,
        work_rate: float = WORK_RATE,
        work_burst: float = WORK_BURST,
        max_delayed_bytes: int = MAX_DELAYED_BYTES,
        window: int | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        secret: str | bytes | None = None,
        identity: Identity | None = None,
        allowed_peers: Sequence[bytes] | None = None,
        p2pt: P2PT | None = None,
        **p2pt_options: Any,
    ) -> None:
        super().__init__()
        if p2pt is None:
            # A JSON message of max_message_size bytes of payload fits in this many characters.
            p2pt_options.setdefault("max_message_length", 2 * max_message_size + 65536)
            # What such a message may hold parsed, when it is JSON (a message of small objects
            # holds up to 24 times its text).
            p2pt_options.setdefault("max_parsed_size", max(MAX_PARSED_SIZE, 16 * max_message_size))
            p2pt = P2PT(
                announce_urls,
                identifier,
                ice_servers=ice_servers,
                host_addresses=host_addresses,
                secret=secret,
                identity=identity,
                allowed_peers=allowed_peers,
                **p2pt_options,
            )
        elif secret is not None or identity is not None or allowed_peers is not None:
            raise ValueError("secret, identity and allowed_peers belong to the P2PT given")
        self.p2pt = p2pt
        self.binary = binary
        self.max_message_size = max_message_size
        self.max_calls_per_peer = max_calls_per_peer
        #: Received messages waiting to be read (requests a servicer has not read, replies a
        #: caller has not read, as kept: :func:`~p2prpc.wire.payload.kept_size` plus
        #: :data:`~p2prpc.wire.held.ENVELOPE_OVERHEAD` each), per peer and over all peers.
        self.queued = ByteBudget(max_queued_bytes_per_peer, max_queued_bytes)
        if not max_decompression_ratio >= 1:
            raise ValueError("max_decompression_ratio must be at least 1")
        self.max_decompression_ratio = max_decompression_ratio
        self._work = WorkBudget(work_rate, work_burst)
        self.max_delayed_bytes = max_delayed_bytes
        if window is None:
            window = min(WINDOW, 2 * max_message_size)
        if not ENVELOPE_OVERHEAD <= window <= min(MAX_WINDOW, 2 * max_message_size):
            raise ValueError(
                f"window must be from {ENVELOPE_OVERHEAD} bytes to twice max_message_size"
            )
        #: The window this node gives each call whose messages it reads, in bytes (announced
        #: in its hello; peers that honour it send no more than that unread, plus one message).
        self.window = window
        self._delayed: dict[str, _Delayed] = {}
        #: Connected peers and what each said in its hello, by peer id.
        self.peers: dict[str, PeerInfo] = {}
        self._services: frozenset[str] = frozenset()  # what the hello says it serves
        self._topics: set[str] = set()
        self._hello_extra: dict[str, JSONValue] = {}
        self._by_kind: dict[Kind, Layer] = {}
        #: What finds and connects to a peer serving a service no neighbour serves (set by the
        #: mesh layer; :meth:`reach_service`).
        self.service_finder: (
            Callable[[str, float | None, Collection[bytes] | None], Awaitable[bool]] | None
        ) = None
        self._layers: dict[str, Layer] = {}
        self._reader = BinaryReader(max_message_size=max_message_size + 65536)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._hello_owed: set[str] = set()  # peers whose hello waits for their queue to drain
        self._stopping = False
        self._started = False
        self._stopped: asyncio.Future[None] | None = None
        if not connect_timeout > 0:
            raise ValueError("connect_timeout must be a positive number of seconds")
        #: Seconds each thing that may bring a peer to call counts as connecting
        #: (:meth:`connectivity`).
        self.connect_timeout = connect_timeout
        self._keepalive = self.layer(
            "keepalive",
            lambda node: Keepalive(
                node,
                keepalive_interval,
                keepalive_timeout,
                keepalive_grace,
                on_check=self._reader.expire,  # its clock also expires unfinished messages
            ),
        )
        self.register(self._keepalive, (Kind.PING, Kind.PONG))
        p2pt.on("peerconnect", self._on_peerconnect)
        p2pt.on("peerclose", self._on_peerclose)
        p2pt.on("connectionopen", self._on_connectionopen)
        p2pt.on("connectionclose", self._on_connectionclose)
        p2pt.on("peerkey", self._on_peerkey)
        p2pt.on("msg", self._on_msg)
        p2pt.on("peerwarning", self._on_p2pt_warning)
        p2pt.on("icerestart", self._on_icerestart)
        # A silent connection may be one whose path went away: restart its ICE at once.
        self.on("connectionsuspect", p2pt.ice_suspect)
        p2pt.binary_handler = self._on_binary

    @property
    def peer_id(self) -> str:
        return self.p2pt.peer_id

    @property
    def identity(self) -> Identity | None:
        """This node's identity, if it has one."""
        return self.p2pt.identity

    async def reach_service(
        self, service: str, timeout: float | None = None, keys: Collection[bytes] | None = None
    ) -> bool:
        """Whether a connected peer serves ``service`` (and proved one of ``keys``, if given),
        connecting to one that a layer knows of (the mesh,
        :meth:`p2prpc.mesh.Mesh.reach_service`) when none does; ``timeout`` seconds at most."""
        served = any(
            keys is None or self.peer_identity(pid) in keys for pid in self.servers_of(service)
        )
        finder = self.service_finder
        if finder is None or served:
            return served
        return await finder(service, timeout, keys)

    def peer_identity(self, peer_id: str) -> bytes | None:
        """The public key ``peer_id`` proved on its connections to us, or ``None``."""
        peer = self.p2pt.peers.get(peer_id)
        return peer.public_key if peer is not None else None

    def connection_identity(self, peer_id: str, connection: int) -> bytes | None:
        """The public key proven on connection number ``connection`` to ``peer_id`` (``None``:
        none proven there, or the connection is closed): who sent what arrived on it."""
        return self.p2pt.connection_key(peer_id, connection)

    # -- layers -------------------------------------------------------------------------------

    def layer(self, name: str, make: Callable[[Mux], L]) -> L:
        """The layer this node keeps under ``name``, made by ``make(node)`` on first use."""
        found = self._layers.get(name)
        if found is None:
            found = self._layers[name] = make(self)
        return found  # type: ignore[return-value]  # ``make`` made it under this name

    def get_layer(self, name: str) -> Layer | None:
        """The layer this node keeps under ``name``, if one was made."""
        return self._layers.get(name)

    def calls_with(self, peer_id: str) -> int:
        """How many calls to or from ``peer_id`` are in progress on this node, in every layer
        that makes calls: what closing the peer's connections would end."""
        return sum(
            layer.calls_with(peer_id)
            for layer in self._layers.values()
            if isinstance(layer, CallLayer)
        )

    def end_calls_on(self, peer_id: str, connection: int) -> None:
        """End every call to or from ``peer_id`` on ``connection`` as its closing would
        (``UNAVAILABLE`` at the caller, cancelled at the server), leaving the connection open:
        a connection silent past the keepalive's grace whose ICE is being restarted."""
        for layer in list(self._layers.values()):
            if isinstance(layer, CallLayer):
                layer.end_calls_on(peer_id, connection)

    def register(self, layer: Layer, kinds: Sequence[Kind]) -> None:
        """Hand every envelope of ``kinds`` to ``layer``; a kind has one layer."""
        for kind in kinds:
            if kind in self._by_kind and self._by_kind[kind] is not layer:
                raise ValueError(f"{kind.name} envelopes are handled already")
            self._by_kind[kind] = layer

    def set_hello(self, key: str, value: JSONValue) -> None:
        """Say more in this node's hello (a layer's capability, such as pub/sub relaying)."""
        if key in _HELLO_KEYS:
            raise ValueError(f"{key!r} is the node's own hello key")
        self._hello_extra[key] = value
        self._announce_change()

    def track_task(self, task: asyncio.Task[Any]) -> None:
        """Keep a task of a layer's; :meth:`stop` cancels what is still running."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the swarm: connect to the trackers and start finding peers. Returns at once,
        as P2PT's does: what follows shows in :meth:`connectivity` (and a channel's
        ``get_state()``). A second call does nothing."""
        if self._started:
            return
        self._started = True
        await self.p2pt.start()
        self._keepalive.start()

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called (a stopped node is not started)."""
        return self.p2pt.started

    def connectivity(self) -> SwarmConnectivity:
        """What this node is doing to find peers to call
        (:class:`~p2prpc.swarm.connectivity.SwarmConnectivity`): trackers not answered yet,
        trackers counting peers not connected yet, connections in progress and peers that
        have not said hello yet, each for ``connect_timeout`` seconds from when it began; else
        why no peer is coming. The P2PT's ``connectivity`` event and this node's ``peer`` and
        ``peerclose`` say when it may have changed."""

        def awaiting(peer_id: str) -> bool:
            info = self.peers.get(peer_id)
            return info is None or not info.hello

        return self.p2pt.connectivity(self.connect_timeout, awaiting)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has begun: new calls to this node are refused (UNAVAILABLE)."""
        return self._stopping

    async def stop(self, grace: float | None = None) -> None:
        """Leave the swarm, as ``grpc.aio.Server.stop(grace)`` stops a server.

        At once, new calls are refused with UNAVAILABLE and every peer is told (a new hello that
        serves nothing), so their stubs stop picking this node. Calls in progress, served here or
        made from here, get ``grace`` seconds (``None``: none) to finish; what is left is then
        cancelled (its callers get UNAVAILABLE), and the node leaves the swarm. Idempotent: a
        second call waits for the first.
        """
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
            return
        self._stopped = asyncio.get_running_loop().create_future()
        try:
            self._stopping = True
            self.emit("stopping")
            self._keepalive.close()  # no connection is judged while the node stops
            self._announce_change()
            if grace is not None and grace > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(grace):
                        for layer in list(self._layers.values()):
                            await layer.wait_idle()
            for layer in list(self._layers.values()):
                layer.close()
            for peer_id in list(self._delayed):
                self._forget_delayed(peer_id)
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                # A task that swallows its cancellation is left behind, not waited for forever.
                _, stubborn = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
                for task in stubborn:
                    logger.warning("a task of this node ignored its cancellation: %r", task)
            await self.p2pt.destroy()
        finally:
            self._stopped.set_result(None)

    async def close(self) -> None:
        """Leave the swarm now: :meth:`stop` with no grace."""
        await self.stop(None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(None)

    def _drop_peer(self, peer_id: str) -> None:
        """Close every channel to a peer (its calls end UNAVAILABLE), and ask the trackers for
        peers at once, so that the peer, if it was only paused, is found again soon."""
        for _ in range(64):  # one channel a turn; a peer has a handful at most
            peer = self.p2pt.peers.get(peer_id)
            if peer is None:
                break
            peer.destroy()
        if not self._stopping:
            self.p2pt.request_more_peers()

    # -- events -------------------------------------------------------------------------------

    def _emitter(self, event: str) -> AsyncIOEventEmitter:
        """Where a listener of ``event`` goes: this node for its own events, its P2PT for
        P2PT's; ``ValueError`` naming the known events for any other name."""
        if event in EVENTS or event in _PYEE_EVENTS:
            return self
        if event in P2PT_EVENTS:
            return self.p2pt
        raise ValueError(
            f"a node emits no {event!r} event: its events are {', '.join(sorted(EVENTS))}; "
            f"its P2PT's, which may be registered on it, {', '.join(sorted(P2PT_EVENTS))}"
        )

    @overload
    def on(self, event: str) -> Callable[[Handler], Handler]: ...
    @overload
    def on(self, event: str, f: Handler) -> Handler: ...
    def on(self, event: str, f: Handler | None = None) -> Any:
        """Call ``f`` on each ``event`` (or, without ``f``, a decorator that does): this
        node's events, and P2PT's (``trackerwarning``, ``peerconnect``, ...), which go to
        :attr:`p2pt`. ``ValueError`` for a name neither emits."""
        emitter = self._emitter(event)
        if emitter is self:
            return super().on(event, f) if f is not None else super().on(event)
        return emitter.on(event, f) if f is not None else emitter.on(event)

    def add_listener(self, event: str, f: Handler) -> Handler:
        emitter = self._emitter(event)
        return super().add_listener(event, f) if emitter is self else emitter.add_listener(event, f)

    def listens_to(self, event: str) -> Callable[[Handler], Handler]:
        emitter = self._emitter(event)
        return super().listens_to(event) if emitter is self else emitter.listens_to(event)

    def once(self, event: str, f: Callable[..., Any] | None = None) -> Callable[..., Any]:
        emitter = self._emitter(event)
        return super().once(event, f) if emitter is self else emitter.once(event, f)

    def remove_listener(self, event: str, f: Callable[..., Any]) -> None:
        emitter = self._emitter(event)
        if emitter is self:
            super().remove_listener(event, f)
        else:
            emitter.remove_listener(event, f)

    def listeners(self, event: str) -> list[Callable[..., Any]]:
        emitter = self._emitter(event)
        return super().listeners(event) if emitter is self else emitter.listeners(event)

    # -- keepalive: the layer's names, kept as the node's own ---------------------------------
    # Each is its keepalive layer's (:class:`p2prpc.keepalive.Keepalive`), whose docs say more.

    @property
    def keepalive_interval(self) -> float | None:
        """Seconds of silence before a connection is pinged (``None``: keepalive is off)."""
        return self._keepalive.interval

    @property
    def keepalive_timeout(self) -> float:
        """Seconds a ping may go unanswered before its connection is suspect (settable: the
        next check uses it)."""
        return self._keepalive.timeout

    @keepalive_timeout.setter
    def keepalive_timeout(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError("keepalive_timeout is a number of seconds > 0")
        self._keepalive.timeout = seconds

    @property
    def keepalive_grace(self) -> float:
        """Seconds a suspect connection is kept before it is closed (settable: the next check
        uses it)."""
        return self._keepalive.grace

    @keepalive_grace.setter
    def keepalive_grace(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("keepalive_grace is a number of seconds ≥ 0")
        self._keepalive.grace = seconds

    def probe(self, peer_id: str, connection: int) -> None:
        """A call just went on ``connection``: ping it if it was silent for a moment."""
        self._keepalive.probe(peer_id, connection)

    def is_suspect(self, peer_id: str, connection: int | None = None) -> bool:
        """Whether ``connection`` to ``peer_id`` (``None``: every one) left a ping unanswered."""
        return self._keepalive.is_suspect(peer_id, connection)

    def life(self, peer_id: str, *, probe: bool = False) -> Life:
        """What is known of ``peer_id``'s recent life (:class:`~p2prpc.keepalive.Life`)."""
        return self._keepalive.life(peer_id, probe=probe)

    def responsive(self, peer_id: str) -> bool:
        """Whether ``peer_id`` answers: not suspect, no ping to it overdue."""
        return self._keepalive.responsive(peer_id)

    def silence(self, peer_id: str) -> float | None:
        """Seconds since ``peer_id`` was heard from (``None``: not known)."""
        return self._keepalive.silence(peer_id)

    # -- what this node serves ----------------------------------------------------------------

    def set_services(self, names: Collection[str]) -> None:
        """Say in this node's hello that it serves ``names`` (what its server serves:
        ``p2prpc.rpc.Server``); peers are told at once when that changes."""
        names = frozenset(names)
        if names != self._services:
            self._services = names
            self._announce_change()

    @property
    def announced_services(self) -> frozenset[str]:
        """The services this node's hello says it serves."""
        return self._services

    def add_topic(self, name: str) -> None:
        if name not in self._topics:
            self._topics.add(name)
            self._announce_change()

    def remove_topic(self, name: str) -> None:
        if name in self._topics:
            self._topics.discard(name)
            self._announce_change()

    def hello(self) -> dict[str, JSONValue]:
        """The hello this node sends (a stopping node serves nothing)."""
        return {
            **self._hello_extra,
            "v": PROTOCOL_VERSION,
            "binary": self.binary,
            "encodings": list[JSONValue](sorted(CODECS) if self.binary else []),
            "services": list[JSONValue]([] if self._stopping else sorted(self._services)),
            "topics": list[JSONValue](sorted(self._topics)),
            "keepalive": True,
            "compact": self.binary,
            "compact_publish": self.binary,
            "batch": self.binary,
            "window": self.window,
            "max_message_size": self.max_message_size,
        }

    def announce_change(self) -> None:
        """Say hello again to every peer (what this node serves or subscribes to changed)."""
        self._announce_change()

    def _announce_change(self) -> None:
        for peer in list(self.p2pt.peers.values()):
            self._send_hello(peer)

    def _send_hello(self, peer: Peer, connection: int | None = None) -> None:
        try:
            hello = self.hello()
            number = peer.connection if connection is None else connection
            restart = self.p2pt.restart_hello(peer.id, number)  # said per connection
            if restart is not None:
                hello["restart"] = restart
            self.p2pt.post(peer, {"hello": hello}, new_message_id(), connection=number or None)
        except PeerClosed:
            pass
        except SendQueueFull:
            # The peer reads slower than we send: it hears the hello then current once what is
            # queued for it has gone, rather than never (and stop() is not the one to fail).
            if peer.id not in self._hello_owed:
                self._hello_owed.add(peer.id)
                loop = asyncio.get_running_loop()
                self.track_task(loop.create_task(self._send_hello_after_drain(peer)))

    async def _send_hello_after_drain(self, peer: Peer) -> None:
        try:
            await self.p2pt.drain(peer)
        except PeerClosed:
            return
        finally:
            self._hello_owed.discard(peer.id)
        self._send_hello(peer)

    # -- peers --------------------------------------------------------------------------------

    def servers_of(self, service: str) -> list[str]:
        """Connected peers that said they serve ``service``, less suspect ones (keepalive:
        :meth:`is_suspect`)."""
        connected = self.p2pt.is_connected
        found = [
            pid for pid, info in self.peers.items() if service in info.services and connected(pid)
        ]
        if self._keepalive.any_suspect:
            found = [pid for pid in found if not self.is_suspect(pid)]
        return found

    async def wait_for_server(self, service: str, timeout: float | None = None) -> str:
        """Wait until a connected peer says it serves ``service``; return its id (the first
        found). ``TimeoutError`` after ``timeout`` seconds."""
        await self.wait_until(lambda: bool(self.servers_of(service)), timeout)
        return self.servers_of(service)[0]

    async def wait_for_peers(self, count: int, timeout: float | None = None) -> None:
        """Wait until at least ``count`` peers have said hello; ``TimeoutError`` after
        ``timeout`` seconds."""
        await self.wait_until(
            lambda: sum(1 for i in self.peers.values() if i.hello) >= count, timeout
        )

    async def wait_until(self, condition: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until ``condition()`` holds, checked now and whenever a peer says hello or a
        suspect connection speaks again; ``TimeoutError`` after ``timeout`` seconds."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def check(*_: object) -> None:
            if not done.done() and condition():
                done.set_result(None)

        self.on("peer", check)
        self.on("connectionalive", check)
        try:
            check()
            await asyncio.wait_for(done, timeout)
        finally:
            self.remove_listener("peer", check)
            self.remove_listener("connectionalive", check)

    def peer_window(self, peer_id: str) -> int | None:
        """The window ``peer_id`` gives each call whose messages it reads, in bytes, when it
        reads and honours window updates (its hello says ``window``); ``None`` otherwise."""
        info = self.peers.get(peer_id)
        return info.window if info is not None and info.window else None

    def message_limit(self, peer_id: str) -> int:
        """The largest message (serialized, in bytes) to send to ``peer_id``: this node's
        ``max_message_size``, and less when the peer's hello says it reads less (a larger one
        would only be refused there: it fails here, RESOURCE_EXHAUSTED for a call)."""
        info = self.peers.get(peer_id)
        theirs = info.max_message_size if info is not None else None
        mine = self.max_message_size
        return mine if theirs is None or theirs >= mine else max(theirs, 0)

    def is_binary(self, peer_id: str) -> bool:
        """Whether envelopes to this peer use the binary form."""
        info = self.peers.get(peer_id)
        return self.binary and info is not None and info.binary

    # -- sending ------------------------------------------------------------------------------

    def send(
        self,
        peer_id: str,
        envelope: Envelope,
        *,
        binary: bool | None = None,
        tag: Hashable | None = None,
        connection: int | None = None,
    ) -> int:
        """Send an envelope in the form this peer reads (or in the ``binary`` form asked for,
        which must be one it reads); returns the number of the connection it went on
        (``connection``: that one only, or :class:`~p2prpc.errors.PeerClosed`). ``tag``: what
        :meth:`withdraw` takes back while it waits to be sent. Small binary envelopes sent to a
        peer whose hello says ``batch`` in the same turn of the event loop leave packed together
        (``docs/PROTOCOL.md`` §4, Batches); the first of them is not delayed. Raises
        :class:`~p2prpc.errors.PeerClosed` when the peer is gone and
        :class:`~p2prpc.errors.SendQueueFull` (nothing sent) when what waits to go to the peer
        is at its cap (``max_send_queue`` bytes), and
        :class:`~p2prpc.errors.LocalProtocolError` (nothing sent) when the envelope cannot be
        encoded (a header over its size, text that neither form can carry):
        :class:`~p2prpc.errors.TooLargeForPeer` when its header does not fit in the largest
        data-channel message the peer's connection takes. Binary frames and batches are cut to
        what the connection takes (:meth:`~p2prpc.swarm.connection.Connection.message_size`).
        Without ``connection``, a connection that is not suspect is taken if the peer has one."""
        if connection is None and self._keepalive.any_suspect:
            connection = self._keepalive.lively_connection(peer_id)
        info = self.peers.get(peer_id)
        if binary is None:
            binary = self.binary and info is not None and info.binary
        try:
            if binary:
                channel = self.p2pt.channel(peer_id, connection)
                # Frames as large as the connection takes: its peer's limit, and on a long
                # path, what the transport sends at once.
                frame_size = channel.message_size(BINARY_FRAME_SIZE)
                limit = channel.max_message_size
                if info is None:
                    frames = to_binary(envelope, frame_size=frame_size, max_frame_size=limit)
                    channel.send(frames, tag=tag)
                    return channel.connection
                frames = to_binary(
                    envelope,
                    frame_size=frame_size,
                    max_frame_size=limit,
                    compact=info.compact,
                    compact_publish=info.compact_publish,
                )
                channel.send(
                    frames,
                    tag=tag,
                    pack=pack_batch if info.batch else None,
                    pack_limit=BATCH_SIZE,
                    pack_overhead=BATCH_OVERHEAD,
                )
                return channel.connection
            return self.p2pt.post(
                peer_id, to_json(envelope), envelope.call_id, tag=tag, connection=connection
            )
        except UnicodeError as e:
            raise LocalProtocolError(f"cannot encode a {envelope.kind.name} envelope: {e}") from e

    def withdraw(self, peer_id: str, tag: Hashable) -> int:
        """Take back what was sent to a peer with ``tag`` and still waits in its send queue;
        returns how many data-channel messages were taken back (they never left this node)."""
        return self.p2pt.withdraw(peer_id, tag)

    def reply_status(
        self,
        peer_id: str,
        call_id: int,
        status: Status,
        *,
        binary: bool | None = None,
        connection: int | None = None,
    ) -> None:
        """End a call with ``status`` (best effort: a peer that is gone, or whose send queue is
        full, gets no answer). ``binary=False`` answers a call that came in the JSON form;
        ``connection``: on the connection the call came on. A status that cannot be encoded is
        replaced by INTERNAL, so that the call still ends."""
        with contextlib.suppress(PeerClosed, SendQueueFull, LocalProtocolError):
            try:
                self.send(
                    peer_id,
                    Envelope(Kind.STATUS, call_id, status=status),
                    binary=binary,
                    connection=connection,
                )
            except LocalProtocolError as e:
                logger.error("a status for call %d cannot be sent: %s", call_id, e)
                self.send(
                    peer_id,
                    Envelope(Kind.STATUS, call_id, status=unsendable(e)),
                    binary=binary,
                    connection=connection,
                )

    async def drain(self, peer_id: str, connection: int | None = None) -> None:
        """Wait while the data channel to this peer (``connection``, if given) has much unsent
        data (stream backpressure)."""
        await self.p2pt.drain(peer_id, connection)

    # -- incoming -----------------------------------------------------------------------------

    def _on_peerconnect(self, peer: Peer) -> None:
        self.peers.setdefault(
            peer.id, PeerInfo(peer.id, public_key=peer.public_key, via=peer.origins)
        )
        self._send_hello(peer)

    def _on_peerclose(self, peer: Peer) -> None:
        self.peers.pop(peer.id, None)
        self._reader.discard(peer.id)
        self._forget_delayed(peer.id)
        self._work.discard(peer.id)
        for layer in list(self._layers.values()):
            try:
                layer.on_peer_lost(peer.id)
            except Exception:
                logger.exception("a layer failed on losing peer %s", peer.id)
        self.emit("peerclose", peer.id)

    def _on_peerkey(self, peer: Peer) -> None:
        """A peer proved its key over a connection while others under its id proved nothing
        (open swarms): forget what those said (its hello) and say hello to the real peer."""
        self.peers[peer.id] = PeerInfo(peer.id, public_key=peer.public_key, via=peer.origins)
        self._send_hello(peer)
        self.emit("peer", self.peers[peer.id])

    def _on_connectionopen(self, peer: Peer, connection: int) -> None:
        # Hello again, on the new connection: the peer may have given us up (its keepalive
        # dropped us while our side of the old connection lived on), and for it this is the
        # first, which it said hello on and waits to hear ours on.
        self._send_hello(peer)

    def _on_icerestart(self, peer: Peer, connection: int, step: str) -> None:
        if step == "negotiated":  # both ends have new ICE parameters: hear from the peer
            self._keepalive.ping_now(peer.id, connection)

    def _on_connectionclose(self, peer: Peer, connection: int) -> None:
        self._forget_delayed(peer.id, connection)
        for layer in list(self._layers.values()):
            try:
                layer.on_connection_lost(peer.id, connection)
            except Exception:
                logger.exception("a layer failed on losing a connection to %s", peer.id)

    def _on_msg(self, peer: Peer, msg: JSONValue) -> None:
        self._keepalive.hear(peer.id, peer.connection)
        if not is_envelope(msg) or peer.message_id is None:
            return  # a plain P2PT message, for the application
        try:
            envelope = from_json(msg, peer.message_id)
        except RemoteProtocolError as e:
            # Whoever waits on the call it belongs to is told, and the peer, in the JSON form.
            self._refused(peer.id, json_kind(msg), peer.message_id, e, binary=False)
            return
        self._admit(peer.id, envelope, peer.connection)

    def _on_binary(self, peer_id: str, data: bytes, connection: int) -> None:
        self._keepalive.hear(peer_id, connection)
        if not data or data[0] != MAGIC:  # not a binary envelope (is_binary_envelope)
            return
        if len(data) < 2 or data[1] != BATCH_KIND:  # a frame of its own, not a batch
            self._on_frame(peer_id, data, connection)
            return
        try:
            for frame in iter_batch(data):
                if not self.p2pt.is_connected(peer_id):
                    return  # dropped by an earlier frame: nothing more from it is handled
                try:
                    if not self._on_frame(peer_id, frame, connection):
                        return  # a frame no sender packs: the rest of the batch goes with it
                except Exception:  # as for a message of its own: the next frame is handled
                    logger.exception("handling a frame from %s failed", peer_id)
        except RemoteProtocolError as e:  # only the batch's own layout raises here
            if isinstance(e, EnvelopeError) and e.message_id is not None:
                # The call id of the frame at fault could be read: its call is answered.
                self._refused_frame(peer_id, e.frame_kind, e.message_id, e)
            else:
                self._refuse(peer_id, None, False, e)

    def _on_frame(self, peer_id: str, data: bytes, connection: int) -> bool:
        """Read and route one binary frame; ``False`` when it is malformed (refused). A frame
        refused by a cap (a message over ``max_message_size``, too many unfinished) is refused
        too, and answered, but counts as read: a conforming sender may send it."""
        try:
            envelope = self._reader.feed(peer_id, data)
        except RemoteProtocolError as e:
            if len(data) >= 7:
                self._refused_frame(peer_id, data[1], int.from_bytes(data[3:7]), e)
            else:
                self._refuse(peer_id, None, False, e)
            return not isinstance(e, EnvelopeError)
        if envelope is not None:
            self._admit(peer_id, envelope, connection)
        return True

    def _refused_frame(
        self, peer_id: str, kind: int | None, call_id: int, error: RemoteProtocolError
    ) -> None:
        """A binary frame that cannot be read, whose call id can: the layer of its kind tells
        whoever waits and the peer; a kind this node does not know goes to the calls' layer,
        which ends the call on that id, or answers it as a refused request."""
        if kind in _KIND_VALUES:
            self._refused(peer_id, Kind(kind), call_id, error)
            return
        layer = self._by_kind.get(Kind.CALL)
        logger.warning("bad envelope from %s: %s", peer_id, error)
        self.emit("peerwarning", peer_id, error)
        if layer is None:
            return
        try:
            layer.on_refused(peer_id, None, call_id, error)
        except Exception:
            logger.exception("refusing message %s from %s failed", call_id, peer_id)

    def _on_p2pt_warning(self, peer: Peer, error: Exception) -> None:
        """A P2PT message from ``peer`` was refused (over a cap, malformed, left unfinished): a
        call waiting on its id is told, and so is the peer, as for a binary envelope."""
        if not isinstance(error, RemoteProtocolError) or error.message_id is None:
            return
        layer = self._by_kind.get(Kind.CALL)
        if layer is None:
            return  # nothing here makes or serves calls that could wait on it
        try:  # it came as a P2PT message: the answer goes in the JSON form
            layer.on_refused(peer.id, None, error.message_id, error, binary=False)
        except Exception:
            logger.exception("refusing message %s from %s failed", error.message_id, peer.id)

    def _refused(
        self,
        peer_id: str,
        kind: Kind | None,
        call_id: int,
        error: RemoteProtocolError,
        *,
        binary: bool | None = None,
    ) -> None:
        """An envelope that cannot be read: its layer tells whoever waits, and the peer.
        ``binary=False``: it came in the JSON form, and is answered so."""
        layer = self._by_kind.get(kind) if kind is not None else None
        if kind is None or layer is None:
            self._refuse(peer_id, call_id, kind is Kind.CALL, error, binary=binary)
            return
        logger.warning("refused a %s envelope from %s: %s", kind.name, peer_id[:8], error)
        self.emit("peerwarning", peer_id, error)
        try:
            layer.on_refused(peer_id, kind, call_id, error, binary=binary)
        except Exception:
            logger.exception("refusing a %s envelope from %s failed", kind.name, peer_id)

    def _refuse(
        self,
        peer_id: str,
        call_id: int | None,
        is_call: bool,
        error: Exception,
        *,
        binary: bool | None = None,
    ) -> None:
        """Report malformed input; a call that cannot be read is answered (in the form it came
        in), so nobody waits."""
        logger.warning("bad envelope from %s: %s", peer_id, error)
        self.emit("peerwarning", peer_id, error)
        if is_call and call_id is not None:
            status = Status(StatusCode.INVALID_ARGUMENT, str(error))
            self.reply_status(peer_id, call_id, status, binary=binary)

    # -- pacing: a peer's work budget ---------------------------------------------------------

    def charge_work(self, peer_id: str, work: int) -> None:
        """Count ``work`` bytes of work done for ``peer_id`` (:mod:`p2prpc.wire.work`: one
        byte decoded, or :data:`~p2prpc.wire.work.VERIFY_COST` a signature checked) against its
        budget: while it is in debt its next envelopes wait."""
        self._work.charge(peer_id, work, time.monotonic())

    def settle_work(self, peer_id: str, envelope: Envelope, decoded: int) -> None:
        """A compressed payload from ``peer_id`` decompressed to ``decoded`` bytes: take back
        what was charged for it beyond that (it was charged the most it could inflate to)."""
        refund = settled_work(
            envelope, decoded, self.max_message_size, self.max_decompression_ratio
        )
        if refund:
            self._work.charge(peer_id, refund, time.monotonic())

    def delayed_bytes(self, peer_id: str) -> int:
        """Bytes of ``peer_id``'s envelopes waiting for its work budget."""
        delayed = self._delayed.get(peer_id)
        return delayed.held if delayed is not None else 0

    def _admit(self, peer_id: str, envelope: Envelope, connection: int) -> None:
        """Route an envelope now if its peer's work budget holds tokens and nothing of it waits
        already; else keep it (in order) until the budget does. Its work is charged before it is
        routed. Pings and pongs are answered at once (charged all the same): a busy peer's
        keepalive must not close a connection that is only paced. Past ``max_delayed_bytes``
        waiting, an envelope is refused (a call with RESOURCE_EXHAUSTED)."""
        now = time.monotonic()
        delayed = self._delayed.get(peer_id)
        kind = envelope.kind
        work: int | None = None  # measured when it leaves the queue, behind others of the peer's
        if delayed is None or kind is Kind.PING or kind is Kind.PONG:
            work = self._work_of(envelope)
            if delayed is None and self._work.spend(peer_id, work, now):
                self._route(peer_id, envelope, connection)
                return
            if kind is Kind.PING or kind is Kind.PONG:
                self._work.charge(peer_id, work, now)
                self._route(peer_id, envelope, connection)
                return
        envelope = _kept(envelope)
        held = _held(envelope)
        if delayed is None:
            delayed = self._delayed[peer_id] = _Delayed()
        elif delayed.held + held > self.max_delayed_bytes:
            error = TooManyPending(
                f"more than {self.max_delayed_bytes} bytes of envelopes wait for this peer's "
                "work budget"
            )
            self._refused(peer_id, kind, envelope.call_id, error)
            return
        delayed.queue.append((envelope, connection, work, held))
        delayed.held += held
        if delayed.timer is None:
            self._schedule_drain(peer_id, delayed)

    def _work_of(self, envelope: Envelope) -> int:
        """The work ``envelope`` is charged (:func:`~p2prpc.wire.work.envelope_work`), the
        common kinds without a call."""
        payload = envelope.payload
        if payload is None and envelope.signature is None:
            return ENVELOPE_COST
        if type(payload) is bytes and not envelope.compressed and envelope.signature is None:
            return ENVELOPE_COST + 2 * len(payload)  # read, then parsed (as envelope_work says)
        return envelope_work(envelope, self.max_message_size, self.max_decompression_ratio)

    def _schedule_drain(self, peer_id: str, delayed: _Delayed) -> None:
        wait = self._work.wait(peer_id, time.monotonic())
        delayed.timer = asyncio.get_running_loop().call_later(wait, self._drain, peer_id)

    def _drain(self, peer_id: str) -> None:
        """Route what waits for a peer while its budget holds tokens."""
        delayed = self._delayed.get(peer_id)
        if delayed is None:
            return
        delayed.timer = None
        while delayed.queue:
            now = time.monotonic()
            if not self._work.ready(peer_id, now):
                self._schedule_drain(peer_id, delayed)
                return
            kept, connection, work, held = delayed.queue.popleft()
            delayed.held -= held
            try:
                envelope = _restored(kept)
                self._work.charge(peer_id, self._work_of(envelope) if work is None else work, now)
                self._route(peer_id, envelope, connection)
            except Exception:  # as for an envelope routed at once: the next is handled
                logger.exception("handling a delayed envelope from %s failed", peer_id)
            if self._delayed.get(peer_id) is not delayed:
                return  # the peer went away meanwhile
        del self._delayed[peer_id]

    def _forget_delayed(self, peer_id: str, connection: int | None = None) -> None:
        """Drop what waits from a peer (that arrived on ``connection``, if given)."""
        delayed = self._delayed.get(peer_id)
        if delayed is None:
            return
        if connection is not None:
            kept = [item for item in delayed.queue if item[1] != connection]
            if kept:
                delayed.queue = deque(kept)
                delayed.held = sum(item[3] for item in kept)
                return
        if delayed.timer is not None:
            delayed.timer.cancel()
        del self._delayed[peer_id]

    def _route(self, peer_id: str, envelope: Envelope, connection: int) -> None:
        if envelope.kind is Kind.HELLO:
            self._on_hello(peer_id, envelope.hello or {}, connection)
            return
        layer = self._by_kind.get(envelope.kind)
        if layer is None:
            if envelope.kind is Kind.CALL:  # nothing serves calls here
                self.reply_status(
                    peer_id,
                    envelope.call_id,
                    Status(StatusCode.UNIMPLEMENTED, f"unknown service: {envelope.method}"),
                    connection=connection,
                )
            return
        try:
            layer.on_envelope(peer_id, envelope, connection)
        except RemoteProtocolError as e:
            self._refused(peer_id, envelope.kind, envelope.call_id, e)
        except Exception:
            logger.exception("handling a %s envelope from %s failed", envelope.kind.name, peer_id)

    def _on_hello(self, peer_id: str, hello: Mapping[str, Any], connection: int) -> None:
        if not self.p2pt.is_connected(peer_id):
            return
        peer = self.p2pt.peers[peer_id]
        if "restart" in hello:
            try:
                owed = self.p2pt.take_restart_hello(peer_id, connection, hello["restart"])
            except RestartError as e:  # the rest of the hello holds: only the key is refused
                owed = False
                logger.warning("peer %s: restart key refused: %s", peer_id[:8], e)
                self.emit("peerwarning", peer_id, e)
            if owed:
                self._send_hello(peer, connection)  # our restart key, on that connection
        info = replace(
            PeerInfo.from_hello(peer_id, hello), public_key=peer.public_key, via=peer.origins
        )
        if isinstance(hello.get("restart"), str) and self.peers.get(peer_id) == info:
            return  # it only gave its restart key: nothing it serves changed
        self.peers[peer_id] = info
        self.emit("peer", info)


#: What one metadata entry, a peer id in a list or a number in a list holds at most beyond its
#: text: a tuple of two strings (176 bytes), a string (89), an int and its slot (36).
_METADATUM, _LISTED_ID, _LISTED_NUMBER = 176, 96, 36


def _held(envelope: Envelope) -> int:
    """The bytes an envelope takes while it waits, never less: its payload as kept, and every
    other field a peer chose the size of (metadata, trailers and details, names, lists)."""
    held = ENVELOPE_OVERHEAD
    for part in (envelope.payload, envelope.body, envelope.hello):
        if isinstance(part, JSONText):
            held += part.size()
        elif part is not None:
            held += held_size(part)
    for key, value in envelope.metadata:
        held += _METADATUM + len(key) + len(value)
    status = envelope.status
    if status is not None:
        held += len(status.details)
        for key, value in status.trailers:
            held += _METADATUM + len(key) + len(value)
    for text in (envelope.method, envelope.topic, envelope.origin):
        if text is not None:
            held += 50 + len(text)
    held += _LISTED_ID * len(envelope.relayed_to) + _LISTED_NUMBER * len(envelope.seqs)
    return held


def _kept(envelope: Envelope) -> Envelope:
    """An envelope as it waits: a JSON payload as compact text, about what was sent, rather than
    parsed (up to 24 times that)."""
    payload = envelope.payload
    if payload is None or isinstance(payload, bytes | bytearray | memoryview | JSONText):
        return envelope
    return replace(envelope, payload=JSONText(payload))


def _restored(envelope: Envelope) -> Envelope:
    """An envelope that waited, as it came (its JSON payload parsed again)."""
    payload = envelope.payload
    if isinstance(payload, JSONText):
        return replace(envelope, payload=payload.value())
    return envelope
