"""``p2prpc call`` and ``p2prpc peers`` as processes, against a node serving the example Greeter."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from helloworld_p2prpc import GreeterServicer, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest

from p2prpc.node import Node
from p2prpc.rpc import ServicerContext, StatusCode
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio


class Greeter(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        if not request.name:
            await context.abort(StatusCode.INVALID_ARGUMENT, "who?")
        return HelloReply(
            message=f"Hello, {request.name}! ({dict(context.invocation_metadata()).get('x', '')})"
        )

    async def SayHelloStream(
        self, request: HelloRequest, context: ServicerContext
    ) -> AsyncIterator[HelloReply]:
        for i in range(3):
            yield HelloReply(message=f"{i} {request.name}")


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[str, Node]]:
    async with TrackerServer() as tracker:
        node = loopback_node([tracker.url], "cli-test")
        add_GreeterServicer_to_node(Greeter(), node)
        async with node:
            yield tracker.url, node


async def p2prpc(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p2prpc",
        "--log-level",
        "warning",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def swarm(url: str) -> list[str]:
    return ["-t", url, "--identifier", "cli-test", "--host-address", "127.0.0.1"]


async def test_call_unary_with_metadata(served: tuple[str, Node]) -> None:
    url, _ = served
    code, out, err = await p2prpc(
        "call", *swarm(url), "helloworld.Greeter/SayHello", "-d", '{"name": "cli"}', "-H", "x: y"
    )
    assert (code, err) == (0, "")
    assert [json.loads(line) for line in out.splitlines()] == [{"message": "Hello, cli! (y)"}]


async def test_call_server_streaming(served: tuple[str, Node]) -> None:
    url, _ = served
    code, out, _ = await p2prpc(
        "call", *swarm(url), "/helloworld.Greeter/SayHelloStream", "-d", '{"name": "s"}'
    )
    assert code == 0
    assert [json.loads(line)["message"] for line in out.splitlines()] == ["0 s", "1 s", "2 s"]


async def test_call_error_status_is_the_exit_code(served: tuple[str, Node]) -> None:
    url, _ = served
    code, out, err = await p2prpc("call", *swarm(url), "helloworld.Greeter/SayHello", "-d", "{}")
    assert code == StatusCode.INVALID_ARGUMENT.value[0]
    assert out == ""
    assert "INVALID_ARGUMENT: who?" in err
    code, _, err = await p2prpc(
        "call", *swarm(url), "helloworld.Greeter/Nope", "--peer", served[1].peer_id
    )
    assert code == StatusCode.UNIMPLEMENTED.value[0]
    assert "UNIMPLEMENTED" in err


async def test_call_with_nobody_serving_is_unavailable(served: tuple[str, Node]) -> None:
    url, _ = served
    code, _, err = await p2prpc("call", *swarm(url), "nobody.Here/Hi", "--timeout", "1")
    assert code == StatusCode.UNAVAILABLE.value[0]
    assert "no peer serving nobody.Here" in err


async def test_peers_lists_the_serving_node(served: tuple[str, Node]) -> None:
    url, node = served
    code, out, _ = await p2prpc("peers", *swarm(url), "--wait", "2")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert {
        "peer": node.peer_id,
        "hello": True,
        "services": ["helloworld.Greeter"],
        "topics": [],
        "binary": True,
    } in lines
