"""A node serving helloworld.Greeter and routeguide.RouteGuide until it is stopped.

PYTHONPATH=generated python examples/server.py --tracker ws://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import time
from collections.abc import AsyncIterator

from chat_p2prpc import ChatMessageTopic, PresenceTopic
from chat_pb2 import ChatMessage
from google.protobuf.duration_pb2 import Duration
from google.protobuf.empty_pb2 import Empty
from helloworld_p2prpc import GreeterServicer, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest
from routeguide_p2prpc import RouteGuideServicer, add_RouteGuideServicer_to_node
from routeguide_pb2 import Feature, Point, Rectangle, RouteNote, RouteSummary

from p2prpc.node import Node, PeerInfo
from p2prpc.rpc import ServicerContext, StatusCode


def say(line: str) -> None:
    """Print one whole line at once (the demo's processes share one terminal)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


GREETINGS = ("Hello", "Bonjour", "Hola", "Ciao", "Hallo")

FEATURES = [
    Feature(name=name, location=Point(latitude=latitude, longitude=longitude))
    for name, latitude, longitude in (
        ("Patriots Path, Mendham, NJ", 407838351, -746143763),
        ("101 New Jersey 10, Whippany, NJ", 408122808, -743999179),
        ("U.S. 6, Shohola, PA", 413628156, -749015468),
        ("5 Conners Road, Kingston, NY", 419999544, -740371136),
    )
]


class Greeter(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        return HelloReply(message=f"Hello, {request.name}!")

    async def SayHelloStream(
        self, request: HelloRequest, context: ServicerContext
    ) -> AsyncIterator[HelloReply]:
        for greeting in GREETINGS:
            yield HelloReply(message=f"{greeting}, {request.name}!")


def _feature_at(point: Point) -> Feature:
    for feature in FEATURES:
        if feature.location == point:
            return feature
    return Feature(name="", location=point)


def _distance(a: Point, b: Point) -> float:
    """Metres between two points (haversine)."""
    lat1, lat2 = math.radians(a.latitude / 1e7), math.radians(b.latitude / 1e7)
    dlat, dlon = lat2 - lat1, math.radians((b.longitude - a.longitude) / 1e7)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


class RouteGuide(RouteGuideServicer):
    async def GetFeature(self, request: Point, context: ServicerContext) -> Feature:
        if not (-900_000_000 <= request.latitude <= 900_000_000):
            await context.abort(
                StatusCode.INVALID_ARGUMENT, f"latitude {request.latitude} is off the map"
            )
        return _feature_at(request)

    async def ListFeatures(
        self, request: Rectangle, context: ServicerContext
    ) -> AsyncIterator[Feature]:
        lo_lat, hi_lat = sorted((request.lo.latitude, request.hi.latitude))
        lo_lon, hi_lon = sorted((request.lo.longitude, request.hi.longitude))
        for feature in FEATURES:
            where = feature.location
            if lo_lat <= where.latitude <= hi_lat and lo_lon <= where.longitude <= hi_lon:
                yield feature

    async def RecordRoute(
        self, requests: AsyncIterator[Point], context: ServicerContext
    ) -> RouteSummary:
        start = time.monotonic()
        count = features = 0
        distance = 0.0
        previous: Point | None = None
        async for point in requests:
            count += 1
            features += bool(_feature_at(point).name)
            if previous is not None:
                distance += _distance(previous, point)
            previous = point
        elapsed = Duration()
        elapsed.FromNanoseconds(int((time.monotonic() - start) * 1e9))
        return RouteSummary(
            point_count=count, feature_count=features, distance=int(distance), elapsed_time=elapsed
        )

    async def RouteChat(
        self, requests: AsyncIterator[RouteNote], context: ServicerContext
    ) -> AsyncIterator[RouteNote]:
        notes: list[RouteNote] = []
        async for note in requests:
            for earlier in notes:
                if earlier.location == note.location:
                    yield earlier
            notes.append(note)

    async def WatchFeatures(
        self, request: Empty, context: ServicerContext
    ) -> AsyncIterator[Feature.Change]:
        for feature in FEATURES:
            change = Feature.Change(kind=Feature.Change.KIND_ADDED, feature=feature)
            change.changed_at.GetCurrentTime()
            yield change
        await asyncio.Event().wait()  # no more changes: the caller's deadline ends the watch


async def chat_host(node: Node) -> None:
    """Welcome whoever joins the chat room, and print what is said there."""
    room = ChatMessageTopic(node)
    async with PresenceTopic(node).subscribe() as presence, room.subscribe() as lines:

        async def welcome() -> None:
            async for received in presence:
                if received.message.online:
                    who = received.message.author
                    say(f"[server] chat: {who} joined")
                    await room.publish(ChatMessage(author="server", text=f"welcome, {who}!"))

        async def show() -> None:
            async for received in lines:
                line = received.message
                say(f"[server] chat: <{line.author}> {line.text}")

        await asyncio.gather(welcome(), show())


async def serve(trackers: list[str], identifier: str) -> None:
    node = Node(trackers, identifier, ice_servers=[], host_addresses=["127.0.0.1"])
    add_GreeterServicer_to_node(Greeter(), node)
    add_RouteGuideServicer_to_node(RouteGuide(), node)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with node:
        host = asyncio.create_task(chat_host(node))
        mine = sorted(name for name in node.services if not name.startswith("grpc."))
        say(f"[server] {node.peer_id[:8]} serving {', '.join(mine)} (and health, reflection)")
        greeted: set[str] = set()

        def hello(info: PeerInfo) -> None:
            if info.peer_id not in greeted:  # hellos come again when what a peer offers changes
                greeted.add(info.peer_id)
                say(f"[server] hello from {info.peer_id[:8]}")

        node.on("peer", hello)
        await stop.wait()
        host.cancel()
    say("[server] stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracker", action="append", required=True)
    parser.add_argument("--identifier", default="p2prpc-demo")
    args = parser.parse_args()
    asyncio.run(serve(args.tracker, args.identifier))


if __name__ == "__main__":
    main()
