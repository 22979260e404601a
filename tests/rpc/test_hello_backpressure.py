"""A hello that does not fit in the send queue toward a peer (it reads slower than we send) is
said once that queue has drained, and neither ``stop()`` nor serving a new service fails for it.
Over real WebRTC on loopback."""

from __future__ import annotations

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.errors import SendQueueFull
from p2prpc.node import Node
from p2prpc.rpc import Cardinality, Handler, ServicerContext
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
