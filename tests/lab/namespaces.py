"""Network namespaces for the tests' networks (this package's labs and ``tests/interop/netns.py``):
running ``ip`` and the like, moving a thread into a namespace, stopping what runs there, and
sweeping away what crashed runs left.

Every namespace a test run makes is named ``PREFIX`` + the pid of the process that made it
(then, for some, ``-`` and a role or a count), so that :func:`remove_stale` can tell those of a
process that is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator

_CLONE_NEWNET = 0x40000000


def run(*argv: str) -> str:
    """Run ``argv``; its standard output. :class:`RuntimeError` with its error output when it
    fails."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace ``fd`` refers to."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def open_namespace(name: str) -> int:
    """A file descriptor of namespace ``name`` (``/run/netns/NAME``)."""
    return os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)


def current() -> int:
    """A file descriptor of the calling thread's network namespace."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Move the calling thread into namespace ``name``, and back to where it was at the end.

    Sockets the thread makes meanwhile, and processes and threads it starts, are inside.
    """
    home = current()
    try:
        target = open_namespace(name)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)


def pids_inside(name: str) -> list[int]:
    """The processes in namespace ``name``."""
    return [int(pid) for pid in run("ip", "netns", "pids", name).split()]


def kill_inside(name: str) -> None:
    """Kill every process in namespace ``name`` but this one (none, if it is gone)."""
    with contextlib.suppress(RuntimeError):
        for pid in pids_inside(name):
            if pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def delete(name: str) -> None:
    """Kill what runs in namespace ``name`` and delete it (and the links it holds), if it is
    there."""
    kill_inside(name)
    with contextlib.suppress(RuntimeError):
        run("ip", "netns", "del", name)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and wait for it; killed if it lingers past 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(prefix: str) -> None:
    """Delete the namespaces named ``prefix`` + a pid (and maybe ``-`` and more) whose process is
    gone, with whatever still runs in them: what crashed runs left."""
    for line in run("ip", "netns", "list").splitlines():
        name = line.split(maxsplit=1)[0] if line.strip() else ""
        owner = name.removeprefix(prefix).split("-")[0]
        if not name.startswith(prefix) or not owner.isdigit():
            continue
        if int(owner) == os.getpid() or _alive(int(owner)):
            continue
        delete(name)
