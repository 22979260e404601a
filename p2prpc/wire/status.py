"""gRPC status codes as they travel: numbers on the wire, ``grpc.StatusCode`` in the API.

p2prpc uses grpcio's own :class:`grpc.StatusCode`, so that code written for grpc.aio compares,
logs and maps codes exactly as it did (``e.code() is StatusCode.NOT_FOUND``, ``grpcio-status``).
On the wire a code is its number (``code.value[0]``), as gRPC sends ``grpc-status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from ..errors import TooLargeForPeer

StatusCode = grpc.StatusCode

_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}

#: The largest status code number gRPC defines (16, UNAUTHENTICATED).
MAX_CODE = max(_BY_NUMBER)


def code_number(code: grpc.StatusCode) -> int:
    """The number a status code travels as (0 for OK … 16 for UNAUTHENTICATED)."""
    number: int = code.value[0]
    return number


def code_from_number(number: int) -> grpc.StatusCode:
    """The status code a wire number names; ``ValueError`` for a number gRPC does not define."""
    try:
        return _BY_NUMBER[number]
    except (KeyError, TypeError):
        raise ValueError(f"{number!r} is not a gRPC status code (0 to {MAX_CODE})") from None


#: A metadata entry: a key and its value (``bytes`` for keys ending in ``-bin``, else ``str``).
Metadatum = tuple[str, str | bytes]


@dataclass(frozen=True, slots=True)
class Status:
    """How a call ended, as it travels: a code, details, and the server's trailing metadata."""

    code: grpc.StatusCode
    details: str = ""
    trailers: tuple[Metadatum, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.code is grpc.StatusCode.OK


def unsendable(error: Exception) -> Status:
    """The status that ends a call whose own status, or message, cannot be encoded (INTERNAL,
    naming why; RESOURCE_EXHAUSTED when it is larger than the peer takes:
    :class:`~p2prpc.errors.TooLargeForPeer`)."""
    code = (
        grpc.StatusCode.RESOURCE_EXHAUSTED
        if isinstance(error, TooLargeForPeer)
        else grpc.StatusCode.INTERNAL
    )
    return Status(code, f"the status could not be sent: {error}"[:1000])
