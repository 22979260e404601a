"""The four call shapes, by gRPC's names, for the tests that make each: the method class of each,
how a call of each is made, and how its outcome is waited for."""

from __future__ import annotations

from typing import Any

from p2prpc.rpc import StreamStreamMethod, StreamUnaryMethod, UnaryStreamMethod, UnaryUnaryMethod

SHAPES = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")

#: The method class of each shape (what grpc.aio's channel makes for it).
METHODS: dict[str, type[Any]] = {
    "unary_unary": UnaryUnaryMethod,
    "unary_stream": UnaryStreamMethod,
    "stream_unary": StreamUnaryMethod,
    "stream_stream": StreamStreamMethod,
}


def invoke(method: Any, shape: str, request: Any = None, requests: Any = None, **kw: Any) -> Any:
    """Call ``method`` (of ``shape``): with ``request`` where one request is sent, else with the
    iterator ``requests`` (``None``: none; the caller writes them)."""
    if shape.startswith("unary_"):
        return method(request, **kw)
    return method(requests, **kw)


async def outcome(call: Any, shape: str) -> Any:
    """What ``call`` ends with: its reply, or the list of its replies for a reply stream."""
    if shape.endswith("_stream"):
        return [reply async for reply in call]
    return await call
