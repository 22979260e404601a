"""An announce carries no more offers than the swarm has peers to take them.

Each offer gathers its candidates before it leaves (with a TURN server, an allocation on it), and
the tracker hands each offer of an announce to a different peer: offers past the peers the tracker
counts reach nobody, and peers already connected need none. Offers are counted where they are
made: a transport that counts the connections it makes as the offerer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect

from p2prpc import P2PT
from p2prpc.swarm.connectivity import TrackerState
from p2prpc.testing import loopback_p2pt, until
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import Link, RTCOptions, Transport, choose_transport
from p2prpc.wire.tracker import (
    Announce,
    AnnounceReply,
    OfferRelay,
    encode_client_message,
    info_hash_of,
    parse_server_message,
)

pytestmark = pytest.mark.asyncio

SWARM = "offers-wanted"


class Counting:
    """The default transport, counting the connections it makes as the offerer."""

    def __init__(self) -> None:
        self.inner: Transport = choose_transport()
        self.name = self.inner.name
        self.offers = 0

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> Link:
        if initiator:
            self.offers += 1
        return self.inner.link(options, initiator=initiator, label=label)


def counted_p2pt(url: str) -> tuple[P2PT, Counting]:
    counting = Counting()
    return loopback_p2pt([url], SWARM, transport=counting), counting


class Replies:
    """The announce answers a P2PT's tracker gets (``trackerconnect``), to wait for the next."""

    def __init__(self, p2pt: P2PT) -> None:
        self.count = 0
        self.p2pt = p2pt
        p2pt.on("trackerconnect", self._on_reply)

    def _on_reply(self, *_: object) -> None:
        self.count += 1

    async def next(self, timeout: float = 10) -> None:
        """Until one more answer than now arrived."""
        await self.at_least(self.count + 1, timeout)

    async def at_least(self, wanted: int, timeout: float = 10) -> None:
        """Until ``wanted`` answers arrived in all."""
        await until(lambda: self.count >= wanted, (self.p2pt, "trackerconnect"), timeout=timeout)


@contextlib.asynccontextmanager
async def silent_peers(url: str, count: int) -> AsyncIterator[list[ClientConnection]]:
    """``count`` peers of the swarm (raw tracker clients) that take offers and never answer."""
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(connect(url)) for _ in range(count)]
        for n, ws in enumerate(sockets):
            peer_id = (1000 + n).to_bytes(20, "big")
            await ws.send(encode_client_message(Announce(info_hash_of(SWARM), peer_id, numwant=0)))
            async with asyncio.timeout(10):
                [reply] = parse_server_message(await ws.recv())
            assert isinstance(reply, AnnounceReply)
        yield sockets


async def offers_received(ws: ClientConnection) -> int:
    """How many offers the tracker relayed to ``ws`` so far (reads what has arrived)."""
    received = 0
    while True:
        try:
            async with asyncio.timeout(0):
                data = await ws.recv()
        except TimeoutError:
            return received
        received += sum(isinstance(m, OfferRelay) for m in parse_server_message(data))


async def test_a_peer_alone_in_its_swarm_makes_no_offer() -> None:
    async with TrackerServer("127.0.0.1", 0) as tracker:
        p2pt, counting = counted_p2pt(tracker.url)
        replies = Replies(p2pt)
        await p2pt.start()
        try:
            await replies.next()
            for _ in range(3):
                p2pt.request_more_peers()
                await replies.next()
            assert counting.offers == 0
            assert p2pt.pool.count(tracker.url) == 0
        finally:
            await p2pt.destroy()


async def test_an_announce_makes_one_offer_for_each_peer_the_tracker_counts() -> None:
    async with TrackerServer("127.0.0.1", 0) as tracker, silent_peers(tracker.url, 2) as silent:
        p2pt, counting = counted_p2pt(tracker.url)
        replies = Replies(p2pt)
        await p2pt.start()
        try:
            await replies.next()  # the first announce: it learns that two other peers are there
            await replies.next()  # the one that followed at once, with their offers
            assert counting.offers == 2
            assert p2pt.pool.count(tracker.url) == 2
            # Each reached its peer: the tracker hands each offer to a different one.
            assert [await offers_received(ws) for ws in silent] == [1, 1]
        finally:
            await p2pt.destroy()


async def test_connected_peers_need_no_offers_not_even_after_a_tracker_reconnects() -> None:
    async with TrackerServer("127.0.0.1", 0) as tracker:
        first, first_counting = counted_p2pt(tracker.url)
        second, second_counting = counted_p2pt(tracker.url)
        await first.start()
        await until(
            lambda: first.trackers[tracker.url].state is TrackerState.ANSWERED,
            (first, "trackerconnect"),
        )
        replies = Replies(second)
        await second.start()
        try:
            await until(
                lambda: second.peer_id in first.peers and first.peer_id in second.peers,
                (first, "peerconnect"),
                (second, "peerconnect"),
            )
            await replies.at_least(2)  # the first announce's, and the one with the offer's
            made = first_counting.offers + second_counting.offers
            assert made == 1  # the one the newcomer made for the one peer there
            # Announces now carry none: at the interval, on request, after a reconnection.
            first.request_more_peers()
            second.request_more_peers()
            await replies.next()
            client = second.trackers[tracker.url]
            assert client._ws is not None
            await client._ws.close()
            await replies.next()  # the first answer on the new connection
            second.request_more_peers()
            await replies.next()
            assert first_counting.offers + second_counting.offers == made
            assert second.pool.count(tracker.url) == first.pool.count(tracker.url) == 0
            assert second.peer_id in first.peers
        finally:
            await asyncio.gather(first.destroy(), second.destroy())


async def test_offers_are_released_once_every_peer_counted_is_connected() -> None:
    """A silent peer takes an offer and leaves: the tracker's next answer counts nobody left to
    answer it, and the offer is closed then, not when it expires."""
    async with TrackerServer("127.0.0.1", 0) as tracker:
        p2pt, counting = counted_p2pt(tracker.url)
        replies = Replies(p2pt)
        async with silent_peers(tracker.url, 1):
            await p2pt.start()
            await replies.next()
            await replies.next()
            assert p2pt.pool.count(tracker.url) == 1
        try:
            await tracker.wait_for(lambda stats: stats.peers == 1)
            p2pt.request_more_peers()
            await replies.next()
            assert p2pt.pool.count(tracker.url) == 0
            assert counting.offers == 1
        finally:
            await p2pt.destroy()
