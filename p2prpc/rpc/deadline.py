"""A call's deadline, on one clock (``time.monotonic``, the event loop's clock), and the timer
that watches the deadlines of a node's calls."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


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
            return NEVER
        if timeout != timeout or timeout < 0:  # NaN, or negative
            raise ValueError(f"timeout must be a number of seconds ≥ 0, not {timeout!r}")
        return cls(time.monotonic() + timeout)

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


NEVER = Deadline(None)
"""No deadline (what ``Deadline.after(None)`` returns: one object, as a deadline never changes)."""

#: A watched deadline: ``[at, order, callback]``; the callback is ``None`` once it is cancelled or
#: has run (see :class:`Deadlines`).
Watch = list[Any]


class Deadlines:
    """The deadlines of many calls on one timer of the event loop.

    A call with a deadline used to hold a timer of its own (``loop.call_at``, then its cancel
    when the call ended, nearly always first). Here :meth:`add` is a push on a heap, and the
    loop holds one timer, for the earliest deadline; :meth:`cancel` marks the entry, which is
    dropped when its time comes or when cancelled entries are most of the heap (so the heap
    holds at most about twice the calls in progress). Callbacks run in deadline order (ties: in
    the order they were added), each at or after its deadline, from the event loop; one that
    raises is logged and the others still run.
    """

    __slots__ = ("_cancelled", "_heap", "_loop", "_order", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._heap: list[Watch] = []
        self._cancelled = 0
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        """Entries held, cancelled ones not yet dropped included."""
        return len(self._heap)

    def add(self, at: float, callback: Callable[[], object]) -> Watch:
        """Call ``callback()`` once ``time.monotonic()`` reaches ``at`` (soon, if it has);
        returns what :meth:`cancel` takes. Must be called from the running event loop."""
        watch = [at, next(self._order), callback]
        heapq.heappush(self._heap, watch)
        if at < self._timer_at:
            self._arm(at)
        return watch

    def cancel(self, watch: Watch) -> None:
        """Do not call ``watch``'s callback (nothing happens if it ran, or was cancelled)."""
        if watch[2] is None:
            return
        watch[2] = None
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > 32 and 2 * self._cancelled > len(heap):
            self._heap = [w for w in heap if w[2] is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        heap = self._heap
        now = time.monotonic()
        while heap and (heap[0][0] <= now or heap[0][2] is None):
            watch = heapq.heappop(heap)
            callback = watch[2]
            if callback is None:
                self._cancelled -= 1
                continue
            watch[2] = None
            try:
                callback()
            except Exception:
                logger.exception("a deadline's callback raised")
            heap = self._heap  # a callback's cancel may have rebuilt it
        if heap:
            self._arm(heap[0][0])
