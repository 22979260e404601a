"""The measuring loops every unary baseline shares, so p2prpc and gRPC are timed the same way;
and the CPU time a worker process has used, which the orchestrator reads around a measurement."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from google.protobuf.wrappers_pb2 import BytesValue

Echo = Callable[[BytesValue], Awaitable[BytesValue]]


async def latency(echo: Echo, count: int, size: int, warmup: int = 20) -> list[float]:
    """``count`` sequential unary echoes of ``size`` bytes; each one's time in milliseconds."""
    request = BytesValue(value=os.urandom(size))
    for _ in range(warmup):
        await echo(request)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await echo(request)
        times.append((time.perf_counter() - start) * 1e3)
    return times


async def throughput(echo: Echo, concurrency: int, seconds: float, size: int) -> float:
    """Unary echoes with ``concurrency`` in flight for ``seconds``: calls per second."""
    request = BytesValue(value=os.urandom(size))
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await echo(request)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


class ProcessPeer:
    """The ``proc.*`` commands every Python worker answers, whatever peers it runs."""

    async def cmd_cpu(self) -> float:
        """CPU seconds (user and system, every thread) this process has used so far."""
        return time.process_time()

    async def aclose(self) -> None:
        pass
