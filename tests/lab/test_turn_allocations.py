"""What a pair of peers costs a TURN server's operator: allocations, counted at coturn.

Both homes sit behind symmetric NATs, so the peers meet only through coturn's relays. Each offer
and each answer gathers its candidates before it leaves, a relayed one among them: one TURN
allocation. An announce makes offers only for the peers the tracker counts that are not connected
yet, so the pair costs one allocation for the offer that connects it and one for its answer, and
re-announcing costs nothing more. The tracker here tells an interval of 2 s, so that the
re-announces of a minute at P2PT's pace (one at most, after 30 s, then every 120 s) are exceeded
in a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from p2prpc.testing import until

from .nat import NatLab, unavailable_reason
from .test_nat import homes

pytestmark = [
    pytest.mark.skipif(
        unavailable_reason() is not None, reason=f"no NAT lab here: {unavailable_reason()}"
    ),
    pytest.mark.asyncio,
]

INTERVAL = 2  # seconds between announces, as the tracker tells them
REANNOUNCES = 4  # more than a minute holds at P2PT's pace


@pytest.fixture(scope="module")
def lab() -> Iterator[NatLab]:
    with NatLab(tracker_interval=INTERVAL) as made:
        yield made


async def test_a_pair_connected_through_turn_costs_at_most_three_allocations(lab: NatLab) -> None:
    before = lab.turn_allocations()
    async with homes(lab, "symmetric", [lab.turn_url()]) as (node, far_id, events):
        replies = 0

        def replied(*_: object) -> None:
            nonlocal replies
            replies += 1

        node.p2pt.on("trackerconnect", replied)
        await until(
            lambda: far_id in node.peers,
            (node.p2pt, "peerconnect"),
            (node.p2pt, "peerunreachable"),
            timeout=20,
        )
        connected = replies
        await until(
            lambda: replies >= connected + REANNOUNCES,
            (node.p2pt, "trackerconnect"),
            timeout=REANNOUNCES * INTERVAL + 10,
        )
        assert far_id in node.peers
        assert events == []
        # One for the offer that connected the pair, one for its answer, none since.
        assert 2 <= lab.turn_allocations() - before <= 3
