"""grpc.aio server code served by a node as it is: grpcio-tools' ``add_XServicer_to_server``,
plain ``def`` methods, grpc.aio's ``ServerInterceptor``, the servicer context's grpc.aio methods,
and the server's life (``stop(grace)``, ``wait_for_termination``), over real WebRTC.

The ``_pb2_grpc`` module is what ``python -m grpc_tools.protoc --grpc_python_out`` writes for
``protos/routeguide.proto`` today; the client is p2prpc's generated stub.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import grpc.aio
import pytest
import routeguide_p2prpc
import routeguide_pb2 as rg
from google.protobuf import any_pb2
from google.protobuf.empty_pb2 import Empty
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from p2prpc.errors import NoAddress, RpcError
from p2prpc.node import Node
from p2prpc.rpc import (
    Channel,
    HandlerCallDetails,
    JSONMethod,
    RetryPolicy,
    Server,
    StatusCode,
    StreamStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.rpc.serving import compression_name
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "routeguide.RouteGuide"
ONCE = RetryPolicy(max_attempts=1)


@pytest.fixture(scope="module")
def grpc_module(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """grpcio-tools' ``routeguide_pb2_grpc``, generated now (its ``routeguide_pb2`` import is
    the one in generated/, so both sides share the message classes)."""
    out = tmp_path_factory.mktemp("grpc_out")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--grpc_python_out={out}",
            str(ROOT / "protos" / "routeguide.proto"),
        ],
        check=True,
    )
    spec = importlib.util.spec_from_file_location(
        "routeguide_pb2_grpc", out / "routeguide_pb2_grpc.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def pair(
    server: dict[str, Any] | None = None, **client: Any
) -> AsyncIterator[tuple[Node, Node]]:
    """A server node (``server`` its keywords) and a client node that has met it."""
    async with TrackerServer(LOOPBACK, 0) as tracker:
        nodes = [
            loopback_node([tracker.url], "grpc-server", **(server or {})),
            loopback_node([tracker.url], "grpc-server", **client),
        ]
        try:
            for node in nodes:
                await node.start()
            async with asyncio.timeout(30):
                for node in nodes:
                    await node.wait_for_peers(1)
            yield nodes[0], nodes[1]
        finally:
            for node in nodes:
                await node.close()


def stub(client: Node) -> routeguide_p2prpc.RouteGuideStub:
    return routeguide_p2prpc.RouteGuideStub(Channel(client, retry_policy=ONCE))


def route() -> list[rg.Point]:
    return [rg.Point(latitude=i, longitude=-i) for i in range(1, 4)]


def notes() -> list[rg.RouteNote]:
    return [rg.RouteNote(message=m) for m in ("a", "b", "c")]


def servicer_class(grpc_module: ModuleType, style: str) -> type[Any]:
    """A subclass of grpcio-tools' ``RouteGuideServicer`` in one of grpc.aio's styles, leaving
    WatchFeatures unimplemented."""
    base = grpc_module.RouteGuideServicer

    if style == "async":

        class AsyncGuide(base):  # type: ignore[misc, valid-type]
            async def GetFeature(self, request: rg.Point, context: Any) -> rg.Feature:
                await context.send_initial_metadata([("style", "async")])
                return rg.Feature(name=f"at {request.latitude}", location=request)

            async def ListFeatures(
                self, request: rg.Rectangle, context: Any
            ) -> AsyncIterator[rg.Feature]:
                for latitude in range(request.lo.latitude, request.hi.latitude + 1):
                    yield rg.Feature(name=str(latitude))

            async def RecordRoute(self, request_iterator: Any, context: Any) -> rg.RouteSummary:
                count = 0
                async for _ in request_iterator:
                    count += 1
                return rg.RouteSummary(point_count=count)

            async def RouteChat(
                self, request_iterator: Any, context: Any
            ) -> AsyncIterator[rg.RouteNote]:
                async for note in request_iterator:
                    yield rg.RouteNote(message=note.message.upper())

        return AsyncGuide

    if style == "reader-writer":  # grpc.aio's other streaming style: context.read() / write()

        class ReaderWriterGuide(base):  # type: ignore[misc, valid-type]
            async def GetFeature(self, request: rg.Point, context: Any) -> rg.Feature:
                assert await context.read() is grpc.aio.EOF  # its request was given
                return rg.Feature(name=f"at {request.latitude}", location=request)

            async def ListFeatures(self, request: rg.Rectangle, context: Any) -> None:
                for latitude in range(request.lo.latitude, request.hi.latitude + 1):
                    await context.write(rg.Feature(name=str(latitude)))

            async def RecordRoute(self, request_iterator: Any, context: Any) -> rg.RouteSummary:
                count = 0
                while await context.read() is not grpc.aio.EOF:
                    count += 1
                return rg.RouteSummary(point_count=count)

            async def RouteChat(self, request_iterator: Any, context: Any) -> None:
                while (note := await context.read()) is not grpc.aio.EOF:
                    await context.write(rg.RouteNote(message=note.message.upper()))

        return ReaderWriterGuide

    class SyncGuide(base):  # type: ignore[misc, valid-type]
        """Plain ``def`` methods, as grpc's synchronous servicers are written."""

        def __init__(self) -> None:
            self.threads: set[str] = set()

        def _seen(self) -> None:
            self.threads.add(threading.current_thread().name)

        def GetFeature(self, request: rg.Point, context: Any) -> rg.Feature:
            self._seen()
            if request.latitude < 0:
                context.abort(grpc.StatusCode.OUT_OF_RANGE, "south of the map")
            context.send_initial_metadata([("style", "sync")])
            return rg.Feature(name=f"at {request.latitude}", location=request)

        def ListFeatures(self, request: rg.Rectangle, context: Any) -> Iterator[rg.Feature]:
            self._seen()
            for latitude in range(request.lo.latitude, request.hi.latitude + 1):
                self._seen()
                yield rg.Feature(name=str(latitude))

        def RecordRoute(
            self, request_iterator: Iterator[rg.Point], context: Any
        ) -> rg.RouteSummary:
            self._seen()
            return rg.RouteSummary(point_count=sum(1 for _ in request_iterator))

        def RouteChat(
            self, request_iterator: Iterator[rg.RouteNote], context: Any
        ) -> Iterator[rg.RouteNote]:
            for note in request_iterator:
                self._seen()
                yield rg.RouteNote(message=note.message.upper())

    return SyncGuide


async def check_every_shape(client: Node) -> None:
    guide = stub(client)
    call = guide.GetFeature(rg.Point(latitude=7, longitude=8), timeout=10)
    feature = await call
    assert feature == rg.Feature(name="at 7", location=rg.Point(latitude=7, longitude=8))
    rectangle = rg.Rectangle(lo=rg.Point(latitude=1), hi=rg.Point(latitude=3))
    assert [f.name async for f in guide.ListFeatures(rectangle, timeout=10)] == ["1", "2", "3"]
    assert (await guide.RecordRoute(route(), timeout=10)).point_count == 3
    assert [n.message async for n in guide.RouteChat(notes(), timeout=10)] == ["A", "B", "C"]
    with pytest.raises(RpcError) as caught:
        async for _ in guide.WatchFeatures(Empty(), timeout=10):
            pass
    assert caught.value.code() is StatusCode.UNIMPLEMENTED  # grpcio-tools' default method


@pytest.mark.parametrize("style", ["async", "reader-writer", "sync"])
@pytest.mark.parametrize("target", ["node", "server"])
async def test_a_grpcio_tools_servicer_serves_every_shape(
    grpc_module: ModuleType, style: str, target: str
) -> None:
    pool = ThreadPoolExecutor(2, thread_name_prefix="migration")
    try:
        async with pair({"migration_thread_pool": pool}) as (server, client):
            servicer = servicer_class(grpc_module, style)()
            grpc_module.add_RouteGuideServicer_to_server(
                servicer, server if target == "node" else server.server
            )
            assert SERVICE in server.services
            await client.wait_for_server(SERVICE, timeout=10)  # its hello lists the service
            await check_every_shape(client)
            if style == "sync":
                # Every plain def ran on the server's pool, none on the event loop.
                assert servicer.threads and all(n.startswith("migration") for n in servicer.threads)
                with pytest.raises(RpcError) as caught:
                    await stub(client).GetFeature(rg.Point(latitude=-1), timeout=10)
                assert caught.value.code() is StatusCode.OUT_OF_RANGE
                assert caught.value.details() == "south of the map"
    finally:
        await asyncio.to_thread(pool.shutdown, wait=True)  # no method is left blocked in a thread


async def test_the_json_form_reaches_a_grpcio_tools_servicer(grpc_module: ModuleType) -> None:
    async with pair({"binary": False}) as (server, client):
        grpc_module.add_RouteGuideServicer_to_server(servicer_class(grpc_module, "async")(), server)
        await client.wait_for_server(SERVICE, timeout=10)
        await check_every_shape(client)


async def test_grpcio_tools_unimplemented_methods_answer_unimplemented(
    grpc_module: ModuleType,
) -> None:
    async with pair() as (server, client):
        server.add_generic_rpc_handlers(())  # grpc's call shape, with nothing in it
        grpc_module.add_RouteGuideServicer_to_server(grpc_module.RouteGuideServicer(), server)
        await client.wait_for_server(SERVICE, timeout=10)
        guide = stub(client)
        calls: list[Callable[[], Any]] = [
            lambda: guide.GetFeature(rg.Point(), timeout=10),
            lambda: guide.RecordRoute(route(), timeout=10),
        ]
        for call in calls:
            with pytest.raises(RpcError) as caught:
                await call()
            assert caught.value.code() is StatusCode.UNIMPLEMENTED
            assert caught.value.details() == "Method not implemented!"
        with pytest.raises(RpcError) as caught:
            async for _ in guide.RouteChat(notes(), timeout=10):
                pass
        assert caught.value.code() is StatusCode.UNIMPLEMENTED


async def test_a_generic_handler_alone_is_served_and_announced(grpc_module: ModuleType) -> None:
    async with pair() as (server, client):
        servicer = servicer_class(grpc_module, "async")()
        handlers = {
            "GetFeature": grpc.unary_unary_rpc_method_handler(
                servicer.GetFeature,
                request_deserializer=rg.Point.FromString,
                response_serializer=rg.Feature.SerializeToString,
            )
        }
        server.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, handlers)]
        )
        await client.wait_for_server(SERVICE, timeout=10)
        assert (await stub(client).GetFeature(rg.Point(latitude=2), timeout=10)).name == "at 2"
        with pytest.raises(RpcError) as caught:
            await stub(client).RecordRoute(route(), timeout=10)
        assert caught.value.code() is StatusCode.UNIMPLEMENTED


# -- interceptors ---------------------------------------------------------------------------------


def _terminator(sync: bool) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    """grpc's way to refuse a call from an interceptor: a handler that aborts (both forms of
    grpc's own examples)."""
    if sync:

        def refuse(ignored_request: Any, context: Any) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no token")

        return grpc.unary_unary_rpc_method_handler(refuse)

    async def refuse_async(ignored_request: Any, context: Any) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no token")

    return grpc.unary_unary_rpc_method_handler(refuse_async)


class RequireToken(grpc.aio.ServerInterceptor):
    def __init__(self, sync: bool) -> None:
        self.refusal = _terminator(sync)

    async def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        assert type(handler_call_details).__name__ == "GrpcHandlerCallDetails"
        assert handler_call_details.method.startswith(f"/{SERVICE}/")
        if ("x-token", "open sesame") not in handler_call_details.invocation_metadata:
            return self.refusal
        return await continuation(handler_call_details)


class Exclaim(grpc.aio.ServerInterceptor):
    """Wraps the unary handler, as grpc.aio interceptors do: a new handler around the old."""

    async def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.unary_unary:
            return handler
        inner = handler.unary_unary

        async def exclaim(request: Any, context: Any) -> Any:
            reply = await inner(request, context)
            return rg.Feature(name=reply.name + "!", location=reply.location)

        return grpc.unary_unary_rpc_method_handler(
            exclaim,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class Record:
    """p2prpc's own form, in the same chain."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def intercept_service(self, details: HandlerCallDetails, proceed: Any) -> Any:
        self.seen.append((details.method, details.peer))
        return await proceed(details)


@pytest.mark.parametrize("sync", [False, True], ids=["async-refusal", "sync-refusal"])
async def test_grpc_aio_server_interceptors_refuse_and_wrap_beside_p2prpc_ones(
    grpc_module: ModuleType, sync: bool
) -> None:
    record = Record()
    interceptors = [record, RequireToken(sync), Exclaim()]
    async with pair({"server_interceptors": interceptors}) as (server, client):
        grpc_module.add_RouteGuideServicer_to_server(servicer_class(grpc_module, "async")(), server)
        await client.wait_for_server(SERVICE, timeout=10)
        guide = stub(client)
        with pytest.raises(RpcError) as caught:
            await guide.GetFeature(rg.Point(latitude=1), timeout=10)
        assert (caught.value.code(), caught.value.details()) == (
            StatusCode.UNAUTHENTICATED,
            "no token",
        )
        with pytest.raises(RpcError) as caught:  # a streaming method refused the same way
            async for _ in guide.RouteChat(notes(), timeout=10):
                pass
        assert caught.value.code() is StatusCode.UNAUTHENTICATED
        token = [("x-token", "open sesame")]
        feature = await guide.GetFeature(rg.Point(latitude=1), metadata=token, timeout=10)
        assert feature.name == "at 1!"  # wrapped by the grpc.aio interceptor
        replies = guide.RouteChat(notes(), metadata=token, timeout=10)
        assert [n.message async for n in replies] == ["A", "B", "C"]  # passed through as it was
        assert [m for m, _ in record.seen] == [
            f"/{SERVICE}/{m}" for m in ("GetFeature", "RouteChat") * 2
        ]
        assert {peer for _, peer in record.seen} == {client.peer_id}


class Gate(grpc.aio.ServerInterceptor):
    """Refuses every call without the token, whatever its method, as an auth interceptor does."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        self.seen.append(handler_call_details.method)
        if ("x-token", "open sesame") not in handler_call_details.invocation_metadata:
            return _terminator(sync=False)
        return await continuation(handler_call_details)


@pytest.mark.parametrize("method", ["/routeguide.RouteGuide/Nope", "/no.Such/Method"])
async def test_interceptors_see_calls_to_methods_the_server_does_not_serve(
    grpc_module: ModuleType, method: str
) -> None:
    """As grpc.aio's: an auth interceptor refuses an unknown method as any other (a caller
    without the token learns nothing of what is served), and one let through is UNIMPLEMENTED;
    without interceptors it is UNIMPLEMENTED at once."""
    gate = Gate()
    async with pair({"server_interceptors": [gate]}) as (server, client):
        grpc_module.add_RouteGuideServicer_to_server(servicer_class(grpc_module, "async")(), server)
        await client.wait_for_server(SERVICE, timeout=10)
        channel = Channel(client, peer=server.peer_id, retry_policy=ONCE)
        unknown = UnaryUnaryMethod(channel, method, rg.Point, rg.Feature)
        with pytest.raises(RpcError) as caught:
            await unknown(rg.Point(), timeout=10)
        assert caught.value.code() is StatusCode.UNAUTHENTICATED
        token = [("x-token", "open sesame")]
        with pytest.raises(RpcError) as caught:
            await unknown(rg.Point(), metadata=token, timeout=10)
        assert caught.value.code() is StatusCode.UNIMPLEMENTED
        assert method in caught.value.details()
        streaming = StreamStreamMethod(channel, method, rg.Point, rg.Feature)
        with pytest.raises(RpcError) as caught:
            async for _ in streaming(route(), metadata=token, timeout=10):
                pass
        assert caught.value.code() is StatusCode.UNIMPLEMENTED
        assert gate.seen == [method] * 3
        server.server_interceptors = []
        with pytest.raises(RpcError) as caught:
            await unknown(rg.Point(), timeout=10)
        assert caught.value.code() is StatusCode.UNIMPLEMENTED
        assert gate.seen == [method] * 3


async def test_a_json_form_caller_refused_by_a_grpc_interceptor_is_told_why(
    grpc_module: ModuleType,
) -> None:
    """The command line and P2PT apps call in the JSON form: a grpc.aio interceptor's refusal (a
    handler without serializers that aborts) reaches them as it reaches a binary caller, for a
    method the server serves and for one it does not (no message type to read the request as)."""
    async with pair({"server_interceptors": [Gate()]}, binary=False) as (server, client):
        grpc_module.add_RouteGuideServicer_to_server(servicer_class(grpc_module, "async")(), server)
        await client.wait_for_server(SERVICE, timeout=10)
        channel = Channel(client, peer=server.peer_id, retry_policy=ONCE)
        token = [("x-token", "open sesame")]
        for method in (f"/{SERVICE}/GetFeature", "/no.Such/Method"):
            with pytest.raises(RpcError) as caught:
                async for _ in JSONMethod(channel, method)([{"latitude": 1}], timeout=10):
                    pass
            assert (caught.value.code(), caught.value.details()) == (
                StatusCode.UNAUTHENTICATED,
                "no token",
            )
        replies = JSONMethod(channel, f"/{SERVICE}/GetFeature")([{"latitude": 1}], metadata=token)
        assert [r["name"] async for r in replies] == ["at 1"]
        with pytest.raises(RpcError) as caught:
            async for _ in JSONMethod(channel, "/no.Such/Method")([{}], metadata=token):
                pass
        assert caught.value.code() is StatusCode.UNIMPLEMENTED


async def test_an_interceptor_of_neither_form_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a server interceptor"):
        Node(server_interceptors=[object()])
    node = Node()
    with pytest.raises(ValueError, match=r"grpc\.aio\.ServerInterceptor"):
        node.server_interceptors = [lambda details, proceed: None]
    assert node.server_interceptors == ()


# -- the servicer context -------------------------------------------------------------------------


def _rich_status() -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason="CLOSED", domain="routeguide.example"))
    return status_pb2.Status(
        code=StatusCode.FAILED_PRECONDITION.value[0], message="the map is closed", details=[detail]
    )


async def test_abort_with_status_sends_rich_details_the_client_reads_back(
    grpc_module: ModuleType,
) -> None:
    class Closed(grpc_module.RouteGuideServicer):  # type: ignore[misc, name-defined]
        async def GetFeature(self, request: rg.Point, context: Any) -> rg.Feature:
            await context.abort_with_status(rpc_status.to_status(_rich_status()))

        def RecordRoute(self, request_iterator: Any, context: Any) -> rg.RouteSummary:
            context.abort_with_status(rpc_status.to_status(_rich_status()))  # from a thread
            raise AssertionError("abort_with_status returned")

    async with pair() as (server, client):
        grpc_module.add_RouteGuideServicer_to_server(Closed(), server)
        await client.wait_for_server(SERVICE, timeout=10)
        guide = stub(client)
        for call in (
            lambda: guide.GetFeature(rg.Point(), timeout=10),
            lambda: guide.RecordRoute(route(), timeout=10),
        ):
            with pytest.raises(RpcError) as caught:
                await call()
            assert caught.value.code() is StatusCode.FAILED_PRECONDITION
            rich = rpc_status.from_call(caught.value)
            assert rich == _rich_status()
            info = error_details_pb2.ErrorInfo()
            assert rich.details[0].Unpack(info) and info.reason == "CLOSED"


def _big_name() -> str:
    """About 200 KB of text that deflate shrinks a few times (far past 1:1)."""
    words = ["north", "south", "east", "west", "ridge", "creek", "mill", "ford"]
    pick = random.Random(7).choice
    return " ".join(pick(words) for _ in range(40_000))


async def test_set_compression_and_disable_next_message_compression_choose_what_is_compressed(
    grpc_module: ModuleType,
) -> None:
    """The client takes no payload that inflates past 1:1 (``max_decompression_ratio=1``), so a
    compressed reply fails its call RESOURCE_EXHAUSTED and an uncompressed one arrives."""
    name = _big_name()

    class Guide(grpc_module.RouteGuideServicer):  # type: ignore[misc, name-defined]
        async def GetFeature(self, request: rg.Point, context: Any) -> rg.Feature:
            if request.latitude == 1:
                context.set_compression(grpc.Compression.NoCompression)
            return rg.Feature(name=name)

        async def ListFeatures(
            self, request: rg.Rectangle, context: Any
        ) -> AsyncIterator[rg.Feature]:
            context.disable_next_message_compression()
            yield rg.Feature(name=name)  # uncompressed
            yield rg.Feature(name=name)  # compressed again

    async with pair(max_decompression_ratio=1) as (server, client):
        grpc_module.add_RouteGuideServicer_to_server(Guide(), server)
        await client.wait_for_server(SERVICE, timeout=10)
        guide = stub(client)
        with pytest.raises(RpcError) as caught:
            await guide.GetFeature(rg.Point(latitude=0), compression="deflate", timeout=10)
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED  # compressed: refused
        plain = await guide.GetFeature(rg.Point(latitude=1), compression="deflate", timeout=10)
        assert plain.name == name
        call = guide.ListFeatures(rg.Rectangle(), compression="deflate", timeout=10)
        assert (await call.read()).name == name
        with pytest.raises(RpcError) as caught:
            await call.read()
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED


# -- the server's life ----------------------------------------------------------------------------


class Slow:
    """A servicer whose GetFeature waits until released (or forever)."""

    def __init__(self, grpc_module: ModuleType) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        outer = self

        class Guide(grpc_module.RouteGuideServicer):  # type: ignore[misc, name-defined]
            async def GetFeature(self, request: rg.Point, context: Any) -> rg.Feature:
                outer.started.set()
                try:
                    await outer.release.wait()
                except asyncio.CancelledError:
                    outer.cancelled.set()
                    raise
                return rg.Feature(name="finished")

        self.servicer = Guide()


async def test_stop_with_grace_lets_calls_finish_and_refuses_new_ones_while_the_node_stays(
    grpc_module: ModuleType,
) -> None:
    slow = Slow(grpc_module)
    async with pair() as (server, client):
        grpc_module.add_RouteGuideServicer_to_server(slow.servicer, server.server)
        await server.server.start()  # the node runs already: nothing more to do
        await client.wait_for_server(SERVICE, timeout=10)
        assert await server.wait_for_termination(timeout=0.01) is True  # timed out: it serves
        guide = stub(client)
        in_progress = guide.GetFeature(rg.Point(), timeout=30)
        await asyncio.wait_for(slow.started.wait(), 10)
        stopping = asyncio.ensure_future(server.server.stop(grace=20))
        await client.wait_until(lambda: not client.servers_of(SERVICE), 10)  # peers were told
        with pytest.raises(RpcError) as refused:
            await stub(client).GetFeature(rg.Point(), timeout=10)
        assert refused.value.code() is StatusCode.UNAVAILABLE  # no server: none is picked
        with pytest.raises(RpcError) as refused:
            await routeguide_p2prpc.RouteGuideStub(client.to(server.peer_id)).GetFeature(
                rg.Point(), timeout=10
            )
        assert refused.value.code() is StatusCode.UNAVAILABLE  # asked directly: refused
        assert not stopping.done()
        slow.release.set()
        assert (await in_progress).name == "finished"  # within its grace
        await asyncio.wait_for(stopping, 10)
        assert await server.server.wait_for_termination() is False
        assert client.peer_id in server.peers and not server.stopping  # the node stays
        with pytest.raises(RuntimeError):
            await server.server.start()


async def test_stop_after_grace_cancels_what_is_left_and_a_smaller_grace_ends_it_sooner(
    grpc_module: ModuleType,
) -> None:
    slow = Slow(grpc_module)
    async with pair() as (server, client):
        grpc_module.add_RouteGuideServicer_to_server(slow.servicer, server)
        await client.wait_for_server(SERVICE, timeout=10)
        in_progress = stub(client).GetFeature(rg.Point(), timeout=60)
        await asyncio.wait_for(slow.started.wait(), 10)
        first = asyncio.ensure_future(server.server.stop(grace=600))
        await client.wait_until(lambda: not client.servers_of(SERVICE), 10)
        assert not first.done()
        await asyncio.wait_for(server.server.stop(grace=0), 10)  # sooner: now
        await asyncio.wait_for(first, 10)
        assert slow.cancelled.is_set()
        with pytest.raises(RpcError) as caught:
            await in_progress
        assert caught.value.code() is StatusCode.UNAVAILABLE


async def test_wait_for_termination_returns_when_the_node_stops() -> None:
    async with pair() as (server, _):
        waiting = asyncio.ensure_future(server.wait_for_termination())
        also = asyncio.ensure_future(server.server.wait_for_termination(timeout=60))
        await asyncio.sleep(0)
        assert not waiting.done()
        await server.stop(grace=1)
        assert await asyncio.wait_for(waiting, 10) is False
        assert await asyncio.wait_for(also, 10) is False


async def test_a_server_has_no_port_to_add() -> None:
    node = Node()
    for add in (
        lambda: node.server.add_insecure_port("[::]:50051"),
        lambda: node.server.add_secure_port("[::]:50051", None),
    ):
        with pytest.raises(NoAddress, match="through the swarm") as caught:
            add()
        assert isinstance(caught.value, RuntimeError)
    with pytest.raises(ValueError, match="has a server already"):
        Server(node)


async def test_a_compression_is_one_grpc_names_or_p2prpc_reads() -> None:
    assert compression_name(grpc.Compression.NoCompression) == "identity"
    assert compression_name(grpc.Compression.Deflate) == "deflate"
    assert compression_name("zstd") == "zstd"
    for bad in ("brotli", 3):
        with pytest.raises(ValueError, match="compression"):
            compression_name(bad)  # type: ignore[arg-type]


async def test_a_plain_def_waiting_for_requests_is_woken_when_its_call_ends(
    grpc_module: ModuleType,
) -> None:
    """A method on the thread pool blocked in its request iterator is not reached by the call's
    cancellation on the loop: the iterator raises, and the thread is free again."""
    reading = threading.Event()
    ended = threading.Event()
    errors: list[StatusCode] = []

    class Guide(grpc_module.RouteGuideServicer):  # type: ignore[misc, name-defined]
        def RecordRoute(self, request_iterator: Iterator[rg.Point], context: Any) -> Any:
            try:
                for _ in request_iterator:
                    reading.set()
            except RpcError as e:
                errors.append(e.code())
                raise
            finally:
                ended.set()

    pool = ThreadPoolExecutor(1)
    try:
        async with pair({"migration_thread_pool": pool}) as (server, client):
            grpc_module.add_RouteGuideServicer_to_server(Guide(), server)
            await client.wait_for_server(SERVICE, timeout=10)
            call = stub(client).RecordRoute(timeout=30)
            await call.write(rg.Point(latitude=1))
            assert await asyncio.to_thread(reading.wait, 10)
            call.cancel()
            assert await asyncio.to_thread(ended.wait, 10)
            assert errors == [StatusCode.CANCELLED]
    finally:
        await asyncio.to_thread(pool.shutdown, wait=True)
