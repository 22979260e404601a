"""Peers in two homes behind NATs: who connects, what a pair costs the TURN server's operator,
a stream that rides out a home's uplink cut, and a failed attempt says why, in the log, in an
event, in the swarm's connectivity and in a call's status.

One peer runs in this process, its event loop's thread in home A; the other is a subprocess in
home B (``tests/lab/natpeer.py``). The lab (:mod:`tests.lab.nat`) is made once for the module.

libwebrtc makes its network threads once per process, in the network namespace of the thread
that first uses it, and keeps them there: a test run that used it before (in its own namespace)
cannot move its sockets into home A. So the libwebrtc pass of these tests runs in a pytest
process of its own, in which home A is where libwebrtc is first used
(:func:`test_the_homes_on_libwebrtc_in_a_process_of_its_own`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc import Node
from p2prpc.rpc import RpcError, StatusCode, UnaryStreamMethod
from p2prpc.swarm.attempt import Failure, Unreachable
from p2prpc.testing import until

from .nat import NatLab, libwebrtc_pass, unavailable_reason
from .natpeer import FOLLOW, SERVICE

ROOT = Path(__file__).resolve().parents[2]

#: Set in the process of its own that runs this module's tests on libwebrtc.
OWN_PROCESS = "P2PRPC_NAT_LAB_OWN_PROCESS"

pytestmark = [
    pytest.mark.skipif(
        unavailable_reason() is not None, reason=f"no NAT lab here: {unavailable_reason()}"
    ),
    pytest.mark.asyncio,
]
#: Each scenario on libwebrtc only where libwebrtc is first used in home A (see the docstring).
in_home_a = (
    pytest.mark.skipif(False, reason="")
    if os.environ.get(OWN_PROCESS)
    else pytest.mark.transport_only(
        "aiortc",
        reason="libwebrtc's threads stay in the namespace they were made in: on libwebrtc these"
        " run in a process of their own",
    )
)


@pytest.mark.transport_only("libwebrtc", reason="it runs the libwebrtc pass of the others")
@pytest.mark.skipif(bool(os.environ.get(OWN_PROCESS)), reason="already in a process of its own")
async def test_the_homes_on_libwebrtc_in_a_process_of_its_own() -> None:
    out = await libwebrtc_pass("tests/lab/test_nat.py", OWN_PROCESS)
    assert f"{SCENARIOS} passed" in out, out[-2000:]


#: The scenarios below, each run on libwebrtc by the test above.
SCENARIOS = 6

HEALTH = "grpc.health.v1.Health"


@pytest.fixture(scope="module")
def lab() -> Iterator[NatLab]:
    with NatLab() as made:
        yield made


def _far_peer(
    tracker: str, lab: NatLab, identifier: str, ice: list[str]
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tests.lab.natpeer", tracker, identifier, *ice]
    return subprocess.Popen(
        lab.command("b", *argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


@asynccontextmanager
async def homes(
    lab: NatLab,
    mapping: str,
    ice: list[str],
    far_ice: list[str] | None = None,
    tracker: str | None = None,
) -> AsyncIterator[tuple[Node, str, list[tuple[str, Unreachable]]]]:
    """A node in home A (this process) and one in home B (serving ``lab.Feed``,
    :mod:`tests.lab.natpeer`), both behind ``mapping`` NATs, with these ICE servers
    (``far_ice``: home B's, when they differ), meeting through ``tracker`` (the lab's by
    default): (node, far peer id, the ``peerunreachable`` events the node emitted)."""
    lab.nat(mapping)  # type: ignore[arg-type]
    tracker = tracker or lab.tracker_url
    far = _far_peer(tracker, lab, mapping, ice if far_ice is None else far_ice)
    try:
        assert far.stdout is not None
        far_id = far.stdout.readline().decode().strip()
        assert len(far_id) == 40, "the far peer did not start"
        with lab.inside("a"):
            node = Node([tracker], mapping, ice_servers=ice, mesh=False)
            events: list[tuple[str, Unreachable]] = []
            node.p2pt.on("peerunreachable", lambda peer_id, why: events.append((peer_id, why)))
            await node.start()
            try:
                yield node, far_id, events
            finally:
                await node.stop()
    finally:
        assert far.stdin is not None
        far.stdin.close()
        assert far.stdout is not None
        far.stdout.close()
        try:
            far.wait(timeout=10)
        except subprocess.TimeoutExpired:
            far.kill()
            far.wait()


@in_home_a
@pytest.mark.parametrize(("mapping", "server"), [("cone", "stun"), ("symmetric", "turn")])
async def test_nats_connect(lab: NatLab, mapping: str, server: str) -> None:
    """Cone NATs with STUN, symmetric ones with TURN."""
    ice = [lab.stun_url() if server == "stun" else lab.turn_url()]
    async with homes(lab, mapping, ice) as (node, far_id, events):
        await until(
            lambda: far_id in node.peers,
            (node.p2pt, "peerconnect"),
            (node.p2pt, "peerunreachable"),
            timeout=20,
        )
        assert events == []


@in_home_a
async def test_symmetric_nats_with_stun_only_are_reported_within_15_s(
    lab: NatLab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="p2prpc")
    async with homes(lab, "symmetric", [lab.stun_url()]) as (node, far_id, events):
        start = time.monotonic()
        await until(
            lambda: bool(events),
            (node.p2pt, "peerconnect"),
            (node.p2pt, "peerunreachable"),
            timeout=20,
        )
        assert time.monotonic() - start < 15
        peer_id, why = events[0]
        assert peer_id == far_id
        assert why.failure is Failure.ICE_FAILED
        text = str(why)
        assert "ICE found no working candidate pair" in text
        assert "add a TURN server" in text
        assert far_id not in node.peers
        # One log line for the peer, naming it and the advice.
        lines = [r.getMessage() for r in caplog.records if far_id[:8] in r.getMessage()]
        assert len(lines) == 1 and "add a TURN server" in lines[0]
        # The swarm's connectivity lists it, and a call says it.
        swarm = node.connectivity()
        assert [u.peer_id for u in swarm.unreachable] == [far_id]
        assert "1 peer found, not reachable" in swarm.reason
        with pytest.raises(RpcError) as fast:
            await node.unary_unary(f"/{HEALTH}/Check")(b"", timeout=5)
        assert fast.value.code() is StatusCode.UNAVAILABLE
        assert "add a TURN server" in fast.value.details()
        with pytest.raises(RpcError) as waited:
            await node.unary_unary(f"/{HEALTH}/Check")(b"", timeout=1, wait_for_ready=True)
        assert waited.value.code() is StatusCode.DEADLINE_EXCEEDED
        details = waited.value.details()
        assert details.startswith(f"Deadline Exceeded: no connected peer serves {HEALTH}")
        assert "ICE found no working candidate pair" in details
        assert "add a TURN server" in details


@in_home_a
async def test_a_wrong_turn_password_is_reported_as_such(lab: NatLab) -> None:
    wrong = [lab.turn_url(password="not-the-password")]
    async with homes(lab, "symmetric", wrong, [lab.turn_url()]) as (node, far_id, events):
        await until(
            lambda: bool(events),
            (node.p2pt, "peerconnect"),
            (node.p2pt, "peerunreachable"),
            timeout=20,
        )
        peer_id, why = events[0]
        assert peer_id == far_id
        assert [e.code for e in why.ice_errors] == [401]
        assert "refused our credentials" in str(why)
        assert "check its credentials" in str(why)
        assert "refused our credentials" in node.connectivity().reason


#: Seconds between announces the paced tracker tells: the re-announces of a minute at P2PT's
#: pace (the first after 30 s, then at the tracker's interval, 120 s) pass in a few seconds.
INTERVAL = 2
REANNOUNCES = 4


@in_home_a
async def test_a_pair_connected_through_turn_costs_at_most_three_allocations(lab: NatLab) -> None:
    """Each offer and each answer gathers a relayed candidate: one allocation on coturn
    (counted as coturn's Allocate success responses leave). An announce makes offers only for
    the peers the tracker counts that are not connected or connecting yet, so the pair costs
    the offer that connected it and its answer, and re-announcing costs nothing more."""
    before = lab.turn_allocations()
    paced = lab.paced_tracker(INTERVAL)
    async with homes(lab, "symmetric", [lab.turn_url()], tracker=paced) as (node, far_id, events):
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
        allocations = lab.turn_allocations() - before
        # One for the offer that connected the pair, one for its answer, none since.
        assert 2 <= allocations <= 3, f"{allocations} TURN allocations for one pair"


@in_home_a
async def test_a_stream_rides_out_a_ten_second_cut_of_a_homes_uplink(lab: NatLab) -> None:
    """Cone NATs, STUN: home A's router forwards nothing for 10 s while home B streams to it
    (1,200 replies, 10 ms apart). The node suspects the far peer, waits within the keepalive's
    grace (5 + 15 s), and every reply arrives, in order, once the link is back."""
    async with homes(lab, "cone", [lab.stun_url()]) as (node, far_id, events):
        await node.wait_for_server(SERVICE, 20)
        seen: list[str] = []
        node.on("connectionsuspect", lambda pid, _: pid == far_id and seen.append("suspect"))
        node.on("connectionalive", lambda pid, _: pid == far_id and seen.append("alive"))
        node.on("peerclose", lambda pid: pid == far_id and seen.append("closed"))
        follow = UnaryStreamMethod(node, FOLLOW, StringValue, StringValue)
        call = follow(StringValue(value="1200"), timeout=60)
        got = [(await call.read()).value for _ in range(100)]
        with lab.cut("a"):
            started = time.monotonic()
            await until(lambda: "suspect" in seen, (node, "connectionsuspect"), timeout=15)
            await asyncio.sleep(10 - (time.monotonic() - started))  # the outage lasts 10 s
        async for reply in call:
            got.append(reply.value)
        assert got == [str(i) for i in range(1200)]
        assert await call.code() is StatusCode.OK
        assert seen == ["suspect", "alive"]
        assert events == []
