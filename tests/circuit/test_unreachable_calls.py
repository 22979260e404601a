"""What a call and the log say about a peer that cannot be reached directly, over real WebRTC
on loopback (``tests/circuit/paths.py`` makes the direct path impossible): with a plain
neighbour, the only server is unreachable and calls are told so at once, though the swarm keeps
trying it; with a relaying neighbour, the advice names the relay."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.cli import build_parser
from p2prpc.node import Node
from p2prpc.rpc import NO_RETRY, Channel, RpcError, StatusCode
from p2prpc.swarm.attempt import Unreachable
from p2prpc.swarm.connection import Connection
from p2prpc.testing import until
from p2prpc.tools import Swarm, ToolError, call_json, check_health, list_peers

from .paths import Watched, place, split_pair
from .test_circuit import SAY, serve

pytestmark = pytest.mark.asyncio


def unreachable(node: Node, peer: Node) -> bool:
    return any(u.peer_id == peer.peer_id for u in node.p2pt.unreachable())


def retrying(node: Node, peer: Node, within: float = 1.5) -> list[Connection]:
    """``node``'s attempts in progress to ``peer`` (answered, not open yet), begun at most
    ``within`` seconds ago (so that each has most of its ``ice_timeout`` still to run)."""
    now = time.monotonic()
    return [
        c
        for c in node.p2pt._connecting
        if c.peer_id == peer.peer_id and c.adopted_at is not None and now - c.adopted_at < within
    ]


async def test_a_call_whose_only_server_is_unreachable_fails_at_once_while_the_swarm_retries() -> (
    None
):
    # Each of a's attempts takes ice_timeout (6 s) to fail; a connect_timeout far above what
    # the calls may take: only knowing the server unreachable ends them in time.
    options = {"connect_timeout": 120, "ice_timeout": 6.0}
    async with split_pair(relay_options={"relay": False}, a_options=options) as (r, a, b, _):
        serve(b)
        await until(lambda: unreachable(a, b), (a.p2pt, "peerunreachable"), timeout=30)
        channel = Channel(a, retry_policy=NO_RETRY)
        say = channel.unary_unary(SAY, StringValue.SerializeToString, StringValue.FromString)
        for _ in range(2):  # the swarm tries b again (tracker, signalled through r): each time
            await until(lambda: bool(retrying(a, b)), (a.p2pt, "connectivity"), timeout=60)
            attempts = retrying(a, b)
            with pytest.raises(RpcError) as caught:
                async with asyncio.timeout(30):
                    await say(StringValue(value="hi"))  # no timeout, no wait_for_ready
            assert caught.value.code() is StatusCode.UNAVAILABLE
            assert (
                "no connected peer serves circuit.Echo: 1 peer found, not reachable: "
                "ICE found no working candidate pair"
            ) in caught.value.details()
            # Told while the attempt again was still in progress, not once it failed.
            assert any(c in a.p2pt._connecting for c in attempts)
            await until(
                lambda attempts=attempts: not any(c in a.p2pt._connecting for c in attempts),
                (a.p2pt, "connectivity"),
                timeout=60,
            )
        assert r.peer_id in a.peers and b.peer_id not in a.peers


def lister_swarm(r: Node, transport: Watched, **options: Any) -> Swarm:
    """What ``p2prpc peers`` or ``call`` joins with: this swarm's tracker, on ``transport``."""
    return Swarm(
        list(r.p2pt.announce_urls),
        "p2prpc-circuit-test",
        {
            "ice_servers": [],
            "host_addresses": [transport.host_address],
            "transport": transport,
            **options,
        },
    )


async def test_peers_by_default_waits_for_its_attempts_and_shows_why_one_failed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # ICE has its default 10 s to fail, past the command's default --wait (5 s).
    wait = build_parser().parse_args(["peers", "-t", "ws://x"]).wait
    async with split_pair(relay_options={"relay": False}) as (r, _, b, split):
        split.wall.block(place(2), place(3))
        lister = Watched(place(3))
        assert await list_peers(lister_swarm(r, lister), wait) == 0
    lines = {line["peer"]: line for line in map(json.loads, capsys.readouterr().out.splitlines())}
    assert lines[r.peer_id]["via"] == [r.p2pt.announce_urls[0]]
    assert lines[b.peer_id]["unreachable"] is True
    assert lines[b.peer_id]["failure"] == "ICE found no working candidate pair"


async def test_a_command_that_found_no_server_says_why_its_attempts_failed() -> None:
    async with split_pair(relay_options={"relay": False}) as (r, _, b, split):
        serve(b)
        split.wall.block(place(2), place(3))
        lister = Watched(place(3))
        with pytest.raises(ToolError) as caught:
            await call_json(lister_swarm(r, lister, ice_timeout=2.0), SAY, [{}], timeout=8)
        assert caught.value.code is StatusCode.UNAVAILABLE
        message = str(caught.value)
        assert message.startswith("no peer serving circuit.Echo within 8 s: "), message
        assert (
            "1 peer found, not reachable: ICE found no working candidate pair (host candidates "
            "only: different networks cannot meet): add a TURN server"
        ) in message


async def test_a_command_waiting_for_its_attempts_keeps_to_its_timeout() -> None:
    # `p2prpc health` with no peer named settles the swarm first; ICE has 10 s to fail, plus 5 s
    # for the attempt's report, and the command 3 s in all.
    async with split_pair(relay_options={"relay": False}) as (r, _, b, split):
        serve(b)
        split.wall.block(place(2), place(3))
        lister = Watched(place(3))
        started = time.monotonic()
        status = await check_health(
            lister_swarm(r, lister, ice_timeout=10.0), "", peer=None, timeout=3
        )
        took = time.monotonic() - started
    assert status != 0  # not every peer answered SERVING within the time
    assert took < 3 + 2, took  # its own timeout and the node's closing, not ICE's 15 s


async def test_the_unreachable_warning_names_the_relay_a_circuit_goes_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "p2prpc")
    reports: list[Unreachable] = []
    # ICE has 6 s to fail: time enough for the exchange to tell a that r reaches b.
    async with split_pair(a_options={"ice_timeout": 6.0}) as (r, a, b, _):
        a.p2pt.on("peerunreachable", lambda peer_id, reason: reports.append(reason))
        await until(lambda: b.peer_id in a.peers, (a, "peer"), timeout=40)
        assert a.peers[b.peer_id].via == (f"relay:{r.peer_id}",)
    first = next(u for u in reports if u.peer_id == b.peer_id)
    assert first.advice == f"reaching it through relay {r.peer_id[:8]}"
    warned = [m for m in caplog.messages if m.startswith(f"peer {b.peer_id[:8]} not reachable")]
    assert warned and warned[0].endswith(
        "ICE found no working candidate pair (host candidates only: different networks cannot "
        f"meet): reaching it through relay {r.peer_id[:8]}"
    )
