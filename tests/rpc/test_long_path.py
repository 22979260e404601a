"""On a long path, a node's data-channel messages are no larger than the transport sends at once.

aiortc's SCTP sends at most four chunks (4 × 1160 bytes) beyond what is in flight each time it
transmits, and it transmits once for every data-channel message it takes: messages of one burst
fill its congestion window at once, while the chunks of a 16 KiB batch or a 64 KiB frame leave a
few per acknowledgement, which on a 150 ms path costs round trips at every start (a stream of
1 KB replies ran at 0.8× raw aiortc there). Over the emulated long path (``tests/lab``), batches
and frames are kept to that burst; on loopback, where acknowledgements come back at once, batches
stay large (they cost less CPU).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import BytesValue
from lab import A, B, LongPath, unavailable_reason

from p2prpc.node import Node
from p2prpc.rpc import Cardinality, Handler, ServicerContext, UnaryStreamMethod, UnaryUnaryMethod
from p2prpc.swarm.connection import LONG_PATH, Connection
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport.aiortc import BURST_SIZE
from p2prpc.wire.envelope import BATCH_SIZE, is_batch, iter_batch

pytestmark = pytest.mark.asyncio

needs_lab = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"no long path here: {unavailable_reason()}"
)

SERVICE = "lp.S"
ECHO = f"/{SERVICE}/Echo"
STREAM = f"/{SERVICE}/Stream"


async def echo(request: BytesValue, context: ServicerContext) -> BytesValue:
    return request


async def stream(request: BytesValue, context: ServicerContext) -> AsyncIterator[BytesValue]:
    for _ in range(int(request.value)):
        yield BytesValue(value=b"x" * 1000)


HANDLERS: dict[str, Handler[Any, Any]] = {
    ECHO: Handler(echo, Cardinality.UNARY_UNARY, BytesValue, BytesValue),
    STREAM: Handler(stream, Cardinality.UNARY_STREAM, BytesValue, BytesValue),
}


@pytest.fixture
def long_path() -> Iterator[LongPath]:
    """A 20 ms round trip between A and B; this thread (the event loop's) inside it."""
    with LongPath(0.01) as path, path.inside():
        yield path


def record(node: Node) -> list[bytes]:
    """Every binary data-channel message ``node`` receives, as it came."""
    seen: list[bytes] = []
    handler = node.p2pt.binary_handler
    assert handler is not None

    def recorded(peer_id: str, data: bytes, connection: int) -> None:
        seen.append(data)
        handler(peer_id, data, connection)

    node.p2pt.binary_handler = recorded
    return seen


@asynccontextmanager
async def pair(server_host: str, client_host: str) -> AsyncIterator[tuple[Node, Node]]:
    """A node serving ``lp.S`` on ``server_host`` and a client on ``client_host``."""
    async with TrackerServer(LOOPBACK, 0) as tracker:
        server = loopback_node([tracker.url], "lp", host_addresses=[server_host])
        client = loopback_node([tracker.url], "lp", host_addresses=[client_host])
        server.add_service(SERVICE, HANDLERS)
        try:
            await server.start()
            await client.start()
            await client.wait_for_server(SERVICE, timeout=20)
            yield server, client
        finally:
            await client.close()
            await server.close()


def connection(node: Node, other: Node) -> Connection:
    return node.p2pt.channel(other.peer_id)


@needs_lab
@pytest.mark.transport_only(
    "aiortc",
    reason="aiortc's SCTP burst: libwebrtc paces its own SCTP and names no burst size"
    " (Link.burst_size and round_trip are None), so its frames are not cut to one",
)
async def test_on_a_long_path_batches_and_frames_keep_to_one_burst(long_path: LongPath) -> None:
    async with pair(A, B) as (server, client):
        echoes = UnaryUnaryMethod(client, ECHO, BytesValue, BytesValue)
        await echoes(BytesValue(), timeout=30)  # each side has now seen its data acknowledged
        for node, other in ((server, client), (client, server)):
            assert (connection(node, other).round_trip or 0) >= 2 * long_path.one_way
        assert 2 * long_path.one_way >= LONG_PATH
        at_client, at_server = record(client), record(server)
        call = UnaryStreamMethod(client, STREAM, BytesValue, BytesValue)
        replies = [r async for r in call(BytesValue(value=b"300"), timeout=30)]
        assert len(replies) == 300
        batches = [m for m in at_client if is_batch(m)]
        assert batches, "small replies still leave packed"
        assert max(len(list(iter_batch(m))) for m in batches) >= 2
        assert max(map(len, at_client)) <= BURST_SIZE
        request = BytesValue(value=bytes(60_000))
        echoed = await echoes(request, timeout=30)
        assert echoed == request
        assert len(at_server) >= 60_000 // BURST_SIZE
        assert max(map(len, at_server)) <= BURST_SIZE
        assert max(map(len, at_client)) <= BURST_SIZE


async def test_on_loopback_batches_stay_large() -> None:
    async with pair(LOOPBACK, LOOPBACK) as (server, client):
        await UnaryUnaryMethod(client, ECHO, BytesValue, BytesValue)(BytesValue(), timeout=30)
        assert (connection(server, client).round_trip or 0) < LONG_PATH
        at_client = record(client)
        call = UnaryStreamMethod(client, STREAM, BytesValue, BytesValue)
        replies = [r async for r in call(BytesValue(value=b"300"), timeout=30)]
        assert len(replies) == 300
        biggest = max(map(len, at_client))
        assert BURST_SIZE < biggest <= BATCH_SIZE + 4 * 16 + 3
