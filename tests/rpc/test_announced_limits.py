"""Every limit the other side announces is honoured in bytes, and a call that cannot fit in one
ends RESOURCE_EXHAUSTED alone: nothing else on the connection waits or fails for it.

Two limits are announced: the largest data-channel message a peer's session description takes
(``a=max-message-size``; aiortc and libwebrtc say 262144, and the peers here say less, through
``lab.peers.Announcing``), and the largest message a node reads, in its hello
(``max_message_size``). Frames and batches are cut to the first; a message over the second, or a
header that cannot fit in the first, fails here before anything of it leaves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import BytesValue
from lab.peers import Announcing

from p2prpc.errors import RpcError
from p2prpc.node import Node
from p2prpc.rpc import (
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    StatusCode,
    StreamUnaryMethod,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.envelope import is_batch, iter_batch

pytestmark = pytest.mark.asyncio

SMALL = 8192
SERVICE = "al.S"
ONCE = RetryPolicy(max_attempts=1)


class Servicer:
    def __init__(self) -> None:
        self.calls = 0

    async def Echo(self, request: BytesValue, context: ServicerContext) -> BytesValue:
        self.calls += 1
        return request

    async def Grow(self, request: BytesValue, context: ServicerContext) -> BytesValue:
        self.calls += 1
        return BytesValue(value=bytes(int(request.value)))

    async def Stream(
        self, request: BytesValue, context: ServicerContext
    ) -> AsyncIterator[BytesValue]:
        self.calls += 1
        for _ in range(int(request.value)):
            yield BytesValue(value=b"r" * 1000)

    async def Count(self, requests: AsyncIterator[BytesValue], context: ServicerContext) -> Any:
        self.calls += 1
        return BytesValue(value=str(len([r async for r in requests])).encode())

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        b = BytesValue
        return {
            f"/{SERVICE}/Echo": Handler(self.Echo, Cardinality.UNARY_UNARY, b, b),
            f"/{SERVICE}/Grow": Handler(self.Grow, Cardinality.UNARY_UNARY, b, b),
            f"/{SERVICE}/Stream": Handler(self.Stream, Cardinality.UNARY_STREAM, b, b),
            f"/{SERVICE}/Count": Handler(self.Count, Cardinality.STREAM_UNARY, b, b),
        }


@asynccontextmanager
async def pair(
    announce: int | None = None,
    server_options: dict[str, Any] | None = None,
    client_options: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Node, Node, Servicer]]:
    """A server and a client node (both announcing ``announce`` bytes in their SDP, if given),
    made with the options given for each."""
    async with TrackerServer(LOOPBACK, 0) as tracker:
        server = loopback_node([tracker.url], "al", **(server_options or {}))
        client = loopback_node([tracker.url], "al", **(client_options or {}))
        if announce is not None:
            server.p2pt.pool.transport = Announcing(announce)
            client.p2pt.pool.transport = Announcing(announce)
        servicer = Servicer()
        server.add_service(SERVICE, servicer.handlers())
        try:
            await server.start()
            await client.start()
            await client.wait_for_server(SERVICE, timeout=20)
            yield server, client, servicer
        finally:
            await client.close()
            await server.close()


@contextmanager
def recording(node: Node) -> Iterator[list[bytes]]:
    """Every binary data-channel message ``node`` receives meanwhile, as it came."""
    seen: list[bytes] = []
    handler = node.p2pt.binary_handler
    assert handler is not None

    def recorded(peer_id: str, data: bytes, connection: int) -> None:
        seen.append(data)
        handler(peer_id, data, connection)

    node.p2pt.binary_handler = recorded
    try:
        yield seen
    finally:
        node.p2pt.binary_handler = handler


def frames(seen: list[bytes]) -> list[bytes]:
    """The binary frames in data-channel messages (batches opened)."""
    return [f for m in seen for f in (iter_batch(m) if is_batch(m) else [m])]


def unary(node: Node, name: str) -> UnaryUnaryMethod[BytesValue, BytesValue]:
    return UnaryUnaryMethod(
        Channel(node, retry_policy=ONCE), f"/{SERVICE}/{name}", BytesValue, BytesValue
    )


async def test_frames_and_batches_keep_to_the_max_message_size_each_side_announced() -> None:
    async with pair(announce=SMALL) as (server, client, _):
        with recording(server) as at_server, recording(client) as at_client:
            request = BytesValue(value=bytes(range(256)) * 400)  # 100 KB
            assert await unary(client, "Echo")(request, timeout=30) == request
            stream = UnaryStreamMethod(client, f"/{SERVICE}/Stream", BytesValue, BytesValue)
            replies = [r async for r in stream(BytesValue(value=b"300"), timeout=30)]
        assert len(replies) == 300
        assert len(at_server) > 100_000 // SMALL
        assert max(map(len, at_server)) <= SMALL
        assert max(map(len, at_client)) <= SMALL


async def test_a_call_whose_header_the_peer_cannot_take_ends_alone_resource_exhausted() -> None:
    async with pair(announce=SMALL) as (_, client, servicer):
        stream = UnaryStreamMethod(client, f"/{SERVICE}/Stream", BytesValue, BytesValue)
        running = stream(BytesValue(value=b"2000"), timeout=30)
        first = await running.read()  # the stream is under way, its replies queued behind
        assert isinstance(first, BytesValue)
        big = [("x-big", "m" * SMALL)]  # its call frame's header alone is past SMALL bytes
        with pytest.raises(RpcError) as caught:
            await unary(client, "Echo")(BytesValue(value=b"hi"), metadata=big, timeout=30)
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        assert "takes data-channel messages of at most 8192" in (caught.value.details() or "")
        rest = [r async for r in running]
        assert len(rest) == 1999  # nothing of the stream was lost or held up
        assert await unary(client, "Echo")(BytesValue(value=b"after"), timeout=30) == BytesValue(
            value=b"after"
        )
        assert servicer.calls == 2  # the refused call never reached the server


async def test_a_status_the_client_cannot_take_ends_the_call_resource_exhausted() -> None:
    async def trailing(request: BytesValue, context: ServicerContext) -> BytesValue:
        context.set_trailing_metadata([("x-big", "t" * SMALL)])
        return request

    async with pair(announce=SMALL) as (server, client, _):
        server.add_service(
            "al.T",
            {"/al.T/Trail": Handler(trailing, Cardinality.UNARY_UNARY, BytesValue, BytesValue)},
        )
        await client.wait_until(lambda: "al.T" in client.peers[server.peer_id].services, 10)
        method = UnaryUnaryMethod(client, "/al.T/Trail", BytesValue, BytesValue)
        with pytest.raises(RpcError) as caught:
            await method(BytesValue(value=b"x"), timeout=30)
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        assert await unary(client, "Echo")(BytesValue(), timeout=30) == BytesValue()


async def test_a_request_over_what_the_server_reads_fails_here_and_never_leaves() -> None:
    async with pair(server_options={"max_message_size": 2000}) as (server, client, servicer):
        assert client.peers[server.peer_id].max_message_size == 2000
        assert client.message_limit(server.peer_id) == 2000
        with recording(server) as at_server:
            with pytest.raises(RpcError) as caught:  # a request over the server's limit
                await unary(client, "Echo")(BytesValue(value=bytes(3000)), timeout=30)
            assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
            count = StreamUnaryMethod(
                Channel(client, retry_policy=ONCE), f"/{SERVICE}/Count", BytesValue, BytesValue
            )
            call = count(timeout=30)
            await call.write(BytesValue(value=b"fits"))
            with pytest.raises(RpcError) as written:  # a request-stream message over it
                await call.write(BytesValue(value=bytes(3000)))
            assert written.value.code() is StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(RpcError) as ended:
                await call
            assert ended.value.code() is StatusCode.RESOURCE_EXHAUSTED
            echoed = await unary(client, "Echo")(BytesValue(value=bytes(1500)), timeout=30)
            assert len(echoed.value) == 1500
        assert max(map(len, frames(at_server))) < 2000  # nothing over the limit crossed
        assert servicer.calls == 2  # Count and the last Echo: the refused Echo never ran


async def test_a_reply_over_what_the_client_reads_fails_at_the_server_and_never_leaves() -> None:
    async with pair(client_options={"max_message_size": 2000}) as (server, client, _):
        assert server.message_limit(client.peer_id) == 2000
        with recording(client) as at_client:
            with pytest.raises(RpcError) as caught:
                await unary(client, "Grow")(BytesValue(value=b"3000"), timeout=30)
            assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
            stream = UnaryStreamMethod(client, f"/{SERVICE}/Stream", BytesValue, BytesValue)
            assert len([r async for r in stream(BytesValue(value=b"5"), timeout=30)]) == 5
            grown = await unary(client, "Grow")(BytesValue(value=b"1500"), timeout=30)
            assert len(grown.value) == 1500
        assert max(map(len, frames(at_client))) < 2000
