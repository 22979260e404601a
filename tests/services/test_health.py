"""The health service between real nodes: Check, Watch, List, statuses set by the application
and by a graceful stop."""

from __future__ import annotations

import asyncio

import pytest
from grpc_health.v1 import health_pb2
from helloworld_p2prpc import GreeterServicer, add_GreeterServicer_to_node

from p2prpc.rpc import RpcError, StatusCode, UnaryStreamMethod, UnaryUnaryMethod
from p2prpc.services import NOT_SERVING, SERVICE_UNKNOWN, SERVING, health_of
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
