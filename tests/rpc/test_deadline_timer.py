"""The deadlines of a node's calls share one timer (p2prpc.rpc.deadline.Deadlines): callbacks
run in order at their time, cancelled ones never, one that raises stops no other, and what a
node holds for them is bounded by its calls in progress, not by the calls it ever made."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.rpc import Cardinality, Handler, ServicerContext, UnaryUnaryMethod
from p2prpc.rpc.deadline import Deadlines
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio


async def test_callbacks_run_in_deadline_order_and_cancelled_ones_never() -> None:
    deadlines = Deadlines()
    ran: list[str] = []
    done = asyncio.Event()
    now = time.monotonic()
    deadlines.add(now + 0.06, lambda: ran.append("c"))
    deadlines.add(now + 0.02, lambda: ran.append("a"))
    gone = deadlines.add(now + 0.04, lambda: ran.append("never"))
    deadlines.add(now + 0.04, lambda: ran.append("b"))
    deadlines.add(now + 0.08, done.set)
    deadlines.cancel(gone)
    deadlines.cancel(gone)  # a second cancel changes nothing
    await asyncio.wait_for(done.wait(), 5)
    assert ran == ["a", "b", "c"]
    assert time.monotonic() >= now + 0.08
    assert len(deadlines) == 0


async def test_a_callback_that_raises_stops_no_other(caplog: pytest.LogCaptureFixture) -> None:
    deadlines = Deadlines()
    done = asyncio.Event()

    def boom() -> None:
        raise ZeroDivisionError("boom")

    at = time.monotonic() + 0.01
    deadlines.add(at, boom)
    deadlines.add(at, done.set)
    await asyncio.wait_for(done.wait(), 5)
    assert "a deadline's callback raised" in caplog.text


async def test_cancelled_deadlines_do_not_pile_up() -> None:
    deadlines = Deadlines()
    far = time.monotonic() + 3600
    kept = deadlines.add(far, lambda: None)
    for _ in range(10_000):
        deadlines.cancel(deadlines.add(far, lambda: None))
    assert len(deadlines) <= 2 * 33 + 1
    deadlines.cancel(kept)


async def _echo(request: StringValue, context: ServicerContext) -> StringValue:
    return request


async def test_calls_with_deadlines_leave_nothing_behind_on_either_side() -> None:
    handlers: dict[str, Handler[Any, Any]] = {
        "/t.T/Echo": Handler(_echo, Cardinality.UNARY_UNARY, StringValue, StringValue)
    }
    async with mesh(2) as m:
        server, client = m.nodes
        server.add_service("t.T", handlers)
        await client.wait_for_server("t.T", timeout=10)
        echo = UnaryUnaryMethod(client, "/t.T/Echo", StringValue, StringValue)

        async def caller() -> None:
            for i in range(40):
                assert (await echo(StringValue(value=str(i)), timeout=600)).value == str(i)

        await asyncio.gather(*(caller() for _ in range(8)))
        for node in (client, server):
            # Every call's deadline was cancelled as it ended: what is held is bounded by the
            # compaction (twice its threshold), not by the 320 calls made.
            assert len(endpoint_of(node).deadlines) <= 2 * 33 + 8
