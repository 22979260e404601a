"""In-process harness for tests and demos: an embedded tracker on 127.0.0.1 and loopback peers.

``async with swarm(3) as s:`` starts a tracker on a free loopback port and three P2PT peers whose
ICE candidates are pinned to 127.0.0.1 with no STUN server, and returns once every peer sees every
other.
Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from .node import Node
from .p2pt import P2PT
from .tracker.server import TrackerServer

LOOPBACK = "127.0.0.1"


def loopback_p2pt(announce_urls: Sequence[str], identifier: str, **kwargs: Any) -> P2PT:
    """A P2PT whose connections stay on loopback: host candidates 127.0.0.1, no STUN."""
    kwargs.setdefault("ice_servers", [])
    kwargs.setdefault("host_addresses", [LOOPBACK])
    return P2PT(announce_urls, identifier, **kwargs)


@dataclass
class Swarm:
    """Trackers and peers started by :func:`swarm`."""

    trackers: list[TrackerServer]
    peers: list[P2PT] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [t.url for t in self.trackers]


async def wait_connected(peers: Sequence[P2PT], degree: int, timeout: float = 30.0) -> None:
    """Wait until every peer has at least ``degree`` connected peers."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def check(*_: object) -> None:
        if not done.done() and all(len(p.peers) >= degree for p in peers):
            done.set_result(None)

    for p in peers:
        p.on("peerconnect", check)
    try:
        check()
        await asyncio.wait_for(done, timeout)
    finally:
        for p in peers:
            p.remove_listener("peerconnect", check)


@asynccontextmanager
async def swarm(
    size: int,
    identifier: str = "p2prpc-test",
    *,
    trackers: int = 1,
    timeout: float = 30.0,
    **p2pt_kwargs: Any,
) -> AsyncIterator[Swarm]:
    """Start ``trackers`` embedded trackers and ``size`` loopback peers forming a full mesh."""
    async with AsyncExitStack() as stack:
        servers = []
        for _ in range(trackers):
            server = TrackerServer(LOOPBACK, 0)
            await server.start()
            stack.push_async_callback(server.close)
            servers.append(server)
        result = Swarm(servers)
        for _ in range(size):
            peer = loopback_p2pt(result.urls, identifier, **p2pt_kwargs)
            stack.push_async_callback(peer.destroy)
            result.peers.append(peer)
        for peer in result.peers:
            await peer.start()
        await wait_connected(result.peers, size - 1, timeout)
        yield result


def loopback_node(announce_urls: Sequence[str], identifier: str = "p2prpc", **kwargs: Any) -> Node:
    """A :class:`~p2prpc.node.Node` whose connections stay on loopback."""
    kwargs.setdefault("ice_servers", [])
    kwargs.setdefault("host_addresses", [LOOPBACK])
    return Node(announce_urls, identifier, **kwargs)


@dataclass
class Mesh:
    """A tracker and nodes started by :func:`mesh`."""

    tracker: TrackerServer
    nodes: list[Node] = field(default_factory=list)

    async def add(self, identifier: str = "p2prpc", **kwargs: Any) -> Node:
        """Start one more node in the mesh (not waiting for it to connect)."""
        node = loopback_node([self.tracker.url], identifier, **kwargs)
        self.nodes.append(node)
        await node.start()
        return node


@asynccontextmanager
async def mesh(
    size: int, identifier: str = "p2prpc", *, timeout: float = 30.0, **node_kwargs: Any
) -> AsyncIterator[Mesh]:
    """An embedded tracker and ``size`` loopback nodes that have all said hello to each other."""
    async with TrackerServer(LOOPBACK, 0) as tracker:
        result = Mesh(tracker)
        try:
            for _ in range(size):
                await result.add(identifier, **node_kwargs)
            async with asyncio.timeout(timeout):
                await tracker.wait_for(lambda stats: stats.peers >= size)
                for node in result.nodes:
                    await node.wait_for_peers(size - 1)
            yield result
        finally:
            for node in result.nodes:
                await node.close()


async def until(
    condition: Callable[[], bool], *sources: tuple[Any, str], timeout: float = 10
) -> None:
    """Wait until ``condition()`` holds, checked now and after each event of ``sources``
    (``(emitter, event name)`` pairs: what changes what it reads); ``TimeoutError`` after
    ``timeout`` seconds."""
    changed = asyncio.Event()
    listeners = [
        (emitter, event, emitter.on(event, lambda *_: changed.set())) for emitter, event in sources
    ]
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                changed.clear()
                await changed.wait()
    finally:
        for emitter, event, listener in listeners:
            emitter.remove_listener(event, listener)
