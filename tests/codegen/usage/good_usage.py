"""Typical uses of generated modules, which mypy --strict must accept (never run)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import chat_p2prpc
import chat_pb2
import helloworld_p2prpc
import helloworld_pb2
import routeguide_p2prpc
import routeguide_pb2
from google.protobuf import empty_pb2

import p2prpc.node
import p2prpc.pubsub
import p2prpc.rpc


async def greet(channel: p2prpc.rpc.Channel) -> list[str]:
    greeter = helloworld_p2prpc.GreeterStub(channel)
    request = helloworld_pb2.HelloRequest(name="you")
    reply = await greeter.SayHello(request, timeout=1.5, metadata={"k": "v"}, wait_for_ready=True)
    messages: list[str] = [reply.message]
    call = greeter.SayHello(request, metadata=[("k", "v"), ("trace-bin", b"\x00")])
    reply = await call
    code: p2prpc.rpc.StatusCode = await call.code()
    messages += [code.name, *(str(value) for _, value in await call.trailing_metadata())]
    async for streamed in greeter.SayHelloStream(request):
        messages.append(streamed.message)
    return messages


async def walk(points: list[routeguide_pb2.Point]) -> AsyncIterator[routeguide_pb2.Point]:
    for point in points:
        yield point


async def notes() -> AsyncIterator[routeguide_pb2.RouteNote]:
    yield routeguide_pb2.RouteNote(message="hi")


async def guide(channel: p2prpc.rpc.Channel) -> int:
    stub = routeguide_p2prpc.RouteGuideStub(channel)
    feature: routeguide_pb2.Feature = await stub.GetFeature(routeguide_pb2.Point(latitude=1))
    names = [feature.name]
    async for found in stub.ListFeatures(routeguide_pb2.Rectangle()):
        names.append(found.name)
    summary = await stub.RecordRoute([routeguide_pb2.Point(), routeguide_pb2.Point()])
    summary = await stub.RecordRoute(walk([routeguide_pb2.Point()]), timeout=5)
    async for note in stub.RouteChat(notes()):
        names.append(note.message)
    chat = stub.RouteChat()
    await chat.write(routeguide_pb2.RouteNote(message="hello"))
    await chat.done_writing()
    async for change in stub.WatchFeatures(empty_pb2.Empty()):
        if change.kind == routeguide_pb2.Feature.Change.KIND_ADDED:
            names.append(change.feature.name)
    listing = stub.ListFeatures(routeguide_pb2.Rectangle(lo={"latitude": 1}))
    while isinstance(read := await listing.read(), routeguide_pb2.Feature):
        names.append(read.name)  # read() is the reply type or grpc.aio.EOF, as grpc.aio's
    return summary.point_count + len(names)


class Greeter(helloworld_p2prpc.GreeterServicer):
    async def SayHello(
        self, request: helloworld_pb2.HelloRequest, context: p2prpc.rpc.ServicerContext
    ) -> helloworld_pb2.HelloReply:
        return helloworld_pb2.HelloReply(message=f"Hello, {request.name}!")

    async def SayHelloStream(
        self, request: helloworld_pb2.HelloRequest, context: p2prpc.rpc.ServicerContext
    ) -> AsyncIterator[helloworld_pb2.HelloReply]:
        for greeting in ("Hello", "Bonjour"):
            yield helloworld_pb2.HelloReply(message=f"{greeting}, {request.name}!")


class RouteGuide(routeguide_p2prpc.RouteGuideServicer):
    async def GetFeature(
        self, request: routeguide_pb2.Point, context: p2prpc.rpc.ServicerContext
    ) -> routeguide_pb2.Feature:
        return routeguide_pb2.Feature(location=request)

    async def ListFeatures(
        self, request: routeguide_pb2.Rectangle, context: p2prpc.rpc.ServicerContext
    ) -> AsyncIterator[routeguide_pb2.Feature]:
        yield routeguide_pb2.Feature(location=request.lo)

    async def RecordRoute(
        self,
        requests: AsyncIterator[routeguide_pb2.Point],
        context: p2prpc.rpc.ServicerContext,
    ) -> routeguide_pb2.RouteSummary:
        count = 0
        async for _ in requests:
            count += 1
        return routeguide_pb2.RouteSummary(point_count=count)

    async def RouteChat(
        self,
        requests: AsyncIterator[routeguide_pb2.RouteNote],
        context: p2prpc.rpc.ServicerContext,
    ) -> AsyncIterator[routeguide_pb2.RouteNote]:
        async for note in requests:
            yield note


def serve(node: p2prpc.rpc.ServiceRegistrar) -> None:
    helloworld_p2prpc.add_GreeterServicer_to_node(Greeter(), node)
    routeguide_p2prpc.add_RouteGuideServicer_to_node(RouteGuide(), node)


async def chat(node: p2prpc.node.Node) -> list[str]:
    room = chat_p2prpc.ChatMessageTopic(node)
    sent: int = await room.publish(chat_pb2.ChatMessage(author="me", text="hi"))
    lines = [f"{chat_p2prpc.ChatMessageTopic.NAME} ({sent} peers)", *chat_p2prpc.TOPICS]
    async with room.subscribe(maxsize=16) as subscription:
        async for received in subscription:
            sender: str = received.sender
            lines.append(f"{sender}: {received.message.text} at {received.message.sent_at}")
    async for arrival in chat_p2prpc.PresenceTopic(node).subscribe():
        if arrival.message.online:
            lines.append(arrival.message.author)
    generic: p2prpc.pubsub.Topic[chat_pb2.ChatMessage] = room
    lines.append(generic.name)
    return lines
