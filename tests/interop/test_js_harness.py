"""The interop harness, proven JavaScript to JavaScript.

Node and browser P2PT peers meet through bittorrent-tracker (and the embedded tracker) inside the
test network and talk the way P2PT's own example does. If these pass, the JavaScript side of every
interop test works.
"""

from __future__ import annotations

import asyncio

import pytest

from .harness import JsPeer, JsPeers, JsTracker, Runtime
from .netns import TestNetwork

pytestmark = [pytest.mark.interop, pytest.mark.asyncio]

IDENTIFIER = "p2prpc-interop-harness"


async def connected_pair(
    js_peers: JsPeers, tracker_url: str, runtimes: tuple[Runtime, Runtime]
) -> tuple[JsPeer, JsPeer]:
    """Two started agents that have found each other through `tracker_url`."""
    a, b = await asyncio.gather(*(js_peers.launch(runtime) for runtime in runtimes))
    a_id = await a.start([tracker_url], IDENTIFIER)
    b_id = await b.start([tracker_url], IDENTIFIER)
    assert await a.next_peerconnect() == b_id
    assert await b.next_peerconnect() == a_id
    return a, b


async def test_node_and_browser_talk_like_the_p2pt_example(
    js_peers: JsPeers, js_tracker: JsTracker
) -> None:
    a, b = await connected_pair(js_peers, js_tracker.url, ("node", "chromium"))
    assert b.peer_id is not None and a.peer_id is not None

    sent = await a.post(b.peer_id, "Hi")
    hi = await b.next_msg()
    assert (hi.peer_id, hi.msg) == (a.peer_id, "Hi")
    hello_sent = await b.respond(hi.handle, "Hello !")
    hello = await a.reply(sent)
    assert (hello.peer_id, hello.msg) == (b.peer_id, "Hello !")

    bye_sent = await a.respond(hello.handle, "Bye")
    bye = await b.reply(hello_sent)
    assert (bye.peer_id, bye.msg) == (a.peer_id, "Bye")
    await b.respond(bye.handle, "Bye !")
    assert (await a.reply(bye_sent)).msg == "Bye !"
    # One message id carried the whole conversation: nothing arrived as a new message.
    assert [e["event"] for e in a.events + b.events].count("msg") == 1
    assert a.errors == [] and b.errors == []


@pytest.mark.parametrize(
    "runtimes", [("node", "chromium"), ("chromium", "node")], ids=["node-first", "browser-first"]
)
async def test_json_objects_and_large_messages_cross_both_ways(
    js_peers: JsPeers, js_tracker: JsTracker, runtimes: tuple[Runtime, Runtime]
) -> None:
    a, b = await connected_pair(js_peers, js_tracker.url, runtimes)
    assert a.peer_id is not None and b.peer_id is not None
    document = {"o": 1, "text": "héllo ✓ 🙂", "list": [1, 2.5, None, True], "nested": {"k": []}}
    big = "".join(chr(0x20 + i % 95) for i in range(1_000_000))  # 63 chunks of 16000

    for sender, receiver, msg, answer in [
        (a, b, document, [document]),
        (b, a, big, big[::-1]),
        (a, b, big, {"size": len(big)}),
    ]:
        assert receiver.peer_id is not None and sender.peer_id is not None
        pending = await sender.post(receiver.peer_id, msg)
        received = await receiver.next_msg()
        assert received.msg == msg
        await receiver.respond(received.handle, answer)
        assert (await sender.reply(pending)).msg == answer


async def test_tracker_events_and_peer_bookkeeping(
    js_peers: JsPeers, js_tracker: JsTracker
) -> None:
    a, b = await connected_pair(js_peers, js_tracker.url, ("node", "chromium"))
    for peer in (a, b):
        event = await peer.next_event("trackerconnect")
        assert event["announce"] == js_tracker.url
        assert event["stats"] == {"connected": 1, "total": 1}
        assert await peer.tracker_stats() == {"connected": 1, "total": 1}
    assert (await a.peers()).keys() == {b.peer_id}
    assert (await b.peers()).keys() == {a.peer_id}

    await b.destroy()
    assert await a.next_event("peerclose") == {"event": "peerclose", "peer_id": b.peer_id}
    assert await a.peers() == {}


async def test_every_runtime_meets_itself_through_every_tracker(
    js_peers: JsPeers, js_runtime: Runtime, tracker_url: str
) -> None:
    a, b = await connected_pair(js_peers, tracker_url, (js_runtime, js_runtime))
    assert b.peer_id is not None
    pending = await a.post(b.peer_id, {"ping": 1})
    ping = await b.next_msg()
    assert ping.msg == {"ping": 1}
    await b.respond(ping.handle, "pong")
    assert (await a.reply(pending)).msg == "pong"


async def test_trackers_on_the_veth_address_can_be_added_and_removed(
    js_peers: JsPeers, interop_network: TestNetwork
) -> None:
    # Nothing listens on port 1 inside the test network: the connection is refused.
    dead = f"ws://{interop_network.addresses[1]}:1"
    async with JsTracker(interop_network.addresses[0]) as tracker:
        assert tracker.url.startswith(f"ws://{interop_network.addresses[0]}:")
        a, b = await asyncio.gather(js_peers.launch("node"), js_peers.launch("chromium"))
        await a.start([dead, tracker.url], IDENTIFIER)
        warning = await a.next_event("trackerwarning")
        assert warning["stats"]["total"] == 2
        await a.next_event("trackerconnect", where=lambda event: event["announce"] == tracker.url)
        assert await a.tracker_stats() == {"connected": 1, "total": 2}
        await a.remove_tracker(dead)

        # B learns of the tracker only later; A announces again to be found at once.
        await b.start([], IDENTIFIER)
        await b.add_tracker(tracker.url)
        await b.next_event("trackerconnect")
        await a.request_more_peers()
        assert await a.next_peerconnect() == b.peer_id
        assert await b.next_peerconnect() == a.peer_id
