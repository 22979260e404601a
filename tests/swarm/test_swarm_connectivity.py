"""The pure assessment of whether a swarm is still finding peers (p2prpc.swarm.connectivity)."""

from __future__ import annotations

from dataclasses import dataclass

from p2prpc.swarm.connectivity import Finding, TrackerState, assess

URL = "ws://tracker.example:8000"
BOUND = 20.0


@dataclass
class Tracker:
    state: TrackerState
    since: float = 100.0
    problem: str | None = None
    others: int = 0
    met: bool = False
    announce_url: str = URL


def test_a_tracker_not_answered_yet_is_connecting_until_the_bound() -> None:
    tracker = Tracker(TrackerState.CONNECTING)
    now = assess([tracker], [], degree=0, connect_timeout=BOUND, now=110.0)
    assert now.connecting and now.changes_at == 120.0
    assert now.finding[0].what == f"tracker {URL} has not answered yet"
    later = assess([tracker], [], degree=0, connect_timeout=BOUND, now=120.0)
    assert not later.connecting and later.changes_at is None
    assert later.reason == f"tracker {URL} did not answer within 20 s"


def test_a_failed_tracker_says_why() -> None:
    problem = f"tracker {URL} unreachable: [Errno 111] Connect call failed"
    result = assess(
        [Tracker(TrackerState.FAILED, problem=problem)],
        [],
        degree=0,
        connect_timeout=BOUND,
        now=101.0,
    )
    assert not result.connecting and result.reason == problem


def test_a_swarm_the_tracker_says_is_empty_has_nothing_to_find() -> None:
    result = assess(
        [Tracker(TrackerState.ANSWERED, others=0)], [], degree=0, connect_timeout=BOUND, now=101
    )
    assert not result.connecting
    assert result.reason == f"tracker {URL} knows no other peer in the swarm"
    # A peer that joined since (the tracker's count is from its first answer) makes it stale.
    joined = assess(
        [Tracker(TrackerState.ANSWERED, others=0)], [], degree=1, connect_timeout=BOUND, now=101
    )
    assert not joined.connecting and joined.reason == ""


def test_peers_the_tracker_counts_are_looked_for_until_met_or_the_bound() -> None:
    counting = Tracker(TrackerState.ANSWERED, others=3)
    result = assess([counting], [], degree=1, connect_timeout=BOUND, now=105.0)
    assert result.connecting
    assert "counts 3 other peers in the swarm, 1 connected" in result.finding[0].what
    # Once met, a count that went stale (a peer died) is not looked for again.
    counting.met = True
    assert not assess([counting], [], degree=1, connect_timeout=BOUND, now=105.0).connecting
    # Never met: past the bound, with none connected, that is the failure.
    counting.met = False
    late = assess([counting], [], degree=0, connect_timeout=BOUND, now=130.0)
    assert not late.connecting
    assert "none of the 3 other peers" in late.reason and "within 20 s" in late.reason
    # Some connected: no failure to report, nothing in progress either.
    assert assess([counting], [], degree=2, connect_timeout=BOUND, now=130.0).failures == ()


def test_connections_in_progress_count_within_the_bound_and_set_when_it_changes() -> None:
    connections = [Finding(100.0, "connecting to peer a"), Finding(95.0, "connecting to peer b")]
    result = assess([], connections, degree=0, connect_timeout=BOUND, now=110.0)
    assert result.connecting and len(result.finding) == 2
    assert result.changes_at == 115.0  # the oldest passes the bound first
    one_left = assess([], connections, degree=0, connect_timeout=BOUND, now=116.0)
    assert [f.what for f in one_left.finding] == ["connecting to peer a"]


def test_no_tracker_and_nothing_in_progress_says_so() -> None:
    result = assess([], [], degree=0, connect_timeout=BOUND, now=0.0)
    assert not result.connecting and result.reason == "no tracker to find peers through"
    several = assess(
        [
            Tracker(TrackerState.FAILED, problem="tracker a unreachable: x"),
            Tracker(TrackerState.ANSWERED, others=0, announce_url="ws://b"),
        ],
        [],
        degree=0,
        connect_timeout=BOUND,
        now=101.0,
    )
    assert several.reason == (
        "tracker a unreachable: x; tracker ws://b knows no other peer in the swarm"
    )
