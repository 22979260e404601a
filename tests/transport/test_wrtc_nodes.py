"""Whole nodes on libwebrtc: two of them, and one with an aiortc node (each offering), calling
each other through the embedded tracker.

libwebrtc gathers no loopback candidates: the nodes meet over the test namespace's veth pair
(tests/interop/netns.py), so these tests are marked ``interop`` and run inside it; the aiortc node
there is pinned to the same address.
"""

from __future__ import annotations

import asyncio

import pytest
from helloworld_p2prpc import GreeterServicer, GreeterStub, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest
from interop.netns import ADDRESSES

from p2prpc.node import Node
from p2prpc.rpc import ServicerContext
from p2prpc.tracker.server import TrackerServer

pytest.importorskip("webrtc.aiortc", reason="the libwebrtc transport needs wrtc (p2prpc[native])")

from p2prpc.transport.aiortc import AiortcLink
from p2prpc.transport.wrtc import WrtcLink

pytestmark = [pytest.mark.asyncio, pytest.mark.interop]

LINKS = {"libwebrtc": WrtcLink, "aiortc": AiortcLink}


class Greeter(GreeterServicer):
    def __init__(self, name: str) -> None:
        self.name = name

    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        return HelloReply(message=f"{self.name} greets {request.name}")


@pytest.mark.parametrize(
    ("first", "second"),
    [("libwebrtc", "libwebrtc"), ("libwebrtc", "aiortc"), ("aiortc", "libwebrtc")],
    ids=["libwebrtc-libwebrtc", "libwebrtc-aiortc", "aiortc-libwebrtc"],
)
async def test_two_nodes_call_each_other_whatever_their_transports(first: str, second: str) -> None:
    """The second node to announce makes the offer the first answers: both orders of a mixed pair
    have each transport offer once."""
    async with TrackerServer("127.0.0.1", 0) as tracker:
        nodes = [
            Node(
                [tracker.url],
                "p2prpc-transports",
                ice_servers=[],
                host_addresses=[ADDRESSES[0]],
                transport=transport,
            )
            for transport in (first, second)
        ]
        try:
            for started, (node, name) in enumerate(zip(nodes, ("first", "second"), strict=True)):
                add_GreeterServicer_to_node(Greeter(name), node)
                await node.start()
                # The second announces once the first is known: it makes the offer.
                await tracker.wait_for(lambda stats, n=started + 1: stats.peers >= n)
            async with asyncio.timeout(20):
                for node in nodes:
                    await node.wait_for_peers(1)
            a, b = nodes
            assert (a.p2pt.transport.name, b.p2pt.transport.name) == (first, second)
            for node, other, transport in ((a, b, first), (b, a, second)):
                # Every connection of each node is made on its own transport.
                remote = node.p2pt._remotes[other.peer_id]
                links = [channel.link for channel in remote.channels.values()]
                assert links and all(type(link) is LINKS[transport] for link in links)
            async with asyncio.timeout(20):
                reply = await GreeterStub(a.to(b.peer_id)).SayHello(HelloRequest(name="a"))
                assert reply.message == "second greets a"
                reply = await GreeterStub(b.to(a.peer_id)).SayHello(HelloRequest(name="b"))
                assert reply.message == "first greets b"
        finally:
            for node in nodes:
                await node.close()
