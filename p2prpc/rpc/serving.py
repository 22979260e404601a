"""The server half of a node, shaped as grpc.aio's ``Server``: what it serves, the interceptors
that wrap each call, how many calls it serves at once, and its life.

Every :class:`~p2prpc.node.Node` holds one (``node.server``), made from the node's keywords
(``server_interceptors``, ``maximum_concurrent_rpcs``, ``migration_thread_pool``,
``compression``). It takes servicers three ways, all served on the same call machinery:

- p2prpc's generated ``add_…Servicer_to_node(servicer, node)`` (:meth:`Server.add_service` with
  :class:`~p2prpc.rpc.Handler` objects);
- grpcio-tools' generated ``add_…Servicer_to_server(servicer, server)``, which calls
  :meth:`Server.add_generic_rpc_handlers` and :meth:`Server.add_registered_method_handlers`
  with grpc's ``RpcMethodHandler`` objects (a node takes them too);
- any ``grpc.GenericRpcHandler``, asked for each call's handler as grpc asks it.

The node's hello lists what its server serves, so peers' stubs find it: every service added
with a name (a generic handler is listed when it is a ``grpc.ServiceRpcHandler``, which names its
service; another is asked for calls that reach this node, but no peer is told of it).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import grpc
import grpc.aio
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from ..errors import NoAddress
from ..wire.compression import CODECS, IDENTITY
from ..wire.payload import Codec, MessageCodec, SerializerCodec
from ..wire.status import Metadatum
from .base import Cardinality, Handler, HandlerCallDetails, service_of
from .endpoint import endpoint_of

if TYPE_CHECKING:
    from ..mux import Mux

__all__ = [
    "GrpcHandlerCallDetails",
    "MethodAcceptor",
    "Server",
    "ThreadShares",
    "as_grpc_handler",
    "as_handler",
    "compression_name",
    "intercept",
    "server_of",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds :meth:`Server.stop` waits for the methods it cancelled to end.
STOP_TIMEOUT = 2.0


class MethodAcceptor(Protocol):
    """What a server keeps for each method (:class:`~p2prpc.rpc.Handler` is one)."""

    def attach(self, node: Mux) -> None:
        """The node now serves this method."""


class GrpcHandlerCallDetails(NamedTuple):
    """What a ``grpc.aio.ServerInterceptor`` is given of a call: grpc.aio's own namedtuple of the
    method and the metadata the client sent, as (key, value) pairs."""

    method: str
    invocation_metadata: tuple[Metadatum, ...]


# -- grpc's method handlers -----------------------------------------------------------------------

_SHAPES = {
    (False, False): Cardinality.UNARY_UNARY,
    (False, True): Cardinality.UNARY_STREAM,
    (True, False): Cardinality.STREAM_UNARY,
    (True, True): Cardinality.STREAM_STREAM,
}

_message_types_found: dict[str, tuple[type[Message], type[Message]]] = {}


def _message_types(method: str) -> tuple[type[Message] | None, type[Message] | None]:
    """The request and reply message types of ``/package.Service/Method`` from the default
    descriptor pool (where the service's ``_pb2`` module put them), or ``None`` each."""
    found = _message_types_found.get(method)
    if found is not None:
        return found
    if method.count("/") != 2:
        return None, None
    _, service, name = method.split("/")
    try:
        descriptor = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
        types = (
            message_factory.GetMessageClass(descriptor.input_type),
            message_factory.GetMessageClass(descriptor.output_type),
        )
    except (KeyError, TypeError):
        return None, None
    if len(_message_types_found) < 4096:
        _message_types_found[method] = types
    return types


def _message_class(function: Any) -> type[Message] | None:
    """The message class a bound ``Msg.FromString`` belongs to."""
    owner = getattr(function, "__self__", None)
    return owner if isinstance(owner, type) and issubclass(owner, Message) else None


class _Presented(grpc.RpcMethodHandler):  # type: ignore[type-arg]
    """A :class:`~p2prpc.rpc.Handler` as grpc's ``RpcMethodHandler``: what the continuation
    of a ``grpc.aio.ServerInterceptor`` returns. Given back unchanged, it is the handler itself."""

    def __init__(self, handler: Handler[Any, Any]) -> None:
        self.handler = handler
        shape = handler.cardinality
        self.request_streaming = shape.client_streams
        self.response_streaming = shape.server_streams
        self.request_deserializer = _deserializer(handler.request_codec)
        self.response_serializer = _serializer(handler.reply_codec)
        for each in Cardinality:
            setattr(self, each.value, handler.func if each is shape else None)

    def __repr__(self) -> str:
        return f"RpcMethodHandler({self.handler!r})"


def _deserializer(codec: Codec[Any]) -> Callable[[bytes], Any] | None:
    if isinstance(codec, SerializerCodec):
        return codec.deserialize
    if isinstance(codec, MessageCodec):
        return codec.message_type.FromString  # type: ignore[no-any-return]
    return None


def _serializer(codec: Codec[Any]) -> Callable[[Any], bytes] | None:
    if isinstance(codec, SerializerCodec):
        return codec.serialize
    if isinstance(codec, MessageCodec):
        return codec.message_type.SerializeToString  # type: ignore[no-any-return]
    return None


def as_grpc_handler(handler: Handler[Any, Any]) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    """``handler`` as grpc's ``RpcMethodHandler`` (``request_streaming``,
    ``request_deserializer``, ``unary_unary``, …)."""
    return _Presented(handler)


def as_handler(method: str, handler: Any) -> Handler[Any, Any]:
    """What serves ``method``: a :class:`~p2prpc.rpc.Handler` as it is, or one made of grpc's
    ``RpcMethodHandler`` (``grpc.unary_unary_rpc_method_handler(...)`` and the like): its shape,
    its function, and its serializer functions as the codecs
    (:class:`~p2prpc.wire.payload.SerializerCodec`). The message types, which the JSON form
    and reflection need, come from the deserializer (``Msg.FromString``) or from the method's
    descriptor when its ``_pb2`` module is imported. ``TypeError`` for anything else."""
    if isinstance(handler, Handler):
        return handler
    if isinstance(handler, _Presented):
        return handler.handler
    try:
        shape = _SHAPES[(bool(handler.request_streaming), bool(handler.response_streaming))]
        func = getattr(handler, shape.value)
        deserialize = handler.request_deserializer
        serialize = handler.response_serializer
    except AttributeError:
        func = None
    if func is None:
        raise TypeError(
            f"{method}: {handler!r} is neither a p2prpc.rpc.Handler nor a grpc RpcMethodHandler "
            "with the function for its shape"
        )
    request_type, reply_type = _message_types(method)
    request_type = _message_class(deserialize) or request_type
    codecs = (
        SerializerCodec(None, deserialize, request_type),
        SerializerCodec(serialize, None, reply_type),
    )
    return Handler(
        func,
        shape,
        request_type if deserialize is not None and request_type is not None else object,
        reply_type if serialize is not None and reply_type is not None else object,
        codecs=codecs,
    )


# -- interceptors ---------------------------------------------------------------------------------


def checked_interceptors(interceptors: Iterable[Any]) -> tuple[Any, ...]:
    """The interceptors as a tuple; ``ValueError`` (as ``grpc.aio.server`` raises) for one that
    is neither a ``grpc.aio.ServerInterceptor`` nor p2prpc's form
    (:class:`~p2prpc.rpc.ServerInterceptor`, an ``intercept_service(details, proceed)``)."""
    result = tuple(interceptors)
    for interceptor in result:
        if isinstance(interceptor, grpc.aio.ServerInterceptor):
            continue
        if not callable(getattr(interceptor, "intercept_service", None)):
            raise ValueError(
                f"{interceptor!r} is not a server interceptor: give a grpc.aio.ServerInterceptor "
                "or an object with p2prpc's intercept_service(details, proceed)"
            )
    return result


async def intercept(
    interceptors: Sequence[Any],
    details: HandlerCallDetails,
    terminal: Callable[[HandlerCallDetails], Awaitable[Handler[Any, Any] | None]],
) -> Handler[Any, Any] | None:
    """Run a call's details through ``interceptors`` (outermost first), each in its own form:
    a ``grpc.aio.ServerInterceptor`` gets ``(continuation, GrpcHandlerCallDetails)`` and
    gets and returns grpc's ``RpcMethodHandler``; p2prpc's form gets ``(details, proceed)``
    and p2prpc's :class:`~p2prpc.rpc.Handler`. ``terminal`` finds the handler past the last."""

    async def proceed(index: int, current: HandlerCallDetails) -> Handler[Any, Any] | None:
        if index == len(interceptors):
            return await terminal(current)
        interceptor = interceptors[index]
        if isinstance(interceptor, grpc.aio.ServerInterceptor):

            async def continuation(asked: Any) -> Any:
                changed = replace(
                    current,
                    method=asked.method,
                    invocation_metadata=tuple(asked.invocation_metadata or ()),
                )
                found = await proceed(index + 1, changed)
                return None if found is None else as_grpc_handler(found)

            given = GrpcHandlerCallDetails(current.method, tuple(current.invocation_metadata))
            got = await interceptor.intercept_service(continuation, given)  # type: ignore[arg-type]
        else:
            got = await interceptor.intercept_service(current, lambda d: proceed(index + 1, d))
        return None if got is None else as_handler(current.method, got)

    return await proceed(0, details)


# -- compression ----------------------------------------------------------------------------------

_COMPRESSIONS = {
    grpc.Compression.NoCompression: "identity",
    grpc.Compression.Deflate: "deflate",
    grpc.Compression.Gzip: "gzip",
}


_KNOWN = frozenset({IDENTITY, "gzip", *CODECS})


def compression_name(compression: grpc.Compression | str | None) -> str | None:
    """The encoding a ``grpc.Compression`` (or p2prpc's name for one: ``"deflate"``,
    ``"zstd"``, ``"identity"``) stands for; ``ValueError`` for anything else."""
    if compression is None:
        return None
    if isinstance(compression, grpc.Compression):
        return _COMPRESSIONS[compression]
    if isinstance(compression, str) and compression in _KNOWN:
        return compression
    raise ValueError(
        f"not a compression: {compression!r} (a grpc.Compression, or one of {sorted(_KNOWN)})"
    )


# -- threads --------------------------------------------------------------------------------------

#: Threads of the pool a server makes when given none (Python's default executor's size).
DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)


class ThreadShares:
    """The threads of a server's pool that plain ``def`` methods run on, shared out among peers:
    each peer's methods hold at most ``per_peer`` threads at once; a peer's next method waits
    (on the event loop, holding no thread) until one of its own is back. A thread counts until
    the function it runs returns, however its call ended (a method still computing after its
    call's deadline still holds it), and a wait ends with its call (cancellation)."""

    def __init__(self, pool: Executor, per_peer: int) -> None:
        if per_peer < 1:
            raise ValueError("max_threads_per_peer must be at least 1")
        self.pool = pool
        self.per_peer = per_peer
        self._held: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}

    def held(self, peer_id: str) -> int:
        """Threads ``peer_id``'s methods hold now."""
        return self._held.get(peer_id, 0)

    async def run(
        self,
        peer_id: str,
        func: Callable[..., T],
        *args: Any,
        submitted: Callable[[concurrent.futures.Future[T]], None] | None = None,
    ) -> T:
        """``func(*args)`` on the pool once ``peer_id`` has a thread to spare; its result.
        ``submitted`` is given the pool's future as soon as there is one (what runs on after a
        cancelled wait for the result). ``RuntimeError`` once the pool is shut down."""
        await self._take(peer_id)
        loop = asyncio.get_running_loop()
        try:
            done = self.pool.submit(func, *args)
        except BaseException:
            self._give(peer_id)
            raise
        if submitted is not None:
            submitted(done)

        def returned(_: Any) -> None:  # on the thread that ran it (or cancelled it)
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing waits
                loop.call_soon_threadsafe(self._give, peer_id)

        done.add_done_callback(returned)
        return await asyncio.wrap_future(done)

    async def _take(self, peer_id: str) -> None:
        while not self._has_room(peer_id):
            waiter = asyncio.get_running_loop().create_future()
            queue = self._waiting.setdefault(peer_id, collections.deque())
            queue.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    # Woken, but its call ended in the same turn: the share it was woken for
                    # goes to the next waiter.
                    self._forget(peer_id, queue, waiter)
                    self._wake(peer_id)
                raise
            finally:
                self._forget(peer_id, queue, waiter)
        self._held[peer_id] = self._held.get(peer_id, 0) + 1

    def _forget(
        self, peer_id: str, queue: collections.deque[asyncio.Future[None]], waiter: Any
    ) -> None:
        with contextlib.suppress(ValueError):
            queue.remove(waiter)
        if not queue and self._waiting.get(peer_id) is queue:
            del self._waiting[peer_id]

    def _has_room(self, peer_id: str) -> bool:
        return self._held.get(peer_id, 0) < self.per_peer

    def _give(self, peer_id: str) -> None:
        left = self._held.get(peer_id, 1) - 1
        if left > 0:
            self._held[peer_id] = left
        else:
            self._held.pop(peer_id, None)
        self._wake(peer_id)

    def _wake(self, peer_id: str) -> None:
        """Wake the first of ``peer_id``'s waiters not woken yet."""
        for waiter in self._waiting.get(peer_id, ()):
            if not waiter.done():
                waiter.set_result(None)
                break


# -- the server -----------------------------------------------------------------------------------


class Server(grpc.aio.Server):
    """A node's server: a ``grpc.aio.Server``, with its methods (:mod:`p2prpc.rpc.serving`).

    ``interceptors``: what wraps every call served, outermost first (``grpc.aio.server``'s
    ``interceptors``): ``grpc.aio.ServerInterceptor`` instances, and p2prpc's own form
    (:class:`~p2prpc.rpc.ServerInterceptor`); ``ValueError`` for anything else.
    ``maximum_concurrent_rpcs``: calls served at once (``None``: no limit); a call past it is
    answered RESOURCE_EXHAUSTED at once. ``migration_thread_pool``: where plain ``def`` methods
    run, as in grpc.aio (``None``: a pool of :data:`DEFAULT_THREADS` the server makes, shut down
    with its node). ``max_threads_per_peer``: threads of that pool one peer's methods may hold
    at once (``None``: half the pool, at least 1, and at most the node's
    ``max_calls_per_peer``): a peer's next plain ``def`` method waits, holding no thread, until
    one of its own returns, so that no peer can take the whole pool (with request streams it
    leaves silent, or methods still computing after their calls ended).
    ``compression``: how
    replies are compressed unless a method says otherwise (``context.set_compression``):
    ``grpc.Compression.NoCompression`` sends them uncompressed; an encoding is used when the
    call named the same one (a p2prpc call has one encoding both ways), else replies go
    uncompressed, as gRPC sends them when the client does not take the server's choice.
    ``handlers``: ``grpc.GenericRpcHandler`` objects to serve from the start.

    A server has no address (:meth:`add_insecure_port` raises
    :class:`~p2prpc.errors.NoAddress`); it serves while its node is in the swarm.
    """

    def __init__(
        self,
        node: Mux,
        *,
        migration_thread_pool: Executor | None = None,
        handlers: Sequence[Any] | None = None,
        interceptors: Sequence[Any] | None = None,
        maximum_concurrent_rpcs: int | None = None,
        compression: grpc.Compression | str | None = None,
        max_threads_per_peer: int | None = None,
    ) -> None:
        endpoint = endpoint_of(node)
        if endpoint.server is not None:
            raise ValueError("this node has a server already (node.server)")
        if maximum_concurrent_rpcs is not None and maximum_concurrent_rpcs < 1:
            raise ValueError("maximum_concurrent_rpcs must be at least 1, or None")
        self.node = node
        self.migration_thread_pool = migration_thread_pool
        self._own_pool = migration_thread_pool is None
        self._max_threads_per_peer = max_threads_per_peer
        if max_threads_per_peer is not None and max_threads_per_peer < 1:
            raise ValueError("max_threads_per_peer must be at least 1, or None")
        self._threads: ThreadShares | None = None
        self._closed = False  # the node stopped
        self.maximum_concurrent_rpcs = maximum_concurrent_rpcs
        self.compression = compression_name(compression)
        self._interceptors = checked_interceptors(interceptors or ())
        self._services: dict[str, dict[str, Handler[Any, Any]]] = {}
        self._generic: list[Any] = []
        self._stopping = False
        self._stop_by: float | None = None  # loop time the grace ends (the earliest asked)
        self._sooner = asyncio.Event()
        self._terminated = asyncio.Event()
        endpoint.server = self
        if handlers:
            self.add_generic_rpc_handlers(handlers)

    # -- what it serves -----------------------------------------------------------------------

    @property
    def interceptors(self) -> tuple[Any, ...]:
        return self._interceptors

    @interceptors.setter
    def interceptors(self, interceptors: Sequence[Any]) -> None:
        self._interceptors = checked_interceptors(interceptors)

    def add_service(self, name: str, handlers: Mapping[str, Any]) -> None:
        """Serve service ``name``: ``handlers`` maps ``/package.Service/Method`` to a
        :class:`~p2prpc.rpc.Handler` or grpc's ``RpcMethodHandler`` (the generated
        ``add_…Servicer_to_node`` calls this); it replaces what served ``name`` before."""
        self._services[name] = {method: as_handler(method, h) for method, h in handlers.items()}
        self._announce()

    def remove_service(self, name: str) -> None:
        """Stop serving ``name`` (calls in progress go on); generic handlers that name it too."""
        self._services.pop(name, None)
        self._generic = [g for g in self._generic if _service_name(g) != name]
        self._announce()

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[Any]) -> None:
        """Serve what these ``grpc.GenericRpcHandler`` objects serve: each call's handler is asked
        of them in order (``service(handler_call_details)``), after the registered handlers.
        ``AttributeError`` for one without ``service``, as grpc raises."""
        generic_rpc_handlers = list(generic_rpc_handlers)
        for handler in generic_rpc_handlers:
            if not callable(getattr(handler, "service", None)):
                raise AttributeError(
                    f'"{handler!r}" must conform to grpc.GenericRpcHandler type but does not have '
                    '"service" method!'
                )
        self._generic.extend(generic_rpc_handlers)
        self._announce()

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Any]
    ) -> None:
        """Serve the methods of ``service_name``: ``method_handlers`` maps method names
        (``"GetFeature"``) to grpc's ``RpcMethodHandler`` (or :class:`~p2prpc.rpc.Handler`).
        They take precedence over generic handlers, as in grpc."""
        table = self._services.setdefault(service_name, {})
        for name, handler in method_handlers.items():
            method = f"/{service_name}/{name}"
            table[method] = as_handler(method, handler)
        self._announce()

    @property
    def services(self) -> frozenset[str]:
        """The services served here, by name (those the node's hello lists)."""
        named = (_service_name(g) for g in self._generic)
        return frozenset(self._services).union(n for n in named if n is not None)

    def service_handlers(self, name: str) -> Mapping[str, Handler[Any, Any]]:
        """What serves each method of ``name`` (registered ones; empty when it is not served,
        or only by generic handlers)."""
        return self._services.get(name, {})

    def method_handler(
        self, method: str, metadata: Sequence[Metadatum] = ()
    ) -> Handler[Any, Any] | None:
        """What serves ``/package.Service/Method`` here: the registered handler, else the first
        generic handler's answer (asked with ``metadata``, the call's), else ``None``."""
        handler = self._services.get(service_of(method) if method.count("/") == 2 else "", {})
        found = handler.get(method)
        if found is not None:
            return found
        if self._generic:
            details = GrpcHandlerCallDetails(method, tuple(metadata))
            for generic in self._generic:
                answer = generic.service(details)
                if answer is not None:
                    return as_handler(method, answer)
        return None

    def _announce(self) -> None:
        if not self._stopping:
            self.node.set_services(self.services)

    # -- life ---------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` began (or the node is stopping): new calls are refused."""
        return self._stopping or self.node.stopping

    def add_insecure_port(self, address: str) -> int:
        """Raises :class:`~p2prpc.errors.NoAddress`: a p2prpc server listens on no address."""
        raise NoAddress(_NO_ADDRESS.format(address=address))

    def add_secure_port(self, address: str, server_credentials: Any = None) -> int:
        """Raises :class:`~p2prpc.errors.NoAddress`: a p2prpc server listens on no address, and
        takes no TLS credentials (a closed swarm's secret and identities are its credentials)."""
        raise NoAddress(_NO_ADDRESS.format(address=address))

    async def start(self) -> None:
        """Serve: the node joins the swarm if it has not (it serves from then on, started this
        way or by ``node.start()``). ``RuntimeError`` once stopped."""
        if self.stopping:
            raise RuntimeError("a stopped server does not start again")
        await self.node.start()

    async def stop(self, grace: float | None) -> None:
        """Stop serving, as ``grpc.aio.Server.stop(grace)``: at once new calls are refused
        (UNAVAILABLE) and peers are told this node serves nothing (its hello), so their stubs
        pick other servers; calls in progress get ``grace`` seconds (``None``: none) to finish,
        then are cancelled (their callers get UNAVAILABLE). Returns once the methods have
        ended. A second call waits for the first; a smaller grace ends it sooner. The node
        stays in the swarm for its own calls and topics (``node.stop(grace)`` leaves it, and
        stops the server too)."""
        loop = asyncio.get_running_loop()
        by = loop.time() + (grace or 0.0)
        if self._stop_by is None or by < self._stop_by:
            self._stop_by = by
            self._sooner.set()
        if self._stopping:
            await self._terminated.wait()
            return
        self._stopping = True
        self.node.set_services(())
        endpoint = endpoint_of(self.node)
        try:
            while endpoint.serving and (left := self._stop_by - loop.time()) > 0:
                self._sooner.clear()
                waits = [
                    asyncio.ensure_future(endpoint.wait_served()),
                    asyncio.ensure_future(self._sooner.wait()),
                ]
                try:
                    await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
            tasks = endpoint.abandon_served()
            if tasks:
                _, stubborn = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
                for task in stubborn:
                    logger.warning("a method ignored its cancellation: %r", task)
        finally:
            self._terminated.set()

    def node_closed(self) -> None:
        """The node stopped: so did its server (and the pool it made, if it made one)."""
        self._stopping = True
        self._terminated.set()
        self._closed = True
        if self._own_pool and self._threads is not None:
            # Kept, shut down: what still asks for a thread is refused (RuntimeError).
            self._threads.pool.shutdown(wait=False, cancel_futures=True)

    @property
    def threads(self) -> ThreadShares:
        """The pool plain ``def`` methods run on, shared out among peers (made on first use;
        ``RuntimeError`` once the node has stopped without having made one)."""
        if self._threads is None:
            if self._closed:
                raise RuntimeError("the node has stopped: its server runs nothing more")
            pool = self.migration_thread_pool
            if pool is None:
                pool = ThreadPoolExecutor(DEFAULT_THREADS, thread_name_prefix="p2prpc-server")
            size = getattr(pool, "_max_workers", DEFAULT_THREADS)
            per_peer = self._max_threads_per_peer
            if per_peer is None:
                per_peer = max(1, min(size // 2, getattr(self.node, "max_calls_per_peer", size)))
            self._threads = ThreadShares(pool, per_peer)
        return self._threads

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Wait until the server has stopped (:meth:`stop`, or its node stopping), or for
        ``timeout`` seconds (``None``: no limit); as grpc.aio's, returns whether it timed out."""
        try:
            async with asyncio.timeout(timeout):
                await self._terminated.wait()
        except TimeoutError:
            return True
        return False


_NO_ADDRESS = (
    "a p2prpc server listens on no address ({address!r}): peers find it through the swarm "
    "(its node's trackers and identifier), so leave the port out and start the node"
)


def _service_name(generic: Any) -> str | None:
    name = getattr(generic, "service_name", None)
    if callable(name):
        found = name()
        return found if isinstance(found, str) else None
    return None


def server_of(node: Mux) -> Server:
    """The server of ``node`` (a plain one made on first use, for a node built without one)."""
    found = endpoint_of(node).server
    return found if found is not None else Server(node)
