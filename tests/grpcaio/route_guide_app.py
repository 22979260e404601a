"""A grpc.aio application, written for grpc.aio alone: a route guide server and its client.

It uses only grpcio, grpcio-tools' generated ``routeguide_pb2_grpc`` (made by the test that runs
it), grpcio-health-checking and grpcio-reflection: its servicer, its interceptors, its error
handling and its health and reflection checks are what a grpc.aio user writes. Nothing here
knows of p2prpc; the tests make its channel and server either with grpc.aio or with p2prpc and
compare what the client saw.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any

import grpc
import grpc.aio
import routeguide_pb2 as pb
from google.protobuf import empty_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

TOKEN = "Bearer route-guide-secret"
SERVICE = "routeguide.RouteGuide"

FEATURES = [
    pb.Feature(
        name="Patriots Path, Mendham, NJ",
        location=pb.Point(latitude=407838351, longitude=-746143763),
    ),
    pb.Feature(
        name="101 New Jersey 10, Whippany, NJ",
        location=pb.Point(latitude=408122808, longitude=-743999179),
    ),
    pb.Feature(name="", location=pb.Point(latitude=409146138, longitude=-746188906)),
    pb.Feature(
        name="4001 Tremley Point Road, Linden, NJ",
        location=pb.Point(latitude=406109563, longitude=-742186778),
    ),
]


def feature_at(point: pb.Point) -> pb.Feature | None:
    for feature in FEATURES:
        if feature.location == point:
            return feature
    return None


def distance(start: pb.Point, end: pb.Point) -> float:
    """Metres between two points, by the haversine formula (coordinates in 1e-7 degrees)."""
    lat1, lat2 = math.radians(start.latitude / 1e7), math.radians(end.latitude / 1e7)
    dlat = lat2 - lat1
    dlon = math.radians((end.longitude - start.longitude) / 1e7)
    a = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 6371000 * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a))


def servicer_class(pb_grpc: ModuleType) -> type:
    class RouteGuideServicer(pb_grpc.RouteGuideServicer):  # type: ignore[misc,name-defined]
        async def GetFeature(
            self, request: pb.Point, context: grpc.aio.ServicerContext
        ) -> pb.Feature:
            return feature_at(request) or pb.Feature(location=request)

        async def ListFeatures(
            self, request: pb.Rectangle, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[pb.Feature]:
            left, right = sorted((request.lo.longitude, request.hi.longitude))
            bottom, top = sorted((request.lo.latitude, request.hi.latitude))
            for feature in FEATURES:
                p = feature.location
                if feature.name and left <= p.longitude <= right and bottom <= p.latitude <= top:
                    yield feature

        async def RecordRoute(
            self, request_iterator: AsyncIterator[pb.Point], context: grpc.aio.ServicerContext
        ) -> pb.RouteSummary:
            count = features = 0
            travelled = 0.0
            previous = None
            async for point in request_iterator:
                count += 1
                if feature_at(point) is not None:
                    features += 1
                if previous is not None:
                    travelled += distance(previous, point)
                previous = point
            return pb.RouteSummary(
                point_count=count, feature_count=features, distance=int(travelled)
            )

        async def RouteChat(
            self, request_iterator: AsyncIterator[pb.RouteNote], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[pb.RouteNote]:
            notes: list[pb.RouteNote] = []
            async for note in request_iterator:
                for earlier in notes:
                    if earlier.location == note.location:
                        yield earlier
                notes.append(note)

        # WatchFeatures is left as the generated base class has it: UNIMPLEMENTED.

    return RouteGuideServicer


async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls to the route guide without the token, as grpc's examples do."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._refusal = grpc.unary_unary_rpc_method_handler(_refuse)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        self.seen.append(method)
        if not method.startswith(f"/{SERVICE}/"):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        if metadata.get("authorization") != TOKEN:
            return self._refusal
        return await continuation(handler_call_details)


class _Token:
    """Adds the token to calls, and notes the calls it saw in ``calls``."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        self.calls.append(method)
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", TOKEN)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# One class for each shape: grpc.aio's channel uses an interceptor only for the first interface
# it implements (grpc/grpc#43512), so a grpc.aio application writes them apart.
class UnaryUnaryToken(_Token, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class UnaryStreamToken(_Token, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class StreamUnaryToken(_Token, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class StreamStreamToken(_Token, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def token_interceptors(calls: list[str]) -> list[_Token]:
    """The client's interceptors, noting each call in ``calls``."""
    kinds = (UnaryUnaryToken, UnaryStreamToken, StreamUnaryToken, StreamStreamToken)
    return [kind(calls) for kind in kinds]


def add_services(server: Any, pb_grpc: ModuleType) -> health.aio.HealthServicer:
    """What the server's main() does before ``await server.start()``."""
    pb_grpc.add_RouteGuideServicer_to_server(servicer_class(pb_grpc)(), server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    names = (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    return checks


async def mark_serving(checks: health.aio.HealthServicer) -> None:
    await checks.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)


async def guide(channel: Any, pb_grpc: ModuleType) -> list[Any]:
    """What the client's main() does with its channel: every shape, the errors, health and
    reflection. Returns a transcript of what it saw."""
    seen: list[Any] = []
    await channel.channel_ready()
    seen.append(("state", channel.get_state()))
    stub = pb_grpc.RouteGuideStub(channel)

    feature = await stub.GetFeature(pb.Point(latitude=409146138, longitude=-746188906), timeout=10)
    seen.append(("get", feature.name, feature.location.latitude))
    feature = await stub.GetFeature(FEATURES[0].location, timeout=10)
    seen.append(("get", feature.name, feature.location.latitude))

    call = stub.GetFeature(FEATURES[1].location, timeout=10, wait_for_ready=True)
    reply = await call
    seen.append(("call", reply.name, await call.code(), await call.details()))

    rectangle = pb.Rectangle(
        lo=pb.Point(latitude=400000000, longitude=-750000000),
        hi=pb.Point(latitude=420000000, longitude=-730000000),
    )
    seen.append(("list", [f.name async for f in stub.ListFeatures(rectangle, timeout=10)]))
    listing = stub.ListFeatures(rectangle, timeout=10)
    names = []
    while (item := await listing.read()) is not grpc.aio.EOF:
        names.append(item.name)
    seen.append(("read", names))

    async def points() -> AsyncIterator[pb.Point]:
        for feature in FEATURES:
            yield feature.location

    summary = await stub.RecordRoute(points(), timeout=10)
    seen.append(("record", summary.point_count, summary.feature_count, summary.distance))

    recording = stub.RecordRoute(timeout=10)
    for feature in FEATURES[:2]:
        await recording.write(feature.location)
    await recording.done_writing()
    summary = await recording
    seen.append(("record-write", summary.point_count, summary.feature_count))

    def notes() -> list[pb.RouteNote]:
        spots = [pb.Point(latitude=0, longitude=1), pb.Point(latitude=0, longitude=2)]
        return [pb.RouteNote(location=spots[i % 2], message=f"note {i}") for i in range(4)]

    seen.append(("chat", [n.message async for n in stub.RouteChat(iter(notes()), timeout=10)]))

    try:
        await stub.WatchFeatures(empty_pb2.Empty()).read()
    except grpc.aio.AioRpcError as e:
        seen.append(("watch", e.code()))

    async def endless() -> AsyncIterator[pb.Point]:
        yield pb.Point()
        await asyncio.Event().wait()

    try:
        await stub.RecordRoute(endless(), timeout=0.5)
    except grpc.aio.AioRpcError as e:
        seen.append(("deadline", e.code()))

    health_stub = health_pb2_grpc.HealthStub(channel)
    status = await health_stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
    seen.append(("health", status.status))
    try:
        await health_stub.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=10)
    except grpc.aio.AioRpcError as e:
        seen.append(("health-unknown", e.code()))

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    async for answer in answers:
        names = sorted(s.name for s in answer.list_services_response.service)
        seen.append(("reflection", SERVICE in names))
    return seen
