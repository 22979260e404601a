"""The benchmark rows: which processes each starts, what it measures, how it is judged.

A :class:`Bench` is one row of the table. Its :class:`Phase`\\ s each start their own processes
and return figures; phases with a JavaScript P2PT peer (libwebrtc in node, which offers no loopback
candidates) need the test network namespace and are run together inside it, after the loopback
ones.

Every row measures p2prpc on both transports: on aiortc (the figure labelled ``p2prpc``) and on
libwebrtc (``p2prpc on libwebrtc``, :data:`LIBWEBRTC`), each beside the raw data channel of its
own WebRTC (``raw aiortc``, ``raw libwebrtc``: the same script on ``webrtc.aiortc``) where a raw
baseline exists. ``judge`` turns the figures into
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

TRANSPORTS = ("aiortc", "libwebrtc")
"""p2prpc's two transports (``Node(..., transport=...)``), each measured in every row."""

LIBWEBRTC = f"{P2PRPC} on libwebrtc"
"""The label of p2prpc's figure on libwebrtc (``P2PRPC`` is p2prpc's on aiortc)."""


def mine(transport: str, what: str = "") -> str:
    """The label of p2prpc's figure ``what`` on ``transport``: ``p2prpc latency``,
    ``p2prpc on libwebrtc latency``."""
    base = P2PRPC if transport == "aiortc" else LIBWEBRTC
    return f"{base} {what}" if what else base


def raw(transport: str, what: str = "") -> str:
    """The label of the raw data channel's figure on ``transport``: ``raw libwebrtc``."""
    return f"raw {transport} {what}" if what else f"raw {transport}"


def _named(name: str, kind: str, transport: str) -> str:
    """A worker name: ``stream-p2prpc`` on aiortc, ``stream-p2prpc-libwebrtc`` on libwebrtc."""
    return f"{name}-{kind}" if transport == "aiortc" else f"{name}-{kind}-{transport}"


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
    nat_connect: int = 10
    nat_latency_calls: int = 200


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
    nat_connect=2,
    nat_latency_calls=20,
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


def cpu_check(
    row: Row, baseline: str = "raw aiortc", limit: float = 1.2, label: str = P2PRPC
) -> None:
    """The CPU target: ``label``'s CPU per message at most ``limit`` × the baseline's."""
    target = f"CPU ≤ {limit:g}× {baseline}"
    if label != P2PRPC:
        target = f"{label.removeprefix(P2PRPC).strip().removeprefix('on ')} {target}"
    ratio_check(row, target, f"{label} CPU", f"{baseline} CPU", limit, at_least=False)


# -- setting peers up -----------------------------------------------------------------------------


LOOPBACK = ("127.0.0.1", "127.0.0.1")
"""Where a pair's server and client meet by default: both on loopback."""


async def rpc_pair(
    stack: AsyncExitStack,
    ctx: Context,
    name: str,
    hosts: tuple[str, str] = LOOPBACK,
    transport: str = "aiortc",
    **join: Any,
) -> tuple[Worker, Worker]:
    """A p2prpc server and client in two processes on ``transport``, connected through the
    embedded tracker (``hosts``: the server's and the client's ICE host address; ``join``: more
    options of ``rpc.join`` for both, such as a secret)."""
    prefix = _named(name, "p2prpc", transport)
    url = await stack.enter_async_context(embedded_tracker(ctx, f"{prefix}-tracker"))
    server, client = await stack.enter_async_context(
        workers([f"{prefix}-server", f"{prefix}-client"], ctx)
    )
    identifier = ctx.identifier(name)
    join = {**join, "transport": transport}
    await server.call(
        "rpc.join", urls=[url], identifier=identifier, serve=True, host=hosts[0], **join
    )
    await client.call("rpc.join", urls=[url], identifier=identifier, host=hosts[1], **join)
    await client.call("rpc.wait_server")
    return server, client


async def raw_connect(
    client: Worker,
    server: Worker,
    host: str = "127.0.0.1",
    server_host: str | None = None,
    transport: str = "aiortc",
) -> float:
    """Open a raw data channel on ``transport`` from ``client`` (on ``host``) to ``server`` (on
    ``server_host``, by default the same); milliseconds it took."""
    start = now_ms()
    offer = await client.call("raw.offer", host=host, transport=transport)
    answer = await server.call(
        "raw.answer", sdp=offer, host=server_host or host, transport=transport
    )
    await client.call("raw.accept", sdp=answer)
    await asyncio.gather(client.call("raw.wait_open"), server.call("raw.wait_open"))
    return now_ms() - start


async def raw_pair(
    stack: AsyncExitStack,
    ctx: Context,
    name: str,
    hosts: tuple[str, str] = LOOPBACK,
    transport: str = "aiortc",
) -> tuple[Worker, Worker]:
    """A raw data channel on ``transport`` between two processes (signalled through the
    orchestrator; ``hosts`` as for :func:`rpc_pair`)."""
    prefix = _named(name, "raw", transport)
    server, client = await stack.enter_async_context(
        workers([f"{prefix}-server", f"{prefix}-client"], ctx)
    )
    await raw_connect(client, server, hosts[1], hosts[0], transport)
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


def libwebrtc_ceiling(row: Row) -> str:
    """The same for p2prpc on libwebrtc, beside its raw data channel (empty when either is
    missing)."""
    mine_lw, other = row.figure(LIBWEBRTC), row.figure(raw("libwebrtc"))
    if mine_lw is None or other is None:
        return ""
    share = mine_lw.summary.median / other.summary.median
    if mine_lw.higher_is_better:
        return (
            f"; on libwebrtc: the raw data channel moves {other.show(p99=False)}, p2prpc "
            f"{share:.2f}× that"
        )
    extra = mine_lw.summary.median - other.summary.median
    return (
        f"; on libwebrtc: the raw round trip takes {other.show(p99=False)}, p2prpc adds "
        f"{extra:.3g} {mine_lw.unit} ({share:.2f}×)"
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


async def _connect_on(ctx: Context, transport: str) -> list[Figure]:
    """p2prpc's connect and its raw data channel's, on ``transport``, on loopback."""
    name = _named("connect", "p2prpc", transport)
    raw_name = _named("connect", "raw", transport)
    async with (
        embedded_tracker(ctx, f"{name}-tracker") as url,
        workers([f"{name}-a", f"{name}-b"], ctx) as (a, b),
        workers([f"{raw_name}-a", f"{raw_name}-b"], ctx) as (ra, rb),
    ):
        join = {"transport": transport}
        connects, hellos = await _connect_times(a, b, "rpc", ctx, url, ctx.plan.connect, join=join)
        times = []
        for i in range(ctx.plan.connect + 1):
            elapsed = await raw_connect(ra, rb, transport=transport)
            if i > 0:
                times.append(elapsed)
            await asyncio.gather(ra.call("raw.close"), rb.call("raw.close"))
    return [
        Figure(
            mine(transport), "ms", connects, False, "start → peerconnect on both, embedded tracker"
        ),
        Figure(
            mine(transport, "to hello"), "ms", hellos, False, "start → both said hello (RPC-ready)"
        ),
        Figure(
            raw(transport, "direct signalling"),
            "ms",
            times,
            False,
            "offer → data channel open, SDP handed over by the orchestrator: no tracker",
        ),
    ]


async def connect_p2prpc(ctx: Context) -> list[Figure]:
    figures = []
    for transport in TRANSPORTS:
        figures += await _connect_on(ctx, transport)
    return figures


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
    figures = []
    for transport in TRANSPORTS:
        name = _named("connect", "p2prpc", transport) + "-veth"
        async with (
            embedded_tracker(ctx, f"{name}-tracker") as url,
            workers([f"{name}-a", f"{name}-b"], ctx) as (a, b),
        ):
            connects, _ = await _connect_times(
                a,
                b,
                "rpc",
                ctx,
                url,
                ctx.plan.connect_veth,
                host=ctx.veth,
                join={"transport": transport},
            )
        figures.append(
            Figure(
                mine(transport, "over veth"),
                "ms",
                connects,
                False,
                "the same, on the namespace's veth pair where JS P2PT runs",
            )
        )
    return figures


LIBWEBRTC_VETH = mine("libwebrtc", "over veth")


def judge_connect(row: Row) -> None:
    value_check(row, "p50 ≤ 100 ms", P2PRPC, 100.0, at_least=False)
    ratio_check(row, "p50 below JS P2PT", P2PRPC, "JS P2PT", 1.0, at_least=False)
    # Judged where JS P2PT runs: on the namespace's veth pair.
    target = "libwebrtc over veth ≤ 0.15× JS P2PT"
    ratio_check(row, target, LIBWEBRTC_VETH, "JS P2PT", 0.15, at_least=False)
    parts = []
    for transport in TRANSPORTS:
        handshakes = row.figure(raw(transport, "direct signalling"))
        if handshakes is not None:
            parts.append(f"{transport}'s {handshakes.show(p99=False)}")
    if parts:
        row.ceiling = (
            f"the ICE, DTLS and SCTP handshakes with no tracker in between ({', '.join(parts)}); "
            f"the rest is the tracker round trips and offer making"
        )


# -- secret mode ----------------------------------------------------------------------------------

#: A closed swarm whose nodes each prove an identity: every protection of docs/SECURITY.md on.
SECRET_JOIN: dict[str, Any] = {"secret": secrets.token_urlsafe(32), "identity": True}


async def secret_mode(ctx: Context) -> list[Figure]:
    """What a secret swarm with identities costs: connect time and unary latency, against the
    same measured in an open swarm in the same run, on each transport."""
    figures = []
    for transport in TRANSPORTS:
        figures += await _secret_mode_on(ctx, transport)
    return figures


async def _secret_mode_on(ctx: Context, transport: str) -> list[Figure]:
    name = _named("secret", "p2prpc", transport)
    plain_join = {"transport": transport}
    secret_join = {**SECRET_JOIN, **plain_join}
    async with (
        embedded_tracker(ctx, f"{name}-tracker") as url,
        workers([f"{name}-a", f"{name}-b"], ctx) as (a, b),
    ):
        plain: list[float] = []
        closed: list[float] = []
        rounds = 4 if ctx.plan.connect >= 8 else 1  # interleaved, so drift hits both alike
        for _ in range(rounds):
            reps = ctx.plan.connect // rounds
            plain += (await _connect_times(a, b, "rpc", ctx, url, reps, join=plain_join))[0]
            closed += (await _connect_times(a, b, "rpc", ctx, url, reps, join=secret_join))[0]
    latency: dict[str, list[float]] = {"open": [], "secret": []}
    async with AsyncExitStack() as stack:
        pairs = {
            "open": await rpc_pair(stack, ctx, "secret-open", transport=transport),
            "secret": await rpc_pair(
                stack, ctx, "secret-closed", transport=transport, **SECRET_JOIN
            ),
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
    labels = _secret_labels(transport)
    return [
        Figure(labels[0], "ms", closed, False, f"{how}; sealed SDP, handshake, identities"),
        Figure(labels[1], "ms", latency["secret"], False, "unary call, 100 B each way"),
        Figure(labels[2], "ms", plain, False, how),
        Figure(labels[3], "ms", latency["open"], False, "unary call, 100 B each way"),
    ]


SECRET_CONNECT = f"{P2PRPC} secret connect"
SECRET_UNARY = f"{P2PRPC} secret unary"
OPEN_CONNECT = "open mode, connect"
OPEN_UNARY = "open mode, unary"


def _secret_labels(transport: str) -> tuple[str, str, str, str]:
    """Secret connect, secret unary, open connect, open unary: the labels on ``transport``."""
    if transport == "aiortc":
        return SECRET_CONNECT, SECRET_UNARY, OPEN_CONNECT, OPEN_UNARY
    on = f"on {transport}"
    return (
        mine(transport, "secret connect"),
        mine(transport, "secret unary"),
        f"open mode {on}, connect",
        f"open mode {on}, unary",
    )


def judge_secret(row: Row) -> None:
    for transport in TRANSPORTS:
        secret_connect, secret_unary, open_connect, open_unary = _secret_labels(transport)
        on = "" if transport == "aiortc" else f"{transport}: "
        target = f"{on}connect ≤ 1.25× open"
        ratio_check(row, target, secret_connect, open_connect, 1.25, at_least=False)
        target = f"{on}unary p50 ≤ 1.05× open"
        ratio_check(row, target, secret_unary, open_unary, 1.05, at_least=False)


# -- unary ----------------------------------------------------------------------------------------

PAYLOAD = 100
CONCURRENCY = 32


LATENCY_WARMUP = 20


async def unary_latency(ctx: Context) -> list[Figure]:
    calls = ctx.plan.latency_calls
    rounds = 4 if calls >= 400 else 1
    async with AsyncExitStack() as stack:
        pairs = await _unary_pairs(stack, ctx, "latency")
        samples: dict[str, list[float]] = {label: [] for label in pairs}
        cpu: dict[str, list[float]] = {label: [] for label in pairs}
        cmds = {"rpc": "rpc.latency", "raw": "raw.ping", "grpc": "grpc.latency"}
        for _ in range(rounds):
            n = calls // rounds
            for label, ((server, client), kind) in pairs.items():
                work = client.call(cmds[kind], count=n, size=PAYLOAD, warmup=LATENCY_WARMUP)
                times, used = await cpu_during([server, client], work)
                samples[label] += times
                cpu[label].append(used / (n + LATENCY_WARMUP) * 1e6)
    notes = {
        "rpc": "unary call, 100-byte BytesValue each way",
        "raw": "100-byte data-channel message and its echo",
        "grpc": "unary call on loopback TCP, 100-byte BytesValue each way",
    }
    figures = [
        Figure(label, "ms", samples[label], False, notes[kind])
        for label, (_, kind) in pairs.items()
    ]
    return figures + cpu_figures(
        cpu, "call", "client and server processes, per sequential call (warm-up included)"
    )


async def _unary_pairs(
    stack: AsyncExitStack, ctx: Context, name: str
) -> dict[str, tuple[tuple[Worker, Worker], str]]:
    """Each unary contender's (server, client) by label, with its kind (``rpc``, ``raw``,
    ``grpc``): p2prpc and the raw data channel on each transport, and gRPC aio; the raw servers
    answer each message with itself."""
    pairs: dict[str, tuple[tuple[Worker, Worker], str]] = {}
    for transport in TRANSPORTS:
        pairs[mine(transport)] = (await rpc_pair(stack, ctx, name, transport=transport), "rpc")
    for transport in TRANSPORTS:
        pair = await raw_pair(stack, ctx, name, transport=transport)
        await pair[0].call("raw.serve", mode="ping")
        pairs[raw(transport)] = (pair, "raw")
    pairs["gRPC aio"] = (await grpc_pair(stack, ctx, name), "grpc")
    return pairs


def judge_latency(row: Row) -> None:
    ratio_check(row, "p50 ≤ 1.25× raw aiortc", P2PRPC, "raw aiortc", 1.25, at_least=False)
    ratio_check(row, "p50 ≤ 1.0× gRPC aio", P2PRPC, "gRPC aio", 1.0, at_least=False)
    cpu_check(row)
    target = "libwebrtc p50 ≤ 0.5× gRPC aio"
    ratio_check(row, target, LIBWEBRTC, "gRPC aio", 0.5, at_least=False)
    cpu_check(row, "gRPC aio", 0.6, LIBWEBRTC)
    row.ceiling = transport_ceiling(row) + libwebrtc_ceiling(row)


async def unary_throughput(ctx: Context) -> list[Figure]:
    plan = ctx.plan
    args = {"concurrency": CONCURRENCY, "seconds": plan.throughput_seconds, "size": PAYLOAD}
    cmds = {"rpc": "rpc.throughput", "raw": "raw.ping_flight", "grpc": "grpc.throughput"}
    async with AsyncExitStack() as stack:
        pairs = await _unary_pairs(stack, ctx, "throughput")
        samples: dict[str, list[float]] = {label: [] for label in pairs}
        cpu: dict[str, list[float]] = {label: [] for label in pairs}
        for _ in range(plan.throughput_runs):
            for label, ((server, client), kind) in pairs.items():
                work = client.call(cmds[kind], **args)
                rate, used = await cpu_during([server, client], work)
                samples[label].append(rate)
                cpu[label].append(used / (rate * plan.throughput_seconds) * 1e6)
    notes = {
        "rpc": f"{CONCURRENCY} unary calls in flight, {PAYLOAD} bytes",
        "grpc": f"{CONCURRENCY} unary calls in flight on loopback TCP",
        "raw": f"{CONCURRENCY} data-channel messages in flight, each echoed",
    }
    figures = [
        Figure(label, "calls/s", samples[label], True, notes[kind])
        for label, (_, kind) in pairs.items()
    ]
    return figures + cpu_figures(
        cpu, "call", f"client and server processes, per call with {CONCURRENCY} in flight"
    )


def judge_throughput(row: Row) -> None:
    ratio_check(row, "≥ 0.7× raw aiortc", P2PRPC, "raw aiortc", 0.7, at_least=True)
    ratio_check(row, "≥ 1.0× gRPC aio", P2PRPC, "gRPC aio", 1.0, at_least=True)
    cpu_check(row)
    ratio_check(row, "libwebrtc ≥ 1.5× gRPC aio", LIBWEBRTC, "gRPC aio", 1.5, at_least=True)
    row.ceiling = transport_ceiling(row) + libwebrtc_ceiling(row)


# -- bulk -----------------------------------------------------------------------------------------


def _bulk_phase(size: int, reps: Callable[[Plan], int], name: str) -> PhaseRun:
    async def run(ctx: Context) -> list[Figure]:
        speeds: dict[str, list[float]] = {}
        async with AsyncExitStack() as stack:
            rpcs = {t: (await rpc_pair(stack, ctx, name, transport=t))[1] for t in TRANSPORTS}
            raws = {t: await raw_pair(stack, ctx, name, transport=t) for t in TRANSPORTS}
            for transport in TRANSPORTS:
                await raws[transport][0].call("raw.serve", mode="echo")
                await rpcs[transport].call("rpc.bulk", size=size, timeout=300)  # warm-up
                await raws[transport][1].call("raw.echo", size=size, timeout=300)
            for _ in range(reps(ctx.plan)):
                for transport in TRANSPORTS:
                    seconds = await rpcs[transport].call("rpc.bulk", size=size, timeout=300)
                    speeds.setdefault(mine(transport), []).append(2 * size / MB / seconds)
                    echo = await raws[transport][1].call("raw.echo", size=size, timeout=300)
                    speed = 2 * echo["bytes"] / MB / echo["seconds"]
                    speeds.setdefault(raw(transport), []).append(speed)
        notes = {mine(t): "unary echo of random bytes, both ways counted" for t in TRANSPORTS}
        notes |= {raw(t): "the same echo in 16 KB data-channel messages" for t in TRANSPORTS}
        return [Figure(k, "MB/s", v, True, notes[k]) for k, v in speeds.items()]

    return run


def _bulk_js(size: int, reps: Callable[[Plan], int], name: str) -> PhaseRun:
    async def run(ctx: Context) -> list[Figure]:
        speeds = []
        async with AsyncExitStack() as stack:
            _, client = await js_pair(stack, ctx, name)
            await client.call("p2pt.echo", size=size, timeout=300)  # warm-up
            for _ in range(reps(ctx.plan)):
                seconds = await client.call("p2pt.echo", size=size, timeout=300)
                speeds.append(2 * size / MB / seconds)
        return [
            Figure(
                "JS P2PT",
                "MB/s",
                speeds,
                True,
                f"node ↔ node (libwebrtc): send(peer, {size / MB:g} MB string) and its respond, "
                "in the namespace",
            )
        ]

    return run


bulk_js = _bulk_js(1_000_000, lambda p: p.bulk_1mb, "bulk-js")


def judge_bulk(row: Row) -> None:
    ratio_check(row, "≥ 1.0× raw aiortc", P2PRPC, "raw aiortc", 1.0, at_least=True)
    ratio_check(row, "libwebrtc ≥ 1.5× JS P2PT", LIBWEBRTC, "JS P2PT", 1.5, at_least=True)
    row.ceiling = transport_ceiling(row) + libwebrtc_ceiling(row)
    js = row.figure("JS P2PT")
    aiortc = row.figure("raw aiortc")
    if js is not None and aiortc is not None:
        row.ceiling += (
            f"; libwebrtc under JS P2PT moves {js.summary.median / aiortc.summary.median:.1f}× "
            f"what aiortc does"
        )


async def bulk_records(ctx: Context) -> list[Figure]:
    size = 10_000_000
    speeds: dict[tuple[str, str | None], list[float]] = {}
    raws: dict[str, list[float]] = {}
    async with AsyncExitStack() as stack:
        rpcs = {t: (await rpc_pair(stack, ctx, "records", transport=t))[1] for t in TRANSPORTS}
        pairs = {t: await raw_pair(stack, ctx, "records", transport=t) for t in TRANSPORTS}
        codecs: list[str | None] = [None, *await rpcs["aiortc"].call("rpc.codecs")]
        for transport in TRANSPORTS:
            await pairs[transport][0].call("raw.serve", mode="echo")
            for codec in codecs:  # warm-up; the first also makes the records
                await rpcs[transport].call("rpc.records", size=size, compression=codec, timeout=300)
            await pairs[transport][1].call("raw.echo", size=size, records=True, timeout=300)
        for _ in range(ctx.plan.records_10mb):
            for transport in TRANSPORTS:
                rpc = rpcs[transport]
                for codec in codecs:
                    echo = await rpc.call("rpc.records", size=size, compression=codec, timeout=300)
                    speed = 2 * echo["bytes"] / MB / echo["seconds"]
                    speeds.setdefault((transport, codec), []).append(speed)
                client = pairs[transport][1]
                echo = await client.call("raw.echo", size=size, records=True, timeout=300)
                raws.setdefault(transport, []).append(2 * echo["bytes"] / MB / echo["seconds"])
    what = "unary echo of a 10 MB bench.Records (records with text fields), MB of protobuf"
    figures = [
        Figure(
            mine(transport, codec or ""),
            "MB/s",
            samples,
            True,
            f"{what}, {'not compressed' if codec is None else f'compression={codec!r}'}",
        )
        for (transport, codec), samples in speeds.items()
    ]
    figures += [
        Figure(raw(t), "MB/s", v, True, "the same serialized bytes in 16 KB messages")
        for t, v in raws.items()
    ]
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
    compressed = [
        f
        for f in row.figures
        if f.label.startswith(f"{P2PRPC} ") and not f.label.startswith(LIBWEBRTC) and f.samples
    ]
    best = max(compressed, key=lambda f: f.summary.median, default=None)
    label = best.label if best is not None else P2PRPC
    target = f"{label} ≥ 1.25× raw aiortc"
    ratio_check(row, target, label, "raw aiortc", 1.25, at_least=True)
    ratio_check(row, "uncompressed ≥ 0.8× raw aiortc", P2PRPC, "raw aiortc", 0.8, at_least=True)
    ratio_check(row, f"{label} ≥ 1.0× JS P2PT", label, "JS P2PT", 1.0, at_least=True)
    row.ceiling = transport_ceiling(row)
    aiortc = row.figure("raw aiortc")
    if best is not None and aiortc is not None and row.ceiling:
        gain = best.summary.median / aiortc.summary.median
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
    row.ceiling += libwebrtc_ceiling(row)


# -- streaming ------------------------------------------------------------------------------------

STREAM_SIZE = 1024


async def streaming(ctx: Context) -> list[Figure]:
    count = ctx.plan.stream_count
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    async with AsyncExitStack() as stack:
        contenders: dict[str, tuple[tuple[Worker, Worker], str]] = {}
        for transport in TRANSPORTS:
            pair = await rpc_pair(stack, ctx, "stream", transport=transport)
            await pair[1].call("rpc.stream", count=count // 10, size=STREAM_SIZE)  # warm-up
            contenders[mine(transport)] = (pair, "rpc.stream")
        for transport in TRANSPORTS:
            pair = await raw_pair(stack, ctx, "stream", transport=transport)
            await pair[0].call("raw.serve", mode="stream", size=STREAM_SIZE, count=count)
            await pair[1].call("raw.stream", count=count, size=STREAM_SIZE)  # warm-up
            contenders[raw(transport)] = (pair, "raw.stream")
        for _ in range(ctx.plan.stream_runs):
            for label, ((server, client), cmd) in contenders.items():
                work = client.call(cmd, count=count, size=STREAM_SIZE, timeout=300)
                seconds, used = await cpu_during([server, client], work)
                rates.setdefault(label, []).append(count / seconds)
                cpu.setdefault(label, []).append(used / count * 1e6)
    notes = {mine(t): f"server stream of {count:,} × 1 KB BytesValue" for t in TRANSPORTS}
    notes |= {raw(t): f"{count:,} 1 KB data-channel messages" for t in TRANSPORTS}
    return [
        *(Figure(label, "msgs/s", v, True, notes[label]) for label, v in rates.items()),
        *cpu_figures(cpu, "msg", "server and client processes, per streamed message"),
    ]


def judge_streaming(row: Row) -> None:
    ratio_check(row, "≥ 0.9× raw aiortc", P2PRPC, "raw aiortc", 0.9, at_least=True)
    cpu_check(row)
    ratio_check(row, "libwebrtc ≥ 1.5× aiortc", LIBWEBRTC, P2PRPC, 1.5, at_least=True)
    row.ceiling = transport_ceiling(row) + libwebrtc_ceiling(row)


# -- long paths -----------------------------------------------------------------------------------


def lab_unavailable() -> str | None:
    """Why no long path can be emulated here (``tests/lab``), or None."""
    from tests import lab

    return lab.unavailable_reason()


#: The transports a long path is measured on. The path runs between two loopback addresses
#: (``tests.lab.A`` and ``B``), and libwebrtc gathers loopback candidates on 127.0.0.1 alone (its
#: sockets bind there whatever ``host_addresses`` says), so no libwebrtc pair can be put on it.
LONG_PATH_TRANSPORTS = ("aiortc",)


def _long_path(one_way: float, loss: float, name: str, count_of: Callable[[Plan], int]) -> PhaseRun:
    """A server stream of ``count_of(plan)`` 1 KB messages and unary latency, p2prpc beside its
    raw data channel on each of :data:`LONG_PATH_TRANSPORTS`, over a path with ``one_way``
    seconds of delay each way and ``loss`` in each direction (``tests.lab``): the servers on one
    end, the clients on the other, the trackers beside them undelayed."""

    async def run(ctx: Context) -> list[Figure]:
        from tests.lab import A, B, LongPath

        plan = ctx.plan
        count = count_of(plan)
        stream: dict[str, list[float]] = {}
        latency: dict[str, list[float]] = {}
        path = LongPath(one_way, loss)
        # Every process of the phase starts inside the namespace (this thread moves in).
        with path, path.inside():
            async with AsyncExitStack() as stack:
                rpcs = {
                    t: (await rpc_pair(stack, ctx, name, (A, B), transport=t))[1]
                    for t in LONG_PATH_TRANSPORTS
                }
                raws = {
                    t: await raw_pair(stack, ctx, name, (A, B), t) for t in LONG_PATH_TRANSPORTS
                }
                warm = count // 10
                for transport in LONG_PATH_TRANSPORTS:
                    await rpcs[transport].call(
                        "rpc.stream", count=warm, size=STREAM_SIZE, timeout=600
                    )
                    raw_server, raw_client = raws[transport]
                    await raw_server.call("raw.serve", mode="stream", size=STREAM_SIZE, count=warm)
                    await raw_client.call("raw.stream", count=warm, size=STREAM_SIZE, timeout=600)
                    await raw_server.call("raw.serve", mode="stream", size=STREAM_SIZE, count=count)
                for i in range(plan.long_stream_runs):
                    ctx.progress(f"{name}: streams, run {i + 1} of {plan.long_stream_runs}")
                    for transport in LONG_PATH_TRANSPORTS:
                        seconds = await rpcs[transport].call(
                            "rpc.stream", count=count, size=STREAM_SIZE, timeout=600
                        )
                        stream.setdefault(mine(transport), []).append(count / seconds)
                        seconds = await raws[transport][1].call(
                            "raw.stream", count=count, size=STREAM_SIZE, timeout=600
                        )
                        stream.setdefault(raw(transport), []).append(count / seconds)
                for transport in LONG_PATH_TRANSPORTS:
                    await raws[transport][0].call("raw.serve", mode="ping")
                rounds = 2
                for _ in range(rounds):
                    n = plan.long_latency_calls // rounds
                    for transport in LONG_PATH_TRANSPORTS:
                        latency.setdefault(mine(transport, "unary"), []).extend(
                            await rpcs[transport].call(
                                "rpc.latency", count=n, size=PAYLOAD, warmup=2, timeout=600
                            )
                        )
                        latency.setdefault(raw(transport, "ping"), []).extend(
                            await raws[transport][1].call(
                                "raw.ping", count=n, size=PAYLOAD, warmup=2, timeout=600
                            )
                        )
            drops = path.counters()
        where = (
            f"{2e3 * one_way:g} ms round trip, {loss:.0%} of UDP packets lost each way "
            f"(tests/lab: {sum(v for k, v in drops.items() if k.startswith('drop'))} dropped)"
        )
        figures = []
        for transport in LONG_PATH_TRANSPORTS:
            figures += [
                Figure(
                    mine(transport),
                    "msgs/s",
                    stream[mine(transport)],
                    True,
                    f"stream of {count:,} × 1 KB; {where}",
                ),
                Figure(
                    raw(transport),
                    "msgs/s",
                    stream[raw(transport)],
                    True,
                    f"{count:,} 1 KB data-channel messages",
                ),
            ]
        for transport in LONG_PATH_TRANSPORTS:
            unary, ping = mine(transport, "unary"), raw(transport, "ping")
            figures += [
                Figure(unary, "ms", latency[unary], False, "unary call, 100 B each way"),
                Figure(ping, "ms", latency[ping], False, "100 B message and its echo"),
            ]
        return figures

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
    row.ceiling = transport_ceiling(row) + libwebrtc_ceiling(row)


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


def on_transport(
    measure: Callable[[Context, str], Coroutine[Any, Any, list[Figure]]], transport: str
) -> PhaseRun:
    """The phase that runs ``measure`` on ``transport``."""

    async def run(ctx: Context) -> list[Figure]:
        return await measure(ctx, transport)

    return run


def fanout(transport: str) -> PhaseRun:
    """The fan-out of p2prpc topics on ``transport``."""
    return on_transport(_fanout, transport)


async def _fanout(ctx: Context, transport: str) -> list[Figure]:
    prefix = _named("fanout", "p2prpc", transport)
    names = [f"{prefix}-publisher"]
    names += [f"{prefix}-subscriber{i}" for i in range(FANOUT_SUBSCRIBERS)]
    async with (
        embedded_tracker(ctx, f"{prefix}-tracker") as url,
        workers(names, ctx) as (publisher, *subscribers),
    ):
        identifier = ctx.identifier("fanout")
        everyone = [publisher, *subscribers]
        join: dict[str, Any] = {"urls": [url], "identifier": identifier, "transport": transport}
        await asyncio.gather(*(w.call("pubsub.join", **join) for w in everyone))
        await asyncio.gather(*(s.call("pubsub.subscribe") for s in subscribers))
        known_by = await publisher.call(
            "pubsub.wait_subscribers", count=FANOUT_SUBSCRIBERS, timeout=90
        )
        publish = functools.partial(publisher.call, "pubsub.publish")
        found = await _measure_fanout(ctx, publisher, publish, subscribers, "pubsub")
    counters = ", ".join(f"{k} {v}" for k, v in sorted(found.counters.items()) if v)
    return [
        Figure(
            mine(transport),
            "deliveries/s",
            found.rates,
            True,
            f"{_burst_note(ctx.plan)}; the publisher knew its subscribers by {known_by}",
        ),
        Figure(
            mine(transport, "latency"),
            "ms",
            found.latencies,
            False,
            "publish → delivery, one message per 5 ms",
        ),
        Figure(
            mine(transport, "delivered"),
            "%",
            found.delivered,
            True,
            f"of each burst, to every subscriber; the subscribers' counters at the end: {counters}",
        ),
        *cpu_figures({mine(transport): found.cpu}, "delivery", _cpu_note),
    ]


def fanout_raw(transport: str) -> PhaseRun:
    """The fan-out of a hub of raw data channels on ``transport``."""
    return on_transport(_fanout_raw, transport)


async def _fanout_raw(ctx: Context, transport: str) -> list[Figure]:
    prefix = _named("fanout", "raw", transport)
    names = [f"{prefix}-publisher"]
    names += [f"{prefix}-subscriber{i}" for i in range(FANOUT_SUBSCRIBERS)]
    async with workers(names, ctx) as (hub, *subscribers):
        for i, subscriber in enumerate(subscribers):
            offer = await hub.call("rawhub.offer", key=str(i), transport=transport)
            answer = await subscriber.call("raw.answer", sdp=offer, transport=transport)
            await hub.call("rawhub.accept", key=str(i), sdp=answer)
        await asyncio.gather(
            hub.call("rawhub.wait_open"), *(s.call("raw.wait_open") for s in subscribers)
        )
        await asyncio.gather(*(s.call("raw.serve", mode="sink") for s in subscribers))
        publish = functools.partial(hub.call, "rawhub.publish")
        found = await _measure_fanout(ctx, hub, publish, subscribers, "raw")
    return [
        Figure(
            raw(transport),
            "deliveries/s",
            found.rates,
            True,
            f"the same on 8 raw data channels: each message sent on each ({_burst_note(ctx.plan)})",
        ),
        Figure(
            raw(transport, "latency"),
            "ms",
            found.latencies,
            False,
            "send → receipt, one message (on each channel) per 5 ms",
        ),
        *cpu_figures({raw(transport): found.cpu}, "delivery", _cpu_note),
    ]


def judge_fanout(row: Row) -> None:
    for transport in TRANSPORTS:
        figure = row.figure(mine(transport))
        if figure is not None and "incomplete mesh" in figure.note:
            row.notes.append(f"{transport}: {figure.note.split('; ', 1)[-1]}")
    value_check(row, "≥ 5,000 deliveries/s", P2PRPC, 5000.0, at_least=True)
    ratio_check(row, "≥ 0.8× raw aiortc", P2PRPC, "raw aiortc", 0.8, at_least=True)
    value_check(row, "p50 ≤ 2 ms", "p2prpc latency", 2.0, at_least=False)
    cpu_check(row)
    ratio_check(row, "libwebrtc ≥ 1.5× aiortc", LIBWEBRTC, P2PRPC, 1.5, at_least=True)
    row.ceiling = transport_ceiling(row) + libwebrtc_ceiling(row)
    for transport in TRANSPORTS:
        theirs = row.figure(raw(transport, "latency"))
        ours = row.figure(mine(transport, "latency"))
        if row.ceiling and theirs is not None and ours is not None:
            row.ceiling += (
                f"; latency on {transport}: raw {theirs.show(p99=False)}, "
                f"p2prpc {ours.show(p99=False)}"
            )


def swarm(transport: str) -> PhaseRun:
    """The swarm of p2prpc topics on ``transport``."""
    return on_transport(_swarm, transport)


async def _swarm(ctx: Context, transport: str) -> list[Figure]:
    plan = ctx.plan
    processes = plan.swarm_processes
    per_process = [
        plan.swarm_peers // processes + (i < plan.swarm_peers % processes) for i in range(processes)
    ]
    prefix = _named("swarm", "p2prpc", transport)
    names = [f"{prefix}-{i}" for i in range(processes)]
    counters: Counter[str] = Counter()
    async with (
        embedded_tracker(ctx, f"{prefix}-tracker") as url,
        workers(names, ctx) as group,
    ):
        identifier = ctx.identifier("swarm")
        before = await asyncio.gather(*(w.call("pubsub.rss") for w in group))
        start = now_ms()
        await asyncio.gather(
            *(
                w.call(
                    "pubsub.swarm_join",
                    urls=[url],
                    identifier=identifier,
                    count=n,
                    transport=transport,
                )
                for w, n in zip(group, per_process, strict=True)
            )
        )
        await asyncio.gather(*(w.call("pubsub.swarm_formed", timeout=180) for w in group))
        formed = (now_ms() - start) / 1e3
        ctx.progress(f"swarm of {plan.swarm_peers} on {transport} formed in {formed:.1f} s")
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
            mine(transport, "time to form"),
            "s",
            [formed],
            False,
            f"{plan.swarm_peers} peers in {processes} processes, max_peers {DEGREE}: start → "
            f"every node has said hello to {MIN_DEGREE} peers",
        ),
        Figure(
            mine(transport, "memory"),
            "KB/connection",
            [per_connection],
            False,
            "growth of the processes' resident memory from before start, over the connections",
        ),
        Figure(
            mine(transport, "delivered"),
            "%",
            [delivered],
            True,
            f"{plan.swarm_messages} topic messages of 256 bytes, one per 2 ms, to every node; "
            "their counters, summed: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counters.items()) if v),
        ),
    ]


def judge_swarm(row: Row) -> None:
    for transport in TRANSPORTS:
        on = "" if transport == "aiortc" else f"{transport}: "
        form, memory, delivered = (
            mine(transport, w) for w in ("time to form", "memory", "delivered")
        )
        value_check(row, f"{on}forms in < 30 s", form, 30.0, at_least=False)
        value_check(row, f"{on}≤ 500 KB/connection", memory, 500.0, at_least=False)
        value_check(row, f"{on}100% delivered", delivered, 100.0, at_least=True)


def heal(transport: str) -> PhaseRun:
    """The healing of a mesh of p2prpc nodes on ``transport``."""
    return on_transport(_heal, transport)


async def _heal(ctx: Context, transport: str) -> list[Figure]:
    """A bounded mesh loses its tracker, then nodes leave one after another: how long until every
    node is back at its minimum degree in one connected mesh, and whether topic messages
    published then reach every node."""
    plan = ctx.plan
    processes = plan.swarm_processes
    per_process = [
        plan.heal_peers // processes + (i < plan.heal_peers % processes) for i in range(processes)
    ]
    prefix = _named("heal", "p2prpc", transport)
    names = [f"{prefix}-{i}" for i in range(processes)]
    counters: Counter[str] = Counter()
    async with (
        workers([f"{prefix}-tracker"], ctx) as (tracker,),
        workers(names, ctx) as group,
    ):
        url = await tracker.call("tracker.start", host="127.0.0.1")
        identifier = ctx.identifier("heal")
        await asyncio.gather(
            *(
                w.call(
                    "pubsub.swarm_join",
                    urls=[url],
                    identifier=identifier,
                    count=n,
                    transport=transport,
                )
                for w, n in zip(group, per_process, strict=True)
            )
        )
        await asyncio.gather(*(w.call("pubsub.swarm_formed", timeout=180) for w in group))
        ctx.progress(f"mesh of {plan.heal_peers} on {transport} formed; the tracker dies")
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
            mine(transport, "time to heal"),
            "s",
            [healed],
            False,
            f"{plan.heal_peers} peers in {processes} processes, max_peers {DEGREE}; the tracker "
            f"dies, {plan.heal_leaving} nodes leave one after another: first leave → every node "
            f"has {MIN_DEGREE} peers in one connected mesh (lowest degree seen {lowest})",
        ),
        Figure(
            mine(transport, "delivered"),
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
    for transport in TRANSPORTS:
        on = "" if transport == "aiortc" else f"{transport}: "
        heal, delivered = mine(transport, "time to heal"), mine(transport, "delivered")
        value_check(row, f"{on}heals in < 30 s", heal, 30.0, at_least=False)
        value_check(row, f"{on}100% delivered", delivered, 100.0, at_least=True)


# -- through NATs (tests/lab/nat.py) --------------------------------------------------------------


def nat_unavailable() -> str | None:
    """Why the NAT lab cannot be made here (``tests/lab/nat.py``: root, iproute2, iptables,
    coturn), or None."""
    from tests.lab import nat

    return nat.unavailable_reason()


@dataclass(frozen=True)
class NatPath:
    """What lies between the homes: both routers' NAT mapping, the ICE servers both peers use
    (the lab's coturn as a STUN or a TURN server), and whether p2prpc's peers have a relay.

    With ``relay``, a p2prpc node built with ``relay=True`` runs on the public network (host
    candidates only); the ends' direct attempt fails and they reach each other through a circuit
    over it. The raw data channel has no relay: it uses ``raw_ice`` instead of ``ice`` and its
    labels say so (``raw_key``)."""

    key: str  # in the figures' labels: ``cone/STUN``
    mapping: str  # tests.lab.nat.Mapping
    ice: Callable[[Any], list[str]]  # the lab → the ICE server URLs
    relay: bool = False
    raw_ice: Callable[[Any], list[str]] | None = None
    raw_key: str = ""

    @property
    def slug(self) -> str:
        """The path in worker names: ``symmetric-turn``."""
        return self.key.lower().replace("/", "-")


NAT_PATHS = (
    NatPath("cone/STUN", "cone", lambda lab: [lab.stun_url()]),
    NatPath("symmetric/TURN", "symmetric", lambda lab: [lab.turn_url()]),
    NatPath(
        "symmetric/relayed",
        "symmetric",
        lambda lab: [lab.stun_url()],
        relay=True,
        raw_ice=lambda lab: [lab.turn_url()],
        raw_key="symmetric/TURN beside relayed",
    ),
)


@dataclass
class NatSetting:
    """Where a :class:`NatWay` runs: the lab, set to ``path``, on ``transport``; its processes
    live as long as ``stack``."""

    ctx: Context
    lab: Any  # tests.lab.nat.NatLab (imported where the row runs)
    path: NatPath
    transport: str
    stack: AsyncExitStack

    @property
    def ice(self) -> list[str]:
        return self.path.ice(self.lab)

    @property
    def raw_ice(self) -> list[str]:
        """The raw data channel's ICE servers (TURN where p2prpc has a relay)."""
        return (self.path.raw_ice or self.path.ice)(self.lab)

    def host(self, home: str) -> str:
        """Home ``home``'s one address (``"a"`` or ``"b"``)."""
        from tests.lab.nat import HOMES

        return HOMES[home]

    async def workers_in(self, place: str, names: Sequence[str]) -> list[Worker]:
        """Worker processes started in ``place`` (home ``"a"`` or ``"b"``, or ``"public"``;
        this thread enters it while they start; they stay there)."""
        from tests.lab.namespaces import inside

        with inside(self.lab.ns("public" if place == "public" else f"home-{place}")):
            return await self.stack.enter_async_context(workers(names, self.ctx))


class NatWay:
    """One way for a client in home A to reach a server in home B, on one transport: an entry of
    :data:`NAT_WAYS`. :meth:`connect` makes a connection and has one unary call answered over it
    (the call's time included); :meth:`latency` measures round trips over the last one made."""

    what = ""  # the way's kind in worker names

    def __init__(self, setting: NatSetting) -> None:
        self.s = setting
        self.parts: dict[str, tuple[float, str]] = {}
        """The last connect's parts (milliseconds, and what they span) by name, if it has any."""

    def label(self, what: str) -> str:
        """The label of this way's figure ``what`` (``connect``, ``unary``) on its transport
        and path."""
        raise NotImplementedError

    def name(self) -> str:
        return _named(f"nat-{self.s.path.slug}", self.what, self.s.transport)

    async def start(self) -> None:
        raise NotImplementedError

    async def connect(self) -> float:
        """Milliseconds from the start to the first call answered."""
        raise NotImplementedError

    async def latency(self, count: int) -> list[float]:
        raise NotImplementedError

    async def leave(self) -> None:
        raise NotImplementedError


class P2prpcWay(NatWay):
    """p2prpc: a server node in home B, a client node in home A, meeting through the lab's
    tracker; from the client's ``start()`` until its first call is answered.

    On a path with a relay, a ``relay=True`` node on the public network joins first and has the
    server as a peer before the client starts; the first call must have gone through a circuit
    over it, and the connect is split where the direct attempt was reported failed
    (``peerunreachable`` at either end, whichever came first)."""

    what = "p2prpc"
    relay: Worker | None = None

    def label(self, what: str) -> str:
        return mine(self.s.transport, f"{self.s.path.key} {what}")

    async def start(self) -> None:
        [self.server] = await self.s.workers_in("b", [f"{self.name()}-server"])
        [self.client] = await self.s.workers_in("a", [f"{self.name()}-client"])
        if self.s.path.relay:
            [self.relay] = await self.s.workers_in("public", [f"{self.name()}-relay"])

    async def connect(self) -> float:
        s = self.s
        join: dict[str, Any] = {
            "urls": [s.lab.tracker_url],
            "identifier": s.ctx.identifier("nat"),
            "transport": s.transport,
        }
        relay_id = ""
        if self.relay is not None:
            # Host candidates only, on every address it has (it is on the public network; the
            # servers' own address is on its loopback device, which libwebrtc does not offer).
            relayed = await self.relay.call("rpc.join", relay=True, host=None, **join)
            relay_id = relayed["peer_id"]
        join["ice_servers"] = s.ice
        served = await self.server.call("rpc.join", serve=True, host=s.host("b"), **join)
        if self.relay is not None:
            await self.relay.call("rpc.wait_peer")
        joined = await self.client.call("rpc.join", host=s.host("a"), **join)
        answered: float = await self.client.call("rpc.first_call", size=PAYLOAD)
        start = float(joined["t_start_ms"])
        if self.relay is not None:
            server_id, client_id = served["peer_id"], joined["peer_id"]
            via = await self.client.call("rpc.via", peer_id=server_id)
            if via != [f"relay:{relay_id}"]:
                raise RuntimeError(f"the first call went {via or 'direct'}, not through the relay")
            failed = [
                t
                for t in (
                    (await self.client.call("rpc.unreachable")).get(server_id),
                    (await self.server.call("rpc.unreachable")).get(client_id),
                )
                if t is not None
            ]
            if not failed:
                raise RuntimeError("relayed, but neither end reported the other unreachable")
            self.parts = {
                "unreachable": (min(failed) - start, "start → the direct attempt failed"),
                "unreachable → answered": (
                    answered - min(failed),
                    "the direct attempt failed → first call answered through the circuit",
                ),
            }
        return answered - start

    async def latency(self, count: int) -> list[float]:
        times: list[float] = await self.client.call(
            "rpc.latency", count=count, size=PAYLOAD, warmup=5
        )
        return times

    async def leave(self) -> None:
        nodes = [self.server, self.client] + ([self.relay] if self.relay is not None else [])
        await asyncio.gather(*(node.call("rpc.leave") for node in nodes))


class RawWay(NatWay):
    """The raw data channel: offer and answer handed over by the orchestrator (no tracker), from
    the offer until the first 100 B message came back; through TURN where p2prpc has a relay."""

    what = "raw"

    def label(self, what: str) -> str:
        return raw(self.s.transport, f"{self.s.path.raw_key or self.s.path.key} {what}")

    async def start(self) -> None:
        [self.server] = await self.s.workers_in("b", [f"{self.name()}-server"])
        [self.client] = await self.s.workers_in("a", [f"{self.name()}-client"])

    async def connect(self) -> float:
        s, client, server = self.s, self.client, self.server
        ice = s.raw_ice
        start = now_ms()
        offer = await client.call(
            "raw.offer", host=s.host("a"), transport=s.transport, ice_servers=ice
        )
        answer = await server.call(
            "raw.answer", sdp=offer, host=s.host("b"), transport=s.transport, ice_servers=ice
        )
        await client.call("raw.accept", sdp=answer)
        await asyncio.gather(client.call("raw.wait_open"), server.call("raw.wait_open"))
        await server.call("raw.serve", mode="ping")
        await client.call("raw.ping", count=1, size=PAYLOAD, warmup=0)
        return now_ms() - start

    async def latency(self, count: int) -> list[float]:
        times: list[float] = await self.client.call("raw.ping", count=count, size=PAYLOAD, warmup=5)
        return times

    async def leave(self) -> None:
        await asyncio.gather(self.server.call("raw.close"), self.client.call("raw.close"))


NAT_WAYS: tuple[type[NatWay], ...] = (P2prpcWay, RawWay)
"""The ways measured through each of :data:`NAT_PATHS`, on each transport."""


async def through_nats(ctx: Context) -> list[Figure]:
    """Connect time (start → first call answered, and its parts where a way has some) and unary
    round trips through the NAT lab's routers, for each path and each way on each transport;
    the connections of one path are made in turn, repetition by repetition, so that a slow
    spell hits all alike."""
    from tests.lab.nat import NatLab

    plan = ctx.plan
    connects: dict[str, tuple[str, list[float]]] = {}  # label → (note, samples)
    latency: dict[str, list[float]] = {}
    with NatLab() as lab:
        for path in NAT_PATHS:
            lab.nat(path.mapping)  # type: ignore[arg-type]
            async with AsyncExitStack() as stack:
                ways = [
                    way(NatSetting(ctx, lab, path, transport, stack))
                    for transport in TRANSPORTS
                    for way in NAT_WAYS
                ]
                for way in ways:
                    await way.start()
                for i in range(plan.nat_connect + 1):  # the first warms up
                    reps = f"{i} of {plan.nat_connect} (0: warm-up)"
                    ctx.progress(f"through NATs, {path.key}: connections {reps}")
                    for way in ways:
                        elapsed = await way.connect()
                        if i > 0:
                            note = "start → first call answered"
                            if path.relay and isinstance(way, RawWay):
                                note += " (raw through TURN: it has no relay)"
                            measured = [("connect", elapsed, note)]
                            measured += [(k, ms, n) for k, (ms, n) in way.parts.items()]
                            for what, ms, note in measured:
                                connects.setdefault(way.label(what), (note, []))[1].append(ms)
                        if i < plan.nat_connect:
                            await way.leave()
                for way in ways:  # over the connections made last
                    latency[way.label("unary")] = await way.latency(plan.nat_latency_calls)
                    await way.leave()
    figures = []
    for label, (note, samples) in connects.items():
        figures.append(Figure(label, "ms", samples, False, note))
    for label, samples in latency.items():
        figures.append(Figure(label, "ms", samples, False, "100 B each way"))
    return figures


def judge_nat(row: Row) -> None:
    parts = []
    for path in NAT_PATHS:
        key = path.raw_key or path.key
        for what in ("connect", "unary"):
            mine_f = row.figure(mine("aiortc", f"{path.key} {what}"))
            other = row.figure(raw("aiortc", f"{key} {what}"))
            if mine_f is not None and other is not None:
                parts.append(f"{key} {what}: raw aiortc {other.show(p99=False)}")
    if parts:
        row.ceiling = "the raw data channel through the same NATs (" + "; ".join(parts) + ")"


# -- the table ------------------------------------------------------------------------------------

BENCHES: Sequence[Bench] = (
    Bench(
        "connect",
        "connect",
        (
            Phase("p2prpc and raw data channels on loopback", connect_p2prpc),
            Phase("JS P2PT through bittorrent-tracker", connect_js, netns=True),
            Phase("p2prpc over veth", connect_p2prpc_veth, netns=True),
        ),
        judge_connect,
    ),
    Bench(
        "unary-latency",
        "unary latency (100 B)",
        (Phase("p2prpc, raw data channels, gRPC aio", unary_latency),),
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
        (Phase("p2prpc, raw data channels, gRPC aio", unary_throughput),),
        judge_throughput,
    ),
    Bench(
        "bulk-1mb",
        "bulk 1 MB echo",
        (
            Phase(
                "p2prpc and raw data channels",
                _bulk_phase(1_000_000, lambda p: p.bulk_1mb, "bulk1"),
            ),
            Phase("JS P2PT", bulk_js, netns=True),
        ),
        judge_bulk,
    ),
    Bench(
        "bulk-10mb",
        "bulk 10 MB echo",
        (
            Phase(
                "p2prpc and raw data channels",
                _bulk_phase(10_000_000, lambda p: p.bulk_10mb, "bulk10"),
            ),
            Phase("JS P2PT", _bulk_js(10_000_000, lambda p: p.bulk_10mb, "bulk10-js"), netns=True),
        ),
        judge_bulk,
    ),
    Bench(
        "bulk-records",
        "bulk 10 MB records (compressible)",
        (
            Phase("p2prpc and raw data channels", bulk_records),
            Phase("JS P2PT", records_js, netns=True),
        ),
        judge_records,
    ),
    Bench(
        "streaming",
        "server stream {plan.stream_count:,} × 1 KB",
        (Phase("p2prpc and raw data channels", streaming),),
        judge_streaming,
    ),
    Bench(
        "long-path-50",
        "long path: 50 ms round trip, 1% loss",
        (Phase("p2prpc and raw data channels", _long_path(0.025, 0.01, "long50", _lossy)),),
        judge_long_path,
        lab_unavailable,
    ),
    Bench(
        "long-path-150",
        "long path: 150 ms round trip, 1% loss",
        (Phase("p2prpc and raw data channels", _long_path(0.075, 0.01, "long150", _lossy)),),
        judge_long_path,
        lab_unavailable,
    ),
    Bench(
        "long-path-150-clean",
        "long path: 150 ms round trip, no loss",
        (Phase("p2prpc and raw data channels", _long_path(0.075, 0.0, "clean150", _clean)),),
        judge_long_path,
        lab_unavailable,
    ),
    Bench(
        "nat",
        "through NATs: cone/STUN, symmetric/TURN, symmetric/relayed",
        (Phase("p2prpc and raw data channels in the NAT lab", through_nats),),
        judge_nat,
        nat_unavailable,
    ),
    Bench(
        "fan-out",
        "fan-out 1 → 8 (1 KB)",
        (
            Phase("p2prpc topics", fanout("aiortc")),
            Phase("raw aiortc, 1 → 8 channels", fanout_raw("aiortc")),
            Phase("p2prpc topics on libwebrtc", fanout("libwebrtc")),
            Phase("raw libwebrtc, 1 → 8 channels", fanout_raw("libwebrtc")),
        ),
        judge_fanout,
        pubsub_unavailable,
    ),
    Bench(
        "swarm",
        "swarm of {plan.swarm_peers} (topics)",
        (
            Phase("p2prpc topics", swarm("aiortc")),
            Phase("p2prpc topics on libwebrtc", swarm("libwebrtc")),
        ),
        judge_swarm,
        pubsub_unavailable,
    ),
    Bench(
        "heal",
        "mesh of {plan.heal_peers} heals without its tracker",
        (
            Phase("p2prpc mesh and topics", heal("aiortc")),
            Phase("p2prpc mesh and topics on libwebrtc", heal("libwebrtc")),
        ),
        judge_heal,
        pubsub_unavailable,
    ),
)
