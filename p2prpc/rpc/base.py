"""The vocabulary shared by stubs, servicers and the runtime: cardinalities, handlers, contexts."""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from ..errors import MessageTooBig, RemoteProtocolError
from ..wire import compression as codecs
from ..wire.envelope import Envelope
from .status import RpcError, StatusCode

if TYPE_CHECKING:
    from ..node import Node

Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=Message)
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


@dataclass(frozen=True)
class Handler(Generic[Req, Rep]):
    """How a server runs one method: the servicer's function, its shape and message types."""

    func: Callable[..., Any]
    cardinality: Cardinality
    request_type: type[Req]
    reply_type: type[Rep]
    idempotent: bool = False

    def accept(self, node: Node, peer_id: str, envelope: Envelope) -> None:
        """Start the server side of a call (the node calls this for each new call)."""
        from .server import start_server_call  # server builds on this module

        start_server_call(node, peer_id, envelope, self)


class Channel(Protocol):
    """What a stub calls through: a :class:`~p2prpc.node.Node` (any peer serving the service), or
    ``node.to(peer_id)`` (that peer only)."""

    @property
    def rpc_node(self) -> Node: ...

    @property
    def rpc_peer(self) -> str | None: ...


class ServiceRegistrar(Protocol):
    """Where servicers are added (a :class:`~p2prpc.node.Node`)."""

    def add_service(self, name: str, handlers: Mapping[str, Handler[Any, Any]]) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed call is tried again, shaped like gRPC's ``retryPolicy`` (gRFC A6).

    Attempt n waits a random time up to ``min(initial_backoff × multiplier^(n-1), max_backoff)``.
    A call that may have run on a server is retried only when its method is idempotent.
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
    """What a client interceptor sees and may change before a call goes out."""

    method: str
    timeout: float | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    wait_for_ready: bool | None = None
    compression: str | None = None  # "deflate", "zstd" or "identity"; None: the node's default

    def with_metadata(self, **extra: str) -> ClientCallDetails:
        return replace(self, metadata={**self.metadata, **extra})


@dataclass(frozen=True)
class HandlerCallDetails:
    """What a server interceptor sees of an incoming call."""

    method: str
    metadata: Mapping[str, str]
    peer: str


class ClientInterceptor(Protocol):
    """Wraps outgoing calls. ``proceed`` makes the call: for a unary-reply call it returns the
    reply; for a streaming-reply call it returns the started call object."""

    async def intercept_call(
        self,
        details: ClientCallDetails,
        proceed: Callable[[ClientCallDetails], Awaitable[Any]],
    ) -> Any: ...


class ServerInterceptor(Protocol):
    """Wraps incoming calls: return the handler to run (possibly wrapped), or ``None`` for
    UNIMPLEMENTED, or raise :class:`RpcError` to refuse the call."""

    async def intercept_service(
        self,
        details: HandlerCallDetails,
        proceed: Callable[[HandlerCallDetails], Awaitable[Handler[Any, Any] | None]],
    ) -> Handler[Any, Any] | None: ...


class ServicerContext:
    """What a servicer method gets besides its request: metadata, deadline, trailers, abort."""

    def __init__(self, method: str, peer: str, metadata: Mapping[str, str], deadline: float | None):
        self.method = method
        self._peer = peer
        self._metadata = dict(metadata)
        self._deadline = deadline
        self._trailers: dict[str, str] = {}
        self._code = StatusCode.OK
        self._details = ""
        self._cancelled = False

    def peer(self) -> str:
        """The calling peer's id (40 hex characters)."""
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._metadata.items())

    @property
    def metadata(self) -> Mapping[str, str]:
        return self._metadata

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline, or ``None`` when the call has none."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def set_trailing_metadata(self, metadata: Mapping[str, str]) -> None:
        self._trailers.update(metadata)

    @property
    def trailing_metadata(self) -> Mapping[str, str]:
        return self._trailers

    def set_code(self, code: StatusCode) -> None:
        """End the call with this status when the method returns (instead of a reply)."""
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    @property
    def code(self) -> StatusCode:
        return self._code

    @property
    def details(self) -> str:
        return self._details

    def cancelled(self) -> bool:
        """Whether the client cancelled the call (or went away)."""
        return self._cancelled

    async def abort(
        self, code: StatusCode, details: str = "", trailing_metadata: Mapping[str, str] = {}
    ) -> NoReturn:
        """End the call now with ``code``; never returns."""
        if code is StatusCode.OK:
            raise ValueError("abort needs a status code other than OK")
        self._trailers.update(trailing_metadata)
        raise RpcError(code, details, self._trailers)


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


def encode_payload(message: Message, binary: bool, max_size: int) -> Any:
    """A message as an envelope payload: protobuf bytes, or proto3 JSON."""
    size = message.ByteSize()
    if size > max_size:
        raise RpcError(
            StatusCode.RESOURCE_EXHAUSTED, f"message of {size} bytes exceeds the {max_size} limit"
        )
    if binary:
        return message.SerializeToString()
    return json_format.MessageToDict(message)


def decode_payload(payload: Any, message_type: type[M], max_size: int) -> M:
    """Read an envelope payload as ``message_type``; INVALID_ARGUMENT or RESOURCE_EXHAUSTED."""
    if isinstance(payload, bytes | bytearray | memoryview):
        if len(payload) > max_size:
            raise RpcError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"message of {len(payload)} bytes exceeds the {max_size} limit",
            )
        try:
            return message_type.FromString(bytes(payload))
        except DecodeError as e:
            raise RpcError(StatusCode.INVALID_ARGUMENT, f"cannot parse message: {e}") from e
    message = message_type()
    try:
        json_format.ParseDict(payload if payload is not None else {}, message, True)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as e:
        raise RpcError(StatusCode.INVALID_ARGUMENT, f"cannot parse message: {e}") from e
    size = message.ByteSize()
    if size > max_size:
        raise RpcError(
            StatusCode.RESOURCE_EXHAUSTED, f"message of {size} bytes exceeds the {max_size} limit"
        )
    return message


def pack_payload(
    message: Message, binary: bool, encoding: str | None, max_size: int
) -> tuple[Any, bool]:
    """``(payload, compressed)``: a message as an envelope payload, compressed with the call's
    encoding (binary form only) when that makes it smaller."""
    payload = encode_payload(message, binary, max_size)
    if encoding is None or not binary:
        return payload, False
    return codecs.compress(encoding, payload)


def unpack_payload(envelope: Envelope, encoding: str | None, max_size: int) -> Any:
    """An envelope's payload, decompressed if it says so: RESOURCE_EXHAUSTED past ``max_size``,
    INTERNAL when it cannot be read."""
    if not envelope.compressed:
        return envelope.payload
    if encoding is None:
        raise RpcError(StatusCode.INTERNAL, "a compressed payload in an uncompressed call")
    try:
        return codecs.decompress(encoding, envelope.payload, max_size)
    except MessageTooBig as e:
        raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(e)) from e
    except RemoteProtocolError as e:
        raise RpcError(StatusCode.INTERNAL, str(e)) from e
