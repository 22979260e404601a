"""Sealed signalling played back: each offer and answer opens once, within its time window.

First the rules, on :class:`~p2prpc.swarm.sealing.Signalling` alone; then an outsider, over a real
tracker and real WebRTC on loopback. The outsider has no secret. It is a plain tracker client
(p2prpc's own tracker codecs over a WebSocket): it scrapes the tracker for the closed swarm's
info_hash, joins it under peer ids of its own, records the sealed offers the tracker relays to
it, leaves, and announces those offers again in their senders' names, many times, so that other
members get each one several times. Each member must open each recorded offer at most once,
refuse (and count) every copy, and build no connection for a copy; the few connections it did
build must not keep a genuine new member out while the attack goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from p2prpc import P2PT, Peer
from p2prpc.swarm.connection import Connection, ConnectionState
from p2prpc.swarm.sealing import Signalling
from p2prpc.testing import loopback_p2pt, wait_connected
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.secret import (
    SEAL_CLOCK_SKEW,
    SEAL_MAX_AGE,
    SEAL_PREFIX,
    ReplayedSeal,
    SealError,
    StaleSeal,
    derive_keys,
)
from p2prpc.wire.tracker import (
    Announce,
    AnnounceReply,
    OfferPayload,
    OfferRelay,
    Scrape,
    ScrapeReply,
    encode_client_message,
    parse_server_message,
)

IDENTIFIER = "closed-app"
SECRET = "a long shared secret"
#: Each recorded offer is announced this many times (to every other member each time).
ROUNDS = 4
#: How soon a genuine newcomer must connect while the attack goes on (it takes about 0.04 s).
PROMPTLY = 5.0

NODE_MODULES = Path(__file__).resolve().parents[1] / "interop" / "js" / "node_modules"

KEYS = derive_keys(SECRET, IDENTIFIER)
A, B, C = b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20
OFFER, OTHER = b"\x0f" * 20, b"\x0e" * 20
T0 = 1_700_000_000.0
SDP = "v=0\r\n"


class Clock:
    """Seconds since the Unix epoch, as the test sets them."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pair(clock: Clock, **kw: int) -> tuple[Signalling, Signalling]:
    """A sealing for peer A and one for peer B of the same swarm, on ``clock``."""
    a = Signalling(KEYS.info_hash, A, KEYS, clock=clock, **kw)  # type: ignore[arg-type]
    b = Signalling(KEYS.info_hash, B, KEYS, clock=clock, **kw)  # type: ignore[arg-type]
    return a, b


def test_an_offer_or_an_answer_opens_once_and_its_copies_are_refused_and_counted() -> None:
    clock = Clock()
    a, b = pair(clock)
    offer = a.seal_offer(OFFER, SDP)
    assert b.open_offer(A, OFFER, offer) == SDP
    for _ in range(3):
        with pytest.raises(ReplayedSeal):
            b.open_offer(A, OFFER, offer)
    assert b.refused == 3 and b.opened == 1
    answer = b.seal_answer(A, OFFER, SDP)
    assert a.open_answer(B, OFFER, answer) == SDP  # an answer to the offer: another kind
    with pytest.raises(ReplayedSeal):
        a.open_answer(B, OFFER, answer)
    assert a.refused == 1
    assert issubclass(ReplayedSeal, SealError)
    # Another member, which never opened it, opens it once too: the tracker picks one member
    # for an offer, and a copy to each other member is what the caps in P2PT share out.
    c = Signalling(KEYS.info_hash, C, KEYS, clock=clock)
    assert c.open_offer(A, OFFER, offer) == SDP
    with pytest.raises(ReplayedSeal):
        c.open_offer(A, OFFER, offer)


def test_what_does_not_open_is_not_remembered_and_cannot_shut_out_the_genuine_one() -> None:
    clock = Clock()
    a, b = pair(clock)
    genuine = a.seal_offer(OFFER, SDP)
    forged = Signalling(
        KEYS.info_hash, A, derive_keys("a guessed secret 0f3e8a27c1d6", "closed-app"), clock=clock
    )
    for text in (forged.seal_offer(OFFER, SDP), SDP, genuine[:-2] + "AA"):
        with pytest.raises(SealError) as refused:
            b.open_offer(A, OFFER, text)
        assert not isinstance(refused.value, ReplayedSeal)
    assert b.opened == 0 and b.refused == 3
    assert b.open_offer(A, OFFER, genuine) == SDP
    assert b.open_offer(A, OTHER, a.seal_offer(OTHER, SDP)) == SDP  # another offer id


def test_a_copy_is_refused_for_as_long_as_it_could_still_open() -> None:
    clock = Clock()
    a, b = pair(clock)
    clock.now = T0 + SEAL_CLOCK_SKEW  # a's clock is as far ahead as b allows
    ahead = a.seal_offer(OFFER, SDP)
    clock.now = T0
    assert b.open_offer(A, OFFER, ahead) == SDP
    clock.now = T0 + SEAL_CLOCK_SKEW + SEAL_MAX_AGE - 0.5  # it would still open: a copy
    with pytest.raises(ReplayedSeal):
        b.open_offer(A, OFFER, ahead)
    clock.now += 1  # now too old to open at all, and forgotten
    with pytest.raises(StaleSeal):
        b.open_offer(A, OFFER, ahead)
    assert b.opened == 0 and b.refused == 2


def test_past_max_opened_the_oldest_is_forgotten() -> None:
    clock = Clock()
    a, b = pair(clock, max_opened=3)
    offers = {bytes([n]) * 20: a.seal_offer(bytes([n]) * 20, SDP) for n in range(4)}
    for offer_id, text in offers.items():
        clock.now += 1
        assert b.open_offer(A, offer_id, text) == SDP
    assert b.opened == 3
    first, *rest = offers
    assert b.open_offer(A, first, offers[first]) == SDP  # forgotten: it opens again
    for offer_id in rest[1:]:
        with pytest.raises(ReplayedSeal):
            b.open_offer(A, offer_id, offers[offer_id])


def test_an_open_swarm_keeps_nothing() -> None:
    plain = Signalling(b"\x01" * 20, A, None)
    for _ in range(2):
        assert plain.open_offer(B, OFFER, "v=0 plain") == "v=0 plain"
    assert plain.opened == 0 and plain.refused == 0


def test_limits_are_checked() -> None:
    for kw in ({"max_age": 0}, {"max_skew": -1}, {"max_opened": 0}):
        with pytest.raises(ValueError):
            Signalling(b"\x01" * 20, A, KEYS, **kw)  # type: ignore[arg-type]


# -- an outsider, over a real tracker ------------------------------------------------------------


class Outsider:
    """A tracker client that holds no secret: it scrapes, joins, records and announces."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.peer_ids = [os.urandom(20), os.urandom(20)]
        self.recorded: list[OfferRelay] = []
        self.scrapes: list[ScrapeReply] = []
        self.replies = 0
        self.changed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Outsider:
        self._ws = await connect(self.url, compression=None)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._ws is not None and self._reader is not None
        await self._ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(Exception):
            async for data in self._ws:
                for message in parse_server_message(data):
                    if isinstance(message, OfferRelay):
                        self.recorded.append(message)
                    elif isinstance(message, ScrapeReply):
                        self.scrapes.append(message)
                    elif isinstance(message, AnnounceReply):
                        self.replies += 1
                self.changed.set()

    async def send(self, message: Announce | Scrape) -> None:
        assert self._ws is not None
        await self._ws.send(encode_client_message(message))

    async def until(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def scrape(self) -> set[bytes]:
        """Every info_hash the tracker has (a scrape that names none asks for all of them)."""
        await self.send(Scrape(()))
        await self.until(lambda: bool(self.scrapes))
        return set(self.scrapes[-1].files)

    async def join(self, info_hash: bytes, event: str | None = None) -> None:
        """Announce (or, ``event="stopped"``, leave) under each of its peer ids, and wait until
        the tracker has answered each."""
        expected = self.replies + len(self.peer_ids)
        for peer_id in self.peer_ids:
            await self.send(Announce(info_hash, peer_id, numwant=0, event=event))
        await self.until(lambda: self.replies >= expected)

    def offers_from(self, peer: P2PT) -> list[OfferRelay]:
        return [r for r in self.recorded if r.peer_id == peer.peer_id_bytes]

    async def play_back(self, relay: OfferRelay, copies: int) -> None:
        """Announce a recorded offer in its sender's name, ``copies`` times at once: the tracker
        hands each copy to a different peer of the swarm."""
        offers = (OfferPayload(relay.offer_id, relay.sdp),) * copies
        await self.send(Announce(relay.info_hash, relay.peer_id, numwant=copies, offers=offers))


class Watch:
    """What one member does with the offers its tracker relays: each arrival, each opening and
    how it ended, each connection it builds to answer one."""

    def __init__(self, p2pt: P2PT, changed: asyncio.Event) -> None:
        self.p2pt = p2pt
        self.arrived: Counter[tuple[bytes, bytes]] = Counter()
        self.opened: Counter[tuple[bytes, bytes]] = Counter()
        self.refusals: list[Exception] = []
        self.built: list[Connection] = []
        self.warnings: list[Exception] = []
        self.changed = changed
        self.refused_before = p2pt.signalling.refused
        p2pt.on("trackerwarning", lambda error, stats: self.warnings.append(error))
        signalling = p2pt.signalling
        open_offer = signalling.open_offer

        def opening(from_id: bytes, offer_id: bytes, text: str, **kw: Any) -> str:
            try:
                sdp = open_offer(from_id, offer_id, text, **kw)
            except SealError as e:
                self.refusals.append(e)
                raise
            self.opened[from_id, offer_id] += 1
            return sdp

        signalling.open_offer = opening  # type: ignore[method-assign]
        created = p2pt.adopt

        def channel_created(channel: Connection, *args: Any) -> None:
            if not channel.initiator:
                self.built.append(channel)
            created(channel, *args)

        p2pt.adopt = channel_created  # type: ignore[method-assign]
        for client in p2pt.trackers.values():
            answer = client._answer

            async def answering(relay: OfferRelay, answer: Any = answer) -> None:
                self.arrived[relay.peer_id, relay.offer_id] += 1
                try:
                    await answer(relay)
                finally:
                    self.changed.set()

            client._answer = answering  # type: ignore[method-assign]

    @property
    def refused(self) -> int:
        return self.p2pt.signalling.refused - self.refused_before


@contextlib.asynccontextmanager
async def tracker_of(kind: str) -> AsyncIterator[str]:
    if kind == "embedded":
        async with TrackerServer("127.0.0.1", 0) as server:
            yield server.url
        return
    if shutil.which("node") is None or not (NODE_MODULES / "bittorrent-tracker").is_dir():
        pytest.skip(f"needs node and bittorrent-tracker in {NODE_MODULES} (make npm)")
    from interop.harness import JsTracker  # tests/ is on the path, as for the conftest

    async with JsTracker() as js:
        yield js.url


async def until(changed: asyncio.Event, condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            changed.clear()
            await changed.wait()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["embedded", "bittorrent-tracker"])
async def test_an_outsider_playing_back_recorded_offers_costs_members_one_answer_each(
    kind: str,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(tracker_of(kind))
        outsider = await stack.enter_async_context(Outsider(url))

        def member() -> P2PT:
            # Few connecting slots, so that what the attack holds shows: the defaults are 32.
            p2pt = loopback_p2pt([url], IDENTIFIER, secret=SECRET, max_connecting=4)
            stack.push_async_callback(p2pt.destroy)
            return p2pt

        a, b, c = members = [member() for _ in range(3)]
        announced = asyncio.get_running_loop().create_future()
        a.once("trackerconnect", lambda *_: announced.set_result(None))
        await a.start()
        await asyncio.wait_for(announced, 10)
        (info_hash,) = await outsider.scrape()  # all it needs to find the swarm
        assert info_hash == a.info_hash
        await outsider.join(info_hash)  # under two peer ids
        a.request_more_peers()  # as at its interval: one offer to each of the outsider's ids
        await outsider.until(lambda: len(outsider.offers_from(a)) == 2)
        await b.start()  # its first announce: one offer to a, one to each of the outsider's ids
        await outsider.until(lambda: len(outsider.offers_from(b)) == 2)
        await c.start()
        await wait_connected(members, 2, timeout=20)
        await outsider.join(info_hash, event="stopped")
        recorded = outsider.offers_from(a) + outsider.offers_from(b)
        assert all(r.sdp.startswith(SEAL_PREFIX) for r in recorded)

        changed = asyncio.Event()
        watches = {p.peer_id: Watch(p, changed) for p in members}
        # a's offers, then b's, each to both other members ROUNDS times. The embedded tracker
        # gives a peer id to the socket that last announced it: from then on what is relayed to
        # a (or b) reaches the outsider instead, so there a gets nothing and the newcomer's
        # offers reach c alone (bittorrent-tracker keeps each id on its first socket).
        for relay in recorded:
            for _ in range(ROUNDS):
                await outsider.play_back(relay, copies=2)
        of_a, of_b = ([(r.peer_id, r.offer_id) for r in outsider.offers_from(p)] for p in (a, b))
        targets = {a.peer_id: of_b, b.peer_id: of_a, c.peer_id: of_a + of_b}
        if kind == "embedded":
            targets[a.peer_id] = []
        await until(
            changed,
            lambda: all(
                watches[p].arrived[key] >= ROUNDS for p, ks in targets.items() for key in ks
            ),
            20,
        )

        # A genuine newcomer, while the connections built for the attack still connect.
        newcomer = member()
        met_c: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def connected(peer: Peer) -> None:
            if peer.id == c.peer_id and not met_c.done():
                met_c.set_result(time.monotonic())

        newcomer.on("peerconnect", connected)
        started = time.monotonic()
        await newcomer.start()
        took = await asyncio.wait_for(met_c, PROMPTLY) - started
        held = [ch for ch in watches[c.peer_id].built if ch.state is ConnectionState.CONNECTING]

        for peer_id, watch in watches.items():
            assert all(watch.arrived[key] == ROUNDS for key in targets[peer_id])
            copies = (ROUNDS - 1) * len(targets[peer_id])
            assert max(watch.opened.values(), default=0) <= 1  # nothing opened twice
            assert set(watch.opened) <= set(watch.arrived)
            # Every copy refused as one, counted and reported, whatever the caps said.
            assert watch.refused == copies == len(watch.refusals)
            assert all(isinstance(e, ReplayedSeal) for e in watch.refusals)
            assert sum(isinstance(w, ReplayedSeal) for w in watch.warnings) == copies
            # No connection built for a copy: at most one for each offer played back.
            assert len(watch.built) <= len(watch.arrived)
        assert took < PROMPTLY
        if kind == "embedded":
            # c's answers went to the outsider (it holds a's and b's names there), so nothing
            # c built for them opened: they were still waiting when the newcomer got in, and
            # they were two, half the slots, though four offers opened (once each).
            assert held, "the attack's connections were over before the newcomer came"
            attack = [ch for ch in watches[c.peer_id].built if ch.peer_id != newcomer.peer_id]
            assert len(attack) == c.max_connecting // 2 and len(watches[c.peer_id].opened) >= 4
