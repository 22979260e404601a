"""Whatever a caller waits on for a call returns or raises as soon as that call ends, however it
ends: a ``write()`` waiting for room in the send queue toward a server that stopped reading (its
process frozen with SIGSTOP, or its event loop blocked; keepalive off, so that nothing else
notices), and ``read()``, ``write()``, ``done_writing()``, ``initial_metadata()`` and the reply of
a call that waits for a server (``wait_for_ready``) or for the server's first word.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
import pytest_asyncio
from call_shapes import METHODS, SHAPES, invoke
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.node import Node
from p2prpc.rpc import (
    NO_RETRY,
    Cardinality,
    Channel,
    Handler,
    RpcError,
    ServicerContext,
    StatusCode,
    StreamUnaryMethod,
    UnaryUnaryMethod,
)
from p2prpc.testing import LOOPBACK, loopback_node, mesh
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
QUEUE = 64 * 1024  # the client's send queue toward a peer (max_send_queue)
MESSAGE = StringValue(value="x" * 16_000)
#: How long a woken wait may take: the loop's own latency on a loaded machine, far below what a
#: writer left waiting for the queue to drain takes (tens of seconds toward a frozen peer).
PROMPT = 2.0


@asynccontextmanager
async def sink_server(tracker_url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``sink_server.py`` in its own process; thawed and ended on the way out."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "sink_server.py"),
        tracker_url,
        "sink",
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
        yield process
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        await process.wait()


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[tuple[Node, str, asyncio.subprocess.Process]]:
    """A client (keepalive off, a small send queue) and the sink server it reaches."""
    async with TrackerServer(LOOPBACK, 0) as tracker, sink_server(tracker.url) as process:
        client = loopback_node([tracker.url], "sink", keepalive_interval=None, max_send_queue=QUEUE)
        async with client:
            server_id = await client.wait_for_server("t.Sink", timeout=30)
            yield client, server_id, process


async def blocked_writer(client: Node, server_id: str, call: Any) -> asyncio.Task[None]:
    """A task writing to ``call`` until a write waits for room in the full send queue; returned
    once it waits there."""
    channel = client.p2pt._channel_for(server_id)
    full = asyncio.Event()

    async def write() -> None:
        while True:
            if channel.queued_bytes + 2 * len(MESSAGE.value) > QUEUE:
                full.set()  # this write or the next waits for room (nothing yields till then)
            await call.write(MESSAGE)

    task = asyncio.ensure_future(write())
    waiting = asyncio.ensure_future(full.wait())
    await asyncio.wait([task, waiting], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    blocked = full.is_set() and not task.done()
    if not blocked:  # it waits elsewhere (the server's window?), or failed: not this test's case
        task.cancel()
    assert blocked, "the writer did not fill the send queue"
    return task


def take(client: Node, **kw: Any) -> Any:
    method = StreamUnaryMethod(
        Channel(client, retry_policy=NO_RETRY), "/t.Sink/Take", StringValue, StringValue
    )
    return method(**kw)


async def ended(task: asyncio.Task[None]) -> BaseException:
    """What ``task`` ended with, waiting at most :data:`PROMPT` seconds."""
    await asyncio.wait([task], timeout=PROMPT)
    finished = task.done()
    if not finished:
        task.cancel()
    assert finished, "the writer still waits for room, though its call is over"
    if task.cancelled():
        return asyncio.CancelledError()
    error = task.exception()
    assert error is not None
    return error


async def test_a_writer_waiting_for_room_raises_at_the_deadline(sink: Any) -> None:
    client, server_id, process = sink
    process.send_signal(signal.SIGSTOP)
    call = take(client, timeout=3)
    writer = await blocked_writer(client, server_id, call)
    half_close = asyncio.ensure_future(call.done_writing())  # waits behind the writer
    await asyncio.wait([writer], timeout=call.time_remaining())  # still waiting at the deadline
    error = await ended(writer)
    assert isinstance(error, RpcError) and error.code() is StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(half_close, PROMPT)  # returns, as grpc.aio's does once a call ended


async def test_a_writer_waiting_for_room_is_cancelled_with_its_call(sink: Any) -> None:
    client, server_id, process = sink
    process.send_signal(signal.SIGSTOP)
    call = take(client, timeout=60)
    writer = await blocked_writer(client, server_id, call)
    assert call.cancel()
    assert isinstance(await ended(writer), asyncio.CancelledError)
    assert await call.code() is StatusCode.CANCELLED


async def test_a_writer_waiting_for_room_hears_the_peer_is_lost(sink: Any) -> None:
    client, server_id, process = sink
    process.send_signal(signal.SIGSTOP)
    call = take(client, timeout=60)
    writer = await blocked_writer(client, server_id, call)
    for connection in client.p2pt.connections(server_id):
        client.p2pt.close_connection(server_id, connection)
    error = await ended(writer)
    assert isinstance(error, RpcError) and error.code() is StatusCode.UNAVAILABLE


async def test_a_writer_waiting_for_room_gets_the_status_the_server_ended_with(sink: Any) -> None:
    """The server's loop is blocked (it reads nothing) and then ends the call ABORTED at once:
    the writer raises that status, where it used to wait for the queue to drain and return as if
    its request had been sent."""
    client, server_id, _ = sink
    call = StreamUnaryMethod(
        Channel(client, retry_policy=NO_RETRY), "/t.Sink/Stall", StringValue, StringValue
    )(timeout=60)
    writer = await blocked_writer(client, server_id, call)
    await asyncio.wait([writer], timeout=30)  # the server's stall (3 s), and its status
    assert writer.done()
    error = writer.exception()
    assert isinstance(error, RpcError) and error.code() is StatusCode.ABORTED


# -- waiting for a server, or for its first word ----------------------------------------------


class PassThrough:
    async def intercept_call(self, details: Any, proceed: Any) -> Any:
        return await proceed(details)


class GrpcPassThrough(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    async def _pass(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)

    intercept_unary_unary = intercept_unary_stream = _pass  # type: ignore[assignment]
    intercept_stream_unary = intercept_stream_stream = _pass  # type: ignore[assignment]


INTERCEPTED = {"plain": (), "intercepted": (PassThrough,), "grpc": (GrpcPassThrough,)}


def nobody(node: Node, shape: str, intercepted: str, **kw: Any) -> Any:
    """A call of ``shape`` to a service no peer serves, waiting for one."""
    channel = Channel(node, interceptors=[kind() for kind in INTERCEPTED[intercepted]])
    method = METHODS[shape](channel, "/t.Nobody/Call", StringValue, StringValue)
    return invoke(method, shape, StringValue(value="x"), wait_for_ready=True, **kw)


async def waits(call: Any, shape: str) -> dict[str, asyncio.Future[Any]]:
    """Every wait a caller may be in on ``call``, each in a task of its own, once all wait."""
    awaitables: dict[str, Awaitable[Any]] = {
        "initial_metadata": call.initial_metadata(),
        "wait_for_connection": call.wait_for_connection(),
    }
    if shape in ("unary_stream", "stream_stream"):
        awaitables["read"] = call.read()
    else:
        awaitables["reply"] = call
    if shape in ("stream_unary", "stream_stream"):
        awaitables["write"] = call.write(StringValue(value="w"))
        awaitables["done_writing"] = call.done_writing()
    entered: list[str] = []
    all_in = asyncio.Event()

    async def wait(name: str, awaitable: Awaitable[Any]) -> Any:
        entered.append(name)
        if len(entered) == len(awaitables):
            all_in.set()
        return await awaitable  # each goes on until it waits, before the test does

    tasks = {name: asyncio.ensure_future(wait(name, a)) for name, a in awaitables.items()}
    await all_in.wait()
    return tasks


@pytest.mark.parametrize("intercepted", list(INTERCEPTED))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("end", ["cancel", "deadline"])
async def test_every_wait_on_a_call_waiting_for_a_server_ends_with_it(
    shape: str, end: str, intercepted: str
) -> None:
    async with mesh(1) as m:
        node = m.nodes[0]
        call = nobody(node, shape, intercepted, timeout=0.5 if end == "deadline" else None)
        pending = await waits(call, shape)
        assert not any(f.done() for f in pending.values())
        if end == "cancel":
            assert call.cancel()
        done, _ = await asyncio.wait(pending.values(), timeout=PROMPT + 0.5)
        assert set(done) == set(pending.values()), [k for k, f in pending.items() if not f.done()]
        code = StatusCode.CANCELLED if end == "cancel" else StatusCode.DEADLINE_EXCEEDED
        assert await call.code() is code
        for name, future in pending.items():
            if name in ("initial_metadata", "done_writing"):
                assert future.exception() is None  # they return, as grpc.aio's do
            elif end == "cancel":
                assert future.cancelled() or isinstance(
                    future.exception(), asyncio.CancelledError | asyncio.InvalidStateError
                ), name
            else:
                error = future.exception()
                assert isinstance(error, RpcError | asyncio.InvalidStateError), name
                if isinstance(error, RpcError):
                    assert error.code() is code


class Silent:
    """Sends nothing until told: ``ends`` ends the call with the status it is given."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.ends: asyncio.Future[StatusCode] | None = None

    async def Wait(self, request: StringValue, context: ServicerContext) -> StringValue:
        self.ends = asyncio.get_running_loop().create_future()
        self.started.set()
        code = await self.ends
        await context.abort(code, "ended by the server")


@pytest.mark.parametrize("end", ["cancel", "deadline", "status"])
async def test_initial_metadata_returns_when_the_call_ends_before_any(end: str) -> None:
    silent = Silent()
    async with mesh(2) as m:
        server, client = m.nodes
        server.add_service(
            "t.Silent",
            {
                "/t.Silent/Wait": Handler(
                    silent.Wait, Cardinality.UNARY_UNARY, StringValue, StringValue
                )
            },
        )
        await client.wait_for_server("t.Silent", timeout=10)
        method = UnaryUnaryMethod(client, "/t.Silent/Wait", StringValue, StringValue)
        call = method(StringValue(), timeout=1 if end == "deadline" else None)
        metadata = asyncio.ensure_future(call.initial_metadata())
        await asyncio.wait_for(silent.started.wait(), 10)
        assert not metadata.done()
        if end == "cancel":
            call.cancel()
        elif end == "status":
            assert silent.ends is not None
            silent.ends.set_result(StatusCode.ABORTED)
        assert tuple(await asyncio.wait_for(metadata, PROMPT + 1)) == ()
        expected = {
            "cancel": StatusCode.CANCELLED,
            "deadline": StatusCode.DEADLINE_EXCEEDED,
            "status": StatusCode.ABORTED,
        }[end]
        assert await call.code() is expected
