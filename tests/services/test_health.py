"""The health service between real nodes: Check, Watch, List, statuses set by the application
and by a graceful stop."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import pytest
from grpc_health.v1 import health_pb2
from helloworld_p2prpc import GreeterServicer, add_GreeterServicer_to_node

from p2prpc.node import Node
from p2prpc.rpc import RpcError, StatusCode, UnaryStreamMethod, UnaryUnaryMethod
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.services import NOT_SERVING, SERVICE_UNKNOWN, SERVING, health_of
from p2prpc.services import health as health_module
from p2prpc.services.health import MAX_SERVICE_NAME_BYTES, MAX_WATCHES_PER_PEER
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

Request = health_pb2.HealthCheckRequest
Response = health_pb2.HealthCheckResponse


async def test_check_watch_and_list() -> None:
    async with mesh(2, "health-test") as m:
        server, client = m.nodes
        add_GreeterServicer_to_node(GreeterServicer(), server)
        await client.wait_for_server("helloworld.Greeter", 10)
        watch = UnaryStreamMethod(client, "/grpc.health.v1.Health/Watch", Request, Response)
        list_ = UnaryUnaryMethod(
            client,
            "/grpc.health.v1.Health/List",
            health_pb2.HealthListRequest,
            health_pb2.HealthListResponse,
        )
        channel = client.to(server.peer_id)
        check = UnaryUnaryMethod(channel, "/grpc.health.v1.Health/Check", Request, Response)

        assert (await check(Request(service=""), timeout=10)).status == SERVING
        assert (await check(Request(service="helloworld.Greeter"), timeout=10)).status == SERVING
        with pytest.raises(RpcError) as info:
            await check(Request(service="nowhere.Nothing"), timeout=10)
        assert info.value.code() is StatusCode.NOT_FOUND

        greeter = watch(Request(service="helloworld.Greeter"), timeout=20)
        unknown = watch(Request(service="later.Service"), timeout=20)
        assert (await greeter.read()).status == SERVING
        assert (await unknown.read()).status == SERVICE_UNKNOWN
        health_of(server).set("helloworld.Greeter", NOT_SERVING)
        health_of(server).set("later.Service", SERVING)
        assert (await greeter.read()).status == NOT_SERVING
        assert (await unknown.read()).status == SERVING
        assert (await check(Request(service="helloworld.Greeter"), timeout=10)).status == (
            NOT_SERVING
        )
        listed = await list_(health_pb2.HealthListRequest(), timeout=10)
        assert {k: v.status for k, v in listed.statuses.items()} == {
            "": SERVING,
            "grpc.health.v1.Health": SERVING,
            "grpc.reflection.v1.ServerReflection": SERVING,
            "grpc.reflection.v1alpha.ServerReflection": SERVING,
            "helloworld.Greeter": NOT_SERVING,
            "later.Service": SERVING,
        }

        # A graceful stop: watchers hear NOT_SERVING and their streams end, so the stop does not
        # wait out its grace for them.
        overall = watch(Request(service=""), timeout=20)
        assert (await overall.read()).status == SERVING
        stopping = asyncio.create_task(server.stop(grace=15))
        assert (await overall.read()).status == NOT_SERVING
        assert [r.status async for r in overall] == []
        assert await overall.code() is StatusCode.OK
        async with asyncio.timeout(10):
            await stopping


# -- what watches hold, and for how long ----------------------------------------------------------


def _held_by_health() -> int:
    """Bytes allocated from health.py and still alive (names, events, watch frames)."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, health_module.__file__)]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _server_tasks(server: Node) -> list[asyncio.Task[None]]:
    return [call.task for call in endpoint_of(server)._server.values() if call.task is not None]


@pytest.mark.parametrize("ending", ["cancelled", "deadline", "peer left"])
async def test_a_watch_holds_nothing_once_its_call_ends(ending: str) -> None:
    """MAX_WATCHES_PER_PEER watches of long (but allowed) names: while open the server keeps an
    entry and the name of each; once their calls end, by a cancel, a deadline or the peer
    leaving, it keeps no entry and the bytes are freed."""
    tracemalloc.start()
    try:
        async with mesh(2, "health-test") as m:
            server, client = m.nodes
            health = health_of(server)
            watch = UnaryStreamMethod(
                client.to(server.peer_id), "/grpc.health.v1.Health/Watch", Request, Response
            )
            before = _held_by_health()
            count = MAX_WATCHES_PER_PEER
            names = [f"{i:04}." + "x" * (MAX_SERVICE_NAME_BYTES - 5) for i in range(count)]
            timeout = 3 if ending == "deadline" else 60
            calls = [watch(Request(service=name), timeout=timeout) for name in names]
            for call in calls:
                assert (await call.read()).status == SERVICE_UNKNOWN
            assert len(health._watchers) == count
            assert health._watches_from == {client.peer_id: count}
            held = _held_by_health() - before
            assert held >= count * MAX_SERVICE_NAME_BYTES

            tasks = _server_tasks(server)
            assert len(tasks) == count
            if ending == "cancelled":
                for call in calls:
                    call.cancel()
            elif ending == "deadline":
                for call in calls:
                    assert await call.code() is StatusCode.DEADLINE_EXCEEDED
            else:
                await client.close()
            async with asyncio.timeout(20):
                await asyncio.wait(tasks)
            del tasks  # a done task keeps its frames (and so the request) in its traceback
            assert health._watchers == {}
            assert health._watches_from == {}
            after = _held_by_health() - before
            assert after < MAX_SERVICE_NAME_BYTES, (held, after)
    finally:
        tracemalloc.stop()


async def test_a_name_longer_than_any_service_is_answered_at_once() -> None:
    """A name over MAX_SERVICE_NAME_BYTES names nothing a node can serve: Check answers NOT_FOUND,
    Watch INVALID_ARGUMENT, and nothing is kept; a name at the cap is watched as gRPC's health
    server watches an unknown service (SERVICE_UNKNOWN, then its changes)."""
    async with mesh(2, "health-test") as m:
        server, client = m.nodes
        health = health_of(server)
        channel = client.to(server.peer_id)
        watch = UnaryStreamMethod(channel, "/grpc.health.v1.Health/Watch", Request, Response)
        check = UnaryUnaryMethod(channel, "/grpc.health.v1.Health/Check", Request, Response)
        for name in ["x" * (MAX_SERVICE_NAME_BYTES + 1), "é" * 513, "y" * 2**20]:
            with pytest.raises(RpcError) as info:
                await check(Request(service=name), timeout=10)
            assert info.value.code() is StatusCode.NOT_FOUND
            call = watch(Request(service=name), timeout=10)
            with pytest.raises(RpcError) as info:
                await call.read()
            assert info.value.code() is StatusCode.INVALID_ARGUMENT
            assert health._watchers == {}
            with pytest.raises(ValueError):
                health.set(name, SERVING)

        at_cap = "z" * MAX_SERVICE_NAME_BYTES
        call = watch(Request(service=at_cap), timeout=20)
        assert (await call.read()).status == SERVICE_UNKNOWN
        health.set(at_cap, SERVING)
        assert (await call.read()).status == SERVING
        call.cancel()


async def test_a_peer_may_hold_only_so_many_watches() -> None:
    """One watch past MAX_WATCHES_PER_PEER is refused RESOURCE_EXHAUSTED; another peer is not
    held back by it, and a watch that ends makes room for a new one."""
    async with mesh(3, "health-test") as m:
        server, greedy, other = m.nodes

        def watch_from(node: Node) -> UnaryStreamMethod[Any, Any]:
            return UnaryStreamMethod(
                node.to(server.peer_id), "/grpc.health.v1.Health/Watch", Request, Response
            )

        calls = [watch_from(greedy)(Request(service=""), timeout=30) for _ in range(32)]
        assert len(calls) == MAX_WATCHES_PER_PEER
        for call in calls:
            assert (await call.read()).status == SERVING
        refused = watch_from(greedy)(Request(service=""), timeout=30)
        with pytest.raises(RpcError) as info:
            await refused.read()
        assert info.value.code() is StatusCode.RESOURCE_EXHAUSTED

        elsewhere = watch_from(other)(Request(service=""), timeout=30)
        assert (await elsewhere.read()).status == SERVING

        tasks = _server_tasks(server)
        calls[0].cancel()
        async with asyncio.timeout(20):
            while all(not task.done() for task in tasks):
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        again = watch_from(greedy)(Request(service=""), timeout=30)
        assert (await again.read()).status == SERVING
        assert health_of(server)._watches_from == {
            greedy.peer_id: MAX_WATCHES_PER_PEER,
            other.peer_id: 1,
        }
