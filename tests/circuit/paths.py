"""Peers on loopback that cannot reach each other directly, and a relay between them.

Each peer's host candidate is its own loopback address (127.0.0.1 for the relay, 127.0.0.2 and
127.0.0.3 for the ends). A :class:`Firewalled` transport is aiortc's, whose links drop from
every remote session description the candidates of the addresses it blocks, as a firewall
between two homes drops their packets: ICE finds no pair and the attempt fails as it does
between two NATs that map per destination, while each end reaches the relay. Unblocking an
address (``transport.blocked.discard``) opens the direct path for the next attempt.

A relay's transport can also watch what leaves it (``sent``: every data-channel message) and
alter it (``flip``: flip the last bit of the next circuit data frame it sends), as a relay
that reads or tampers with what it carries would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from p2prpc.node import Node
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import RTCOptions
from p2prpc.transport.aiortc import AiortcLink
from p2prpc.wire.envelope import HEADER_SIZE, MAGIC, Kind


def _without(sdp: str, blocked: set[str]) -> str:
    return "".join(
        line
        for line in sdp.splitlines(keepends=True)
        if not (line.startswith("a=candidate:") and line.split()[4] in blocked)
    )


class _Link(AiortcLink):
    def __init__(self, owner: Firewalled, options: RTCOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.owner = owner

    async def accept_offer(self, sdp: str) -> str:
        return await super().accept_offer(_without(sdp, self.owner.blocked))

    async def accept_answer(self, sdp: str) -> None:
        await super().accept_answer(_without(sdp, self.owner.blocked))

    def send(self, data: str | bytes) -> None:
        owner = self.owner
        if owner.watch:
            owner.sent.append(data)
        if (
            owner.flip
            and isinstance(data, bytes)
            and len(data) > HEADER_SIZE
            and data[0] == MAGIC
            and data[1] == Kind.CIRCUIT
            and data[11:13] == b"\0\0"  # no header: a data frame
        ):
            owner.flip -= 1
            data = data[:-1] + bytes((data[-1] ^ 1,))
        super().send(data)


class Firewalled:
    """aiortc, dropping the remote candidates of the ``blocked`` addresses."""

    name = "aiortc-firewalled"

    def __init__(self, *blocked: str, watch: bool = False) -> None:
        self.blocked = set(blocked)
        self.watch = watch
        self.sent: list[str | bytes] = []
        self.flip = 0

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> AiortcLink:
        return _Link(self, options, initiator=initiator, label=label)


RELAY, A, B = "127.0.0.1", "127.0.0.2", "127.0.0.3"


def node_at(tracker: TrackerServer, address: str, transport: Firewalled, **kwargs: Any) -> Node:
    kwargs.setdefault("ice_timeout", 2.0)
    return loopback_node(
        [tracker.url],
        "p2prpc-circuit-test",
        host_addresses=[address],
        transport=transport,
        **kwargs,
    )


@asynccontextmanager
async def split_pair(
    relay_options: dict[str, Any] | None = None,
    a_options: dict[str, Any] | None = None,
    b_options: dict[str, Any] | None = None,
    *,
    auto: bool = True,
    **kwargs: Any,
) -> AsyncIterator[tuple[Node, Node, Node, dict[str, Firewalled]]]:
    """A relay ``r`` (``relay=True`` unless ``relay_options`` says otherwise) and two nodes
    ``a`` and ``b`` that reach it but not each other; started, ``r`` connected to both.
    ``auto`` false: ``a`` and ``b`` open no circuit of themselves (only by ``open``)."""
    async with AsyncExitStack() as stack:
        tracker = TrackerServer("127.0.0.1", 0)
        await tracker.start()
        stack.push_async_callback(tracker.close)
        walls = {"r": Firewalled(watch=True), "a": Firewalled(B), "b": Firewalled(A)}
        options = {"relay": True, **kwargs, **(relay_options or {})}
        r = node_at(tracker, RELAY, walls["r"], **options)
        a = node_at(tracker, A, walls["a"], **kwargs, **(a_options or {}))
        b = node_at(tracker, B, walls["b"], **kwargs, **(b_options or {}))
        for node in (r, a, b):
            stack.push_async_callback(node.close)
            circuits = node.circuits
            assert circuits is not None
            circuits.auto = auto
        await r.start()
        await a.start()
        await b.start()
        await r.wait_for_peers(2, timeout=20)
        yield r, a, b, walls
