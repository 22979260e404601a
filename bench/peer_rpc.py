"""A p2prpc node in a worker process: the ``rpc.*`` commands.

The benchmark service, ``bench.Echo``, is declared by hand with well-known message types (as the
RPC tests do), so the benchmark needs no generated code:

- ``Echo(BytesValue) -> BytesValue`` answers with its request (unary latency, throughput, bulk);
- ``Stream(BytesValue) -> stream BytesValue`` streams ``count`` messages of ``size`` bytes, asked
  for as ``"count,size"`` in the request;
- ``Records(bench.Records) -> bench.Records`` answers with its request too, for realistic
  (compressible) bulk data.

Times are ``time.monotonic()`` (CLOCK_MONOTONIC: comparable between processes of one machine) in
milliseconds, or durations in seconds.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message
from google.protobuf.wrappers_pb2 import BytesValue

from p2prpc.identity import Identity
from p2prpc.node import Node
from p2prpc.p2pt import Peer
from p2prpc.rpc import (
    Cardinality,
    Handler,
    ServicerContext,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.tracker.server import TrackerServer

from . import measure, udp
from .records import make_records, records_type

SERVICE = "bench.Echo"
ECHO = f"/{SERVICE}/Echo"
STREAM = f"/{SERVICE}/Stream"
RECORDS = f"/{SERVICE}/Records"

MAX_MESSAGE_SIZE = 16 * 2**20
"""Large enough for the 10 MB rows (the default, 4 MiB, is not)."""


def now_ms() -> float:
    return time.monotonic_ns() / 1e6


async def _echo(request: BytesValue, context: ServicerContext) -> BytesValue:
    return request


async def _echo_records(request: Message, context: ServicerContext) -> Message:
    return request


async def _stream(request: BytesValue, context: ServicerContext) -> AsyncIterator[BytesValue]:
    count, size = (int(x) for x in request.value.split(b","))
    reply = BytesValue(value=os.urandom(size))
    for _ in range(count):
        yield reply


def bench_handlers() -> dict[str, Handler[Any, Any]]:
    records = records_type()
    return {
        ECHO: Handler(_echo, Cardinality.UNARY_UNARY, BytesValue, BytesValue),
        STREAM: Handler(_stream, Cardinality.UNARY_STREAM, BytesValue, BytesValue),
        RECORDS: Handler(_echo_records, Cardinality.UNARY_UNARY, records, records),
    }


class RpcPeer:
    """One p2prpc node: joins a swarm, serves ``bench.Echo`` or calls it."""

    def __init__(self) -> None:
        self.node: Node | None = None
        self._connected: asyncio.Future[float] | None = None
        self._hello: asyncio.Future[float] | None = None
        self.echo: UnaryUnaryMethod[BytesValue, BytesValue] | None = None
        self.stream: UnaryStreamMethod[BytesValue, BytesValue] | None = None
        self.records: UnaryUnaryMethod[Message, Message] | None = None
        self._records_payload: Message | None = None
        self._unreachable: dict[str, float] = {}

    def _node(self) -> Node:
        if self.node is None:
            raise RuntimeError("rpc.join first")
        return self.node

    async def cmd_join(
        self,
        urls: list[str],
        identifier: str,
        serve: bool = False,
        host: str | None = "127.0.0.1",
        timeout: float = 30.0,
        secret: str | None = None,
        identity: bool = False,
        transport: str = "aiortc",
        ice_servers: list[str] | None = None,
        relay: bool = False,
    ) -> dict[str, Any]:
        """Start a node (serving ``bench.Echo`` with ``serve``); returns once a tracker answered.

        ``t_start_ms`` is taken right before ``start()``: a connect time runs from there.
        ``host``: the one address offered as an ICE host candidate (None: every address the
        WebRTC stack finds).
        ``secret``: a closed swarm; ``identity``: a fresh Ed25519 identity for the node;
        ``transport``: the node's WebRTC, ``aiortc`` or ``libwebrtc``; ``ice_servers``: its STUN
        and TURN URLs (none by default: host candidates only); ``relay``: the node carries
        others' circuits (``Node(..., relay=True)``).
        """
        if self.node is not None:
            await self.cmd_leave()
        loop = asyncio.get_running_loop()
        node = self.node = Node(
            urls,
            identifier,
            ice_servers=ice_servers or [],
            host_addresses=[host] if host is not None else None,
            max_message_size=MAX_MESSAGE_SIZE,
            udp_buffer_size=udp.buffer_size(),
            secret=secret,
            identity=Identity.generate() if identity else None,
            transport=transport,
            relay=relay,
        )
        self._unreachable = {}
        if serve:
            node.add_service(SERVICE, bench_handlers())
        connected = self._connected = loop.create_future()
        hello = self._hello = loop.create_future()
        tracker: asyncio.Future[None] = loop.create_future()

        def on_peerconnect(peer: Peer) -> None:
            if not connected.done():
                connected.set_result(now_ms())

        def on_hello(*_: object) -> None:
            if not hello.done():
                hello.set_result(now_ms())

        def on_tracker(*_: object) -> None:
            if not tracker.done():
                tracker.set_result(None)

        def on_unreachable(peer_id: str, _: object) -> None:
            self._unreachable.setdefault(peer_id, now_ms())

        node.p2pt.on("peerconnect", on_peerconnect)
        node.p2pt.on("peerunreachable", on_unreachable)
        node.p2pt.on("trackerconnect", on_tracker)
        node.on("peer", on_hello)
        t_start = now_ms()
        await node.start()
        await asyncio.wait_for(tracker, timeout)
        return {"t_start_ms": t_start, "peer_id": node.peer_id}

    async def cmd_wait_peer(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the first peer: when its data channel opened, and when it said hello."""
        if self._connected is None or self._hello is None:
            raise RuntimeError("rpc.join first")
        connected = await asyncio.wait_for(self._connected, timeout)
        hello = await asyncio.wait_for(self._hello, timeout)
        return {"t_connect_ms": connected, "t_hello_ms": hello}

    async def cmd_leave(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            await node.close()

    async def cmd_wait_server(self, timeout: float = 30.0) -> str:
        """Wait for a peer serving ``bench.Echo``; make the stubs."""
        node = self._node()
        server = await node.wait_for_server(SERVICE, timeout=timeout)
        self.echo = UnaryUnaryMethod(node, ECHO, BytesValue, BytesValue)
        self.stream = UnaryStreamMethod(node, STREAM, BytesValue, BytesValue)
        records = records_type()
        self.records = UnaryUnaryMethod(node, RECORDS, records, records)
        return server

    async def cmd_first_call(self, size: int, timeout: float = 30.0) -> float:
        """Wait for a peer serving ``bench.Echo``, then make one unary echo of ``size`` bytes;
        when its answer came (milliseconds, as ``t_start_ms``)."""
        await self.cmd_wait_server(timeout)
        await self._echo()(BytesValue(value=os.urandom(size)), timeout=timeout)
        return now_ms()

    async def cmd_unreachable(self) -> dict[str, float]:
        """When each peer was first reported unreachable (``peerunreachable``: a direct attempt
        failed) since the join, by peer id (milliseconds, as ``t_start_ms``)."""
        return dict(self._unreachable)

    async def cmd_via(self, peer_id: str) -> list[str]:
        """How the connection to ``peer_id`` is made (``node.peers[peer_id].via``: ``[]``
        direct, ``["relay:<id>"]`` a circuit); :class:`KeyError` when not connected."""
        return list(self._node().peers[peer_id].via)

    def _echo(self) -> UnaryUnaryMethod[BytesValue, BytesValue]:
        if self.echo is None:
            raise RuntimeError("rpc.wait_server first")
        return self.echo

    async def cmd_latency(self, count: int, size: int, warmup: int = 20) -> list[float]:
        """``count`` sequential unary echoes of ``size`` bytes; each one's time in milliseconds."""
        return await measure.latency(self._echo(), count, size, warmup)

    async def cmd_throughput(self, concurrency: int, seconds: float, size: int) -> float:
        """Unary echoes with ``concurrency`` in flight for ``seconds``: calls per second."""
        return await measure.throughput(self._echo(), concurrency, seconds, size)

    async def cmd_bulk(self, size: int) -> float:
        """One unary echo of ``size`` random bytes; seconds from call to checked reply."""
        echo = self._echo()
        payload = os.urandom(size)
        request = BytesValue(value=payload)
        start = time.perf_counter()
        reply = await echo(request)
        elapsed = time.perf_counter() - start
        if reply.value != payload:
            raise RuntimeError("the echo came back different")
        return elapsed

    async def cmd_codecs(self) -> list[str]:
        """The compressions this p2prpc offers a call (none before it had any)."""
        try:
            module = importlib.import_module("p2prpc.wire.compression")
        except ImportError:
            return []
        return sorted(getattr(module, "CODECS", {}))

    async def cmd_records(self, size: int, compression: str | None = None) -> dict[str, float]:
        """One unary echo of a ``bench.Records`` of about ``size`` bytes, compressed as asked;
        seconds, and its size."""
        if self.records is None:
            raise RuntimeError("rpc.wait_server first")
        if self._records_payload is None or self._records_payload.ByteSize() < size:
            self._records_payload = make_records(size)
        request = self._records_payload
        options: dict[str, Any] = {} if compression is None else {"compression": compression}
        start = time.perf_counter()
        reply = await self.records(request, **options)
        elapsed = time.perf_counter() - start
        if reply.ByteSize() != request.ByteSize():
            raise RuntimeError("the echo came back different")
        return {"seconds": elapsed, "bytes": request.ByteSize()}

    async def cmd_stream(self, count: int, size: int) -> float:
        """A server stream of ``count`` messages of ``size`` bytes; seconds for all of them."""
        if self.stream is None:
            raise RuntimeError("rpc.wait_server first")
        request = BytesValue(value=f"{count},{size}".encode())
        received = 0
        start = time.perf_counter()
        async for reply in self.stream(request):
            received += len(reply.value) == size
        elapsed = time.perf_counter() - start
        if received != count:
            raise RuntimeError(f"{received} of {count} messages came")
        return elapsed

    async def cmd_rss(self) -> int:
        """This process's resident memory, bytes."""
        return rss()

    async def aclose(self) -> None:
        await self.cmd_leave()


class TrackerPeer:
    """The embedded tracker (what ``p2prpc tracker`` runs), in a worker process of its own."""

    def __init__(self) -> None:
        self.server: TrackerServer | None = None

    async def cmd_start(self, host: str = "127.0.0.1") -> str:
        """Listen on a free port of ``host``; returns the announce URL."""
        self.server = TrackerServer(host, 0)
        await self.server.start()
        return self.server.url

    async def aclose(self) -> None:
        if self.server is not None:
            await self.server.close()


def rss() -> int:
    """The resident set size of this process in bytes (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
