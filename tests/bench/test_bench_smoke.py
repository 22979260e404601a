"""`make bench` cannot rot: its quick mode runs one cheap row end to end and writes its JSON.

Speeds are not asserted (they belong to `make bench` on a quiet machine); only that every process
starts, every peer connects, and the results have the shape the table and chart are drawn from:
the timings, the CPU per call, the UDP drops and the previous run's column.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bench.report import Figure, Row
from bench.rows import (
    NAT_PATHS,
    QUICK,
    TRANSPORTS,
    Context,
    NatSetting,
    P2prpcWay,
    RawWay,
    judge_nat,
)

ROOT = Path(__file__).resolve().parents[2]


def test_quick_unary_latency_writes_results(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "unary-latency",
            "--out",
            str(tmp_path),
            "--no-chart",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "unary latency" in result.stdout

    document = json.loads((tmp_path / "results.json").read_text())
    assert document["mode"] == "quick"
    assert document["machine"]["cores"] >= 1
    (row,) = document["rows"]
    assert row["key"] == "unary-latency"
    assert row["skipped"] is None and row["errors"] == []
    figures = {figure["label"]: figure for figure in row["figures"]}
    # p2prpc and the raw data channel on both transports, and gRPC aio.
    timed = {"p2prpc", "p2prpc on libwebrtc", "raw aiortc", "raw libwebrtc", "gRPC aio"}
    assert set(figures) == timed | {f"{label} CPU" for label in timed}
    for label in timed:
        figure = figures[label]
        assert figure["unit"] == "ms" and figure["higher_is_better"] is False
        assert len(figure["samples"]) == document["plan"]["latency_calls"]
        assert all(sample > 0 for sample in figure["samples"])
        summary = figure["summary"]
        assert summary["n"] == len(figure["samples"])
        assert summary["min"] <= summary["median"] <= summary["p99"] <= summary["max"]
        cpu = figures[f"{label} CPU"]
        assert cpu["unit"] == "µs CPU/call" and cpu["higher_is_better"] is False
        assert cpu["samples"] and all(sample > 0 for sample in cpu["samples"])
    targets = [check["target"] for check in row["checks"]]
    assert targets == [
        "p50 ≤ 1.25× raw aiortc",
        "p50 ≤ 1.0× gRPC aio",
        "CPU ≤ 1.2× raw aiortc",
        "libwebrtc p50 ≤ 0.5× gRPC aio",
        "libwebrtc CPU ≤ 0.6× gRPC aio",
        "aiortc no slower than the previous run (±10%)",  # the README's figure
    ]
    assert all(isinstance(check["met"], bool) for check in row["checks"])

    # Datagrams lost on the row's own sockets are counted (how many is the machine's business).
    assert document["udp_buffer_size"] > 0
    assert isinstance(row["udp_drops"], int) and row["udp_drops"] >= 0
    assert all("sockets" in counted for counted in row["udp"].values())
    header = next(line for line in result.stdout.splitlines() if line.startswith("| benchmark"))
    assert "CPU per message" in header and "UDP drops" in header and "previous run" in header


def test_the_nat_row_is_skipped_with_the_reason_when_not_root(tmp_path: Path) -> None:
    """The row through the NAT lab needs root (namespaces, iptables): without it, the row says
    so and the run goes on. As root, the run is made in a user namespace of its own, where this
    process's user is nobody."""
    argv = [sys.executable, "-m", "bench", "--quick", "--only", "nat"]
    argv += ["--out", str(tmp_path), "--no-chart"]
    if os.geteuid() == 0:
        unshare = shutil.which("unshare")
        if unshare is None:
            pytest.skip("running the bench as another user needs unshare (util-linux)")
        argv = [unshare, "--user", *argv]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert row["key"] == "nat"
    assert row["skipped"] == "network namespaces, veth pairs and iptables rules need root"
    assert row["figures"] == []
    assert "need root" in result.stdout
    assert "symmetric/relayed" in row["title"]


def test_the_nat_row_judges_the_figures_its_ways_write(tmp_path: Path) -> None:
    """Each path's ways label their figures as the judge reads them: p2prpc's relayed connect
    (and its split where the direct attempt failed) beside a raw data channel whose label says
    it went through TURN."""
    ctx = Context(plan=QUICK, log_dir=tmp_path)
    row = Row("nat", "through NATs")
    labels = []
    for path in NAT_PATHS:
        for transport in TRANSPORTS:
            setting = NatSetting(ctx, None, path, transport, AsyncExitStack())
            for way in (P2prpcWay(setting), RawWay(setting)):
                labels += [way.label("connect"), way.label("unary")]
    row.figures = [Figure(label, "ms", [1.0, 2.0], False) for label in labels]
    assert len(set(labels)) == len(labels)
    assert "p2prpc symmetric/relayed connect" in labels
    assert "p2prpc on libwebrtc symmetric/relayed unary" in labels
    assert "raw aiortc symmetric/TURN beside relayed connect" in labels
    assert "raw libwebrtc symmetric/TURN beside relayed unary" in labels
    judge_nat(row)
    for key in ("cone/STUN", "symmetric/TURN", "symmetric/TURN beside relayed"):
        for what in ("connect", "unary"):
            assert f"{key} {what}: raw aiortc 1.50 ms" in row.ceiling
