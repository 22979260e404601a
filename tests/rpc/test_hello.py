"""Hellos reach the peer: one that does not fit in the send queue toward a peer (it reads slower
than we send) is said once that queue has drained, and neither ``stop()`` nor serving a new
service fails for it; one is said on each new connection, which the peer may count as its first.
Over real WebRTC on loopback."""

from __future__ import annotations

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from netcut import cut, unavailable_reason

from p2prpc.errors import SendQueueFull
from p2prpc.node import Node
from p2prpc.rpc import Cardinality, Handler, ServicerContext, UnaryUnaryMethod
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

CAP = 256 * 1024


def fill_queue(node: Node, peer_id: str) -> None:
    """Queue toward ``peer_id`` until not even 20 bytes more fit (in one turn: nothing drains)."""
    for size in (60_000, 1_000, 20):
        while True:
            try:
                node.p2pt.send_raw(peer_id, [b"\x00" * size])
            except SendQueueFull:
                break
    assert node.p2pt.channel(peer_id).queued_bytes > CAP - 20


async def echo(request: StringValue, context: ServicerContext) -> StringValue:
    return request


def handler() -> Handler[StringValue, StringValue]:
    return Handler[StringValue, StringValue](
        echo, Cardinality.UNARY_UNARY, StringValue, StringValue
    )


async def test_a_node_whose_queue_to_a_peer_is_full_stops_cleanly() -> None:
    async with mesh(2, max_send_queue=CAP, keepalive_interval=None) as m:
        a, b = m.nodes
        fill_queue(b, a.peer_id)
        await b.stop()  # its goodbye hello does not fit: it stops all the same
        assert b.stopping


async def test_a_hello_that_does_not_fit_is_said_once_the_queue_drains() -> None:
    async with mesh(2, max_send_queue=CAP, keepalive_interval=None) as m:
        a, b = m.nodes
        fill_queue(b, a.peer_id)
        handler = Handler[StringValue, StringValue](
            echo, Cardinality.UNARY_UNARY, StringValue, StringValue
        )
        b.add_service("t.Fresh", {"/t.Fresh/Echo": handler})  # says hello to every peer
        assert "t.Fresh" not in a.peers[b.peer_id].services  # the hello waits behind the queue
        assert await a.wait_for_server("t.Fresh", 10) == b.peer_id


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
async def test_a_peer_that_gave_us_up_hears_our_hello_on_its_new_connection() -> None:
    """a drops b while b, cut off, cannot tell; a's next connection to b is a's first and b's
    second. b says hello on it all the same, so a learns again what b serves."""
    async with mesh(2, keepalive_interval=None) as m:
        a, b = m.nodes
        b.add_service("t.Fresh", {})
        await a.wait_for_server("t.Fresh", 10)
        with cut(b, a.peer_id):  # what a says on its way out does not reach b
            a.p2pt.peers[b.peer_id].destroy()
            await a.wait_until(lambda: b.peer_id not in a.peers, 10)
        assert a.peer_id in b.p2pt.peers  # b never heard: for b, a is still connected
        made = await a.p2pt.make_offer(b.peer_id, origin="relay:test")
        assert made is not None
        answer = await b.p2pt.answer_offer(a.peer_id, *made, origin="relay:test")
        assert answer is not None
        assert await a.p2pt.take_answer(b.peer_id, made[0], answer)
        assert await a.wait_for_server("t.Fresh", 10) == b.peer_id


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
async def test_what_is_sent_by_peer_id_goes_on_the_newest_connection() -> None:
    """After the same drop, b's old connection to a is dead at a's end while b still counts it:
    what b sends to a by peer id goes on the connection a made last, which a holds."""
    async with mesh(2, keepalive_interval=None) as m:
        a, b = m.nodes
        a.add_service("t.Echo", {"/t.Echo/Echo": handler()})
        await b.wait_for_server("t.Echo", 10)
        with cut(b, a.peer_id):
            a.p2pt.peers[b.peer_id].destroy()
            await a.wait_until(lambda: b.peer_id not in a.peers, 10)
        made = await a.p2pt.make_offer(b.peer_id, origin="relay:test")
        assert made is not None
        answer = await b.p2pt.answer_offer(a.peer_id, *made, origin="relay:test")
        assert answer is not None
        assert await a.p2pt.take_answer(b.peer_id, made[0], answer)
        await b.wait_until(lambda: len(b.p2pt._remotes[a.peer_id].channels) == 2, 10)
        echo_call = UnaryUnaryMethod(b.to(a.peer_id), "/t.Echo/Echo", StringValue, StringValue)
        reply = await echo_call(StringValue(value="there?"), timeout=5)
        assert reply.value == "there?"
