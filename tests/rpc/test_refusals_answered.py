"""Every refusal is answered on the message's id whenever one can be read, at every layer: what
the P2PT frame parser, the reassembler, the JSON envelope reader, the binary reader or the batch
reader refuses ends its call at once with a gRPC status, on both sides, in both forms and both
directions; a plain P2PT peer gets a JSON-form status on its message id. Over real WebRTC."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc import P2PT, Peer
from p2prpc.errors import RpcError
from p2prpc.node import Node
from p2prpc.rpc import (
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    StatusCode,
    UnaryUnaryMethod,
)
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.testing import loopback_p2pt, mesh
from p2prpc.wire.envelope import MAGIC, BinaryReader, Envelope, Kind, pack_batch, to_binary
from p2prpc.wire.frames import JSONValue, encode_message, new_message_id

pytestmark = pytest.mark.asyncio

S = StringValue
ONCE = RetryPolicy(max_attempts=1)
INVALID = StatusCode.INVALID_ARGUMENT.value[0]
EXHAUSTED = StatusCode.RESOURCE_EXHAUSTED.value[0]


class Servicer:
    def __init__(self) -> None:
        self.collecting = asyncio.Event()
        self.ended = asyncio.Event()

    async def Echo(self, request: S, context: ServicerContext) -> S:
        return request

    async def Collect(self, requests: AsyncIterator[S], context: ServicerContext) -> S:
        self.collecting.set()
        try:
            return S(value=",".join([r.value async for r in requests]))
        finally:
            self.ended.set()

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        return {
            "/u.S/Echo": Handler(self.Echo, Cardinality.UNARY_UNARY, S, S),
            "/u.S/Collect": Handler(self.Collect, Cardinality.STREAM_UNARY, S, S),
        }


class Plain:
    """A plain P2PT peer, as a JavaScript app is: it writes frames and reads messages."""

    def __init__(self, p2pt: P2PT, peer: Peer) -> None:
        self.p2pt = p2pt
        self.peer = peer
        self.got: asyncio.Queue[tuple[int | None, JSONValue]] = asyncio.Queue()
        p2pt.on("msg", lambda peer, msg: self.got.put_nowait((peer.message_id, msg)))

    def frames(self, *texts: str) -> None:
        self.p2pt.send_raw(self.peer, list(texts))

    def post(self, msg: JSONValue, msg_id: int) -> None:
        self.p2pt.post(self.peer, msg, msg_id)

    async def on(self, msg_id: int, timeout: float = 5) -> JSONValue:
        """The next message on ``msg_id`` (others are skipped: hellos, pings)."""
        async with asyncio.timeout(timeout):
            while True:
                got_id, msg = await self.got.get()
                if got_id == msg_id:
                    return msg


@asynccontextmanager
async def node_and_plain(**options: Any) -> AsyncIterator[tuple[Node, Plain, Servicer]]:
    async with mesh(1, keepalive_interval=None, **options) as m:
        (node,) = m.nodes
        servicer = Servicer()
        node.add_service("u.S", servicer.handlers())
        p2pt = loopback_p2pt([m.tracker.url], "p2prpc")
        try:
            await p2pt.start()
            plain = Plain(p2pt, await p2pt.wait_for_peer(timeout=10))
            yield node, plain, servicer
        finally:
            await p2pt.destroy()


def frame(msg_id: int, msg: str, c: int = 0, *, last: bool = True) -> str:
    body: dict[str, Any] = {"id": msg_id, "msg": msg, "o": 1, "c": c}
    if last:
        body["last"] = True
    return "^" + json.dumps(body)


CALL = json.dumps({"call": "/u.S/Echo", "msg": "hi"})
BROKEN_REQUESTS = {
    "bad JSON inside a chunked call": lambda i: [
        frame(i, CALL[:20], last=False),
        frame(i, "nope}", 1),
    ],
    "a frame that is not JSON": lambda i: [f'^{{"id":{i},"msg":"{{\\"call\\"'],
    "a frame whose msg is not a string": lambda i: [f'^{{"id":{i},"msg":{{}},"c":0,"last":true}}'],
    "a chunk out of order": lambda i: [frame(i, CALL[:20], last=False), frame(i, CALL[20:], 2)],
    "over the largest message": lambda i: encode_message(
        {"call": "/u.S/Echo", "msg": "x" * 9000}, i
    ),
}


@pytest.mark.parametrize("case", BROKEN_REQUESTS.keys())
async def test_a_plain_peer_whose_call_is_refused_below_the_envelope_gets_a_status(
    case: str,
) -> None:
    async with node_and_plain(max_message_length=8000) as (_, plain, _):
        msg_id = new_message_id()
        plain.frames(*BROKEN_REQUESTS[case](msg_id))
        answer = await plain.on(msg_id)
        assert isinstance(answer, dict) and "status" in answer
        code = EXHAUSTED if case == "over the largest message" else INVALID
        assert answer["status"]["code"] == code  # type: ignore[call-overload,index]
        assert "request refused" in answer["status"]["details"]  # type: ignore[call-overload,index]
        # The node still serves that peer.
        plain.post({"call": "/u.S/Echo", "msg": "again"}, msg_id + 1)
        assert (await plain.on(msg_id + 1))["reply"] == "again"  # type: ignore[call-overload,index]


async def test_a_call_left_unfinished_past_its_age_is_answered() -> None:
    async with node_and_plain(max_message_age=0.3) as (_, plain, _):
        msg_id = new_message_id()
        plain.frames(frame(msg_id, CALL[:20], last=False))
        answer = await plain.on(msg_id)
        assert answer["status"]["code"] == INVALID  # type: ignore[call-overload,index]
        assert "unfinished" in answer["status"]["details"]  # type: ignore[call-overload,index]


async def test_a_malformed_request_of_an_open_call_ends_it_on_both_sides() -> None:
    async with node_and_plain() as (node, plain, servicer):
        msg_id = new_message_id()
        plain.post({"call": "/u.S/Collect"}, msg_id)
        await asyncio.wait_for(servicer.collecting.wait(), 5)
        plain.post({"msg": "x", "seq": "not a number"}, msg_id)
        answer = await plain.on(msg_id)
        assert answer["status"]["code"] == INVALID  # type: ignore[call-overload,index]
        await asyncio.wait_for(servicer.ended.wait(), 5)  # the servicer was cancelled
        await asyncio.wait_for(endpoint_of(node).wait_idle(), 5)


# -- a client refusing a reply: its call ends at once, and the server is told (cancel) -------


@asynccontextmanager
async def plain_server() -> AsyncIterator[tuple[Node, Plain]]:
    """A node, and a plain P2PT peer that says it serves u.S in the JSON form."""
    async with mesh(1, keepalive_interval=None) as m:
        (node,) = m.nodes
        p2pt = loopback_p2pt([m.tracker.url], "p2prpc")
        try:
            await p2pt.start()
            plain = Plain(p2pt, await p2pt.wait_for_peer(timeout=10))
            plain.post({"hello": {"v": 1, "services": ["u.S"]}}, new_message_id())
            await node.wait_for_server("u.S", 10)
            yield node, plain
        finally:
            await p2pt.destroy()


async def call_id_of(plain: Plain) -> int:
    async with asyncio.timeout(5):
        while True:
            msg_id, msg = await plain.got.get()
            if isinstance(msg, dict) and "call" in msg:
                assert msg_id is not None
                return msg_id


BROKEN_REPLIES = {
    "a malformed reply": (
        lambda i: encode_message({"reply": "x", "seq": "zero"}, i),
        StatusCode.INTERNAL,
    ),
    "a status with no such code": (
        lambda i: encode_message({"status": {"code": 99}}, i),
        StatusCode.INTERNAL,
    ),
    "bad JSON inside a chunked reply": (
        lambda i: [frame(i, '{"reply": ', last=False), frame(i, "nope", 1)],
        StatusCode.INTERNAL,
    ),
    "a reply frame that is not JSON": (
        lambda i: [f'^{{"id":{i},"msg":"{{\\"reply'],
        StatusCode.INTERNAL,
    ),
}


@pytest.mark.parametrize("case", BROKEN_REPLIES.keys())
async def test_a_refused_json_reply_ends_the_call_at_once_and_cancels_it(case: str) -> None:
    async with plain_server() as (node, plain):
        echo = UnaryUnaryMethod(Channel(node, retry_policy=ONCE), "/u.S/Echo", S, S)
        call = echo(S(value="hi"), timeout=30)
        call_id = await call_id_of(plain)
        texts, code = BROKEN_REPLIES[case]
        plain.frames(*texts(call_id))
        with pytest.raises(RpcError) as caught:
            async with asyncio.timeout(5):  # not the 30 s of its deadline
                await call
        assert caught.value.code() is code
        assert await plain.on(call_id) == {"cancel": True}
        await asyncio.wait_for(endpoint_of(node).wait_idle(), 5)


# -- binary frames: an unknown kind, and a batch cut short, are answered on their call id ----


def binary_received(node: Node) -> asyncio.Queue[Envelope]:
    queue: asyncio.Queue[Envelope] = asyncio.Queue()
    reader = BinaryReader()
    handler = node.p2pt.binary_handler
    assert handler is not None

    def on_binary(peer_id: str, data: bytes, connection: int) -> None:
        for data_frame in [data] if data[1] != 14 else _frames(data):
            envelope = reader.feed(peer_id, data_frame)
            if envelope is not None:
                queue.put_nowait(envelope)
        handler(peer_id, data, connection)

    node.p2pt.binary_handler = on_binary
    return queue


def _frames(batch: bytes) -> list[bytes]:
    from p2prpc.wire.envelope import iter_batch

    return list(iter_batch(batch))


async def status_on(queue: asyncio.Queue[Envelope], call_id: int) -> Envelope:
    async with asyncio.timeout(5):
        while True:
            envelope = await queue.get()
            if envelope.call_id == call_id and envelope.kind is Kind.STATUS:
                return envelope


UNREADABLE_FRAMES = {
    "a kind this node does not know": lambda i: bytes((MAGIC, 99, 0)) + i.to_bytes(4) + bytes(6),
    "a call frame with flags nobody knows": lambda i: (
        bytes((MAGIC, Kind.CALL, 0x80)) + i.to_bytes(4) + bytes(6)
    ),
    "a batch whose last frame is cut short": lambda i: pack_batch(
        [to_binary(Envelope(Kind.CALL, i, method="/u.S/Echo", payload=b"", has_payload=True))[0]]
    )[:-3],
}


@pytest.mark.parametrize("case", UNREADABLE_FRAMES.keys())
async def test_a_binary_frame_refused_before_its_envelope_is_answered_on_its_call_id(
    case: str,
) -> None:
    async with mesh(2, keepalive_interval=None) as m:
        server, client = m.nodes
        server.add_service("u.S", Servicer().handlers())
        await client.wait_for_server("u.S", 10)
        received = binary_received(client)
        call_id = new_message_id()
        client.p2pt.send_raw(server.peer_id, [UNREADABLE_FRAMES[case](call_id)])
        status = (await status_on(received, call_id)).status
        assert status is not None and status.code is StatusCode.INVALID_ARGUMENT


async def test_a_reply_of_a_kind_the_client_does_not_know_ends_its_call_at_once() -> None:
    async with mesh(2, keepalive_interval=None) as m:
        server, client = m.nodes
        calls: asyncio.Queue[int] = asyncio.Queue()
        cancelled = asyncio.Event()

        async def hang(request: S, context: ServicerContext) -> S:
            calls.put_nowait(context._call.call_id)  # type: ignore[attr-defined]
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()
            raise AssertionError("unreachable")

        server.add_service("u.S", {"/u.S/Hang": Handler(hang, Cardinality.UNARY_UNARY, S, S)})
        await client.wait_for_server("u.S", 10)
        call = UnaryUnaryMethod(Channel(client, retry_policy=ONCE), "/u.S/Hang", S, S)(
            S(), timeout=30
        )
        call_id = await asyncio.wait_for(calls.get(), 5)
        unknown = bytes((MAGIC, 99, 0)) + call_id.to_bytes(4) + bytes(6)
        server.p2pt.send_raw(client.peer_id, [unknown])
        with pytest.raises(RpcError) as caught:
            async with asyncio.timeout(5):
                await call
        assert caught.value.code() is StatusCode.INTERNAL
        await asyncio.wait_for(cancelled.wait(), 5)  # the server was told: cancel
