"""The swarm commands (``call``, ``peers``, ``list``, ``describe``, ``health``, ``pub``, ``sub``) as
processes, against a real node serving the example Greeter and chat topic on loopback.

The processes run without ``generated/`` on their path: they have none of the example ``.proto``
files or modules, and learn the message types from the serving node's reflection.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from chat_p2prpc import ChatMessageTopic
from chat_pb2 import ChatMessage
from google.protobuf import json_format
from helloworld_p2prpc import GreeterServicer, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest

from p2prpc.node import Node
from p2prpc.pubsub import Received, Subscription
from p2prpc.rpc import ServicerContext, StatusCode
from p2prpc.services import NOT_SERVING, health_of
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import TRANSPORT_ENV

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parent.parent


# The package, and nothing of the examples' generated code.
def cli_env() -> dict[str, str]:
    """The environment of a command run now: this one's (so the module's transport, which its
    fixture sets in it), without what would change the command's swarm."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "P2PRPC_SECRET")} | {
        "PYTHONPATH": str(ROOT)
    }


CLI_SECRET = "cli secret 4f0a8c6e2d9b1735"


def code(status: StatusCode) -> int:
    return int(status.value[0])


class Greeter(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        if not request.name:
            await context.abort(StatusCode.INVALID_ARGUMENT, "who?")
        if request.name == "slow":
            await asyncio.Event().wait()
        await context.send_initial_metadata([("served-by", "greeter")])
        context.set_trailing_metadata([("took-ms", "1")])
        x = dict(context.invocation_metadata()).get("x", "")
        return HelloReply(message=f"Hello, {request.name[:20]}! ({x})")

    async def SayHelloStream(
        self, request: HelloRequest, context: ServicerContext
    ) -> AsyncIterator[HelloReply]:
        for i in range(3):
            yield HelloReply(message=f"{i} {request.name}")


class Served:
    def __init__(self, url: str, node: Node, chat: Subscription[ChatMessage]) -> None:
        self.url = url
        self.node = node
        self.chat = chat


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Served]:
    async with TrackerServer() as tracker:
        node = loopback_node([tracker.url], "cli-test")
        add_GreeterServicer_to_node(Greeter(), node)
        async with node, ChatMessageTopic(node).subscribe() as chat:
            yield Served(tracker.url, node, chat)


async def p2prpc(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p2prpc",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def swarm(url: str) -> list[str]:
    return ["-t", url, "--identifier", "cli-test", "--host-address", "127.0.0.1"]


def lines(out: str) -> list[object]:
    return [json.loads(line) for line in out.splitlines()]


# -- call -----------------------------------------------------------------------------------------


async def test_call_unary_with_metadata_quietly(served: Served) -> None:
    status, out, err = await p2prpc(
        "call",
        *swarm(served.url),
        "helloworld.Greeter/SayHello",
        "-d",
        '{"name": "cli"}',
        "-H",
        "x: y",
    )
    assert (status, err) == (0, "")  # nothing on stderr: aioice's INFO lines are not shown
    assert lines(out) == [{"message": "Hello, cli! (y)"}]


async def test_call_shows_headers_and_trailers_with_v(served: Served) -> None:
    status, out, err = await p2prpc(
        "call", *swarm(served.url), "helloworld.Greeter/SayHello", "-d", '{"name": "v"}', "-v"
    )
    assert status == 0
    assert lines(out) == [{"message": "Hello, v! ()"}]
    assert err.splitlines() == [
        "Response headers received:",
        "served-by: greeter",
        "Response trailers received:",
        "took-ms: 1",
    ]


async def test_call_server_streaming(served: Served) -> None:
    status, out, _ = await p2prpc(
        "call", *swarm(served.url), "/helloworld.Greeter/SayHelloStream", "-d", '{"name": "s"}'
    )
    assert status == 0
    assert [line["message"] for line in lines(out)] == ["0 s", "1 s", "2 s"]  # type: ignore[index]


async def test_call_reads_a_large_request_from_a_file_and_from_stdin(
    served: Served, tmp_path: Path
) -> None:
    name = "n" * 300_000  # longer than a command line may be
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"name": name}, indent=2))
    status, out, err = await p2prpc(
        "call", *swarm(served.url), "helloworld.Greeter/SayHello", "-d", f"@{request}"
    )
    assert (status, err) == (0, "")
    assert lines(out) == [{"message": f"Hello, {name[:20]}! ()"}]
    status, out, _ = await p2prpc(
        "call",
        *swarm(served.url),
        "helloworld.Greeter/SayHello",
        "-d",
        "@",
        stdin=b'{"name": "stdin"}\n',
    )
    assert (status, lines(out)) == (0, [{"message": "Hello, stdin! ()"}])


async def test_call_error_statuses_are_the_exit_code(served: Served) -> None:
    status, out, err = await p2prpc(
        "call", *swarm(served.url), "helloworld.Greeter/SayHello", "-d", "{}"
    )
    assert (status, out) == (code(StatusCode.INVALID_ARGUMENT), "")
    assert "INVALID_ARGUMENT: who?" in err
    # A short peer id, as logs show it, is enough.
    status, _, err = await p2prpc(
        "call", *swarm(served.url), "helloworld.Greeter/Nope", "--peer", served.node.peer_id[:8]
    )
    assert status == code(StatusCode.UNIMPLEMENTED)
    assert "UNIMPLEMENTED: unknown method: /helloworld.Greeter/Nope" in err


async def test_call_past_its_deadline(served: Served) -> None:
    started = time.monotonic()
    status, _, err = await p2prpc(
        "call",
        *swarm(served.url),
        "helloworld.Greeter/SayHello",
        "-d",
        '{"name": "slow"}',
        "--timeout",
        "3",
    )
    assert status == code(StatusCode.DEADLINE_EXCEEDED)
    assert "DEADLINE_EXCEEDED" in err
    assert time.monotonic() - started < 30


async def test_call_with_nobody_serving_or_no_such_peer_names_what_was_asked(
    served: Served,
) -> None:
    status, _, err = await p2prpc("call", *swarm(served.url), "nobody.Here/Hi", "--timeout", "1")
    assert status == code(StatusCode.UNAVAILABLE)
    assert "no peer serving nobody.Here within 1 s" in err
    missing = "0" if not served.node.peer_id.startswith("0") else "f"
    status, _, err = await p2prpc(
        "call",
        *swarm(served.url),
        "helloworld.Greeter/SayHello",
        "--peer",
        missing * 8,
        "--timeout",
        "2",
    )
    assert status == code(StatusCode.UNAVAILABLE)
    assert f"no peer {missing * 8} within 2 s (connected: {served.node.peer_id[:8]})" in err


async def test_call_checks_json_against_the_reflected_type(served: Served) -> None:
    status, out, err = await p2prpc(
        "call", *swarm(served.url), "helloworld.Greeter/SayHello", "-d", '{"name": "a", "nmae": 1}'
    )
    assert (status, out) == (code(StatusCode.INVALID_ARGUMENT), "")
    assert "helloworld.HelloRequest" in err and "nmae" in err
    status, out, _ = await p2prpc(
        "call",
        *swarm(served.url),
        "helloworld.Greeter/SayHello",
        "-d",
        '{"name": "a", "nmae": 1}',
        "--allow-unknown-fields",
    )
    assert (status, lines(out)) == (0, [{"message": "Hello, a! ()"}])
    status, _, err = await p2prpc(
        "call", *swarm(served.url), "helloworld.Greeter/SayHello", "-d", "{name"
    )
    assert status == 2
    assert "not JSON" in err


async def test_call_refuses_replies_over_max_message_size(served: Served) -> None:
    status, _, err = await p2prpc(
        "call",
        *swarm(served.url),
        "helloworld.Greeter/SayHelloStream",
        "-d",
        json.dumps({"name": "m" * 5000}),
        "--max-message-size",
        "1000",
    )
    assert status == code(StatusCode.RESOURCE_EXHAUSTED)
    assert "RESOURCE_EXHAUSTED" in err


# -- trackers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["peers"], ["list"], ["call", "a.B/C"], ["health"]])
async def test_an_unreachable_tracker_is_an_error(command: list[str]) -> None:
    started = time.monotonic()
    status, out, err = await p2prpc(command[0], "-t", "ws://127.0.0.1:1", *command[1:])
    assert (status, out) == (code(StatusCode.UNAVAILABLE), "")
    assert "cannot connect to ws://127.0.0.1:1" in err
    assert time.monotonic() - started < 20  # at the first failure, not after a timeout


# -- peers, list, describe, health ----------------------------------------------------------------


async def test_peers_lists_the_serving_node_as_soon_as_the_swarm_answered(served: Served) -> None:
    started = time.monotonic()
    status, out, err = await p2prpc("peers", *swarm(served.url), "--wait", "40")
    assert (status, err) == (0, "")
    assert time.monotonic() - started < 30
    [line] = lines(out)
    assert isinstance(line, dict)
    rtt = line.pop("rtt_ms")
    assert isinstance(rtt, float) and rtt > 0
    assert line == {
        "peer": served.node.peer_id,
        "hello": True,
        "services": [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "helloworld.Greeter",
        ],
        "topics": ["chat"],
        "binary": True,
        "public_key": None,  # it proves no identity
        "topic_types": {"chat": "chat.ChatMessage"},
        "via": [served.url],
        "transport": os.environ.get(TRANSPORT_ENV) or "aiortc",
        "health": "SERVING",
    }


async def test_list_counts_the_peers_serving_each_service(served: Served) -> None:
    async with loopback_node([served.url], "cli-test", health=False, reflection=False) as other:
        add_GreeterServicer_to_node(Greeter(), other)
        await other.wait_for_server("helloworld.Greeter", 20)
        status, out, _ = await p2prpc("list", *swarm(served.url), "--wait", "20")
    assert status == 0
    assert lines(out) == [
        {"service": "grpc.health.v1.Health", "peers": 1},
        {"service": "grpc.reflection.v1.ServerReflection", "peers": 1},
        {"service": "grpc.reflection.v1alpha.ServerReflection", "peers": 1},
        {"service": "helloworld.Greeter", "peers": 2},
    ]


async def test_describe_prints_proto_text_from_reflection(served: Served) -> None:
    status, out, err = await p2prpc("describe", *swarm(served.url), "helloworld.Greeter")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "// helloworld.Greeter is a service (from helloworld.proto)",
        "// The greeting service definition.",  # the .proto's comments, kept
        "service Greeter {",
        "  // Sends a greeting.",
        "  rpc SayHello(.helloworld.HelloRequest) returns (.helloworld.HelloReply);",
        "  // Sends a greeting in each language the server knows, one reply at a time.",
        "  rpc SayHelloStream(.helloworld.HelloRequest) returns (stream .helloworld.HelloReply);",
        "}",
    ]
    status, out, _ = await p2prpc("describe", *swarm(served.url), "chat.ChatMessage")
    assert status == 0
    assert out.splitlines() == [
        "// chat.ChatMessage is a message (from chat.proto)",
        "// A line said in the chat room.",
        "message ChatMessage {",
        '  option (p2prpc.topic) = {name: "chat"};',  # the topic it is published as
        "  // Who said it, by the name they chose (the peer id comes with every message received).",
        "  string author = 1;",
        "  string text = 2;",
        "  .google.protobuf.Timestamp sent_at = 3;",
        "}",
    ]
    status, out, err = await p2prpc(
        "describe", *swarm(served.url), "helloworld.Greeter.SayHello", "--timeout", "10"
    )
    assert status == 0
    assert "rpc SayHello(.helloworld.HelloRequest)" in out
    status, out, _ = await p2prpc("describe", *swarm(served.url), "--peer", served.node.peer_id)
    assert status == 0
    assert [line for line in out.splitlines() if " is a service (from " in line] == [
        "// grpc.health.v1.Health is a service (from grpc_health/v1/health.proto)",
        "// grpc.reflection.v1.ServerReflection is a service (from "
        "grpc/reflection/v1/reflection.proto)",
        "// grpc.reflection.v1alpha.ServerReflection is a service (from "
        "grpc_reflection/v1alpha/reflection.proto)",
        "// helloworld.Greeter is a service (from helloworld.proto)",
    ]
    status, out, err = await p2prpc(
        "describe", *swarm(served.url), "nowhere.Nothing", "--timeout", "10"
    )
    assert (status, out) == (code(StatusCode.NOT_FOUND), "")
    assert "symbol not found: nowhere.Nothing" in err


async def test_health_of_the_node_and_of_services(served: Served) -> None:
    status, out, err = await p2prpc("health", *swarm(served.url))
    assert (status, err) == (0, "")
    [line] = lines(out)
    assert isinstance(line, dict)
    assert (line["peer"], line["service"], line["status"]) == (served.node.peer_id, "", "SERVING")
    status, out, err = await p2prpc(
        "health", *swarm(served.url), "nowhere.Nothing", "--peer", served.node.peer_id[:6]
    )
    assert status == code(StatusCode.NOT_FOUND)
    assert "NOT_FOUND: unknown service: nowhere.Nothing" in err
    started = time.monotonic()  # asked of the whole swarm: known at once that nobody serves it
    status, _, err = await p2prpc("health", *swarm(served.url), "nowhere.Nothing")
    assert status == code(StatusCode.NOT_FOUND), err
    assert "no peer of the swarm serves nowhere.Nothing" in err
    assert time.monotonic() - started < 8  # not the 10 s timeout
    health_of(served.node).set("helloworld.Greeter", NOT_SERVING)
    status, out, _ = await p2prpc("health", *swarm(served.url), "helloworld.Greeter")
    assert status == code(StatusCode.UNAVAILABLE)
    [line] = lines(out)
    assert isinstance(line, dict) and line["status"] == "NOT_SERVING"


# -- pub, sub -------------------------------------------------------------------------------------


async def test_pub_publishes_checked_json_to_a_typed_topic(served: Served) -> None:
    status, out, err = await p2prpc(
        "pub", *swarm(served.url), "chat", '{"author": "cli", "text": "hi"}'
    )
    assert (status, err) == (0, "")
    assert lines(out) == [{"topic": "chat", "sent_to": 1}]
    async with asyncio.timeout(20):
        received: Received[ChatMessage] = await anext(served.chat)
    assert received.message == ChatMessage(author="cli", text="hi")
    status, _, err = await p2prpc(
        "pub", *swarm(served.url), "chat", '{"author": "cli", "txet": "hi"}'
    )
    assert status == code(StatusCode.INVALID_ARGUMENT)
    assert "txet" in err


async def test_sub_prints_a_typed_topic_as_json(served: Served) -> None:
    sub = asyncio.create_task(
        p2prpc("sub", *swarm(served.url), "chat", "-n", "2", "--timeout", "40", "-v")
    )
    node = served.node
    await node.wait_until(
        lambda: any("chat" in i.topics for i in node.peers.values()) or sub.done(), 40
    )
    assert not sub.done()
    sent = ChatMessage(author="node", text="to the shell")
    sent.sent_at.FromSeconds(1_700_000_000)
    room = ChatMessageTopic(node)
    await room.publish(sent)
    await room.publish(ChatMessage(author="node", text="again"))
    status, out, err = await sub
    assert (status, err) == (0, "")
    first, second = lines(out)
    assert first == {"from": node.peer_id, "seq": 0, "msg": json_format.MessageToDict(sent)}
    assert isinstance(second, dict) and second["msg"] == {"author": "node", "text": "again"}


async def test_sub_without_enough_messages_in_time(served: Served) -> None:
    status, out, err = await p2prpc("sub", *swarm(served.url), "quiet", "-n", "1", "--timeout", "2")
    assert (status, out) == (code(StatusCode.DEADLINE_EXCEEDED), "")
    assert "0 of 1 messages on quiet" in err


# -- demo -----------------------------------------------------------------------------------------


async def test_demo_serves_what_the_other_commands_reach() -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p2prpc",
        "demo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert demo.stdout is not None
        async with asyncio.timeout(30):
            url = (await demo.stdout.readline()).decode().strip()
        assert url.startswith("ws://127.0.0.1:")
        demo_swarm = ["-t", url, "--identifier", "p2prpc-demo"]
        status, out, err = await p2prpc(
            "call", *demo_swarm, "p2prpc.demo.Greeter/SayHello", "-d", '{"name": "demo"}'
        )
        assert (status, err, lines(out)) == (0, "", [{"message": "Hello, demo!"}])
        status, out, _ = await p2prpc("describe", *demo_swarm, "p2prpc.demo.Tick")
        assert status == 0
        assert out.splitlines()[1:] == [
            "message Tick {",
            "  int64 count = 1;",
            "  string at = 2;",
            "}",
        ]
        status, out, _ = await p2prpc("sub", *demo_swarm, "ticks", "-n", "2", "--timeout", "30")
        assert status == 0
        first, second = lines(out)
        assert isinstance(first, dict) and isinstance(second, dict)
        assert int(second["count"]) == int(first.get("count", 0)) + 1  # int64: a JSON string
    finally:
        demo.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err_bytes = await demo.communicate()
    assert demo.returncode == 0, err_bytes.decode()


async def test_call_reaches_a_closed_swarm_only_with_its_secret_and_sends_bin_headers(
    tmp_path: Path,
) -> None:
    async with TrackerServer() as tracker:
        node = loopback_node([tracker.url], "cli-secret", secret=CLI_SECRET)
        add_GreeterServicer_to_node(Greeter(), node)
        async with node:
            args = ("-t", tracker.url, "--identifier", "cli-secret", "--host-address", "127.0.0.1")
            method = ("helloworld.Greeter/SayHello", "-d", '{"name": "x"}')
            code_, out, err = await p2prpc(
                "call",
                *args,
                "--secret",
                CLI_SECRET,
                *method,
                "-H",
                "x-bin: AAEC",
                "--timeout",
                "20",
            )
            assert (code_, json.loads(out)) == (0, {"message": "Hello, x! ()"}), err
            code_, _, err = await p2prpc("call", *args, *method, "--timeout", "3")
            assert code_ == code(StatusCode.UNAVAILABLE), err
