"""The work a peer can make a node do is bounded per byte it sends, and a peer that keeps a node
busy is paced while the others are served.

A hostile peer (a process of its own) sends the costliest payloads there are: tiny compressed
payloads that inflate to 16 MiB of unknown protobuf fields, and payloads that inflate as much as
a receiver still takes. The victim (a process of its own, which reports its CPU time) must spend
at most 20 times the CPU per byte sent that the same number of bytes costs it uncompressed (the
baseline, measured in the same test), and a well-behaved peer's calls to it meanwhile must each be
answered promptly.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from helloworld_p2prpc import GreeterStub
from helloworld_pb2 import HelloRequest

from p2prpc.node import Node
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.compression import CODECS

pytestmark = pytest.mark.asyncio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: At most this many times the CPU per byte sent that the same bytes cost uncompressed.
MAX_WORK_RATIO = 20.0
#: A well-behaved peer's unary call, answered within this (each one), while the hostile peer
#: keeps sending; its median within a tenth of it.
MAX_LATENCY = 0.25
MAX_MEDIAN_LATENCY = 0.1


class Peer:
    """A peer process driven by lines on stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, line: str, timeout: float = 60) -> list[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.read(timeout)

    async def read(self, timeout: float = 60) -> list[str]:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            answer = await self.process.stdout.readline()
        assert answer, "the peer process ended"
        return answer.decode().split()


@asynccontextmanager
async def peer_process(role: str, url: str, identifier: str, *options: str) -> AsyncIterator[Peer]:
    path = os.pathsep.join([str(ROOT / "generated"), str(ROOT)])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "work_peers.py"),
        role,
        url,
        identifier,
        *options,
        env={**os.environ, "PYTHONPATH": path},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield Peer(process)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def probe(client: Node, victim_id: str, latencies: list[float]) -> None:
    """Call the victim again and again, one call at a time, timing each."""
    stub = GreeterStub(client.to(victim_id))
    while True:
        started = time.perf_counter()
        reply = await stub.SayHello(HelloRequest(name="probe"), timeout=10)
        latencies.append(time.perf_counter() - started)
        assert reply.message == "Hello, probe"
        await asyncio.sleep(0.005)  # pacing the probe, not waiting for a condition


async def phase(
    victim: Peer, hostile: Peer, client: Node, victim_id: str, command: str
) -> tuple[float, int, str, list[float], float]:
    """Victim CPU seconds and bytes sent for one batch of hostile calls, their end codes, the
    well-behaved peer's latencies meanwhile, and how long the batch took (seconds)."""
    latencies: list[float] = []
    before = float((await victim.ask("cpu"))[1])
    prober = asyncio.create_task(probe(client, victim_id, latencies))
    try:
        _, sent, took, codes = await hostile.ask(command, timeout=120)
    finally:
        prober.cancel()
        await asyncio.gather(prober, return_exceptions=True)
    after = float((await victim.ask("cpu"))[1])
    return after - before, int(sent), codes, latencies, float(took)


@asynccontextmanager
async def three_peers(
    identifier: str, *victim_options: str
) -> AsyncIterator[tuple[Peer, Peer, Node, str]]:
    """A victim and a hostile peer in processes of their own, and a well-behaved peer here."""
    async with AsyncExitStack() as stack:
        tracker = await stack.enter_async_context(TrackerServer(LOOPBACK, 0))
        victim = await stack.enter_async_context(
            peer_process("victim", tracker.url, identifier, *victim_options)
        )
        victim_id = (await victim.read())[1]
        hostile = await stack.enter_async_context(peer_process("hostile", tracker.url, identifier))
        client = loopback_node([tracker.url], identifier, mesh=False)
        await client.start()
        stack.push_async_callback(client.close)
        async with asyncio.timeout(30):
            await hostile.read()
            await client.wait_until(lambda: victim_id in client.servers_of("helloworld.Greeter"))
        yield victim, hostile, client, victim_id


ENCODINGS = [e for e in ("zstd", "deflate") if e in CODECS]


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_decoding_work_per_byte_is_bounded_and_others_are_served(encoding: str) -> None:
    async with three_peers(f"work-{encoding}") as (victim, hostile, client, victim_id):
        report = []
        all_latencies: list[float] = []
        for mode, count in (("bomb", 300), ("fit", 600)):
            base_cpu, base_sent, base_codes, lat0, _ = await phase(
                victim, hostile, client, victim_id, f"send plain-{mode} {encoding} {count} 32"
            )
            cpu, sent, codes, lat1, _ = await phase(
                victim, hostile, client, victim_id, f"send {mode} {encoding} {count} 32"
            )
            assert sent == base_sent and base_codes == f"OK={count}"
            ratio = (cpu / sent) / (base_cpu / base_sent)
            all_latencies += lat0 + lat1
            report.append(
                f"{mode}: {sent // count} B a call, {codes}; victim CPU {cpu * 1e3:.0f} ms "
                f"vs {base_cpu * 1e3:.0f} ms uncompressed: {ratio:.1f}×; probe latency "
                f"max {max(lat1) * 1e3:.0f} ms, median {statistics.median(lat1) * 1e3:.1f} ms"
            )
            print(report[-1])
            assert ratio <= MAX_WORK_RATIO, report[-1]
            if mode == "bomb":
                assert codes == f"RESOURCE_EXHAUSTED={count}", report[-1]
            else:
                assert codes == f"OK={count}", report[-1]
        assert all_latencies
        assert max(all_latencies) <= MAX_LATENCY, report
        assert statistics.median(all_latencies) <= MAX_MEDIAN_LATENCY, report


WORK_RATE = 16 * 2**20
WORK_BURST = 2**20


async def test_a_peer_that_keeps_a_node_busy_is_paced_and_the_others_are_not() -> None:
    """With a work budget of 16 MiB/s, a peer sending payloads that each cost about 100 kB of
    work is slowed to that rate (its calls wait, and are all answered); a well-behaved peer's
    calls are answered meanwhile as promptly as ever. Past ``max_delayed_bytes`` waiting, the
    hostile peer's calls are refused RESOURCE_EXHAUSTED, and none is left hanging."""
    encoding = ENCODINGS[0]
    options = (f"work_rate={WORK_RATE}", f"work_burst={WORK_BURST}", "max_delayed_bytes=200000")
    async with three_peers("work-paced", *options) as (victim, hostile, client, victim_id):
        count = 300
        _, sent, codes, latencies, took = await phase(
            victim, hostile, client, victim_id, f"send fit {encoding} {count} 32"
        )
        assert codes == f"OK={count}"
        # Each call costs at least its 1.5 kB sent and the ~100 kB it inflates to.
        work = sent * 60
        print(f"paced: {count} calls took {took:.2f} s; probe max {max(latencies) * 1e3:.0f} ms")
        assert took >= (work - WORK_BURST) / WORK_RATE, (took, work)
        assert max(latencies) <= MAX_MEDIAN_LATENCY, latencies
        # 600 calls at once: more than 200 kB of them wait; those past it are refused.
        _, _, codes, latencies, _ = await phase(
            victim, hostile, client, victim_id, f"send fit {encoding} 600 600"
        )
        print(f"overflowing: {codes}; probe max {max(latencies) * 1e3:.0f} ms")
        counted = dict(item.split("=") for item in codes.split(","))
        assert set(counted) == {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert sum(map(int, counted.values())) == 600
        assert max(latencies) <= MAX_LATENCY, latencies
