"""Messages as envelope payloads, and back: one codec for calls and topics. Pure: no I/O.

A payload is protobuf bytes in the binary form and proto3 JSON in the JSON form
(``google.protobuf.json_format``: lowerCamelCase names, 64-bit integers as strings, enums by name,
bytes in base64; unknown fields ignored). Every size is checked against ``max_size`` bytes of
serialized message, as gRPC checks ``grpc.max_receive_message_length``. Errors are the statuses
gRPC gives them: RESOURCE_EXHAUSTED past the size, INVALID_ARGUMENT for what does not parse.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Generic, Protocol, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from ..errors import RpcError
from .held import held_size
from .status import StatusCode

__all__ = [
    "Codec",
    "Decoded",
    "JSONCodec",
    "JSONText",
    "MessageCodec",
    "SerializerCodec",
    "decode",
    "held_size",
    "keep",
    "kept_size",
    "too_big",
]

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def too_big(size: int, max_size: int) -> RpcError:
    return RpcError(
        StatusCode.RESOURCE_EXHAUSTED, f"message of {size} bytes exceeds the {max_size} limit"
    )


class JSONText:
    """A received JSON value kept as compact UTF-8 text until it is read (:meth:`value` parses
    it again): a parsed value can hold up to 24 times the text it came as, this holds about
    what was sent (at most the sent text's bytes, but for numbers written shorter than Python
    writes them: ``1e15`` is kept as ``1000000000000000.0``, at most 4.5 times as long)."""

    __slots__ = ("data",)

    def __init__(self, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        # Lone surrogates (``"\\ud800"`` in the text) survive as they came.
        self.data = text.encode("utf-8", "surrogatepass")

    def value(self) -> Any:
        """The JSON value, parsed again (each call parses anew)."""
        return json.loads(self.data.decode("utf-8", "surrogatepass"))

    def size(self) -> int:
        """Bytes it holds: the text and the objects around it."""
        return sys.getsizeof(self.data) + _KEPT_OBJECT


class Decoded:
    """A received JSON payload decoded at once into the message its reader expects, or the
    status decoding gave (raised when it is read, as its reader would have raised it then)."""

    __slots__ = ("code", "details", "message", "message_type")

    def __init__(
        self,
        message_type: type[Message],
        message: Message | None,
        code: StatusCode = StatusCode.OK,
        details: str = "",
    ) -> None:
        self.message_type = message_type
        self.message = message
        self.code = code  # why it did not decode: INVALID_ARGUMENT, RESOURCE_EXHAUSTED
        self.details = details

    def result(self) -> Message:
        """The message, or the :class:`~p2prpc.errors.RpcError` its decoding gave."""
        if self.message is None:
            raise RpcError(self.code, self.details)
        return self.message

    def size(self) -> int:
        """Bytes it holds: the message about at its serialized size (as upb holds it), or the
        error's details, and the objects around it."""
        held = self.message.ByteSize() if self.message is not None else len(self.details)
        return held + _KEPT_OBJECT


# The wrapper object and the payload's own object header, about.
_KEPT_OBJECT = 96


def keep(payload: Any, codec: Codec[Any] | None, max_size: int) -> Any:
    """What to keep of a received payload until it is read: bytes as they are; a JSON value
    decoded at once when ``codec`` reads protobuf messages (:class:`Decoded`), else as compact
    text (:class:`JSONText`). :class:`MessageCodec` and :class:`JSONCodec` read the kept forms
    as they read the payload; :func:`decode` gives any other codec the value again."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return payload
    if isinstance(codec, MessageCodec):
        try:
            return Decoded(codec.message_type, codec.decode(payload, max_size))
        except RpcError as e:
            # Only the status: the error's traceback would keep the parsed value alive.
            return Decoded(codec.message_type, None, e.code(), e.details()[:1024])
    return JSONText(payload)


def kept_size(payload: Any) -> int:
    """Bytes a payload holds as kept (:func:`keep`): bytes by their length, kept forms by
    their own measure, anything else as parsed (:func:`~p2prpc.wire.held.held_size`)."""
    if isinstance(payload, JSONText | Decoded):
        return payload.size()
    return held_size(payload)


def decode(codec: Codec[T], payload: Any, max_size: int) -> T:
    """``codec.decode`` of a payload as received or as kept (:func:`keep`)."""
    if isinstance(payload, JSONText) and not isinstance(codec, MessageCodec | JSONCodec):
        payload = payload.value()
    return codec.decode(payload, max_size)


class Codec(Protocol[T]):
    """How the values of one method side or topic become payloads and back."""

    def encode(self, value: T, binary: bool, max_size: int) -> Any:
        """The payload for ``value`` (bytes when ``binary``, else a JSON value)."""

    def decode(self, payload: Any, max_size: int) -> T:
        """The value a payload holds (bytes, or a JSON value)."""


class MessageCodec(Generic[M]):
    """Protobuf messages of one type."""

    def __init__(self, message_type: type[M]) -> None:
        self.message_type = message_type

    def encode(self, value: M, binary: bool, max_size: int) -> Any:
        if not isinstance(value, self.message_type):
            raise TypeError(
                f"expected a {self.message_type.__name__} message, not {type(value).__name__}"
            )
        size = value.ByteSize()
        if size > max_size:
            raise too_big(size, max_size)
        if binary:
            return value.SerializeToString()
        return json_format.MessageToDict(value)

    def decode(self, payload: Any, max_size: int) -> M:
        if isinstance(payload, Decoded):
            message = payload.result()
            if isinstance(message, self.message_type):
                return message
            payload = json_format.MessageToDict(message)  # read as another type: by its JSON
        elif isinstance(payload, JSONText):
            payload = payload.value()
        elif type(payload) is bytes:  # the binary form's path, first
            if len(payload) > max_size:
                raise too_big(len(payload), max_size)
            try:
                return self.message_type.FromString(payload)
            except (DecodeError, RecursionError, ValueError) as e:
                raise RpcError(StatusCode.INVALID_ARGUMENT, f"cannot parse message: {e}") from e
        if isinstance(payload, bytes | bytearray | memoryview):
            if len(payload) > max_size:
                raise too_big(len(payload), max_size)
            try:
                return self.message_type.FromString(bytes(payload))
            except (DecodeError, RecursionError, ValueError) as e:
                raise RpcError(StatusCode.INVALID_ARGUMENT, f"cannot parse message: {e}") from e
        message = self.message_type()
        try:
            json_format.ParseDict(payload if payload is not None else {}, message, True)
        except (json_format.ParseError, TypeError, ValueError, RecursionError, OverflowError) as e:
            raise RpcError(StatusCode.INVALID_ARGUMENT, f"cannot parse message: {e}") from e
        size = message.ByteSize()
        if size > max_size:
            raise too_big(size, max_size)
        return message


class JSONCodec:
    """JSON values as they are, for callers without the ``.proto`` (the command line, raw topics):
    only the JSON form carries them, and the peer that has the message type parses them."""

    def encode(self, value: Any, binary: bool, max_size: int) -> Any:
        if binary:
            raise RpcError(StatusCode.INTERNAL, "JSON payloads travel only in the JSON form")
        return value

    def decode(self, payload: Any, max_size: int) -> Any:
        if isinstance(payload, bytes | bytearray | memoryview):
            raise RpcError(StatusCode.INTERNAL, "a binary payload where JSON was expected")
        if isinstance(payload, JSONText):
            return payload.value()
        if isinstance(payload, Decoded):
            return json_format.MessageToDict(payload.result())
        return payload


class SerializerCodec:
    """Values made bytes and back by the functions grpcio's generated code passes
    (``request_serializer=Msg.SerializeToString``, ``response_deserializer=Msg.FromString``, or a
    user's own): the binary form carries what ``serialize`` gives. The JSON form (plain P2PT
    peers, ``Node(binary=False)``) carries proto3 JSON, which needs the message type: a protobuf
    message is written as JSON, and read back as ``message_type`` (found from a
    ``Msg.FromString`` deserializer when not given); without one a JSON payload is refused
    INTERNAL, unless no deserializer is wanted either: then the JSON text's bytes are given.
    ``None`` for either function: bytes pass as they are, as in grpcio."""

    def __init__(
        self,
        serialize: Any | None,
        deserialize: Any | None,
        message_type: type[Message] | None = None,
    ) -> None:
        self.serialize = serialize
        self.deserialize = deserialize
        if message_type is None:
            owner = getattr(deserialize, "__self__", None)
            if isinstance(owner, type) and issubclass(owner, Message):
                message_type = owner
        self.message_type = message_type

    def encode(self, value: Any, binary: bool, max_size: int) -> Any:
        if not binary:
            if isinstance(value, Message):
                size = value.ByteSize()
                if size > max_size:
                    raise too_big(size, max_size)
                return json_format.MessageToDict(value)
            raise RpcError(
                StatusCode.INTERNAL,
                f"a {type(value).__name__} value has no JSON form: the peer needs the binary form",
            )
        data = value if self.serialize is None else self.serialize(value)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"the serializer gave {type(data).__name__}, not bytes")
        if len(data) > max_size:
            raise too_big(len(data), max_size)
        return bytes(data)

    def decode(self, payload: Any, max_size: int) -> Any:
        if isinstance(payload, bytes | bytearray | memoryview):
            if len(payload) > max_size:
                raise too_big(len(payload), max_size)
            if self.deserialize is None:
                return bytes(payload)
            try:
                return self.deserialize(bytes(payload))
            except Exception as e:  # a user's deserializer may raise anything
                raise RpcError(StatusCode.INVALID_ARGUMENT, f"cannot parse message: {e}") from e
        if self.message_type is not None:
            return MessageCodec(self.message_type).decode(payload, max_size)
        if isinstance(payload, Decoded):
            data = payload.result().SerializeToString()
        elif self.deserialize is None:
            # No type to read it as, and none wanted: bytes, as the JSON text (what a handler
            # that takes the request as it comes, such as one that refuses the call, is given).
            data = payload.data if isinstance(payload, JSONText) else JSONText(payload).data
        else:
            raise RpcError(
                StatusCode.INTERNAL,
                "a JSON-form payload for a method this side knows only by its serializer "
                "functions, with no message type to read it as: the peer must use the binary form",
            )
        return self.decode(data, max_size)
