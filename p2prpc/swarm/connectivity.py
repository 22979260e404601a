"""Whether a swarm is still finding and connecting to peers, and if not, why not.

A gRPC channel is CONNECTING while it resolves its target and opens a connection (each attempt
bounded by a connect timeout), and in TRANSIENT_FAILURE when it has no connection and none in
progress. A swarm has no address to connect to: it finds peers through trackers and connects to
those that offer or answer. So a swarm is *finding* while something in progress may bring it a
peer, each thing for at most ``connect_timeout`` seconds from when it began:

- a tracker that has not answered an announce yet (since it was started or reconnected) and has
  not failed;
- a tracker whose first answer since it (re)connected counts more other peers in the swarm than
  this one is connected to, until this one has been connected to that many once (a count that
  goes stale later, as when a peer dies, does not make the swarm look for it again);
- a connection to a peer not connected yet, from when its offer was answered (the swarm leaves
  out another attempt to a peer whose last one failed: as a gRPC channel stays in
  TRANSIENT_FAILURE while it reconnects, that peer stays unreachable until one succeeds);
- (the node adds) a connected peer that has not said hello yet.

A tracker's count stops being something in progress once every peer it counts that is not
connected was found unreachable (a connection attempt to it failed:
:class:`~p2prpc.swarm.attempt.Unreachable`) and no other connection is in progress.

When nothing is, :attr:`SwarmConnectivity.failures` says why no peer is coming: a tracker
unreachable (with the error), refusing the announce, silent past the bound, or knowing no other
peer; peers found and not reachable (how far the attempt got, why, what to do); or no tracker
at all. Pure: the swarm hands in what it knows, nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .attempt import Unreachable, summarize


class TrackerState(enum.Enum):
    """Where one tracker connection stands, for finding peers."""

    #: Connecting, or connected and no announce answered yet.
    CONNECTING = "connecting"
    #: It answered an announce (with how many peers the swarm has).
    ANSWERED = "answered"
    #: It could not be reached, its connection dropped, or it refused the announce.
    FAILED = "failed"


class TrackerView(Protocol):
    """What the assessment reads of a tracker client."""

    @property
    def announce_url(self) -> str: ...
    @property
    def state(self) -> TrackerState: ...
    @property
    def since(self) -> float:
        """When it entered its state (``time.monotonic()``); for ANSWERED, its first answer
        since it (re)connected."""
        ...

    @property
    def problem(self) -> str | None:
        """Why it FAILED, as a sentence naming the tracker."""
        ...

    @property
    def others(self) -> int:
        """Other peers its first answer since it (re)connected counted in the swarm."""
        ...

    @property
    def met(self) -> bool:
        """Whether this swarm has been connected to ``others`` peers at once since then (or
        to as many as it connects to at most)."""
        ...


@dataclass(frozen=True)
class Finding:
    """One thing in progress that may bring a peer, begun at ``since`` (``time.monotonic()``)."""

    since: float
    what: str


@dataclass(frozen=True)
class SwarmConnectivity:
    """What a swarm is doing to find peers now.

    ``finding``: what is in progress, each begun less than the bound ago (empty: nothing is).
    ``failures``: why no more peers are coming, when nothing is in progress (sentences naming
    the tracker or the cause; may be empty when the swarm simply has no other peer to find).
    ``changes_at``: when the oldest finding passes the bound (``time.monotonic()``; ``None``:
    nothing in progress), so that a watcher knows when to look again without an event.
    ``unreachable``: peers found and not connected whose last connection attempt failed.
    """

    finding: tuple[Finding, ...]
    failures: tuple[str, ...]
    changes_at: float | None
    unreachable: tuple[Unreachable, ...] = ()

    @property
    def connecting(self) -> bool:
        """Whether the swarm is still finding or connecting to peers (gRPC's CONNECTING)."""
        return bool(self.finding)

    @property
    def reason(self) -> str:
        """The failures as one sentence ("" when there are none)."""
        return "; ".join(self.failures)


def assess(
    trackers: Iterable[TrackerView],
    connections: Iterable[Finding],
    *,
    degree: int,
    connect_timeout: float,
    now: float,
    unreachable: Sequence[Unreachable] = (),
) -> SwarmConnectivity:
    """What a swarm with these ``trackers``, these ``connections`` in progress (and others the
    caller adds, such as hellos awaited) and ``degree`` connected peers is doing to find peers
    at ``now``, each thing counted for ``connect_timeout`` seconds from when it began;
    ``unreachable``: peers whose last connection attempt failed."""
    finding: list[Finding] = []
    found = tuple(unreachable)
    attempts = [c for c in connections if now - c.since < connect_timeout]
    failures: list[str] = []
    listed = list(trackers)
    for tracker in listed:
        url = tracker.announce_url
        fresh = now - tracker.since < connect_timeout
        if tracker.state is TrackerState.FAILED:
            failures.append(tracker.problem or f"tracker {url} failed")
        elif tracker.state is TrackerState.CONNECTING:
            if fresh:
                finding.append(Finding(tracker.since, f"tracker {url} has not answered yet"))
            else:
                failures.append(f"tracker {url} did not answer within {connect_timeout:g} s")
        elif tracker.others == 0:
            if degree == 0:  # with peers connected since, its count is out of date
                failures.append(f"tracker {url} knows no other peer in the swarm")
        elif not tracker.met:
            # Every peer it counts that is not connected failed, and nothing else is trying.
            given_up = bool(found) and not attempts and len(found) >= tracker.others - degree
            if fresh and not given_up:
                finding.append(
                    Finding(
                        tracker.since,
                        f"tracker {url} counts {tracker.others} other peers in the swarm, "
                        f"{degree} connected",
                    )
                )
            elif degree == 0 and not found:
                failures.append(
                    f"none of the {tracker.others} other peers tracker {url} counts in the "
                    f"swarm connected within {connect_timeout:g} s"
                )
    finding.extend(attempts)
    if found:
        failures.append(summarize(found))
    if not listed and not finding:
        failures.append("no tracker to find peers through")
    if finding:
        return SwarmConnectivity(
            tuple(finding), (), min(f.since for f in finding) + connect_timeout, found
        )
    return SwarmConnectivity((), tuple(failures), None, found)
