"""The orchestrator's side of the benchmark processes: workers, trackers, the test namespace.

A :class:`Worker` is one peer process speaking JSON lines: the orchestrator writes
``{"id", "cmd", "args"}`` to its stdin, the worker answers ``{"id", "ok", "value" | "error"}`` on
its stdout. Python workers run ``python -m bench.worker``; JavaScript ones run
``bench/js/p2pt-peer.mjs`` in node, which speaks the same protocol. Each process's stderr goes to
its own log file, whose end is quoted when the process fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from . import profile, udp

ROOT = Path(__file__).resolve().parent.parent
"""The repository: workers run with it as their working directory and first import path."""

JS_DIR = ROOT / "tests" / "interop" / "js"
"""The npm package with P2PT, bittorrent-tracker and wrtc that the interop tests use."""

JS_PEER = Path(__file__).resolve().parent / "js" / "p2pt-peer.mjs"

LINE_LIMIT = 64 * 2**20
"""The longest stdout line a worker may print (results carry every sample)."""


class WorkerError(RuntimeError):
    """A worker failed a command, or went away."""


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


class Worker:
    """One peer process; ``await call("rpc.join", urls=[...])`` runs a command in it."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log_dir / f"{name}.log"
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._drops: udp.DropWatch | None = None
        self._watching: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._gone: WorkerError | None = None

    @classmethod
    def python(cls, name: str, log_dir: Path, profile_dir: Path | None = None) -> Worker:
        """A ``python -m bench.worker`` process (sampled by py-spy into ``profile_dir``)."""
        argv = [sys.executable, "-m", "bench.worker"]
        if profile_dir is not None:
            profile_dir.mkdir(parents=True, exist_ok=True)
            argv = profile.wrap(argv, profile_dir / f"{name}.txt")
        return cls(name, argv, log_dir)

    @classmethod
    def node(cls, name: str, log_dir: Path) -> Worker:
        return cls(name, ["node", str(JS_PEER), str(JS_DIR)], log_dir)

    async def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        with self.log.open("wb") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                cwd=ROOT,
                env=env,
                limit=LINE_LIMIT,
            )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._drops = udp.DropWatch(self._process.pid)
        self._watching = asyncio.get_running_loop().create_task(self._watch(self._drops))

    async def _watch(self, drops: udp.DropWatch, interval: float = 1.0) -> None:
        while True:
            drops.poll()
            await asyncio.sleep(interval)

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        while True:
            line = await stdout.readline()
            if not line:
                break
            if not line.startswith(b"{"):
                continue  # a library printing to stdout: not ours
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            future = self._pending.pop(reply.get("id"), None)
            if future is None or future.done():
                continue
            if reply.get("ok"):
                future.set_result(reply.get("value"))
            else:
                future.set_exception(WorkerError(f"{self.name}: {reply.get('error')}"))
        code = await self._process.wait()
        self._fail(WorkerError(f"{self.name} exited ({code}):\n{_tail(self.log)}"))

    def _fail(self, error: WorkerError) -> None:
        self._gone = error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    async def call(self, cmd: str, *, timeout: float = 120.0, **args: Any) -> Any:
        """Run ``cmd`` with ``args`` in the worker and return its value.

        ``timeout`` is how long to wait for the answer; it is not passed to the command. Raises
        :class:`WorkerError` when the command failed, the wait timed out or the worker is gone.
        """
        if self._gone is not None:
            raise self._gone
        process = self._process
        if process is None or process.stdin is None:
            raise WorkerError(f"{self.name} is not started")
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        process.stdin.write(json.dumps({"id": ident, "cmd": cmd, "args": args}).encode() + b"\n")
        await process.stdin.drain()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(ident, None)
            raise WorkerError(
                f"{self.name}: {cmd} took more than {timeout} s\n{_tail(self.log)}"
            ) from None

    def udp_drops(self) -> int | None:
        """Datagrams dropped on the way in to this process's UDP sockets so far (None: unknown)."""
        if self._drops is None:
            return None
        if self._process is not None and self._process.returncode is None:
            self._drops.poll()
        return self._drops.total

    async def close(self, grace: float = 10.0) -> None:
        """Close stdin (the worker cleans up and exits), then terminate or kill it if it lingers."""
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), grace)
                break
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
        if self._reader is not None:
            await self._reader
        self._process = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Places(Protocol):
    """Where workers write: their logs, and their py-spy samples (None: not sampled); and where
    the datagrams their UDP sockets dropped are counted, when they close."""

    @property
    def log_dir(self) -> Path: ...

    @property
    def profile_dir(self) -> Path | None: ...

    def count_udp_drops(self, drops: int, *, node: bool) -> None: ...


@asynccontextmanager
async def workers(
    names: Sequence[str], places: Places, *, node: bool = False
) -> AsyncIterator[list[Worker]]:
    """Start one worker per name (Python, or node with ``node``), all closed at the end."""
    log_dir = places.log_dir
    started = [
        Worker.node(n, log_dir) if node else Worker.python(n, log_dir, places.profile_dir)
        for n in names
    ]
    try:
        await asyncio.gather(*(w.start() for w in started))
        yield started
    finally:
        places.count_udp_drops(sum(w.udp_drops() or 0 for w in started), node=node)
        await asyncio.gather(*(w.close() for w in started), return_exceptions=True)


@asynccontextmanager
async def embedded_tracker(
    places: Places, name: str = "tracker", host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """The embedded tracker (as ``p2prpc tracker`` runs it) in a process; yields its URL."""
    async with workers([name], places) as (worker,):
        yield await worker.call("tracker.start", host=host)


# The interop tests' helpers (tests/interop) are imported where they are used: only the
# orchestrator needs them, and only for the rows with JavaScript peers.


@asynccontextmanager
async def js_tracker(host: str = "127.0.0.1") -> AsyncIterator[str]:
    """The npm bittorrent-tracker (the interop tests' ``JsTracker``); yields its announce URL."""
    from tests.interop.harness import JsTracker

    async with JsTracker(host) as tracker:
        yield tracker.url


def js_unavailable_reason() -> str | None:
    """Why the JavaScript rows cannot run here (no namespace, no node, no npm install), or None."""
    from tests.interop import netns

    reason = netns.unavailable_reason()
    if reason is not None:
        return reason
    if not (JS_DIR / "node_modules" / "p2pt").is_dir():
        return f"the JavaScript peers are not installed in {JS_DIR.relative_to(ROOT)}: make npm"
    if shutil.which("node") is None:
        return "node is not installed"
    return None


@contextlib.contextmanager
def namespace() -> Iterator[tuple[str, str]]:
    """Move this (main) thread into a fresh network namespace; yields its two veth addresses.

    Call it with no event loop running: processes started inside inherit the namespace, and so
    do threads created inside (see ``tests/interop/netns.py``).
    """
    from tests.interop import netns

    network = netns.enter()
    try:
        yield network.addresses
    finally:
        netns.leave()
