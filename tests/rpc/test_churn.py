"""Churn: servers leave and new ones come while a client calls; every call ends with a status,
a non-idempotent call never runs twice, and the client keeps no ghosts of servers that left."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.errors import RpcError
from p2prpc.node import Node
from p2prpc.rpc import Cardinality, Channel, Handler, ServicerContext, StatusCode, UnaryUnaryMethod
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

SERVICE = "churn.Counter"


async def test_calls_under_server_churn_end_with_a_status_and_never_run_twice() -> None:
    ran: Counter[str] = Counter()

    async def record(request: StringValue, context: ServicerContext) -> StringValue:
        ran[request.value] += 1
        await asyncio.sleep(0.02)  # some work, so that servers leave mid-call too
        return StringValue(value=request.value)

    handlers = {
        f"/{SERVICE}/Record": Handler(record, Cardinality.UNARY_UNARY, StringValue, StringValue)
    }
    async with mesh(4) as m:
        client, *servers = m.nodes
        for server in servers:
            server.add_service(SERVICE, handlers)
        await client.wait_until(lambda: len(client.servers_of(SERVICE)) == 3, 20)
        stop = asyncio.Event()

        async def churn() -> int:
            replaced = 0
            live: list[Node] = list(servers)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.3)
                if stop.is_set():
                    break
                leaving = live.pop(0)
                await leaving.close()
                newcomer = await m.add()
                newcomer.add_service(SERVICE, handlers)
                live.append(newcomer)
                replaced += 1
            return replaced

        churner = asyncio.ensure_future(churn())
        method = UnaryUnaryMethod(
            Channel(client, wait_for_ready=True), f"/{SERVICE}/Record", StringValue, StringValue
        )
        codes: Counter[StatusCode] = Counter()
        most_servers = 0

        async def caller(worker: int) -> None:
            nonlocal most_servers
            for i in range(125):
                try:
                    await method(StringValue(value=f"{worker}-{i}"), timeout=20)
                    codes[StatusCode.OK] += 1
                except RpcError as e:
                    codes[e.code()] += 1
                most_servers = max(most_servers, len(client.servers_of(SERVICE)))

        async with asyncio.timeout(90):
            await asyncio.gather(*(caller(w) for w in range(8)))
        stop.set()
        replaced = await churner
    assert sum(codes.values()) == 1000  # every call ended with a status
    assert set(codes) <= {StatusCode.OK, StatusCode.UNAVAILABLE}, codes
    assert codes[StatusCode.OK] >= 900, codes
    assert max(ran.values()) == 1  # never run twice
    assert replaced >= 5, replaced
    assert most_servers <= 4  # servers that left are not counted (one newcomer may overlap)
