"""A client frozen mid-stream (SIGSTOP) and resumed: its call ends with the connection the server
dropped, even when, on resuming, it reaches the server again on a new connection first.

While it is frozen its UDP buffers fill with the stream, so the server's close is lost: only the
client's own keepalive, which watches each connection apart, can tell it that connection died."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.rpc import Cardinality, Handler, ServicerContext
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

CLIENT = """
import asyncio, sys, time
from google.protobuf.wrappers_pb2 import StringValue
from p2prpc.errors import RpcError
from p2prpc.rpc import UnaryStreamMethod
from p2prpc.testing import loopback_node

GRACE = 1.0

async def main() -> None:
    node = loopback_node(
        [sys.argv[1]], "frozen-app", udp_buffer_size=int(sys.argv[2]), keepalive_grace=GRACE
    )
    await node.start()
    await node.wait_for_server("t.Feed", 30)
    call = UnaryStreamMethod(node, "/t.Feed/Follow", StringValue, StringValue)(
        StringValue(), timeout=60
    )
    await call.read()
    print("reading", flush=True)
    try:
        while True:
            await call.read()
    except RpcError as e:
        print("ended", e.code().name, flush=True)
    await node.close()

asyncio.run(main())
"""


class Feed:
    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def Follow(self, request: StringValue, context: ServicerContext) -> AsyncIterator[Any]:
        try:
            while True:  # as fast as the client takes it: its socket buffers fill when frozen
                yield StringValue(value="x" * 16000)
        finally:  # cancelled, or closed while the server waited for room to send
            self.cancelled.set()


async def test_a_resumed_client_learns_its_stream_ended_long_before_the_deadline() -> None:
    feed = Feed()
    async with TrackerServer("127.0.0.1", 0) as tracker:
        # A short grace: a silent peer is closed a second after it turns suspect (no ICE
        # restart, which a frozen peer never answers: a connection being restarted is kept for
        # ice_restart_timeout).
        server = loopback_node(
            [tracker.url], "frozen-app", keepalive_grace=1.0, ice_restart_timeout=0
        )
        server.add_service(
            "t.Feed",
            {
                "/t.Feed/Follow": Handler(
                    feed.Follow, Cardinality.UNARY_STREAM, StringValue, StringValue
                )
            },
        )
        await server.start()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            tracker.url,
            "8192",  # a small receive buffer: the server's close is lost among the stream's data
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert child.stdout is not None
        try:
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            assert line.strip() == b"reading"
            os.kill(child.pid, signal.SIGSTOP)
            # The server's keepalive closes the silent client (suspect, then the grace passes)
            # and cancels its stream.
            await asyncio.wait_for(feed.cancelled.wait(), 20)
            os.kill(child.pid, signal.SIGCONT)
            resumed = asyncio.get_running_loop().time()
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            waited = asyncio.get_running_loop().time() - resumed
            assert line.split() == [b"ended", b"UNAVAILABLE"]
            assert waited < 15  # the call's deadline was 60 s away
            assert await asyncio.wait_for(child.wait(), 20) == 0
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
            await server.close()
