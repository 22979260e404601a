"""The previous run's figures: read from the README's Performance section or a results.json."""

from __future__ import annotations

import json
from pathlib import Path

from bench.previous import match, previous_check, published
from bench.report import Figure, Row, write_json

README = """# p2prpc

## Performance

Latest run: AMD EPYC, 2 cores, 2026-11-25.

| benchmark | p2prpc | baselines (same run) | UDP drops | target | met |
|---|---|---|---|---|---|
| connect (start → peerconnect) | 49.3 ms (p99 77.9) | raw 36.4 ms | 12 (was 40) | ≤ 100 ms | yes |
| | | | | below JS P2PT | yes |
| bulk 1 MB echo | 6.50 MB/s | raw aiortc 6.41 MB/s | 0 | ≥ 0.8× raw | yes |
| bulk 10 MB echo | 8.38 MB/s | raw aiortc 9.05 MB/s | 3 | ≥ 0.8× raw | yes |
| a \\| b | x | y | | | |

## Layout

| not | this |
|---|---|
"""


def test_the_performance_table_is_read_row_by_row(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    found = published(readme)
    assert found.run == "AMD EPYC, 2 cores, 2026-11-25"
    assert [r["benchmark"] for r in found.rows] == [
        "connect (start → peerconnect)",
        "bulk 1 MB echo",
        "bulk 10 MB echo",
        "a | b",
    ]
    assert found.rows[0]["p2prpc"] == "49.3 ms (p99 77.9)"
    assert found.rows[0]["UDP drops"] == "12 (was 40)"


def test_titles_match_despite_rewording(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    rows = published(readme).rows
    assert match("connect", rows)["p2prpc"].startswith("49.3")
    assert match("bulk 1 MB echo", rows)["p2prpc"] == "6.50 MB/s"
    assert match("bulk 10 MB echo", rows)["p2prpc"] == "8.38 MB/s"
    assert match("swarm of 50 (topics)", rows) == {}


def test_a_readme_without_the_section_gives_nothing(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# p2prpc\n\n## Layout\n")
    assert published(readme).rows == []
    assert published(tmp_path / "missing.md").run is None


def test_an_earlier_results_json_reads_as_its_table(tmp_path: Path) -> None:
    row = Row("bulk-1mb", "bulk 1 MB echo")
    row.figures = [
        Figure("p2prpc", "MB/s", [6.0, 7.0], True),
        Figure("raw aiortc", "MB/s", [6.4], True),
        Figure("p2prpc CPU", "µs CPU/call", [300.0], False),
    ]
    row.udp = {"p2prpc and raw aiortc": {"sockets": 1234}}
    path = tmp_path / "results.json"
    info = {"started": "2026-11-29T12:00:00+00:00", "udp_buffer_size": None, "machine": {}}
    write_json(path, [row], info)
    assert json.loads(path.read_text())["rows"][0]["udp_drops"] == 1234
    found = published(path)
    assert found.run is not None and "2026-11-29" in found.run and "aioice" in found.run
    (line,) = found.rows
    assert line["p2prpc"] == "6.50 MB/s (p99 6.01)"
    assert line["UDP drops"] == "1,234"
    assert line["CPU per message"] == "p2prpc 300 µs/call"


def _judged(title: str, figure: Figure, previous: str) -> Row:
    row = Row("row", title, [figure])
    row.previous = {"p2prpc": previous}
    previous_check(row)
    return row


def test_p2prpc_on_aiortc_is_judged_against_the_published_figure() -> None:
    # A rate: at most 10 % below the published one.
    row = _judged("bulk", Figure("p2prpc", "MB/s", [28.0], True), "31.0 MB/s (p99 26.8)")
    (check,) = row.checks
    assert check.met is True and check.figure == "p2prpc"
    assert check.threshold is not None and abs(check.threshold - 27.9) < 1e-9
    row = _judged("bulk", Figure("p2prpc", "MB/s", [27.0], True), "31.0 MB/s (p99 26.8)")
    assert [c.met for c in row.checks] == [False]
    # A time: at most 10 % above; thousands separated.
    row = _judged("rate", Figure("p2prpc", "msgs/s", [9100.0], True), "10,035 msgs/s")
    assert [c.met for c in row.checks] == [True]
    row = _judged("lat", Figure("p2prpc", "ms", [0.33], False), "0.290 ms (p99 0.526)")
    assert [c.met for c in row.checks] == [False]
    assert row.checks[0].shown == "1.14× previous run"


def test_no_previous_check_without_a_comparable_figure() -> None:
    # The published cell leads with a side figure's name, or another unit, or nothing.
    figure = Figure("p2prpc", "ms", [30.0], False)
    assert _judged("secret", figure, "secret connect 30.2 ms (p99 32.5)").checks == []
    assert _judged("odd", figure, "30.2 MB/s").checks == []
    assert _judged("new", figure, "").checks == []
    row = Row("swarm", "swarm", [Figure("p2prpc time to form", "s", [1.0], False)])
    row.previous = {"p2prpc": "1.08 s"}
    previous_check(row)
    assert row.checks == []


def test_a_later_table_in_the_section_is_not_the_runs(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    more = "\nOn both transports:\n\n| row | p2prpc |\n|---|---|\n| connect, ms | 28.5 |\n"
    readme.write_text(README.replace("\n## Layout", more + "\n## Layout"))
    assert [r["benchmark"] for r in published(readme).rows] == [
        "connect (start → peerconnect)",
        "bulk 1 MB echo",
        "bulk 10 MB echo",
        "a | b",
    ]
