"""A p2prpc node for the NAT lab's far home: ``python -m tests.lab.natpeer TRACKER IDENTIFIER
[ICE_SERVER_URL ...]``.

It joins the swarm through the tracker with these ICE servers (none: host candidates only),
serves ``lab.Feed/Follow`` (:data:`FOLLOW`: asked for ``n``, it streams ``"0"`` … ``"n-1"``
as ``StringValue``, one every 10 ms), prints its peer id on stdout, logs to stderr at INFO, and
leaves when its stdin closes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator

from google.protobuf.wrappers_pb2 import StringValue

from p2prpc import Node
from p2prpc.rpc import Cardinality, Handler, ServicerContext

SERVICE = "lab.Feed"
FOLLOW = f"/{SERVICE}/Follow"


async def follow(request: StringValue, context: ServicerContext) -> AsyncIterator[StringValue]:
    for i in range(int(request.value)):
        await asyncio.sleep(0.01)
        yield StringValue(value=str(i))


async def main(tracker: str, identifier: str, ice_servers: list[str]) -> None:
    node = Node([tracker], identifier, ice_servers=ice_servers, mesh=False)
    node.add_service(
        SERVICE, {FOLLOW: Handler(follow, Cardinality.UNARY_STREAM, StringValue, StringValue)}
    )
    await node.start()
    print(node.peer_id, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await node.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
