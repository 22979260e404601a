"""A plain JavaScript P2PT app calls services of a p2prpc node with nothing but `p2pt.send`.

The node serves the example Greeter (generated from protos/helloworld.proto) and a JSON echo
declared by hand over `google.protobuf.Struct`. The JavaScript agent never says hello, so the node
must answer it in the JSON form of the envelope: `send(peer, {call, msg})` resolves with
`{reply, status: {code: 0}, seq: 0}`; a server stream resolves the send with its first reply and
delivers the rest, then its status, as 'msg' events on the same message id; errors come as
`{status: {code, details}}`.

Both runtimes (the browser runs P2PT's bundle); one tracker, the embedded one: the tracker plays
no part once peers are connected, and the P2PT tests cover both trackers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.struct_pb2 import Struct
from helloworld_p2prpc import GreeterServicer, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest

from p2prpc.node import Node
from p2prpc.rpc import Cardinality, Handler, ServicerContext, StatusCode

from .harness import JsonValue, JsPeer, JsPeers, Runtime, running_tracker

pytestmark = [pytest.mark.interop, pytest.mark.asyncio]

IDENTIFIER = "p2prpc-interop-rpc"
SAY_HELLO = "/helloworld.Greeter/SayHello"
SAY_HELLO_STREAM = "/helloworld.Greeter/SayHelloStream"
JSON_ECHO = "/test.Json/Echo"
GREETINGS = ("Hello", "Bonjour", "Hallo", "Ciao", "Hola", "Olá")


class _AnyDetails:
    """Equal to any non-empty details string (their wording is not part of the contract)."""

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, str) and other != ""

    def __repr__(self) -> str:
        return "<any details>"


ANY_DETAILS: Any = _AnyDetails()


class Greeter(GreeterServicer):
    """The example Greeter, with names that make it misbehave on purpose.

    "nobody": aborts with NOT_FOUND, details and a trailer; "crash": raises; "slow": never answers
    (the stream sends its first greeting, then never goes on) until the call is cancelled.
    """

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def _hang(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()

    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        if request.name == "nobody":
            await context.abort(StatusCode.NOT_FOUND, "nobody is here", {"hint": "ask someone"})
        if request.name == "crash":
            raise ZeroDivisionError("boom")
        if request.name == "slow":
            await self._hang()
        return HelloReply(message=f"Hello {request.name}")

    async def SayHelloStream(
        self, request: HelloRequest, context: ServicerContext
    ) -> AsyncIterator[HelloReply]:
        for greeting in GREETINGS:
            yield HelloReply(message=f"{greeting} {request.name}")
            if request.name == "slow":
                await self._hang()


async def echo_json(request: Struct, context: ServicerContext) -> Struct:
    return request


@dataclass
class Served:
    """A node serving Greeter and test.Json, and a JavaScript agent connected to it."""

    node: Node
    greeter: Greeter
    js: JsPeer
    hello: JsonValue
    """The hello the node sent the agent (a P2PT message the app may ignore)."""

    async def call(self, envelope: dict[str, JsonValue]) -> JsonValue:
        """`p2pt.send(node, envelope)` from JavaScript; the message its promise resolves with."""
        reply = await self.js.send(self.node.peer_id, envelope)
        assert reply.peer_id == self.node.peer_id
        return reply.msg


@pytest_asyncio.fixture
async def served(js_peers: JsPeers, js_runtime: Runtime) -> AsyncIterator[Served]:
    async with running_tracker("embedded") as url:
        node = Node([url], IDENTIFIER, ice_servers=[])
        greeter = Greeter()
        add_GreeterServicer_to_node(greeter, node)
        node.add_service(
            "test.Json",
            {JSON_ECHO: Handler(echo_json, Cardinality.UNARY_UNARY, Struct, Struct)},
        )
        try:
            js = await js_peers.launch(js_runtime)
            await node.start()
            js_id = await js.start([url], IDENTIFIER)
            assert await js.next_peerconnect() == node.peer_id
            hello = await js.next_msg(peer_id=node.peer_id)
            # The agent never says hello: the node knows it only as a plain P2PT peer.
            assert node.peers[js_id].hello is False
            assert not node.is_binary(js_id)
            yield Served(node, greeter, js, hello.msg)
            assert js.errors == []
        finally:
            await node.close()


async def test_unary_calls(served: Served) -> None:
    hello = served.hello
    assert isinstance(hello, dict)
    assert hello["hello"]["v"] == 1
    assert hello["hello"]["binary"] is True  # offered, but never used with this peer
    assert hello["hello"]["services"] == [
        "grpc.health.v1.Health",  # every node serves health and reflection
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "helloworld.Greeter",
        "test.Json",
    ]
    assert await served.call({"call": SAY_HELLO, "msg": {"name": "js"}}) == {
        "reply": {"message": "Hello js"},
        "status": {"code": 0},
        "seq": 0,
    }
    # A call may carry a timeout and metadata; unknown JSON fields are ignored (proto3 JSON).
    assert await served.call(
        {
            "call": SAY_HELLO,
            "msg": {"name": "again", "unknownField": 1},
            "timeout": 30,
            "metadata": {"user": "ada"},
        }
    ) == {"reply": {"message": "Hello again"}, "status": {"code": 0}, "seq": 0}
    # The empty object is the default message: an empty name.
    assert await served.call({"call": SAY_HELLO, "msg": {}}) == {
        "reply": {"message": "Hello "},
        "status": {"code": 0},
        "seq": 0,
    }

    # Any JSON object crosses as a Struct (whose numbers are doubles: JavaScript cannot tell).
    document: dict[str, JsonValue] = {
        "text": "héllo ✓ 🙂",
        "list": [1, "two", None, True, {"x": -2.5}],
        "nested": {"empty": {}, "none": []},
    }
    assert await served.call({"call": JSON_ECHO, "msg": document}) == {
        "reply": document,
        "status": {"code": 0},
        "seq": 0,
    }

    # Concurrent calls each get their own answer, on their own message id.
    names = [f"peer{i}" for i in range(8)]
    pending = [
        await served.js.post(served.node.peer_id, {"call": SAY_HELLO, "msg": {"name": name}})
        for name in names
    ]
    replies = [await served.js.reply(p) for p in pending]
    assert [r.msg["reply"]["message"] for r in replies] == [f"Hello {n}" for n in names]


async def test_server_streaming(served: Served) -> None:
    js, node_id = served.js, served.node.peer_id
    first = await served.call({"call": SAY_HELLO_STREAM, "msg": {"name": "js"}})
    assert first == {"reply": {"message": "Hello js"}, "seq": 0}
    # The rest of the stream, then its status, arrive as new messages, in order.
    rest = [(await js.next_msg(peer_id=node_id)).msg for _ in GREETINGS]
    assert rest == [
        *({"reply": {"message": f"{g} js"}, "seq": i} for i, g in enumerate(GREETINGS[1:], 1)),
        {"status": {"code": 0}, "seq": len(GREETINGS)},
    ]
    # The stream is over: a unary call afterwards is answered normally, with nothing in between.
    assert (await served.call({"call": SAY_HELLO, "msg": {"name": "x"}}))["status"] == {"code": 0}
    assert [e["event"] for e in js.events].count("msg") == 1 + len(GREETINGS)


@dataclass(frozen=True)
class ErrorCase:
    envelope: dict[str, JsonValue]
    code: StatusCode
    details: str  # a fragment of the details
    trailers: dict[str, str] | None = None


ERRORS = {
    "unknown method": ErrorCase(
        {"call": "/helloworld.Greeter/SayGoodbye", "msg": {"name": "x"}},
        StatusCode.UNIMPLEMENTED,
        "unknown method: /helloworld.Greeter/SayGoodbye",
    ),
    "unknown service": ErrorCase(
        {"call": "/nowhere.Nobody/Call", "msg": {}},
        StatusCode.UNIMPLEMENTED,
        "unknown service: /nowhere.Nobody/Call",
    ),
    "bad payload": ErrorCase(
        {"call": SAY_HELLO, "msg": {"name": 5}}, StatusCode.INVALID_ARGUMENT, "name"
    ),
    "payload not an object": ErrorCase(
        {"call": SAY_HELLO, "msg": [1, 2]}, StatusCode.INVALID_ARGUMENT, "cannot parse"
    ),
    "not a method path": ErrorCase(
        {"call": "SayHello"}, StatusCode.INVALID_ARGUMENT, "/package.Service/Method"
    ),
    "bad timeout": ErrorCase(
        {"call": SAY_HELLO, "timeout": "soon"}, StatusCode.INVALID_ARGUMENT, "timeout"
    ),
    "abort": ErrorCase(
        {"call": SAY_HELLO, "msg": {"name": "nobody"}},
        StatusCode.NOT_FOUND,
        "nobody is here",
        {"hint": "ask someone"},
    ),
    "servicer raised": ErrorCase(
        {"call": SAY_HELLO, "msg": {"name": "crash"}},
        StatusCode.UNKNOWN,
        "ZeroDivisionError: boom",
    ),
}


async def test_error_statuses(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    for name, case in ERRORS.items():
        answer = await served.call(case.envelope)
        assert isinstance(answer, dict), name
        assert "reply" not in answer, name
        status = answer["status"]
        assert status["code"] == case.code.value[0], (name, answer)
        assert case.details in status["details"], (name, answer)
        assert answer.get("trailers") == case.trailers, (name, answer)
        assert answer.get("seq", 0) == 0, (name, answer)
    assert "boom" in caplog.text  # logged with its traceback on the node, not swallowed
    # The node is still serving after all that.
    assert (await served.call({"call": SAY_HELLO, "msg": {"name": "ok"}}))["status"] == {"code": 0}
    # A call with no msg asks with the default (empty) request, as proto3 reads a missing message.
    assert (await served.call({"call": SAY_HELLO}))["status"] == {"code": 0}


async def test_deadline_exceeded(served: Served) -> None:
    started = time.monotonic()
    answer = await served.call({"call": SAY_HELLO, "msg": {"name": "slow"}, "timeout": 0.3})
    assert time.monotonic() - started >= 0.3
    assert answer == {
        "status": {"code": StatusCode.DEADLINE_EXCEEDED.value[0], "details": ANY_DETAILS},
        "seq": 0,
    }
    await asyncio.wait_for(served.greeter.cancelled.wait(), 5)  # the servicer was stopped

    # A stream past its deadline: the first reply resolves the send, the status follows.
    served.greeter.cancelled.clear()
    first = await served.call({"call": SAY_HELLO_STREAM, "msg": {"name": "slow"}, "timeout": 0.5})
    assert first == {"reply": {"message": "Hello slow"}, "seq": 0}
    end = await served.js.next_msg(peer_id=served.node.peer_id)
    assert end.msg == {
        "status": {"code": StatusCode.DEADLINE_EXCEEDED.value[0], "details": ANY_DETAILS},
        "seq": 1,
    }
    await asyncio.wait_for(served.greeter.cancelled.wait(), 5)


async def test_javascript_cancels_a_stream(served: Served) -> None:
    """A JavaScript client gives up by responding `{cancel: true}` on the call's message id."""
    pending = await served.js.post(
        served.node.peer_id, {"call": SAY_HELLO_STREAM, "msg": {"name": "slow"}}
    )
    first = await served.js.reply(pending)
    assert first.msg == {"reply": {"message": "Hello slow"}, "seq": 0}
    await asyncio.wait_for(served.greeter.started.wait(), 5)
    await served.js.respond(first.handle, {"cancel": True})
    await asyncio.wait_for(served.greeter.cancelled.wait(), 5)
