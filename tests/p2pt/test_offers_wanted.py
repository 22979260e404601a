"""With a TURN server among its ICE servers, an announce carries no more offers than the swarm
has peers to take them; without one, as many as P2PT's.

Each offer gathers its candidates before it leaves (with a TURN server, an allocation on it), and
the tracker hands each offer of an announce to a different peer: offers past the peers the tracker
counts reach nobody, and peers already connected need none. Offers are counted where they are
made: a transport that counts the connections it makes as the offerer.

A TURN server is in play for a swarm whose ICE servers name one or include a provider (which may
return one): here a provider returning a STUN server on loopback (:class:`StunServer`, which
answers at once), so that gathering costs no wait. Without one, P2PT's count of offers and the
backup channels they open to connected peers stay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aioice import stun
from aiortc import RTCIceServer
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


class StunServer(asyncio.DatagramProtocol):
    """A STUN server on loopback: answers each Binding request with the address it came from."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = stun.parse_message(data)
        except ValueError:
            return
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)

    @property
    def url(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"stun:{host}:{port}"


@pytest_asyncio.fixture
async def stun_url() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(StunServer, local_addr=("127.0.0.1", 0))
    try:
        yield server.url
    finally:
        transport.close()


def counted_p2pt(url: str, ice_servers: str | None) -> tuple[P2PT, Counting]:
    """A P2PT counting its offers; ``ice_servers``: a STUN URL its ICE server provider returns
    (a TURN server may be in play), or None for none (host candidates only)."""
    counting = Counting()
    servers = [] if ice_servers is None else [lambda: RTCIceServer(urls=[ice_servers])]
    return loopback_p2pt([url], SWARM, transport=counting, ice_servers=servers), counting


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


async def test_a_peer_alone_in_its_swarm_makes_no_offer(stun_url: str) -> None:
    async with TrackerServer("127.0.0.1", 0) as tracker:
        p2pt, counting = counted_p2pt(tracker.url, stun_url)
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


async def test_an_announce_makes_one_offer_for_each_peer_the_tracker_counts(stun_url: str) -> None:
    async with TrackerServer("127.0.0.1", 0) as tracker, silent_peers(tracker.url, 2) as silent:
        p2pt, counting = counted_p2pt(tracker.url, stun_url)
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


async def test_connected_peers_need_no_offers_not_even_after_a_tracker_reconnects(
    stun_url: str,
) -> None:
    async with TrackerServer("127.0.0.1", 0) as tracker:
        first, first_counting = counted_p2pt(tracker.url, stun_url)
        second, second_counting = counted_p2pt(tracker.url, stun_url)
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


async def test_offers_are_released_once_every_peer_counted_is_connected(stun_url: str) -> None:
    """A silent peer takes an offer and leaves: the tracker's next answer (at its interval, 1 s
    here) counts nobody left to answer it, and the offer is closed then, not when it expires."""
    async with TrackerServer("127.0.0.1", 0, interval=1) as tracker:
        p2pt, counting = counted_p2pt(tracker.url, stun_url)
        replies = Replies(p2pt)
        async with silent_peers(tracker.url, 1):
            await p2pt.start()
            await replies.next()
            await replies.next()
            assert p2pt.pool.count(tracker.url) == 1
        try:
            await tracker.wait_for(lambda stats: stats.peers == 1)
            await replies.next()
            if p2pt.trackers[tracker.url].counted:  # that answer was for an announce before
                await replies.next()
            assert p2pt.pool.count(tracker.url) == 0
            assert counting.offers == 1
        finally:
            await p2pt.destroy()


async def test_an_announce_asked_for_offers_again_to_peers_whose_offers_may_still_be_answered(
    stun_url: str,
) -> None:
    """At the interval, a peer already offered to within its answer time gets no new offer; an
    announce asked for (request_more_peers: the user's, or a peer lost) makes one all the
    same, for each peer the tracker counts not connected."""
    async with TrackerServer("127.0.0.1", 0) as tracker, silent_peers(tracker.url, 1) as silent:
        p2pt, counting = counted_p2pt(tracker.url, stun_url)
        replies = Replies(p2pt)
        await p2pt.start()
        try:
            await replies.at_least(2)  # the first announce's answer, and the offer's
            assert counting.offers == 1
            p2pt.request_more_peers()
            await replies.next()
            assert counting.offers == 2
            assert await offers_received(silent[0]) == 2
        finally:
            await p2pt.destroy()


async def test_an_announce_asked_for_on_an_old_count_is_followed_by_one_for_the_new_count(
    stun_url: str,
) -> None:
    """Alone when it last announced, a peer asked for more makes no offer on that count; the
    answer counts a peer that came since, and an announce with an offer for it follows."""
    async with TrackerServer("127.0.0.1", 0) as tracker:
        p2pt, counting = counted_p2pt(tracker.url, stun_url)
        replies = Replies(p2pt)
        await p2pt.start()
        try:
            await replies.next()
            assert p2pt.trackers[tracker.url].counted == 0
            async with silent_peers(tracker.url, 1) as silent:
                p2pt.request_more_peers()
                await replies.next()  # made on the old count: no offer
                await replies.next()  # the one that followed
                assert counting.offers == 1
                assert await offers_received(silent[0]) == 1
        finally:
            await p2pt.destroy()


async def test_without_a_turn_server_announces_carry_p2pts_offers_and_open_backup_channels() -> (
    None
):
    async with TrackerServer("127.0.0.1", 0) as tracker:
        first, first_counting = counted_p2pt(tracker.url, None)
        second, second_counting = counted_p2pt(tracker.url, None)
        replies = Replies(first)
        await first.start()
        try:
            await replies.next()
            # Alone in its swarm, its first announce carries P2PT's full count all the same.
            assert first_counting.offers == first.trackers[tracker.url].max_offers
            await second.start()
            await until(
                lambda: second.peer_id in first.peers and first.peer_id in second.peers,
                (first, "peerconnect"),
                (second, "peerconnect"),
            )
            # Connected, a re-announce offers again, and the peer's answer is a backup channel.
            made = second_counting.offers
            second.request_more_peers()
            await until(
                lambda: first.peers[second.peer_id].channels >= 2,
                (first, "connectionopen"),
                timeout=15,
            )
            assert second_counting.offers > made
        finally:
            await asyncio.gather(first.destroy(), second.destroy())
