"""Text UTF-8 cannot encode (a lone surrogate such as ``'\\ud800'``, which Python strings and
JSON escapes hold) never leaves a call without its status: from the application (a servicer's
details, an exception's message, a method name) or echoed from a peer whose envelope carried it,
each call ends on both sides with a status at once, and the server keeps nothing of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.errors import InvalidMetadata, RpcError
from p2prpc.node import Node
from p2prpc.rpc import (
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    StatusCode,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.testing import mesh
from p2prpc.wire.envelope import BinaryReader, Envelope, Kind, to_binary
from p2prpc.wire.frames import new_message_id
from p2prpc.wire.status import Status

pytestmark = pytest.mark.asyncio

S = StringValue
ONCE = RetryPolicy(max_attempts=1)
LONE = "bad \ud800 text"


class Servicer:
    def __init__(self) -> None:
        self.trailers_refused = asyncio.Event()

    async def Raise(self, request: S, context: ServicerContext) -> S:
        raise RpcError(StatusCode.NOT_FOUND, LONE)

    async def Unexpected(self, request: S, context: ServicerContext) -> S:
        raise ValueError(LONE)

    async def Abort(self, request: S, context: ServicerContext) -> S:
        await context.abort(StatusCode.PERMISSION_DENIED, LONE)

    async def AbortTrailers(self, request: S, context: ServicerContext) -> S:
        try:
            await context.abort(StatusCode.PERMISSION_DENIED, "x", [("k", LONE)])
        except InvalidMetadata:
            self.trailers_refused.set()
            raise

    async def Details(self, request: S, context: ServicerContext) -> S:
        context.set_code(StatusCode.FAILED_PRECONDITION)
        context.set_details(LONE)
        return S()

    async def Stream(self, request: S, context: ServicerContext) -> AsyncIterator[S]:
        yield S(value="one")
        raise RpcError(StatusCode.ABORTED, LONE)

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        unary = Cardinality.UNARY_UNARY
        return {
            "/u.S/Raise": Handler(self.Raise, unary, S, S),
            "/u.S/Unexpected": Handler(self.Unexpected, unary, S, S),
            "/u.S/Abort": Handler(self.Abort, unary, S, S),
            "/u.S/AbortTrailers": Handler(self.AbortTrailers, unary, S, S),
            "/u.S/Details": Handler(self.Details, unary, S, S),
            "/u.S/Stream": Handler(self.Stream, Cardinality.UNARY_STREAM, S, S),
        }


@asynccontextmanager
async def served(**options: Any) -> AsyncIterator[tuple[Node, Node, Servicer]]:
    async with mesh(2, keepalive_interval=None, **options) as m:
        server, client = m.nodes
        servicer = Servicer()
        server.add_service("u.S", servicer.handlers())
        await client.wait_for_server("u.S", 10)
        yield server, client, servicer


async def no_calls_left(node: Node) -> None:
    await asyncio.wait_for(endpoint_of(node).wait_idle(), 5)


CASES = {
    "Raise": (StatusCode.NOT_FOUND, LONE),
    "Abort": (StatusCode.PERMISSION_DENIED, LONE),
    "Details": (StatusCode.FAILED_PRECONDITION, LONE),
    "Unexpected": (StatusCode.UNKNOWN, f"unexpected ValueError: {LONE}"),
}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("method", CASES.keys())
async def test_a_status_whose_details_utf8_cannot_encode_still_ends_the_call(
    method: str, binary: bool
) -> None:
    async with served(binary=binary) as (server, client, _):
        call = UnaryUnaryMethod(Channel(client, retry_policy=ONCE), f"/u.S/{method}", S, S)
        with pytest.raises(RpcError) as caught:
            await call(S(), timeout=8)  # a hang would show as DEADLINE_EXCEEDED, 8 s later
        code, details = CASES[method]
        assert (caught.value.code(), caught.value.details()) == (code, details)
        await no_calls_left(server)
        await no_calls_left(client)


async def test_a_stream_ending_with_such_details_ends_on_both_sides() -> None:
    async with served() as (server, client, _):
        call = UnaryStreamMethod(Channel(client, retry_policy=ONCE), "/u.S/Stream", S, S)
        got = []
        with pytest.raises(RpcError) as caught:
            async with asyncio.timeout(10):
                async for reply in call(S(), timeout=8):
                    got.append(reply.value)
        assert got == ["one"]
        assert (caught.value.code(), caught.value.details()) == (StatusCode.ABORTED, LONE)
        await no_calls_left(server)


async def test_trailers_that_grpc_refuses_end_the_call_unknown() -> None:
    async with served() as (server, client, servicer):
        call = UnaryUnaryMethod(Channel(client, retry_policy=ONCE), "/u.S/AbortTrailers", S, S)
        with pytest.raises(RpcError) as caught:
            await call(S(), timeout=8)
        assert servicer.trailers_refused.is_set()
        assert caught.value.code() is StatusCode.UNKNOWN
        assert "printable ASCII" in caught.value.details()
        await no_calls_left(server)


async def test_a_method_name_utf8_cannot_encode_is_sent_and_answered() -> None:
    async with served() as (_, client, _):
        method = "/u.S/\ud800"
        call = UnaryUnaryMethod(Channel(client, retry_policy=ONCE), method, S, S)
        with pytest.raises(RpcError) as caught:
            await call(S(), timeout=8)
        assert caught.value.code() is StatusCode.UNIMPLEMENTED
        assert caught.value.details() == f"unknown method: {method}"
        await no_calls_left(client)


def binary_replies(node: Node) -> asyncio.Queue[Envelope]:
    """Every binary envelope ``node`` receives, read by a reader of its own."""
    queue: asyncio.Queue[Envelope] = asyncio.Queue()
    reader = BinaryReader()
    handler = node.p2pt.binary_handler
    assert handler is not None

    def on_binary(peer_id: str, data: bytes, connection: int) -> None:
        envelope = reader.feed(peer_id, data)
        if envelope is not None:
            queue.put_nowait(envelope)
        handler(peer_id, data, connection)

    node.p2pt.binary_handler = on_binary
    return queue


async def test_text_a_peer_sent_as_an_escape_is_echoed_back_in_a_status() -> None:
    # A binary call whose JSON header carries the method as an escape (\ud800): the server's
    # UNIMPLEMENTED names it, and the status must still reach the caller.
    async with served() as (server, client, _):
        replies = binary_replies(client)
        call_id = new_message_id()
        method = "/u.S/\ud800"
        frames = to_binary(
            Envelope(Kind.CALL, call_id, method=method, payload=b"", has_payload=True)
        )
        client.p2pt.send_raw(server.peer_id, frames)
        reply = await asyncio.wait_for(replies.get(), 5)
        assert reply.call_id == call_id
        assert reply.status == Status(StatusCode.UNIMPLEMENTED, f"unknown method: {method}")


async def test_a_json_form_peer_gets_such_text_back_escaped() -> None:
    async with served() as (server, client, _):
        peer = client.p2pt.peers[server.peer_id]
        call = {"call": "/u.S/Raise", "msg": "", "timeout": 5}
        _, reply = await asyncio.wait_for(client.p2pt.send(peer, call), 5)
        assert reply == {
            "status": {"code": StatusCode.NOT_FOUND.value[0], "details": LONE},
            "seq": 0,
        }
