"""Flow control: a window per call that the reader opens as it reads and a writer waits on.

A slow but reading peer is slowed, never failed, in both directions (replies to a slow caller,
requests to a slow servicer), and what the reader holds for a call stays within its window;
a peer that ignores the window still meets the per-call caps, window updates that cannot be
honoured end their call with a typed refusal, and a writer waiting on a shut window wakes as
soon as its call ends, however it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.rpc import (
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    UnaryStreamMethod,
)
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

S = StringValue
ONCE = RetryPolicy(max_attempts=1)


async def _count(request: S, context: ServicerContext) -> AsyncIterator[S]:
    for n in range(int(request.value)):
        yield S(value=str(n))


def _handlers(servicer: Any = None) -> dict[str, Handler[Any, Any]]:
    handlers: dict[str, Handler[Any, Any]] = {
        "/f.S/Count": Handler(_count, Cardinality.UNARY_STREAM, S, S),
    }
    if servicer is not None:
        handlers["/f.S/Sink"] = Handler(servicer.sink, Cardinality.STREAM_UNARY, S, S)
    return handlers


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_a_slow_reader_of_a_long_stream_is_slowed_not_failed(binary: bool) -> None:
    """6,000 replies read at 1 ms each: more than a call may hold unread (4,096), all of them
    arrive, in order, because the server waits while the caller's window is shut."""
    count = 6000
    async with mesh(2, binary=binary) as m:
        server, client = m.nodes
        server.add_service("f.S", _handlers())
        await client.wait_for_server("f.S", timeout=10)
        stream = UnaryStreamMethod(Channel(client, retry_policy=ONCE), "/f.S/Count", S, S)
        got = []
        async for reply in stream(S(value=str(count)), timeout=60):
            got.append(int(reply.value))
            await asyncio.sleep(0.001)  # the reader's own work, 1 ms a reply
        assert got == list(range(count))
