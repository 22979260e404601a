"""What a fan-out message carries in its first 16 bytes: when it was published, and its number.

Times are CLOCK_MONOTONIC milliseconds, which every process of one machine reads alike, so a
receiver in another process measures the publish → delivery latency itself.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

STAMP = struct.Struct(">dQ")


def now_ms() -> float:
    """CLOCK_MONOTONIC in milliseconds."""
    return time.monotonic_ns() / 1e6


def stamped(seq: int, size: int) -> bytes:
    """A ``size``-byte message (at least the stamp) stamped now with ``seq``."""
    return STAMP.pack(now_ms(), seq) + bytes(max(0, size - STAMP.size))


def read_stamp(data: bytes) -> tuple[float, int]:
    """``(publish time in ms, sequence number)`` of a stamped message."""
    sent, seq = STAMP.unpack_from(data)
    return sent, seq


class Receipts:
    """What one subscriber received: latency by sequence number (duplicates ignored)."""

    def __init__(self) -> None:
        self.latencies: dict[int, float] = {}
        self.last_ms = 0.0
        self._arrived = asyncio.Event()

    def record(self, data: bytes) -> None:
        now = now_ms()
        sent, seq = read_stamp(data)
        self.latencies.setdefault(seq, now - sent)
        self.last_ms = now
        self._arrived.set()

    def reset(self) -> None:
        self.latencies.clear()
        self.last_ms = 0.0

    async def wait(self, count: int, timeout: float, quiet: float) -> None:
        """Until ``count`` distinct messages came, or none came for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.latencies) < count and time.monotonic() < deadline:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), quiet)
            except TimeoutError:
                return

    def result(self) -> dict[str, Any]:
        return {
            "received": len(self.latencies),
            "t_last_ms": self.last_ms,
            "latencies_ms": list(self.latencies.values()),
        }
