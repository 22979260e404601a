"""What a grpc.aio user expects of calls, errors, metadata, retries and shutdown, over real WebRTC.

Each test pins one behaviour that grpc.aio (grpcio 1.7x/1.8x ``grpc/aio/_call.py``) has, and that
p2prpc keeps where it uses gRPC's names.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2
from google.protobuf.wrappers_pb2 import StringValue
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from p2prpc.errors import InvalidMetadata, RpcError
from p2prpc.node import Node
from p2prpc.rpc import (
    EOF,
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    StatusCode,
    StreamStreamMethod,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

SERVICE = "parity.Service"
S = StringValue


def route(name: str) -> str:
    return f"/{SERVICE}/{name}"


class Servicer:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.seen: list[tuple[str, str | bytes]] = []
        self.done_contexts: list[ServicerContext] = []

    async def Echo(self, request: S, context: ServicerContext) -> S:
        self.seen = list(context.invocation_metadata())
        await context.send_initial_metadata([("greeting", "hi"), ("raw-bin", b"\x00\xff")])
        context.set_trailing_metadata([("served-by", "me"), ("served-by", "again")])
        context.add_done_callback(self.done_contexts.append)
        return S(value=request.value)

    async def Watch(self, request: S, context: ServicerContext) -> AsyncIterator[S]:
        self.started.set()
        try:
            yield S(value="event")
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()

    async def Slow(self, request: S, context: ServicerContext) -> S:
        self.started.set()
        try:
            await self.release.wait()
        finally:
            if context.cancelled():
                self.cancelled.set()
        return S(value="finished")

    async def Rich(self, request: S, context: ServicerContext) -> S:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason="QUOTA", domain="example.org"))
        status = status_pb2.Status(code=8, message="out of quota", details=[detail])
        grpc_status = rpc_status.to_status(status)
        await context.abort(grpc_status.code, grpc_status.details, grpc_status.trailing_metadata)

    async def SetCode(self, request: S, context: ServicerContext) -> S:
        context.set_code(StatusCode.FAILED_PRECONDITION)
        context.set_details("not yet")
        return S()

    async def Upper(self, requests: AsyncIterator[S], context: ServicerContext) -> AsyncIterator[S]:
        async for request in requests:
            yield S(value=request.value.upper())

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        unary, server, bidi = (
            Cardinality.UNARY_UNARY,
            Cardinality.UNARY_STREAM,
            Cardinality.STREAM_STREAM,
        )
        table = {
            "Echo": (self.Echo, unary),
            "Watch": (self.Watch, server),
            "Slow": (self.Slow, unary),
            "Rich": (self.Rich, unary),
            "SetCode": (self.SetCode, unary),
            "Upper": (self.Upper, bidi),
        }
        return {route(n): Handler(f, shape, S, S) for n, (f, shape) in table.items()}


class Stub:
    def __init__(self, channel: Any) -> None:
        self.Echo = UnaryUnaryMethod(channel, route("Echo"), S, S)
        self.Watch = UnaryStreamMethod(channel, route("Watch"), S, S)
        self.Slow = UnaryUnaryMethod(channel, route("Slow"), S, S)
        self.Rich = UnaryUnaryMethod(channel, route("Rich"), S, S)
        self.SetCode = UnaryUnaryMethod(channel, route("SetCode"), S, S)
        self.Upper = StreamStreamMethod(channel, route("Upper"), S, S)
        self.Nobody = UnaryUnaryMethod(channel, "/parity.Nobody/Call", S, S)


async def served(binary: bool = True) -> Any:
    return mesh(2, binary=binary)


@pytest.fixture(params=[True, False], ids=["binary", "json"])
def binary(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def start(m: Any) -> tuple[Node, Node, Servicer]:
    server, client = m.nodes
    servicer = Servicer()
    server.add_service(SERVICE, servicer.handlers())
    await client.wait_for_server(SERVICE, timeout=10)
    return server, client, servicer


async def test_a_streaming_call_starts_when_invoked_and_cancels_before_any_read(
    binary: bool,
) -> None:
    async with mesh(2, binary=binary) as m:
        _, client, servicer = await start(m)
        call = Stub(client).Watch(S())
        await asyncio.wait_for(servicer.started.wait(), 10)  # no read yet: it runs
        assert not call.done()
        assert call.cancel() is True
        await asyncio.wait_for(servicer.cancelled.wait(), 10)
        assert call.cancelled() and call.done()
        assert await call.code() is StatusCode.CANCELLED
        with pytest.raises(asyncio.CancelledError):
            await call.read()


async def test_an_event_sent_before_the_first_read_is_not_missed(binary: bool) -> None:
    async with mesh(2, binary=binary) as m:
        _, client, servicer = await start(m)
        call = Stub(client).Watch(S(), timeout=30)
        await asyncio.wait_for(servicer.started.wait(), 10)
        assert await asyncio.wait_for(call.read(), 10) == S(value="event")
        call.cancel()


async def test_a_unary_call_object_answers_like_grpc_aio(binary: bool) -> None:
    async with mesh(2, binary=binary) as m:
        _, client, servicer = await start(m)
        finished: list[Any] = []
        call = Stub(client).Echo(S(value="x"), timeout=30, metadata=[("k", "1"), ("k", "2")])
        call.add_done_callback(finished.append)
        assert 0 < (call.time_remaining() or 0) <= 30
        assert await call == S(value="x")
        assert call.done() and not call.cancelled() and finished == [call]
        assert await call.code() is StatusCode.OK
        assert await call.details() == ""
        initial = await call.initial_metadata()
        assert isinstance(initial, grpc.aio.Metadata)
        assert list(initial) == [("greeting", "hi"), ("raw-bin", b"\x00\xff")]
        trailing = await call.trailing_metadata()
        assert trailing.get_all("served-by") == ["me", "again"]
        assert servicer.seen == [("k", "1"), ("k", "2")]
        assert [c.done() for c in servicer.done_contexts] == [True]
        assert call.cancel() is False  # it has ended
        assert Stub(client).Echo(S()).time_remaining() is None


async def test_rpc_error_has_grpc_aio_methods_and_rich_details(binary: bool) -> None:
    async with mesh(2, binary=binary) as m:
        _, client, _ = await start(m)
        with pytest.raises(RpcError) as caught:
            await Stub(client).Rich(S())
        error = caught.value
        assert isinstance(error, grpc.aio.AioRpcError) and isinstance(error, grpc.RpcError)
        assert error.code() is StatusCode.RESOURCE_EXHAUSTED is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == "out of quota"
        assert "RESOURCE_EXHAUSTED" in error.debug_error_string()
        assert isinstance(error.initial_metadata(), grpc.aio.Metadata)
        rich = rpc_status.from_call(error)
        assert rich is not None and rich.message == "out of quota"
        info = error_details_pb2.ErrorInfo()
        assert rich.details[0].Unpack(info) and info.reason == "QUOTA"

        call = Stub(client).SetCode(S())
        with pytest.raises(RpcError) as caught:
            await call
        assert caught.value.code() is StatusCode.FAILED_PRECONDITION
        assert (await call.code(), await call.details()) == (
            StatusCode.FAILED_PRECONDITION,
            "not yet",
        )


async def test_metadata_follows_grpc_rules() -> None:
    async with mesh(2) as m:
        _, client, servicer = await start(m)
        stub = Stub(client)
        for bad in ([("X-Trace", "T")], [("trace-bin", "text")], [("trace", b"bytes")], [("", "")]):
            with pytest.raises(InvalidMetadata):
                stub.Echo(S(), metadata=bad)
        await stub.Echo(S(), metadata=[("trace-bin", b"\x00\x01"), ("a", "1"), ("a", "2")])
        assert servicer.seen == [("trace-bin", b"\x00\x01"), ("a", "1"), ("a", "2")]


async def test_a_failed_retried_call_is_a_plain_rpc_error_counting_attempts() -> None:
    async with mesh(2) as m:
        _, client, _ = await start(m)
        policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
        with pytest.raises(RpcError) as caught:
            await Stub(Channel(client, retry_policy=policy)).Nobody(S(), timeout=10)
        assert type(caught.value) is RpcError
        assert caught.value.code() is StatusCode.UNAVAILABLE
        assert caught.value.trailing_metadata().get_all("grpc-previous-rpc-attempts") == ["2"]
        assert not hasattr(caught.value, "may_have_run")


async def test_writing_to_a_finished_call_is_an_invalid_state(binary: bool) -> None:
    async with mesh(2, binary=binary) as m:
        _, client, _ = await start(m)
        call = Stub(client).Upper()
        await call.write(S(value="a"))
        await call.done_writing()
        with pytest.raises(asyncio.InvalidStateError):
            await call.write(S(value="late"))  # half-closed
        assert await call.read() == S(value="A")
        assert await call.read() is EOF
        assert await call.code() is StatusCode.OK
        with pytest.raises(asyncio.InvalidStateError):
            await call.write(S(value="after"))  # finished OK: never an RpcError with OK


async def test_stop_with_grace_refuses_new_calls_and_lets_calls_in_progress_finish() -> None:
    async with mesh(2) as m:
        server, client, servicer = await start(m)
        once = Stub(Channel(client, retry_policy=RetryPolicy(max_attempts=1)))
        in_progress = once.Slow(S(), timeout=30)
        await asyncio.wait_for(servicer.started.wait(), 10)
        stopping = asyncio.ensure_future(server.stop(grace=20))
        await client.wait_until(lambda: not client.servers_of(SERVICE), 10)  # peers were told
        with pytest.raises(RpcError) as refused:
            await once.Echo(S(), timeout=10)
        assert refused.value.code() is StatusCode.UNAVAILABLE
        raw = Stub(client.to(server.peer_id))  # even when asked by id, it refuses
        with pytest.raises(RpcError) as refused:
            await raw.Echo(S(), timeout=10)
        assert refused.value.code() is StatusCode.UNAVAILABLE
        assert not stopping.done()  # waiting for the call in progress
        servicer.release.set()
        assert await in_progress == S(value="finished")
        await asyncio.wait_for(stopping, 10)


async def test_stop_cancels_what_outlives_the_grace() -> None:
    async with mesh(2) as m:
        server, client, servicer = await start(m)
        once = Stub(Channel(client, retry_policy=RetryPolicy(max_attempts=1)))
        in_progress = once.Slow(S(), timeout=30)
        await asyncio.wait_for(servicer.started.wait(), 10)
        await server.stop(grace=0.2)
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(in_progress, 10)
        assert caught.value.code() is StatusCode.UNAVAILABLE
        assert servicer.cancelled.is_set()


async def test_a_peer_is_named_by_a_unique_prefix_of_its_id() -> None:
    async with mesh(2) as m:
        server, client, _ = await start(m)
        assert (await Stub(client.to(server.peer_id[:8])).Echo(S(value="p"))).value == "p"
        with pytest.raises(RpcError) as caught:
            await Stub(client.to("not-a-peer")).Echo(S(), timeout=5)
        assert caught.value.code() is StatusCode.UNAVAILABLE
        assert "not-a-peer" in caught.value.details()  # the error names what was asked for


async def test_a_stream_that_fails_before_it_starts_leaves_no_unretrieved_error() -> None:
    import gc

    async with mesh(2) as m:
        _, client, _ = await start(m)
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: reported.append(context))
        try:
            call = UnaryStreamMethod(client, "/parity.Nobody/Watch", S, S)(S())
            with pytest.raises(RpcError) as caught:
                await call.read()
            assert caught.value.code() is StatusCode.UNAVAILABLE
            del call
            gc.collect()
            await asyncio.sleep(0)
            assert reported == []  # no "Task exception was never retrieved"
        finally:
            loop.set_exception_handler(None)
