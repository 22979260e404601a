"""What a call and the log say about a peer that cannot be reached directly, over real WebRTC
on loopback (``tests/circuit/paths.py`` makes the direct path impossible): with a plain
neighbour, the only server is unreachable and calls are told so at once, though the swarm keeps
trying it; with a relaying neighbour, the advice names the relay."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.node import Node
from p2prpc.rpc import NO_RETRY, Channel, RpcError, StatusCode
from p2prpc.swarm.connection import Connection
from p2prpc.testing import until

from .paths import split_pair
from .test_circuit import SAY, serve

pytestmark = pytest.mark.asyncio


def unreachable(node: Node, peer: Node) -> bool:
    return any(u.peer_id == peer.peer_id for u in node.p2pt.unreachable())


def retrying(node: Node, peer: Node) -> list[Connection]:
    """``node``'s attempts in progress to ``peer`` (answered, not open yet)."""
    return [
        c for c in node.p2pt._connecting if c.peer_id == peer.peer_id and c.adopted_at is not None
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
