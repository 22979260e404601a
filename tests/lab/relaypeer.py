"""A p2prpc node of the NAT lab with the mesh on, as a relay or as an end: ``python -m
tests.lab.relaypeer ROLE TRACKER IDENTIFIER [ICE_SERVER_URL ...]``.

``ROLE`` ``relay``: a node built with ``relay=True`` (run it on the public network). ``echo``: an
end that answers each message of the topic ``ping`` (a ``StringValue``) by publishing it on
``pong``. Either joins the swarm through the tracker with these ICE servers (none: host
candidates only), prints its peer id on stdout, logs to stderr at INFO, and leaves when its stdin
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from google.protobuf.wrappers_pb2 import StringValue

from p2prpc import Node
from p2prpc.pubsub import Topic


async def _echo(node: Node) -> None:
    pong = Topic(node, "pong", StringValue)
    async with Topic(node, "ping", StringValue).subscribe() as pings:
        async for received in pings:
            await pong.publish(received.message)


async def main(role: str, tracker: str, identifier: str, ice_servers: list[str]) -> None:
    node = Node([tracker], identifier, ice_servers=ice_servers, relay=role == "relay")
    echo = asyncio.create_task(_echo(node)) if role == "echo" else None
    await node.start()
    print(node.peer_id, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    if echo is not None:
        echo.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await echo
    await node.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    if sys.argv[1] not in ("relay", "echo"):
        sys.exit(f"ROLE is relay or echo, not {sys.argv[1]!r}")
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
