"""The tracker client's handling of what a tracker sends, without a network."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from p2prpc.swarm.connection import Connection
from p2prpc.swarm.pool import OfferPool
from p2prpc.swarm.sealing import Signalling
from p2prpc.testing import loopback_p2pt
from p2prpc.tracker.client import MAX_INTERVAL, MAX_OFFERS, TrackerClient
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import RTCOptions
from p2prpc.wire.tracker import AnnounceReply, binary_to_str

pytestmark = pytest.mark.asyncio

INFO_HASH = bytes(range(20))


class FakeSwarm:
    """The least a tracker client needs from its swarm; records what it is told."""

    info_hash = INFO_HASH
    peer_id_bytes = bytes(20)

    def __init__(self) -> None:
        self.updates: list[AnnounceReply] = []
        self.warnings: list[Exception] = []
        self.pool = OfferPool(
            self, Signalling(INFO_HASH, bytes(20), None), RTCOptions(ice_servers=[])
        )

    def accepts_offer_from(self, peer_id: str, extra: bool = False) -> bool:
        return False

    def accepts_answer_from(self, peer_id: str, extra: bool = False) -> bool:
        return False

    def adopt(
        self, connection: Connection, connect_timeout: float, offer_id: bytes | None = None
    ) -> None:
        connection.close()

    def offer_failed(self, peer_id: str, offer_id: bytes) -> None:
        pass

    def closing(self, connection: Connection) -> None:
        pass

    def offers_wanted(self, tracker: TrackerClient, most: int, *, requested: bool = False) -> int:
        return most

    def hungry(self) -> bool:
        return False

    def tracker_update(self, tracker: TrackerClient, reply: AnnounceReply) -> None:
        self.updates.append(reply)

    def tracker_warning(self, tracker: TrackerClient, error: Exception) -> None:
        self.warnings.append(error)


@pytest.mark.parametrize("interval", [10**400, 1e308, MAX_INTERVAL + 1])
async def test_a_huge_interval_is_capped_not_an_overflow(interval: float) -> None:
    swarm = FakeSwarm()
    client = TrackerClient("ws://127.0.0.1:9", swarm)
    reply = {
        "action": "announce",
        "interval": interval,
        "complete": 0,
        "incomplete": 1,
        "info_hash": binary_to_str(INFO_HASH),
    }
    client._on_data(json.dumps(reply))
    assert client.interval == MAX_INTERVAL
    assert len(swarm.updates) == 1
    assert swarm.warnings == []


async def test_an_ordinary_interval_is_taken_as_is() -> None:
    swarm = FakeSwarm()
    client = TrackerClient("ws://127.0.0.1:9", swarm)
    reply = {"action": "announce", "interval": 45, "info_hash": binary_to_str(INFO_HASH)}
    client._on_data(json.dumps(reply))
    assert client.interval == 45.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_unanswered_offers_are_retired_when_new_announces_go_out() -> None:
    """A peer alone in its swarm, asking for more peers as fast as the tracker answers."""
    async with TrackerServer("127.0.0.1", 0) as tracker:
        p2pt = loopback_p2pt([tracker.url], "alone")
        replies = asyncio.Queue[None]()
        p2pt.on("trackerconnect", lambda *_: replies.put_nowait(None))
        await p2pt.start()
        client = p2pt.trackers[tracker.url]
        bound = client.max_outstanding_offers
        assert bound == 2 * MAX_OFFERS
        await asyncio.wait_for(replies.get(), 10)
        baseline = open_fds()
        most = 0
        for _ in range(30):
            p2pt.request_more_peers()
            await asyncio.wait_for(replies.get(), 10)
            most = max(most, client.outstanding_offers)
            assert client.outstanding_offers <= bound
        assert most == bound
        # Retired offers release their sockets (closing runs in the background).
        async with asyncio.timeout(10):
            while open_fds() > baseline + bound:  # noqa: ASYNC110 - no event tells of a closed fd
                await asyncio.sleep(0.05)
        await p2pt.destroy()
