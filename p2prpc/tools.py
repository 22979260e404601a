"""What the command line does with a swarm: call a method in JSON, list the nodes.

``call_json`` is a JSON-form client that needs no generated code: it sends proto3 JSON and prints
proto3 JSON, as grpcurl does; the server does the parsing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import PeerClosed
from .node import Node
from .rpc.status import StatusCode
from .wire.envelope import Envelope, Kind, Status

UNAVAILABLE = StatusCode.UNAVAILABLE.value
DEADLINE_EXCEEDED = StatusCode.DEADLINE_EXCEEDED.value


class _JsonCall:
    """A client call whose replies are printed as they come."""

    def __init__(self) -> None:
        self.done: asyncio.Future[Status] = asyncio.get_running_loop().create_future()

    def on_envelope(self, envelope: Envelope) -> None:
        if envelope.kind is Kind.REPLY:
            print(json.dumps(envelope.payload), flush=True)
        if envelope.status is not None and not self.done.done():
            self.done.set_result(envelope.status)

    def on_peer_lost(self) -> None:
        if not self.done.done():
            self.done.set_result(Status(UNAVAILABLE, "the peer went away"))


async def call_json(
    trackers: Sequence[str],
    identifier: str,
    method: str,
    requests: Sequence[Any],
    *,
    timeout: float,
    peer: str | None = None,
    metadata: Mapping[str, str] | None = None,
    swarm_options: Mapping[str, Any] | None = None,
) -> int:
    """Call ``method`` with JSON requests; print each reply; return the status code."""
    node = Node(trackers, identifier, binary=False, **dict(swarm_options or {}))
    service = method.split("/")[1] if method.count("/") == 2 else ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with node:
        try:
            if peer is None:
                peer = await node.wait_for_server(service, timeout=timeout)
            else:
                await asyncio.wait_for(_connected(node, peer), timeout)
        except TimeoutError:
            print(f"ERROR: no peer serving {service} within {timeout} s", file=sys.stderr)
            return UNAVAILABLE
        call_id = node.new_call_id(peer)
        call = _JsonCall()
        node.open_client_call(peer, call_id, call)
        first, rest = (requests[0], requests[1:]) if requests else ({}, [])
        try:
            node.send(
                peer,
                Envelope(
                    Kind.CALL,
                    call_id,
                    method=method,
                    timeout=max(0.0, deadline - loop.time()),
                    metadata=metadata,
                    payload=first,
                    has_payload=True,
                ),
            )
            for seq, request in enumerate(rest, start=1):
                node.send(peer, Envelope(Kind.MSG, call_id, seq, payload=request, has_payload=True))
            node.send(peer, Envelope(Kind.END, call_id, len(rest) + 1))
            status = await asyncio.wait_for(call.done, max(0.0, deadline - loop.time()) + 1.0)
        except PeerClosed:
            status = Status(UNAVAILABLE, "the peer went away")
        except TimeoutError:
            status = Status(DEADLINE_EXCEEDED, "deadline exceeded")
        finally:
            node.close_client_call(peer, call_id)
    if status.code != 0:
        print(f"ERROR: {StatusCode(status.code).name}: {status.details}", file=sys.stderr)
    return status.code


async def _connected(node: Node, peer: str) -> None:
    while peer not in node.peers or not node.peers[peer].hello:
        await asyncio.wait_for(_next(node, "peer"), None)


async def _next(node: Node, event: str) -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fire(*_: object) -> None:
        if not future.done():
            future.set_result(None)

    node.once(event, fire)
    await future


async def list_peers(
    trackers: Sequence[str],
    identifier: str,
    wait: float,
    *,
    swarm_options: Mapping[str, Any] | None = None,
) -> int:
    """Join the swarm for ``wait`` seconds; print one JSON line per node that said hello."""
    node = Node(trackers, identifier, binary=False, **dict(swarm_options or {}))
    async with node:
        await asyncio.sleep(wait)  # listening for a fixed time is what this command is for
        for info in sorted(node.peers.values(), key=lambda i: i.peer_id):
            line = {
                "peer": info.peer_id,
                "hello": info.hello,
                "services": sorted(info.services),
                "topics": sorted(info.topics),
                "binary": info.binary,
            }
            print(json.dumps(line), flush=True)
    return 0
