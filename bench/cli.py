"""``python -m bench [--quick] [--only ROW ...] [--out DIR]``: run the rows, print the table.

Writes ``DIR/results.json`` (every sample, the summaries, the checks, the machine) and
``DIR/chart.png``, and each process's log under ``DIR/logs``. Loopback rows run first; the phases
with a JavaScript peer then run together inside one fresh network namespace (root and ``ip``
needed; without them those figures are left out and the table says so).

Beside each row the table shows p2prpc's figure from the run the README last published, and the
UDP datagrams the kernel dropped during the row for want of socket buffer.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from p2prpc.transport import UDP_BUFFER_SIZE

from . import profile, udp
from .previous import match, previous_check, published
from .procs import ROOT, js_unavailable_reason, namespace
from .report import Row, machine, table, write_chart, write_json
from .rows import BENCHES, FULL, QUICK, Bench, Context, Phase


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _run_phase(bench: Bench, phase: Phase, row: Row, ctx: Context) -> None:
    _log(f"[{bench.key}] {phase.name} ...")
    start = time.monotonic()
    before, dropped = udp.counters(), ctx.udp_drops.copy()
    try:
        figures = asyncio.run(phase.run(ctx))
    except Exception as error:
        row.errors.append(f"{phase.name}: {type(error).__name__}: {error}")
        _log(f"[{bench.key}] {phase.name} failed:\n{traceback.format_exc()}")
    else:
        row.figures += figures
    elapsed = time.monotonic() - start
    counted = {"sockets": 0, **(ctx.udp_drops - dropped)}
    namespace_wide = udp.delta(before, udp.counters())
    if namespace_wide is not None:
        counted |= {f"namespace {name}": n for name, n in namespace_wide.items()}
    row.udp[phase.name] = counted
    row.seconds += elapsed
    _log(f"[{bench.key}] {phase.name}: {elapsed:.1f} s; UDP datagrams dropped: {counted}")


def run(benches: Sequence[Bench], ctx: Context) -> list[Row]:
    rows = {b.key: Row(b.key, b.title.format(plan=ctx.plan)) for b in benches}
    runnable = []
    for bench in benches:
        reason = bench.unavailable()
        if reason is None:
            runnable.append(bench)
        else:
            rows[bench.key].skipped = reason
            _log(f"[{bench.key}] skipped: {reason}")
    for bench in runnable:
        for phase in bench.phases:
            if not phase.netns:
                _run_phase(bench, phase, rows[bench.key], ctx)
    inside = [(b, p) for b in runnable for p in b.phases if p.netns]
    if inside:
        reason = js_unavailable_reason()
        if reason is not None:
            for bench, phase in inside:
                rows[bench.key].notes.append(f"{phase.name} not measured: {reason}")
                _log(f"[{bench.key}] {phase.name} skipped: {reason}")
        else:
            try:
                with namespace() as veth:
                    ctx_inside = replace(ctx, veth=veth)
                    for bench, phase in inside:
                        _run_phase(bench, phase, rows[bench.key], ctx_inside)
            except (OSError, RuntimeError) as error:  # the namespace could not be made or left
                for bench, phase in inside:
                    rows[bench.key].errors.append(f"{phase.name}: test namespace: {error}")
                _log(f"test namespace: {traceback.format_exc()}")
    for bench in runnable:
        row = rows[bench.key]
        if not row.errors:
            bench.judge(row)
    return list(rows.values())


def main(argv: Sequence[str] | None = None) -> int:
    keys = [b.key for b in BENCHES]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few repetitions: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=keys,
        metavar="ROW",
        help=f"run only this row (repeatable): {', '.join(keys)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench-results",
        help="where results.json, chart.png and logs go (bench-results/)",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not draw chart.png")
    parser.add_argument(
        "--udp-buffer-size",
        type=int,
        default=UDP_BUFFER_SIZE,
        metavar="BYTES",
        help="receive and send buffer of every Python peer's UDP sockets, as granted up to "
        f"net.core.rmem_max/wmem_max (default {UDP_BUFFER_SIZE}; 0: aioice's own)",
    )
    parser.add_argument(
        "--previous",
        type=Path,
        default=ROOT / "README.md",
        metavar="README",
        help="where the previous run's figures are published (its Performance section)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample every Python worker with py-spy (DIR/profiles); print p2prpc's hot spots",
    )
    args = parser.parse_args(argv)

    benches = [b for b in BENCHES if not args.only or b.key in args.only]
    out: Path = args.out
    log_dir = out / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    plan = QUICK if args.quick else FULL
    profile_dir = out / "profiles"
    shutil.rmtree(profile_dir, ignore_errors=True)
    if args.profile:
        profile.py_spy()  # fails early, with the fix, when py-spy is missing
    os.environ[udp.ENV] = str(max(0, args.udp_buffer_size))  # the workers inherit it
    ctx = Context(plan, log_dir, profile_dir if args.profile else None)
    started = datetime.datetime.now(datetime.UTC)
    start = time.monotonic()
    rows = run(benches, ctx)
    duration = time.monotonic() - start
    before = published(args.previous)
    for row in rows:
        row.previous = match(row.title, before.rows)
        if row.skipped is None and not row.errors:
            previous_check(row)

    spec = machine()
    info: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "seconds": round(duration, 1),
        "plan": asdict(plan),
        "profiled": args.profile,
        "udp_buffer_size": args.udp_buffer_size or None,
        "previous_run": before.run,
        "machine": spec,
    }
    write_json(out / "results.json", rows, info)
    print(table(rows))
    print(
        f"\n{spec['cpu']}, {spec['cores']} cores; Python {spec['python']}, node {spec['node']}; "
        f"{info['mode']} run, {duration:.0f} s. Raw figures: {out / 'results.json'}"
    )
    buffers = f"{args.udp_buffer_size:,} bytes asked" if args.udp_buffer_size > 0 else "aioice's"
    print(f"UDP socket buffers: {buffers}. Previous run ({args.previous.name}): {before.run}")
    if not args.no_chart:
        title = f"p2prpc benchmarks ({started:%Y-%m-%d}, {spec['cpu']}, {spec['cores']} cores)"
        if write_chart(out / "chart.png", rows, title):
            print(f"Chart: {out / 'chart.png'}")
        else:
            print("No chart: matplotlib is not installed (pip install -e '.[bench]')")
    if args.profile:
        print(f"\nHot spots (py-spy; collapsed stacks in {profile_dir}):")
        for path in sorted(profile_dir.glob("*-p2prpc-*.txt")):
            print("\n" + profile.hot_spots(path))
    return 1 if any(row.errors for row in rows) else 0
