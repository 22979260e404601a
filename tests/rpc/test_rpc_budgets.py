"""Memory a peer can make a node hold, in both directions, and refusals that the other side hears.

Budgets: calls served at once per peer (``max_calls_per_peer``), unread request messages per call
(bytes and count), and the send queue toward a peer (``max_send_queue``), whose frames for calls
that have ended are withdrawn.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from rpc_processes import example_server

from p2prpc.errors import RpcError
from p2prpc.rpc import (
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    StatusCode,
    StreamStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.testing import loopback_node, mesh
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
S = StringValue
ONCE = RetryPolicy(max_attempts=1)


class Servicer:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.two_running = asyncio.Event()
        self.running = 0

    async def Slow(self, request: S, context: ServicerContext) -> S:
        self.running += 1
        if self.running == 2:
            self.two_running.set()
        await self.release.wait()
        return S(value="done")

    async def Deaf(self, requests: AsyncIterator[S], context: ServicerContext) -> AsyncIterator[S]:
        """Never reads its requests."""
        await self.release.wait()
        yield S(value="late")

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        return {
            "/b.S/Slow": Handler(self.Slow, Cardinality.UNARY_UNARY, S, S),
            "/b.S/Deaf": Handler(self.Deaf, Cardinality.STREAM_STREAM, S, S),
        }


async def test_calls_past_the_per_peer_cap_are_refused_at_once() -> None:
    async with mesh(2, max_calls_per_peer=2) as m:
        server, client = m.nodes
        servicer = Servicer()
        server.add_service("b.S", servicer.handlers())
        await client.wait_for_server("b.S", timeout=10)
        slow = UnaryUnaryMethod(Channel(client, retry_policy=ONCE), "/b.S/Slow", S, S)
        first, second = slow(S(), timeout=30), slow(S(), timeout=30)
        await asyncio.wait_for(servicer.two_running.wait(), 10)
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(slow(S(), timeout=30), 10)
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        servicer.release.set()
        assert [await first, await second] == [S(value="done")] * 2
        assert await slow(S(), timeout=10) == S(value="done")  # room again


async def test_unread_requests_past_the_budget_end_the_call_and_the_client_hears() -> None:
    async with mesh(2, max_message_size=64 * 1024) as m:  # budget: 4 × 64 KiB of unread requests
        server, client = m.nodes
        server.add_service("b.S", Servicer().handlers())
        await client.wait_for_server("b.S", timeout=10)
        call = StreamStreamMethod(client, "/b.S/Deaf", S, S)(timeout=60)
        for _ in range(100):  # 800 KiB in all; the refusal may come back while writing
            try:
                await call.write(S(value="x" * 8192))
            except asyncio.InvalidStateError:
                break
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(call.read(), 10)
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED


async def test_the_send_queue_toward_a_peer_that_stopped_reading_is_bounded_and_withdrawn() -> None:
    """A server frozen with SIGSTOP; 1 MB calls with a 2 s timeout: every call ends with a status,
    the queue toward the server never passes its cap, and what failed calls queued is withdrawn."""
    import helloworld_p2prpc
    import helloworld_pb2

    cap = 4 * 2**20
    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        example_server(tracker.url, "budget-test") as server,
        loopback_node(
            [tracker.url], "budget-test", keepalive_interval=None, max_send_queue=cap
        ) as client,
    ):
        server_id = await client.wait_for_server("helloworld.Greeter", timeout=30)
        greeter = helloworld_p2prpc.GreeterStub(Channel(client, retry_policy=ONCE))
        big = helloworld_pb2.HelloRequest(name="x" * 2**20)
        assert (await greeter.SayHello(helloworld_pb2.HelloRequest(name="a"))).message
        server.send_signal(signal.SIGSTOP)
        channel = client.p2pt._channel_for(server_id)
        most = 0
        codes = []
        for _ in range(4):
            calls = [greeter.SayHello(big, timeout=2) for _ in range(5)]
            for call in calls:
                with pytest.raises(RpcError) as caught:
                    await call
                codes.append(caught.value.code())
                most = max(most, channel.queued_bytes)
        assert set(codes) <= {StatusCode.DEADLINE_EXCEEDED, StatusCode.RESOURCE_EXHAUSTED}
        assert StatusCode.DEADLINE_EXCEEDED in codes
        assert most <= cap
        # Nothing of the failed calls is still queued: at most their small cancels are.
        assert channel.queued_bytes < 4096
