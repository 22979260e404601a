"""What a benchmark run produces: rows of figures and checks, as a table, JSON and a chart.

A :class:`Row` is one line of the issue's table: p2prpc's figure, the baselines measured beside it,
and :class:`Check`\\ s, each one target with the measured value it was judged on. A row that could
not run says why in ``skipped`` (not implemented, no JavaScript peers here) or ``errors``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .stats import Summary

P2PRPC = "p2prpc"
"""The label of p2prpc's own figure in a row; other labels are baselines or side figures."""

CPU = "µs CPU/"
"""How the units of CPU figures begin (``µs CPU/call``): they have a column of their own."""


@dataclass
class Figure:
    """Repeated measurements of one thing: ``label`` says whose, ``unit`` in what."""

    label: str
    unit: str
    samples: list[float]
    higher_is_better: bool
    note: str = ""

    @property
    def summary(self) -> Summary:
        return Summary.of(self.samples, higher_is_better=self.higher_is_better)

    @property
    def is_cpu(self) -> bool:
        """CPU time per unit of work, summed over the processes doing it."""
        return self.unit.startswith(CPU)

    def show(self, *, p99: bool = True) -> str:
        s = self.summary
        text = amount(s.median, self.unit)
        if p99 and s.n > 1:
            text += f" (p99 {amount(s.p99, self.unit).split()[0]})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "note": self.note,
            "summary": asdict(self.summary) if self.samples else None,
            "samples": self.samples,
        }


@dataclass
class Check:
    """One target of a row: ``target`` as the issue states it, ``shown`` the measured value."""

    target: str
    shown: str
    met: bool | None  # None: could not be judged (a figure is missing)
    value: float | None = None
    figure: str | None = None  # the label of the figure judged
    threshold: float | None = None  # the target in that figure's unit (drawn on the chart)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "shown": self.shown,
            "met": self.met,
            "value": self.value,
            "figure": self.figure,
            "threshold": self.threshold,
        }


@dataclass
class Row:
    """One benchmark: its figures, the targets they meet or miss, and what bounds them."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    ceiling: str = ""
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Per phase: datagrams dropped on its Python processes' sockets ("sockets"), on its node
    # processes' ("libwebrtc sockets"), and the growth of the network namespace's UDP error
    # counters ("namespace RcvbufErrors", ...).
    udp: dict[str, dict[str, int]] = field(default_factory=dict)
    previous: dict[str, str] = field(default_factory=dict)  # the last published run: column: cell

    @property
    def udp_drops(self) -> int | None:
        """Datagrams the row's Python processes (aiortc) lost on their UDP sockets (None: not
        counted)."""
        if not self.udp:
            return None
        return sum(counted.get("sockets", 0) for counted in self.udp.values())

    @property
    def libwebrtc_drops(self) -> int:
        """The same for its JavaScript peers' sockets, which libwebrtc sizes itself."""
        return sum(counted.get("libwebrtc sockets", 0) for counted in self.udp.values())

    def figure(self, label: str) -> Figure | None:
        for figure in self.figures:
            if figure.label == label and figure.samples:
                return figure
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "skipped": self.skipped,
            "errors": self.errors,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
            "udp": self.udp,
            "udp_drops": self.udp_drops,
            "libwebrtc_udp_drops": self.libwebrtc_drops,
            "previous": self.previous,
            "ceiling": self.ceiling,
            "figures": [f.to_json() for f in self.figures],
            "checks": [c.to_json() for c in self.checks],
        }


def amount(value: float, unit: str) -> str:
    """A value with its unit; percentages with two decimals, so 99.99 does not show as 100."""
    return f"{value:.2f} %" if unit == "%" else f"{number(value)} {unit}"


def number(value: float) -> str:
    """Three significant digits or so, with thousands separated."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


# -- the table ------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


HEADER = [
    "benchmark",
    P2PRPC,
    "previous run",
    "baselines (same run)",
    "CPU per message",
    "UDP drops",
    "ratio / value",
    "target",
    "met?",
]
"""The table's columns; ``previous run`` is p2prpc's figure as the README last published it."""


def p2prpc_cell(row: Row) -> str:
    """p2prpc's own figures in a row, as the table's ``p2prpc`` column shows them."""
    mine = [f for f in row.figures if f.samples and f.label.startswith(P2PRPC) and not f.is_cpu]

    def show(f: Figure) -> str:
        return f.show() if f.label == P2PRPC else f"{f.label.removeprefix(P2PRPC)} {f.show()}"

    return "; ".join(show(f).strip() for f in mine) or "—"


def cpu_cell(row: Row) -> str:
    """The CPU figures of a row: ``p2prpc 310; raw aiortc 250 µs/call`` (medians)."""
    figures = [f for f in row.figures if f.samples and f.is_cpu]
    if not figures:
        return "—"
    parts = [f"{f.label.removesuffix(' CPU')} {number(f.summary.median)}" for f in figures]
    return f"{'; '.join(parts)} µs/{figures[0].unit.removeprefix(CPU)}"


def drops_cell(row: Row, *, previous: bool = True) -> str:
    """The row's UDP drops, and (with ``previous``) those of the previous run where known."""
    drops = row.udp_drops
    text = "?" if drops is None else f"{drops:,}"
    before = re.match(r"[\d,]+", row.previous.get("UDP drops", ""))  # its own, not its "was"
    if previous and before:
        text += f" (was {before[0]})"
    if row.libwebrtc_drops:
        text += f"; JS P2PT {row.libwebrtc_drops:,}"
    return text


def table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table: one line per target (a row may have several)."""
    header = HEADER
    lines = [header, ["---"] * len(header)]
    for row in rows:
        previous = row.previous.get(P2PRPC, "—")
        if row.skipped is not None:
            skipped = [row.title, "skipped", previous, "—", "—", "—", "—", row.skipped, "—"]
            lines.append(skipped)
            continue
        measured = [f for f in row.figures if f.samples]
        others = [f for f in measured if not f.label.startswith(P2PRPC) and not f.is_cpu]
        first = [
            row.title,
            p2prpc_cell(row),
            previous,
            "; ".join(f"{f.label} {f.show()}" for f in others) or "—",
            cpu_cell(row),
            drops_cell(row),
        ]
        if row.errors:
            lines.append([*first, "—", "error: " + row.errors[0].splitlines()[-1][:80], "—"])
            continue
        checks = row.checks or [Check("—", "—", None)]
        for i, check in enumerate(checks):
            met = {True: "yes", False: "**no**", None: "?"}[check.met]
            lead = first if i == 0 else [""] * len(first)
            lines.append([*lead, check.shown, check.target, met])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [
            _cell(c).ljust(w) if line[0] != "---" else "-" * w
            for c, w in zip(line, widths, strict=True)
        ]
        out.append("| " + " | ".join(cells) + " |")
    ceilings = [f"- {r.title}: {r.ceiling}" for r in rows if r.ceiling and not r.skipped]
    if ceilings:
        out += ["", "What sets the ceiling:", "", *ceilings]
    notes = [f"- {r.title}: {note}" for r in rows for note in r.notes]
    if notes:
        out += ["", "Notes:", "", *notes]
    return "\n".join(out)


# -- the machine ----------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _node_version() -> str | None:
    try:
        result = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "node": _node_version(),
        "packages": {
            name: _version(name) for name in ("p2prpc", "aiortc", "aioice", "grpcio", "protobuf")
        },
    }


def write_json(path: Path, rows: Sequence[Row], info: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**info, "rows": [row.to_json() for row in rows]}
    path.write_text(json.dumps(document, indent=1) + "\n")


# -- the chart ------------------------------------------------------------------------------------


def write_chart(path: Path, rows: Sequence[Row], title: str) -> bool:
    """A PNG with one panel per row and unit: each figure's median as a bar, its p99 as a
    whisker, each target as a dashed line (green: met, red: missed).

    Returns False (and draws nothing) when matplotlib is not installed (``pip install -e
    '.[bench]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels: list[tuple[str, list[Figure], list[Check]]] = []
    for row in rows:
        units: dict[str, list[Figure]] = {}
        for figure in row.figures:
            if figure.samples:
                units.setdefault(figure.unit, []).append(figure)
        for unit, figures in units.items():
            labels = {f.label for f in figures}
            drawn = [c for c in row.checks if c.figure in labels and c.threshold is not None]
            name = row.title if len(units) == 1 else f"{row.title}: {unit}"
            panels.append((name, figures, drawn))
    if not panels:
        return False
    columns = 2
    lines = (len(panels) + columns - 1) // columns
    height = 2.4 * lines + 0.8
    fig, axes = plt.subplots(lines, columns, figsize=(13, height), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, figures, checks) in zip(axes.flat, panels, strict=False):
        medians = [f.summary.median for f in figures]
        tails = [f.summary.p99 for f in figures]
        below = [max(0.0, m - t) for m, t in zip(medians, tails, strict=True)]
        above = [max(0.0, t - m) for m, t in zip(medians, tails, strict=True)]
        positions = list(range(len(figures)))
        colours = ["tab:blue" if f.label.startswith(P2PRPC) else "tab:gray" for f in figures]
        ax.barh(positions, medians, xerr=[below, above], color=colours, capsize=3)
        ax.set_yticks(positions, [f.label for f in figures], fontsize=8)
        ax.invert_yaxis()
        better = "higher" if figures[0].higher_is_better else "lower"
        ax.set_xlabel(f"{figures[0].unit}: median, whisker to p99 ({better} is better)", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        for y, value, tail in zip(positions, medians, tails, strict=True):
            ax.annotate(
                number(value),
                (max(value, tail), y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        if min(medians) > 0 and max(tails + medians) / min(medians) > 30:
            ax.set_xscale("log")  # a tail far beyond the medians would squash the bars
        for i, check in enumerate(checks):
            assert check.threshold is not None
            colour = "tab:green" if check.met else "tab:red"
            ax.axvline(check.threshold, color=colour, linestyle="--", linewidth=1)
            ax.annotate(
                f"target: {check.target}",
                (check.threshold, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -9 - 9 * i),
                textcoords="offset points",
                fontsize=7,
                color=colour,
            )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height))  # leave the title its room
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
