"""P2PT's own test scenarios, Python to Python, over the embedded tracker on loopback.

Mirrors P2PT 1.6.2's test/basic.js and test/different-messages.js, plus the defects this port fixes:
a peer that disappears mid-send, reply timeouts, concurrent respond, bad frames, clean destroy.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Callable
from typing import Any

import pytest

from p2prpc import P2PT, Peer, PeerClosed, ReplyTimeout
from p2prpc.errors import Destroyed, FrameError, NothingToRespond
from p2prpc.node import Node
from p2prpc.testing import loopback_p2pt, swarm, wait_connected
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.frames import JSONValue

pytestmark = pytest.mark.asyncio


def random_text(n: int) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def event(
    p2pt: P2PT, name: str, when: Callable[..., bool] = lambda *a: True
) -> asyncio.Future[Any]:
    """A future resolved with the arguments of the next ``name`` event that satisfies ``when``."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def handler(*args: Any) -> None:
        if not future.done() and when(*args):
            future.set_result(args if len(args) > 1 else args[0])
            p2pt.remove_listener(name, handler)

    p2pt.on(name, handler)
    return future


async def test_character_message() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        got = event(b, "msg")
        a.send(a.peers[b.peer_id], "hello")
        peer, msg = await asyncio.wait_for(got, 10)
        assert msg == "hello"
        assert peer.id == a.peer_id


async def test_chained_messages() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        seen: list[JSONValue] = []

        async def on_msg(peer: Peer, msg: JSONValue) -> None:
            if msg == "hello":
                peer, msg = await peer.respond("hi")
                seen.append(msg)
                peer, msg = await peer.respond("fine")
                seen.append(msg)
                peer.respond("bye!")

        b.on("msg", on_msg)
        peer, msg = await a.send(a.peers[b.peer_id], "hello")
        assert msg == "hi"
        peer, msg = await peer.respond("how are you ?")
        assert msg == "fine"
        peer, msg = await peer.respond("byeee")
        assert msg == "bye!"
        assert seen == ["how are you ?", "byeee"]


async def test_seed_example_conversation_on_one_message_id() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        b.on("msg", lambda peer, msg: peer.respond("Hello !") if msg == "Hi" else None)
        first = a.send(a.peers[b.peer_id], "Hi")
        peer, msg = await first
        assert (msg, peer.message_id) == ("Hello !", first.id)


async def test_tracker_connect_and_warning() -> None:
    async with TrackerServer("127.0.0.1", 0) as tracker:
        good = loopback_p2pt([tracker.url], "p2pt")
        connected = event(good, "trackerconnect")
        await good.start()
        tracker_client, stats = await asyncio.wait_for(connected, 10)
        assert tracker_client.announce_url == tracker.url
        assert stats == {"connected": 1, "total": 1}
        await good.destroy()

    # The tracker is gone now: its port refuses connections.
    bad = loopback_p2pt([tracker.url], "p2pt")
    warned = event(bad, "trackerwarning")
    await bad.start()
    error, stats = await asyncio.wait_for(warned, 10)
    assert tracker.url in str(error)
    assert stats == {"connected": 0, "total": 1}
    await bad.destroy()


async def test_two_trackers_give_two_channels_and_the_second_is_used_when_the_first_closes() -> (
    None
):
    async with swarm(2, trackers=2) as s:
        a, b = s.peers

        def has_two_channels() -> bool:
            peer = b.peers.get(a.peer_id)
            return peer is not None and peer.channels >= 2

        await _until(has_two_channels)  # one channel through each tracker

        peer = b.peers[a.peer_id]
        first = peer.channel_name
        closed_on_a = event(a, "peerclose")
        peer.destroy()  # closes only this data channel
        got = event(a, "msg")
        await _until(lambda: b.peers[a.peer_id].channels == 1 and not _is_open(b, a, first))
        b.send(peer, "hello")  # the handle's channel is gone: another channel carries it
        their_peer, msg = await asyncio.wait_for(got, 10)
        assert msg == "hello"
        assert their_peer.channel_name != first
        assert not closed_on_a.done()  # a backup channel is left: the peer is not closed


async def test_tracker_addition() -> None:
    async with TrackerServer("127.0.0.1", 0) as t1, TrackerServer("127.0.0.1", 0) as t2:
        a = loopback_p2pt([t1.url], "p2pt")
        b = loopback_p2pt([t2.url], "p2pt")
        try:
            connected = event(a, "peerconnect")
            await a.start()
            await b.start()
            a.add_tracker(t2.url)
            peer = await asyncio.wait_for(connected, 15)
            assert peer.id == b.peer_id
            with pytest.raises(ValueError):
                a.add_tracker(t2.url)
        finally:
            await a.destroy()
            await b.destroy()


async def test_tracker_removal_keeps_the_connection() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        b.remove_tracker(s.urls[0])
        assert b.get_tracker_stats() == {"connected": 0, "total": 0}
        got = event(a, "msg")
        b.send(b.peers[a.peer_id], "hello")
        _, msg = await asyncio.wait_for(got, 10)
        assert msg == "hello"
        with pytest.raises(ValueError):
            b.remove_tracker(s.urls[0])


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
async def test_large_messages(as_json: bool) -> None:
    kb100, mb1 = random_text(100_000), random_text(1_000_000)
    request: JSONValue = {"hello": kb100} if as_json else kb100
    response: JSONValue = {"hello": mb1} if as_json else mb1
    async with swarm(2) as s:
        a, b = s.peers
        received: list[JSONValue] = []

        def on_msg(peer: Peer, msg: JSONValue) -> None:
            received.append(msg)
            peer.respond(response)

        b.on("msg", on_msg)
        _, msg = await a.send(a.peers[b.peer_id], request)
        assert received == [request]
        assert msg == response


async def test_json_values_of_every_kind() -> None:
    values: list[JSONValue] = [
        {"a": [1, 2.5, None, True], "nested": {"x": "y"}},
        [1, "two", {"three": 3}],
        None,
        False,
        42,
        "😀 astral and \u2028 separators",
        "",
    ]
    async with swarm(2) as s:
        a, b = s.peers
        b.on("msg", lambda peer, msg: peer.respond(msg))
        for value in values:
            _, echoed = await a.send(a.peers[b.peer_id], value)
            assert echoed == value


async def test_peer_disappearing_mid_send_fails_the_send() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        b.on("msg", lambda peer, msg: None)  # never answers
        pending = a.send(a.peers[b.peer_id], "are you there?", timeout=None)
        closed = event(a, "peerclose")
        await b.destroy()
        with pytest.raises(PeerClosed):
            await asyncio.wait_for(pending, 30)
        assert (await closed).id == b.peer_id
        # Sending to a peer that is gone fails at once, too.
        with pytest.raises(PeerClosed):
            await a.send(closed.result(), "still there?")


async def test_reply_timeout() -> None:
    async with swarm(2, reply_timeout=0.2) as s:
        a, b = s.peers
        got = event(b, "msg")
        with pytest.raises(ReplyTimeout):
            await a.send(a.peers[b.peer_id], "no answer")
        await got
        assert a.peers[b.peer_id].connected


async def test_respond_answers_its_own_message_under_concurrency() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        held: list[tuple[Peer, JSONValue]] = []
        both = asyncio.Event()

        def on_msg(peer: Peer, msg: JSONValue) -> None:
            held.append((peer, msg))
            if len(held) == 2:
                both.set()

        b.on("msg", on_msg)
        peer = a.peers[b.peer_id]
        first, second = a.send(peer, "first"), a.send(peer, "second")
        await asyncio.wait_for(both.wait(), 10)
        # Answer in the opposite order: each respond must still reach its own sender.
        for handle, msg in reversed(held):
            handle.respond(f"re: {msg}")
        assert (await first)[1] == "re: first"
        assert (await second)[1] == "re: second"


async def test_a_bad_frame_is_reported_and_the_peer_stays_connected() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        warned = event(b, "peerwarning")
        channel = next(iter(a._remotes[b.peer_id].channels.values()))
        channel.send(['^{"id": "not a number"}'])
        peer, error = await asyncio.wait_for(warned, 10)
        assert isinstance(error, FrameError)
        assert peer.id == a.peer_id
        got = event(b, "msg")
        a.send(a.peers[b.peer_id], "still fine")
        assert (await asyncio.wait_for(got, 10))[1] == "still fine"


async def test_respond_without_a_message_is_a_local_error() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        with pytest.raises(NothingToRespond):
            a.peers[b.peer_id].respond("what?")


async def test_destroy_fails_pending_sends_and_leaves_no_task_behind() -> None:
    before = asyncio.all_tasks()
    tracker = TrackerServer("127.0.0.1", 0)
    await tracker.start()
    a = loopback_p2pt([tracker.url], "p2pt")
    b = loopback_p2pt([tracker.url], "p2pt")
    await a.start()
    await b.start()
    await wait_connected([a, b], 1)
    pending = a.send(a.peers[b.peer_id], "hello", timeout=None)
    await a.destroy()
    await b.destroy()
    await tracker.close()
    with pytest.raises(Destroyed):
        await pending
    with pytest.raises(Destroyed):
        await a.start()
    await asyncio.sleep(0)  # let finished tasks be collected by the loop
    assert asyncio.all_tasks() - before == set()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition that no event announces (channel counts); fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - channel counts change with no event to wait on
            await asyncio.sleep(0.02)


def _is_open(b: P2PT, a: P2PT, name: str) -> bool:
    channel = b._remotes[a.peer_id].channels.get(name)
    return channel is not None and channel.is_open


async def test_destroy_ends_waits_and_message_iterations() -> None:
    a = loopback_p2pt([], "p2pt")
    await a.start()

    async def read_all() -> list[tuple[Peer, JSONValue]]:
        return [m async for m in a.messages()]

    waiting = asyncio.create_task(a.wait_for_peer())
    reading = asyncio.create_task(read_all())
    await asyncio.sleep(0)  # both are waiting now
    await a.destroy()
    with pytest.raises(Destroyed):
        await asyncio.wait_for(waiting, 5)
    assert await asyncio.wait_for(reading, 5) == []


async def test_one_tracker_url_as_a_string_is_a_type_error_not_one_tracker_a_letter() -> None:
    for url in ("ws://127.0.0.1:8000", b"ws://127.0.0.1:8000"):
        with pytest.raises(TypeError, match="a list of tracker URLs, not one string"):
            P2PT(url, "app")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="a list of tracker URLs"):
            Node(url, "app")  # type: ignore[arg-type]
