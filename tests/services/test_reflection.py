"""The reflection service between real nodes, driven as grpcurl drives a gRPC server: with the
request messages of grpcio-reflection's generated modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from chat_p2prpc import ChatMessageTopic
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2
from helloworld_p2prpc import GreeterServicer, add_GreeterServicer_to_node
from routeguide_p2prpc import RouteGuideServicer, add_RouteGuideServicer_to_node

from p2prpc.node import Node
from p2prpc.rpc import StatusCode, StreamStreamMethod
from p2prpc.services.reflection import V1, V1ALPHA, Messages
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

STANDARD = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
]


@pytest_asyncio.fixture
async def nodes() -> AsyncIterator[tuple[Node, Node]]:
    async with mesh(2, "reflection-test") as m:
        server, client = m.nodes
        add_GreeterServicer_to_node(GreeterServicer(), server)
        add_RouteGuideServicer_to_node(RouteGuideServicer(), server)
        ChatMessageTopic(server)
        await client.wait_for_server("routeguide.RouteGuide", 10)
        yield server, client


async def ask(
    client: Node, messages: Messages, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    """Send grpcio-reflection's v1alpha request messages; for v1 as their bytes, which are the
    same on the wire, and read the replies back as v1alpha messages."""
    method: StreamStreamMethod[Any, Any] = StreamStreamMethod(
        client, messages.method, messages.ServerReflectionRequest, messages.ServerReflectionResponse
    )
    sent = [messages.ServerReflectionRequest.FromString(r.SerializeToString()) for r in requests]
    replies = [r async for r in method(sent, timeout=10)]
    return [
        reflection_pb2.ServerReflectionResponse.FromString(r.SerializeToString()) for r in replies
    ]


def names(response: reflection_pb2.ServerReflectionResponse) -> list[str]:
    return [
        descriptor_pb2.FileDescriptorProto.FromString(b).name
        for b in response.file_descriptor_response.file_descriptor_proto
    ]


@pytest.mark.parametrize("messages", [V1, V1ALPHA], ids=["v1", "v1alpha"])
async def test_list_services_and_files_by_symbol_and_name(
    nodes: tuple[Node, Node], messages: Messages
) -> None:
    _, client = nodes
    Request = reflection_pb2.ServerReflectionRequest
    listed, by_service, by_method, by_message, by_file, nested = await ask(
        client,
        messages,
        Request(host="", list_services=""),
        Request(file_containing_symbol="routeguide.RouteGuide"),
        Request(file_containing_symbol="helloworld.Greeter.SayHello"),
        Request(file_containing_symbol="routeguide.Feature"),
        Request(file_by_filename="helloworld.proto"),
        Request(file_containing_symbol="routeguide.Feature.Change"),
    )
    assert [s.name for s in listed.list_services_response.service] == sorted(
        [*STANDARD, "helloworld.Greeter", "routeguide.RouteGuide"]
    )
    # The file first, then its dependencies (routeguide imports two well-known types).
    assert names(by_service)[0] == "routeguide.proto"
    assert set(names(by_service)) == {
        "routeguide.proto",
        "google/protobuf/duration.proto",
        "google/protobuf/empty.proto",
        "google/protobuf/timestamp.proto",
    }
    assert names(by_method) == ["helloworld.proto"]
    assert names(by_message)[0] == "routeguide.proto"
    assert names(by_file) == ["helloworld.proto"]
    assert names(nested)[0] == "routeguide.proto"
    file = descriptor_pb2.FileDescriptorProto.FromString(
        by_method.file_descriptor_response.file_descriptor_proto[0]
    )
    assert [m.name for m in file.service[0].method] == ["SayHello", "SayHelloStream"]
    assert by_method.original_request.file_containing_symbol == "helloworld.Greeter.SayHello"


async def test_unknown_symbols_and_files_are_not_found(nodes: tuple[Node, Node]) -> None:
    _, client = nodes
    Request = reflection_pb2.ServerReflectionRequest
    symbol, file, extension = await ask(
        client,
        V1,
        Request(file_containing_symbol="nowhere.Nothing"),
        Request(file_by_filename="nowhere.proto"),
        Request(
            file_containing_extension=reflection_pb2.ExtensionRequest(
                containing_type="google.protobuf.MessageOptions", extension_number=1
            )
        ),
    )
    for response in (symbol, file, extension):
        assert response.WhichOneof("message_response") == "error_response"
        assert response.error_response.error_code == StatusCode.NOT_FOUND.value[0]
    assert "nowhere.Nothing" in symbol.error_response.error_message


async def test_topic_types_are_described_and_announced(nodes: tuple[Node, Node]) -> None:
    server, client = nodes
    Request = reflection_pb2.ServerReflectionRequest
    [chat, options] = await ask(
        client,
        V1,
        Request(file_containing_symbol="chat.ChatMessage"),
        Request(all_extension_numbers_of_type="google.protobuf.MessageOptions"),
    )
    assert names(chat)[0] == "chat.proto"
    assert "p2prpc/options.proto" in names(chat)
    # The topic option is an extension of MessageOptions, found through the topic's file.
    assert list(options.all_extension_numbers_response.extension_number) != []
    await client.wait_until(lambda: "topic_types" in client.peers[server.peer_id].extra, timeout=10)
    assert client.peers[server.peer_id].extra["topic_types"]["chat"] == "chat.ChatMessage"


async def test_a_node_may_serve_neither() -> None:
    async with mesh(2, "reflection-off", reflection=False, health=False) as m:
        assert m.nodes[0].services == frozenset()
        assert m.nodes[1].peers[m.nodes[0].peer_id].services == frozenset()


async def test_served_files_carry_the_proto_comments(nodes: tuple[Node, Node]) -> None:
    """protoc's _pb2 modules drop SourceCodeInfo; the generated module keeps the comments and
    reflection serves them, as grpcurl and `p2prpc describe` read them."""
    _, client = nodes
    Request = reflection_pb2.ServerReflectionRequest
    [greeter] = await ask(client, V1, Request(file_containing_symbol="helloworld.Greeter"))
    file = descriptor_pb2.FileDescriptorProto.FromString(
        greeter.file_descriptor_response.file_descriptor_proto[0]
    )
    comments = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
    assert comments[(6, 0)] == " The greeting service definition.\n"
    assert comments[(6, 0, 2, 0)] == " Sends a greeting.\n"
    assert all(len(loc.span) == 3 for loc in file.source_code_info.location)
