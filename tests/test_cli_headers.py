"""The swarm commands against a node whose server interceptor authenticates every call (its
reflection and health included), as a gRPC server with a token check does: with ``-H`` they
succeed, without it they fail with the interceptor's own status, never a stand-in (NOT_FOUND for a
symbol the node would describe, UNAVAILABLE for a node that is there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from chat_p2prpc import ChatMessageTopic
from helloworld_p2prpc import add_GreeterServicer_to_node
from test_cli_call import Greeter, code, lines, p2prpc

from p2prpc.errors import RpcError
from p2prpc.identity import Identity
from p2prpc.node import Node
from p2prpc.rpc import Handler, HandlerCallDetails, StatusCode
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

TOKEN = ("authorization", "Bearer s3cret")
HEADER = "Authorization: Bearer s3cret"  # as a user types it; keys are sent lower case


class RequireToken:
    """Refuses every call without the token, whatever the service."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    async def intercept_service(
        self,
        details: HandlerCallDetails,
        proceed: Callable[[HandlerCallDetails], Awaitable[Handler[Any, Any] | None]],
    ) -> Handler[Any, Any] | None:
        if TOKEN not in details.invocation_metadata:
            self.refused.append(details.method)
            raise RpcError(StatusCode.UNAUTHENTICATED, "a bearer token is required")
        return await proceed(details)


class Guarded:
    def __init__(self, url: str, node: Node, identity: Identity, guard: RequireToken) -> None:
        self.url = url
        self.node = node
        self.identity = identity
        self.guard = guard

    @property
    def swarm(self) -> list[str]:
        return ["-t", self.url, "--identifier", "cli-auth", "--host-address", "127.0.0.1"]


@pytest_asyncio.fixture
async def guarded() -> AsyncIterator[Guarded]:
    guard = RequireToken()
    identity = Identity.generate()
    async with TrackerServer() as tracker:
        node = loopback_node(
            [tracker.url], "cli-auth", identity=identity, server_interceptors=[guard]
        )
        add_GreeterServicer_to_node(Greeter(), node)
        async with node, ChatMessageTopic(node).subscribe():
            yield Guarded(tracker.url, node, identity, guard)


async def both(*args: str) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """The command with the token, then without it (one at a time: a command leaving the swarm
    while another joins would hold up the other's wait for every peer's hello)."""
    return await p2prpc(*args, "-H", HEADER), await p2prpc(*args)


UNAUTHENTICATED = code(StatusCode.UNAUTHENTICATED)


async def test_call_sends_its_headers_on_the_reflection_lookup_too(guarded: Guarded) -> None:
    (status, out, err), (status2, out2, err2) = await both(
        "call", *guarded.swarm, "helloworld.Greeter/SayHello", "-d", '{"name": "a"}'
    )
    assert (status, err, lines(out)) == (0, "", [{"message": "Hello, a! ()"}])
    assert (status2, out2) == (UNAUTHENTICATED, "")
    assert "UNAUTHENTICATED: a bearer token is required" in err2
    assert "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" in guarded.guard.refused


async def test_describe_takes_headers_and_reports_the_refusal(guarded: Guarded) -> None:
    (status, out, err), (status2, out2, err2) = await both(
        "describe", *guarded.swarm, "helloworld.Greeter", "--timeout", "20"
    )
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == "// helloworld.Greeter is a service (from helloworld.proto)"
    assert (status2, out2) == (UNAUTHENTICATED, "")  # not NOT_FOUND
    assert "UNAUTHENTICATED: a bearer token is required" in err2


async def test_health_takes_headers(guarded: Guarded) -> None:
    (status, out, err), (status2, out2, err2) = await both("health", *guarded.swarm)
    assert (status, err) == (0, "")
    [line] = lines(out)
    assert isinstance(line, dict) and line["status"] == "SERVING"
    assert status2 == UNAUTHENTICATED
    assert lines(out2) == [
        {"peer": guarded.node.peer_id, "service": "", "error": "UNAUTHENTICATED"}
    ]
    assert "UNAUTHENTICATED: a bearer token is required" in err2


async def test_list_of_a_service_takes_headers(guarded: Guarded) -> None:
    (status, out, err), (status2, out2, err2) = await both(
        "list", *guarded.swarm, "helloworld.Greeter"
    )
    assert (status, err) == (0, "")
    assert lines(out) == [
        {
            "method": "/helloworld.Greeter/SayHello",
            "request": "helloworld.HelloRequest",
            "reply": "helloworld.HelloReply",
            "client_streaming": False,
            "server_streaming": False,
        },
        {
            "method": "/helloworld.Greeter/SayHelloStream",
            "request": "helloworld.HelloRequest",
            "reply": "helloworld.HelloReply",
            "client_streaming": False,
            "server_streaming": True,
        },
    ]
    assert (status2, out2) == (UNAUTHENTICATED, "")
    assert "UNAUTHENTICATED: a bearer token is required" in err2


async def test_peers_takes_headers_and_shows_the_proven_public_key(guarded: Guarded) -> None:
    # One after the other: each waits until every peer the tracker counts has said hello.
    status, out, err = await p2prpc("peers", *guarded.swarm, "--wait", "30", "-H", HEADER)
    status2, out2, err2 = await p2prpc("peers", *guarded.swarm, "--wait", "30")
    assert (status, err) == (0, "")
    [line] = lines(out)
    assert isinstance(line, dict)
    assert line["public_key"] == guarded.identity.public_key.hex()  # as `keygen --public` prints
    assert line["health"] == "SERVING"
    assert status2 == 0  # the listing itself is not refused
    [line2] = lines(out2)
    assert isinstance(line2, dict) and line2["health"] == "UNAUTHENTICATED"
    assert "health check: UNAUTHENTICATED: a bearer token is required" in err2


async def test_pub_learns_the_topic_type_with_headers(guarded: Guarded) -> None:
    (status, _, err), (status2, _, err2) = await both(
        "pub", *guarded.swarm, "chat", '{"author": "cli", "txet": "typo"}'
    )
    assert status == code(StatusCode.INVALID_ARGUMENT)  # checked against chat.ChatMessage
    assert "txet" in err
    assert status2 == 0  # sent unchecked, saying why
    assert "cannot learn the type of topic chat" in err2 and "a bearer token is required" in err2
