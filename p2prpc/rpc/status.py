"""gRPC status codes and the error that carries one (``RpcError``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ..errors import P2PRPCError


class StatusCode(enum.IntEnum):
    """The 17 gRPC status codes, with gRPC's numbers (they travel on the wire as numbers)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(P2PRPCError):
    """A call ended with a status other than OK.

    Raised by client stubs, and raised by servicers (or by ``context.abort``) to end a call with
    that status. ``trailing_metadata`` is the server's trailers.
    """

    def __init__(
        self,
        code: StatusCode,
        details: str = "",
        trailing_metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self.code = code
        self.details = details
        self.trailing_metadata: dict[str, str] = dict(trailing_metadata or {})

    def __repr__(self) -> str:
        return f"RpcError({self.code.name}, {self.details!r})"
