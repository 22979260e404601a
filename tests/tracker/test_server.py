"""The embedded tracker: its rules without I/O, then the real server driven by raw WebSocket
clients on 127.0.0.1, then bittorrent-tracker's own JavaScript client against it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import websockets
from websockets.asyncio.client import ClientConnection, connect

from p2prpc.tracker.server import MAX_SCRAPE_ALL, ServerStats, Swarms, TrackerServer, nofile_limit
from p2prpc.wire.tracker import (
    Announce,
    AnnounceReply,
    Answer,
    AnswerRelay,
    ClientMessage,
    FailureReply,
    OfferPayload,
    OfferRelay,
    Scrape,
    ScrapeFile,
    ScrapeReply,
    ServerMessage,
    binary_to_str,
    encode_client_message,
    parse_client_message,
    parse_server_message,
)

X = b"X" * 20  # info hashes
Y = b"Y" * 20
Z = b"Z" * 20
A = b"a" * 20  # peer ids
B = b"b" * 20
C = b"c" * 20
D = b"d" * 20
E = b"e" * 20
SDP = "v=0\r\n"
TIMEOUT = 5.0


def offer(n: int) -> OfferPayload:
    return OfferPayload(bytes([n]) * 20, f"v=0\r\ns={n}\r\n")


# -- the rules, without I/O ---------------------------------------------------------------------


def test_counts_seeders_like_bittorrent_tracker() -> None:
    s: Swarms[str] = Swarms()
    [(_, reply)] = s.receive("a", Announce(X, A), 0.0)
    assert reply == AnnounceReply(X, 120, 0, 1)
    [(_, reply)] = s.receive("b", Announce(X, B, left=0), 0.0)
    assert reply == AnnounceReply(X, 120, 1, 1)
    [(_, reply)] = s.receive("a", Announce(X, A, event="completed"), 0.0)
    assert reply == AnnounceReply(X, 120, 2, 0)
    # A seeder stays one (as in bittorrent-tracker), and leaving takes it off the right count.
    s.receive("a", Announce(X, A, left=5), 0.0)
    [(_, reply)] = s.receive("a", Announce(X, A, event="stopped"), 0.0)
    assert reply == AnnounceReply(X, 120, 1, 0)
    assert s.counts(X) == (1, 0)


def test_offers_go_to_distinct_random_peers_never_back() -> None:
    s: Swarms[str] = Swarms(rng=random.Random(7))
    for peer in (A, B, C, D):
        s.receive(peer.decode(), Announce(X, peer), 0.0)
    out = s.receive("e", Announce(X, E, numwant=3, offers=(offer(1), offer(2), offer(3))), 0.0)
    assert out[0] == ("e", AnnounceReply(X, 120, 0, 5))
    relays = out[1:]
    assert len(relays) == 3
    assert len({conn for conn, _ in relays}) == 3
    assert "e" not in {conn for conn, _ in relays}
    assert [m for _, m in relays] == [
        OfferRelay(X, E, offer(i).offer_id, offer(i).sdp) for i in (1, 2, 3)
    ]


def test_numwant_and_the_swarm_bound_the_offers_relayed() -> None:
    s: Swarms[str] = Swarms()
    s.receive("a", Announce(X, A), 0.0)
    s.receive("b", Announce(X, B), 0.0)
    three = (offer(1), offer(2), offer(3))
    assert len(s.receive("e", Announce(X, E, numwant=1, offers=three), 0.0)) == 2
    assert len(s.receive("e", Announce(X, E, numwant=50, offers=three), 0.0)) == 3  # 2 others
    assert len(s.receive("e", Announce(X, E, numwant=0, offers=three), 0.0)) == 1


def test_answers_are_routed_by_to_peer_id_and_not_replied() -> None:
    s: Swarms[str] = Swarms()
    s.receive("a", Announce(X, A), 0.0)
    s.receive("b", Announce(X, B), 0.0)
    out = s.receive("a", Answer(X, A, B, offer(1).offer_id, SDP), 0.0)
    assert out == [("b", AnswerRelay(X, A, offer(1).offer_id, SDP))]
    assert s.receive("a", Answer(X, A, C, offer(1).offer_id, SDP), 0.0) == []
    assert s.receive("a", Answer(Y, A, B, offer(1).offer_id, SDP), 0.0) == []


def test_peers_that_stop_announcing_expire() -> None:
    s: Swarms[str] = Swarms(interval=10, peer_timeout=30)
    s.receive("a", Announce(X, A), 0.0)
    s.receive("b", Announce(X, B), 0.0)
    s.receive("b", Announce(Y, B), 0.0)
    s.receive("a", Announce(X, A), 20.0)  # A announces again, B does not
    assert s.expire(29.9) == 0
    assert s.expire(30.0) == 2
    assert s.counts(X) == (0, 1)
    assert s.stats() == ServerStats(swarms=1, peers=1, sockets=0)
    assert s.expire(50.0) == 1
    assert s.stats() == ServerStats(swarms=0, peers=0, sockets=0)
    # The answer of a known peer counts as hearing from it.
    s.receive("a", Announce(X, A), 100.0)
    s.receive("a", Answer(X, A, B, offer(1).offer_id, SDP), 125.0)
    assert s.expire(130.0) == 0


def test_disconnect_removes_the_connections_peers_from_every_swarm() -> None:
    s: Swarms[str] = Swarms()
    s.receive("shared", Announce(X, A), 0.0)
    s.receive("shared", Announce(Y, A), 0.0)
    s.receive("shared", Announce(X, B), 0.0)  # two peers on one socket, as pooled JS clients
    s.receive("c", Announce(X, C), 0.0)
    s.disconnect("shared")
    assert s.counts(X) == (0, 1)
    assert s.counts(Y) == (0, 0)
    assert s.stats().swarms == 1


def test_a_peer_lives_on_the_socket_that_last_announced_it() -> None:
    s: Swarms[str] = Swarms()
    s.receive("old", Announce(X, A), 0.0)
    s.receive("new", Announce(X, A), 1.0)
    # `stopped` from the stale socket does not remove it, nor does that socket closing.
    assert s.receive("old", Announce(X, A, event="stopped"), 2.0) == [
        ("old", AnnounceReply(X, 120, 0, 1))
    ]
    s.disconnect("old")
    assert s.counts(X) == (0, 1)
    out = s.receive("b", Announce(X, B, offers=(offer(1),)), 3.0)
    assert [conn for conn, _ in out] == ["b", "new"]


def test_caps_refuse_with_a_failure_reason() -> None:
    s: Swarms[str] = Swarms(
        max_swarms=2,
        max_peers_per_swarm=2,
        max_info_hashes_per_socket=2,
        max_swarms_per_source=2,
        max_peers_per_source_per_swarm=2,
    )
    s.receive("a", Announce(X, A), 0.0)
    s.receive("a", Announce(Y, A), 0.0)
    [(_, failure)] = s.receive("a", Announce(Z, A), 0.0)
    assert failure == FailureReply("too many swarms on one socket (at most 2)", Z)
    [(_, failure)] = s.receive("b", Announce(Z, B), 0.0)
    assert failure == FailureReply("tracker is full (at most 2 swarms)", Z)
    s.receive("b", Announce(X, B), 0.0)
    [(_, failure)] = s.receive("c", Announce(X, C), 0.0)
    assert failure == FailureReply("swarm is full (at most 2 peers)", X)
    assert s.stats() == ServerStats(swarms=2, peers=3, sockets=0)


def test_scrape_one_several_or_all() -> None:
    s: Swarms[str] = Swarms(interval=60)
    s.receive("a", Announce(X, A, left=0), 0.0)
    s.receive("b", Announce(X, B), 0.0)
    s.receive("b", Announce(Y, B), 0.0)
    [(_, reply)] = s.receive("c", Scrape((X, Z)), 0.0)
    assert reply == ScrapeReply({X: ScrapeFile(1, 1, 1), Z: ScrapeFile(0, 0, 0)}, 60)
    [(_, reply)] = s.receive("c", Scrape(()), 0.0)
    assert reply == ScrapeReply({X: ScrapeFile(1, 1, 1), Y: ScrapeFile(0, 1, 0)}, 60)


def test_a_scrape_of_every_swarm_lists_a_bounded_few_at_a_bounded_rate() -> None:
    """20 bytes asking for every swarm cannot make the tracker list all it holds, over and over:
    at most MAX_SCRAPE_ALL swarms a reply, and each such scrape takes one of the socket's offer
    tokens (a scrape that names its swarms takes none)."""
    s: Swarms[str] = Swarms(
        interval=60, max_info_hashes_per_socket=200, offer_rate=1, offer_burst=3
    )
    for n in range(150):
        s.receive("a", Announce(n.to_bytes(20, "big"), A), 0.0)
    for _ in range(3):
        [(_, reply)] = s.receive("c", Scrape(()), 0.0)
        assert isinstance(reply, ScrapeReply) and len(reply.files) == MAX_SCRAPE_ALL
    [(_, refused)] = s.receive("c", Scrape(()), 0.0)
    assert isinstance(refused, FailureReply) and "scrapes of every swarm" in refused.reason
    [(_, named)] = s.receive("c", Scrape((X,)), 0.0)  # naming swarms is not limited
    assert isinstance(named, ScrapeReply) and list(named.files) == [X]
    [(_, reply)] = s.receive("c", Scrape(()), 1.0)  # a token a second comes back
    assert isinstance(reply, ScrapeReply)


def test_per_source_caps_leave_room_for_other_sources() -> None:
    # Connections "a1" and "a2" are one source (address "a"); "b1" is another.
    s: Swarms[str] = Swarms(
        max_swarms=64, max_peers_per_swarm=32, max_info_hashes_per_socket=64, source=lambda c: c[0]
    )
    assert (s.max_swarms_per_source, s.max_peers_per_source_per_swarm) == (4, 2)
    hashes = [bytes([n]) * 20 for n in range(10)]
    for info_hash in hashes[:4]:
        [(_, reply)] = s.receive("a1", Announce(info_hash, A), 0.0)
        assert isinstance(reply, AnnounceReply)
    # A fifth swarm is refused on any socket of that source, not on another source's.
    [(_, failure)] = s.receive("a2", Announce(hashes[4], B), 0.0)
    assert failure == FailureReply("too many swarms from one address (at most 4)", hashes[4])
    [(_, reply)] = s.receive("b1", Announce(hashes[4], B), 0.0)
    assert isinstance(reply, AnnounceReply)
    # Peers of one source in one swarm: two, whichever socket they are on.
    first = hashes[0]
    s.receive("a2", Announce(first, B), 0.0)
    [(_, failure)] = s.receive("a1", Announce(first, C), 0.0)
    assert failure == FailureReply(
        "too many peers from one address in this swarm (at most 2)", first
    )
    assert s.receive("b1", Announce(first, C), 0.0)[0][1] == AnnounceReply(first, 120, 0, 3)
    # Leaving gives the room back; a peer moving to another source takes its count along.
    s.receive("a1", Announce(hashes[1], A, event="stopped"), 0.0)
    assert isinstance(s.receive("a1", Announce(Y, A), 0.0)[0][1], AnnounceReply)
    s.receive("b1", Announce(first, B), 0.0)  # peer B of the first swarm now lives on "b"
    assert isinstance(s.receive("a1", Announce(first, D), 0.0)[0][1], AnnounceReply)
    s.disconnect("a1")
    s.disconnect("a2")
    s.disconnect("b1")
    assert s.stats() == ServerStats(swarms=0, peers=0, sockets=0)
    assert s._by_source == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"peer_timeout": -1},
        {"max_swarms": 0},
        {"max_peers_per_swarm": 0},
        {"max_swarms_per_source": 0},
    ],
)
def test_caps_must_be_positive(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Swarms(**kwargs)


# -- the server, with raw WebSocket clients -----------------------------------------------------


class RawPeer:
    """A WebSocket client speaking the tracker protocol as raw JSON."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: ClientMessage | str | bytes) -> None:
        if isinstance(message, Announce | Answer | Scrape):
            message = encode_client_message(message)
        await self.ws.send(message)

    async def recv_raw(self) -> Any:
        async with asyncio.timeout(TIMEOUT):
            return json.loads(await self.ws.recv())

    async def recv(self) -> ServerMessage:
        async with asyncio.timeout(TIMEOUT):
            [message] = parse_server_message(await self.ws.recv())
        return message

    async def announce(self, info_hash: bytes, peer_id: bytes, **fields: Any) -> ServerMessage:
        await self.send(Announce(info_hash, peer_id, **fields))
        return await self.recv()

    async def scrape(self, *info_hashes: bytes) -> dict[bytes, ScrapeFile]:
        await self.send(Scrape(info_hashes))
        reply = await self.recv()
        assert isinstance(reply, ScrapeReply), reply
        return dict(reply.files)

    async def nothing_pending(self) -> None:
        """The server queued nothing more for us: a scrape's reply is the next message.

        Valid once whatever might have queued something was answered to its sender: each
        socket's messages are sent in the order they were queued.
        """
        await self.send(Scrape((Z,)))
        message = await self.recv()
        assert isinstance(message, ScrapeReply), message


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


@pytest_asyncio.fixture
async def tracker(stack: contextlib.AsyncExitStack) -> TrackerServer:
    return await stack.enter_async_context(TrackerServer())


async def open_peer(stack: contextlib.AsyncExitStack, url: str) -> RawPeer:
    return RawPeer(await stack.enter_async_context(connect(url)))


async def until(tracker: TrackerServer, condition: Callable[[ServerStats], bool]) -> None:
    """Wait until the tracker's stats satisfy ``condition`` (after a close it handles later)."""
    async with asyncio.timeout(TIMEOUT):
        await tracker.wait_for(condition)


@pytest.mark.asyncio
async def test_announce_reply_as_bittorrent_tracker_sends_it(
    tracker: TrackerServer, stack: contextlib.AsyncExitStack
) -> None:
    assert tracker.url.startswith("ws://127.0.0.1:")
    a = await open_peer(stack, tracker.url)
    await a.send(Announce(X, A, numwant=0, event="started"))
    raw = await a.recv_raw()
    assert list(raw) == ["complete", "incomplete", "action", "interval", "info_hash"]
    assert raw == {
        "complete": 0,
        "incomplete": 1,
        "action": "announce",
        "interval": 120,
        "info_hash": binary_to_str(X),
    }
    b = await open_peer(stack, tracker.url)
    assert await b.announce(X, B, left=0) == AnnounceReply(X, 120, 1, 1)
    assert tracker.stats() == ServerStats(swarms=1, peers=2, sockets=2)


@pytest.mark.asyncio
async def test_offer_relayed_and_answer_routed_back(
    tracker: TrackerServer, stack: contextlib.AsyncExitStack
) -> None:
    a = await open_peer(stack, tracker.url)
    b = await open_peer(stack, tracker.url)
    await a.announce(X, A)
    assert await b.announce(X, B, offers=(offer(1),)) == AnnounceReply(X, 120, 0, 2)

    raw = await a.recv_raw()
    assert raw == {
        "action": "announce",
        "offer": {"type": "offer", "sdp": offer(1).sdp},
        "offer_id": binary_to_str(offer(1).offer_id),
        "peer_id": binary_to_str(B),
        "info_hash": binary_to_str(X),
    }
    await b.nothing_pending()  # the offerer does not get its own offer

    await a.send(Answer(X, A, B, offer(1).offer_id, "v=0\r\na=answer\r\n"))
    assert await b.recv() == AnswerRelay(X, A, offer(1).offer_id, "v=0\r\na=answer\r\n")
    await a.nothing_pending()  # no reply to an answer, as bittorrent-tracker


@pytest.mark.asyncio
async def test_each_offer_to_a_different_peer(
    tracker: TrackerServer, stack: contextlib.AsyncExitStack
) -> None:
    others = {pid: await open_peer(stack, tracker.url) for pid in (A, B, C, D)}
    for pid, peer in others.items():
        await peer.announce(X, pid)
    e = await open_peer(stack, tracker.url)
    await e.announce(X, E, numwant=3, offers=(offer(1), offer(2), offer(3), offer(4)))
    got: list[bytes] = []
    for peer in others.values():
        await peer.send(Scrape((Z,)))
        message = await peer.recv()
        if isinstance(message, OfferRelay):
            assert message.peer_id == E
            got.append(message.offer_id)
            message = await peer.recv()
        assert isinstance(message, ScrapeReply)
    assert sorted(got) == sorted({o.offer_id for o in (offer(1), offer(2), offer(3))})
    await e.nothing_pending()


@pytest.mark.asyncio
async def test_one_socket_many_swarms_and_peers(
    tracker: TrackerServer, stack: contextlib.AsyncExitStack
) -> None:
    # A pooled JavaScript socket: two peers of one swarm and a third swarm on one connection.
    shared = await open_peer(stack, tracker.url)
    await shared.announce(X, A)
    await shared.announce(Y, A)
    assert await shared.announce(X, B, offers=(offer(1),)) == AnnounceReply(X, 120, 0, 2)
    relay = await shared.recv()
    assert relay == OfferRelay(X, B, offer(1).offer_id, offer(1).sdp)  # to A, on the same socket
    assert await shared.scrape(X, Y) == {X: ScrapeFile(0, 2, 0), Y: ScrapeFile(0, 1, 0)}


@pytest.mark.asyncio
async def test_scrape_one_several_and_all(stack: contextlib.AsyncExitStack) -> None:
    tracker = await stack.enter_async_context(TrackerServer(interval=30.5))
    a = await open_peer(stack, tracker.url)
    await a.announce(X, A, left=0)
    await a.announce(Y, A)
    await a.send(Scrape((X,)))
    raw = await a.recv_raw()
    assert raw == {
        "action": "scrape",
        "files": {binary_to_str(X): {"complete": 1, "incomplete": 0, "downloaded": 1}},
        "flags": {"min_request_interval": 31},
    }
    assert await a.scrape(Y, Z) == {Y: ScrapeFile(0, 1, 0), Z: ScrapeFile(0, 0, 0)}
    assert await a.scrape() == {X: ScrapeFile(1, 0, 1), Y: ScrapeFile(0, 1, 0)}


@pytest.mark.asyncio
async def test_stopped_leaves_the_swarm(
    tracker: TrackerServer, stack: contextlib.AsyncExitStack
) -> None:
    a = await open_peer(stack, tracker.url)
    b = await open_peer(stack, tracker.url)
    await a.announce(X, A)
    await b.announce(X, B, left=0)
    await b.announce(Y, B)
    assert await b.announce(X, B, event="stopped") == AnnounceReply(X, 120, 0, 1)
    assert await a.scrape(X, Y) == {X: ScrapeFile(0, 1, 0), Y: ScrapeFile(0, 1, 0)}
    # Offers no longer reach B in X.
    await a.announce(X, A, offers=(offer(1),))
    await b.nothing_pending()


@pytest.mark.asyncio
async def test_a_closed_socket_leaves_every_swarm(
    tracker: TrackerServer, stack: contextlib.AsyncExitStack
) -> None:
    a = await open_peer(stack, tracker.url)
    await a.announce(X, A)
    async with connect(tracker.url) as ws:
        b = RawPeer(ws)
        await b.announce(X, B, left=0)
        await b.announce(Y, B)
        assert await a.scrape(X, Y) == {X: ScrapeFile(1, 1, 1), Y: ScrapeFile(0, 1, 0)}
    await until(tracker, lambda s: s.sockets == 1)
    assert await a.scrape(X, Y) == {X: ScrapeFile(0, 1, 0), Y: ScrapeFile(0, 0, 0)}
    assert await a.announce(X, A) == AnnounceReply(X, 120, 0, 1)
    assert tracker.stats() == ServerStats(swarms=1, peers=1, sockets=1)


@pytest.mark.asyncio
async def test_a_reconnected_peer_gets_its_offers_on_the_new_socket(
    tracker: TrackerServer, stack: contextlib.AsyncExitStack
) -> None:
    old = await open_peer(stack, tracker.url)
    new = await open_peer(stack, tracker.url)
    b = await open_peer(stack, tracker.url)
    await old.announce(X, A)
    await new.announce(X, A)
    await b.announce(X, B, offers=(offer(1),))
    assert await new.recv() == OfferRelay(X, B, offer(1).offer_id, offer(1).sdp)
    await old.nothing_pending()
    await old.ws.close()
    await until(tracker, lambda s: s.sockets == 2)
    assert await b.scrape(X) == {X: ScrapeFile(0, 2, 0)}


@pytest.mark.asyncio
async def test_silent_peers_are_dropped(stack: contextlib.AsyncExitStack) -> None:
    tracker = await stack.enter_async_context(TrackerServer(peer_timeout=0.1))
    a = await open_peer(stack, tracker.url)
    await a.announce(X, A)
    await until(tracker, lambda s: s.peers == 0)
    assert tracker.stats() == ServerStats(swarms=0, peers=0, sockets=1)
    assert await a.announce(X, A) == AnnounceReply(X, 120, 0, 1)  # the socket still works


@pytest.mark.asyncio
async def test_caps_refuse_and_the_connection_keeps_working(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(
        TrackerServer(
            max_offers=2,
            max_swarms=2,
            max_peers_per_swarm=2,
            max_info_hashes_per_socket=1,
            max_swarms_per_source=3,  # all the clients are on 127.0.0.1: only the global caps
            max_peers_per_source_per_swarm=3,
        )
    )
    a = await open_peer(stack, tracker.url)
    b = await open_peer(stack, tracker.url)
    await a.announce(X, A)

    await b.send(Announce(X, B, offers=(offer(1), offer(2), offer(3))))
    raw = await b.recv_raw()
    assert raw == {
        "action": "announce",
        "failure reason": "too many offers: 3 (at most 2)",
        "info_hash": binary_to_str(X),
    }
    assert await b.announce(X, B, offers=(offer(1), offer(2))) == AnnounceReply(X, 120, 0, 2)
    assert isinstance(await a.recv(), OfferRelay)

    failure = await b.announce(Y, B)
    assert failure == FailureReply("too many swarms on one socket (at most 1)", Y)
    c = await open_peer(stack, tracker.url)
    assert await c.announce(X, C) == FailureReply("swarm is full (at most 2 peers)", X)
    assert await c.announce(Y, C) == AnnounceReply(Y, 120, 0, 1)
    d = await open_peer(stack, tracker.url)
    assert await d.announce(Z, D) == FailureReply("tracker is full (at most 2 swarms)", Z)
    # Every connection still works in the swarms it has.
    assert await b.announce(X, B) == AnnounceReply(X, 120, 0, 2)
    assert await d.scrape(X, Y) == {X: ScrapeFile(0, 2, 0), Y: ScrapeFile(0, 1, 0)}


@pytest.mark.asyncio
async def test_a_frame_over_max_message_size_closes_only_that_socket(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(TrackerServer(max_message_size=4096))
    a = await open_peer(stack, tracker.url)
    await a.announce(X, A)
    big = await open_peer(stack, tracker.url)
    await big.send(Announce(X, B, offers=(OfferPayload(b"o" * 20, "v" * 5000),)))
    with pytest.raises(websockets.ConnectionClosed) as info:
        await big.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    assert await a.announce(X, A) == AnnounceReply(X, 120, 0, 1)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("frame", "action", "info_hash"),
    [
        ("not json", "announce", None),
        (b"\xff\xfe binary garbage", "announce", None),
        ("[1, 2]", "announce", None),
        ('{"action": "connect"}', "announce", None),
        ('{"action": "announce", "info_hash": "short"}', "announce", None),
        (
            json.dumps(
                {
                    "action": "announce",
                    "info_hash": binary_to_str(Y),
                    "peer_id": binary_to_str(B),
                    "event": "exploded",
                }
            ),
            "announce",
            Y,
        ),
        ('{"action": "scrape", "info_hash": 42}', "scrape", None),
        ("[" * 50_000, "announce", None),
    ],
)
async def test_garbage_gets_a_failure_reason_and_breaks_nothing(
    tracker: TrackerServer,
    stack: contextlib.AsyncExitStack,
    frame: str | bytes,
    action: str,
    info_hash: bytes | None,
) -> None:
    a = await open_peer(stack, tracker.url)
    b = await open_peer(stack, tracker.url)
    await a.announce(X, A)
    await b.announce(X, B)
    await b.send(frame)
    raw = await b.recv_raw()
    assert raw["action"] == action
    assert isinstance(raw["failure reason"], str)
    assert raw["failure reason"]
    assert raw.get("info_hash") == (None if info_hash is None else binary_to_str(info_hash))
    # The same connection and the others go on as before.
    assert await b.announce(X, B, offers=(offer(1),)) == AnnounceReply(X, 120, 0, 2)
    assert await a.recv() == OfferRelay(X, B, offer(1).offer_id, offer(1).sdp)
    assert tracker.stats() == ServerStats(swarms=1, peers=2, sockets=2)


@pytest.mark.asyncio
async def test_close_closes_every_socket_and_is_idempotent(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = TrackerServer()
    with pytest.raises(RuntimeError):
        _ = tracker.url
    await tracker.start()
    a = await open_peer(stack, tracker.url)
    await a.announce(X, A)
    await tracker.close()
    with pytest.raises(websockets.ConnectionClosed):
        await a.recv()
    assert tracker.stats() == ServerStats(swarms=0, peers=0, sockets=0)
    await tracker.close()
    with pytest.raises(RuntimeError):
        await tracker.start()


# -- bittorrent-tracker's JavaScript client -----------------------------------------------------

NODE_MODULES = Path(__file__).resolve().parents[1] / "interop" / "js" / "node_modules"
JS_CLIENT = Path(__file__).with_name("js_tracker_client.mjs")

needs_js = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_MODULES / "bittorrent-tracker").is_dir(),
    reason=f"needs node and bittorrent-tracker in {NODE_MODULES} (make npm)",
)


class RecordingTracker(TrackerServer):
    """The tracker, keeping every frame it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[str | bytes] = []

    def _receive(self, conn: Any, data: str | bytes) -> None:
        self.frames.append(data)
        super()._receive(conn, data)


async def run_js(*args: str) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS_CLIENT),
        str(NODE_MODULES),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert proc.returncode == 0, (events, err.decode())
    assert [e for e in events if e["event"] in ("warning", "error")] == []
    return events


def assert_frames_are_ours(frames: list[str | bytes]) -> list[ClientMessage]:
    """Every frame the JavaScript client sent is byte for byte what our encoder writes."""
    messages = []
    for frame in frames:
        assert isinstance(frame, str)
        message = parse_client_message(frame)
        assert encode_client_message(message) == frame
        messages.append(message)
    return messages


@needs_js
@pytest.mark.asyncio
async def test_javascript_client_announces_scrapes_and_stops(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(RecordingTracker())
    seeder = await open_peer(stack, tracker.url)
    await seeder.announce(X, A, left=0)
    tracker.frames.clear()

    events = await run_js(tracker.url, "basic", X.hex(), Y.hex())

    peer_id = bytes.fromhex(events[0]["peer_id"])
    assert events[1:] == [
        {"event": "update", "complete": 1, "incomplete": 1, "interval": 120},
        {"event": "scrape", "info_hash": X.hex(), "complete": 1, "incomplete": 1, "downloaded": 1},
        {"event": "scrape", "info_hash": X.hex(), "complete": 1, "incomplete": 1, "downloaded": 1},
        {"event": "scrape", "info_hash": Y.hex(), "complete": 0, "incomplete": 0, "downloaded": 0},
        {"event": "stopped", "complete": 1, "incomplete": 0},
        {"event": "done"},
    ]
    assert assert_frames_are_ours(tracker.frames) == [
        Announce(X, peer_id, numwant=0, event="started"),
        Scrape((X,)),
        Scrape((X, Y)),
        Announce(X, peer_id, numwant=50, event="stopped"),
    ]


@needs_js
@pytest.mark.asyncio
async def test_javascript_clients_signal_each_other_through_it(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(RecordingTracker())

    events = await run_js(tracker.url, "signal", X.hex())

    ids = {e["side"]: e["peer_id"] for e in events if e["event"] == "peer_id"}
    assert {"event": "offer_received", "side": "a", "from": ids["b"]} in events
    assert {"event": "answer_received", "side": "b", "from": ids["a"]} in events
    messages = assert_frames_are_ours(tracker.frames)
    announces = [m for m in messages if isinstance(m, Announce)]
    assert [len(m.offers) for m in announces] == [2, 2]
    answers = [m for m in messages if isinstance(m, Answer)]
    assert len(answers) == 1
    assert answers[0].peer_id.hex() == ids["a"]
    assert answers[0].to_peer_id.hex() == ids["b"]
    assert answers[0].offer_id in {o.offer_id for o in announces[1].offers}


def test_socket_caps_fit_the_file_descriptors_the_process_may_hold() -> None:
    # ulimit -n 1024: 896 sockets after the 128 reserved, 56 of them for handshakes in progress.
    t = TrackerServer(fd_limit=1024)
    assert (t.max_sockets, t.max_connections, t.max_connections_per_ip) == (896, 840, 52)
    # A roomy limit leaves the configured caps as they are; a smaller one is never raised.
    t = TrackerServer(fd_limit=1_000_000)
    assert (t.max_sockets, t.max_connections, t.max_connections_per_ip) == (10_625, 10_000, 256)
    t = TrackerServer(fd_limit=1_000_000, max_connections=100, max_connections_per_ip=3)
    assert (t.max_sockets, t.max_connections, t.max_connections_per_ip) == (106, 100, 3)
    # Defaults: the soft RLIMIT_NOFILE of this process.
    assert TrackerServer().fd_limit == nofile_limit()
    with pytest.raises(ValueError, match="leaves no room for sockets"):
        TrackerServer(fd_limit=129)
    assert TrackerServer(interval=30).idle_timeout == 60
