"""A p2prpc node for the ICE restart lab: ``python -m tests.lab.restartpeer ROLE TRANSPORT
TRACKER IDENTIFIER [ICE_SERVER_URL ...]``.

``ROLE`` ``server`` serves (the standard health service); ``client`` waits for a peer, then
calls its ``Health/Check`` one call after another (``wait_for_ready``, 60 s deadline each),
printing ``{"calls": n}`` after each that succeeded and ``{"failed": why}`` for each that did
not. Both print their peer id first, and when their stdin closes a last line, a JSON summary:
the calls, ``peerconnect`` and ``peerclose`` events, the first connection to the peer (its
number, whether it is still open, how many times its ICE was restarted) and the node's
``ice_restarts``. Each runs in a network namespace of its own (libwebrtc's threads stay in the
namespace they were made in); its tracker client reconnects within 2 s of the network coming
back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from p2prpc import Node
from p2prpc.rpc import RpcError

HEALTH = "/grpc.health.v1.Health/Check"


def say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


async def main(role: str, transport: str, tracker: str, identifier: str, ice: list[str]) -> None:
    node = Node(
        [tracker],
        identifier,
        ice_servers=ice,
        mesh=False,
        transport=transport,
        tracker_options={"reconnect_max": 2.0},
        # A call waits keepalive_grace for a silent peer (15 s after it is found suspect): the
        # 17 s cut, with the restart's seconds after it, needs more for no call to fail.
        keepalive_grace=30.0,
    )
    events = {"peerconnect": 0, "peerclose": 0}
    node.p2pt.on(
        "peerconnect", lambda peer: events.__setitem__("peerconnect", events["peerconnect"] + 1)
    )
    node.p2pt.on("peerclose", lambda peer: events.__setitem__("peerclose", events["peerclose"] + 1))
    await node.start()
    print(node.peer_id, flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    peer_id = ""
    first = 0
    calls = 0
    failures: list[str] = []
    if role == "client":
        await node.wait_for_peers(1, timeout=30)
        peer_id = next(iter(node.peers))
        first = node.p2pt.connections(peer_id)[0]
        say(peer=peer_id, connection=first)
        call = node.unary_unary(HEALTH)
        while not stdin_closed.done():
            try:
                await call(b"", timeout=60, wait_for_ready=True)
            except RpcError as e:
                failures.append(f"{e.code().name}: {e.details()}")
                say(failed=failures[-1])
            else:
                calls += 1
                say(calls=calls)
            await asyncio.sleep(0.2)  # a call every 0.2 s, not a busy loop
    await stdin_closed
    channel = None
    if peer_id:
        remote = node.p2pt._remotes.get(peer_id)
        channel = remote.numbered.get(first) if remote is not None else None
    say(
        calls=calls,
        failures=failures,
        **events,
        first=first,
        first_open=bool(peer_id) and first in node.p2pt.connections(peer_id),
        first_restarts=channel.restarts if channel is not None else 0,
        ice_restarts=node.p2pt.ice_restarts,
    )
    await node.stop()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(relativeCreated)d %(name)s %(message)s"
    )
    logging.getLogger("p2prpc.swarm.connection").setLevel(logging.DEBUG)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
