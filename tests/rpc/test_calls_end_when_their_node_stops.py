"""A call made from a node that stops ends at once with UNAVAILABLE ("the node is stopping"), as
``Node.stop`` says, in every shape and at every moment: made just before the stop began (its task
not yet run), or running when it did (waiting to send its requests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from call_shapes import METHODS, SHAPES, invoke, outcome
from google.protobuf.wrappers_pb2 import StringValue as S

from p2prpc.rpc import Cardinality, Channel, Handler, RpcError, ServicerContext, StatusCode
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

SERVICE = "stops.Echo"
#: The method of each shape.
NAMES = dict(zip(SHAPES, ("Echo", "Count", "Join", "Upper"), strict=True))


def _handlers(started: asyncio.Event, release: asyncio.Event) -> dict[str, Handler[Any, Any]]:
    """The four shapes; each sets ``started`` once it has its requests, and answers once
    ``release`` is set."""

    async def echo(request: S, context: ServicerContext) -> S:
        started.set()
        await release.wait()
        return request

    async def count(request: S, context: ServicerContext) -> AsyncIterator[S]:
        started.set()
        await release.wait()
        yield request

    async def join(requests: AsyncIterator[S], context: ServicerContext) -> S:
        started.set()
        joined = ",".join([r.value async for r in requests])
        await release.wait()
        return S(value=joined)

    async def upper(requests: AsyncIterator[S], context: ServicerContext) -> AsyncIterator[S]:
        started.set()
        async for request in requests:
            await release.wait()
            yield S(value=request.value.upper())

    behaviours = {"Echo": echo, "Count": count, "Join": join, "Upper": upper}
    return {
        f"/{SERVICE}/{name}": Handler(behaviours[name], Cardinality(shape), S, S)
        for shape, name in NAMES.items()
    }


def _call(channel: Channel, shape: str, requests: Any) -> Any:
    """A call of ``shape`` with a deadline far away (30 s): its outcome, to wait for."""
    method = METHODS[shape](channel, f"/{SERVICE}/{NAMES[shape]}", S, S)
    return outcome(invoke(method, shape, S(value="a"), requests, timeout=30), shape)


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
        started, release = asyncio.Event(), asyncio.Event()
        release.set()
        server.add_service(SERVICE, _handlers(started, release))
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


# The single-reply shapes: a task hands their reply over (streamed replies are read from the
# call itself).
@pytest.mark.parametrize("shape", ["unary_unary", "stream_unary"])
async def test_a_call_that_ends_ok_as_its_node_stops_gives_its_reply(shape: str) -> None:
    """The stop begins as the message that ends the call (its reply and its status) arrives,
    before it is read: the stop then cancels the task that would hand the reply over, and the
    call, over and OK, still gives its reply."""
    async with mesh(2) as m:
        client, server = m.nodes
        started, release = asyncio.Event(), asyncio.Event()
        server.add_service(SERVICE, _handlers(started, release))
        await client.wait_until(lambda: bool(client.servers_of(SERVICE)), 10)
        outcome = asyncio.ensure_future(_call(Channel(client), shape, [S(value="a")]))
        await asyncio.wait_for(started.wait(), 10)
        stopping: list[asyncio.Task[None]] = []

        def stop_as_it_arrives(*_: object) -> None:
            if not stopping:  # "data" is emitted before the message is read
                stopping.append(asyncio.ensure_future(client.close()))

        client.p2pt.on("data", stop_as_it_arrives)
        release.set()
        async with asyncio.timeout(10):
            got = await outcome
            await stopping[0]
        assert got == S(value="a")
