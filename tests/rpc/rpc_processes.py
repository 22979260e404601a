"""A serving node in a process of its own, which a test can freeze (SIGSTOP) so that it dies
without a word: its sockets stay open and nothing tells its peers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def example_server(
    tracker_url: str, identifier: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``examples/server.py`` (Greeter, RouteGuide) in its own process; ended (and thawed, if
    frozen) on the way out."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "server.py"),
        "--tracker",
        tracker_url,
        "--identifier",
        identifier,
        env={**os.environ, "PYTHONPATH": str(ROOT / "generated")},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield server
    finally:
        server.send_signal(signal.SIGCONT)
        server.terminate()
        await server.wait()


@asynccontextmanager
async def blocking_server(
    tracker_url: str, identifier: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``blocking_server.py`` (a Greeter whose servicer can block its event loop) in its own
    process, with its peer id once it is ready; ended (and thawed, if frozen) on the way out."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "rpc" / "blocking_server.py"),
        tracker_url,
        identifier,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "generated"), str(ROOT)])},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 60)
        word, peer_id = line.decode().split()
        assert word == "ready", line
        yield server, peer_id
    finally:
        server.send_signal(signal.SIGCONT)
        server.terminate()
        await server.wait()
