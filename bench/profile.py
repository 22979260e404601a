"""Where the CPU goes: ``python -m bench --profile`` samples every Python worker with py-spy.

Each worker then runs under ``py-spy record --format raw``, which writes its samples as collapsed
stacks (``outer;...;inner count`` a line, readable by speedscope or flamegraph.pl) to
``DIR/profiles/<worker>.txt``. :func:`hot_spots` reads one such file and ranks functions by the
share of samples they were running in (self) or under (total); the CLI prints that for the p2prpc
workers, which is where the optimisation work starts. Only samples holding the CPU count (py-spy
leaves idle threads out, and so does :func:`hot_spots` with the samples of an event loop waiting in
``epoll``), so waiting does not dilute the figures; nor do imports.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

RATE = 250
"""Samples per second."""


def py_spy() -> str:
    """The py-spy executable (beside this Python's, or on PATH); RuntimeError when missing."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    return found


def wrap(argv: list[str], output: Path) -> list[str]:
    """``argv`` run under py-spy, its samples written to ``output``."""
    return [
        py_spy(),
        "record",
        "--format",
        "raw",
        "--function",
        "--nonblocking",
        "--rate",
        str(RATE),
        "--output",
        str(output),
        "--",
        *argv,
    ]


WAITING = "EpollSelector.select "
"""The innermost frame of an event loop waiting for its sockets."""

IMPORTING = "_find_and_load "
"""A frame of every stack sampled while a module was being imported."""


def _frames(stack: str) -> list[str]:
    # py-spy writes a frame as "function (file:line)"; with --function, line is the def's line.
    return [frame.strip() for frame in stack.split(";") if frame.strip()]


def hot_spots(path: Path, top: int = 15, only: str | None = "p2prpc/") -> str:
    """A table of the functions where the samples in ``path`` were spent.

    ``self``: the function itself was running; ``total``: it, or something it called. With
    ``only``, the total column lists only functions from files whose path contains it.
    """
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        if not frames or frames[-1].startswith(WAITING):
            continue  # the event loop waiting: py-spy does not always see that as idle
        if any(f.startswith(IMPORTING) for f in frames):
            continue  # start-up, not the measurement
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            under[frame] += n
    if not samples:
        return f"{path.name}: no samples"
    lines = [f"{path.stem}: {samples} busy samples ({samples / RATE:.1f} s of CPU)", "  self:"]
    for frame, n in own.most_common(top):
        lines.append(f"    {100 * n / samples:5.1f}%  {frame}")
    lines.append(f"  total{f' ({only} only)' if only else ''}:")
    ranked = [(f, n) for f, n in under.most_common() if only is None or only in f]
    for frame, n in ranked[:top]:
        lines.append(f"    {100 * n / samples:5.1f}%  {frame}")
    return "\n".join(lines)
