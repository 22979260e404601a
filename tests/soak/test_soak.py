"""Soak: many connections made and closed, then minutes of mixed traffic, on each transport.

``make soak`` runs the whole of it on libwebrtc: 1,000 connect/call/close cycles and 10 minutes of
mixed traffic (``P2PRPC_SOAK_CYCLES``, ``P2PRPC_SOAK_SECONDS``); the suite runs 20 cycles and 10
seconds on each transport (tests/conftest.py runs this folder once per transport). Each test
asserts that nothing crashed, that every call ended with a status, and that what the process
holds (file descriptors, threads, resident memory) is as flat at the end as after a warm-up, both
measured with every node closed (see ``_assert_flat`` for the tolerances and why).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from usage import CountingTransport, MiB, Usage

from p2prpc.node import Node
from p2prpc.pubsub import Subscription, Topic
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
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import choose_transport

CYCLES = int(os.environ.get("P2PRPC_SOAK_CYCLES", "20"))
SECONDS = float(os.environ.get("P2PRPC_SOAK_SECONDS", "10"))

pytestmark = pytest.mark.asyncio

SERVICE = "soak.Echo"
TOPIC = "soak.news"


async def _echo(request: StringValue, context: ServicerContext) -> StringValue:
    return request


async def _count(request: StringValue, context: ServicerContext) -> AsyncIterator[StringValue]:
    for i in range(int(request.value)):
        yield StringValue(value=str(i))


async def _join(requests: AsyncIterator[StringValue], context: ServicerContext) -> StringValue:
    return StringValue(value=",".join([r.value async for r in requests]))


async def _upper(
    requests: AsyncIterator[StringValue], context: ServicerContext
) -> AsyncIterator[StringValue]:
    async for request in requests:
        yield StringValue(value=request.value.upper())


S = StringValue
HANDLERS: dict[str, Handler[Any, Any]] = {
    f"/{SERVICE}/Echo": Handler(_echo, Cardinality.UNARY_UNARY, S, S),
    f"/{SERVICE}/Count": Handler(_count, Cardinality.UNARY_STREAM, S, S),
    f"/{SERVICE}/Join": Handler(_join, Cardinality.STREAM_UNARY, S, S),
    f"/{SERVICE}/Upper": Handler(_upper, Cardinality.STREAM_STREAM, S, S),
}


@contextlib.contextmanager
def _loop_errors() -> Iterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler (a task's exception nobody retrieved, a
    callback that raised): a crash that no call would show."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()

    def handle(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # aiortc's own: the task that flushes a data channel's queue fails when its connection
        # closes with data queued, and nobody retrieves its exception (not p2prpc's to see).
        task = context.get("future")
        coro = task.get_coro() if isinstance(task, asyncio.Task) else None
        if getattr(coro, "__qualname__", "") != "RTCSctpTransport._data_channel_flush":
            errors.append(context)

    loop.set_exception_handler(handle)
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


def _assert_flat(warm: Usage, end: Usage, *, what: str) -> None:
    """``end`` holds no more than ``warm`` did, within tolerances:

    - file descriptors: none more (both are measured with every node closed and its sockets
      released; the tracker's listening socket is open in both);
    - threads: at most asyncio's default executor's bound more (``min(32, cores + 4)``), which
      starts its threads lazily, as name lookups come; a leak of one a cycle or a node passes it;
    - resident memory: 16 MiB more, what the allocator keeps of the busiest moment's heap: a
      leak of 16 KiB a cycle over 1,000 cycles passes it (two nodes kept each cycle hold about
      65 KiB: 60 MiB over ``make soak``'s 1,000; the suite's 20 cycles are too few to tell).
    """
    assert end.fds <= warm.fds, f"{what}: file descriptors {warm.fds} -> {end.fds}"
    pool = min(32, (os.cpu_count() or 1) + 4)
    assert end.threads <= warm.threads + pool, f"{what}: threads {warm.threads} -> {end.threads}"
    assert end.rss - warm.rss <= 16 * MiB, (
        f"{what}: resident memory {warm.rss / MiB:.1f} -> {end.rss / MiB:.1f} MiB"
    )


def _report(line: str) -> None:
    print(f"\nsoak: {line}", flush=True)


@pytest.mark.timeout(120 + 2 * CYCLES)
async def test_connect_call_close_cycles(default_transport: str) -> None:
    """Two nodes meet through the embedded tracker, one calls the other once, both close:
    ``CYCLES`` times, each within 30 seconds, with nothing held longer than its cycle."""
    counted = CountingTransport(choose_transport(default_transport))
    warm_up = max(5, CYCLES // 10)
    start = Usage.now()
    warm: Usage | None = None
    async with TrackerServer(LOOPBACK, 0) as tracker:
        with _loop_errors() as errors:
            began = time.monotonic()
            for cycle in range(CYCLES):
                if cycle == warm_up:
                    warm, warm_time = Usage.now(), time.monotonic()
                client = loopback_node([tracker.url], "p2prpc-soak", transport=counted)
                server = loopback_node([tracker.url], "p2prpc-soak", transport=counted)
                server.add_service(SERVICE, HANDLERS)
                try:
                    async with asyncio.timeout(30):
                        await client.start()
                        await server.start()
                        await client.wait_for_peers(1)
                        echo = UnaryUnaryMethod(client.to(server.peer_id), f"/{SERVICE}/Echo", S, S)
                        reply = await echo(S(value=f"cycle {cycle}"), timeout=20)
                        assert reply.value == f"cycle {cycle}"
                finally:
                    await client.close()
                    await server.close()
                # wrtc 0.1.0's peer connections sit in reference cycles of their own: a closed
                # one is freed by the cycle collector, not at once, and the heap they leave
                # between collections fragments (resident memory then rises some 15 KiB a
                # cycle, and stays flat with this collection). A leak is not freed by it.
                gc.collect()
            elapsed = time.monotonic() - began
        assert not errors, errors
        end = Usage.now()
    assert warm is not None
    rate = (CYCLES - warm_up) / (time.monotonic() - warm_time)
    _report(
        f"{default_transport} cycles={CYCLES} in {elapsed:.1f}s ({rate:.1f}/s after warm-up)"
        f" links={counted.links} start[{start}] warm[{warm}] end[{end}]"
    )
    _assert_flat(warm, end, what="cycles")


class _Traffic:
    """Mixed traffic among ``size`` nodes that come and go: callers on every call shape, a
    publisher and subscribers on one topic. Each call ends OK with the right replies, or
    UNAVAILABLE when its server or its own node leaves under it; one that outlives its deadline
    by ``MARGIN`` hangs."""

    DEADLINE = 10.0  # seconds: a call's own timeout
    MARGIN = 20.0  # seconds past its deadline by which a call has ended, or it hangs

    def __init__(self, tracker: TrackerServer, transport: CountingTransport, size: int) -> None:
        self.tracker, self.transport, self.size = tracker, transport, size
        self.nodes: list[Node] = []
        self.codes: Counter[StatusCode] = Counter()
        self.shapes: Counter[str] = Counter()
        self.published = self.received = self.joined = self.left = 0
        self.hung: list[str] = []
        self.wrong: list[str] = []
        self._readers: dict[Node, asyncio.Task[None]] = {}
        self._leaving: set[Node] = set()

    async def add(self) -> None:
        node = loopback_node([self.tracker.url], "p2prpc-soak-mixed", transport=self.transport)
        node.add_service(SERVICE, HANDLERS)
        subscription = Topic(node, TOPIC, S).subscribe()
        self._readers[node] = asyncio.ensure_future(self._read(subscription))
        await node.start()
        self.nodes.append(node)
        self.joined += 1

    async def leave(self, node: Node) -> None:
        self.nodes.remove(node)
        self._leaving.add(node)
        try:
            await node.close()
        finally:
            self._leaving.discard(node)
            reader = self._readers.pop(node)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self.left += 1

    async def close(self) -> None:
        for node in list(self.nodes):
            await self.leave(node)

    async def settle(self, timeout: float = 30) -> None:
        """Until every node knows every other (a mesh with no node half-met)."""
        async with asyncio.timeout(timeout):
            for node in self.nodes:
                others = {other.peer_id for other in self.nodes if other is not node}
                await node.wait_until(lambda node=node, others=others: others <= node.peers.keys())

    async def _read(self, subscription: Subscription[StringValue]) -> None:
        async for _ in subscription:
            self.received += 1

    async def call(self, rng: random.Random) -> None:
        """One call of a random shape from a random node to any server; its status counted."""
        node = rng.choice(self.nodes)
        channel = Channel(node)
        shape = rng.choice(("unary_unary", "unary_stream", "stream_unary", "stream_stream"))
        words = [f"w{rng.randrange(1000)}" for _ in range(rng.randrange(1, 8))]
        t = self.DEADLINE
        try:
            async with asyncio.timeout(self.DEADLINE + self.MARGIN):
                try:
                    if shape == "unary_unary":
                        m1 = UnaryUnaryMethod(channel, f"/{SERVICE}/Echo", S, S)
                        got = [(await m1(S(value=words[0]), timeout=t)).value]
                        want = words[:1]
                    elif shape == "unary_stream":
                        m2 = UnaryStreamMethod(channel, f"/{SERVICE}/Count", S, S)
                        got = [r.value async for r in m2(S(value=str(len(words))), timeout=t)]
                        want = [str(i) for i in range(len(words))]
                    elif shape == "stream_unary":
                        m3 = StreamUnaryMethod(channel, f"/{SERVICE}/Join", S, S)
                        got = [(await m3([S(value=w) for w in words], timeout=t)).value]
                        want = [",".join(words)]
                    else:
                        m4 = StreamStreamMethod(channel, f"/{SERVICE}/Upper", S, S)
                        requests = [S(value=w) for w in words]
                        got = [r.value async for r in m4(requests, timeout=t)]
                        want = [w.upper() for w in words]
                except RpcError as error:
                    self.codes[error.code()] += 1
                    if error.code() is not StatusCode.UNAVAILABLE:
                        self.wrong.append(f"{shape}: {error.code().name} {error.details()}")
                else:
                    self.codes[StatusCode.OK] += 1
                    if got != want:
                        self.wrong.append(f"{shape}: {got} for {want}")
        except TimeoutError:
            self.hung.append(shape)
        self.shapes[shape] += 1

    async def callers(self, until: float, workers: int, seed: int) -> None:
        async def worker(rng: random.Random) -> None:
            while time.monotonic() < until:
                await self.call(rng)

        async with asyncio.TaskGroup() as group:  # one failing stops the others
            for w in range(workers):
                group.create_task(worker(random.Random(seed + w)))

    async def publisher(self, until: float, seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < until:
            topic = Topic(rng.choice(self.nodes), TOPIC, S)
            with contextlib.suppress(RpcError):  # its node closing under it
                await topic.publish(S(value=f"news {self.published}"))
                self.published += 1
            await asyncio.sleep(0.05)  # a steady trickle, not a flood

    async def churn(self, until: float, every: float, seed: int) -> None:
        """One node leaves and a new one joins every ``every`` seconds."""
        rng = random.Random(seed)
        while time.monotonic() + every < until:
            await asyncio.sleep(every)
            await self.leave(rng.choice(self.nodes))
            await self.add()

    async def run(self, seconds: float, seed: int) -> None:
        until = time.monotonic() + seconds
        async with asyncio.TaskGroup() as group:  # one failing stops the others
            group.create_task(self.callers(until, workers=4, seed=seed))
            group.create_task(self.publisher(until, seed))
            group.create_task(self.churn(until, every=max(1.0, min(5.0, seconds / 10)), seed=seed))


@pytest.mark.timeout(180 + 2 * SECONDS)
async def test_mixed_traffic_with_peers_leaving_and_joining(default_transport: str) -> None:
    """Four nodes call each other on every call shape and publish to a topic they all read,
    while one leaves and a new one joins every few seconds, for ``SECONDS``: a warm-up tenth of
    it (3 seconds at least), every node closed and what the process holds measured, then the
    rest, measured again the same way."""
    counted = CountingTransport(choose_transport(default_transport))
    warm_up = max(3.0, SECONDS / 10)
    start = Usage.now()
    peak = start
    async with TrackerServer(LOOPBACK, 0) as tracker:
        with _loop_errors() as errors:
            traffic = _Traffic(tracker, counted, size=4)

            async def phase(seconds: float, seed: int) -> None:
                nonlocal peak
                running: asyncio.Future[None] | None = None
                try:
                    for _ in range(traffic.size):
                        await traffic.add()
                    await traffic.settle()
                    running = asyncio.ensure_future(traffic.run(seconds, seed))
                    while not running.done():  # the most held while traffic runs, for the report
                        await asyncio.wait([running], timeout=1)
                        now = Usage.now()
                        peak = Usage(
                            max(peak.fds, now.fds),
                            max(peak.threads, now.threads),
                            max(peak.rss, now.rss),
                        )
                    await running
                finally:  # a failure leaves nothing running behind it
                    if running is not None and not running.done():
                        running.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await running
                    await traffic.close()

            began = time.monotonic()
            await phase(warm_up, seed=1)
            warm = Usage.now()
            await phase(SECONDS - warm_up, seed=2)
            elapsed = time.monotonic() - began
        end = Usage.now()
    assert not errors, errors
    calls = sum(traffic.codes.values())
    _report(
        f"{default_transport} mixed {elapsed:.0f}s: calls={calls} {dict(traffic.shapes)}"
        f" codes={ {c.name: n for c, n in traffic.codes.items()} }"
        f" published={traffic.published} received={traffic.received}"
        f" joined={traffic.joined} left={traffic.left} links={counted.links}"
        f" start[{start}] warm[{warm}] peak[{peak}] end[{end}]"
    )
    assert not traffic.hung, f"calls that outlived their deadline: {Counter(traffic.hung)}"
    assert not traffic.wrong, traffic.wrong[:10]
    assert calls == sum(traffic.shapes.values())  # each call ended with a status, counted once
    # Most calls are served: only those caught by a node leaving may fail.
    assert traffic.codes[StatusCode.OK] >= calls * 0.8, traffic.codes
    assert all(
        traffic.shapes[shape] > 0
        for shape in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
    )
    assert traffic.received > 0 and traffic.left == traffic.joined
    _assert_flat(warm, end, what="mixed traffic")
