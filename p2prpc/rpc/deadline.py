"""A call's deadline, on one clock (``time.monotonic``, the event loop's clock)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a call must be over: ``at`` is a ``time.monotonic()`` instant, ``None`` for never.

    gRPC's ``timeout=`` (seconds, relative) becomes one of these when a call starts; it travels as
    the seconds remaining when each message leaves, so the two peers need no common clock.
    """

    at: float | None = None

    @classmethod
    def after(cls, timeout: float | None) -> Deadline:
        """The deadline ``timeout`` seconds from now (``None`` or infinity: no deadline)."""
        if timeout is None or timeout == float("inf"):
            return cls(None)
        if timeout != timeout or timeout < 0:  # NaN, or negative
            raise ValueError(f"timeout must be a number of seconds ≥ 0, not {timeout!r}")
        return cls(time.monotonic() + timeout)

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at
