"""A node calling every method of the example services, through any peer serving them.

PYTHONPATH=generated python examples/client.py --tracker ws://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator

from google.protobuf.empty_pb2 import Empty
from helloworld_p2prpc import GreeterStub
from helloworld_pb2 import HelloRequest
from routeguide_p2prpc import RouteGuideStub
from routeguide_pb2 import Point, Rectangle, RouteNote

from p2prpc.node import Node
from p2prpc.rpc import RpcError, StatusCode


async def route() -> AsyncIterator[Point]:
    for latitude, longitude in (
        (407838351, -746143763),
        (408122808, -743999179),
        (410000000, -745000000),
    ):
        yield Point(latitude=latitude, longitude=longitude)


async def run(trackers: list[str], identifier: str) -> int:
    async with Node(trackers, identifier, ice_servers=[], host_addresses=["127.0.0.1"]) as node:
        started = time.monotonic()
        greeter, guide = GreeterStub(node), RouteGuideStub(node)

        reply = await greeter.SayHello(HelloRequest(name="p2prpc"), timeout=30, wait_for_ready=True)
        print(f"[client] found a server in {time.monotonic() - started:.2f} s")
        print(f"[client] unary            SayHello -> {reply.message!r}")

        greetings = [r.message async for r in greeter.SayHelloStream(HelloRequest(name="peer"))]
        print(f"[client] server streaming SayHelloStream -> {greetings}")

        feature = await guide.GetFeature(Point(latitude=409146138, longitude=-746188906))
        print(f"[client] unary            GetFeature (nothing there) -> name={feature.name!r}")

        rectangle = Rectangle(
            lo=Point(latitude=400000000, longitude=-750000000),
            hi=Point(latitude=420000000, longitude=-730000000),
        )
        names = [f.name async for f in guide.ListFeatures(rectangle)]
        print(f"[client] server streaming ListFeatures -> {len(names)} features: {names[:2]} ...")

        summary = await guide.RecordRoute(route())
        print(
            f"[client] client streaming RecordRoute -> {summary.point_count} points, "
            f"{summary.feature_count} features, {summary.distance} m"
        )

        chat = guide.RouteChat()
        here = Point(latitude=1, longitude=2)
        for text in ("first note", "second note", "third note"):
            await chat.write(RouteNote(location=here, message=text))
        await chat.done_writing()
        echoed = [note.message async for note in chat]
        print(f"[client] bidi streaming   RouteChat -> earlier notes at the same place: {echoed}")

        changes = []
        try:
            async for change in guide.WatchFeatures(Empty(), timeout=0.5):
                changes.append(change.feature.name)
        except RpcError as e:
            print(
                f"[client] deadline         WatchFeatures(timeout=0.5) -> {len(changes)} changes, "
                f"then {e.code.name}"
            )
            if e.code is not StatusCode.DEADLINE_EXCEEDED:
                return 1

        try:
            await guide.GetFeature(Point(latitude=1_000_000_000, longitude=0))
        except RpcError as e:
            print(
                f"[client] error status     GetFeature(off the map) -> {e.code.name}: {e.details}"
            )
            if e.code is not StatusCode.INVALID_ARGUMENT:
                return 1
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracker", action="append", required=True)
    parser.add_argument("--identifier", default="p2prpc-demo")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.tracker, args.identifier)))


if __name__ == "__main__":
    main()
