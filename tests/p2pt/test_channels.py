"""The per-peer channel cap, on every path, and a peer's life through its channels.

Over real WebRTC on loopback. Offers cross when two peers re-announce together: each answers the
other's offer and takes the other's answer to its own, so without care a peer gets more channels
than ``max_channels_per_peer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from p2prpc import P2PT, Peer
from p2prpc.swarm.connection import Connection, ConnectionState
from p2prpc.testing import swarm
from p2prpc.tracker.client import TrackerClient
from p2prpc.wire.frames import JSONValue
from p2prpc.wire.tracker import AnswerRelay, OfferRelay

pytestmark = pytest.mark.asyncio


class Observer:
    """Watches one P2PT: the offers and answers its trackers relay to it, the channels it gets,
    and the most channels it ever had open to one peer."""

    def __init__(self, p2pt: P2PT) -> None:
        self.p2pt = p2pt
        self.offers = 0
        self.answers = 0
        self.channels: list[Connection] = []
        self.most_open = 0
        self.changed = asyncio.Event()
        created = p2pt.adopt
        opened = p2pt._on_channel_open

        def channel_created(channel: Connection, *args: Any) -> None:
            created(channel, *args)
            self.channels.append(channel)
            on_close = channel.on_close

            def closed() -> None:
                on_close()
                self.changed.set()

            channel.on_close = closed

        def on_channel_open(channel: Connection) -> None:
            opened(channel)
            for remote in p2pt._remotes.values():
                count = sum(1 for c in remote.channels.values() if c.is_open)
                self.most_open = max(self.most_open, count)
            self.changed.set()

        p2pt.adopt = channel_created  # type: ignore[method-assign]
        p2pt._on_channel_open = on_channel_open  # type: ignore[method-assign]
        for client in p2pt.trackers.values():
            self.watch(client)

    def watch(self, client: TrackerClient) -> None:
        answer, accept = client._answer, client._accept_answer

        async def answering(relay: OfferRelay) -> None:
            self.offers += 1
            await answer(relay)
            self.changed.set()

        async def accepting(relay: AnswerRelay) -> None:
            self.answers += 1
            await accept(relay)
            self.changed.set()

        client._answer = answering  # type: ignore[method-assign]
        client._accept_answer = accepting  # type: ignore[method-assign]

    @property
    def answered(self) -> int:
        """How many relayed offers this peer answered."""
        return sum(1 for c in self.channels if not c.initiator)

    def settled(self) -> bool:
        """No signalling in progress here: every channel handed over has opened or closed."""
        busy = any(client._tasks for client in self.p2pt.trackers.values())
        return not busy and all(
            c.state in (ConnectionState.OPEN, ConnectionState.CLOSED) for c in self.channels
        )

    def open_to(self, other: P2PT) -> int:
        remote = self.p2pt._remotes.get(other.peer_id)
        return 0 if remote is None else sum(1 for c in remote.channels.values() if c.is_open)


async def settle(a: Observer, b: Observer, offers_each: int, timeout: float = 20.0) -> None:
    """Wait until each peer got ``offers_each`` relayed offers and everything they set off is over:
    every answer sent was received, every channel handed over has opened or closed."""
    async with asyncio.timeout(timeout):
        while not (
            a.offers >= offers_each
            and b.offers >= offers_each
            and a.answers == b.answered
            and b.answers == a.answered
            and a.settled()
            and b.settled()
        ):
            a.changed.clear()
            b.changed.clear()
            waits = [
                asyncio.ensure_future(a.changed.wait()),
                asyncio.ensure_future(b.changed.wait()),
            ]
            # Some changes (an answer leaving the tracker) raise no event: look again each second.
            _, pending = await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for waiting in pending:
                waiting.cancel()


def echo(p2pt: P2PT) -> None:
    p2pt.on("msg", lambda peer, msg: peer.respond(msg))


async def round_trip(a: P2PT, b: P2PT, msg: JSONValue = "ping") -> None:
    peer, reply = await asyncio.wait_for(a.send(a.peers[b.peer_id], msg), 10)
    assert reply == msg
    assert peer.id == b.peer_id


@pytest.mark.parametrize(
    ("trackers", "cap", "rounds"), [(1, 2, 3), (2, 4, 3), (1, 1, 3)], ids=["1x2", "2x4", "1x1"]
)
async def test_simultaneous_announces_never_exceed_the_channel_cap(
    trackers: int, cap: int, rounds: int
) -> None:
    async with swarm(2, trackers=trackers, max_channels_per_peer=cap) as s:
        a, b = s.peers
        echo(a)
        echo(b)
        watch_a, watch_b = Observer(a), Observer(b)
        for n in range(1, rounds + 1):
            a.request_more_peers()
            b.request_more_peers()
            await settle(watch_a, watch_b, offers_each=n * trackers)
            assert watch_a.most_open <= cap
            assert watch_b.most_open <= cap
            assert 1 <= watch_a.open_to(b) <= cap
            assert watch_a.open_to(b) == watch_b.open_to(a)
            await round_trip(a, b)
            await round_trip(b, a)


def event(p2pt: P2PT, name: str) -> asyncio.Future[Peer]:
    """The peer of the next ``name`` event."""
    future: asyncio.Future[Peer] = asyncio.get_running_loop().create_future()

    def handler(peer: Peer, *_: object) -> None:
        if not future.done():
            future.set_result(peer)
        p2pt.remove_listener(name, handler)

    p2pt.on(name, handler)
    return future


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a channel count that no event announces (a channel closed at the other end)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - no event tells of a backup channel's state
            await asyncio.sleep(0.02)


async def echo_twice(peer: Peer, msg: JSONValue) -> None:
    """Answer a message, and the answer to that answer, with what was said."""
    peer, msg = await peer.respond(msg)
    peer.respond(msg)


async def conversation(a: P2PT, b: P2PT, handle: Peer | None = None) -> None:
    """Send, respond, and respond again, both ways; ``handle``: a's handle of b to send with."""
    for sender, receiver, peer in ((a, b, handle), (b, a, None)):
        peer = peer or sender.peers[receiver.peer_id]
        peer, reply = await asyncio.wait_for(sender.send(peer, "one"), 10)
        assert (peer.id, reply) == (receiver.peer_id, "one")
        peer, reply = await asyncio.wait_for(peer.respond("two"), 10)
        assert reply == "two"


async def test_every_transition_of_a_peer_leaves_it_usable() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        for p2pt in (a, b):
            p2pt.on("msg", echo_twice)
        watch_a, watch_b = Observer(a), Observer(b)
        closed_b = event(b, "peerclose")

        # 1. The first channel.
        first = a.peers[b.peer_id]
        assert first.channels == 1
        await conversation(a, b)

        # 2. Backup channels, one per re-announce.
        for n in (1, 2):
            a.request_more_peers()
            await until(lambda n=n: watch_a.open_to(b) == watch_b.open_to(a) == 1 + n)
            await conversation(a, b)
        assert a.peers[b.peer_id].channels == 3

        # 3. A channel lost while backups remain: the handle that preferred it still works.
        first.destroy()
        await until(lambda: watch_a.open_to(b) == watch_b.open_to(a) == 2)
        assert not closed_b.done()
        await conversation(a, b, handle=first)

        # 4. The peer dropped: its last channel closes at both ends.
        closed_a = event(a, "peerclose")
        for name in list(a._remotes[b.peer_id].channels):
            a._remotes[b.peer_id].channels[name].close()
        assert (await asyncio.wait_for(closed_a, 10)).id == b.peer_id
        assert (await asyncio.wait_for(closed_b, 10)).id == a.peer_id
        assert b.peer_id not in a.peers
        assert a.peer_id not in b.peers
        assert a._reassembler.pending == b._reassembler.pending == 0

        # 5. The same peer back again: new channels, the same ids, old handles work again.
        back_a, back_b = event(a, "peerconnect"), event(b, "peerconnect")
        a.request_more_peers()
        assert (await asyncio.wait_for(back_a, 10)).id == b.peer_id
        assert (await asyncio.wait_for(back_b, 10)).id == a.peer_id
        await conversation(a, b)
        await conversation(a, b, handle=first)


async def test_offers_are_not_answered_while_max_connecting_channels_connect() -> None:
    p2pt = P2PT([], "p2pt", ice_servers=[], max_connecting=2)
    channels = [Connection(p2pt.rtc_options, initiator=False) for _ in range(2)]
    try:
        assert p2pt.accepts_offer_from("a" * 40)
        for n, channel in enumerate(channels):
            channel.peer_id = f"{n}" * 40
            p2pt.adopt(channel)
        assert not p2pt.accepts_offer_from("a" * 40)  # a new peer, but two are connecting
        channels[0].close()
        assert p2pt.accepts_offer_from("a" * 40)
    finally:
        await asyncio.gather(*(channel.wait_closed() for channel in channels))
        await p2pt.destroy()
