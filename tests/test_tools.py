"""The command line's helpers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets

from p2prpc.node import Node
from p2prpc.rpc import StatusCode
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tools import Swarm, ToolError, _watch, find_peer, list_peers, read_json_values
from p2prpc.tracker.server import TrackerServer


def test_json_values_one_after_another() -> None:
    text = '{"a": 1}\n{"b": [1,\n 2]}  3 "x"\n\n'
    assert list(read_json_values(text)) == [{"a": 1}, {"b": [1, 2]}, 3, "x"]
    assert list(read_json_values("  \n")) == []
    with pytest.raises(ValueError):
        list(read_json_values('{"a": 1} {oops'))


@pytest.mark.asyncio
@pytest.mark.parametrize("prefix", ["", "xyz", "7B866DEG", "0" * 41])
async def test_a_peer_prefix_must_be_hex(prefix: str) -> None:
    node = Node([], "tools-test", reflection=False, health=False)
    with pytest.raises(ToolError) as info:
        await find_peer(node, prefix, 0.1)
    assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert repr(prefix) in str(info.value)
    await node.close()


@pytest.mark.asyncio
async def test_an_empty_count_from_one_tracker_is_not_final_while_another_has_not_answered() -> (
    None
):
    """A command fails at once when the trackers count nobody, but not while another tracker
    has yet to answer (it may count the server): then it waits, as the channel does."""

    async def silent(ws: Any) -> None:  # takes the announces, answers none
        async for _ in ws:
            pass

    async with (
        TrackerServer(LOOPBACK, 0) as tracker,
        websockets.serve(silent, LOOPBACK, 0) as quiet,
    ):
        port = quiet.sockets[0].getsockname()[1]
        node = loopback_node([tracker.url, f"ws://{LOOPBACK}:{port}"], "two-trackers")
        watch = _watch(node)  # before start: it must see the first answer
        try:
            await node.start()
            async with asyncio.timeout(10):
                while watch.others() is None:
                    watch.changed.clear()
                    await watch.changed.wait()
            assert watch.others() == 0 and watch.answered()
            assert node.connectivity().connecting  # the silent tracker, within its bound
            assert not watch.hopeless()
        finally:
            await node.close()


@pytest.mark.asyncio
async def test_peers_lists_a_peer_it_found_and_could_not_reach_with_why_and_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A peer whose connection attempts fail (here: relayed candidates only, and no TURN server)
    is listed with the stage its attempt reached, the failure and the advice, not left out."""
    async with TrackerServer(LOOPBACK, 0) as tracker:
        server = loopback_node([tracker.url], "unreachable-listed")
        await server.start()
        try:
            await tracker.wait_for(lambda stats: stats.peers >= 1)
            swarm = Swarm(
                [tracker.url],
                "unreachable-listed",
                {
                    "ice_servers": [],
                    "host_addresses": [LOOPBACK],
                    "ice_transport_policy": "relay",
                    "ice_timeout": 1.0,
                },
            )
            started = time.monotonic()
            assert await list_peers(swarm, 15.0) == 0
            # Its failed attempt answers as a hello would: nothing is left to wait the 15 s for.
            assert time.monotonic() - started < 10
        finally:
            await server.close()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["peer"] for line in lines] == [server.peer_id]
    (line,) = lines
    assert line["unreachable"] is True and line["failure"] and line["reason"]
    assert line["advice"] == "add a TURN server"
