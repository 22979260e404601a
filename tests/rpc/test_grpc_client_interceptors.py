"""grpc.aio's client interceptor classes on a p2prpc ``Channel``, run as grpc.aio runs them.

``grpc.aio.UnaryUnaryClientInterceptor`` and its three siblings, written as a grpc.aio
application writes them, wrap calls of the route guide's four shapes (p2prpc's generated stubs
and servicer) between whole peers over WebRTC on loopback, shared by the module: what they are
given (grpc.aio's ``ClientCallDetails``, the request or request iterator), what ``continuation``
returns (the call, of grpc.aio's classes), and what they may do: change the metadata or the
request, return another reply or an async iterator of replies, raise, call ``continuation``
again, read the call's state; mixed with p2prpc's own ``intercept_call`` form in one chain. The
features a client interceptor could change on every shape (retries, deadlines, metadata,
compression, cancellation) run with grpc.aio's classes in ``test_every_shape.py`` too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest
import pytest_asyncio
from call_shapes import SHAPES
from routeguide_p2prpc import RouteGuideServicer, RouteGuideStub, add_RouteGuideServicer_to_node
from routeguide_pb2 import Feature, Point, Rectangle, RouteNote, RouteSummary

from p2prpc.node import Node
from p2prpc.rpc import NO_RETRY, Channel, ClientCallDetails, ServicerContext, StatusCode
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICE = "routeguide.RouteGuide"
METHOD = {
    "unary_unary": "GetFeature",
    "unary_stream": "ListFeatures",
    "stream_unary": "RecordRoute",
    "stream_stream": "RouteChat",
}
GRPC_CALL: dict[str, type[Any]] = {
    "unary_unary": grpc.aio.UnaryUnaryCall,
    "unary_stream": grpc.aio.UnaryStreamCall,
    "stream_unary": grpc.aio.StreamUnaryCall,
    "stream_stream": grpc.aio.StreamStreamCall,
}
#: Seconds of a short timeout (the server's "hang" waits much longer).
SHORT = 0.3


def streams_replies(shape: str) -> bool:
    return shape in ("unary_stream", "stream_stream")


def streams_requests(shape: str) -> bool:
    return shape in ("stream_unary", "stream_stream")


# -- the server ----------------------------------------------------------------------------------


@dataclass
class Seen:
    """What the server saw of one test's calls."""

    attempts: int = 0
    metadata: list[tuple[tuple[str, Any], ...]] = field(default_factory=list)  # each attempt
    values: list[list[int]] = field(default_factory=list)  # the requests of each attempt
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool | None = None


def value_of(message: Any) -> int:
    """The number a request carries."""
    if isinstance(message, Rectangle):
        return int(message.lo.latitude)
    if isinstance(message, RouteNote):
        return int(message.message)
    return int(message.latitude)


class Guide(RouteGuideServicer):
    """The route guide, told by metadata how to behave: ``x-case`` names the test; ``x-mode``
    (repeatable) ``fail-once`` (UNAVAILABLE on the first attempt, before reading any request),
    ``meta`` (initial and trailing metadata), ``abort`` (NOT_FOUND with a trailer), ``hang``
    (after the first request and the first reply, waits until stopped)."""

    def __init__(self) -> None:
        self.cases: dict[str, Seen] = {}

    def case(self, case: str) -> Seen:
        return self.cases.setdefault(case, Seen())

    async def _begin(self, context: ServicerContext) -> tuple[Seen, set[str]]:
        metadata = tuple(context.invocation_metadata())
        seen = self.case(str(dict(metadata)["x-case"]))
        seen.attempts += 1
        seen.metadata.append(metadata)
        seen.values.append([])
        modes = {str(value) for key, value in metadata if key == "x-mode"}
        if "fail-once" in modes and seen.attempts == 1:
            await context.abort(StatusCode.UNAVAILABLE, "not this time")
        if "abort" in modes:
            await context.abort(StatusCode.NOT_FOUND, "no such thing", [("x-why", "none")])
        if "meta" in modes:
            await context.send_initial_metadata([("x-initial", "i")])
            context.set_trailing_metadata([("x-trailing", "t")])
        return seen, modes

    @staticmethod
    async def _hang(seen: Seen, context: ServicerContext) -> None:
        seen.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            seen.cancelled = context.cancelled()
            seen.ended.set()

    async def GetFeature(self, request: Point, context: ServicerContext) -> Feature:
        seen, modes = await self._begin(context)
        seen.values[-1].append(value_of(request))
        if "hang" in modes:
            await self._hang(seen, context)
        return Feature(name=f"f{request.latitude}", location=request)

    async def ListFeatures(
        self, request: Rectangle, context: ServicerContext
    ) -> AsyncIterator[Feature]:
        seen, modes = await self._begin(context)
        seen.values[-1].append(value_of(request))
        for i in range(3):
            yield Feature(name=f"f{request.lo.latitude}-{i}")
            if "hang" in modes:
                await self._hang(seen, context)

    async def RecordRoute(
        self, requests: AsyncIterator[Point], context: ServicerContext
    ) -> RouteSummary:
        seen, modes = await self._begin(context)
        async for point in requests:
            seen.values[-1].append(value_of(point))
            if "hang" in modes:
                await self._hang(seen, context)
        got = seen.values[-1]
        return RouteSummary(point_count=len(got), distance=sum(got))

    async def RouteChat(
        self, requests: AsyncIterator[RouteNote], context: ServicerContext
    ) -> AsyncIterator[RouteNote]:
        seen, modes = await self._begin(context)
        async for note in requests:
            seen.values[-1].append(value_of(note))
            yield RouteNote(message=note.message)
            if "hang" in modes:
                await self._hang(seen, context)


@dataclass
class Rig:
    server: Node
    client: Node
    guide: Guide


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig() -> AsyncIterator[Rig]:
    async with TrackerServer(LOOPBACK, 0) as tracker:
        guide = Guide()
        server = loopback_node([tracker.url], "grpc-interceptors")
        client = loopback_node([tracker.url], "grpc-interceptors")
        try:
            add_RouteGuideServicer_to_node(guide, server)
            await server.start()
            await client.start()
            await client.wait_for_server(SERVICE, timeout=30)
            yield Rig(server, client, guide)
        finally:
            await client.close()
            await server.close()


@pytest.fixture(params=SHAPES)
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def case() -> str:
    return uuid.uuid4().hex


# -- the client ----------------------------------------------------------------------------------


def values_for(shape: str) -> list[int]:
    return [1, 2, 3] if streams_requests(shape) else [1]


def message(shape: str, value: int) -> Any:
    """A request of ``shape``'s method carrying ``value``."""
    if shape == "unary_stream":
        return Rectangle(lo=Point(latitude=value))
    if shape == "stream_stream":
        return RouteNote(message=str(value))
    return Point(latitude=value)


def with_value(request: Any, value: int) -> Any:
    """``request`` carrying ``value`` instead."""
    changed = type(request)()
    changed.CopyFrom(request)
    if isinstance(changed, Rectangle):
        changed.lo.latitude = value
    elif isinstance(changed, RouteNote):
        changed.message = str(value)
    else:
        changed.latitude = value
    return changed


def text(reply: Any) -> str:
    if isinstance(reply, RouteSummary):
        return f"{reply.point_count}:{reply.distance}"
    if isinstance(reply, RouteNote):
        return str(reply.message)
    return str(reply.name)


def expected(shape: str, values: list[int]) -> list[str]:
    """What the guide replies to ``values``."""
    if shape == "unary_unary":
        return [f"f{values[0]}"]
    if shape == "unary_stream":
        return [f"f{values[0]}-{i}" for i in range(3)]
    if shape == "stream_unary":
        return [f"{len(values)}:{sum(values)}"]
    return [str(v) for v in values]


def start(channel: Channel, shape: str, values: list[int], *, iterable: bool, **kw: Any) -> Any:
    """Start a call of ``shape`` through the generated stub: its request, or its requests as an
    iterable (``iterable``) or written later (:func:`finish`)."""
    method = getattr(RouteGuideStub(channel), METHOD[shape])
    if not streams_requests(shape):
        return method(message(shape, values[0]), **kw)
    if iterable:
        return method([message(shape, v) for v in values], **kw)
    return method(**kw)


async def finish(call: Any, shape: str, values: list[int], *, iterable: bool) -> list[str]:
    """Drive a started call to its end as a caller would, the replies as text."""
    if shape == "unary_unary":
        return [text(await call)]
    if shape == "unary_stream":
        return [text(reply) async for reply in call]
    if not iterable:
        for value in values:
            await call.write(message(shape, value))
        await call.done_writing()
    if shape == "stream_unary":
        return [text(await call)]
    return [text(reply) async for reply in call]


async def run(
    channel: Channel, shape: str, values: list[int], *, iterable: bool = False, **kw: Any
) -> tuple[list[str], Any]:
    call = start(channel, shape, values, iterable=iterable, **kw)
    return await finish(call, shape, values, iterable=iterable), call


def md(case: str, *modes: str) -> list[tuple[str, str]]:
    return [("x-case", case), *(("x-mode", m) for m in modes)]


def tags(seen: Seen, attempt: int = -1) -> list[Any]:
    return [value for key, value in seen.metadata[attempt] if key == "x-by"]


# -- interceptors, as a grpc.aio application writes them -----------------------------------------

Continuation = Callable[[Any, Any], Awaitable[Any]]


class EveryShape(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """One class implementing grpc.aio's four interfaces, each calling ``intercept``."""

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        raise NotImplementedError

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await self.intercept(continuation, client_call_details, request, False)

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await self.intercept(continuation, client_call_details, request, True)

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self.intercept(continuation, client_call_details, request_iterator, False)

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self.intercept(continuation, client_call_details, request_iterator, True)


class Look(EveryShape):
    """Records what it is given and what ``continuation`` returns, and changes nothing."""

    def __init__(self) -> None:
        self.details: list[Any] = []
        self.requests: list[Any] = []
        self.calls: list[Any] = []

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        self.details.append(details)
        self.requests.append(request)
        call = await continuation(details, request)
        self.calls.append(call)
        return call


class Tag(EveryShape):
    """Adds ``("x-by", name)`` to the metadata: in a new ``ClientCallDetails``, or (``in_place``)
    by changing the ``grpc.aio.Metadata`` it was given."""

    def __init__(self, name: str, *, in_place: bool = False) -> None:
        self.name = name
        self.in_place = in_place

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        if self.in_place:
            details.metadata.add("x-by", self.name)
        else:
            metadata = [*(details.metadata or ()), ("x-by", self.name)]
            details = grpc.aio.ClientCallDetails(
                details.method,
                details.timeout,
                grpc.aio.Metadata(*metadata),
                details.credentials,
                details.wait_for_ready,
            )
        return await continuation(details, request)


class PassThrough:
    """p2prpc's own form: tags the call ``p2prpc``."""

    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        return await proceed(details.with_metadata(("x-by", "p2prpc")))


class AddTen(EveryShape):
    """Adds 10 to the request, or to each request of a request stream (wrapping the iterator)."""

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        if isinstance(request, Point | Rectangle | RouteNote):
            return await continuation(details, with_value(request, value_of(request) + 10))
        requests = request

        async def added() -> AsyncIterator[Any]:
            async for each in _aiter(requests):
                yield with_value(each, value_of(each) + 10)

        return await continuation(details, added())


async def _aiter(requests: Any) -> AsyncIterator[Any]:
    """A request iterator as grpc.aio's interceptors meet it: async, or a plain iterable."""
    if hasattr(requests, "__aiter__"):
        async for request in requests:
            yield request
    else:
        for request in requests:
            yield request


def shout(reply: Any) -> Any:
    if isinstance(reply, RouteSummary):
        return RouteSummary(point_count=reply.point_count * 100, distance=reply.distance)
    if isinstance(reply, RouteNote):
        return RouteNote(message=reply.message + "00")
    return Feature(name=reply.name.upper())


class Shout(EveryShape):
    """Returns another reply (single reply), or an async iterator of other replies."""

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        call = await continuation(details, request)
        if not streams:
            return shout(await call)

        async def shouted() -> AsyncIterator[Any]:
            async for reply in call:
                yield shout(reply)

        return shouted()


def shouted(shape: str, replies: list[str]) -> list[str]:
    if shape == "unary_unary":
        return [r.upper() for r in replies]
    if shape == "stream_unary":
        return [f"{int(r.split(':')[0]) * 100}:{r.split(':')[1]}" for r in replies]
    if shape == "stream_stream":
        return [r + "00" for r in replies]
    return [r.upper() for r in replies]


class Refuse(EveryShape):
    """Raises grpc.aio's ``AioRpcError``, before (``after=False``) or after the call."""

    def __init__(self, *, after: bool) -> None:
        self.after = after

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        if self.after:
            call = await continuation(details, request)
            await call.initial_metadata()  # the server has answered
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(("x-refused", "1")),
            details="not from here",
        )


class RetryUnavailable(EveryShape):
    """Calls ``continuation`` again when the call ended UNAVAILABLE (a retry of its own)."""

    def __init__(self) -> None:
        self.codes: list[grpc.StatusCode] = []

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        call = await continuation(details, request)
        code = await call.code()
        self.codes.append(code)
        if code is grpc.StatusCode.UNAVAILABLE:
            call = await continuation(details, request)
        return call


@dataclass
class State:
    code: grpc.StatusCode
    details: str
    initial: tuple[Any, ...]
    trailing: tuple[Any, ...]


class Observe(EveryShape):
    """Reads the state of the call ``continuation`` made once it is over: code, details, initial
    and trailing metadata (its replies pass through it on their way to the caller)."""

    def __init__(self) -> None:
        self.states: list[State] = []

    async def _record(self, call: Any) -> None:
        self.states.append(
            State(
                await call.code(),
                await call.details(),
                tuple(await call.initial_metadata()),
                tuple(await call.trailing_metadata()),
            )
        )

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        call = await continuation(details, request)
        if not streams:
            try:
                return await call
            finally:
                await self._record(call)

        async def replies() -> AsyncIterator[Any]:
            try:
                async for reply in call:
                    yield reply
            finally:
                await self._record(call)

        return replies()


class Held(EveryShape):
    """Waits, before it goes on, for what never comes."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        self.waiting.set()
        await asyncio.Event().wait()
        return await continuation(details, request)


class Shorten(EveryShape):
    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        return await continuation(details._replace(timeout=SHORT), request)


# -- what a grpc.aio interceptor is given, and what continuation returns -------------------------


@pytest.mark.parametrize("iterable", [False, True], ids=["written", "iterable"])
async def test_an_interceptor_is_given_what_grpc_aio_gives_it(
    rig: Rig, shape: str, case: str, iterable: bool
) -> None:
    look = Look()
    channel = Channel(rig.client, interceptors=[look])
    values = values_for(shape)
    call = start(
        channel,
        shape,
        values,
        iterable=iterable,
        timeout=20,
        metadata=md(case),
        wait_for_ready=True,
        compression="deflate",
    )
    assert isinstance(call, GRPC_CALL[shape])
    assert await finish(call, shape, values, iterable=iterable) == expected(shape, values)
    assert await call.code() is grpc.StatusCode.OK
    (details,) = look.details
    assert isinstance(details, grpc.aio.ClientCallDetails)
    method: Any = details.method  # bytes, as grpc.aio gives it (its type stubs say str)
    assert method == f"/{SERVICE}/{METHOD[shape]}".encode()
    assert isinstance(details.metadata, grpc.aio.Metadata)
    assert ("x-case", case) in tuple(details.metadata)
    # The call's compression, shown as grpc.aio shows it.
    assert ("grpc-internal-encoding-request", "deflate") in tuple(details.metadata)
    assert details.timeout == 20 and details.wait_for_ready is True
    assert details.credentials is None
    (request,) = look.requests
    if not streams_requests(shape):
        assert request == message(shape, values[0])
    elif iterable:
        assert [value_of(m) for m in request] == values  # the caller's own iterable
    else:
        assert hasattr(request, "__aiter__")  # the caller's writes, as an async iterator
    (made,) = look.calls
    assert isinstance(made, GRPC_CALL[shape])
    assert made.done() and await made.code() is grpc.StatusCode.OK
    seen = rig.guide.cases[case]
    assert seen.attempts == 1 and seen.values == [values]
    assert not any(key.startswith("grpc-") for key, _ in seen.metadata[0])


async def test_metadata_changed_by_a_chain_of_both_forms_reaches_the_server_in_order(
    rig: Rig, shape: str, case: str
) -> None:
    chain: list[Any] = [Tag("g1"), PassThrough(), Tag("g2", in_place=True), Tag("g3")]
    values = values_for(shape)
    replies, call = await run(
        Channel(rig.client, interceptors=chain), shape, values, metadata=md(case)
    )
    assert replies == expected(shape, values)
    assert await call.code() is grpc.StatusCode.OK
    assert tags(rig.guide.cases[case]) == ["g1", "p2prpc", "g2", "g3"]  # outermost first


@pytest.mark.parametrize("iterable", [False, True], ids=["written", "iterable"])
async def test_an_interceptor_changes_the_request(
    rig: Rig, shape: str, case: str, iterable: bool
) -> None:
    values = values_for(shape)
    channel = Channel(rig.client, interceptors=[AddTen()])
    replies, call = await run(channel, shape, values, iterable=iterable, metadata=md(case))
    changed = [v + 10 for v in values]
    assert rig.guide.cases[case].values == [changed]
    assert replies == expected(shape, changed)
    assert await call.code() is grpc.StatusCode.OK


async def test_an_interceptor_returns_other_replies(rig: Rig, shape: str, case: str) -> None:
    values = values_for(shape)
    channel = Channel(rig.client, interceptors=[Shout()])
    replies, call = await run(channel, shape, values, metadata=md(case, "meta"))
    assert replies == shouted(shape, expected(shape, values))
    assert await call.code() is grpc.StatusCode.OK
    assert ("x-initial", "i") in tuple(await call.initial_metadata())  # the call's own
    assert ("x-trailing", "t") in tuple(await call.trailing_metadata())


async def test_what_an_inner_interceptor_returned_reaches_outer_ones_as_a_call(
    rig: Rig, shape: str, case: str
) -> None:
    """An inner interceptor's reply (or async iterator of replies) reaches a grpc.aio interceptor
    outside it as a call object of the shape, and a p2prpc one as the reply (or a call)."""
    look = Look()
    results: list[Any] = []

    class Keep(PassThrough):
        async def intercept_call(self, details: Any, proceed: Any) -> Any:
            results.append(await proceed(details))
            return results[-1]

    values = values_for(shape)
    channel = Channel(rig.client, interceptors=[look, Keep(), Shout()])
    replies, call = await run(channel, shape, values, metadata=md(case))
    assert replies == shouted(shape, expected(shape, values))
    assert await call.code() is grpc.StatusCode.OK
    (made,) = look.calls
    assert isinstance(made, GRPC_CALL[shape])
    (result,) = results
    if streams_replies(shape):
        assert isinstance(result, GRPC_CALL[shape])
    else:
        assert text(result) == shouted(shape, expected(shape, values))[0]
        assert await made == result and await made.code() is grpc.StatusCode.OK


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
async def test_an_interceptor_raises(rig: Rig, shape: str, case: str, after: bool) -> None:
    values = values_for(shape)
    channel = Channel(rig.client, interceptors=[Refuse(after=after)])
    modes = ("hang",) if after and streams_replies(shape) else ()
    call = start(channel, shape, values, iterable=True, metadata=md(case, *modes))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await finish(call, shape, values, iterable=True)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "not from here"
    assert ("x-refused", "1") in tuple(caught.value.trailing_metadata())
    assert await call.code() is grpc.StatusCode.PERMISSION_DENIED
    assert await call.details() == "not from here"
    if not after:
        assert case not in rig.guide.cases  # nothing was sent
    elif streams_replies(shape):  # the call it made and dropped is cancelled: its server is told
        seen = rig.guide.cases[case]
        await asyncio.wait_for(seen.ended.wait(), 10)
        assert seen.cancelled


async def test_an_interceptor_calls_continuation_again(rig: Rig, shape: str, case: str) -> None:
    retry = RetryUnavailable()
    values = values_for(shape)
    channel = Channel(rig.client, interceptors=[retry], retry_policy=NO_RETRY)
    replies, call = await run(channel, shape, values, iterable=True, metadata=md(case, "fail-once"))
    assert replies == expected(shape, values)
    assert await call.code() is grpc.StatusCode.OK
    assert retry.codes == [grpc.StatusCode.UNAVAILABLE]
    seen = rig.guide.cases[case]
    assert seen.attempts == 2 and seen.values[-1] == values


@pytest.mark.parametrize("mode", ["meta", "abort"])
async def test_an_interceptor_reads_the_state_of_the_call(
    rig: Rig, shape: str, case: str, mode: str
) -> None:
    observe = Observe()
    values = values_for(shape)
    channel = Channel(rig.client, interceptors=[observe])
    call = start(channel, shape, values, iterable=True, metadata=md(case, mode))
    if mode == "meta":
        assert await finish(call, shape, values, iterable=True) == expected(shape, values)
        (state,) = observe.states
        assert state.code is grpc.StatusCode.OK
        assert ("x-initial", "i") in state.initial and ("x-trailing", "t") in state.trailing
        assert await call.code() is grpc.StatusCode.OK
        return
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await finish(call, shape, values, iterable=True)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    (state,) = observe.states
    assert state.code is grpc.StatusCode.NOT_FOUND and state.details == "no such thing"
    assert ("x-why", "none") in state.trailing
    assert await call.code() is grpc.StatusCode.NOT_FOUND


async def test_an_interceptor_is_used_for_the_shapes_it_implements_only(
    rig: Rig, shape: str, case: str
) -> None:
    class UnaryOnly(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            metadata = grpc.aio.Metadata(*details.metadata, ("x-by", "unary"))
            return await continuation(details._replace(metadata=metadata), request)

    class ReplyStreams(
        grpc.aio.UnaryStreamClientInterceptor, grpc.aio.StreamStreamClientInterceptor
    ):
        async def _tag(self, continuation: Any, details: Any, request: Any) -> Any:
            metadata = grpc.aio.Metadata(*details.metadata, ("x-by", "streams"))
            return await continuation(details._replace(metadata=metadata), request)

        intercept_unary_stream = intercept_stream_stream = _tag  # type: ignore[assignment]

    values = values_for(shape)
    channel = Channel(rig.client, interceptors=[UnaryOnly(), ReplyStreams(), Tag("all")])
    replies, _ = await run(channel, shape, values, metadata=md(case))
    assert replies == expected(shape, values)
    want = {
        "unary_unary": ["unary", "all"],
        "unary_stream": ["streams", "all"],
        "stream_unary": ["all"],
        "stream_stream": ["streams", "all"],
    }
    assert tags(rig.guide.cases[case]) == want[shape]


# -- the call's deadline, cancel and waits hold through grpc.aio's interceptors ------------------


@pytest.mark.parametrize("end", ["cancel", "deadline"])
async def test_a_call_held_by_an_interceptor_ends_with_its_deadline_or_cancel(
    rig: Rig, shape: str, end: str
) -> None:
    """The deadline counts from the call's start, while an interceptor holds it, and ``cancel``
    reaches the interceptor; a write waiting for the call to be made ends with it."""
    held = Held()
    values = values_for(shape)
    timeout = SHORT if end == "deadline" else None
    call = start(
        Channel(rig.client, interceptors=[held]), shape, values, iterable=False, timeout=timeout
    )
    writer = None
    if streams_requests(shape):
        writer = asyncio.ensure_future(call.write(message(shape, 1)))
    await held.waiting.wait()
    if end == "cancel":
        assert call.cancel()
    expected_error = grpc.aio.AioRpcError if end == "deadline" else asyncio.CancelledError
    with pytest.raises(expected_error):
        async with asyncio.timeout(5):
            await (call.read() if streams_replies(shape) else call)
    code = grpc.StatusCode.DEADLINE_EXCEEDED if end == "deadline" else grpc.StatusCode.CANCELLED
    assert await call.code() is code
    if writer is not None:
        with pytest.raises(expected_error):
            await asyncio.wait_for(writer, 5)


async def test_a_timeout_an_interceptor_sets_ends_the_call_and_its_method(
    rig: Rig, shape: str, case: str
) -> None:
    values = values_for(shape)
    channel = Channel(rig.client, interceptors=[Shorten()], retry_policy=NO_RETRY)
    call = start(channel, shape, values, iterable=True, metadata=md(case, "hang"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await finish(call, shape, values, iterable=True)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert await call.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(rig.guide.cases[case].ended.wait(), 10)  # the server stopped too


async def test_cancelling_reaches_the_call_an_interceptor_made(
    rig: Rig, shape: str, case: str
) -> None:
    look = Look()
    call = start(
        Channel(rig.client, interceptors=[look]),
        shape,
        [1],
        iterable=False,
        metadata=md(case, "hang"),
    )
    if streams_requests(shape):
        await call.write(message(shape, 1))
    if streams_replies(shape):
        await call.read()
    seen = rig.guide.case(case)
    await asyncio.wait_for(seen.started.wait(), 10)
    assert call.cancel()
    await asyncio.wait_for(seen.ended.wait(), 10)
    assert seen.cancelled
    (made,) = look.calls
    assert made.cancelled() and await made.code() is grpc.StatusCode.CANCELLED
    assert call.cancelled() and await call.code() is grpc.StatusCode.CANCELLED


# -- what a channel takes ------------------------------------------------------------------------


async def test_a_channel_refuses_what_is_no_interceptor(rig: Rig) -> None:
    class Bare(grpc.aio.ClientInterceptor):
        pass

    class Server(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
            return await continuation(handler_call_details)

    for wrong in (object(), Bare(), Server()):
        with pytest.raises(ValueError, match="must be UnaryUnaryClientInterceptor or"):
            Channel(rig.client, interceptors=[wrong])  # type: ignore[list-item]
    Channel(rig.client, interceptors=[Look(), PassThrough(), Tag("t")])


async def test_call_credentials_set_by_an_interceptor_are_refused(rig: Rig, case: str) -> None:
    class Credentials(EveryShape):
        async def intercept(
            self, continuation: Continuation, details: Any, request: Any, streams: bool
        ) -> Any:
            credentials = grpc.access_token_call_credentials("token")
            return await continuation(details._replace(credentials=credentials), request)

    channel = Channel(rig.client, interceptors=[Credentials()])
    call = start(channel, "unary_unary", [1], iterable=False, metadata=md(case))
    with pytest.raises(grpc.aio.UsageError):
        await call
    assert await call.code() is grpc.StatusCode.UNKNOWN
    assert case not in rig.guide.cases


# -- requests the caller writes ------------------------------------------------------------------


class Answer(EveryShape):
    """Answers from the requests without a call (reads the request iterator itself)."""

    async def intercept(
        self, continuation: Continuation, details: Any, request: Any, streams: bool
    ) -> Any:
        values = [value_of(each) async for each in _aiter(request)]
        if not streams:
            return RouteSummary(point_count=len(values), distance=sum(values))

        async def replies() -> AsyncIterator[Any]:
            for value in values:
                yield RouteNote(message=str(value))

        return replies()


@pytest.mark.parametrize("shape", ["stream_unary", "stream_stream"])
async def test_an_interceptor_reads_the_requests_written_and_answers_without_a_call(
    rig: Rig, shape: str, case: str
) -> None:
    values = values_for(shape)
    call = start(Channel(rig.client, interceptors=[Answer()]), shape, values, iterable=False)
    for value in values:
        await call.write(message(shape, value))
    await call.done_writing()
    replies = [text(await call)] if shape == "stream_unary" else [text(r) async for r in call]
    assert replies == expected(shape, values)
    assert await call.code() is grpc.StatusCode.OK
    assert case not in rig.guide.cases


@pytest.mark.parametrize("shape", ["stream_unary", "stream_stream"])
async def test_writes_wait_while_an_interceptor_calls_continuation_again(
    rig: Rig, shape: str, case: str
) -> None:
    """The first call fails before its server reads a request; the caller's writes made
    meanwhile wait for the call the interceptor makes next (none fails), and its end of writing
    reaches that call."""
    retry = RetryUnavailable()
    values = values_for(shape)
    channel = Channel(rig.client, interceptors=[retry], retry_policy=NO_RETRY)
    call = start(channel, shape, values, iterable=False, metadata=md(case, "fail-once"))
    for value in values:
        await call.write(message(shape, value))
    await call.done_writing()
    replies = await finish(call, shape, [], iterable=True)
    assert await call.code() is grpc.StatusCode.OK
    seen = rig.guide.cases[case]
    assert seen.attempts == 2
    got = seen.values[-1]
    assert got == values[len(values) - len(got) :]  # what the first call took is not sent again
    assert replies == expected(shape, got)


class Watch(grpc.aio.StreamStreamClientInterceptor):
    """Registers a done callback on what the interceptors inside give, as grpc.aio code does."""

    def __init__(self) -> None:
        self.done: list[Any] = []
        self.given: list[Any] = []

    async def intercept_stream_stream(
        self, continuation: Continuation, client_call_details: Any, request_iterator: Any
    ) -> Any:
        call = await continuation(client_call_details, request_iterator)
        self.given.append(call)
        call.add_done_callback(self.done.append)
        return call


@pytest.mark.parametrize("how", ["read to the end", "cancelled"])
async def test_what_an_interceptor_answered_alone_is_done_and_says_so(
    rig: Rig, case: str, how: str
) -> None:
    """An inner interceptor answers with replies of its own and makes no call: what the outer
    one is given still ends, as a call does (done, its callbacks run once), when the replies are
    read to the end or it is cancelled."""
    watch = Watch()
    values = values_for("stream_stream")
    call = start(
        Channel(rig.client, interceptors=[watch, Answer()]), "stream_stream", values, iterable=True
    )
    if how == "cancelled":
        await call.read()
        (given,) = watch.given
        assert not given.done() and watch.done == []
        assert given.cancel() and given.cancelled()
    else:
        assert [text(r) async for r in call] == expected("stream_stream", values)
        (given,) = watch.given
    assert given.done() and watch.done == [given]
    late: list[Any] = []
    given.add_done_callback(late.append)
    assert late == [given]
    assert case not in rig.guide.cases
