"""Misuses of generated stubs that mypy --strict must reject, each at its ``# E:`` line."""

from __future__ import annotations

import helloworld_p2prpc
import helloworld_pb2
import routeguide_p2prpc
import routeguide_pb2

import p2prpc.rpc


async def misuse(channel: p2prpc.rpc.Channel) -> None:
    greeter = helloworld_p2prpc.GreeterStub(channel)
    guide = routeguide_p2prpc.RouteGuideStub(channel)
    request = helloworld_pb2.HelloRequest(name="you")
    wrong = helloworld_pb2.HelloReply()
    await greeter.SayHello(wrong)  # E: [arg-type] type "HelloReply"; expected "HelloRequest"
    reply: helloworld_pb2.HelloRequest = await greeter.SayHello(request)  # E: [assignment]
    await greeter.SayHello(request, timeout="soon")  # E: [arg-type] "timeout"
    async for _ in greeter.SayHello(request):  # E: [attr-defined] not async iterable
        pass
    await greeter.SayHelloStream(request)  # E: [misc] "UnaryStreamCall[HelloRequest, HelloReply]"
    await guide.GetFeatures(routeguide_pb2.Point())  # E: [attr-defined] "GetFeatures"
    features = [routeguide_pb2.Feature()]
    await guide.RecordRoute(features)  # E: [arg-type] "list[Feature]"
    chat = guide.RouteChat()
    await chat.write(routeguide_pb2.Point())  # E: [arg-type] "Point"; expected "RouteNote"
    async for note in guide.ListFeatures(routeguide_pb2.Rectangle()):
        print(note.message)  # E: [attr-defined] "Feature" has no attribute "message"
    first = await guide.ListFeatures(routeguide_pb2.Rectangle()).read()
    print(first.name)  # E: [union-attr] Item "_EOF" of "Feature | _EOF" has no attribute "name"
    lo = [1]
    routeguide_pb2.Rectangle(lo=lo)  # E: [arg-type] expected "Point | Mapping[str, Any] | None"
    print(reply)
