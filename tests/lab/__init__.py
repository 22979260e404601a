"""Emulated networks for tests and benchmarks: a long path between two addresses of one machine.

A :class:`LongPath` is a network namespace of its own holding only ``lo``, in which the UDP
packets between two loopback addresses, :data:`A` and :data:`B`, cross a path with a fixed
one-way delay and random loss; everything else in the namespace (a tracker on 127.0.0.1, TCP)
goes straight through. WebRTC peers whose ICE host candidates are pinned one to ``A`` and one to
``B`` talk over that path, and only over it.

How (this kernel has no ``sch_netem``): iptables in the namespace's INPUT chain, where a packet
arrives (a drop on the way out would be reported to its sender, as no real path does), drops
each UDP packet from ``A`` to ``B`` (and back) with probability ``loss`` (``-m statistic``),
then hands it to an NFQUEUE, one per direction; ``nfdelay`` (``tests/lab/nfdelay.c``, built
by ``make lab`` into ``build/nfdelay``) holds each queued packet for the direction's delay and
accepts it. With ``rate`` set, ``tc tbf`` limits what ``lo`` carries in the namespace.

Nothing leaves the machine: the namespace has no interface but ``lo``. Enter it from the thread
that makes the sockets (:meth:`LongPath.inside`: the event loop's thread, with no executor
thread making sockets), or start processes in it (:meth:`LongPath.command`); processes started
by a thread inside inherit the namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .namespaces import delete, inside, remove_stale, run, stop

ROOT = Path(__file__).resolve().parents[2]
"""The repository."""

NFDELAY = ROOT / "build" / "nfdelay"
"""The delay program (``make lab``)."""

A = "127.0.0.2"
"""One end of the path (an address of ``lo``, so only meaningful inside the namespace)."""
B = "127.0.0.3"
"""The other end."""

PREFIX = "p2prpc-lab-"
"""Namespaces named PREFIX + pid + "-" + a count belong to that process."""

_QUEUES = (0, 1)  # A → B, B → A
_count = iter(range(1, 1 << 30))
_count_lock = threading.Lock()


def unavailable_reason() -> str | None:
    """Why this machine cannot host a long path, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "a network namespace and iptables rules need root"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("tc", "iproute2")):
        if shutil.which(tool) is None:
            return f"`{tool}` ({package}) is not installed: run `make apt`"
    if not os.access(NFDELAY, os.X_OK):
        return f"{NFDELAY.relative_to(ROOT)} is not built: run `make lab`"
    return None


def _cut_rule(source: str, target: str) -> str:
    return f"-p udp -s {source} -d {target} -m comment --comment cut -j DROP"


@dataclass
class LongPath:
    """A path between :data:`A` and :data:`B` with ``one_way`` seconds of delay each way (so a
    round trip of twice that) and ``loss``, the probability that each UDP packet is dropped, in
    each direction. ``rate``: a ``tc`` rate (``"20mbit"``) for everything ``lo`` carries in the
    namespace, or None for none. Use as a context manager (:meth:`open`, :meth:`close`)."""

    one_way: float
    loss: float = 0.0
    rate: str | None = None
    name: str = field(default="")
    _delay: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            with _count_lock:
                self.name = f"{PREFIX}{os.getpid()}-{next(_count)}"
        if not 0 <= self.loss < 1 or self.one_way < 0:
            raise ValueError("loss is a probability below 1, one_way seconds not negative")

    @property
    def round_trip(self) -> float:
        """Seconds a packet and its answer spend on the path."""
        return 2 * self.one_way

    def command(self, *argv: str) -> list[str]:
        """``argv`` as a command that runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def _in(self, *argv: str) -> str:
        return run(*self.command(*argv))

    def open(self) -> LongPath:
        """Make the namespace, its rules and the delay program; returns once packets flow."""
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"no long path on this machine: {reason}")
        remove_stale(PREFIX)
        run("ip", "netns", "add", self.name)
        try:
            run("ip", "-n", self.name, "link", "set", "lo", "up")
            for queue, (source, target) in zip(_QUEUES, ((A, B), (B, A)), strict=True):
                rule = f"iptables -A INPUT -p udp -s {source} -d {target}"
                if self.loss > 0:
                    chance = f"-m statistic --mode random --probability {self.loss}"
                    self._in(*f"{rule} {chance} -j DROP".split())
                if self.one_way > 0:
                    self._in(*f"{rule} -j NFQUEUE --queue-num {queue}".split())
            if self.rate is not None:
                limit = f"rate {self.rate} burst 256kb latency 1s"
                self._in(*f"tc qdisc add dev lo root tbf {limit}".split())
            if self.one_way > 0:
                micros = round(self.one_way * 1e6)
                self._delay = subprocess.Popen(
                    self.command(str(NFDELAY), *(f"{q}:{micros}" for q in _QUEUES)),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                assert self._delay.stdout is not None
                if self._delay.stdout.readline().strip() != b"ready":
                    error = self._delay.communicate(timeout=5)[1].decode(errors="replace")
                    raise RuntimeError(f"nfdelay did not start: {error.strip()}")
        except BaseException:
            self.close()
            raise
        return self

    def cut(self) -> None:
        """Drop every UDP packet between the two ends, both ways, until :meth:`restore`."""
        for source, target in ((A, B), (B, A)):
            self._in(*f"iptables -I INPUT 1 {_cut_rule(source, target)}".split())

    def restore(self) -> None:
        """Undo :meth:`cut`."""
        for source, target in ((A, B), (B, A)):
            self._in(*f"iptables -D INPUT {_cut_rule(source, target)}".split())

    def counters(self) -> dict[str, int]:
        """Packets each rule saw so far: ``drop A>B``, ``delay A>B``, and back."""
        found: dict[str, int] = {}
        lines = self._in("iptables", "-L", "INPUT", "-v", "-n", "-x").splitlines()[2:]
        for line in lines:
            parts = line.split()
            if len(parts) < 9 or parts[2] not in ("DROP", "NFQUEUE"):
                continue
            way = "A>B" if parts[7] == A else "B>A"
            found[f"{'drop' if parts[2] == 'DROP' else 'delay'} {way}"] = int(parts[0])
        return found

    def close(self) -> None:
        """Stop the delay program and delete the namespace (idempotent)."""
        delay, self._delay = self._delay, None
        if delay is not None:
            stop(delay)
            for pipe in (delay.stdout, delay.stderr):
                if pipe is not None:
                    pipe.close()
        delete(self.name)

    def __enter__(self) -> LongPath:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def inside(self) -> contextlib.AbstractContextManager[None]:
        """Move the calling thread into the namespace, and back to where it was at the end.

        Sockets the thread makes meanwhile, and processes and threads it starts, are inside.
        """
        return inside(self.name)
