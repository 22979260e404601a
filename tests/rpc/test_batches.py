"""Nodes pack small envelopes sent together into batches, and write topic messages with compact
headers, only for peers whose hello says they read them.

Two nodes over real WebRTC on loopback; what crosses is seen by wrapping the receiving node's
binary handler (the data-channel messages as they came).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.errors import RpcError
from p2prpc.identity import Identity
from p2prpc.node import Node, PeerInfo
from p2prpc.pubsub import Topic
from p2prpc.rpc import (
    Cardinality,
    Handler,
    ServicerContext,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.testing import mesh
from p2prpc.wire.envelope import (
    Envelope,
    Flags,
    Kind,
    is_batch,
    iter_batch,
    pack_batch,
    to_binary,
)
from p2prpc.wire.status import StatusCode

pytestmark = pytest.mark.asyncio

COUNT = 2000


async def count(request: StringValue, context: ServicerContext) -> AsyncIterator[StringValue]:
    for n in range(int(request.value)):
        yield StringValue(value=str(n))


def serve(node: Node) -> None:
    handler = Handler[Any, Any](count, Cardinality.UNARY_STREAM, StringValue, StringValue)
    node.add_service("t.Batches", {"/t.Batches/Count": handler})


def watch(node: Node) -> list[bytes]:
    """The binary data-channel messages ``node`` receives from now on."""
    seen: list[bytes] = []
    handler = node.p2pt.binary_handler
    assert handler is not None

    def on_binary(peer_id: str, data: bytes, connection: int) -> None:
        seen.append(data)
        handler(peer_id, data, connection)

    node.p2pt.binary_handler = on_binary
    return seen


async def stream(client: Node) -> list[str]:
    method = UnaryStreamMethod(client, "/t.Batches/Count", StringValue, StringValue)
    return [reply.value async for reply in method(StringValue(value=str(COUNT)), timeout=30)]


async def test_hellos_say_batch_and_a_stream_arrives_whole_in_order_and_packed() -> None:
    async with mesh(2) as m:
        server, client = m.nodes
        assert client.hello()["batch"] is True
        assert client.peers[server.peer_id].batch and server.peers[client.peer_id].batch
        serve(server)
        await client.wait_for_server("t.Batches", 10)
        seen = watch(client)
        assert await stream(client) == [str(n) for n in range(COUNT)]
        assert any(is_batch(data) for data in seen)
        assert len(seen) < COUNT // 4  # 2,000 replies and a status in far fewer messages


async def test_a_peer_whose_hello_does_not_say_batch_gets_none() -> None:
    assert not PeerInfo.from_hello("ab" * 20, {"binary": True}).batch
    assert not PeerInfo.from_hello("ab" * 20, {"binary": True, "batch": 1}).batch
    async with mesh(2) as m:
        server, client = m.nodes
        serve(server)
        await client.wait_for_server("t.Batches", 10)

        def older(info: PeerInfo) -> None:  # as an older node's hello leaves it, every hello
            if info.peer_id == client.peer_id:
                info.batch = False

        server.on("peer", older)  # a hello on a further connection comes any time
        older(server.peers[client.peer_id])
        seen = watch(client)
        assert await stream(client) == [str(n) for n in range(COUNT)]
        assert not any(is_batch(data) for data in seen)
        assert len(seen) == COUNT + 1


async def test_a_malformed_batch_is_reported_after_the_envelopes_before_the_fault() -> None:
    async with mesh(2) as m:
        a, b = m.nodes
        warned: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        b.on("peerwarning", lambda peer_id, error: warned.done() or warned.set_result(error))
        heard: list[str] = []
        b.on("peer", lambda info: heard.append(info.peer_id))
        hello = to_binary(Envelope(Kind.HELLO, 1, hello={**a.hello(), "topics": ["fresh"]}))
        a.p2pt.send_raw(b.peer_id, [pack_batch(hello) + b"\x00\x00\x00\x09\xb7"])
        error = await asyncio.wait_for(warned, 10)
        assert "batch" in str(error)
        assert "fresh" in b.peers[a.peer_id].topics  # the hello before the fault was read
        assert heard == [a.peer_id]


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "json-header"])
async def test_topic_messages_carry_compact_headers_to_peers_that_read_them(compact: bool) -> None:
    async with mesh(0) as m:
        publisher, b, c = [await m.add(identity=Identity.generate()) for _ in range(3)]
        for node in (publisher, b, c):
            await node.wait_for_peers(2, 30)
        assert publisher.hello()["compact_publish"] is True
        subscriptions = [Topic(n, "news", StringValue).subscribe() for n in (b, c)]
        await publisher.wait_until(
            lambda: all("news" in publisher.peers[n.peer_id].topics for n in (b, c)), 10
        )
        for node in (b, c):
            publisher.peers[node.peer_id].compact_publish = compact
        seen = watch(b)
        topic = Topic(publisher, "news", StringValue)
        for n in range(20):
            await topic.publish(StringValue(value=str(n)))
        for subscription in subscriptions:
            got = []
            async with asyncio.timeout(10):
                while len(got) < 20:
                    got.append(await anext(subscription))
            assert [r.message.value for r in got] == [str(n) for n in range(20)]
            assert publisher.identity is not None
            assert {r.publisher for r in got} == {publisher.identity.public_key}  # signed
        frames = [f for data in seen for f in (iter_batch(data) if is_batch(data) else [data])]
        published = [f for f in frames if f[1] == Kind.PUBLISH]
        assert len(published) == 20
        assert all(bool(f[2] & Flags.COMPACT) is compact for f in published)


async def test_an_identity_that_is_not_one_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match=r"Identity\.generate"):
        Node(["ws://127.0.0.1:1"], "x", identity=True)  # type: ignore[arg-type]


async def say(request: StringValue, context: ServicerContext) -> StringValue:
    return request


async def test_a_message_over_the_servers_cap_in_a_batch_costs_only_its_own_call() -> None:
    async with mesh(2, max_message_size=1000) as m:
        server, client = m.nodes
        handler = Handler[Any, Any](say, Cardinality.UNARY_UNARY, StringValue, StringValue)
        server.add_service("t.Say", {"/t.Say/Say": handler})
        await client.wait_for_server("t.Say", 10)
        client.max_message_size = 1 << 20  # the client may send more than the server reads
        # ... as to a peer whose hello says nothing of its limit (one that says it is sent none
        # larger: tests/rpc/test_announced_limits.py)
        client.peers[server.peer_id].max_message_size = None
        seen = watch(server)
        method = UnaryUnaryMethod(client, "/t.Say/Say", StringValue, StringValue)
        # Invoked in one turn: the first leaves alone, the other two packed in one batch.
        calls = [method(StringValue(value=v), timeout=10) for v in ("a", "x" * 5000, "b")]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert [r.value for r in results if isinstance(r, StringValue)] == ["a", "b"]
        refused = results[1]
        assert isinstance(refused, RpcError)
        assert refused.code() is StatusCode.RESOURCE_EXHAUSTED
        assert [is_batch(data) for data in seen] == [False, True]
