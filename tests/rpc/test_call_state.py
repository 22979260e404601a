"""Per-call and per-peer state is freed when the call ends or the peer leaves: a streaming method's
generator is closed when its call is cancelled, and a node after many peers came and went keeps
no entry for any of them in its RPC layer or its topic router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.rpc import Cardinality, Handler, ServicerContext, UnaryStreamMethod
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

S = StringValue
SERVICE = "state.Flood"


async def test_a_cancelled_stream_closes_the_method_generator() -> None:
    """The client cancels while the server waits to send (its generator paused at a yield): the
    generator's ``finally`` runs in the call's own task, before it ends."""
    closed_in: list[asyncio.Task[object] | None] = []

    async def flood(request: S, context: ServicerContext) -> AsyncIterator[S]:
        try:
            while True:
                yield S(value="x" * 60_000)
        finally:
            closed_in.append(asyncio.current_task())

    async with mesh(2) as m:
        server, client = m.nodes
        server.add_service(
            SERVICE, {f"/{SERVICE}/Flood": Handler(flood, Cardinality.UNARY_STREAM, S, S)}
        )
        await client.wait_for_server(SERVICE, 10)
        call = UnaryStreamMethod(client.to(server.peer_id), f"/{SERVICE}/Flood", S, S)(
            S(), timeout=30
        )
        assert len((await call.read()).value) == 60_000
        [served] = endpoint_of(server)._server.values()
        assert served.task is not None
        call.cancel()
        async with asyncio.timeout(10):
            await asyncio.wait([served.task])
        # Closed by the call itself before it ended, not by a task of the garbage collector's
        # finalizer that nothing waits for (node.stop waits for the call's task).
        assert closed_in == [served.task]
