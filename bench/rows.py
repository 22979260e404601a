"""The benchmark rows: which processes each starts, what it measures, how it is judged.

A :class:`Bench` is one row of the table. Its :class:`Phase`\\ s each start their own processes
and return figures; phases with a libwebrtc peer (JavaScript P2PT in node) need the test network
namespace and are run together inside it, after the loopback ones. ``judge`` turns the figures into
the row's checks against the issue's targets and says what sets the ceiling.

Where p2prpc and a baseline are compared, both sets of processes stay up and their repetitions
alternate, so that a slow spell of the machine hits both alike.

CPU per message: the orchestrator reads the CPU time of the processes doing the work (client and
server, or publisher and subscribers) before and after each repetition, and divides by the calls,
messages or deliveries it made. The tracker's process is not counted, nor is the orchestrator.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import math
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .peer_pubsub import DEGREE, MIN_DEGREE
from .procs import Worker, embedded_tracker, js_tracker, workers
from .records import make_records
from .report import CPU, P2PRPC, Check, Figure, Row, amount

T = TypeVar("T")

MB = 1e6
"""Bulk rows count megabytes as 10^6 bytes, moved in both directions (request and reply)."""


@dataclass(frozen=True)
class Plan:
    """How many repetitions each row makes (``FULL`` for ``make bench``, ``QUICK`` to smoke)."""

    connect: int = 20
    connect_veth: int = 10
    latency_calls: int = 2000
    throughput_runs: int = 5
    throughput_seconds: float = 3.0
    bulk_1mb: int = 15
    bulk_10mb: int = 7
    records_10mb: int = 5
    stream_runs: int = 5
    stream_count: int = 10_000
    fanout_burst: int = 1000
    fanout_runs: int = 3
    fanout_paced: int = 300
    swarm_peers: int = 50
    swarm_processes: int = 5
    swarm_messages: int = 1000
    heal_peers: int = 50
    heal_leaving: int = 10
    heal_messages: int = 1000
    long_stream_count: int = 3000
    long_stream_runs: int = 3
    long_latency_calls: int = 60


FULL = Plan()
QUICK = Plan(
    connect=3,
    connect_veth=2,
    latency_calls=20,
    throughput_runs=1,
    throughput_seconds=1.0,
    bulk_1mb=2,
    bulk_10mb=1,
    records_10mb=1,
    stream_runs=1,
    stream_count=2000,
    fanout_burst=200,
    fanout_runs=1,
    fanout_paced=50,
    swarm_peers=12,
    swarm_processes=3,
    swarm_messages=100,
    heal_peers=12,
    heal_leaving=3,
    heal_messages=100,
    long_stream_count=1000,
    long_stream_runs=1,
    long_latency_calls=10,
)


@dataclass
class Context:
    """What every phase gets: the plan, where logs go, and the namespace's addresses (if in)."""

    plan: Plan
    log_dir: Path
    profile_dir: Path | None = None
    veth: tuple[str, str] | None = None
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    started: float = field(default_factory=time.monotonic)
    # Datagrams dropped on the sockets of the workers closed so far: Python ones (aiortc) and
    # node ones (libwebrtc, which sizes its sockets itself).
    udp_drops: Counter[str] = field(default_factory=Counter)

    def count_udp_drops(self, drops: int, *, node: bool) -> None:
        self.udp_drops["libwebrtc sockets" if node else "sockets"] += drops

    def progress(self, text: str) -> None:
        """Say what a long phase is doing (on stderr, with the time since the run began)."""
        print(f"  {time.monotonic() - self.started:7.1f} s  {text}", file=sys.stderr, flush=True)

    def identifier(self, name: str) -> str:
        """A swarm identifier of this run alone (a fresh info_hash for each use)."""
        return f"p2prpc-bench-{self.run_id}-{name}-{secrets.token_hex(3)}"


PhaseRun = Callable[[Context], Coroutine[Any, Any, list[Figure]]]


@dataclass(frozen=True)
class Phase:
    """Part of a row, with processes of its own; ``netns``: it has a libwebrtc peer."""

    name: str
    run: PhaseRun
    netns: bool = False


@dataclass(frozen=True)
class Bench:
    """One row; ``unavailable`` says why it cannot run here (None: it can)."""

    key: str
    title: str  # a format string: ``plan`` is the run's Plan
    phases: tuple[Phase, ...]
    judge: Callable[[Row], None]
    unavailable: Callable[[], str | None] = lambda: None


def now_ms() -> float:
    return time.monotonic_ns() / 1e6


async def cpu_seconds(group: Sequence[Worker]) -> float:
    """CPU seconds the worker processes of ``group`` have used so far, summed."""
    return sum([float(x) for x in await asyncio.gather(*(w.call("proc.cpu") for w in group))])


async def cpu_during(group: Sequence[Worker], work: Awaitable[T]) -> tuple[T, float]:
    """``work``'s result, and the CPU seconds ``group`` used while it ran."""
    before = await cpu_seconds(group)
    result = await work
    return result, await cpu_seconds(group) - before


def cpu_figures(samples: dict[str, list[float]], per: str, note: str) -> list[Figure]:
    """CPU figures (microseconds per ``per``), one per label that has samples."""
    return [
        Figure(f"{label} CPU", f"{CPU}{per}", values, False, note)
        for label, values in samples.items()
        if values
    ]


def cpu_check(row: Row, baseline: str = "raw aiortc", limit: float = 1.2) -> None:
    """The issue's CPU target: p2prpc's CPU per message at most ``limit`` × the baseline's."""
    target = f"CPU ≤ {limit:g}× {baseline}"
    ratio_check(row, target, f"{P2PRPC} CPU", f"{baseline} CPU", limit, at_least=False)


# -- setting peers up -----------------------------------------------------------------------------


LOOPBACK = ("127.0.0.1", "127.0.0.1")
"""Where a pair's server and client meet by default: both on loopback."""


async def rpc_pair(
    stack: AsyncExitStack,
    ctx: Context,
    name: str,
    hosts: tuple[str, str] = LOOPBACK,
    **join: Any,
) -> tuple[Worker, Worker]:
    """A p2prpc server and client in two processes, connected through the embedded tracker
    (``hosts``: the server's and the client's ICE host address; ``join``: more options of
    ``rpc.join`` for both, such as a secret)."""
    url = await stack.enter_async_context(embedded_tracker(ctx, f"{name}-tracker"))
    server, client = await stack.enter_async_context(
        workers([f"{name}-p2prpc-server", f"{name}-p2prpc-client"], ctx)
    )
    identifier = ctx.identifier(name)
    await server.call(
        "rpc.join", urls=[url], identifier=identifier, serve=True, host=hosts[0], **join
    )
    await client.call("rpc.join", urls=[url], identifier=identifier, host=hosts[1], **join)
    await client.call("rpc.wait_server")
    return server, client


async def raw_connect(
    client: Worker, server: Worker, host: str = "127.0.0.1", server_host: str | None = None
) -> float:
    """Open a raw aiortc data channel from ``client`` (on ``host``) to ``server`` (on
    ``server_host``, by default the same); milliseconds it took."""
    start = now_ms()
    offer = await client.call("raw.offer", host=host)
    answer = await server.call("raw.answer", sdp=offer, host=server_host or host)
    await client.call("raw.accept", sdp=answer)
    await asyncio.gather(client.call("raw.wait_open"), server.call("raw.wait_open"))
    return now_ms() - start


async def raw_pair(
    stack: AsyncExitStack, ctx: Context, name: str, hosts: tuple[str, str] = LOOPBACK
) -> tuple[Worker, Worker]:
    """A raw aiortc data channel between two processes (signalled through the orchestrator;
    ``hosts`` as for :func:`rpc_pair`)."""
    server, client = await stack.enter_async_context(
        workers([f"{name}-raw-server", f"{name}-raw-client"], ctx)
    )
    await raw_connect(client, server, hosts[1], hosts[0])
    return server, client


async def js_pair(stack: AsyncExitStack, ctx: Context, name: str) -> tuple[Worker, Worker]:
    """A JavaScript P2PT server and client in two node processes, connected through npm
    bittorrent-tracker (inside the namespace)."""
    url = await stack.enter_async_context(js_tracker())
    server, client = await stack.enter_async_context(
        workers([f"{name}-server", f"{name}-client"], ctx, node=True)
    )
    identifier = ctx.identifier(name)
    await server.call("p2pt.join", urls=[url], identifier=identifier, serve=True)
    await client.call("p2pt.join", urls=[url], identifier=identifier)
    await client.call("p2pt.wait_peer")
    return server, client


async def grpc_pair(stack: AsyncExitStack, ctx: Context, name: str) -> tuple[Worker, Worker]:
    """A gRPC aio server and client in two processes, on loopback TCP."""
    server, client = await stack.enter_async_context(
        workers([f"{name}-grpc-server", f"{name}-grpc-client"], ctx)
    )
    port = await server.call("grpc.serve")
    await client.call("grpc.connect", port=port)
    return server, client


def ratio_check(
    row: Row, target: str, label: str, baseline: str, limit: float, *, at_least: bool
) -> None:
    """Add the check ``median(label) / median(baseline)`` ≥ or ≤ ``limit``."""
    mine, other = row.figure(label), row.figure(baseline)
    if mine is None or other is None:
        row.checks.append(Check(target, "—", None))
        return
    ratio = mine.summary.median / other.summary.median
    met = ratio >= limit if at_least else ratio <= limit
    line = limit * other.summary.median
    row.checks.append(Check(target, f"{ratio:.2f}× {baseline}", met, ratio, label, line))


def value_check(row: Row, target: str, label: str, limit: float, *, at_least: bool) -> None:
    """Add the check ``median(label)`` ≥ or ≤ ``limit``."""
    figure = row.figure(label)
    if figure is None:
        row.checks.append(Check(target, "—", None))
        return
    value = figure.summary.median
    met = value >= limit if at_least else value <= limit
    row.checks.append(Check(target, amount(value, figure.unit), met, value, label, limit))


def transport_ceiling(row: Row, raw: str = "raw aiortc") -> str:
    """How close p2prpc comes to the raw data channel used message by message (which it passes
    only where it sends fewer, larger data-channel messages: packed batches, compression)."""
    mine, other = row.figure(P2PRPC), row.figure(raw)
    if mine is None or other is None:
        return ""
    share = mine.summary.median / other.summary.median
    if mine.higher_is_better:
        if share > 1.05:
            return (
                f"the transport: raw aiortc moves {other.show(p99=False)} here, and p2prpc "
                f"{share:.2f}× that by sending fewer, larger data-channel messages (small ones "
                f"sent together go packed in one, large payloads in 64 KiB frames); aiortc's "
                f"pure-Python SCTP/DTLS still sets the pace"
            )
        if share >= 0.8:
            return (
                f"the transport: aiortc's pure-Python SCTP/DTLS moves at most "
                f"{other.show(p99=False)} here, and p2prpc reaches {share:.0%} of that"
            )
        return (
            f"p2prpc: it reaches {share:.0%} of the {other.show(p99=False)} aiortc moves here "
            f"(aiortc's pure-Python SCTP/DTLS is the ceiling above that)"
        )
    extra = mine.summary.median - other.summary.median
    return (
        f"aiortc's round trip ({other.show(p99=False)}) is the floor for any data-channel "
        f"protocol; p2prpc adds {extra:.3g} {mine.unit} ({share:.2f}×) on top"
    )


# -- connect --------------------------------------------------------------------------------------


async def _connect_times(
    a: Worker,
    b: Worker,
    prefix: str,
    ctx: Context,
    url: str,
    reps: int,
    host: tuple[str, str] | None = None,
    join: dict[str, Any] | None = None,
) -> tuple[list[float], list[float]]:
    """Start ``a``, then time ``b``'s start until both have ``peerconnect`` (one warm-up first).

    Returns the connect times and, for p2prpc, the times until both have said hello. ``join``:
    more options of the join command for both (a secret).
    """
    connects, hellos = [], []
    host_args: list[dict[str, Any]] = [{}, {}] if host is None else [{"host": h} for h in host]
    host_args = [{**args, **(join or {})} for args in host_args]
    for i in range(reps + 1):
        identifier = ctx.identifier("connect")
        await a.call(f"{prefix}.join", urls=[url], identifier=identifier, **host_args[0])
        joined = await b.call(f"{prefix}.join", urls=[url], identifier=identifier, **host_args[1])
        first, second = await asyncio.gather(
            a.call(f"{prefix}.wait_peer"), b.call(f"{prefix}.wait_peer")
        )
        if i > 0:
            t_start = joined["t_start_ms"]
            connects.append(max(first["t_connect_ms"], second["t_connect_ms"]) - t_start)
            if "t_hello_ms" in first:
                hellos.append(max(first["t_hello_ms"], second["t_hello_ms"]) - t_start)
        await asyncio.gather(a.call(f"{prefix}.leave"), b.call(f"{prefix}.leave"))
    return connects, hellos


async def connect_p2prpc(ctx: Context) -> list[Figure]:
    async with (
        embedded_tracker(ctx, "connect-p2prpc-tracker") as url,
        workers(["connect-p2prpc-a", "connect-p2prpc-b"], ctx) as (a, b),
        workers(["connect-raw-a", "connect-raw-b"], ctx) as (ra, rb),
    ):
        connects, hellos = await _connect_times(a, b, "rpc", ctx, url, ctx.plan.connect)
        raw = []
        for i in range(ctx.plan.connect + 1):
            elapsed = await raw_connect(ra, rb)
            if i > 0:
                raw.append(elapsed)
            await asyncio.gather(ra.call("raw.close"), rb.call("raw.close"))
    return [
        Figure(P2PRPC, "ms", connects, False, "start → peerconnect on both, embedded tracker"),
        Figure("p2prpc to hello", "ms", hellos, False, "start → both said hello (RPC-ready)"),
        Figure(
            "raw aiortc, direct signalling",
            "ms",
            raw,
            False,
            "offer → data channel open, SDP handed over by the orchestrator: no tracker",
        ),
    ]


async def connect_js(ctx: Context) -> list[Figure]:
    async with (
        js_tracker() as url,
        workers(["connect-js-a", "connect-js-b"], ctx, node=True) as (a, b),
    ):
        connects, _ = await _connect_times(a, b, "p2pt", ctx, url, ctx.plan.connect)
    return [
        Figure(
            "JS P2PT",
            "ms",
            connects,
            False,
            "node ↔ node (libwebrtc) through bittorrent-tracker, in the test namespace",
        )
    ]


async def connect_p2prpc_veth(ctx: Context) -> list[Figure]:
    assert ctx.veth is not None
    async with (
        embedded_tracker(ctx, "connect-p2prpc-veth-tracker") as url,
        workers(["connect-p2prpc-veth-a", "connect-p2prpc-veth-b"], ctx) as (a, b),
    ):
        connects, _ = await _connect_times(
            a, b, "rpc", ctx, url, ctx.plan.connect_veth, host=ctx.veth
        )
    return [
        Figure(
            "p2prpc over veth",
            "ms",
            connects,
            False,
            "the same, on the namespace's veth pair where JS P2PT runs",
        )
    ]


def judge_connect(row: Row) -> None:
    value_check(row, "p50 ≤ 100 ms", P2PRPC, 100.0, at_least=False)
    ratio_check(row, "p50 below JS P2PT", P2PRPC, "JS P2PT", 1.0, at_least=False)
    raw = row.figure("raw aiortc, direct signalling")
    if raw is not None:
        row.ceiling = (
            f"aiortc's ICE, DTLS and SCTP handshakes take {raw.show(p99=False)} with no tracker "
            f"in between; the rest is the tracker round trips and offer making"
        )


# -- secret mode ----------------------------------------------------------------------------------

#: A closed swarm whose nodes each prove an identity: every protection of docs/SECURITY.md on.
SECRET_JOIN: dict[str, Any] = {"secret": secrets.token_urlsafe(32), "identity": True}


async def secret_mode(ctx: Context) -> list[Figure]:
    """What a secret swarm with identities costs: connect time and unary latency, against the
    same measured in an open swarm in the same run."""
    async with (
        embedded_tracker(ctx, "secret-tracker") as url,
        workers(["secret-a", "secret-b"], ctx) as (a, b),
    ):
        plain: list[float] = []
        closed: list[float] = []
        rounds = 4 if ctx.plan.connect >= 8 else 1  # interleaved, so drift hits both alike
        for _ in range(rounds):
            reps = ctx.plan.connect // rounds
            plain += (await _connect_times(a, b, "rpc", ctx, url, reps))[0]
            closed += (await _connect_times(a, b, "rpc", ctx, url, reps, join=SECRET_JOIN))[0]
    latency: dict[str, list[float]] = {"open": [], "secret": []}
    async with AsyncExitStack() as stack:
        pairs = {
            "open": await rpc_pair(stack, ctx, "secret-open"),
            "secret": await rpc_pair(stack, ctx, "secret-closed", **SECRET_JOIN),
        }
        rounds = 2
        for _ in range(rounds):
            for label, (_, client) in pairs.items():
                latency[label] += await client.call(
                    "rpc.latency",
                    count=ctx.plan.latency_calls // (2 * rounds),
                    size=PAYLOAD,
                    warmup=LATENCY_WARMUP,
                )
    how = "start → peerconnect on both, embedded tracker"
    return [
        Figure(SECRET_CONNECT, "ms", closed, False, f"{how}; sealed SDP, handshake, identities"),
        Figure(SECRET_UNARY, "ms", latency["secret"], False, "unary call, 100 B each way"),
        Figure(OPEN_CONNECT, "ms", plain, False, how),
        Figure(OPEN_UNARY, "ms", latency["open"], False, "unary call, 100 B each way"),
    ]


SECRET_CONNECT = f"{P2PRPC} secret connect"
SECRET_UNARY = f"{P2PRPC} secret unary"
OPEN_CONNECT = "open mode, connect"
OPEN_UNARY = "open mode, unary"


def judge_secret(row: Row) -> None:
    ratio_check(row, "connect ≤ 1.25× open", SECRET_CONNECT, OPEN_CONNECT, 1.25, at_least=False)
    ratio_check(row, "unary p50 ≤ 1.05× open", SECRET_UNARY, OPEN_UNARY, 1.05, at_least=False)


# -- unary ----------------------------------------------------------------------------------------

PAYLOAD = 100
CONCURRENCY = 32


LATENCY_WARMUP = 20


async def unary_latency(ctx: Context) -> list[Figure]:
    calls = ctx.plan.latency_calls
    rounds = 4 if calls >= 400 else 1
    samples: dict[str, list[float]] = {P2PRPC: [], "raw aiortc": [], "gRPC aio": []}
    cpu: dict[str, list[float]] = {label: [] for label in samples}
    async with AsyncExitStack() as stack:
        pairs = {
            P2PRPC: (await rpc_pair(stack, ctx, "latency"), "rpc.latency"),
            "raw aiortc": (await raw_pair(stack, ctx, "latency"), "raw.ping"),
            "gRPC aio": (await grpc_pair(stack, ctx, "latency"), "grpc.latency"),
        }
        await pairs["raw aiortc"][0][0].call("raw.serve", mode="ping")
        for _ in range(rounds):
            n = calls // rounds
            for label, ((server, client), cmd) in pairs.items():
                work = client.call(cmd, count=n, size=PAYLOAD, warmup=LATENCY_WARMUP)
                times, used = await cpu_during([server, client], work)
                samples[label] += times
                cpu[label].append(used / (n + LATENCY_WARMUP) * 1e6)
    notes = {
        P2PRPC: "unary call, 100-byte BytesValue each way",
        "raw aiortc": "100-byte data-channel message and its echo",
        "gRPC aio": "unary call on loopback TCP, 100-byte BytesValue each way",
    }
    figures = [Figure(k, "ms", v, False, notes[k]) for k, v in samples.items()]
    return figures + cpu_figures(
        cpu, "call", "client and server processes, per sequential call (warm-up included)"
    )


def judge_latency(row: Row) -> None:
    ratio_check(row, "p50 ≤ 1.25× raw aiortc", P2PRPC, "raw aiortc", 1.25, at_least=False)
    ratio_check(row, "p50 ≤ 1.0× gRPC aio", P2PRPC, "gRPC aio", 1.0, at_least=False)
    cpu_check(row)
    row.ceiling = transport_ceiling(row)


async def unary_throughput(ctx: Context) -> list[Figure]:
    plan = ctx.plan
    samples: dict[str, list[float]] = {P2PRPC: [], "gRPC aio": [], "raw aiortc": []}
    cpu: dict[str, list[float]] = {label: [] for label in samples}
    args = {"concurrency": CONCURRENCY, "seconds": plan.throughput_seconds, "size": PAYLOAD}
    async with AsyncExitStack() as stack:
        pairs = {
            P2PRPC: (await rpc_pair(stack, ctx, "throughput"), "rpc.throughput"),
            "gRPC aio": (await grpc_pair(stack, ctx, "throughput"), "grpc.throughput"),
            "raw aiortc": (await raw_pair(stack, ctx, "throughput"), "raw.ping_flight"),
        }
        await pairs["raw aiortc"][0][0].call("raw.serve", mode="ping")
        for _ in range(plan.throughput_runs):
            for label, ((server, client), cmd) in pairs.items():
                rate, used = await cpu_during([server, client], client.call(cmd, **args))
                samples[label].append(rate)
                cpu[label].append(used / (rate * plan.throughput_seconds) * 1e6)
    notes = {
        P2PRPC: f"{CONCURRENCY} unary calls in flight, {PAYLOAD} bytes",
        "gRPC aio": f"{CONCURRENCY} unary calls in flight on loopback TCP",
        "raw aiortc": f"{CONCURRENCY} data-channel messages in flight, each echoed",
    }
    figures = [Figure(k, "calls/s", v, True, notes[k]) for k, v in samples.items()]
    return figures + cpu_figures(
        cpu, "call", f"client and server processes, per call with {CONCURRENCY} in flight"
    )


def judge_throughput(row: Row) -> None:
    ratio_check(row, "≥ 0.7× raw aiortc", P2PRPC, "raw aiortc", 0.7, at_least=True)
    ratio_check(row, "≥ 1.0× gRPC aio", P2PRPC, "gRPC aio", 1.0, at_least=True)
    cpu_check(row)
    row.ceiling = transport_ceiling(row)


# -- bulk -----------------------------------------------------------------------------------------


def _bulk_phase(size: int, reps: Callable[[Plan], int], name: str) -> PhaseRun:
    async def run(ctx: Context) -> list[Figure]:
        mine: list[float] = []
        raw: list[float] = []
        async with AsyncExitStack() as stack:
            _, rpc = await rpc_pair(stack, ctx, name)
            raw_server, raw_client = await raw_pair(stack, ctx, name)
            await raw_server.call("raw.serve", mode="echo")
            await rpc.call("rpc.bulk", size=size)  # warm-up
            await raw_client.call("raw.echo", size=size)
            for _ in range(reps(ctx.plan)):
                mine.append(2 * size / MB / await rpc.call("rpc.bulk", size=size, timeout=300))
                echo = await raw_client.call("raw.echo", size=size, timeout=300)
                raw.append(2 * echo["bytes"] / MB / echo["seconds"])
        return [
            Figure(P2PRPC, "MB/s", mine, True, "unary echo of random bytes, both ways counted"),
            Figure("raw aiortc", "MB/s", raw, True, "the same echo in 16 KB data-channel messages"),
        ]

    return run


async def bulk_js(ctx: Context) -> list[Figure]:
    size = 1_000_000
    speeds = []
    async with AsyncExitStack() as stack:
        _, client = await js_pair(stack, ctx, "bulk-js")
        await client.call("p2pt.echo", size=size)  # warm-up
        for _ in range(ctx.plan.bulk_1mb):
            speeds.append(2 * size / MB / await client.call("p2pt.echo", size=size))
    return [
        Figure(
            "JS P2PT",
            "MB/s",
            speeds,
            True,
            "node ↔ node (libwebrtc): send(peer, 1 MB string) and its respond, in the namespace",
        )
    ]


def judge_bulk(row: Row) -> None:
    ratio_check(row, "≥ 1.0× raw aiortc", P2PRPC, "raw aiortc", 1.0, at_least=True)
    row.ceiling = transport_ceiling(row)
    js = row.figure("JS P2PT")
    raw = row.figure("raw aiortc")
    if js is not None and raw is not None:
        row.ceiling += (
            f"; libwebrtc under JS P2PT moves {js.summary.median / raw.summary.median:.1f}× "
            f"what aiortc does"
        )


async def bulk_records(ctx: Context) -> list[Figure]:
    size = 10_000_000
    speeds: dict[str | None, list[float]] = {}
    raw: list[float] = []
    async with AsyncExitStack() as stack:
        _, rpc = await rpc_pair(stack, ctx, "records")
        raw_server, raw_client = await raw_pair(stack, ctx, "records")
        await raw_server.call("raw.serve", mode="echo")
        codecs: list[str | None] = [None, *await rpc.call("rpc.codecs")]
        for codec in codecs:  # warm-up; the first also makes the records
            await rpc.call("rpc.records", size=size, compression=codec, timeout=300)
        await raw_client.call("raw.echo", size=size, records=True, timeout=300)
        for _ in range(ctx.plan.records_10mb):
            for codec in codecs:
                echo = await rpc.call("rpc.records", size=size, compression=codec, timeout=300)
                speeds.setdefault(codec, []).append(2 * echo["bytes"] / MB / echo["seconds"])
            echo = await raw_client.call("raw.echo", size=size, records=True, timeout=300)
            raw.append(2 * echo["bytes"] / MB / echo["seconds"])
    what = "unary echo of a 10 MB bench.Records (records with text fields), MB of protobuf"
    figures = [
        Figure(
            P2PRPC if codec is None else f"{P2PRPC} {codec}",
            "MB/s",
            samples,
            True,
            f"{what}, {'not compressed' if codec is None else f'compression={codec!r}'}",
        )
        for codec, samples in speeds.items()
    ]
    figures.append(
        Figure("raw aiortc", "MB/s", raw, True, "the same serialized bytes in 16 KB messages")
    )
    return figures


async def records_js(ctx: Context) -> list[Figure]:
    payload = make_records(10_000_000).SerializeToString()
    speeds = []
    with tempfile.TemporaryDirectory(prefix="p2prpc-bench-") as folder:
        path = Path(folder) / "records.bin"
        path.write_bytes(payload)
        async with AsyncExitStack() as stack:
            _, client = await js_pair(stack, ctx, "records-js")
            await client.call("p2pt.echo_file", path=str(path), timeout=300)  # warm-up
            for _ in range(ctx.plan.records_10mb):
                echo = await client.call("p2pt.echo_file", path=str(path), timeout=300)
                speeds.append(2 * echo["bytes"] / MB / echo["seconds"])
    return [
        Figure(
            "JS P2PT",
            "MB/s",
            speeds,
            True,
            "node ↔ node (libwebrtc), uncompressed: the same serialized records sent as one "
            "latin-1 string and responded, in the namespace",
        )
    ]


def judge_records(row: Row) -> None:
    # "Beat it outright": by more than the run-to-run noise of aiortc's bulk figures, with the
    # compression that does best here.
    compressed = [f for f in row.figures if f.label.startswith(f"{P2PRPC} ") and f.samples]
    best = max(compressed, key=lambda f: f.summary.median, default=None)
    label = best.label if best is not None else P2PRPC
    target = f"{label} ≥ 1.25× raw aiortc"
    ratio_check(row, target, label, "raw aiortc", 1.25, at_least=True)
    ratio_check(row, "uncompressed ≥ 0.8× raw aiortc", P2PRPC, "raw aiortc", 0.8, at_least=True)
    ratio_check(row, f"{label} ≥ 1.0× JS P2PT", label, "JS P2PT", 1.0, at_least=True)
    row.ceiling = transport_ceiling(row)
    raw = row.figure("raw aiortc")
    if best is not None and raw is not None and row.ceiling:
        gain = best.summary.median / raw.summary.median
        row.ceiling += (
            f" uncompressed; with {best.label.removeprefix(P2PRPC).strip()} it sends fewer bytes "
            f"and moves {gain:.1f}× what raw aiortc does"
        )
    js = row.figure("JS P2PT")
    if best is not None and js is not None and row.ceiling:
        share = best.summary.median / js.summary.median
        row.ceiling += (
            f"; JS P2PT on libwebrtc moves {js.show(p99=False)} of the same records uncompressed, "
            f"{best.label} {share:.2f}× that"
        )


# -- streaming ------------------------------------------------------------------------------------

STREAM_SIZE = 1024


async def streaming(ctx: Context) -> list[Figure]:
    count = ctx.plan.stream_count
    mine: list[float] = []
    raw: list[float] = []
    cpu: dict[str, list[float]] = {P2PRPC: [], "raw aiortc": []}
    async with AsyncExitStack() as stack:
        rpc_server, rpc = await rpc_pair(stack, ctx, "stream")
        raw_server, raw_client = await raw_pair(stack, ctx, "stream")
        await raw_server.call("raw.serve", mode="stream", size=STREAM_SIZE, count=count)
        await rpc.call("rpc.stream", count=count // 10, size=STREAM_SIZE)  # warm-up
        await raw_client.call("raw.stream", count=count, size=STREAM_SIZE)
        for _ in range(ctx.plan.stream_runs):
            work = rpc.call("rpc.stream", count=count, size=STREAM_SIZE, timeout=300)
            seconds, used = await cpu_during([rpc_server, rpc], work)
            mine.append(count / seconds)
            cpu[P2PRPC].append(used / count * 1e6)
            work = raw_client.call("raw.stream", count=count, size=STREAM_SIZE)
            seconds, used = await cpu_during([raw_server, raw_client], work)
            raw.append(count / seconds)
            cpu["raw aiortc"].append(used / count * 1e6)
    return [
        Figure(P2PRPC, "msgs/s", mine, True, f"server stream of {count:,} × 1 KB BytesValue"),
        Figure("raw aiortc", "msgs/s", raw, True, f"{count:,} 1 KB data-channel messages"),
        *cpu_figures(cpu, "msg", "server and client processes, per streamed message"),
    ]


def judge_streaming(row: Row) -> None:
    ratio_check(row, "≥ 0.9× raw aiortc", P2PRPC, "raw aiortc", 0.9, at_least=True)
    cpu_check(row)
    row.ceiling = transport_ceiling(row)


# -- long paths -----------------------------------------------------------------------------------


def lab_unavailable() -> str | None:
    """Why no long path can be emulated here (``tests/lab``), or None."""
    from tests import lab

    return lab.unavailable_reason()


def _long_path(one_way: float, loss: float, name: str, count_of: Callable[[Plan], int]) -> PhaseRun:
    """A server stream of ``count_of(plan)`` 1 KB messages and unary latency, p2prpc beside raw
    aiortc, over a path with ``one_way`` seconds of delay each way and ``loss`` in each direction
    (``tests.lab``): the servers on one end, the clients on the other, the trackers beside them
    undelayed."""

    async def run(ctx: Context) -> list[Figure]:
        from tests.lab import A, B, LongPath

        plan = ctx.plan
        count = count_of(plan)
        stream: dict[str, list[float]] = {P2PRPC: [], "raw aiortc": []}
        latency: dict[str, list[float]] = {P2PRPC: [], "raw aiortc": []}
        path = LongPath(one_way, loss)
        # Every process of the phase starts inside the namespace (this thread moves in).
        with path, path.inside():
            async with AsyncExitStack() as stack:
                _, rpc = await rpc_pair(stack, ctx, name, (A, B))
                raw_server, raw_client = await raw_pair(stack, ctx, name, (A, B))
                warm = count // 10
                await rpc.call("rpc.stream", count=warm, size=STREAM_SIZE, timeout=600)
                await raw_server.call("raw.serve", mode="stream", size=STREAM_SIZE, count=warm)
                await raw_client.call("raw.stream", count=warm, size=STREAM_SIZE, timeout=600)
                await raw_server.call("raw.serve", mode="stream", size=STREAM_SIZE, count=count)
                for i in range(plan.long_stream_runs):
                    ctx.progress(f"{name}: streams, run {i + 1} of {plan.long_stream_runs}")
                    seconds = await rpc.call(
                        "rpc.stream", count=count, size=STREAM_SIZE, timeout=600
                    )
                    stream[P2PRPC].append(count / seconds)
                    seconds = await raw_client.call(
                        "raw.stream", count=count, size=STREAM_SIZE, timeout=600
                    )
                    stream["raw aiortc"].append(count / seconds)
                await raw_server.call("raw.serve", mode="ping")
                rounds = 2
                for _ in range(rounds):
                    n = plan.long_latency_calls // rounds
                    latency[P2PRPC] += await rpc.call(
                        "rpc.latency", count=n, size=PAYLOAD, warmup=2, timeout=600
                    )
                    latency["raw aiortc"] += await raw_client.call(
                        "raw.ping", count=n, size=PAYLOAD, warmup=2, timeout=600
                    )
            drops = path.counters()
        where = (
            f"{2e3 * one_way:g} ms round trip, {loss:.0%} of UDP packets lost each way "
            f"(tests/lab: {sum(v for k, v in drops.items() if k.startswith('drop'))} dropped)"
        )
        raw = "raw aiortc"
        return [
            Figure(P2PRPC, "msgs/s", stream[P2PRPC], True, f"stream of {count:,} × 1 KB; {where}"),
            Figure(raw, "msgs/s", stream[raw], True, f"{count:,} 1 KB data-channel messages"),
            Figure(LONG_UNARY, "ms", latency[P2PRPC], False, "unary call, 100 B each way"),
            Figure(LONG_RAW_UNARY, "ms", latency[raw], False, "100 B message and its echo"),
        ]

    return run


def _lossy(plan: Plan) -> int:
    return plan.long_stream_count  # loss keeps aiortc near 100 KB/s at 150 ms


def _clean(plan: Plan) -> int:
    return plan.stream_count


LONG_UNARY = f"{P2PRPC} unary"
LONG_RAW_UNARY = "raw aiortc ping"


def judge_long_path(row: Row) -> None:
    ratio_check(row, "stream ≥ 0.9× raw aiortc", P2PRPC, "raw aiortc", 0.9, at_least=True)
    ratio_check(row, "unary p50 ≤ 1.1× raw aiortc", LONG_UNARY, LONG_RAW_UNARY, 1.1, at_least=False)
    row.ceiling = transport_ceiling(row)


# -- topics (p2prpc.pubsub) -----------------------------------------------------------------------


def pubsub_unavailable() -> str | None:
    """Why the topic rows cannot run: ``p2prpc.pubsub`` (with ``Topic``) is not there yet."""
    try:
        module = importlib.import_module("p2prpc.pubsub")
    except ImportError:
        return "not implemented (no p2prpc.pubsub)"
    if not hasattr(module, "Topic"):
        return "not implemented (no p2prpc.pubsub.Topic)"
    return None


FANOUT_SUBSCRIBERS = 8


@dataclass
class _FanOut:
    """What one fan-out measurement gathered."""

    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    delivered: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # µs per delivery, every process summed
    counters: Counter[str] = field(default_factory=Counter)


async def _measure_fanout(
    ctx: Context,
    publisher: Worker,
    publish: Callable[..., Coroutine[Any, Any, Any]],
    subscribers: list[Worker],
    kind: str,
) -> _FanOut:
    """A warm-up, paced messages for latency, then bursts for deliveries per second.

    ``publish(count=, size=, interval=)`` publishes (in ``publisher``'s process); ``kind`` names the
    subscribers' commands (``pubsub`` or ``raw``: ``reset`` and ``collect``).
    """
    plan = ctx.plan
    found = _FanOut()

    async def run(count: int, interval: float, quiet: float) -> list[dict[str, Any]]:
        await asyncio.gather(*(s.call(f"{kind}.reset") for s in subscribers))
        sent = await publish(count=count, size=1024, interval=interval, timeout=300)
        got = await asyncio.gather(
            *(s.call(f"{kind}.collect", count=count, quiet=quiet, timeout=200) for s in subscribers)
        )
        return [{"sent": sent, **g} for g in got]

    await run(min(100, plan.fanout_burst), 0.01, 10.0)  # warm-up
    # Latency first, on a quiet swarm; then the bursts, which may leave queues behind.
    ctx.progress(f"{kind}: {plan.fanout_paced} messages, one per 5 ms")
    for r in await run(plan.fanout_paced, 0.005, 10.0):
        found.latencies += r["latencies_ms"]
    for i in range(plan.fanout_runs):
        ctx.progress(f"{kind}: burst {i + 1} of {plan.fanout_runs}, {plan.fanout_burst} messages")
        results, used = await cpu_during(
            [publisher, *subscribers], run(plan.fanout_burst, 0.0, 20.0)
        )
        start = results[0]["sent"]["t_first_ms"]
        last = max(r["t_last_ms"] for r in results)
        received = sum(r["received"] for r in results)
        found.rates.append(received / ((last - start) / 1e3))
        found.cpu.append(used / max(received, 1) * 1e6)
        found.delivered.append(100.0 * received / (plan.fanout_burst * len(subscribers)))
        found.counters = Counter()  # cumulative in each subscriber: keep the last
        for r in results:
            found.counters.update(r.get("counters", {}))
    return found


_cpu_note = "the publisher's and subscribers' processes during the bursts, per delivery"


def _burst_note(plan: Plan) -> str:
    return (
        f"{plan.fanout_burst} × 1 KB published back to back to {FANOUT_SUBSCRIBERS} subscriber "
        f"processes, {plan.fanout_runs} times"
    )


async def fanout(ctx: Context) -> list[Figure]:
    names = ["fanout-p2prpc-publisher"]
    names += [f"fanout-p2prpc-subscriber{i}" for i in range(FANOUT_SUBSCRIBERS)]
    async with (
        embedded_tracker(ctx, "fanout-tracker") as url,
        workers(names, ctx) as (publisher, *subscribers),
    ):
        identifier = ctx.identifier("fanout")
        everyone = [publisher, *subscribers]
        await asyncio.gather(
            *(w.call("pubsub.join", urls=[url], identifier=identifier) for w in everyone)
        )
        await asyncio.gather(*(s.call("pubsub.subscribe") for s in subscribers))
        known_by = await publisher.call(
            "pubsub.wait_subscribers", count=FANOUT_SUBSCRIBERS, timeout=90
        )
        publish = functools.partial(publisher.call, "pubsub.publish")
        found = await _measure_fanout(ctx, publisher, publish, subscribers, "pubsub")
    counters = ", ".join(f"{k} {v}" for k, v in sorted(found.counters.items()) if v)
    return [
        Figure(
            P2PRPC,
            "deliveries/s",
            found.rates,
            True,
            f"{_burst_note(ctx.plan)}; the publisher knew its subscribers by {known_by}",
        ),
        Figure(
            "p2prpc latency",
            "ms",
            found.latencies,
            False,
            "publish → delivery, one message per 5 ms",
        ),
        Figure(
            "p2prpc delivered",
            "%",
            found.delivered,
            True,
            f"of each burst, to every subscriber; the subscribers' counters at the end: {counters}",
        ),
        *cpu_figures({P2PRPC: found.cpu}, "delivery", _cpu_note),
    ]


async def fanout_raw(ctx: Context) -> list[Figure]:
    names = ["fanout-raw-publisher"]
    names += [f"fanout-raw-subscriber{i}" for i in range(FANOUT_SUBSCRIBERS)]
    async with workers(names, ctx) as (hub, *subscribers):
        for i, subscriber in enumerate(subscribers):
            offer = await hub.call("rawhub.offer", key=str(i))
            answer = await subscriber.call("raw.answer", sdp=offer)
            await hub.call("rawhub.accept", key=str(i), sdp=answer)
        await asyncio.gather(
            hub.call("rawhub.wait_open"), *(s.call("raw.wait_open") for s in subscribers)
        )
        await asyncio.gather(*(s.call("raw.serve", mode="sink") for s in subscribers))
        publish = functools.partial(hub.call, "rawhub.publish")
        found = await _measure_fanout(ctx, hub, publish, subscribers, "raw")
    return [
        Figure(
            "raw aiortc",
            "deliveries/s",
            found.rates,
            True,
            f"the same on 8 raw data channels: each message sent on each ({_burst_note(ctx.plan)})",
        ),
        Figure(
            "raw aiortc latency",
            "ms",
            found.latencies,
            False,
            "send → receipt, one message (on each channel) per 5 ms",
        ),
        *cpu_figures({"raw aiortc": found.cpu}, "delivery", _cpu_note),
    ]


def judge_fanout(row: Row) -> None:
    mine = row.figure(P2PRPC)
    if mine is not None and "incomplete mesh" in mine.note:
        row.notes.append(mine.note.split("; ", 1)[-1])
    value_check(row, "≥ 5,000 deliveries/s", P2PRPC, 5000.0, at_least=True)
    ratio_check(row, "≥ 0.8× raw aiortc", P2PRPC, "raw aiortc", 0.8, at_least=True)
    value_check(row, "p50 ≤ 2 ms", "p2prpc latency", 2.0, at_least=False)
    cpu_check(row)
    row.ceiling = transport_ceiling(row)
    raw = row.figure("raw aiortc latency")
    mine = row.figure("p2prpc latency")
    if row.ceiling and raw is not None and mine is not None:
        row.ceiling += f"; latency: raw aiortc {raw.show(p99=False)}, p2prpc {mine.show(p99=False)}"


async def swarm(ctx: Context) -> list[Figure]:
    plan = ctx.plan
    processes = plan.swarm_processes
    per_process = [
        plan.swarm_peers // processes + (i < plan.swarm_peers % processes) for i in range(processes)
    ]
    names = [f"swarm-p2prpc-{i}" for i in range(processes)]
    counters: Counter[str] = Counter()
    async with embedded_tracker(ctx, "swarm-tracker") as url, workers(names, ctx) as group:
        identifier = ctx.identifier("swarm")
        before = await asyncio.gather(*(w.call("pubsub.rss") for w in group))
        start = now_ms()
        await asyncio.gather(
            *(
                w.call("pubsub.swarm_join", urls=[url], identifier=identifier, count=n)
                for w, n in zip(group, per_process, strict=True)
            )
        )
        await asyncio.gather(*(w.call("pubsub.swarm_formed", timeout=180) for w in group))
        formed = (now_ms() - start) / 1e3
        ctx.progress(f"swarm of {plan.swarm_peers} formed in {formed:.1f} s")
        after = await asyncio.gather(*(w.call("pubsub.rss") for w in group))
        connections = sum(
            await asyncio.gather(*(w.call("pubsub.swarm_connections") for w in group))
        )
        per_connection = (sum(after) - sum(before)) / max(connections, 1) / 1024
        await asyncio.gather(*(w.call("pubsub.reset") for w in group))
        await group[0].call(
            "pubsub.publish", count=plan.swarm_messages, size=256, interval=0.002, timeout=300
        )
        ctx.progress(f"published {plan.swarm_messages} messages")
        got = await asyncio.gather(
            *(w.call("pubsub.swarm_collect", count=plan.swarm_messages, timeout=200) for w in group)
        )
        ctx.progress(f"collected: {[g['received'] for g in got]}")
        for g in got:
            counters.update(g["counters"])
        expected = (plan.swarm_peers - 1) * plan.swarm_messages
        delivered = 100.0 * sum(g["received"] for g in got) / expected
    return [
        Figure(
            "p2prpc time to form",
            "s",
            [formed],
            False,
            f"{plan.swarm_peers} peers in {processes} processes, max_peers {DEGREE}: start → "
            f"every node has said hello to {MIN_DEGREE} peers",
        ),
        Figure(
            "p2prpc memory",
            "KB/connection",
            [per_connection],
            False,
            "growth of the processes' resident memory from before start, over the connections",
        ),
        Figure(
            "p2prpc delivered",
            "%",
            [delivered],
            True,
            f"{plan.swarm_messages} topic messages of 256 bytes, one per 2 ms, to every node; "
            "their counters, summed: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counters.items()) if v),
        ),
    ]


def judge_swarm(row: Row) -> None:
    value_check(row, "forms in < 30 s", "p2prpc time to form", 30.0, at_least=False)
    value_check(row, "≤ 500 KB/connection", "p2prpc memory", 500.0, at_least=False)
    value_check(row, "100% delivered", "p2prpc delivered", 100.0, at_least=True)


async def heal(ctx: Context) -> list[Figure]:
    """A bounded mesh loses its tracker, then nodes leave one after another: how long until every
    node is back at its minimum degree in one connected mesh, and whether topic messages
    published then reach every node."""
    plan = ctx.plan
    processes = plan.swarm_processes
    per_process = [
        plan.heal_peers // processes + (i < plan.heal_peers % processes) for i in range(processes)
    ]
    names = [f"heal-p2prpc-{i}" for i in range(processes)]
    counters: Counter[str] = Counter()
    async with (
        workers(["heal-tracker"], ctx) as (tracker,),
        workers(names, ctx) as group,
    ):
        url = await tracker.call("tracker.start", host="127.0.0.1")
        identifier = ctx.identifier("heal")
        await asyncio.gather(
            *(
                w.call("pubsub.swarm_join", urls=[url], identifier=identifier, count=n)
                for w, n in zip(group, per_process, strict=True)
            )
        )
        await asyncio.gather(*(w.call("pubsub.swarm_formed", timeout=180) for w in group))
        ctx.progress(f"mesh of {plan.heal_peers} formed; the tracker dies")
        await tracker.close()
        start = now_ms()
        for i in range(plan.heal_leaving):  # one after another, spread over the processes
            await group[i % processes].call("pubsub.leave", count=1)
        lowest, healed = MIN_DEGREE, math.inf
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tables = await asyncio.gather(*(w.call("pubsub.neighbours") for w in group))
            graph = {pid: set(peers) for table in tables for pid, peers in table.items()}
            degree = min(len(peers & graph.keys()) for peers in graph.values())
            lowest = min(lowest, degree)
            if degree >= MIN_DEGREE and _connected(graph):
                healed = (now_ms() - start) / 1e3
                break
            await asyncio.sleep(0.2)
        ctx.progress(f"healed in {healed:.1f} s (lowest degree seen {lowest})")
        await asyncio.gather(*(w.call("pubsub.reset") for w in group))
        await group[0].call(
            "pubsub.publish", count=plan.heal_messages, size=256, interval=0.002, timeout=300
        )
        got = await asyncio.gather(
            *(w.call("pubsub.swarm_collect", count=plan.heal_messages, timeout=200) for w in group)
        )
        for g in got:
            counters.update(g["counters"])
        alive = plan.heal_peers - plan.heal_leaving
        delivered = 100.0 * sum(g["received"] for g in got) / ((alive - 1) * plan.heal_messages)
    return [
        Figure(
            "p2prpc time to heal",
            "s",
            [healed],
            False,
            f"{plan.heal_peers} peers in {processes} processes, max_peers {DEGREE}; the tracker "
            f"dies, {plan.heal_leaving} nodes leave one after another: first leave → every node "
            f"has {MIN_DEGREE} peers in one connected mesh (lowest degree seen {lowest})",
        ),
        Figure(
            "p2prpc delivered",
            "%",
            [delivered],
            True,
            f"then {plan.heal_messages} topic messages of 256 bytes, one per 2 ms, to the "
            f"{alive} nodes left; counters: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counters.items()) if v),
        ),
    ]


def _connected(graph: dict[str, set[str]]) -> bool:
    """Whether the nodes of ``graph`` form one component through each other."""
    first = next(iter(graph), None)
    seen = {first}
    todo = [first]
    while todo:
        for peer in graph.get(todo.pop() or "", set()):
            if peer in graph and peer not in seen:
                seen.add(peer)
                todo.append(peer)
    return len(seen) == len(graph)


def judge_heal(row: Row) -> None:
    value_check(row, "heals in < 30 s", "p2prpc time to heal", 30.0, at_least=False)
    value_check(row, "100% delivered", "p2prpc delivered", 100.0, at_least=True)


# -- the table ------------------------------------------------------------------------------------

BENCHES: Sequence[Bench] = (
    Bench(
        "connect",
        "connect",
        (
            Phase("p2prpc and raw aiortc on loopback", connect_p2prpc),
            Phase("JS P2PT through bittorrent-tracker", connect_js, netns=True),
            Phase("p2prpc over veth", connect_p2prpc_veth, netns=True),
        ),
        judge_connect,
    ),
    Bench(
        "unary-latency",
        "unary latency (100 B)",
        (Phase("p2prpc, raw aiortc, gRPC aio", unary_latency),),
        judge_latency,
    ),
    Bench(
        "secret-mode",
        "secret mode + identities",
        (Phase("p2prpc, closed and open swarms", secret_mode),),
        judge_secret,
    ),
    Bench(
        "unary-throughput",
        "unary throughput (32 in flight)",
        (Phase("p2prpc, gRPC aio, raw aiortc", unary_throughput),),
        judge_throughput,
    ),
    Bench(
        "bulk-1mb",
        "bulk 1 MB echo",
        (
            Phase("p2prpc and raw aiortc", _bulk_phase(1_000_000, lambda p: p.bulk_1mb, "bulk1")),
            Phase("JS P2PT", bulk_js, netns=True),
        ),
        judge_bulk,
    ),
    Bench(
        "bulk-10mb",
        "bulk 10 MB echo",
        (
            Phase(
                "p2prpc and raw aiortc",
                _bulk_phase(10_000_000, lambda p: p.bulk_10mb, "bulk10"),
            ),
        ),
        judge_bulk,
    ),
    Bench(
        "bulk-records",
        "bulk 10 MB records (compressible)",
        (
            Phase("p2prpc and raw aiortc", bulk_records),
            Phase("JS P2PT", records_js, netns=True),
        ),
        judge_records,
    ),
    Bench(
        "streaming",
        "server stream {plan.stream_count:,} × 1 KB",
        (Phase("p2prpc and raw aiortc", streaming),),
        judge_streaming,
    ),
    Bench(
        "long-path-50",
        "long path: 50 ms round trip, 1% loss",
        (Phase("p2prpc and raw aiortc", _long_path(0.025, 0.01, "long50", _lossy)),),
        judge_long_path,
        lab_unavailable,
    ),
    Bench(
        "long-path-150",
        "long path: 150 ms round trip, 1% loss",
        (Phase("p2prpc and raw aiortc", _long_path(0.075, 0.01, "long150", _lossy)),),
        judge_long_path,
        lab_unavailable,
    ),
    Bench(
        "long-path-150-clean",
        "long path: 150 ms round trip, no loss",
        (Phase("p2prpc and raw aiortc", _long_path(0.075, 0.0, "clean150", _clean)),),
        judge_long_path,
        lab_unavailable,
    ),
    Bench(
        "fan-out",
        "fan-out 1 → 8 (1 KB)",
        (Phase("p2prpc topics", fanout), Phase("raw aiortc, 1 → 8 channels", fanout_raw)),
        judge_fanout,
        pubsub_unavailable,
    ),
    Bench(
        "swarm",
        "swarm of {plan.swarm_peers} (topics)",
        (Phase("p2prpc topics", swarm),),
        judge_swarm,
        pubsub_unavailable,
    ),
    Bench(
        "heal",
        "mesh of {plan.heal_peers} heals without its tracker",
        (Phase("p2prpc mesh and topics", heal),),
        judge_heal,
        pubsub_unavailable,
    ),
)
