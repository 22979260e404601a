"""Topics between Python nodes and a plain JavaScript P2PT app (node and Chromium).

The JavaScript side uses nothing but P2PT: it subscribes with a hello that names its topics and
publishes with `{pub, msg}` (docs/PROTOCOL.md, section 5); the Python side uses the generated,
typed chat topic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from chat_p2prpc import ChatMessageTopic
from chat_pb2 import ChatMessage

from p2prpc.node import Node
from p2prpc.pubsub import Received

from .harness import JsPeers, Runtime

pytestmark = [pytest.mark.interop, pytest.mark.asyncio]

IDENTIFIER = "p2prpc-interop-pubsub"


async def _hello_naming(node: Node, peer_id: str, topic: str) -> None:
    async with asyncio.timeout(20):
        while topic not in getattr(node.peers.get(peer_id), "topics", ()):
            said: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            node.once("peer", said.set_result)
            await said


async def test_a_js_app_publishes_to_and_receives_from_python_subscribers(
    js_peers: JsPeers, js_runtime: Runtime, tracker_url: str
) -> None:
    js = await js_peers.launch(js_runtime)
    # Host candidates on the test network's addresses (libwebrtc ignores loopback), no STUN.
    nodes = [Node([tracker_url], IDENTIFIER, ice_servers=[]) for _ in range(2)]
    try:
        for node in nodes:
            await node.start()
        subscriptions = [ChatMessageTopic(node).subscribe() for node in nodes]
        js_id = await js.start([tracker_url], IDENTIFIER)
        # P2PT in Chromium may report one peer's connect twice: wait for both nodes, once each.
        met: set[str] = set()
        while len(met) < len(nodes):
            met.add(await js.next_peerconnect(timeout=30))
        assert met == {node.peer_id for node in nodes}

        for node in nodes:
            await js.post(node.peer_id, {"hello": {"v": 1, "topics": ["chat"]}})
            await _hello_naming(node, js_id, "chat")

        # JavaScript publishes to each node it knows, numbering its messages and letting the nodes
        # relay them once: every Python subscriber gets each message once, in order.
        for seq in range(2):
            line = {"author": "js", "text": f"{seq} from {js_runtime}"}
            envelope = {"pub": "chat", "msg": line, "from": js_id, "seq": seq, "hops": 1}
            for node in nodes:
                await js.post(node.peer_id, envelope)
        for subscription in subscriptions:
            async with asyncio.timeout(20):
                first: Received[ChatMessage] = await anext(subscription)
                second: Received[ChatMessage] = await anext(subscription)
            assert [first.message.text, second.message.text] == [
                f"{seq} from {js_runtime}" for seq in range(2)
            ]
            assert (first.sender, first.seq, second.seq) == (js_id, 0, 1)

        # Python publishes; the JavaScript app gets proto3 JSON with the publisher's id.
        await ChatMessageTopic(nodes[0]).publish(ChatMessage(author="py", text="hello, js"))
        got = await js.next_event(
            "msg", timeout=20, where=lambda e: isinstance(e.get("msg"), dict) and "pub" in e["msg"]
        )
        assert got["msg"]["pub"] == "chat"
        assert got["msg"]["msg"] == {"author": "py", "text": "hello, js"}
        assert got["msg"]["from"] == nodes[0].peer_id
        assert got["msg"]["seq"] == 0
        assert js.errors == []
    finally:
        for node in nodes:
            await node.close()


async def test_a_js_app_in_a_mesh_of_nodes_sees_nothing_of_the_exchange(
    js_peers: JsPeers, js_runtime: Runtime, tracker_url: str
) -> None:
    js = await js_peers.launch(js_runtime)
    nodes = [Node([tracker_url], IDENTIFIER, ice_servers=[]) for _ in range(3)]
    try:
        for node in nodes:
            await node.start()
        js_id = await js.start([tracker_url], IDENTIFIER)
        met: set[str] = set()
        while len(met) < len(nodes):
            met.add(await js.next_peerconnect(timeout=30))
        # The nodes exchange peers among themselves: each learns of the two others.
        async with asyncio.timeout(30):
            for node in nodes:
                others = {n.peer_id for n in nodes} - {node.peer_id}
                while not others <= set(node.known_peers):
                    said: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                    node.once("peer", said.set_result)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(said, 0.5)
        assert all(js_id not in node.known_peers for node in nodes)  # it speaks no mesh
        # The JavaScript app got hellos, and nothing of the exchange or of relayed signalling.
        hellos = await asyncio.gather(
            *(js.next_event("msg", timeout=20, where=_hello_from(n.peer_id)) for n in nodes)
        )
        assert len(hellos) == len(nodes)
        plain: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        nodes[0].p2pt.once("msg", lambda peer, msg: plain.set_result(msg))
        await js.post(nodes[0].peer_id, "still P2PT")
        assert await asyncio.wait_for(plain, 20) == "still P2PT"
        seen = [e.get("msg") for e in js._inbox._backlog if e.get("event") == "msg"]
        assert not [m for m in seen if isinstance(m, dict) and ({"pex", "signal"} & m.keys())]
        assert js.errors == []
    finally:
        for node in nodes:
            await node.close()


def _hello_from(peer_id: str) -> Callable[[dict[str, Any]], bool]:
    def wants(event: dict[str, Any]) -> bool:
        msg = event.get("msg")
        return event["peer_id"] == peer_id and isinstance(msg, dict) and "hello" in msg

    return wants
