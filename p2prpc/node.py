"""A p2prpc node: one P2PT swarm, a hello handshake, and envelopes routed to calls.

Every node says hello to every peer it meets (and again whenever what it serves changes): its
protocol version, whether it reads binary envelopes, and which services and topics it serves. A
JavaScript P2PT peer that never says hello can still call services: it is answered in the JSON form.

The node moves envelopes and keeps the tables; what a call *does* lives above, in ``p2prpc.rpc``:

- a new incoming ``call`` goes to the :class:`CallAcceptor` registered for its service and method
  (unknown ones are answered ``UNIMPLEMENTED`` here);
- ``msg``/``end``/``cancel`` go to the server-side :class:`CallSink` of (peer, call id);
- ``reply``/``status`` go to the client-side :class:`CallSink` of (peer, call id);
- when a peer goes away, every call with it hears ``peer_lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import RTCIceServer
from pyee.asyncio import AsyncIOEventEmitter

from .errors import PeerClosed, RemoteProtocolError
from .p2pt import P2PT, Peer
from .wire.compression import CODECS
from .wire.envelope import (
    BinaryReader,
    Envelope,
    Kind,
    Status,
    from_json,
    is_binary_envelope,
    is_envelope,
    to_binary,
    to_json,
)
from .wire.frames import JSONValue, new_message_id

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
#: gRPC's UNIMPLEMENTED, answered by the node itself for services and methods it does not serve.
UNIMPLEMENTED = 12
#: gRPC's INVALID_ARGUMENT, answered to a call envelope that cannot be read.
INVALID_ARGUMENT = 3


class CallSink(Protocol):
    """One side of a call in progress, fed by the node."""

    def on_envelope(self, envelope: Envelope) -> None: ...

    def on_peer_lost(self) -> None: ...


class CallAcceptor(Protocol):
    """Starts the server side of a call to one method (``p2prpc.rpc.Handler`` is one)."""

    def accept(self, node: Node, peer_id: str, envelope: Envelope) -> None: ...


_HELLO_KEYS = frozenset({"v", "binary", "services", "topics", "encodings"})


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
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PeerChannel:
    """Calls through ``node`` to one peer only (``node.to(peer_id)``)."""

    node: Node
    peer_id: str

    @property
    def rpc_node(self) -> Node:
        return self.node

    @property
    def rpc_peer(self) -> str | None:
        return self.peer_id


class Node(AsyncIOEventEmitter):
    """A p2prpc peer: ``Node(announce_urls, identifier)``, then ``await start()``.

    Events: ``peer(info)`` when a peer says hello (or says it again), ``peerclose(peer_id)``.
    ``binary``: whether to use the binary envelope with peers that also allow it.
    ``max_message_size``: the largest RPC payload accepted or sent, in bytes.
    Other keyword arguments go to :class:`~p2prpc.p2pt.P2PT`.
    """

    def __init__(
        self,
        announce_urls: Sequence[str] = (),
        identifier: str = "p2prpc",
        *,
        ice_servers: Sequence[RTCIceServer] | None = None,
        host_addresses: Sequence[str] | None = None,
        binary: bool = True,
        max_message_size: int = 4 * 2**20,
        retry_policy: Any = None,
        compression: str | None = None,
        wait_for_ready: bool = False,
        client_interceptors: Sequence[Any] = (),
        server_interceptors: Sequence[Any] = (),
        p2pt: P2PT | None = None,
        **p2pt_options: Any,
    ) -> None:
        super().__init__()
        if p2pt is None:
            # A JSON message of max_message_size bytes of payload fits in this many characters.
            p2pt_options.setdefault("max_message_length", 2 * max_message_size + 65536)
            p2pt = P2PT(
                announce_urls,
                identifier,
                ice_servers=ice_servers,
                host_addresses=host_addresses,
                **p2pt_options,
            )
        self.p2pt = p2pt
        self.binary = binary
        self.max_message_size = max_message_size
        # Read by p2prpc.rpc (RetryPolicy, interceptors); the node only keeps them.
        self.retry_policy = retry_policy
        #: The compression calls use unless they say otherwise ("deflate", "zstd", None).
        self.compression = compression
        self.wait_for_ready = wait_for_ready
        self.client_interceptors = list(client_interceptors)
        self.server_interceptors = list(server_interceptors)
        self.peers: dict[str, PeerInfo] = {}
        self._services: dict[str, Mapping[str, CallAcceptor]] = {}
        self._topics: set[str] = set()
        self._client_calls: dict[tuple[str, int], CallSink] = {}
        self._server_calls: dict[tuple[str, int], CallSink] = {}
        self._in_flight: dict[str, int] = {}
        self._reader = BinaryReader(max_message_size=max_message_size + 65536)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Receives every ``pub`` envelope (set by :mod:`p2prpc.pubsub`).
        self.publish_handler: Callable[[str, Envelope], None] | None = None
        #: More to say in the hello (set by the layers above).
        self.hello_extra: dict[str, JSONValue] = {}
        #: Anything the layers above keep per node (the pub/sub router).
        self.extensions: dict[str, Any] = {}
        p2pt.on("peerconnect", self._on_peerconnect)
        p2pt.on("peerclose", self._on_peerclose)
        p2pt.on("msg", self._on_msg)
        p2pt.binary_handler = self._on_binary

    @property
    def peer_id(self) -> str:
        return self.p2pt.peer_id

    @property
    def rpc_node(self) -> Node:
        """As a stub's channel: calls go through this node..."""
        return self

    @property
    def rpc_peer(self) -> str | None:
        """...to any peer serving the service."""
        return None

    def to(self, peer_id: str) -> PeerChannel:
        """A channel for stubs whose calls all go to one peer."""
        return PeerChannel(self, peer_id)

    async def start(self) -> None:
        await self.p2pt.start()

    async def close(self) -> None:
        """Leave the swarm; every call in progress ends (``UNAVAILABLE`` on the client side)."""
        for sink in [*self._client_calls.values(), *self._server_calls.values()]:
            sink.on_peer_lost()
        self._client_calls.clear()
        self._server_calls.clear()
        for extension in self.extensions.values():
            close = getattr(extension, "close", None)
            if callable(close):
                close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.p2pt.destroy()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- what this node serves ----------------------------------------------------------------

    def add_service(self, name: str, handlers: Mapping[str, CallAcceptor]) -> None:
        """Serve a service: ``handlers`` maps ``/package.Service/Method`` to what runs each call."""
        self._services[name] = dict(handlers)
        self._announce_change()

    def remove_service(self, name: str) -> None:
        self._services.pop(name, None)
        self._announce_change()

    @property
    def services(self) -> frozenset[str]:
        return frozenset(self._services)

    def add_topic(self, name: str) -> None:
        if name not in self._topics:
            self._topics.add(name)
            self._announce_change()

    def remove_topic(self, name: str) -> None:
        if name in self._topics:
            self._topics.discard(name)
            self._announce_change()

    def hello(self) -> dict[str, JSONValue]:
        """The hello this node sends."""
        return {
            **self.hello_extra,
            "v": PROTOCOL_VERSION,
            "binary": self.binary,
            "encodings": list[JSONValue](sorted(CODECS) if self.binary else []),
            "services": list[JSONValue](sorted(self._services)),
            "topics": list[JSONValue](sorted(self._topics)),
        }

    def announce_change(self) -> None:
        """Say hello again to every peer (what this node serves or subscribes to changed)."""
        self._announce_change()

    def _announce_change(self) -> None:
        if not self.p2pt.peers:
            return
        for peer in self.p2pt.peers.values():
            self._send_hello(peer)

    def _send_hello(self, peer: Peer) -> None:
        with contextlib.suppress(PeerClosed):
            self.p2pt.post(peer, {"hello": self.hello()}, new_message_id())

    # -- choosing peers -----------------------------------------------------------------------

    def servers_of(self, service: str) -> list[str]:
        """Connected peers that said they serve ``service``."""
        connected = self.p2pt.peers
        return [
            pid for pid, info in self.peers.items() if service in info.services and pid in connected
        ]

    def pick_server(self, service: str, exclude: frozenset[str] = frozenset()) -> str | None:
        """The server of ``service`` with the fewest calls in flight from here (ties: random)."""
        candidates = [pid for pid in self.servers_of(service) if pid not in exclude]
        if not candidates:
            candidates = self.servers_of(service)  # all were tried: try them again
        if not candidates:
            return None
        random.shuffle(candidates)
        return min(candidates, key=lambda pid: self._in_flight.get(pid, 0))

    async def wait_for_server(
        self, service: str, exclude: frozenset[str] = frozenset(), timeout: float | None = None
    ) -> str:
        """Wait (up to ``timeout``) until a peer serving ``service`` is connected."""
        loop = asyncio.get_running_loop()
        found: asyncio.Future[str] = loop.create_future()

        def check(*_: object) -> None:
            pid = self.pick_server(service, exclude)
            if pid is not None and not found.done():
                found.set_result(pid)

        self.on("peer", check)
        try:
            check()
            return await asyncio.wait_for(found, timeout)
        finally:
            self.remove_listener("peer", check)

    async def wait_for_peers(self, count: int, timeout: float | None = None) -> None:
        """Wait until at least ``count`` peers have said hello."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def check(*_: object) -> None:
            if sum(1 for i in self.peers.values() if i.hello) >= count and not done.done():
                done.set_result(None)

        self.on("peer", check)
        try:
            check()
            await asyncio.wait_for(done, timeout)
        finally:
            self.remove_listener("peer", check)

    def is_binary(self, peer_id: str) -> bool:
        """Whether envelopes to this peer use the binary form."""
        info = self.peers.get(peer_id)
        return self.binary and info is not None and info.binary

    # -- calls --------------------------------------------------------------------------------

    def track_task(self, task: asyncio.Task[Any]) -> None:
        """Keep a task of this node's calls; :meth:`close` cancels what is still running."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def new_call_id(self, peer_id: str) -> int:
        call_id = new_message_id()
        while (peer_id, call_id) in self._client_calls:
            call_id = new_message_id()
        return call_id

    def open_client_call(self, peer_id: str, call_id: int, sink: CallSink) -> None:
        self._client_calls[(peer_id, call_id)] = sink
        self._in_flight[peer_id] = self._in_flight.get(peer_id, 0) + 1

    def close_client_call(self, peer_id: str, call_id: int) -> None:
        if self._client_calls.pop((peer_id, call_id), None) is not None:
            left = self._in_flight.get(peer_id, 1) - 1
            if left > 0:
                self._in_flight[peer_id] = left
            else:
                self._in_flight.pop(peer_id, None)

    def open_server_call(self, peer_id: str, call_id: int, sink: CallSink) -> None:
        self._server_calls[(peer_id, call_id)] = sink

    def close_server_call(self, peer_id: str, call_id: int) -> None:
        self._server_calls.pop((peer_id, call_id), None)

    def send(self, peer_id: str, envelope: Envelope, *, binary: bool | None = None) -> None:
        """Send an envelope in the form this peer reads (or in the ``binary`` form asked for,
        which must be one it reads). Raises PeerClosed when the peer is gone."""
        if binary if binary is not None else self.is_binary(peer_id):
            self.p2pt.send_raw(peer_id, to_binary(envelope))
        else:
            self.p2pt.post(peer_id, to_json(envelope), envelope.call_id)

    async def drain(self, peer_id: str) -> None:
        """Wait while the data channel to this peer has much unsent data (stream backpressure)."""
        await self.p2pt.drain(peer_id)

    # -- incoming -----------------------------------------------------------------------------

    def _on_peerconnect(self, peer: Peer) -> None:
        self.peers.setdefault(peer.id, PeerInfo(peer.id))
        self._send_hello(peer)

    def _on_peerclose(self, peer: Peer) -> None:
        self.peers.pop(peer.id, None)
        self._reader.discard(peer.id)
        for table in (self._client_calls, self._server_calls):
            for key in [k for k in table if k[0] == peer.id]:
                sink = table.pop(key)
                sink.on_peer_lost()
        self._in_flight.pop(peer.id, None)
        self.emit("peerclose", peer.id)

    def _on_msg(self, peer: Peer, msg: JSONValue) -> None:
        if not is_envelope(msg) or peer.message_id is None:
            return  # a plain P2PT message, for the application
        try:
            envelope = from_json(msg, peer.message_id)
        except RemoteProtocolError as e:
            logger.warning("bad envelope from %s: %s", peer.id, e)
            self.emit("peerwarning", peer.id, e)
            if isinstance(msg, dict) and "call" in msg:  # answer it, so the caller does not wait
                self._reply_status(peer.id, peer.message_id, Status(INVALID_ARGUMENT, str(e)))
            return
        self._route(peer.id, envelope)

    def _on_binary(self, peer_id: str, data: bytes) -> None:
        if not is_binary_envelope(data):
            return
        try:
            envelope = self._reader.feed(peer_id, data)
        except RemoteProtocolError as e:
            logger.warning("bad binary envelope from %s: %s", peer_id, e)
            self.emit("peerwarning", peer_id, e)
            return
        if envelope is not None:
            self._route(peer_id, envelope)

    def _route(self, peer_id: str, envelope: Envelope) -> None:
        kind = envelope.kind
        if kind is Kind.HELLO:
            self._on_hello(peer_id, envelope.hello or {})
        elif kind is Kind.PUBLISH:
            if self.publish_handler is not None:
                self.publish_handler(peer_id, envelope)
        elif kind is Kind.CALL:
            self._on_call(peer_id, envelope)
        elif kind in (Kind.MSG, Kind.END, Kind.CANCEL):
            sink = self._server_calls.get((peer_id, envelope.call_id))
            if sink is not None:
                sink.on_envelope(envelope)
        else:
            sink = self._client_calls.get((peer_id, envelope.call_id))
            if sink is not None:
                sink.on_envelope(envelope)

    def _on_hello(self, peer_id: str, hello: Mapping[str, Any]) -> None:
        def names(key: str) -> frozenset[str]:
            value = hello.get(key)
            if isinstance(value, list):
                return frozenset(v for v in value if isinstance(v, str))
            return frozenset()

        version = hello.get("v")
        info = PeerInfo(
            peer_id,
            hello=True,
            version=version if isinstance(version, int) else 0,
            binary=hello.get("binary") is True,
            services=names("services"),
            topics=names("topics"),
            encodings=names("encodings"),
            extra={k: v for k, v in hello.items() if k not in _HELLO_KEYS},
        )
        if peer_id not in self.p2pt.peers:
            return
        self.peers[peer_id] = info
        self.emit("peer", info)

    def _on_call(self, peer_id: str, envelope: Envelope) -> None:
        method = envelope.method or ""
        service = method.split("/")[1] if method.count("/") == 2 else ""
        acceptor = self._services.get(service, {}).get(method)
        if acceptor is None:
            what = "service" if service not in self._services else "method"
            self._reply_status(
                peer_id, envelope.call_id, Status(UNIMPLEMENTED, f"unknown {what}: {method}")
            )
            return
        acceptor.accept(self, peer_id, envelope)

    def _reply_status(self, peer_id: str, call_id: int, status: Status) -> None:
        with contextlib.suppress(PeerClosed):
            self.send(peer_id, Envelope(Kind.STATUS, call_id, status=status))
