"""Summaries of repeated measurements: median, p99, spread.

A figure is either a cost (latency, time: lower is better) or a rate (calls/s, MB/s: higher is
better). Its ``p99`` is always its tail on the bad side: the value that 99% of the samples do at
least as well as. For a cost that is the 99th percentile; for a rate, the 1st.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``samples``, interpolated linearly between ranks."""
    if not samples:
        raise ValueError("no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is not within 0-100")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Summary:
    """What a table quotes of a list of samples."""

    n: int
    median: float
    p99: float
    mean: float
    min: float
    max: float
    stdev: float

    @classmethod
    def of(cls, samples: Sequence[float], *, higher_is_better: bool) -> Summary:
        if not samples:
            raise ValueError("no samples")
        return cls(
            n=len(samples),
            median=statistics.median(samples),
            p99=percentile(samples, 1.0 if higher_is_better else 99.0),
            mean=statistics.fmean(samples),
            min=min(samples),
            max=max(samples),
            stdev=statistics.stdev(samples) if len(samples) > 1 else 0.0,
        )
