"""The vocabulary shared by stubs, servicers and the runtime: shapes, handlers, call details,
interceptors, retry policy, and how payloads are compressed."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, Union

import grpc
import grpc.aio
from google.protobuf.message import Message

from ..errors import MessageTooBig, RemoteProtocolError, RpcError
from ..wire import compression as codecs
from ..wire.envelope import Envelope
from ..wire.payload import Codec, MessageCodec, decode
from ..wire.status import Metadatum, StatusCode

if TYPE_CHECKING:
    from ..mux import Mux

Req = TypeVar("Req")
Rep = TypeVar("Rep")
M = TypeVar("M", bound=Message)


class Cardinality(enum.Enum):
    """The four call shapes: whether requests and replies are single messages or streams."""

    UNARY_UNARY = "unary_unary"
    UNARY_STREAM = "unary_stream"
    STREAM_UNARY = "stream_unary"
    STREAM_STREAM = "stream_stream"

    @property
    def client_streams(self) -> bool:
        return self in (Cardinality.STREAM_UNARY, Cardinality.STREAM_STREAM)

    @property
    def server_streams(self) -> bool:
        return self in (Cardinality.UNARY_STREAM, Cardinality.STREAM_STREAM)


def service_of(method: str) -> str:
    """The service a method belongs to: ``pkg.Service`` of ``/pkg.Service/Method`` (a name of
    another form is its own service)."""
    return method.split("/")[1] if method.count("/") == 2 else method


@dataclass(frozen=True)
class Handler(Generic[Req, Rep]):
    """How a server runs one method: the servicer's function, its shape and message types
    (grpc's ``RpcMethodHandler``; a server takes those too and makes this of them).

    ``func(request or request iterator, context)`` runs as grpc.aio runs a method handler: an
    ``async def`` on the event loop; a plain ``def`` of a single reply on the server's
    ``migration_thread_pool`` (with a context whose ``abort``, ``send_initial_metadata``,
    ``read`` and ``write`` block, and a blocking iterator of the requests); a generator's
    replies are taken from it off the loop. ``codecs``: how requests and replies become
    payloads, when not by ``request_type`` and ``reply_type`` (a
    :class:`~p2prpc.wire.payload.SerializerCodec` of grpc's serializer functions; the types are
    then ``object`` when not known)."""

    func: Callable[..., Any]
    cardinality: Cardinality
    request_type: type[Req]
    reply_type: type[Rep]
    idempotent: bool = False
    codecs: tuple[Codec[Any], Codec[Any]] | None = field(default=None, kw_only=True)

    def attach(self, node: Mux) -> None:
        """Make sure ``node`` runs calls (the node calls this when it starts serving)."""
        from .endpoint import endpoint_of  # the endpoint builds on this module

        endpoint_of(node)

    @property
    def request_codec(self) -> Codec[Any]:
        return self.codecs[0] if self.codecs is not None else _codec(self.request_type)

    @property
    def reply_codec(self) -> Codec[Any]:
        return self.codecs[1] if self.codecs is not None else _codec(self.reply_type)


def _codec(message_type: type[Any]) -> Codec[Any]:
    return MessageCodec(message_type)


class ServiceRegistrar(Protocol):
    """Where servicers are added (a :class:`~p2prpc.node.Node`, or its
    :class:`~p2prpc.rpc.Server`)."""

    def add_service(self, name: str, handlers: Any) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed call is tried again, shaped like gRPC's ``retryPolicy`` (gRFC A6).

    Attempt n waits a random time up to ``min(initial_backoff × multiplier^(n-1), max_backoff)``
    seconds. A call that may have run on a server is retried only when its method is idempotent;
    a call whose replies have begun is never retried (gRFC A6 commits it); a call that streams
    requests is sent them again, as long as it could keep them (the channel's
    ``retry_buffer_size``). The whole call,
    retries included, stays within its ``timeout``. A call that was retried carries the trailer
    ``grpc-previous-rpc-attempts`` (the number of earlier attempts), as gRPC's does.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    backoff_multiplier: float = 2.0
    retryable_status_codes: frozenset[StatusCode] = frozenset({StatusCode.UNAVAILABLE})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class ClientCallDetails:
    """What a client interceptor of p2prpc's form sees and may change before a call goes out
    (grpc.aio's ``ClientCallDetails``, which grpc.aio's interceptor classes are given instead):
    ``timeout`` in seconds, ``metadata`` as (key, value) pairs. ``credentials``: what a grpc.aio
    interceptor set (p2prpc calls take none: a call given any fails ``grpc.aio.UsageError``, as
    on grpc.aio's channels without TLS)."""

    method: str
    timeout: float | None
    metadata: tuple[Metadatum, ...] = ()
    wait_for_ready: bool | None = None
    #: "gzip", "deflate", "zstd", "identity" or a grpc.Compression; None: the channel's.
    compression: CompressionLike = None
    credentials: Any = None

    def with_metadata(self, *extra: Metadatum) -> ClientCallDetails:
        """These details with more metadata entries appended."""
        from ..wire.metadata import normalize

        return replace(self, metadata=self.metadata + normalize(extra))


@dataclass(frozen=True)
class HandlerCallDetails:
    """What a server interceptor sees of an incoming call (grpc's ``HandlerCallDetails``):
    ``invocation_metadata`` as (key, value) pairs, the calling peer's id, and the public keys it
    proved on its connection (``None``: it proved no identity), as ``context.peer_identities()``.
    """

    method: str
    invocation_metadata: tuple[Metadatum, ...] = field(default_factory=tuple)
    peer: str = ""
    peer_identities: tuple[bytes, ...] | None = None


class ClientInterceptor(Protocol):
    """p2prpc's own client interceptor: one method for calls of every shape, a shorthand for
    grpc.aio's four classes (``grpc.aio.UnaryUnaryClientInterceptor`` …), which a ``Channel``
    takes too, mixed with this form in one chain (see :mod:`p2prpc.rpc.interceptors`).

    ``proceed(details)`` makes the call with ``details`` (method, metadata, ``timeout``,
    ``wait_for_ready``, compression: an interceptor may change any; a changed ``timeout`` counts
    from when it proceeds): for a single reply it returns the reply, or raises the call's
    :class:`~p2prpc.errors.RpcError`; for a reply stream it returns the started call object
    (``UnaryStreamCall`` or ``StreamStreamCall``). The interceptor returns the reply (the one it
    got or another), or for a reply stream that call or an async iterable of replies, which is
    then what the caller reads, as grpc.aio's interceptors do. An ``RpcError`` it raises ends the
    call with that status. Requests the caller writes go to the call ``proceed`` made (each
    ``proceed`` makes a new one)."""

    async def intercept_call(
        self,
        details: ClientCallDetails,
        proceed: Callable[[ClientCallDetails], Awaitable[Any]],
    ) -> Any: ...


#: What a ``Channel``'s ``interceptors`` hold: grpc.aio's interceptor classes or p2prpc's form.
AnyClientInterceptor = Union[ClientInterceptor, grpc.aio.ClientInterceptor]  # noqa: UP007

#: grpc.aio's client interceptor classes, each with the method it is called by, by call shape.
GRPC_CLIENT_INTERCEPTORS: dict[Cardinality, tuple[type[grpc.aio.ClientInterceptor], str]] = {
    Cardinality.UNARY_UNARY: (grpc.aio.UnaryUnaryClientInterceptor, "intercept_unary_unary"),
    Cardinality.UNARY_STREAM: (grpc.aio.UnaryStreamClientInterceptor, "intercept_unary_stream"),
    Cardinality.STREAM_UNARY: (grpc.aio.StreamUnaryClientInterceptor, "intercept_stream_unary"),
    Cardinality.STREAM_STREAM: (
        grpc.aio.StreamStreamClientInterceptor,
        "intercept_stream_stream",
    ),
}


def check_client_interceptor(interceptor: object) -> None:
    """``ValueError`` for what is neither one of grpc.aio's four client interceptor classes nor
    p2prpc's form (an object with ``intercept_call``), as ``grpc.aio.insecure_channel`` refuses
    what is none of its four."""
    grpc_classes = tuple(kind for kind, _ in GRPC_CLIENT_INTERCEPTORS.values())
    if isinstance(interceptor, grpc_classes):
        return
    if not isinstance(interceptor, grpc.aio.ClientInterceptor) and callable(
        getattr(interceptor, "intercept_call", None)
    ):
        return
    raise ValueError(
        f"Interceptor {interceptor} must be UnaryUnaryClientInterceptor or "
        "UnaryStreamClientInterceptor or StreamUnaryClientInterceptor or "
        "StreamStreamClientInterceptor (grpc.aio's), or have p2prpc's "
        "intercept_call(details, proceed)"
    )


class ServerInterceptor(Protocol):
    """p2prpc's own form of a server interceptor, a convenience beside grpc.aio's: the call's
    details first (with the calling peer and the keys it proved), ``proceed`` second; return the
    handler to run (possibly wrapped), ``None`` for UNIMPLEMENTED, or raise :class:`RpcError` to
    refuse the call with that status. Instances of ``grpc.aio.ServerInterceptor``
    (``intercept_service(continuation, handler_call_details)``, refusing by returning a handler
    that aborts) run as grpc.aio runs them, in the same chain."""

    async def intercept_service(
        self,
        details: HandlerCallDetails,
        proceed: Callable[[HandlerCallDetails], Awaitable[Handler[Any, Any] | None]],
    ) -> Handler[Any, Any] | None: ...


def unimplemented(method: str) -> RpcError:
    """The error a servicer method that was not overridden raises."""
    return RpcError(StatusCode.UNIMPLEMENTED, f"method not implemented: {method}")


class _Unimplemented:
    """An async iterator that fails with UNIMPLEMENTED when first read."""

    def __init__(self, method: str) -> None:
        self._method = method

    def __aiter__(self) -> _Unimplemented:
        return self

    async def __anext__(self) -> Any:
        raise unimplemented(self._method)


def unimplemented_stream(method: str) -> AsyncIterator[Any]:
    """What a streaming servicer method that was not overridden returns."""
    return _Unimplemented(method)


# -- payloads -------------------------------------------------------------------------------------


def pack(
    codec: Codec[Any], value: Any, binary: bool, encoding: str | None, max_size: int
) -> tuple[Any, bool]:
    """``(payload, compressed)``: a value as an envelope payload, compressed with the call's
    encoding (binary form only) when that makes it smaller."""
    payload = codec.encode(value, binary, max_size)
    if encoding is None or not binary:
        return payload, False
    return codecs.compress(encoding, payload)


def unpack(
    codec: Codec[Any],
    envelope: Envelope,
    encoding: str | None,
    max_size: int,
    *,
    max_ratio: float = codecs.MAX_RATIO,
    decoded: Callable[[int], None] | None = None,
) -> Any:
    """An envelope's payload as a value, decompressed if it says so: RESOURCE_EXHAUSTED past
    ``max_size`` bytes or when it inflates more than ``max_ratio`` times (refused as soon as
    decompression passes the bound), INVALID_ARGUMENT when it does not parse, INTERNAL when it
    cannot be decompressed. ``decoded`` is told the decompressed size (the node settles what it
    charged its sender, :meth:`p2prpc.mux.Mux.settle_work`). A JSON payload may be in the form
    it was kept in (:func:`~p2prpc.wire.payload.keep`)."""
    payload = envelope.payload
    if envelope.compressed:
        if encoding is None:
            raise RpcError(StatusCode.INTERNAL, "a compressed payload in an uncompressed call")
        try:
            payload = codecs.decompress(encoding, payload, max_size, max_ratio)
        except MessageTooBig as e:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(e)) from e
        except RemoteProtocolError as e:
            raise RpcError(StatusCode.INTERNAL, str(e)) from e
        if decoded is not None:
            decoded(len(payload))
    return decode(codec, payload, max_size)


#: A compression as a call or a channel takes it: gRPC's encoding name (``"gzip"``,
#: ``"deflate"``, ``"zstd"``, ``"identity"``), a ``grpc.Compression`` member, or ``None``.
CompressionLike = str | grpc.Compression | None

_GRPC_COMPRESSION = {
    grpc.Compression.NoCompression: codecs.IDENTITY,
    grpc.Compression.Deflate: "deflate",
    grpc.Compression.Gzip: "gzip",
}


def encoding_of(compression: CompressionLike) -> str | None:
    """The encoding a compression names: a ``grpc.Compression`` member by gRPC's name for it
    (``NoCompression``: ``"identity"``, no compression whatever the channel's), a name as it is;
    ``ValueError`` for a compression p2prpc does not know."""
    if compression is None:
        return None
    if isinstance(compression, grpc.Compression):
        return _GRPC_COMPRESSION[compression]
    check_encoding(compression)
    return compression


def check_encoding(compression: CompressionLike) -> None:
    """``ValueError`` for a compression p2prpc does not know."""
    if isinstance(compression, grpc.Compression):
        return
    known = compression is None or compression in codecs.CODECS or compression == codecs.IDENTITY
    if not known:
        raise ValueError(f"unknown compression {compression!r}: one of {sorted(codecs.CODECS)}")
