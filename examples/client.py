"""A node calling every method of the example services, through any peer serving them.

PYTHONPATH=generated python examples/client.py --tracker ws://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator

from chat_p2prpc import ChatMessageTopic, PresenceTopic
from chat_pb2 import ChatMessage, Presence
from google.protobuf.empty_pb2 import Empty
from helloworld_p2prpc import GreeterStub
from helloworld_pb2 import HelloRequest
from routeguide_p2prpc import RouteGuideStub
from routeguide_pb2 import Point, Rectangle, RouteNote

from p2prpc.node import Node
from p2prpc.rpc import RpcError, StatusCode


def say(line: str) -> None:
    """Print one whole line at once (the demo's processes share one terminal)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


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
        say(f"[client] found a server in {time.monotonic() - started:.2f} s")
        say(f"[client] unary            SayHello -> {reply.message!r}")

        greetings = [r.message async for r in greeter.SayHelloStream(HelloRequest(name="peer"))]
        say(f"[client] server streaming SayHelloStream -> {greetings}")

        feature = await guide.GetFeature(Point(latitude=409146138, longitude=-746188906))
        say(
            f"[client] unary            GetFeature (nothing there) -> name={feature.name!r}",
        )

        rectangle = Rectangle(
            lo=Point(latitude=400000000, longitude=-750000000),
            hi=Point(latitude=420000000, longitude=-730000000),
        )
        names = [f.name async for f in guide.ListFeatures(rectangle)]
        say(
            f"[client] server streaming ListFeatures -> {len(names)} features: {names[:2]} ...",
        )

        summary = await guide.RecordRoute(route())
        say(
            f"[client] client streaming RecordRoute -> {summary.point_count} points, "
            f"{summary.feature_count} features, {summary.distance} m"
        )

        chat = guide.RouteChat()
        here = Point(latitude=1, longitude=2)
        for text in ("first note", "second note", "third note"):
            await chat.write(RouteNote(location=here, message=text))
        await chat.done_writing()
        echoed = [note.message async for note in chat]
        say(
            f"[client] bidi streaming   RouteChat -> earlier notes at the same place: {echoed}",
        )

        changes = []
        try:
            async for change in guide.WatchFeatures(Empty(), timeout=0.5):
                changes.append(change.feature.name)
        except RpcError as e:
            say(
                f"[client] deadline         WatchFeatures(timeout=0.5) -> {len(changes)} changes, "
                f"then {e.code().name}"
            )
            if e.code() is not StatusCode.DEADLINE_EXCEEDED:
                return 1

        try:
            await guide.GetFeature(Point(latitude=1_000_000_000, longitude=0))
        except RpcError as e:
            status = f"{e.code().name}: {e.details()}"
            say(f"[client] error status     GetFeature(off the map) -> {status}")
            if e.code() is not StatusCode.INVALID_ARGUMENT:
                return 1
        return await join_chat(node)


async def join_chat(node: Node) -> int:
    """Join the chat room: the server (subscribed to presence) answers with a welcome."""
    room = ChatMessageTopic(node)
    async with room.subscribe() as lines:
        await _until_subscribed(node, PresenceTopic.NAME)
        await PresenceTopic(node).publish(Presence(author="client", online=True))
        await room.publish(ChatMessage(author="client", text="hello, everyone"))
        async with asyncio.timeout(10):
            received = await anext(lines)
        line, sender = received.message, received.sender[:8]
        say(f"[client] topic            chat from {sender}: <{line.author}> {line.text}")
    return 0


async def _until_subscribed(node: Node, topic: str) -> None:
    """Wait until some peer says it subscribes to ``topic`` (its hello says so)."""
    async with asyncio.timeout(10):
        while not any(topic in info.topics for info in node.peers.values()):
            hello: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            node.once("peer", hello.set_result)
            await hello


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracker", action="append", required=True)
    parser.add_argument("--identifier", default="p2prpc-demo")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.tracker, args.identifier)))


if __name__ == "__main__":
    main()
