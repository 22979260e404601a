"""Messages as envelope payloads, and back: one codec for calls and topics. Pure: no I/O.

A payload is protobuf bytes in the binary form and proto3 JSON in the JSON form
(``google.protobuf.json_format``: lowerCamelCase names, 64-bit integers as strings, enums by name,
bytes in base64; unknown fields ignored). Every size is checked against ``max_size`` bytes of
serialized message, as gRPC checks ``grpc.max_receive_message_length``. Errors are the statuses
gRPC gives them: RESOURCE_EXHAUSTED past the size, INVALID_ARGUMENT for what does not parse.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from ..errors import RpcError
from .held import held_size
from .status import StatusCode

__all__ = ["Codec", "JSONCodec", "MessageCodec", "held_size", "too_big"]

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def too_big(size: int, max_size: int) -> RpcError:
    return RpcError(
        StatusCode.RESOURCE_EXHAUSTED, f"message of {size} bytes exceeds the {max_size} limit"
    )


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
        return payload
