"""Two homes behind symmetric NATs, STUN only and no TURN: the direct attempt is reported within
15 s, and a call and topic messages then go through a relay on the public network.

The node in home A runs in this process (its event loop's thread in home A); the node in home B
(``tests/lab/relaypeer.py`` ``echo``) and the relay (``relaypeer.py relay``: ``relay=True``, host
candidates only) beside the tracker on the public network are subprocesses. As in
``test_nat.py``, the libwebrtc pass runs in a pytest process of its own, where home A is where
libwebrtc is first used.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2

from p2prpc import Node
from p2prpc.pubsub import Topic
from p2prpc.swarm.attempt import Failure, Unreachable
from p2prpc.testing import until

from .nat import NatLab, libwebrtc_pass, unavailable_reason

ROOT = Path(__file__).resolve().parents[2]

#: Set in the process of its own that runs this module's tests on libwebrtc.
OWN_PROCESS = "P2PRPC_NAT_RELAY_OWN_PROCESS"

pytestmark = [
    pytest.mark.skipif(
        unavailable_reason() is not None, reason=f"no NAT lab here: {unavailable_reason()}"
    ),
    pytest.mark.asyncio,
]
in_home_a = (
    pytest.mark.skipif(False, reason="")
    if os.environ.get(OWN_PROCESS)
    else pytest.mark.transport_only(
        "aiortc",
        reason="libwebrtc's threads stay in the namespace they were made in: on libwebrtc this"
        " runs in a process of its own",
    )
)

CHECK = "/grpc.health.v1.Health/Check"


@pytest.mark.transport_only("libwebrtc", reason="it runs the libwebrtc pass of the others")
@pytest.mark.skipif(bool(os.environ.get(OWN_PROCESS)), reason="already in a process of its own")
async def test_the_relay_on_libwebrtc_in_a_process_of_its_own() -> None:
    out = await libwebrtc_pass("tests/lab/test_nat_relay.py", OWN_PROCESS)
    assert "1 passed" in out, out[-2000:]


@pytest.fixture(scope="module")
def lab() -> Iterator[NatLab]:
    with NatLab() as made:
        yield made


@contextmanager
def _peer(argv: list[str]) -> Iterator[str]:
    """Run a ``relaypeer`` subprocess (``argv``: the command, in its namespace); its peer id."""
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        peer_id = process.stdout.readline().decode().strip()
        assert len(peer_id) == 40, "the peer did not start"
        yield peer_id
    finally:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        process.stdout.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@in_home_a
async def test_symmetric_nats_without_turn_connect_through_a_relay(lab: NatLab) -> None:
    lab.nat("symmetric")
    identifier = "symmetric-relayed"
    peer = [sys.executable, "-m", "tests.lab.relaypeer"]
    public = ["ip", "netns", "exec", lab.ns("public")]
    with (
        _peer([*public, *peer, "relay", lab.tracker_url, identifier]) as relay_id,
        _peer(lab.command("b", *peer, "echo", lab.tracker_url, identifier, lab.stun_url())) as far,
        lab.inside("a"),
    ):
        node = Node([lab.tracker_url], identifier, ice_servers=[lab.stun_url()])
        events: list[tuple[str, Unreachable]] = []
        node.p2pt.on("peerunreachable", lambda peer_id, why: events.append((peer_id, why)))
        pongs = Topic(node, "pong", StringValue).subscribe()
        start = time.monotonic()
        await node.start()
        try:
            # The direct attempt fails, and says why, within 15 s.
            await until(
                lambda: any(peer_id == far for peer_id, _ in events),
                (node.p2pt, "peerunreachable"),
                timeout=20,
            )
            assert time.monotonic() - start < 15
            why = next(why for peer_id, why in events if peer_id == far)
            assert why.failure is Failure.ICE_FAILED
            # With a relay neighbour listing the peer, the advice is the relay, not a TURN server.
            assert why.relays == (relay_id,)
            assert f"reaching it through relay {relay_id[:8]}" in str(why)
            # Then the peer is reached through the relay, and only through it.
            await until(lambda: far in node.peers, (node, "peer"), timeout=25)
            assert node.peers[far].via == (f"relay:{relay_id}",)
            assert node.circuits is not None
            assert node.circuits.circuits() == {far: [relay_id]}
            # A unary call goes to it (the relay serves health too: the call names the peer).
            reply = await node.to(far).unary_unary(
                CHECK,
                health_pb2.HealthCheckRequest.SerializeToString,
                health_pb2.HealthCheckResponse.FromString,
            )(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            # A topic message goes there, and its answer comes back.
            await until(lambda: "ping" in node.peers[far].topics, (node, "peer"), timeout=10)
            sent = await Topic(node, "ping", StringValue).publish(
                StringValue(value="over the relay")
            )
            assert sent == 1  # to the far peer, on the circuit: the relay subscribes to nothing
            got = await asyncio.wait_for(anext(pongs), 10)
            assert (got.message.value, got.sender) == ("over the relay", far)
            assert node.peers[far].via == (f"relay:{relay_id}",)  # still only the circuit
        finally:
            pongs.close()
            await node.stop()
