"""A Greeter server in a process of its own whose servicer blocks its event loop on request
(``python blocking_server.py TRACKER_URL IDENTIFIER``): ``SayHello(name="block:2.5")`` runs
``time.sleep(2.5)`` before it answers, as a servicer doing CPU-bound work inline would. It prints
``ready PEER_ID`` once started."""

from __future__ import annotations

import asyncio
import sys
import time

from helloworld_p2prpc import GreeterServicer, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest

from p2prpc.rpc import ServicerContext
from p2prpc.testing import loopback_node


class Blocking(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        if request.name.startswith("block:"):
            time.sleep(float(request.name.removeprefix("block:")))  # noqa: ASYNC251  # the loop stops
        return HelloReply(message=f"hello {request.name}")


async def main() -> None:
    node = loopback_node([sys.argv[1]], sys.argv[2])
    add_GreeterServicer_to_node(Blocking(), node)
    await node.start()
    print("ready", node.peer_id, flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
