"""Misuses of generated servicer bases that mypy --strict must reject, each at its ``# E:`` line."""

from __future__ import annotations

from collections.abc import AsyncIterator

import helloworld_p2prpc
import helloworld_pb2
import routeguide_p2prpc
import routeguide_pb2

import p2prpc.rpc


class Greeter(helloworld_p2prpc.GreeterServicer):
    async def SayHello(  # E: [override] "Coroutine[Any, Any, HelloRequest]"
        self, request: helloworld_pb2.HelloRequest, context: p2prpc.rpc.ServicerContext
    ) -> helloworld_pb2.HelloRequest:
        return request

    async def SayHelloStream(
        self,
        request: helloworld_pb2.HelloReply,  # E: [override] Argument 1 of "SayHelloStream"
        context: p2prpc.rpc.ServicerContext,
    ) -> AsyncIterator[helloworld_pb2.HelloReply]:
        yield helloworld_pb2.HelloReply()


class RouteGuide(routeguide_p2prpc.RouteGuideServicer):
    async def GetFeature(
        self, request: routeguide_pb2.Point, context: p2prpc.rpc.ServicerContext
    ) -> routeguide_pb2.Feature:
        return routeguide_pb2.Point()  # E: [return-value] (got "Point", expected "Feature")

    async def ListFeatures(  # E: [override] Return type "AsyncIterator[Point]"
        self, request: routeguide_pb2.Rectangle, context: p2prpc.rpc.ServicerContext
    ) -> AsyncIterator[routeguide_pb2.Point]:
        yield request.lo

    async def RecordRoute(
        self,
        requests: routeguide_pb2.Point,  # E: [override] "AsyncIterator[Point]"
        context: p2prpc.rpc.ServicerContext,
    ) -> routeguide_pb2.RouteSummary:
        return routeguide_pb2.RouteSummary()


def serve(node: p2prpc.rpc.ServiceRegistrar) -> None:
    helloworld_p2prpc.add_GreeterServicer_to_node(RouteGuide(), node)  # E: [arg-type] "RouteGuide"
