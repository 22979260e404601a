"""The user's node: a p2prpc peer with its standard layers built on the multiplexer.

``Node(announce_urls, identifier)`` is a :class:`~p2prpc.mux.Mux` (the swarm, hellos,
keepalive, envelopes routed to layers) with what every p2prpc peer serves and runs: the
reflection and health services, and the mesh (peer exchange and relayed signalling). Layers
below it (``p2prpc.rpc``, ``p2prpc.pubsub``, ``p2prpc.mesh``, ``p2prpc.services``) are written
against the multiplexer, so nothing imports upward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import grpc

from .circuit import Circuits, RelayLimits, circuits_of
from .mesh import KnownPeer, Mesh, mesh_of
from .mux import Layer, Life, Mux, PeerInfo
from .rpc.base import Handler
from .rpc.channel import GrpcChannelMethods, IdentityTarget, PeerTarget
from .rpc.serving import MethodAcceptor, Server
from .services import serve_standard_services

__all__ = [
    "IdentityTarget",
    "Layer",
    "Life",
    "MethodAcceptor",
    "Node",
    "PeerInfo",
    "PeerTarget",
]


class Node(Mux, GrpcChannelMethods):
    """A p2prpc peer: ``Node(announce_urls, identifier)``, then ``await start()``.

    Events: ``peer(info)`` when a peer says hello (or says it again), ``peerclose(peer_id)``,
    ``peerwarning(peer_id, error)`` for malformed input from a peer, ``stopping()`` when
    :meth:`stop` begins (and ``connectionsuspect``, ``connectionalive``: keepalive, below).
    P2PT's events (``trackerconnect``, ``trackerwarning``, ``peerconnect``, ``msg``, ...:
    :data:`p2prpc.p2pt.EVENTS`) may be registered on the node too: they go to
    :attr:`p2pt`. ``node.on`` refuses any other name with a ``ValueError`` that lists them.

    ``start()`` returns at once, as P2PT's does; whether peers are coming shows in
    :meth:`connectivity` and a channel's ``get_state()``. A tracker that cannot be reached (or
    refuses the announce) is logged once at WARNING, when it fails, and once at INFO when it
    answers again. ``connect_timeout`` (seconds; 20, gRPC's minimum connect timeout): how long
    each thing that may bring a peer to call counts as connecting (a tracker's first answer, a
    tracker counting peers not connected yet, a connection in progress, a hello awaited):
    while one does, a call that finds no serving peer waits for one (CONNECTING), for at most
    ``connect_timeout`` in all; when none does, it fails UNAVAILABLE at once, saying why
    (TRANSIENT_FAILURE; see ``p2prpc.rpc.Channel``). Another attempt to a peer whose last one
    failed is not in progress in that sense: the peer stays unreachable until one succeeds.

    ``binary``: whether to use the binary envelope with peers that also allow it.
    ``max_message_size``: the largest RPC payload accepted or sent, in bytes (gRPC's
    ``grpc.max_receive_message_length``; 4 MiB as in gRPC).
    ``node.server`` is what this node serves, shaped as grpc.aio's ``Server``
    (:class:`p2prpc.rpc.Server`: ``add_generic_rpc_handlers``, ``wait_for_termination``,
    ``stop(grace)``, ...); grpcio-tools' ``add_…Servicer_to_server(servicer, node)`` takes the
    node or its server. Its settings are the node's keywords:
    ``server_interceptors``: what wraps every call this node serves, as
    ``grpc.aio.server(interceptors=...)``: ``grpc.aio.ServerInterceptor`` instances, and p2prpc's
    own form (``p2prpc.rpc.ServerInterceptor``); ``ValueError`` for anything else.
    ``migration_thread_pool``: where plain ``def`` methods run, as ``grpc.aio.server``'s
    (``None``: a pool of ``min(32, cores + 4)`` threads the server makes).
    ``max_threads_per_peer`` (half the pool, at least 1, at most ``max_calls_per_peer``):
    threads one peer's plain ``def`` methods may hold at once; its next one waits, holding no
    thread, until one of its own returns (a method still running after its call ended still
    counts), so no peer takes the whole pool. ``server_compression``: as
    ``grpc.aio.server(compression=...)`` (see :class:`p2prpc.rpc.Server`).
    ``maximum_concurrent_rpcs`` (as ``grpc.aio.server``'s; ``None``: no limit) and
    ``max_calls_per_peer`` (256): calls served at once, in all and from one peer; a call past
    either is answered RESOURCE_EXHAUSTED at once.
    ``max_queued_bytes_per_peer`` (64 MiB) and ``max_queued_bytes`` (256 MiB): bytes of received
    call messages waiting to be read, from one peer and from all peers together: requests a
    servicer has not read yet (a call's first request included, until it is decoded), and
    replies a caller has not read yet from calls in progress. Each is counted as it is kept in
    memory (a JSON payload is decoded at once into its message, counted at its serialized size,
    or kept as compact JSON text for raw JSON callers; bytes as they are) plus 512 bytes. A
    request past either budget ends its call RESOURCE_EXHAUSTED (a new call is refused so at
    once); a reply past either ends the call RESOURCE_EXHAUSTED and the server is told.
    ``window`` (bytes; 4 MiB, or twice ``max_message_size`` if that is less, which is also its
    most): flow control, as HTTP/2's stream window. For each call whose requests or replies this
    node reads, the bytes a peer may have sent that the servicer or the caller has not read yet
    (each message counted as above: its payload as carried and 512 bytes); the node grants more
    as they are read, in batches of half the window, and the peer's writer (a servicer's reply
    generator, ``write()``, a request iterator) waits while the window is shut, as this node's
    writers wait on the peer's. A slow reader is slowed, never failed, and holds at most the
    window and one message for a call. Peers whose hello announces no window (plain P2PT apps,
    older nodes) are not limited, and meet the per-call caps instead.
    ``max_parsed_size`` (P2PT's, here 64 MiB or 16 × ``max_message_size`` if more): what one
    JSON-form message may hold once parsed; a message over it is refused before it is parsed
    (RESOURCE_EXHAUSTED on its call).
    ``max_decompression_ratio`` (64): a compressed payload may inflate to at most this many
    times its size plus 4 KiB (and to ``max_message_size``); decompression stops there and the
    call fails RESOURCE_EXHAUSTED. ``work_rate`` (bytes a second; 256 MiB) and ``work_burst``
    (bytes; 16 MiB): the work each peer may make this node do, counted in bytes read and decoded
    (:mod:`p2prpc.wire.work`; a signature check counts as 64 KiB): a peer past its budget has its
    further envelopes wait, in order, while other peers are served; ``max_delayed_bytes`` (16 MiB)
    of them at most wait, past that they are refused (a call with RESOURCE_EXHAUSTED).
    ``keepalive_interval`` (1.5), ``keepalive_timeout`` (3.5), ``keepalive_grace`` (15): seconds;
    the first two as gRPC's keepalive (``grpc.keepalive_time_ms``, ``grpc.keepalive_timeout_ms``).
    Each connection to a p2prpc peer that has shown no life for ``keepalive_interval`` (nothing
    arrived, nothing we sent was acknowledged) is pinged; one that leaves a ping unanswered for
    ``keepalive_timeout`` is *suspect*: no new call goes to it, and calls in flight on it that no
    reply has committed move to another server if they may (idempotent ones, and ones that never
    left this node); the others wait. When it speaks again it is no longer suspect and its calls
    go on; after ``keepalive_grace`` more it is closed and its calls fail UNAVAILABLE. So a peer
    that died without a word is suspect about 5 s after it last spoke (WebRTC's own consent
    checks take about 30 s) and its calls fail about 15 s later, while an outage that the
    connection survives costs no call; a peer whose event loop is blocked for less than
    ``keepalive_timeout`` is never suspect, and time this node's own loop spends blocked is not
    held against its peers. Besides, a call sent on a connection silent for a moment carries a
    ping, and new calls prefer peers that answer theirs (see ``p2prpc.rpc.Channel``).
    ``keepalive_interval=None`` turns keepalive off. Only peers whose hello says they answer
    pings are pinged; plain P2PT peers see no extra traffic. Events: ``connectionsuspect(peer_id,
    connection)`` and ``connectionalive(peer_id, connection)``; ``node.life(peer_id)`` says what
    is known of a peer (:class:`~p2prpc.mux.Life`), ``node.is_suspect(peer_id)`` whether it is.
    ``secret``: a closed swarm (see ``docs/SECURITY.md``): only peers that know it find the swarm,
    signalling is sealed, and each connection proves the secret before anything is delivered.
    A weak one (fewer than 16 characters or bytes, or under an estimated 64 bits) raises
    :class:`~p2prpc.errors.WeakSecret`; ``p2prpc secret`` makes a good one.
    ``identity``: this node's :class:`~p2prpc.identity.Identity`, proven to every peer on every
    connection (servicers see it as ``context.peer_identities()``, topic messages are signed
    with it). ``allowed_peers``: the public keys of the only peers this node admits.
    ``mesh``: exchange peers with other p2prpc nodes and relay their signalling, so the swarm
    keeps connecting without trackers (see :mod:`p2prpc.mesh`; ``known_peers``,
    ``reach_service``).
    ``relay`` (false): carry other peers' relayed connections (circuits: ``docs/PROTOCOL.md``
    section 8), so two neighbours of this node that cannot connect directly still call each
    other and exchange topic messages through it, sealed end to end; within ``relay_limits``
    (:class:`~p2prpc.circuit.RelayLimits`: circuits at once, in all and per peer; bytes a
    second, per circuit and in all; the window of bytes in flight each way). Every node with
    the mesh opens circuits through such a neighbour when a peer the exchange lists cannot be
    reached directly (``relay:<relay's peer id>`` in ``node.peers[id].via``), and prefers a
    direct connection once one is made (:mod:`p2prpc.circuit`).
    ``reflection``, ``health``: serve the standard ``grpc.reflection.v1.ServerReflection`` (and
    ``v1alpha``) and ``grpc.health.v1.Health`` services (see :mod:`p2prpc.services`), as a gRPC
    server with them added does; what grpcurl and ``p2prpc describe``/``health`` use.
    ``transport``: ``"aiortc"``, ``"libwebrtc"`` or ``"auto"``, as :class:`~p2prpc.p2pt.P2PT`'s
    (the default: ``P2PRPC_TRANSPORT``, else aiortc).
    Other keyword arguments go to :class:`~p2prpc.p2pt.P2PT`. Client-side settings (retries,
    interceptors, compression, ``wait_for_ready``, grpc channel options) belong to
    ``p2prpc.rpc.Channel``.

    A node is also what a stub calls through: p2prpc's stubs and grpcio-tools' generated
    ``XStub(node)`` (grpc.aio.Channel's ``unary_unary``, ``unary_stream``, ``stream_unary``,
    ``stream_stream``) call any peer serving the service, with a default ``Channel(node)``;
    ``node.to(peer_id)`` and ``node.to_identity(key)`` as well.
    """

    def __init__(
        self,
        announce_urls: Sequence[str] = (),
        identifier: str = "p2prpc",
        *,
        reflection: bool = True,
        health: bool = True,
        mesh: bool = True,
        relay: bool = False,
        relay_limits: RelayLimits | None = None,
        server_interceptors: Sequence[Any] = (),
        maximum_concurrent_rpcs: int | None = None,
        migration_thread_pool: Executor | None = None,
        server_compression: grpc.Compression | str | None = None,
        max_threads_per_peer: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(announce_urls, identifier, **options)
        #: What this node serves (grpc.aio's ``Server``'s face).
        self.server = Server(
            self,
            migration_thread_pool=migration_thread_pool,
            interceptors=server_interceptors,
            maximum_concurrent_rpcs=maximum_concurrent_rpcs,
            compression=server_compression,
            max_threads_per_peer=max_threads_per_peer,
        )
        if reflection or health:
            serve_standard_services(self, reflection=reflection, health=health)
        if mesh:
            self.layer("mesh", Mesh)
        if mesh or relay:
            self.layer("circuits", lambda node: Circuits(node, relay=relay, limits=relay_limits))

    def to(self, peer_id: str) -> PeerTarget:
        """This node and one peer, for a stub whose calls all go to that peer:
        ``GreeterStub(node.to(peer_id))``."""
        return PeerTarget(self, peer_id)

    def to_identity(self, *public_keys: bytes) -> IdentityTarget:
        """This node and public keys, for a stub whose calls go only to peers that proved one
        of them: ``GreeterStub(node.to_identity(key))``; ``ValueError`` without a key."""
        if not public_keys:
            raise ValueError("to_identity needs at least one public key")
        return IdentityTarget(self, tuple(public_keys))

    @property
    def circuits(self) -> Circuits | None:
        """This node's relayed connections (:class:`p2prpc.circuit.Circuits`; ``None`` with
        neither the mesh nor ``relay``)."""
        return circuits_of(self)

    @property
    def known_peers(self) -> dict[str, KnownPeer]:
        """Peers the exchange with neighbours told of (:class:`p2prpc.mesh.KnownPeer` by id;
        empty without the mesh)."""
        found = mesh_of(self)
        return dict(found.known_peers) if found is not None else {}

    # -- what this node serves: its server's ------------------------------------------------

    def add_service(self, name: str, handlers: Mapping[str, Any]) -> None:
        """Serve service ``name`` (:meth:`p2prpc.rpc.Server.add_service`; the generated
        ``add_…Servicer_to_node`` calls this)."""
        self.server.add_service(name, handlers)

    def remove_service(self, name: str) -> None:
        self.server.remove_service(name)

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[Any]) -> None:
        """As ``grpc.aio.Server``'s (:meth:`p2prpc.rpc.Server.add_generic_rpc_handlers`)."""
        self.server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Any]
    ) -> None:
        """As ``grpc.aio.Server``'s (:meth:`p2prpc.rpc.Server.add_registered_method_handlers`)."""
        self.server.add_registered_method_handlers(service_name, method_handlers)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Wait until this node's server stops (``node.stop()`` or ``node.server.stop()``), or
        for ``timeout`` seconds; returns whether it timed out, as grpc.aio's."""
        return await self.server.wait_for_termination(timeout)

    @property
    def services(self) -> frozenset[str]:
        """The services this node serves, by name."""
        return self.server.services

    def service_handlers(self, name: str) -> Mapping[str, Handler[Any, Any]]:
        """What serves each method of service ``name`` here (empty when it is not served)."""
        return self.server.service_handlers(name)

    def method_handler(self, method: str) -> Handler[Any, Any] | None:
        """What serves ``/package.Service/Method`` here, or ``None``."""
        return self.server.method_handler(method)

    @property
    def server_interceptors(self) -> tuple[Any, ...]:
        return self.server.interceptors

    @server_interceptors.setter
    def server_interceptors(self, interceptors: Sequence[Any]) -> None:
        self.server.interceptors = interceptors

    @property
    def maximum_concurrent_rpcs(self) -> int | None:
        return self.server.maximum_concurrent_rpcs

    @maximum_concurrent_rpcs.setter
    def maximum_concurrent_rpcs(self, limit: int | None) -> None:
        self.server.maximum_concurrent_rpcs = limit
