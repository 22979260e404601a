"""P2PT's own test scenarios between one p2prpc peer and one real JavaScript P2PT peer.

Mirrors P2PT 1.6.2's test/basic.js and test/different-messages.js, with a Python P2PT on one side
and a JavaScript agent (node or headless Chromium) on the other, in both directions. Two things
decide a direction, and they are independent:

- who greets: who picks the message id and who answers on it (the send/respond chain);
- who announces first: the tracker relays only the offers of a peer announcing into a swarm that
  already has peers, so the later announcer is the WebRTC offerer (it creates the data channel)
  and the earlier one answers. `meet` starts the peers in that order and checks the roles.

The cross product runs where the wire could differ: the basic conversation and large messages go
through every runtime, every tracker and both directions. The other scenarios run on the subset
their docstrings justify, so that the whole interop suite stays within a few minutes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aioice.ice
import pytest
import pytest_asyncio

from p2prpc import P2PT, Peer, PeerClosed

from .harness import DEFAULT_TIMEOUT, JsonValue, JsPeer, JsPeers, Runtime, running_tracker
from .netns import TestNetwork

pytestmark = [pytest.mark.interop, pytest.mark.asyncio]

logger = logging.getLogger(__name__)

IDENTIFIER = "p2prpc-interop-p2pt"

Side = Literal["python", "js"]
SIDES: tuple[Side, ...] = ("python", "js")

PEER_LOSS_BOUND = 5.0
"""Seconds within which a peer that closes its connections must be seen gone (measured: ~20 ms)."""

CRASH_BOUND = 10.0
"""Seconds within which a peer that vanished without a word must be seen gone, with consent checks
every 0.5 s given up after 4 failures (~2 s). aioice's defaults (5 s, 6 failures) take ~31 s."""


def random_text(n: int) -> str:
    """What P2PT's tests send: `n` random characters of [0-9a-z]."""
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


# -- the Python side ----------------------------------------------------------------------------


class PyPeer:
    """A p2prpc P2PT in the test network, with its events kept in order like `JsPeer`'s.

    Host candidates on the veth addresses and no STUN (`ice_servers=[]`): libwebrtc ignores
    loopback candidates, so the peers must not be pinned to 127.0.0.1.
    """

    EVENTS = ("peerconnect", "peerclose", "msg", "trackerconnect", "trackerwarning", "peerwarning")

    def __init__(self, announce_urls: Sequence[str]) -> None:
        self.p2pt = P2PT(announce_urls, IDENTIFIER, ice_servers=[])
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._backlog: list[tuple[str, tuple[Any, ...]]] = []
        self._waiters: list[tuple[Callable[[str, tuple[Any, ...]], bool], asyncio.Future[Any]]] = []
        for name in self.EVENTS:
            self.p2pt.on(name, self._recorder(name))

    @property
    def peer_id(self) -> str:
        return self.p2pt.peer_id

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.events.append((name, args))
            for index, (wants, future) in enumerate(self._waiters):
                if not future.done() and wants(name, args):
                    del self._waiters[index]
                    future.set_result(args)
                    return
            self._backlog.append((name, args))

        return record

    def count(self, name: str) -> int:
        """How many `name` events were emitted so far (claimed or not)."""
        return sum(1 for event, _ in self.events if event == name)

    async def next(
        self,
        name: str,
        *,
        where: Callable[..., bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> tuple[Any, ...]:
        """The arguments of the next unclaimed `name` event matching `where`, waiting for it."""

        def wants(event: str, args: tuple[Any, ...]) -> bool:
            return event == name and (where is None or where(*args))

        for index, (event, args) in enumerate(self._backlog):
            if wants(event, args):
                del self._backlog[index]
                return args
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        entry = (wants, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            unclaimed = [event for event, _ in self._backlog]
            raise TimeoutError(
                f"no {name!r} event on the Python peer within {timeout} s "
                f"(unclaimed events: {unclaimed})"
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def next_msg(self, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[Peer, JsonValue]:
        peer, msg = await self.next("msg", timeout=timeout)
        return peer, msg

    def channel_count(self, peer_id: str) -> int:
        peer = self.p2pt.peers.get(peer_id)
        return 0 if peer is None else peer.channels


class PyPeers:
    """Creates Python peers for one test and destroys them all when it ends."""

    def __init__(self) -> None:
        self._peers: list[PyPeer] = []

    def new(self, announce_urls: Sequence[str]) -> PyPeer:
        peer = PyPeer(announce_urls)
        self._peers.append(peer)
        return peer

    async def aclose(self) -> None:
        peers, self._peers = self._peers, []
        await asyncio.gather(*(peer.p2pt.destroy() for peer in peers))


@pytest_asyncio.fixture
async def py_peers() -> AsyncIterator[PyPeers]:
    peers = PyPeers()
    try:
        yield peers
    finally:
        await peers.aclose()


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll a condition no event announces (a peer's channel count); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)  # channel counts change with no event to wait on


# -- meeting ------------------------------------------------------------------------------------


async def start_py(py: PyPeer, urls: Sequence[str]) -> None:
    """Start the Python peer and wait until every tracker in `urls` has answered its announce."""
    await py.p2pt.start()
    for url in urls:
        await py.next(
            "trackerconnect", where=lambda tracker, stats, url=url: tracker.announce_url == url
        )


async def start_js(js: JsPeer, urls: Sequence[str]) -> None:
    """Start the JavaScript peer and wait until every tracker in `urls` has answered it."""
    await js.start(urls, IDENTIFIER)
    for url in urls:

        def answered(event: dict[str, Any], url: str = url) -> bool:
            return bool(event["announce"] == url)

        await js.next_event("trackerconnect", where=answered)


async def meet(py: PyPeer, js: JsPeer, urls: Sequence[str], *, first: Side) -> Peer:
    """Start both peers on `urls`, `first` in the swarm before the other announces.

    Returns the Python side's handle on the JavaScript peer, once both saw each other connect.
    """
    if first == "python":
        await start_py(py, urls)
        await start_js(js, urls)
    else:
        await start_js(js, urls)
        await start_py(py, urls)
    (peer,) = await py.next("peerconnect")
    assert isinstance(peer, Peer) and peer.id == js.peer_id
    assert await js.next_peerconnect() == py.peer_id
    # The later announcer's offer is the one the tracker relayed: it created the connection.
    channels = py.p2pt._remotes[peer.id].channels.values()
    assert [c.initiator for c in channels][:1] == [first == "js"]
    return peer


# -- one conversation, whoever greets ------------------------------------------------------------


@dataclass(frozen=True)
class Said:
    """A message or reply as one side received it; `handle` is what answers it."""

    msg: JsonValue
    sender: str
    handle: Any


class Speaker(Protocol):
    """One side of a P2PT conversation: greet, hear, respond, hear the answer."""

    @property
    def peer_id(self) -> str: ...

    async def greet(self, msg: JsonValue) -> Any: ...
    async def hear(self) -> Said: ...
    async def respond(self, said: Said, msg: JsonValue) -> Any: ...
    async def answer(self, pending: Any) -> Said: ...


class PySpeaker:
    def __init__(self, py: PyPeer, other: Peer) -> None:
        self.py = py
        self.other = other
        self.message_ids: list[int | None] = []
        """The message id of every message and reply this side received, in order."""

    @property
    def peer_id(self) -> str:
        return self.py.peer_id

    async def greet(self, msg: JsonValue) -> Any:
        return self.py.p2pt.send(self.other, msg)

    def _said(self, peer: Peer, msg: JsonValue) -> Said:
        self.message_ids.append(peer.message_id)
        return Said(msg, peer.id, peer)

    async def hear(self) -> Said:
        return self._said(*await self.py.next_msg())

    async def respond(self, said: Said, msg: JsonValue) -> Any:
        handle: Peer = said.handle
        return handle.respond(msg)

    async def answer(self, pending: Any) -> Said:
        return self._said(*await asyncio.wait_for(pending, DEFAULT_TIMEOUT))


class JsSpeaker:
    def __init__(self, js: JsPeer, other_id: str) -> None:
        self.js = js
        self.other_id = other_id

    @property
    def peer_id(self) -> str:
        assert self.js.peer_id is not None
        return self.js.peer_id

    async def greet(self, msg: JsonValue) -> Any:
        return await self.js.post(self.other_id, msg)

    async def hear(self) -> Said:
        message = await self.js.next_msg()
        return Said(message.msg, message.peer_id, message.handle)

    async def respond(self, said: Said, msg: JsonValue) -> Any:
        return await self.js.respond(said.handle, msg)

    async def answer(self, pending: Any) -> Said:
        message = await self.js.reply(pending)
        return Said(message.msg, message.peer_id, message.handle)


def other(side: Side) -> Side:
    return "js" if side == "python" else "python"


def speakers(py: PyPeer, js: JsPeer, peer: Peer, greeter: Side) -> tuple[Speaker, Speaker]:
    """(greeter, answerer) for a conversation between the two peers."""
    assert js.peer_id is not None
    sides: dict[Side, Speaker] = {"python": PySpeaker(py, peer), "js": JsSpeaker(js, py.peer_id)}
    return sides[greeter], sides[other(greeter)]


async def converse(greeter: Speaker, answerer: Speaker, lines: Sequence[JsonValue]) -> None:
    """Say `lines` in turn, the greeter first, each line answering the one before it.

    Every line after the first is a respond to the last received one, so the whole conversation
    is one P2PT message id, as in P2PT's chained-messages test.
    """
    pending = await greeter.greet(lines[0])
    said = await answerer.hear()
    assert (said.sender, said.msg) == (greeter.peer_id, lines[0])
    speaker, listener = answerer, greeter
    for line in lines[1:]:
        next_pending = await speaker.respond(said, line)
        said = await listener.answer(pending)
        assert (said.sender, said.msg) == (speaker.peer_id, line)
        pending = next_pending
        speaker, listener = listener, speaker


# -- basic.js -----------------------------------------------------------------------------------


@pytest.mark.parametrize("first", SIDES, ids=["py-announces-first", "js-announces-first"])
@pytest.mark.parametrize("greeter", SIDES, ids=["py-greets", "js-greets"])
async def test_character_message(
    js_peers: JsPeers,
    py_peers: PyPeers,
    js_runtime: Runtime,
    tracker_url: str,
    greeter: Side,
    first: Side,
) -> None:
    """basic.js 'character message', for every runtime, tracker, greeter and offerer."""
    js = await js_peers.launch(js_runtime)
    py = py_peers.new([tracker_url])
    peer = await meet(py, js, [tracker_url], first=first)
    if greeter == "python":
        reply = py.p2pt.send(peer, "hello")
        got = await js.next_msg()
        assert (got.peer_id, got.msg) == (py.peer_id, "hello")
        assert not reply.done()
    else:
        await js.post(py.peer_id, "hello")
        their_peer, msg = await py.next_msg()
        assert (their_peer.id, msg) == (js.peer_id, "hello")
        assert their_peer.message_id is not None and 100000 <= their_peer.message_id < 200000
    assert js.errors == []


@pytest.mark.parametrize("greeter", SIDES, ids=["py-greets", "js-greets"])
async def test_chained_messages(
    js_peers: JsPeers, py_peers: PyPeers, js_runtime: Runtime, tracker_url: str, greeter: Side
) -> None:
    """basic.js 'chained messages': six turns on one message id, for every runtime and tracker.

    The greeter is in the swarm first, so the answerer made the connection (the character-message
    test crosses greeter and offerer fully; here the chain is what is tested).
    """
    js = await js_peers.launch(js_runtime)
    py = py_peers.new([tracker_url])
    peer = await meet(py, js, [tracker_url], first=greeter)
    first, second = speakers(py, js, peer, greeter)
    lines = ["hello", "hi", "how are you ?", "fine", "byeee", "bye!"]
    await converse(first, second, lines)

    # One message id carried the whole conversation: one 'msg' event in all, the rest replies.
    assert [e["event"] for e in js.events].count("msg") == (greeter == "python")
    assert py.count("msg") == (greeter == "js")
    py_speaker = first if greeter == "python" else second
    assert isinstance(py_speaker, PySpeaker)
    assert len(py_speaker.message_ids) == 3
    assert len(set(py_speaker.message_ids)) == 1
    assert js.errors == []


@pytest.mark.parametrize("tracker_kind", ["bittorrent-tracker", "embedded"])
async def test_tracker_connect_and_warning(
    js_peers: JsPeers,
    py_peers: PyPeers,
    interop_network: TestNetwork,
    tracker_kind: Literal["bittorrent-tracker", "embedded"],
) -> None:
    """basic.js 'tracker connections': trackerconnect with its stats, trackerwarning for a dead URL.

    Both tracker kinds (each answers the announce its own way); node only: these are tracker
    events, which do not involve the runtime's WebRTC (the harness test covers Chromium's).
    """
    # Nothing listens on port 1 in the test network: the connection is refused.
    dead = f"ws://{interop_network.addresses[1]}:1"
    async with running_tracker(tracker_kind) as url:
        js = await js_peers.launch("node")
        py = py_peers.new([dead, url])
        await py.p2pt.start()
        error, stats = await py.next("trackerwarning")
        assert dead in str(error)
        assert stats["total"] == 2 and stats["connected"] <= 1
        tracker, stats = await py.next("trackerconnect")
        assert tracker.announce_url == url
        assert stats == {"connected": 1, "total": 2}
        assert py.p2pt.get_tracker_stats() == {"connected": 1, "total": 2}

        await js.start([url], IDENTIFIER)
        event = await js.next_event("trackerconnect")
        assert event == {
            "event": "trackerconnect",
            "announce": url,
            "stats": {"connected": 1, "total": 1},
        }
        # The dead tracker costs nothing: the peers meet through the live one.
        (peer,) = await py.next("peerconnect")
        assert peer.id == js.peer_id
        assert await js.next_peerconnect() == py.peer_id


@pytest.mark.parametrize("js_runtime", ["node", "chromium"])
async def test_two_trackers_give_two_channels_and_the_second_is_used_when_the_first_closes(
    js_peers: JsPeers, py_peers: PyPeers, js_runtime: Runtime
) -> None:
    """basic.js 'peer connections', through one bittorrent-tracker and one embedded tracker.

    Both runtimes: closing one data channel and carrying on with the other is WebRTC behaviour of
    each runtime's stack. Python closes the channel (the agent has no command for one channel).
    """
    async with (
        running_tracker("bittorrent-tracker") as npm_url,
        running_tracker("embedded") as embedded_url,
    ):
        urls = [npm_url, embedded_url]
        js = await js_peers.launch(js_runtime)
        py = py_peers.new(urls)
        peer = await meet(py, js, urls, first="python")
        assert js.peer_id is not None

        async def two_channels() -> bool:
            return py.channel_count(peer.id) == 2 and (await js.peers()).get(py.peer_id) == 2

        await until(two_channels, "a data channel through each tracker")

        closed = peer.channel_name
        peer.destroy()  # closes only this data channel

        async def one_channel() -> bool:
            return py.channel_count(peer.id) == 1 and (await js.peers()).get(py.peer_id) == 1

        await until(one_channel, "the JavaScript peer dropping the closed channel")

        # The handle's channel is gone: the other channel carries the conversation.
        reply = py.p2pt.send(peer, "hello")
        hello = await js.next_msg()
        assert hello.msg == "hello"
        await js.respond(hello.handle, "hi")
        their_peer, msg = await asyncio.wait_for(reply, DEFAULT_TIMEOUT)
        assert msg == "hi"
        assert their_peer.channel_name != closed
        await js.post(py.peer_id, "and back")
        assert (await py.next_msg())[1] == "and back"
        # A backup channel was left: neither side closed the peer.
        assert py.count("peerclose") == 0
        assert [e for e in js.events if e["event"] == "peerclose"] == []


@pytest.mark.parametrize("adder", SIDES, ids=["py-adds", "js-adds"])
async def test_tracker_addition(js_peers: JsPeers, py_peers: PyPeers, adder: Side) -> None:
    """basic.js 'tracker addition': a peer adds the tracker the other one is on, and they meet.

    Python starts on the embedded tracker and JavaScript on bittorrent-tracker; the adder adds
    the other's, so each client reaches the other project's tracker through addTracker, and the
    adder, announcing last there, makes the connection. Node only: adding a tracker is
    signalling, the same P2PT code in both runtimes.
    """
    async with (
        running_tracker("bittorrent-tracker") as npm_url,
        running_tracker("embedded") as embedded_url,
    ):
        js = await js_peers.launch("node")
        py = py_peers.new([embedded_url])
        if adder == "python":
            await start_js(js, [npm_url])
            await start_py(py, [embedded_url])
            py.p2pt.add_tracker(npm_url)
            with pytest.raises(ValueError, match="already added"):
                py.p2pt.add_tracker(npm_url)
        else:
            await start_py(py, [embedded_url])
            await start_js(js, [npm_url])
            await js.add_tracker(embedded_url)
        (peer,) = await py.next("peerconnect")
        assert peer.id == js.peer_id
        assert await js.next_peerconnect() == py.peer_id
        channels = py.p2pt._remotes[peer.id].channels.values()
        assert [c.initiator for c in channels] == [adder == "python"]
        stats = py.p2pt.get_tracker_stats() if adder == "python" else await js.tracker_stats()
        assert stats == {"connected": 2, "total": 2}


@pytest.mark.parametrize("tracker_kind", ["bittorrent-tracker", "embedded"])
async def test_tracker_removal_keeps_the_connection(
    js_peers: JsPeers,
    py_peers: PyPeers,
    tracker_kind: Literal["bittorrent-tracker", "embedded"],
) -> None:
    """basic.js 'tracker removal': both sides remove their only tracker; messages still flow.

    Both tracker kinds (each sees its sockets close); node only: removal is signalling. P2PT's
    removeTracker leaves a hole in its URL list, so its stats keep counting the removed tracker
    in `total` (and removing a tracker added with addTracker removes the wrong one, so this
    removes one given to the constructor).
    """
    async with running_tracker(tracker_kind) as url:
        js = await js_peers.launch("node")
        py = py_peers.new([url])
        peer = await meet(py, js, [url], first="python")

        py.p2pt.remove_tracker(url)
        assert py.p2pt.get_tracker_stats() == {"connected": 0, "total": 0}
        with pytest.raises(ValueError, match="does not exist"):
            py.p2pt.remove_tracker(url)
        await js.remove_tracker(url)
        assert await js.tracker_stats() == {"connected": 0, "total": 1}

        greeter, answerer = speakers(py, js, peer, "python")
        await converse(greeter, answerer, ["hello", "still here", "good"])
        await js.post(py.peer_id, "hello from js")
        assert (await py.next_msg())[1] == "hello from js"


# -- different-messages.js ----------------------------------------------------------------------


@pytest.mark.parametrize("greeter", SIDES, ids=["py-greets", "js-greets"])
async def test_large_messages(
    js_peers: JsPeers, py_peers: PyPeers, js_runtime: Runtime, tracker_url: str, greeter: Side
) -> None:
    """different-messages.js 'large message' and 'json', for every runtime, tracker and direction.

    The greeter sends 100 KB of text and is answered with 1 MB of text, then sends 1 MB as a JSON
    object and is answered with 100 KB as one: with both greeters, each size goes each way both as
    text and as JSON (63 chunks for 1 MB). The greeter announces last here, so it is the offerer
    (the chained test has it the other way round).
    """
    kb100, mb1 = random_text(100_000), random_text(1_000_000)
    js = await js_peers.launch(js_runtime)
    py = py_peers.new([tracker_url])
    peer = await meet(py, js, [tracker_url], first=other(greeter))
    first, second = speakers(py, js, peer, greeter)
    await converse(first, second, [kb100, mb1, {"hello": mb1}, {"hello": kb100}])
    assert js.errors == []


async def test_json_values_of_mixed_types(
    js_peers: JsPeers, py_peers: PyPeers, js_runtime: Runtime
) -> None:
    """JSON values of every kind cross both ways and compare equal, as JavaScript reads them.

    Python sends each value, JavaScript answers it wrapped in an array (an object always crosses),
    and sends the objects and arrays back as new messages. P2PT itself sends nothing for a
    top-level number, boolean or empty string (its chunk loop tests `msg.length > 0`), which the
    end checks: the message after them arrives first. Both runtimes (their JSON is V8's in both,
    but the browser runs P2PT's bundle); one tracker, which plays no part in messages.
    """
    values: list[JsonValue] = [
        {"a": [1, 2.5, None, True, False], "nested": {"x": {"y": []}}, "e": {}, "s": "héllo ✓"},
        [1, "two", {"three": 3.0}, [None], -0.5, 2**53 - 1, 1e-7, 1.5e300],
        {"escapes": 'quote " backslash \\ tab \t nl \n nul \x00 del \x7f \u2028\u2029'},
        {"o": 1, "id": 5, "msg": "looks like a frame", "last": True, "c": 0},
        None,
        False,
        True,
        0,
        -42,
        2.5,
        "",
        "plain",
        "^not a frame",
    ]
    async with running_tracker("bittorrent-tracker") as url:
        js = await js_peers.launch(js_runtime)
        py = py_peers.new([url])
        peer = await meet(py, js, [url], first="python")
        for value in values:
            reply = py.p2pt.send(peer, value)
            got = await js.next_msg()
            assert got.msg == value
            assert type(got.msg) is type(value) or isinstance(value, float)
            await js.respond(got.handle, [value])
            assert (await asyncio.wait_for(reply, DEFAULT_TIMEOUT))[1] == [value]

        sendable = [v for v in values if isinstance(v, dict | list) or v is None]
        for value in sendable:
            await js.post(py.peer_id, value)
            assert (await py.next_msg())[1] == value

        # JavaScript P2PT sends nothing for these: the marker overtakes them.
        for value in (0, 2.5, True, False, ""):
            await js.post(py.peer_id, value)
        await js.post(py.peer_id, "marker")
        assert (await py.next_msg())[1] == "marker"
        assert py.count("msg") == len(sendable) + 1


async def test_astral_characters_across_chunk_boundaries(
    js_peers: JsPeers, py_peers: PyPeers, js_runtime: Runtime
) -> None:
    """Emoji straddling P2PT's 16000-unit chunk boundaries, as text and inside JSON, both ways.

    JavaScript slices strings by UTF-16 units, so its chunks end and begin with half a surrogate
    pair (escaped as \\udXXX by JSON.stringify) and Python must join the halves; Python never cuts
    a pair but JavaScript must still read its shorter chunk. Both runtimes; one tracker.
    """
    emoji = "\U0001f600"  # two UTF-16 units

    def straddling(length: int, at: Sequence[int]) -> str:
        """`length` UTF-16 units of ASCII with an emoji starting at each unit offset in `at`."""
        pieces, unit = [], 0
        for offset in at:
            pieces.append("a" * (offset - unit) + emoji)
            unit = offset + 2
        pieces.append("b" * (length - unit))
        return "".join(pieces)

    text = straddling(40_000, [0, 15_999, 31_999, 39_998])
    assert len(text.encode("utf-16-le")) // 2 == 40_000
    # In JSON text the string starts after `{"text":"` (9 units): these straddle 16000 and 32000.
    inside_json = {"text": straddling(40_000, [15_990, 31_990])}
    lines: list[JsonValue] = [
        text,
        text[::-1],
        inside_json,
        {"echo": inside_json},
        "a" + "🙂" * 16_000,
    ]

    async with running_tracker("bittorrent-tracker") as url:
        js = await js_peers.launch(js_runtime)
        py = py_peers.new([url])
        peer = await meet(py, js, [url], first="python")
        for greeter in SIDES:
            first, second = speakers(py, js, peer, greeter)
            await converse(first, second, lines)
        assert py.count("peerwarning") == 0
        assert js.errors == []


# -- a peer disappearing mid-send -----------------------------------------------------------------


async def pending_send_to_js(py: PyPeer, js: JsPeer, peer: Peer) -> Any:
    """A Python send the JavaScript peer received and will never answer."""
    pending = py.p2pt.send(peer, "are you there?", timeout=None)
    assert (await js.next_msg()).msg == "are you there?"
    return pending


async def test_js_peer_destroyed_mid_send_fails_the_python_send(
    js_peers: JsPeers,
    py_peers: PyPeers,
    js_runtime: Runtime,
) -> None:
    """P2PT's destroy closes each connection; the Python send fails with PeerClosed at once.

    Both runtimes: how fast the close reaches Python depends on each WebRTC stack. One tracker:
    the tracker plays no part once peers are connected.
    """
    async with running_tracker("embedded") as url:
        js = await js_peers.launch(js_runtime)
        py = py_peers.new([url])
        peer = await meet(py, js, [url], first="js")
        pending = await pending_send_to_js(py, js, peer)
        started = time.monotonic()
        await js.destroy()
        with pytest.raises(PeerClosed):
            await asyncio.wait_for(pending, PEER_LOSS_BOUND)
        elapsed = time.monotonic() - started
        logger.info("peer loss seen after %.3f s", elapsed)
        (closed,) = await py.next("peerclose", timeout=0)
        assert closed.id == js.peer_id
        with pytest.raises(PeerClosed):
            await py.p2pt.send(peer, "still there?")


@pytest.mark.transport_only(
    "aiortc",
    reason="aioice's consent checks, shortened by patching aioice; libwebrtc's own ICE gives a"
    " silent peer up about 15 s in, whatever is patched (tests/rpc/test_outage_libwebrtc.py)",
)
async def test_js_peer_killed_mid_send_fails_the_python_send(
    js_peers: JsPeers,
    py_peers: PyPeers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that dies without closing anything is found gone by ICE consent checks.

    Nothing tells Python that a killed process is gone: aioice stops consent to send after its
    checks go unanswered (RFC 7675), which closes the connection and fails the send. With
    aioice's defaults (a check every 5 s, given up after 6 failures) that takes about 31 s, so
    this test shortens them; the mechanism is the same. Node only: the runtime only has to
    vanish, detection is all on the Python side.
    """
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.5)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 4)
    async with running_tracker("embedded") as url:
        js = await js_peers.launch("node")
        py = py_peers.new([url])
        peer = await meet(py, js, [url], first="python")
        pending = await pending_send_to_js(py, js, peer)
        started = time.monotonic()
        await js.kill()
        with pytest.raises(PeerClosed):
            await asyncio.wait_for(pending, CRASH_BOUND)
        elapsed = time.monotonic() - started
        logger.info("peer loss seen after %.3f s", elapsed)
        assert elapsed > 0.5 * 4 * 0.8  # consent checks noticed it, not anything sooner
        (closed,) = await py.next("peerclose", timeout=0)
        assert closed.id == js.peer_id


async def test_python_peer_destroyed_mid_send_closes_the_js_peer(
    js_peers: JsPeers,
    py_peers: PyPeers,
    js_runtime: Runtime,
) -> None:
    """Python's destroy closes each connection; JavaScript P2PT emits peerclose at once.

    P2PT then forgets the replies it was waiting for without settling their promises: the
    JavaScript send stays pending (asserted as P2PT's documented behaviour, not ours).
    """
    async with running_tracker("embedded") as url:
        js = await js_peers.launch(js_runtime)
        py = py_peers.new([url])
        await meet(py, js, [url], first="python")
        pending = await js.post(py.peer_id, "are you there?")
        assert (await py.next_msg())[1] == "are you there?"
        started = time.monotonic()
        await py.p2pt.destroy()
        event = await js.next_event("peerclose", timeout=PEER_LOSS_BOUND)
        elapsed = time.monotonic() - started
        logger.info("peer loss seen after %.3f s", elapsed)
        assert event["peer_id"] == py.peer_id
        assert await js.peers() == {}
        assert not pending.done()
