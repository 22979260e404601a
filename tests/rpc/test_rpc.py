"""The RPC runtime between Python nodes over real WebRTC on loopback, in both envelope forms.

Services here are declared by hand with well-known message types, so the runtime is tested apart
from the code generator (tests/codegen covers the generated stubs).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.wrappers_pb2 import BytesValue, StringValue

from p2prpc.node import Node
from p2prpc.rpc import (
    EOF,
    Cardinality,
    Channel,
    ClientCallDetails,
    Handler,
    HandlerCallDetails,
    RetryPolicy,
    RpcError,
    ServicerContext,
    StatusCode,
    StreamStreamMethod,
    StreamUnaryMethod,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

SERVICE = "test.Echo"


def path(name: str) -> str:
    return f"/{SERVICE}/{name}"


class Echo:
    """A servicer written by hand; ``calls`` counts how often each method ran."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()
        self.seen_metadata: dict[str, str] = {}

    def count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def Say(self, request: StringValue, context: ServicerContext) -> StringValue:
        self.count("Say")
        self.seen_metadata = dict(context.invocation_metadata())
        context.set_trailing_metadata({"served-by": context.peer()[:8]})
        return StringValue(value=f"hello {request.value}")

    async def Count(
        self, request: StringValue, context: ServicerContext
    ) -> AsyncIterator[StringValue]:
        self.count("Count")
        for i in range(int(request.value)):
            yield StringValue(value=str(i))

    async def Join(
        self, requests: AsyncIterator[StringValue], context: ServicerContext
    ) -> StringValue:
        self.count("Join")
        return StringValue(value=",".join([r.value async for r in requests]))

    async def Upper(
        self, requests: AsyncIterator[StringValue], context: ServicerContext
    ) -> AsyncIterator[StringValue]:
        self.count("Upper")
        async for request in requests:
            yield StringValue(value=request.value.upper())

    async def Hang(self, request: StringValue, context: ServicerContext) -> StringValue:
        """Runs until cancelled (by the deadline, the client or the peer going away)."""
        self.count("Hang")
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()
        raise AssertionError("unreachable")

    async def HangStream(
        self, request: StringValue, context: ServicerContext
    ) -> AsyncIterator[StringValue]:
        self.count("HangStream")
        yield StringValue(value="first")
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()

    async def Abort(self, request: StringValue, context: ServicerContext) -> StringValue:
        await context.abort(StatusCode.NOT_FOUND, f"no {request.value}", {"hint": "elsewhere"})

    async def Crash(self, request: StringValue, context: ServicerContext) -> StringValue:
        raise ZeroDivisionError("boom")

    async def SelfCancel(self, request: StringValue, context: ServicerContext) -> StringValue:
        """Raises CancelledError itself, as a cancelled inner task or await would."""
        inner = asyncio.ensure_future(asyncio.Event().wait())
        inner.cancel()
        await inner
        raise AssertionError("unreachable")

    async def SelfCancelStream(
        self, request: StringValue, context: ServicerContext
    ) -> AsyncIterator[StringValue]:
        yield StringValue(value="first")
        raise asyncio.CancelledError()

    async def OwnTimeout(self, request: StringValue, context: ServicerContext) -> StringValue:
        """Raises TimeoutError of its own: not the call's deadline."""
        async with asyncio.timeout(0):
            await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def Big(self, request: BytesValue, context: ServicerContext) -> BytesValue:
        return BytesValue(value=request.value * 2)

    def handlers(self, *, idempotent: bool = False) -> dict[str, Handler[Any, Any]]:
        unary, server, client, bidi = (
            Cardinality.UNARY_UNARY,
            Cardinality.UNARY_STREAM,
            Cardinality.STREAM_UNARY,
            Cardinality.STREAM_STREAM,
        )
        s = StringValue
        table: dict[str, tuple[Callable[..., Any], Cardinality, type[Any]]] = {
            "Say": (self.Say, unary, s),
            "Count": (self.Count, server, s),
            "Join": (self.Join, client, s),
            "Upper": (self.Upper, bidi, s),
            "Hang": (self.Hang, unary, s),
            "HangStream": (self.HangStream, server, s),
            "Abort": (self.Abort, unary, s),
            "Crash": (self.Crash, unary, s),
            "SelfCancel": (self.SelfCancel, unary, s),
            "SelfCancelStream": (self.SelfCancelStream, server, s),
            "OwnTimeout": (self.OwnTimeout, unary, s),
            "Big": (self.Big, unary, BytesValue),
        }
        return {
            path(name): Handler(func, shape, t, t, idempotent=idempotent)
            for name, (func, shape, t) in table.items()
        }


class Stub:
    def __init__(self, channel: Any) -> None:
        s = StringValue
        self.Say = UnaryUnaryMethod(channel, path("Say"), s, s)
        self.SayIdempotent = UnaryUnaryMethod(channel, path("Say"), s, s, idempotent=True)
        self.Count = UnaryStreamMethod(channel, path("Count"), s, s)
        self.Join = StreamUnaryMethod(channel, path("Join"), s, s)
        self.Upper = StreamStreamMethod(channel, path("Upper"), s, s)
        self.Hang = UnaryUnaryMethod(channel, path("Hang"), s, s)
        self.HangIdempotent = UnaryUnaryMethod(channel, path("Hang"), s, s, idempotent=True)
        self.HangStream = UnaryStreamMethod(channel, path("HangStream"), s, s)
        self.Abort = UnaryUnaryMethod(channel, path("Abort"), s, s)
        self.Crash = UnaryUnaryMethod(channel, path("Crash"), s, s)
        self.SelfCancel = UnaryUnaryMethod(channel, path("SelfCancel"), s, s)
        self.SelfCancelStream = UnaryStreamMethod(channel, path("SelfCancelStream"), s, s)
        self.OwnTimeout = UnaryUnaryMethod(channel, path("OwnTimeout"), s, s)
        self.Big = UnaryUnaryMethod(channel, path("Big"), BytesValue, BytesValue)
        self.Missing = UnaryUnaryMethod(channel, path("Missing"), s, s)
        self.OtherService = UnaryUnaryMethod(channel, "/test.Nobody/Say", s, s)


@asynccontextmanager
async def served_pair(**kwargs: Any) -> AsyncIterator[tuple[Node, Node, Echo]]:
    """Two nodes; the first serves Echo: yields (server, client, echo)."""
    async with mesh(2, **kwargs) as m:
        server, client = m.nodes
        echo = Echo()
        server.add_service(SERVICE, echo.handlers())
        await client.wait_for_server(SERVICE, timeout=10)
        yield server, client, echo


@pytest_asyncio.fixture(params=[True, False], ids=["binary", "json"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Node, Node, Echo]]:
    async with served_pair(binary=request.param) as (server, client, echo):
        assert client.is_binary(server.peer_id) is request.param
        yield server, client, echo


async def test_unary(pair: tuple[Node, Node, Echo]) -> None:
    _, client, _ = pair
    reply = await Stub(client).Say(StringValue(value="world"), timeout=10)
    assert reply == StringValue(value="hello world")


async def test_server_streaming(pair: tuple[Node, Node, Echo]) -> None:
    _, client, _ = pair
    call = Stub(client).Count(StringValue(value="50"))
    assert [r.value async for r in call] == [str(i) for i in range(50)]
    assert await call.code() is StatusCode.OK


async def test_client_streaming(pair: tuple[Node, Node, Echo]) -> None:
    _, client, _ = pair

    async def words() -> AsyncIterator[StringValue]:
        for word in ("a", "b", "c"):
            yield StringValue(value=word)

    assert (await Stub(client).Join(words())).value == "a,b,c"
    assert (await Stub(client).Join([])).value == ""


async def test_bidirectional_streaming_with_writes(pair: tuple[Node, Node, Echo]) -> None:
    _, client, _ = pair
    call = Stub(client).Upper()
    answers = []
    for word in ("x", "y", "z"):
        await call.write(StringValue(value=word))
        answers.append(await call.read())
    await call.done_writing()
    assert await call.read() is EOF
    assert [a.value for a in answers if a is not None] == ["X", "Y", "Z"]


async def test_bidirectional_streaming_with_an_iterable(pair: tuple[Node, Node, Echo]) -> None:
    _, client, _ = pair
    call = Stub(client).Upper([StringValue(value=c) for c in "abc"])
    assert [r.value async for r in call] == ["A", "B", "C"]


async def test_metadata_and_trailers(pair: tuple[Node, Node, Echo]) -> None:
    _, client, echo = pair
    await Stub(client).Say(StringValue(value="m"), metadata={"user": "ada"})
    assert echo.seen_metadata == {"user": "ada"}
    call = Stub(client).Count(StringValue(value="1"))
    assert [r.value async for r in call] == ["0"]
    assert tuple(await call.trailing_metadata()) == ()


async def test_deadline_exceeded_on_both_sides(pair: tuple[Node, Node, Echo]) -> None:
    _, client, echo = pair
    with pytest.raises(RpcError) as caught:
        await Stub(client).Hang(StringValue(value="x"), timeout=0.3)
    assert caught.value.code() is StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(echo.cancelled.wait(), 5)  # the server stopped too


async def test_client_cancellation_reaches_the_server(pair: tuple[Node, Node, Echo]) -> None:
    _, client, echo = pair
    call = Stub(client).HangStream(StringValue(value="x"))
    assert (await call.read()) == StringValue(value="first")
    await asyncio.wait_for(echo.started.wait(), 5)
    assert call.cancel()
    await asyncio.wait_for(echo.cancelled.wait(), 5)
    with pytest.raises(asyncio.CancelledError):  # as grpc.aio: a cancelled call raises this
        await call.read()
    assert await call.code() is StatusCode.CANCELLED
    assert call.cancelled() and call.done()
    assert not call.cancel()


async def test_cancelling_the_awaiting_task_cancels_the_call(pair: tuple[Node, Node, Echo]) -> None:
    _, client, echo = pair
    task = asyncio.ensure_future(Stub(client).Hang(StringValue(value="x")))
    await asyncio.wait_for(echo.started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(echo.cancelled.wait(), 5)


async def test_abort_carries_code_details_and_trailers(pair: tuple[Node, Node, Echo]) -> None:
    _, client, _ = pair
    with pytest.raises(RpcError) as caught:
        await Stub(client).Abort(StringValue(value="cheese"))
    assert caught.value.code() is StatusCode.NOT_FOUND
    assert caught.value.details() == "no cheese"
    assert tuple(caught.value.trailing_metadata()) == (("hint", "elsewhere"),)


async def test_unexpected_exception_is_unknown(
    pair: tuple[Node, Node, Echo], caplog: pytest.LogCaptureFixture
) -> None:
    _, client, _ = pair
    with pytest.raises(RpcError) as caught:
        await Stub(client).Crash(StringValue(value="x"))
    assert caught.value.code() is StatusCode.UNKNOWN
    assert "ZeroDivisionError" in caught.value.details()
    assert "boom" in caplog.text  # logged with its traceback on the server, not swallowed


async def test_unknown_method_and_service_are_unimplemented(pair: tuple[Node, Node, Echo]) -> None:
    server, client, _ = pair
    with pytest.raises(RpcError) as caught:
        await Stub(client).Missing(StringValue(value="x"))
    assert caught.value.code() is StatusCode.UNIMPLEMENTED
    # Nobody serves test.Nobody: without waiting, that is UNAVAILABLE at once...
    with pytest.raises(RpcError) as caught:
        await Stub(client).OtherService(StringValue(value="x"))
    assert caught.value.code() is StatusCode.UNAVAILABLE
    # ...and a peer asked directly answers UNIMPLEMENTED.
    with pytest.raises(RpcError) as caught:
        await Stub(client.to(server.peer_id)).OtherService(StringValue(value="x"))
    assert caught.value.code() is StatusCode.UNIMPLEMENTED


async def test_message_size_limit_is_resource_exhausted() -> None:
    async with served_pair(max_message_size=10_000) as (_, client, _):
        # Too big to send: the call is made all the same, and fails when awaited, as in grpc.aio.
        call = Stub(client).Big(BytesValue(value=b"x" * 20_000))
        with pytest.raises(RpcError) as caught:
            await call
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        assert not endpoint_of(client)._client  # nothing of it is left behind
        with pytest.raises(RpcError) as caught:  # the reply would be too big
            await Stub(client).Big(BytesValue(value=b"x" * 6_000))
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        assert (await Stub(client).Big(BytesValue(value=b"ok"))).value == b"okok"


async def test_a_request_too_big_to_write_ends_the_call_on_both_sides() -> None:
    """As a request iterator's, a ``write()`` over the limit ends the whole call with
    RESOURCE_EXHAUSTED: the write raises it, the call ends with it, the servicer is cancelled."""
    running, cancelled = asyncio.Event(), asyncio.Event()

    async def gather(requests: AsyncIterator[StringValue], context: ServicerContext) -> Any:
        try:
            async for _ in requests:
                running.set()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return StringValue()

    async with served_pair(max_message_size=10_000) as (server, client, _):
        server.add_service(
            "test.Gather",
            {
                "/test.Gather/Join": Handler(
                    gather, Cardinality.STREAM_UNARY, StringValue, StringValue
                )
            },
        )
        await client.wait_for_server("test.Gather", timeout=10)
        call = StreamUnaryMethod(client, "/test.Gather/Join", StringValue, StringValue)(timeout=60)
        await call.write(StringValue(value="a"))
        await asyncio.wait_for(running.wait(), 10)
        with pytest.raises(RpcError) as caught:
            await call.write(StringValue(value="x" * 20_000))
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(call, 5)  # not the 60 s deadline
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        assert call.done()
        with pytest.raises(asyncio.InvalidStateError):
            await call.write(StringValue(value="b"))
        await asyncio.wait_for(cancelled.wait(), 5)  # the server was told


async def test_peer_lost_mid_call_is_unavailable_at_once() -> None:
    async with served_pair() as (server, client, echo):
        once = Channel(client, retry_policy=RetryPolicy(max_attempts=1))
        call = asyncio.ensure_future(Stub(once).Hang(StringValue(value="x"), timeout=60))
        await asyncio.wait_for(echo.started.wait(), 5)
        await server.close()
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(call, 30)
        assert caught.value.code() is StatusCode.UNAVAILABLE


class AddMetadata:
    async def intercept_call(
        self,
        details: ClientCallDetails,
        proceed: Callable[[ClientCallDetails], Awaitable[Any]],
    ) -> Any:
        return await proceed(details.with_metadata(("token", "secret")))


class RequireToken:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def intercept_service(
        self,
        details: HandlerCallDetails,
        proceed: Callable[[HandlerCallDetails], Awaitable[Handler[Any, Any] | None]],
    ) -> Handler[Any, Any] | None:
        self.seen.append(details.method)
        if dict(details.invocation_metadata).get("token") != "secret":
            raise RpcError(StatusCode.UNAUTHENTICATED, "no token")
        return await proceed(details)


async def test_client_and_server_interceptors() -> None:
    guard = RequireToken()
    async with mesh(2) as m:
        server, client = m.nodes
        server.server_interceptors = (guard,)
        server.add_service(SERVICE, Echo().handlers())
        await client.wait_for_server(SERVICE, timeout=10)
        with pytest.raises(RpcError) as caught:
            await Stub(client).Say(StringValue(value="x"))
        assert caught.value.code() is StatusCode.UNAUTHENTICATED
        stub = Stub(Channel(client, interceptors=[AddMetadata()]))
        assert (await stub.Say(StringValue(value="x"))).value == "hello x"
        assert guard.seen == [path("Say"), path("Say")]


async def test_calls_spread_over_servers_and_fail_over() -> None:
    async with mesh(3) as m:
        a, b, client = m.nodes
        echo_a, echo_b = Echo(), Echo()
        a.add_service(SERVICE, echo_a.handlers())
        b.add_service(SERVICE, echo_b.handlers())
        await client.wait_for_peers(2)
        while len(client.servers_of(SERVICE)) < 2:  # the second hello may still be on its way
            await asyncio.wait_for(_next_event(client, "peer"), 10)
        await asyncio.gather(*(Stub(client).Say(StringValue(value=str(i))) for i in range(20)))
        assert echo_a.calls["Say"] > 0 and echo_b.calls["Say"] > 0
        assert echo_a.calls["Say"] + echo_b.calls["Say"] == 20
        await a.close()
        for i in range(5):
            assert (await Stub(client).Say(StringValue(value=str(i)))).value == f"hello {i}"
        assert echo_b.calls["Say"] + echo_a.calls["Say"] == 25


async def test_idempotent_call_is_retried_on_another_server_when_one_dies() -> None:
    async with mesh(3) as m:
        a, b, client = m.nodes
        echo_a, echo_b = Echo(), Echo()
        a.add_service(SERVICE, echo_a.handlers(idempotent=True))
        await client.wait_for_server(SERVICE, timeout=10)
        call = asyncio.ensure_future(
            Stub(client).HangIdempotent(StringValue(value="x"), timeout=60)
        )
        await asyncio.wait_for(echo_a.started.wait(), 5)
        # A second server appears; the first dies mid-call: the retry goes to the second.
        b.add_service(SERVICE, echo_b.handlers(idempotent=True))
        await _until_servers(client, 2)
        await a.close()
        await asyncio.wait_for(echo_b.started.wait(), 30)
        assert echo_a.calls == {"Hang": 1} and echo_b.calls == {"Hang": 1}
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call


async def test_non_idempotent_call_is_never_run_twice() -> None:
    async with mesh(3) as m:
        a, b, client = m.nodes
        echo_a, echo_b = Echo(), Echo()
        a.add_service(SERVICE, echo_a.handlers())
        b.add_service(SERVICE, echo_b.handlers())
        await _until_servers(client, 2)
        call = asyncio.ensure_future(Stub(client).Hang(StringValue(value="x"), timeout=60))
        started = await _first_started(echo_a, echo_b)
        await (a if started is echo_a else b).close()
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(call, 30)
        assert caught.value.code() is StatusCode.UNAVAILABLE
        assert echo_a.calls.get("Hang", 0) + echo_b.calls.get("Hang", 0) == 1


async def test_wait_for_ready_and_retry_across_a_tracker_restart() -> None:
    async with mesh(1) as m:
        (client,) = m.nodes
        port = int(m.tracker.url.rsplit(":", 1)[1])
        call = asyncio.ensure_future(
            Stub(client).Say(StringValue(value="later"), timeout=60, wait_for_ready=True)
        )
        await m.tracker.close()  # the tracker goes away; the client keeps reconnecting
        from p2prpc.tracker.server import TrackerServer

        async with TrackerServer("127.0.0.1", port) as restarted:
            server = await m.add()
            server.add_service(SERVICE, Echo().handlers())
            assert restarted.url == m.tracker.url
            reply = await asyncio.wait_for(call, 50)
            assert reply.value == "hello later"
            for node in m.nodes:
                await node.close()


async def test_unary_call_from_a_plain_p2pt_json_message() -> None:
    """What a JavaScript P2PT app does: one send with a JSON object, a JSON object back."""
    async with mesh(2, binary=False) as m:
        server, client = m.nodes
        server.add_service(SERVICE, Echo().handlers())
        peer = client.p2pt.peers[server.peer_id]
        _, reply = await client.p2pt.send(peer, {"call": path("Say"), "msg": "json"})
        assert reply == {"reply": "hello json", "status": {"code": 0}, "seq": 0} | {
            "trailers": {"served-by": client.peer_id[:8]}
        }
        _, reply = await client.p2pt.send(peer, {"call": path("Say"), "msg": {"bad": 1}})
        assert reply["status"]["code"] == StatusCode.INVALID_ARGUMENT.value[0]  # type: ignore[index, call-overload]
        _, reply = await client.p2pt.send(peer, {"call": "not a method"})
        assert reply["status"]["code"] == StatusCode.INVALID_ARGUMENT.value[0]  # type: ignore[index, call-overload]


async def _next_event(node: Node, name: str) -> Any:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    node.once(name, lambda *args: future.done() or future.set_result(args))
    return await future


async def _until_servers(node: Node, count: int) -> None:
    async with asyncio.timeout(20):
        while len(node.servers_of(SERVICE)) < count:
            await _next_event(node, "peer")


async def _first_started(*echoes: Echo) -> Echo:
    waits = {asyncio.ensure_future(e.started.wait()): e for e in echoes}
    done, pending = await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    assert done
    return waits[done.pop()]


@pytest.mark.parametrize("encoding", ["deflate", "gzip", "zstd"])
async def test_compressed_calls_send_fewer_bytes(encoding: str) -> None:
    async with served_pair() as (server, client, _):
        assert server.peers[client.peer_id].encodings == {"deflate", "gzip", "zstd"}
        received: list[int] = []
        server.p2pt.on("data", lambda peer, data: received.append(len(data)))
        # 540 kB of text as records hold it: compresses several times over, as real data does
        # (a payload inflating past MAX_RATIO, 64, is sent as it is: a receiver refuses it).
        rng = random.Random(7)
        words = [b"a", b"record", b"with", b"text", b"fields", b"name", b"city", b"score"]
        text = b" ".join(rng.choice(words) + b"%d" % rng.randrange(50) for _ in range(70_000))
        big = BytesValue(value=text[:540_000])
        plain = await Stub(client).Big(big)
        plain_bytes, received[:] = sum(received), []
        packed = await Stub(client).Big(big, compression=encoding)
        assert packed == plain == BytesValue(value=big.value * 2)
        assert sum(received) < plain_bytes // 3


async def test_compression_is_refused_locally_when_unknown_and_skipped_in_json() -> None:
    async with served_pair(binary=False) as (_, client, _):
        with pytest.raises(ValueError):
            await Stub(client).Say(StringValue(value="x"), compression="brotli")
        # A JSON-form peer gets no compression: the call simply works.
        reply = await Stub(client).Say(StringValue(value="x"), compression="deflate")
        assert reply.value == "hello x"


async def test_a_node_default_compression_applies_to_streams_both_ways() -> None:
    async with served_pair() as (_, client, _):
        call = Stub(Channel(client, compression="zstd")).Upper(
            [StringValue(value="x" * 5000) for _ in range(3)]
        )
        assert [r.value async for r in call] == ["X" * 5000] * 3


async def test_every_way_a_method_ends_sends_one_status(pair: tuple[Node, Node, Echo]) -> None:
    """A servicer that raises CancelledError (or a TimeoutError of its own) without the call being
    cancelled still answers: the caller never waits for its deadline."""
    _, client, _ = pair
    stub = Stub(client)
    with pytest.raises(RpcError) as caught:
        await asyncio.wait_for(stub.SelfCancel(StringValue(), timeout=60), 10)
    assert caught.value.code() is StatusCode.CANCELLED
    call = stub.SelfCancelStream(StringValue(), timeout=60)
    assert await call.read() == StringValue(value="first")
    with pytest.raises(RpcError) as caught:
        await asyncio.wait_for(call.read(), 10)
    assert caught.value.code() is StatusCode.CANCELLED
    with pytest.raises(RpcError) as caught:
        await asyncio.wait_for(stub.OwnTimeout(StringValue(), timeout=60), 10)
    assert caught.value.code() is StatusCode.UNKNOWN
    assert (await stub.Say(StringValue(value="still"))).value == "hello still"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_a_message_over_the_receivers_limit_fails_at_once_on_both_sides(
    binary: bool,
) -> None:
    """gRPC answers RESOURCE_EXHAUSTED at once, from whichever side refused; nobody waits. In the
    JSON form the 7 MiB request is refused while P2PT reassembles it, before any envelope."""
    async with mesh(1, max_message_size=16 * 2**20, binary=binary) as m:
        (server,) = m.nodes
        small = await m.add(max_message_size=4 * 2**20, binary=binary)  # the default limit
        server.add_service(SERVICE, Echo().handlers())
        small.add_service(SERVICE, Echo().handlers())
        await small.wait_for_server(SERVICE, timeout=10)
        await server.wait_for_server(SERVICE, timeout=10)
        started = asyncio.get_running_loop().time()
        # A 3 MiB request, doubled: the 6 MiB reply is over the caller's limit.
        with pytest.raises(RpcError) as caught:
            await Stub(small).Big(BytesValue(value=b"r" * (3 * 2**20)), timeout=60)
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        # A 5 (7) MiB request from a peer with a larger limit is over this one's.
        to_small = Stub(server.to(small.peer_id))
        with pytest.raises(RpcError) as caught:
            await to_small.Big(BytesValue(value=b"q" * ((5 if binary else 7) * 2**20)), timeout=60)
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        assert asyncio.get_running_loop().time() - started < 20
        assert (await Stub(small).Big(BytesValue(value=b"ok"))).value == b"okok"


class Explode:
    async def intercept_service(self, details: HandlerCallDetails, proceed: Any) -> Any:
        raise KeyError("a bug in an interceptor")


async def test_no_bad_message_or_failing_layer_stops_the_next_one(
    pair: tuple[Node, Node, Echo],
) -> None:
    """A peer's garbage, a malformed call, and an interceptor's bug: each is answered or
    reported, and the next call from the same peer is served."""
    server, client, _ = pair
    warnings: list[Exception] = []
    server.on("peerwarning", lambda peer_id, error: warnings.append(error))
    client.p2pt.send_raw(server.peer_id, [b"\xb7\x01\x00garbage", b"\xb7\x63" + b"\x00" * 20])
    peer = client.p2pt.peers[server.peer_id]
    _, answer = await client.p2pt.send(peer, {"call": path("Say"), "timeout": 10**400 * -1})
    assert answer["status"]["code"] == StatusCode.INVALID_ARGUMENT.value[0]  # type: ignore[index, call-overload]
    assert len(warnings) >= 2
    server.server_interceptors = (Explode(),)
    with pytest.raises(RpcError) as caught:
        await Stub(client).Say(StringValue(value="x"), timeout=10)
    assert caught.value.code() is StatusCode.UNKNOWN
    server.server_interceptors = ()
    assert (await Stub(client).Say(StringValue(value="x"), timeout=10)).value == "hello x"
