"""Calls and topics through a relay between two nodes that cannot connect directly, over real
WebRTC on loopback (``tests/circuit/paths.py`` makes the direct path impossible)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.circuit import Circuits
from p2prpc.identity import Identity
from p2prpc.node import Node
from p2prpc.pubsub import Topic
from p2prpc.rpc import Cardinality, Handler, RpcError, ServicerContext, StatusCode
from p2prpc.testing import until
from p2prpc.wire.envelope import Kind

from .paths import split_pair

pytestmark = pytest.mark.asyncio

SERVICE = "circuit.Echo"
SAY = f"/{SERVICE}/Say"
COUNT = f"/{SERVICE}/Count"
SUM = f"/{SERVICE}/Sum"
SECRET = "plaintext-the-relay-must-not-see-7d1f"


async def _say(request: StringValue, context: ServicerContext) -> StringValue:
    return StringValue(value=f"{request.value} / {SECRET}")


async def _count(request: StringValue, context: ServicerContext) -> AsyncIterator[StringValue]:
    for i in range(int(request.value)):
        yield StringValue(value=f"{i}:{'x' * 3000}")


async def _sum(
    requests: AsyncIterator[StringValue], context: ServicerContext
) -> StringValue:
    total = 0
    async for request in requests:
        total += len(request.value)
    return StringValue(value=str(total))


def serve(node: Node) -> None:
    node.add_service(
        SERVICE,
        {
            SAY: Handler(_say, Cardinality.UNARY_UNARY, StringValue, StringValue),
            COUNT: Handler(_count, Cardinality.UNARY_STREAM, StringValue, StringValue),
            SUM: Handler(_sum, Cardinality.STREAM_UNARY, StringValue, StringValue),
        },
    )


def circuits(node: Node) -> Circuits:
    found = node.circuits
    assert found is not None
    return found


async def reached(a: Node, b: Node, timeout: float = 25) -> None:
    """Wait until ``a`` and ``b`` see each other (through a circuit, since nothing else works)."""
    await until(
        lambda: b.peer_id in a.peers and a.peer_id in b.peers,
        (a, "peer"),
        (b, "peer"),
        timeout=timeout,
    )


async def test_unreachable_peers_call_each_other_through_a_relay() -> None:
    async with split_pair() as (r, a, b, walls):
        serve(b)
        await reached(a, b)
        # The direct attempt failed, and the connection they have rides the relay.
        assert a.peers[b.peer_id].via == (f"relay:{r.peer_id}",)
        assert b.peers[a.peer_id].via == (f"relay:{r.peer_id}",)
        assert circuits(a).circuits() == {b.peer_id: [r.peer_id]}
        reply = await a.to(b.peer_id).unary_unary(SAY, StringValue.SerializeToString, StringValue.FromString)(
            StringValue(value="hi"), timeout=10
        )
        assert reply.value == f"hi / {SECRET}"
        assert circuits(r).stats.relayed >= 1
        assert circuits(r).stats.forwarded_bytes > 0
        # Nothing the relay sent carries the plaintext: it read none.
        assert walls["r"].sent
        assert not any(
            SECRET.encode() in (m if isinstance(m, bytes) else m.encode()) for m in walls["r"].sent
        )
