"""gRPC aio on loopback TCP in a worker process: the ``grpc.*`` commands, the baseline.

The same ``/bench.Echo/Echo`` unary method as p2prpc's (``BytesValue`` in, the same back), served
through a generic handler so that no generated code is needed, and called through a plain
``unary_unary`` multi-callable: what a grpc.aio application does.
"""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
from google.protobuf.wrappers_pb2 import BytesValue

from . import measure

ECHO = "/bench.Echo/Echo"


async def _echo(
    request: BytesValue, context: grpc.aio.ServicerContext[BytesValue, BytesValue]
) -> BytesValue:
    return request


class GrpcPeer:
    """A gRPC server serving ``bench.Echo``, or a channel calling it."""

    def __init__(self) -> None:
        self.server: grpc.aio.Server | None = None
        self.channel: grpc.aio.Channel | None = None
        self.echo: grpc.aio.UnaryUnaryMultiCallable[BytesValue, BytesValue] | None = None

    async def cmd_serve(self) -> int:
        """Serve on a free loopback port; returns the port."""
        server = self.server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            _echo,
            request_deserializer=BytesValue.FromString,
            response_serializer=BytesValue.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return port

    async def cmd_connect(self, port: int, timeout: float = 30.0) -> None:
        channel = self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await asyncio.wait_for(channel.channel_ready(), timeout)
        self.echo = channel.unary_unary(
            ECHO,
            request_serializer=BytesValue.SerializeToString,
            response_deserializer=BytesValue.FromString,
        )

    def _echo(self) -> grpc.aio.UnaryUnaryMultiCallable[BytesValue, BytesValue]:
        if self.echo is None:
            raise RuntimeError("grpc.connect first")
        return self.echo

    async def cmd_latency(self, count: int, size: int, warmup: int = 20) -> list[float]:
        """``count`` sequential unary echoes of ``size`` bytes; each one's time in milliseconds."""
        return await measure.latency(self._echo(), count, size, warmup)

    async def cmd_throughput(self, concurrency: int, seconds: float, size: int) -> float:
        """Unary echoes with ``concurrency`` in flight for ``seconds``: calls per second."""
        return await measure.throughput(self._echo(), concurrency, seconds, size)

    async def aclose(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.server is not None:
            await self.server.stop(None)
