"""Per-call and per-peer state is freed when the call ends or the peer leaves: a streaming method's
generator is closed when its call is cancelled, and a node after many peers came and went keeps
no entry for any of them in its RPC layer or its topic router (but the delivery state of their
topic streams, for ``forget_after`` seconds, in case they come back)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2

from p2prpc.errors import RpcError
from p2prpc.node import Node
from p2prpc.pubsub import Topic, router_of
from p2prpc.pubsub import router as router_module
from p2prpc.rpc import (
    Cardinality,
    Handler,
    ServicerContext,
    StatusCode,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.rpc import endpoint as endpoint_module
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.services import SERVING, health_of
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

S = StringValue
SERVICE = "state.Flood"


async def test_a_cancelled_stream_closes_the_method_generator() -> None:
    """The client cancels while the server waits to send (its generator paused at a yield): the
    generator's ``finally`` runs in the call's own task, before it ends."""
    closed_in: list[asyncio.Task[object] | None] = []

    async def flood(request: S, context: ServicerContext) -> AsyncIterator[S]:
        try:
            while True:
                yield S(value="x" * 60_000)
        finally:
            closed_in.append(asyncio.current_task())

    async with mesh(2) as m:
        server, client = m.nodes
        server.add_service(
            SERVICE, {f"/{SERVICE}/Flood": Handler(flood, Cardinality.UNARY_STREAM, S, S)}
        )
        await client.wait_for_server(SERVICE, 10)
        call = UnaryStreamMethod(client.to(server.peer_id), f"/{SERVICE}/Flood", S, S)(
            S(), timeout=30
        )
        assert len((await call.read()).value) == 60_000
        [served] = endpoint_of(server)._server.values()
        assert served.task is not None
        call.cancel()
        async with asyncio.timeout(10):
            await asyncio.wait([served.task])
        # Closed by the call itself before it ended, not by a task of the garbage collector's
        # finalizer that nothing waits for (node.stop waits for the call's task).
        assert closed_in == [served.task]


def _held_for(hub: Node, peer_id: str) -> dict[str, int]:
    """The entries ``hub`` keeps for ``peer_id`` in each per-call or per-peer table."""
    endpoint = endpoint_of(hub)
    router = router_of(hub)
    health = health_of(hub)
    found = {
        "client calls": sum(key[0] == peer_id for key in endpoint._client),
        "server calls": sum(key[0] == peer_id for key in endpoint._server),
        "in flight": int(peer_id in endpoint._in_flight),
        "served from": int(peer_id in endpoint._served_from),
        "timed out": int(peer_id in endpoint._timed_out),
        "want budget": int(peer_id in router._want_budget),
        "repair budget": int(peer_id in router._repair_budget),
        "have budget": int(peer_id in router._have_budget),
        "owed": int(peer_id in router._owed),
        "stalled": int(peer_id in router._stalled),
        "greeted": int(peer_id in router._greeted),
        "streams": sum(s[0].partition("/")[0] == peer_id for s in router._order),
        "watches": int(peer_id in health._watches_from),
        "peers": int(peer_id in hub.peers),
    }
    return {table: count for table, count in found.items() if count}


async def test_a_node_keeps_nothing_for_peers_that_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """Peers come one after another, call the hub and are called by it (one call running out of
    time), leave calls and a health watch open, publish to it; each leaves. While there the hub
    holds entries for it; once it left, none in any table but its topic stream's delivery state,
    which goes ``forget_after`` seconds later."""
    release = asyncio.Event()

    async def echo(request: S, context: ServicerContext) -> S:
        return request

    async def hold(request: S, context: ServicerContext) -> S:
        await release.wait()
        return request

    handlers = {
        f"/{SERVICE}/Echo": Handler(echo, Cardinality.UNARY_UNARY, S, S),
        f"/{SERVICE}/Hold": Handler(hold, Cardinality.UNARY_UNARY, S, S),
    }
    async with mesh(1) as m:
        [hub] = m.nodes
        hub.add_service(SERVICE, handlers)
        news = Topic(hub, "news", S).subscribe()
        for round_ in range(4):
            visitor = await m.add()
            visitor.add_service(SERVICE, handlers)
            await visitor.wait_for_server(SERVICE, 20)
            await hub.wait_until(lambda v=visitor.peer_id: v in hub.servers_of(SERVICE), 20)
            to_hub = visitor.to(hub.peer_id)
            assert (await UnaryUnaryMethod(to_hub, f"/{SERVICE}/Echo", S, S)(S(value="hi"))).value
            held = UnaryUnaryMethod(to_hub, f"/{SERVICE}/Hold", S, S)(S(), timeout=60)
            watch = UnaryStreamMethod(
                to_hub,
                "/grpc.health.v1.Health/Watch",
                health_pb2.HealthCheckRequest,
                health_pb2.HealthCheckResponse,
            )(health_pb2.HealthCheckRequest(service=SERVICE), timeout=60)
            assert (await watch.read()).status == SERVING
            to_visitor = UnaryUnaryMethod(hub.to(visitor.peer_id), f"/{SERVICE}/Hold", S, S)
            with pytest.raises(RpcError) as info:
                await to_visitor(S(), timeout=0.3)
            assert info.value.code() is StatusCode.DEADLINE_EXCEEDED
            await Topic(visitor, "news", S).publish(S(value=f"round {round_}"))
            async with asyncio.timeout(20):
                assert (await anext(news)).message.value == f"round {round_}"

            assert _held_for(hub, visitor.peer_id).keys() >= {
                "server calls",
                "served from",
                "timed out",
                "streams",
                "watches",
                "peers",
                "greeted",
            }
            served = [call.task for call in endpoint_of(hub)._server.values() if call.task]
            left: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            hub.on(
                "peerclose",
                lambda pid, v=visitor.peer_id, f=left: pid != v or f.done() or f.set_result(None),
            )
            await visitor.close()
            async with asyncio.timeout(20):
                await left
                await asyncio.wait(served)
            assert held.done() and watch.done()
            assert _held_for(hub, visitor.peer_id) == {"streams": 1}  # kept for its return
            router = router_of(hub)
            later = time.monotonic() + router.forget_after
            monkeypatch.setattr(router_module.time, "monotonic", lambda later=later: later)
            router._sweep()
            monkeypatch.undo()
            assert _held_for(hub, visitor.peer_id) == {}
        assert health_of(hub)._watchers == {}
        assert endpoint_of(hub)._served_from == {} and endpoint_of(hub)._in_flight == {}


async def test_timeouts_noted_are_forgotten_once_they_no_longer_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that timed out is passed over for SLOW_SERVER_PENALTY seconds; its note is
    dropped after that, so the table holds only recent ones."""
    async with mesh(1) as m:
        endpoint = endpoint_of(m.nodes[0])
        now = time.monotonic()
        monkeypatch.setattr(endpoint_module.time, "monotonic", lambda: now)
        endpoint.note_timeout("slow-a")
        endpoint.note_timeout("slow-b")
        now += endpoint_module.SLOW_SERVER_PENALTY / 2
        endpoint.note_timeout("slow-b")
        now += endpoint_module.SLOW_SERVER_PENALTY / 2 + 0.001
        endpoint.note_timeout("slow-c")
        assert set(endpoint._timed_out) == {"slow-b", "slow-c"}
