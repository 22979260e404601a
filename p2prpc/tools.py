"""What the command line does with a swarm: call a method in JSON, list the nodes.

``call_json`` calls a method without its generated code: it sends proto3 JSON and prints proto3
JSON, as grpcurl does; the server does the parsing. It is a :class:`~p2prpc.rpc.JSONMethod` on the
same call primitive as every stub, so retries, deadlines and metadata behave alike.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidMetadata, RpcError
from .node import Node, PeerInfo
from .rpc.channel import Channel
from .rpc.client import JSONMethod
from .wire.status import Metadatum, StatusCode, code_number

_NO_HELLO = PeerInfo("")


async def call_json(
    trackers: Sequence[str],
    identifier: str,
    method: str,
    requests: Sequence[Any],
    *,
    timeout: float,
    peer: str | None = None,
    metadata: Sequence[Metadatum] = (),
    swarm_options: Mapping[str, Any] | None = None,
) -> int:
    """Call ``method`` with JSON requests; print each reply as a JSON line; return the status
    code's number (0 for OK). Waits up to ``timeout`` seconds, finding a server included."""
    node = Node(trackers, identifier, binary=False, **dict(swarm_options or {}))
    service = method.split("/")[1] if method.count("/") == 2 else method
    async with node:
        wanted = f"peer {peer}" if peer is not None else f"peer serving {service}"
        try:
            if peer is None:
                await node.wait_for_server(service, timeout)
            else:
                await node.wait_until(lambda: node.peers.get(peer, _NO_HELLO).hello, timeout)
        except TimeoutError:
            print(f"ERROR: UNAVAILABLE: no {wanted} within {timeout} s", file=sys.stderr)
            return code_number(StatusCode.UNAVAILABLE)
        channel = Channel(node, peer, wait_for_ready=True)
        try:
            call = JSONMethod(channel, method)(requests, timeout=timeout, metadata=metadata)
            async for reply in call:
                print(json.dumps(reply), flush=True)
        except InvalidMetadata as e:
            print(f"ERROR: {e}", file=sys.stderr)
            return code_number(StatusCode.INVALID_ARGUMENT)
        except RpcError as e:
            print(f"ERROR: {e.code().name}: {e.details()}", file=sys.stderr)
            return code_number(e.code())
    return 0


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
