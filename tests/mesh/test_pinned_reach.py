"""A client pinned to a server's key reaches it through the mesh even while another, not
allowed, connected peer serves the same service."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc import Identity
from p2prpc.node import Node
from p2prpc.p2pt import P2PT
from p2prpc.rpc import Cardinality, Channel, Handler, ServicerContext, UnaryUnaryMethod
from p2prpc.testing import loopback_node

pytestmark = pytest.mark.asyncio

SERVICE = "pin.Greeter"
SAY = f"/{SERVICE}/Say"


def serve(node: Node, name: str) -> None:
    async def say(request: StringValue, context: ServicerContext) -> StringValue:
        return StringValue(value=f"{name}: {request.value}")

    node.add_service(
        SERVICE, {SAY: Handler(say, Cardinality.UNARY_UNARY, StringValue, StringValue)}
    )


async def connect(a: P2PT, b: P2PT) -> None:
    made = await a.make_offer(b.peer_id, origin="relay:test")
    assert made is not None
    answer = await b.answer_offer(a.peer_id, made[0], made[1], origin="relay:test")
    assert answer is not None and await a.take_answer(b.peer_id, made[0], answer)


async def test_a_pinned_client_reaches_its_server_past_one_it_may_not_use() -> None:
    """Reproduced by a hostile review: reach_service returned at once because some connected
    peer served the service, so a client pinned to another server's key never connected to it
    and failed UNAVAILABLE."""
    server_key = Identity.generate()
    async with AsyncExitStack() as stack:
        # Degrees at their bounds: nobody connects to the server for the degree's sake.
        client, other, relay, server = (
            loopback_node([], "pinned", identity=identity, max_peers=peers)
            for identity, peers in (
                (Identity.generate(), 2),
                (Identity.generate(), 1),
                (None, 2),
                (server_key, 1),
            )
        )
        for node in (client, other, relay, server):
            stack.push_async_callback(node.close)
            await node.start()
        serve(other, "other")
        serve(server, "server")
        await connect(client.p2pt, other.p2pt)
        await connect(client.p2pt, relay.p2pt)
        await connect(relay.p2pt, server.p2pt)
        await client.wait_until(lambda: bool(client.servers_of(SERVICE)), 15)
        async with asyncio.timeout(15):
            while server.peer_id not in client.known_peers:  # noqa: ASYNC110 - no event for a pex
                await asyncio.sleep(0.05)
        assert server.peer_id not in client.p2pt.peers
        pinned = Channel(client, allowed_servers=[server_key.public_key])
        say = UnaryUnaryMethod(pinned, SAY, StringValue, StringValue)
        reply = await say(StringValue(value="hi"), timeout=15)
        assert reply.value == "server: hi"
        assert client.p2pt.peers[server.peer_id].public_key == server_key.public_key
