"""``p2prpc demo``: an embedded tracker and a node to try the command line against.

The node serves ``p2prpc.demo.Greeter`` and publishes a ``Tick`` every second on the topic
``ticks``. Their message types are built here from a descriptor (no generated code ships with the
package), which is also what reflection describes to callers without the ``.proto``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .node import Node
from .pubsub import Topic
from .rpc import Cardinality, Handler, RpcError, ServicerContext, StatusCode
from .tracker.server import TrackerServer

__all__ = ["IDENTIFIER", "run_demo"]

IDENTIFIER = "p2prpc-demo"
SERVICE = "p2prpc.demo.Greeter"
TOPIC = "ticks"


def _demo_file() -> descriptor_pb2.FileDescriptorProto:
    """``p2prpc/demo.proto``, as protoc would describe it::

    syntax = "proto3";
    package p2prpc.demo;
    service Greeter {
      rpc SayHello(HelloRequest) returns (HelloReply);
      rpc SayHelloStream(HelloRequest) returns (stream HelloReply);
    }
    message HelloRequest { string name = 1; }
    message HelloReply { string message = 1; }
    message Tick { int64 count = 1; string at = 2; }
    """
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="p2prpc/demo.proto", package="p2prpc.demo", syntax="proto3"
    )
    for name, fields in (
        ("HelloRequest", [("name", 1, f.TYPE_STRING)]),
        ("HelloReply", [("message", 1, f.TYPE_STRING)]),
        ("Tick", [("count", 1, f.TYPE_INT64), ("at", 2, f.TYPE_STRING)]),
    ):
        message = file.message_type.add(name=name)
        for field_name, number, kind in fields:
            message.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=f.LABEL_OPTIONAL,
                json_name=field_name,
            )
    service = file.service.add(name="Greeter")
    service.method.add(
        name="SayHello",
        input_type=".p2prpc.demo.HelloRequest",
        output_type=".p2prpc.demo.HelloReply",
    )
    service.method.add(
        name="SayHelloStream",
        input_type=".p2prpc.demo.HelloRequest",
        output_type=".p2prpc.demo.HelloReply",
        server_streaming=True,
    )
    return file


def _message_classes() -> dict[str, Any]:
    pool = descriptor_pool.Default()
    try:
        file = pool.FindFileByName("p2prpc/demo.proto")
    except KeyError:
        pool.AddSerializedFile(_demo_file().SerializeToString())
        file = pool.FindFileByName("p2prpc/demo.proto")
    return {
        name: message_factory.GetMessageClass(d) for name, d in file.message_types_by_name.items()
    }


def serve_demo(node: Node) -> Topic[Any]:
    """Add the demo's Greeter to ``node``; the ``ticks`` topic to publish on."""
    types = _message_classes()
    HelloRequest, HelloReply = types["HelloRequest"], types["HelloReply"]

    async def say_hello(request: Any, context: ServicerContext) -> Any:
        if not request.name:
            raise RpcError(StatusCode.INVALID_ARGUMENT, 'say who to greet: {"name": "..."}')
        return HelloReply(message=f"Hello, {request.name}!")

    async def say_hello_stream(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
        for greeting in ("Hello", "Bonjour", "Hola"):
            yield HelloReply(message=f"{greeting}, {request.name or 'you'}!")

    node.add_service(
        SERVICE,
        {
            f"/{SERVICE}/SayHello": Handler(
                say_hello, Cardinality.UNARY_UNARY, HelloRequest, HelloReply
            ),
            f"/{SERVICE}/SayHelloStream": Handler(
                say_hello_stream, Cardinality.UNARY_STREAM, HelloRequest, HelloReply
            ),
        },
    )
    return Topic(node, TOPIC, types["Tick"])


async def run_demo(
    host: str, port: int, identifier: str, node_options: dict[str, Any], stop: asyncio.Event
) -> None:
    """Run the tracker and the demo node until ``stop`` is set; print the tracker's URL first,
    then commands to try."""
    async with TrackerServer(host, port) as tracker:
        print(tracker.url, flush=True)
        node = Node([tracker.url], identifier, **node_options)
        ticks = serve_demo(node)
        Tick = ticks.message_type
        async with node:
            swarm = f"-t {tracker.url} --identifier {identifier}"
            for line in _suggestions(swarm, node.peer_id):
                print(line, flush=True)
            for count in itertools.count():
                now = datetime.now(UTC).isoformat(timespec="seconds")
                await ticks.publish(Tick(count=count, at=now))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                if stop.is_set():
                    break


def _suggestions(swarm: str, peer_id: str) -> Sequence[str]:
    return [
        f"# node {peer_id[:8]} serves {SERVICE} and publishes on '{TOPIC}'; try, in another shell:",
        f"p2prpc list {swarm}",
        f"p2prpc describe {swarm} {SERVICE}",
        f'p2prpc call {swarm} {SERVICE}/SayHello -d \'{{"name": "you"}}\'',
        f"p2prpc peers {swarm}",
        f"p2prpc health {swarm}",
        f"p2prpc sub {swarm} {TOPIC} -n 3",
    ]
