"""The run the README last published, so that a new run prints its figures beside the old ones.

The README's Performance section holds the table ``make bench`` printed (pasted, perhaps trimmed)
and a ``Latest run:`` line saying on what and when. :func:`published` reads both (or the
``results.json`` of an earlier run, to compare two runs of one day); :func:`match` finds a row's
line by its title, also when the published titles were worded a little differently (a row whose
title changed much has no previous figures).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .report import P2PRPC, Check, Figure, Row, cpu_cell, drops_cell, p2prpc_cell

SECTION = "## Performance"


@dataclass
class Published:
    """What the README says of its latest run: the ``Latest run:`` line and the table's lines."""

    run: str | None = None
    rows: list[dict[str, str]] = field(default_factory=list)  # column: cell, per benchmark


def _cells(line: str) -> list[str]:
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def published(readme: Path) -> Published:
    """The Performance section of ``readme``, or the run of a ``results.json`` (empty when there
    is none)."""
    if readme.suffix == ".json":
        return from_results(readme)
    found = Published()
    try:
        text = readme.read_text()
    except OSError:
        return found
    start = text.find(f"\n{SECTION}\n")
    if start < 0:
        return found
    end = text.find("\n## ", start + len(SECTION) + 2)
    section = text[start : end if end >= 0 else len(text)]
    header: list[str] | None = None
    for line in section.splitlines():
        if line.startswith("Latest run:"):
            found.run = line.removeprefix("Latest run:").strip().rstrip(".")
        if not line.startswith("|"):
            if found.rows:
                break  # the run's table ended: later tables are not this run's
            continue
        cells = _cells(line)
        if header is None:
            header = cells
        elif set("".join(cells)) <= set("-: "):
            continue  # the line under the header
        elif cells[0]:  # further lines of a row (more targets) have no benchmark
            found.rows.append(dict(zip(header, cells, strict=False)))
    return found


def _words(title: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", title.lower()))


def match(title: str, rows: Sequence[dict[str, str]], column: str = "benchmark") -> dict[str, str]:
    """The published line of the row called ``title`` (``{}`` when none is close enough).

    The best is the line whose title holds most of this one's words (at least 70 %), then the one
    with fewest other words.
    """
    words = _words(title)
    best: tuple[float, float] = (0.7, 0.0)
    found: dict[str, str] = {}
    for row in rows:
        theirs = _words(row.get(column, ""))
        if not words or not theirs:
            continue
        shared = len(words & theirs)
        score = (shared / len(words), shared / len(words | theirs))
        if score >= best:
            best, found = score, row
    return found


SLACK = 0.1
"""How much slower than the published run p2prpc on aiortc may measure and still count as no
slower: the run-to-run noise of one machine."""

_FIGURE = re.compile(r"([\d,]+(?:\.\d+)?) (\S+)")


def previous_check(row: Row, slack: float = SLACK) -> None:
    """Add the check that p2prpc's own figure (``P2PRPC``: on aiortc) is no slower than the
    published run's, within ``slack``; nothing when either is missing or their units differ.

    The published figure is the first of the row's ``previous`` p2prpc cell, which leads with
    p2prpc's own figure where the row has one (its side figures carry their names first).
    """
    figure = row.figure(P2PRPC)
    found = _FIGURE.match(row.previous.get(P2PRPC, ""))
    if figure is None or found is None or found[2] != figure.unit:
        return
    before = float(found[1].replace(",", ""))
    if before <= 0:
        return
    ratio = figure.summary.median / before
    if figure.higher_is_better:
        met, line = ratio >= 1 - slack, before * (1 - slack)
    else:
        met, line = ratio <= 1 + slack, before * (1 + slack)
    target = f"aiortc no slower than the previous run (±{slack:.0%})"
    row.checks.append(Check(target, f"{ratio:.2f}× previous run", met, ratio, P2PRPC, line))


def from_results(path: Path) -> Published:
    """An earlier run's ``results.json``, as its table would have shown it."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return Published()
    spec = document.get("machine", {})
    buffers = document.get("udp_buffer_size")
    found = Published(
        f"{spec.get('cpu')}, {spec.get('cores')} cores, {document.get('started', '?')[:10]}, "
        f"UDP buffers {f'{buffers:,} bytes asked' if buffers else 'as aioice sets them'}"
    )
    for data in document.get("rows", []):
        figures = [
            Figure(f["label"], f["unit"], f["samples"], f["higher_is_better"], f.get("note", ""))
            for f in data.get("figures", [])
        ]
        row = Row(data["key"], data["title"], figures, udp=data.get("udp") or {})
        found.rows.append(
            {
                "benchmark": row.title,
                P2PRPC: p2prpc_cell(row),
                "CPU per message": cpu_cell(row),
                "UDP drops": drops_cell(row, previous=False),
            }
        )
    return found
