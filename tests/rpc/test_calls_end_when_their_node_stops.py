"""A call made from a node that stops ends at once with UNAVAILABLE ("the node is stopping"), as
``Node.stop`` says, in every shape and at every moment: made just before the stop began (its task
not yet run), or running when it did (waiting to send its requests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue as S

from p2prpc.rpc import (
    Cardinality,
    Channel,
    Handler,
    RpcError,
    ServicerContext,
    StatusCode,
    StreamStreamMethod,
    StreamUnaryMethod,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

SERVICE = "stops.Echo"
SHAPES = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def _handlers(started: asyncio.Event) -> dict[str, Handler[Any, Any]]:
    """The four shapes; ``started`` is set when a client-streaming call reaches its servicer."""

    async def echo(request: S, context: ServicerContext) -> S:
        return request

    async def count(request: S, context: ServicerContext) -> AsyncIterator[S]:
        yield request

    async def join(requests: AsyncIterator[S], context: ServicerContext) -> S:
        started.set()
        return S(value=",".join([r.value async for r in requests]))

    async def upper(requests: AsyncIterator[S], context: ServicerContext) -> AsyncIterator[S]:
        started.set()
        async for request in requests:
            yield S(value=request.value.upper())

    return {
        f"/{SERVICE}/Echo": Handler(echo, Cardinality.UNARY_UNARY, S, S),
        f"/{SERVICE}/Count": Handler(count, Cardinality.UNARY_STREAM, S, S),
        f"/{SERVICE}/Join": Handler(join, Cardinality.STREAM_UNARY, S, S),
        f"/{SERVICE}/Upper": Handler(upper, Cardinality.STREAM_STREAM, S, S),
    }


def _call(channel: Channel, shape: str, requests: Any) -> Any:
    """A call of ``shape`` with a deadline far away (30 s), and how to wait for its outcome."""
    if shape == "unary_unary":
        call: Any = UnaryUnaryMethod(channel, f"/{SERVICE}/Echo", S, S)(S(value="a"), timeout=30)
    elif shape == "unary_stream":
        call = UnaryStreamMethod(channel, f"/{SERVICE}/Count", S, S)(S(value="a"), timeout=30)
    elif shape == "stream_unary":
        call = StreamUnaryMethod(channel, f"/{SERVICE}/Join", S, S)(requests, timeout=30)
    else:
        call = StreamStreamMethod(channel, f"/{SERVICE}/Upper", S, S)(requests, timeout=30)

    async def outcome() -> Any:
        if shape.endswith("_stream"):
            return [reply async for reply in call]
        return await call

    return outcome()


async def _never() -> AsyncIterator[S]:
    """Requests that never come: the call runs, waiting for them, until it ends."""
    await asyncio.Event().wait()
    yield S()


@pytest.mark.parametrize(
    ("shape", "when"),
    [(shape, "made-then-stop") for shape in SHAPES]
    # A call with one request is sent at once: only a request stream keeps one running here.
    + [(shape, "running") for shape in SHAPES if shape.startswith("stream_")],
)
async def test_a_call_from_a_node_that_stops_ends_unavailable_at_once(
    shape: str, when: str
) -> None:
    async with mesh(2) as m:
        client, server = m.nodes
        started = asyncio.Event()
        server.add_service(SERVICE, _handlers(started))
        await client.wait_until(lambda: bool(client.servers_of(SERVICE)), 10)
        if when == "made-then-stop":
            # Made in the step the stop is asked for: the stop begins before any task the call
            # made has run.
            stopping = asyncio.ensure_future(client.close())
            outcome = asyncio.ensure_future(_call(Channel(client), shape, [S(value="a")]))
        else:
            outcome = asyncio.ensure_future(_call(Channel(client), shape, _never()))
            await asyncio.wait_for(started.wait(), 10)  # sent: the servicer reads its requests
            stopping = asyncio.ensure_future(client.close())
        async with asyncio.timeout(10):  # far less than the call's 30 s deadline
            with pytest.raises(RpcError) as ended:
                await outcome
            await stopping
        assert ended.value.code() is StatusCode.UNAVAILABLE, ended.value
        assert ended.value.details() == "the node is stopping"
