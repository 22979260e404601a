"""Every feature that applies to calls, on every call shape, in both envelope forms.

Client interceptors, server interceptors, retries, deadlines, metadata (initial and trailing, with
``-bin`` keys), compression and cancellation, each on unary-unary, unary-stream, stream-unary and
stream-stream calls, from a client that speaks the binary form and one that speaks the JSON form,
to one server: whole peers over WebRTC on loopback, shared by the module. The features that a
client interceptor could change (deadlines, metadata, retries, compression, cancellation) run
with none in the way, with p2prpc's form and with grpc.aio's classes. The raw JSON caller
(``JSONMethod``) runs through interceptors too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc.aio
import pytest
import pytest_asyncio
from call_shapes import METHODS, SHAPES
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.node import Node
from p2prpc.rpc import (
    EOF,
    NO_RETRY,
    Cardinality,
    Channel,
    ClientCallDetails,
    Handler,
    HandlerCallDetails,
    JSONMethod,
    RetryPolicy,
    RpcError,
    ServicerContext,
    StatusCode,
    StreamStreamCall,
    StreamUnaryCall,
    UnaryStreamCall,
    UnaryUnaryCall,
)
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICE = "t.Shapes"
FORMS = ("binary", "json")
CARDINALITY = {shape: Cardinality(shape) for shape in SHAPES}
CALL_CLASS: dict[str, type[Any]] = {
    "unary_unary": UnaryUnaryCall,
    "unary_stream": UnaryStreamCall,
    "stream_unary": StreamUnaryCall,
    "stream_stream": StreamStreamCall,
}
#: Seconds a "slow" method takes before it answers (longer than the short timeouts below).
SLOW = 0.6
SHORT = 0.3
QUICK_RETRIES = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


def path(shape: str) -> str:
    return f"/{SERVICE}/{shape}"


# -- the server ----------------------------------------------------------------------------------


@dataclass
class Seen:
    """What the server saw of one test's calls."""

    attempts: int = 0
    metadata: tuple[tuple[str, Any], ...] = ()
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool | None = None  # context.cancelled() when the method was stopped
    requests: list[list[str]] = field(default_factory=list)  # a request stream, each attempt
    guarded: list[str] = field(default_factory=list)  # methods the server interceptor saw


class Shapes:
    """One method of each shape. Metadata ``x-case`` names the test; ``x-mode`` (repeatable)
    says how to behave: ``fail-once`` (UNAVAILABLE on the first attempt, before reading
    anything), ``fail-once-late`` (a request stream: UNAVAILABLE on the first attempt once all
    requests are read, before any reply), ``meta`` (initial and trailing metadata, ``-bin`` ones
    too), ``abort`` (NOT_FOUND with trailers), ``slow`` (answers after ``SLOW`` seconds), ``hang``
    (after the first request and the first reply, waits until stopped)."""

    def __init__(self) -> None:
        self.cases: dict[str, Seen] = {}

    def case(self, case: str) -> Seen:
        return self.cases.setdefault(case, Seen())

    async def _begin(self, context: ServicerContext) -> tuple[Seen, set[str]]:
        metadata = tuple(context.invocation_metadata())
        seen = self.case(dict(metadata)["x-case"])
        seen.attempts += 1
        seen.metadata = metadata
        modes = {value for key, value in metadata if key == "x-mode"}
        if "fail-once" in modes and seen.attempts == 1:
            await context.abort(StatusCode.UNAVAILABLE, "not this time")
        if "abort" in modes:
            await context.abort(StatusCode.NOT_FOUND, "no such thing", [("x-why-bin", b"\x02")])
        if "meta" in modes:
            await context.send_initial_metadata(
                [("x-initial", "i"), ("x-initial-bin", b"\x00\xff")]
            )
            context.set_trailing_metadata([("x-trailing", "t"), ("x-trailing-bin", b"\x01\xfe")])
        if "slow" in modes:
            await asyncio.sleep(SLOW)  # the method's own work, longer than the caller's timeout
        return seen, modes

    @staticmethod
    async def _hang(seen: Seen, context: ServicerContext) -> None:
        seen.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            seen.cancelled = context.cancelled()
            seen.ended.set()

    async def unary_unary(self, request: StringValue, context: ServicerContext) -> StringValue:
        seen, modes = await self._begin(context)
        if "hang" in modes:
            await self._hang(seen, context)
        return StringValue(value=request.value)

    async def unary_stream(
        self, request: StringValue, context: ServicerContext
    ) -> AsyncIterator[StringValue]:
        seen, modes = await self._begin(context)
        for i in range(3):
            yield StringValue(value=f"{request.value}{i}")
            if "hang" in modes:
                await self._hang(seen, context)

    async def stream_unary(
        self, requests: AsyncIterator[StringValue], context: ServicerContext
    ) -> StringValue:
        seen, modes = await self._begin(context)
        values = []
        async for request in requests:
            values.append(request.value)
            if "hang" in modes:
                await self._hang(seen, context)
        await self._late(seen, modes, values, context)
        return StringValue(value="+".join(values))

    @staticmethod
    async def _late(
        seen: Seen, modes: set[str], values: list[str], context: ServicerContext
    ) -> None:
        seen.requests.append(values)
        if "fail-once-late" in modes and seen.attempts == 1:
            await context.abort(StatusCode.UNAVAILABLE, "not this time either")

    async def stream_stream(
        self, requests: AsyncIterator[StringValue], context: ServicerContext
    ) -> AsyncIterator[StringValue]:
        seen, modes = await self._begin(context)
        if "fail-once-late" in modes:  # no reply before every request is read
            values = [r.value async for r in requests]
            await self._late(seen, modes, values, context)
            for value in values:
                yield StringValue(value=value)
        async for request in requests:
            yield StringValue(value=request.value)
            if "hang" in modes:
                await self._hang(seen, context)

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        return {
            path(shape): Handler(getattr(self, shape), CARDINALITY[shape], StringValue, StringValue)
            for shape in SHAPES
        }


def _suffixed(handler: Handler[Any, Any], suffix: str) -> Handler[Any, Any]:
    """``handler`` with ``suffix`` added to each reply."""
    inner = handler.func
    if handler.cardinality.server_streams:

        async def streaming(argument: Any, context: ServicerContext) -> AsyncIterator[Any]:
            async for reply in inner(argument, context):
                yield StringValue(value=reply.value + suffix)

        return dataclasses.replace(handler, func=streaming)

    async def single(argument: Any, context: ServicerContext) -> Any:
        reply = await inner(argument, context)
        return StringValue(value=reply.value + suffix)

    return dataclasses.replace(handler, func=single)


class Guard:
    """The server's interceptor: metadata ``x-guard`` ``refuse`` ends the call PERMISSION_DENIED
    before any method runs, ``wrap`` wraps the method (each reply gets ``!``)."""

    def __init__(self, shapes: Shapes) -> None:
        self.shapes = shapes

    async def intercept_service(
        self,
        details: HandlerCallDetails,
        proceed: Callable[[HandlerCallDetails], Awaitable[Handler[Any, Any] | None]],
    ) -> Handler[Any, Any] | None:
        metadata = dict(details.invocation_metadata)
        if "x-case" in metadata:
            self.shapes.case(str(metadata["x-case"])).guarded.append(details.method)
        if metadata.get("x-guard") == "refuse":
            raise RpcError(StatusCode.PERMISSION_DENIED, "not you")
        handler = await proceed(details)
        if handler is not None and metadata.get("x-guard") == "wrap":
            return _suffixed(handler, "!")
        return handler


@dataclass
class Rig:
    server: Node
    clients: dict[str, Node]
    shapes: Shapes


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig() -> AsyncIterator[Rig]:
    async with TrackerServer(LOOPBACK, 0) as tracker:
        shapes = Shapes()
        server = loopback_node([tracker.url], "shapes", server_interceptors=[Guard(shapes)])
        nodes = [server]
        try:
            server.add_service(SERVICE, shapes.handlers())
            await server.start()
            clients = {}
            for form in FORMS:
                clients[form] = node = loopback_node(
                    [tracker.url], "shapes", binary=form == "binary"
                )
                nodes.append(node)
                await node.start()
            for form, node in clients.items():
                await node.wait_for_server(SERVICE, timeout=30)
                assert node.is_binary(server.peer_id) is (form == "binary")
            yield Rig(server, clients, shapes)
        finally:
            for node in nodes:
                await node.close()


@pytest.fixture(params=FORMS)
def form(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=SHAPES)
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def case() -> str:
    return uuid.uuid4().hex


# -- the client ----------------------------------------------------------------------------------


class Stub:
    def __init__(self, channel: Any, *, idempotent: bool = False) -> None:
        self.methods: dict[str, Any] = {
            shape: kind(channel, path(shape), StringValue, StringValue, idempotent=idempotent)
            for shape, kind in METHODS.items()
        }


def expected(shape: str, values: list[str]) -> list[str]:
    """The replies the server's method sends for ``values``."""
    if shape == "unary_unary":
        return values[:1]
    if shape == "unary_stream":
        return [f"{values[0]}{i}" for i in range(3)]
    if shape == "stream_unary":
        return ["+".join(values)]
    return list(values)


def values_for(shape: str, value: str = "v") -> list[str]:
    return (
        [value] if shape in ("unary_unary", "unary_stream") else [f"{value}{i}" for i in range(3)]
    )


def start(stub: Stub, shape: str, values: list[str], *, iterable: bool = False, **kw: Any) -> Any:
    """Start a call of ``shape``: the request rides in it, or the requests are an iterable."""
    method = stub.methods[shape]
    if shape in ("unary_unary", "unary_stream"):
        return method(StringValue(value=values[0]), **kw)
    if iterable:
        return method([StringValue(value=v) for v in values], **kw)
    return method(**kw)


async def finish(call: Any, shape: str, values: list[str], *, iterable: bool = False) -> list[str]:
    """Drive a started call to its end as a caller would: ``write()`` requests (a bidirectional
    call reads each reply before the next write), ``done_writing()``, then read the replies."""
    if shape == "unary_unary":
        return [(await call).value]
    if shape == "unary_stream":
        return [reply.value async for reply in call]
    if shape == "stream_unary":
        if not iterable:
            for value in values:
                await call.write(StringValue(value=value))
            await call.done_writing()
        return [(await call).value]
    if iterable:
        return [reply.value async for reply in call]
    replies = []
    for value in values:
        await call.write(StringValue(value=value))
        replies.append((await call.read()).value)
    await call.done_writing()
    assert await call.read() is EOF
    return replies


async def run(stub: Stub, shape: str, values: list[str], **kw: Any) -> tuple[list[str], Any]:
    iterable = kw.pop("iterable", False)
    call = start(stub, shape, values, iterable=iterable, **kw)
    return await finish(call, shape, values, iterable=iterable), call


async def fails(call: Any, shape: str, values: list[str]) -> RpcError:
    """Drive ``call`` (its requests as an iterable); the ``RpcError`` it ends with."""
    with pytest.raises(RpcError) as caught:
        await finish(call, shape, values, iterable=True)
    return caught.value


def md(case: str, *modes: str, **extra: Any) -> list[tuple[str, Any]]:
    return [("x-case", case), *(("x-mode", m) for m in modes), *extra.items()]


class PassThrough:
    """The README's interceptor: looks, changes nothing. Records what ``proceed`` returned."""

    def __init__(self, name: str = "pass", log: list[str] | None = None) -> None:
        self.name = name
        self.log = log if log is not None else []
        self.results: list[Any] = []

    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        self.log.append(self.name)
        result = await proceed(details.with_metadata(("x-by", self.name)))
        self.results.append(result)
        return result


def channel(rig: Rig, form: str, *interceptors: Any, **kw: Any) -> Channel:
    return Channel(rig.clients[form], interceptors=interceptors, **kw)


class GrpcPassThrough(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """grpc.aio's interceptor classes, as a grpc.aio application writes them: adds a metadata
    entry and returns the call ``continuation`` made."""

    async def _pass(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = grpc.aio.Metadata(*details.metadata, ("x-by", "grpc"))
        details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return await continuation(details, request)

    intercept_unary_unary = intercept_unary_stream = _pass  # type: ignore[assignment]
    intercept_stream_unary = intercept_stream_stream = _pass  # type: ignore[assignment]


#: What wraps the calls of the features a client interceptor could change: nothing, p2prpc's
#: one-method form, grpc.aio's classes.
INTERCEPTED = {"plain": (), "p2prpc": (PassThrough,), "grpc": (GrpcPassThrough,)}


@pytest.fixture(params=list(INTERCEPTED))
def intercepted(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def maybe_intercepted(rig: Rig, form: str, intercepted: str, **kw: Any) -> Channel:
    return channel(rig, form, *(kind() for kind in INTERCEPTED[intercepted]), **kw)


# -- every shape, both forms ---------------------------------------------------------------------


async def test_each_shape_carries_all_its_messages(
    rig: Rig, form: str, shape: str, case: str
) -> None:
    values = values_for(shape)
    replies, call = await run(Stub(channel(rig, form)), shape, values, metadata=md(case))
    assert replies == expected(shape, values)
    assert await call.code() is StatusCode.OK


@pytest.mark.parametrize("count", [1, 3])
async def test_client_interceptors_pass_every_message_through(
    rig: Rig, form: str, shape: str, case: str, count: int
) -> None:
    log: list[str] = []
    chain = [PassThrough(f"i{n}", log) for n in range(count)]
    values = values_for(shape)
    call = start(Stub(channel(rig, form, *chain)), shape, values, metadata=md(case))
    assert isinstance(call, CALL_CLASS[shape])
    ended: list[Any] = []
    call.add_done_callback(ended.append)
    assert await finish(call, shape, values) == expected(shape, values)
    assert await call.code() is StatusCode.OK and call.done()
    assert ended == [call]
    assert log == [f"i{n}" for n in range(count)]  # outermost first
    seen = rig.shapes.cases[case]
    assert [v for k, v in seen.metadata if k == "x-by"] == [f"i{n}" for n in range(count)]
    for interceptor in chain:  # proceed gave the reply, or the call for a reply stream
        (result,) = interceptor.results
        if CARDINALITY[shape].server_streams:
            assert isinstance(result, CALL_CLASS[shape])
        else:
            assert result == StringValue(value=expected(shape, values)[0])


async def test_client_interceptors_pass_an_iterable_request_stream_through(
    rig: Rig, form: str, shape: str, case: str
) -> None:
    values = values_for(shape)
    stub = Stub(channel(rig, form, PassThrough(), PassThrough()))
    replies, call = await run(stub, shape, values, metadata=md(case), iterable=True)
    assert replies == expected(shape, values)
    assert await call.code() is StatusCode.OK


class SetTimeout:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        return await proceed(dataclasses.replace(details, timeout=self.timeout))


async def test_a_client_interceptor_shortens_the_deadline(
    rig: Rig, form: str, shape: str, case: str
) -> None:
    values = values_for(shape)
    stub = Stub(channel(rig, form, SetTimeout(SHORT)))
    call = start(stub, shape, values, iterable=True, metadata=md(case, "hang"))
    error = await fails(call, shape, values)
    assert error.code() is StatusCode.DEADLINE_EXCEEDED
    assert await call.code() is StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(rig.shapes.cases[case].ended.wait(), 10)  # the server stopped too


async def test_a_client_interceptor_lengthens_the_deadline(
    rig: Rig, form: str, shape: str, case: str
) -> None:
    values = values_for(shape)
    stub = Stub(channel(rig, form, SetTimeout(30)))
    replies, call = await run(stub, shape, values, timeout=SHORT, metadata=md(case, "slow"))
    assert replies == expected(shape, values)
    assert await call.code() is StatusCode.OK


class Upper:
    """Replaces the reply (single reply) or the reply stream (an async generator)."""

    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        result = await proceed(details)
        if not isinstance(result, UnaryStreamCall | StreamStreamCall):
            return StringValue(value=result.value.upper())
        call = result

        async def upper() -> AsyncIterator[StringValue]:
            async for reply in call:
                yield StringValue(value=reply.value.upper())

        return upper()


async def test_a_client_interceptor_replaces_the_replies(
    rig: Rig, form: str, shape: str, case: str
) -> None:
    values = values_for(shape)
    replies, call = await run(
        Stub(channel(rig, form, Upper())), shape, values, metadata=md(case, "meta")
    )
    assert replies == [r.upper() for r in expected(shape, values)]
    assert await call.code() is StatusCode.OK
    assert ("x-trailing", "t") in tuple(await call.trailing_metadata())  # the call's own
    assert ("x-initial", "i") in tuple(await call.initial_metadata())


class Refuse:
    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        raise RpcError(StatusCode.PERMISSION_DENIED, "not from here", [("x-refused", "1")])


class RefuseAfter:
    """Proceeds, looks at what came back (the reply, or the call's initial metadata), then
    refuses."""

    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        result = await proceed(details)
        if isinstance(result, UnaryStreamCall | StreamStreamCall):
            assert ("x-initial", "i") in tuple(await result.initial_metadata())
        raise RpcError(StatusCode.FAILED_PRECONDITION, "did not like it")


async def test_a_client_interceptor_refuses_before_the_call(
    rig: Rig, form: str, shape: str, case: str
) -> None:
    values = values_for(shape)
    call = start(Stub(channel(rig, form, PassThrough(), Refuse())), shape, values, iterable=True)
    error = await fails(call, shape, values)
    assert error.code() is StatusCode.PERMISSION_DENIED
    assert tuple(error.trailing_metadata()) == (("x-refused", "1"),)
    assert await call.code() is StatusCode.PERMISSION_DENIED
    assert await call.details() == "not from here"
    assert case not in rig.shapes.cases  # nothing was sent


async def test_a_client_interceptor_refuses_after_the_call(
    rig: Rig, form: str, shape: str, case: str
) -> None:
    values = values_for(shape)
    streams = CARDINALITY[shape].server_streams
    modes = ("meta", "hang") if streams else ("meta",)
    stub = Stub(channel(rig, form, RefuseAfter()))
    call = start(stub, shape, values, iterable=True, metadata=md(case, *modes))
    error = await fails(call, shape, values)
    assert error.code() is StatusCode.FAILED_PRECONDITION
    assert await call.code() is StatusCode.FAILED_PRECONDITION
    seen = rig.shapes.cases[case]
    assert seen.attempts == 1
    if streams:  # the call it made and dropped is cancelled: its server is told
        await asyncio.wait_for(seen.ended.wait(), 10)
        assert seen.cancelled


@pytest.mark.parametrize("count", [0, 1, 3])
async def test_a_raw_json_call_through_client_interceptors(
    rig: Rig, shape: str, case: str, count: int
) -> None:
    chain = [PassThrough(f"i{n}") for n in range(count)]
    values = values_for(shape)
    call = JSONMethod(channel(rig, "json", *chain), path(shape))(
        values, timeout=10, metadata=md(case)
    )
    assert [reply async for reply in call] == expected(shape, values)
    assert await call.code() is StatusCode.OK


class ProceedAgain:
    """Tries once more when the call fails UNAVAILABLE (a retry of its own)."""

    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        try:
            return await proceed(details)
        except RpcError as e:
            if e.code() is not StatusCode.UNAVAILABLE:
                raise
            return await proceed(details)


async def test_a_client_interceptor_may_proceed_again(rig: Rig, form: str, case: str) -> None:
    stub = Stub(channel(rig, form, ProceedAgain(), retry_policy=NO_RETRY))
    replies, call = await run(stub, "unary_unary", ["v"], metadata=md(case, "fail-once"))
    assert replies == ["v"] and await call.code() is StatusCode.OK
    assert rig.shapes.cases[case].attempts == 2


class Held:
    """Waits, before it proceeds, for what never comes (a token that never arrives)."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()

    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        self.waiting.set()
        await asyncio.Event().wait()
        return await proceed(details)


@pytest.mark.parametrize("end", ["cancel", "deadline"])
async def test_a_call_held_by_an_interceptor_ends_at_once_with_its_deadline_or_cancel(
    rig: Rig, form: str, shape: str, end: str
) -> None:
    held = Held()
    values = values_for(shape)
    timeout = SHORT if end == "deadline" else None
    call = start(Stub(channel(rig, form, held)), shape, values, timeout=timeout)
    writer = None
    if shape in ("stream_unary", "stream_stream"):
        writer = asyncio.ensure_future(call.write(StringValue(value="w")))
    await held.waiting.wait()
    if end == "cancel":
        assert call.cancel()
    with pytest.raises(RpcError if end == "deadline" else asyncio.CancelledError):
        async with asyncio.timeout(5):
            await _awaited(call, shape)
    code = StatusCode.DEADLINE_EXCEEDED if end == "deadline" else StatusCode.CANCELLED
    assert await call.code() is code
    if writer is not None:  # a write waiting for the call to be made raises how it ended
        with pytest.raises(RpcError if end == "deadline" else asyncio.CancelledError):
            await asyncio.wait_for(writer, 5)


# -- server interceptors -------------------------------------------------------------------------


@pytest.mark.parametrize("guard", ["pass", "refuse", "wrap"])
async def test_server_interceptors(rig: Rig, form: str, shape: str, case: str, guard: str) -> None:
    values = values_for(shape)
    stub = Stub(channel(rig, form))
    call = start(stub, shape, values, iterable=True, metadata=md(case, **{"x-guard": guard}))
    if guard == "refuse":
        error = await fails(call, shape, values)
        assert error.code() is StatusCode.PERMISSION_DENIED
        assert rig.shapes.cases[case].attempts == 0  # no method ran
    else:
        replies = await finish(call, shape, values, iterable=True)
        suffix = "!" if guard == "wrap" else ""
        assert replies == [r + suffix for r in expected(shape, values)]
    assert rig.shapes.cases[case].guarded == [path(shape)]


# -- retries -------------------------------------------------------------------------------------


async def test_retries(rig: Rig, form: str, shape: str, case: str, intercepted: str) -> None:
    """An idempotent method failed UNAVAILABLE is retried, whatever its shape, with the requests
    written before the failure; a retried call says so in its trailers."""
    values = values_for(shape)
    stub = Stub(
        maybe_intercepted(rig, form, intercepted, retry_policy=QUICK_RETRIES), idempotent=True
    )
    replies, call = await run(stub, shape, values, timeout=10, metadata=md(case, "fail-once"))
    assert replies == expected(shape, values)
    assert rig.shapes.cases[case].attempts == 2
    assert ("grpc-previous-rpc-attempts", "1") in tuple(await call.trailing_metadata())


async def test_no_retry_once_a_call_may_have_run(
    rig: Rig, form: str, shape: str, case: str, intercepted: str
) -> None:
    values = values_for(shape)
    stub = Stub(maybe_intercepted(rig, form, intercepted, retry_policy=QUICK_RETRIES))
    call = start(stub, shape, values, iterable=True, timeout=10, metadata=md(case, "fail-once"))
    assert (await fails(call, shape, values)).code() is StatusCode.UNAVAILABLE
    assert rig.shapes.cases[case].attempts == 1


@pytest.mark.parametrize("shape", ["stream_unary", "stream_stream"])
async def test_a_retry_sends_the_new_attempt_every_request_written_before(
    rig: Rig, form: str, shape: str, case: str, intercepted: str
) -> None:
    """The server read every request, then failed UNAVAILABLE before answering: the next
    attempt is sent the same requests, in order, and the call succeeds."""
    values = [f"r{i}" for i in range(20)]
    stub = Stub(
        maybe_intercepted(rig, form, intercepted, retry_policy=QUICK_RETRIES), idempotent=True
    )
    call = start(stub, shape, values, timeout=10, metadata=md(case, "fail-once-late"))
    for value in values:
        await call.write(StringValue(value=value))
    await call.done_writing()
    if shape == "stream_unary":
        assert (await call).value == "+".join(values)
    else:
        assert [r.value async for r in call] == values
    seen = rig.shapes.cases[case]
    assert seen.attempts == 2 and seen.requests == [values, values]


@pytest.mark.parametrize("shape", ["stream_unary", "stream_stream"])
async def test_requests_past_the_retry_buffer_keep_the_call_to_its_attempt(
    rig: Rig, form: str, shape: str, case: str
) -> None:
    """Past ``retry_buffer_size`` bytes of requests a call keeps its attempt: it is not
    retried, and holds none of them for another."""
    values = [f"r{i}" for i in range(20)]
    stub = Stub(
        channel(rig, form, retry_policy=QUICK_RETRIES, retry_buffer_size=4096), idempotent=True
    )  # 20 requests count 20 × (512 + 4) bytes
    call = start(stub, shape, values, timeout=10, metadata=md(case, "fail-once-late"))
    for value in values:
        await call.write(StringValue(value=value))
    await call.done_writing()
    with pytest.raises(RpcError) as caught:
        await finish(call, shape, values, iterable=True)
    assert caught.value.code() is StatusCode.UNAVAILABLE
    assert rig.shapes.cases[case].attempts == 1
    assert call._buffer is None


# -- deadlines -----------------------------------------------------------------------------------


async def test_deadlines(rig: Rig, form: str, shape: str, case: str, intercepted: str) -> None:
    """The call fails DEADLINE_EXCEEDED after what it got before, and the server stops."""
    stub = Stub(maybe_intercepted(rig, form, intercepted, retry_policy=NO_RETRY))
    values = values_for(shape)
    call = start(stub, shape, values, timeout=SHORT, metadata=md(case, "hang"))
    if shape in ("stream_unary", "stream_stream"):
        await call.write(StringValue(value="a"))
    if shape in ("unary_stream", "stream_stream"):
        assert (await call.read()).value in ("v0", "a")
    with pytest.raises(RpcError) as caught:
        if CARDINALITY[shape].server_streams:
            await call.read()
        else:
            await call
    assert caught.value.code() is StatusCode.DEADLINE_EXCEEDED
    assert await call.code() is StatusCode.DEADLINE_EXCEEDED
    assert call.time_remaining() == 0
    seen = rig.shapes.cases[case]
    await asyncio.wait_for(seen.ended.wait(), 10)


# -- metadata ------------------------------------------------------------------------------------


async def test_metadata(rig: Rig, form: str, shape: str, case: str, intercepted: str) -> None:
    stub = Stub(maybe_intercepted(rig, form, intercepted))
    values = values_for(shape)
    sent = md(case, "meta", **{"x-token": "t", "x-token-bin": b"\x00\x01\xff"})
    replies, call = await run(stub, shape, values, metadata=sent)
    assert replies == expected(shape, values)
    seen = rig.shapes.cases[case].metadata
    assert ("x-token", "t") in seen and ("x-token-bin", b"\x00\x01\xff") in seen
    initial = tuple(await call.initial_metadata())
    assert ("x-initial", "i") in initial and ("x-initial-bin", b"\x00\xff") in initial
    trailing = tuple(await call.trailing_metadata())
    assert ("x-trailing", "t") in trailing and ("x-trailing-bin", b"\x01\xfe") in trailing
    # A call that fails carries its trailers too, on the error and on the call.
    failing = start(stub, shape, values, iterable=True, metadata=md(case + "-abort", "abort"))
    error = await fails(failing, shape, values)
    assert error.code() is StatusCode.NOT_FOUND
    assert tuple(error.trailing_metadata()) == (("x-why-bin", b"\x02"),)
    assert tuple(await failing.trailing_metadata()) == (("x-why-bin", b"\x02"),)


# -- compression ---------------------------------------------------------------------------------


def _text(size: int) -> str:
    rng = random.Random(size)
    words = ["a", "record", "with", "text", "fields", "name", "city", "score"]
    return " ".join(rng.choice(words) + str(rng.randrange(50)) for _ in range(size // 7))[:size]


async def test_compression(rig: Rig, form: str, shape: str, case: str, intercepted: str) -> None:
    """``compression="deflate"`` shrinks requests and replies in the binary form to well under
    the text they carry, and is skipped in the JSON form (its peers do not read it): the calls
    work the same."""
    client = rig.clients[form]
    server = rig.server
    to_server: list[int] = []
    to_client: list[int] = []

    def count(into: list[int], peer_id: str) -> Callable[[Any, Any], None]:
        return lambda peer, data: into.append(len(data)) if peer.id == peer_id else None

    on_server, on_client = count(to_server, client.peer_id), count(to_client, server.peer_id)
    server.p2pt.on("data", on_server)
    client.p2pt.on("data", on_client)
    try:
        values = [_text(20_000) + str(i) for i in range(len(values_for(shape)))]
        stub = Stub(maybe_intercepted(rig, form, intercepted))
        replies, _ = await run(stub, shape, values, compression="deflate", metadata=md(case))
        assert replies == expected(shape, values)
    finally:
        server.p2pt.remove_listener("data", on_server)
        client.p2pt.remove_listener("data", on_client)
    text_up, text_down = sum(map(len, values)), sum(map(len, replies))
    if form == "binary":
        assert sum(to_server) < text_up // 2 and sum(to_client) < text_down // 2
    else:
        assert sum(to_server) >= text_up and sum(to_client) >= text_down


# -- cancellation --------------------------------------------------------------------------------


async def _running(rig: Rig, stub: Stub, shape: str, case: str) -> Any:
    """A call of ``shape`` whose method has started and waits (its first request and first
    reply, if any, gone through)."""
    call = start(stub, shape, ["v"], metadata=md(case, "hang"))
    if shape in ("stream_unary", "stream_stream"):
        await call.write(StringValue(value="a"))
    if shape in ("unary_stream", "stream_stream"):
        assert (await call.read()).value in ("v0", "a")
    await asyncio.wait_for(rig.shapes.case(case).started.wait(), 10)
    return call


async def _awaited(call: Any, shape: str) -> Any:
    return await (call.read() if CARDINALITY[shape].server_streams else call)


async def test_cancel(rig: Rig, form: str, shape: str, case: str, intercepted: str) -> None:
    stub = Stub(maybe_intercepted(rig, form, intercepted))
    call = await _running(rig, stub, shape, case)
    assert call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await _awaited(call, shape)
    assert await call.code() is StatusCode.CANCELLED
    assert call.cancelled() and call.done() and not call.cancel()
    if shape in ("stream_unary", "stream_stream"):
        with pytest.raises(asyncio.InvalidStateError):
            await call.write(StringValue(value="late"))
    seen = rig.shapes.cases[case]
    await asyncio.wait_for(seen.ended.wait(), 10)
    assert seen.cancelled  # the servicer saw context.cancelled()


async def test_cancelling_the_waiting_task_cancels_the_call(
    rig: Rig, form: str, shape: str, case: str, intercepted: str
) -> None:
    stub = Stub(maybe_intercepted(rig, form, intercepted))
    call = await _running(rig, stub, shape, case)
    entered = asyncio.Event()

    async def wait() -> Any:
        entered.set()
        return await _awaited(call, shape)

    waiting = asyncio.ensure_future(wait())
    await entered.wait()  # and it waits on the call since
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await call.code() is StatusCode.CANCELLED
    seen = rig.shapes.cases[case]
    await asyncio.wait_for(seen.ended.wait(), 10)
    assert seen.cancelled
