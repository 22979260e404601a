"""A servicer that swallows its cancellation; ``stop(grace)`` must still return (run as a process:
the stubborn task outlives the node, so the script leaves with os._exit)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from helloworld_p2prpc import GreeterServicer, GreeterStub, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest

from p2prpc.errors import RpcError
from p2prpc.rpc import ServicerContext
from p2prpc.testing import mesh


class Stubborn(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        while True:
            with contextlib.suppress(asyncio.CancelledError):  # carelessly "retries until done"
                await asyncio.sleep(0.2)


async def main() -> None:
    async with mesh(2) as m:
        server, client = m.nodes
        add_GreeterServicer_to_node(Stubborn(), server)
        await client.wait_for_server("helloworld.Greeter", 10)
        try:
            await GreeterStub(client).SayHello(HelloRequest(), timeout=1)
        except RpcError as e:
            print("client:", e.code().name, flush=True)
        started = time.monotonic()
        await asyncio.wait_for(server.stop(1), 20)
        print(f"stop returned after {time.monotonic() - started:.1f} s", flush=True)
        os._exit(0)


asyncio.run(main())
