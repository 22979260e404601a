"""Peers that offer no ICE candidate at all (on one machine without ``host_addresses``, in a
network of only loopback) are reported as such, with what to do, over real WebRTC. (When one
side offers candidates, libwebrtc connects all the same, through peer-reflexive ones.)"""

from __future__ import annotations

import pytest

from p2prpc.p2pt import P2PT
from p2prpc.testing import LOOPBACK, until
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

#: An address of no interface here (TEST-NET-3): pinned to it, a peer gathers no candidate.
NOWHERE = "203.0.113.77"


async def test_a_peer_with_no_candidate_is_told_so_with_the_one_machine_advice() -> None:
    async with TrackerServer(LOOPBACK, 0) as tracker:
        peers = [
            P2PT(
                [tracker.url],
                "no-candidates",
                ice_servers=[],
                host_addresses=[NOWHERE],
                ice_timeout=2.0,
            )
            for _ in range(2)
        ]
        try:
            for peer in peers:
                await peer.start()
            await until(
                lambda: all(p.unreachable() for p in peers),
                *((p, "peerunreachable") for p in peers),
                timeout=30,
            )
            for peer in peers:
                [reason] = peer.unreachable()
                assert "no ICE candidate in either description" in reason.reason
                assert reason.advice == (
                    "peers on one machine: give both host_addresses=['127.0.0.1']"
                )
        finally:
            for peer in peers:
                await peer.destroy()
