"""A node in a process of its own serving ``t.Sink``, for tests that need a server that does not
read: frozen with SIGSTOP it reads nothing and says nothing, and ``Stall`` blocks its whole event
loop for a while (reading nothing), then ends the call ABORTED as soon as it runs again.

Usage: ``sink_server.py TRACKER_URL IDENTIFIER``; prints ``ready`` once started.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.rpc import Cardinality, Handler, RpcError, ServicerContext, StatusCode
from p2prpc.testing import loopback_node

STALL = 3.0  # seconds Stall blocks the loop


async def take(requests: AsyncIterator[StringValue], context: ServicerContext) -> StringValue:
    count = 0
    async for _ in requests:
        count += 1
    return StringValue(value=str(count))


async def chat(
    requests: AsyncIterator[StringValue], context: ServicerContext
) -> AsyncIterator[StringValue]:
    async for request in requests:
        yield request


async def stall(requests: AsyncIterator[StringValue], context: ServicerContext) -> StringValue:
    await requests.__anext__()
    time.sleep(STALL)  # noqa: ASYNC251  # the whole process stops reading, as a busy peer does
    raise RpcError(StatusCode.ABORTED, "gave up")


async def main() -> None:
    # A window (flow control) far larger than what the client's send queue and aiortc's buffer
    # hold, so that a client writing to it waits for room in its send queue first.
    node = loopback_node([sys.argv[1]], sys.argv[2], keepalive_interval=None, window=8 * 2**20)
    s = StringValue
    node.add_service(
        "t.Sink",
        {
            "/t.Sink/Take": Handler(take, Cardinality.STREAM_UNARY, s, s),
            "/t.Sink/Chat": Handler(chat, Cardinality.STREAM_STREAM, s, s),
            "/t.Sink/Stall": Handler(stall, Cardinality.STREAM_UNARY, s, s),
        },
    )
    async with node:
        print("ready", flush=True)
        await asyncio.Event().wait()


asyncio.run(main())
