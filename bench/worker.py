"""A benchmark peer process: ``python -m bench.worker``, driven over stdin and stdout.

Each stdin line is a command, ``{"id": n, "cmd": "kind.name", "args": {...}}``; each gets one
stdout line back, ``{"id": n, "ok": true, "value": ...}`` or ``{"id": n, "ok": false, "error":
"..."}``. ``kind`` picks a peer class (``rpc``: a p2prpc node, ``raw``: a raw aiortc connection,
``rawhub``: several, ``grpc``: gRPC aio, ``pubsub``: p2prpc topics, ``tracker``: the embedded
tracker, ``proc``: the process itself, its CPU time), created on its first command and kept for
the worker's life; ``name`` picks its
``cmd_<name>`` method, called with ``args`` as keywords.

Commands run as tasks, so a measurement in progress does not stop the next command from being
read. When stdin closes, every peer is closed and the process exits.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import traceback
from typing import Any, Protocol


class Peer(Protocol):
    """What a peer class offers besides its ``cmd_*`` methods."""

    async def aclose(self) -> None: ...


PEER_CLASSES = {
    "rpc": ("bench.peer_rpc", "RpcPeer"),
    "raw": ("bench.peer_raw", "RawPeer"),
    "rawhub": ("bench.peer_raw", "RawHub"),
    "grpc": ("bench.peer_grpc", "GrpcPeer"),
    "pubsub": ("bench.peer_pubsub", "PubSubPeer"),
    "tracker": ("bench.peer_rpc", "TrackerPeer"),
    "proc": ("bench.measure", "ProcessPeer"),
}


class Worker:
    """Reads commands, runs them on the peers, writes their results."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def peer(self, kind: str) -> Peer:
        peer = self.peers.get(kind)
        if peer is None:
            if kind not in PEER_CLASSES:
                raise ValueError(f"no peer kind {kind!r}")
            module, name = PEER_CLASSES[kind]
            peer = self.peers[kind] = getattr(importlib.import_module(module), name)()
        return peer

    async def run(self, ident: object, cmd: str, args: dict[str, Any]) -> None:
        try:
            kind, _, name = cmd.partition(".")
            method = getattr(self.peer(kind), f"cmd_{name}", None)
            if method is None:
                raise ValueError(f"no command {cmd!r}")
            reply = {"id": ident, "ok": True, "value": await method(**args)}
        except Exception:
            logging.exception("command %s failed", cmd)
            reply = {"id": ident, "ok": False, "error": traceback.format_exc(limit=8)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while line := await reader.readline():
                request = json.loads(line)
                task = loop.create_task(
                    self.run(request.get("id"), request["cmd"], request.get("args") or {})
                )
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            for peer in self.peers.values():
                try:
                    await asyncio.wait_for(peer.aclose(), 10.0)
                except Exception:
                    logging.exception("closing %s", type(peer).__name__)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s"
    )
    asyncio.run(Worker().serve())


if __name__ == "__main__":
    main()
