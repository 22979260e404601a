"""Peers on loopback that cannot reach each other directly, and a relay between them.

A firewall on this machine's loopback (iptables, as ``tests/rpc/netcut.py`` cuts links) drops
every UDP datagram between the two ends ``a`` and ``b``, both ways, while each reaches the relay
``r``: ICE finds no working pair between the ends and their attempt fails as it does between two
NATs that map per destination. :meth:`Wall.open` removes the rules (the direct path works for the
next attempt); every rule is removed on the way out.

Each peer has a *place* that the rules name, on either transport:

- aiortc binds its sockets to the host addresses it is pinned to, so each end has a loopback
  address of its own (``127.77.<slot>.2`` and ``.3``), and the rules drop UDP between the two.
- libwebrtc binds its sockets to the addresses of the interfaces it enumerates (one per
  interface: 127.0.0.1 on ``lo``) whatever the host addresses (which only choose the candidates
  its descriptions carry), so in one process every peer sends from 127.0.0.1 and no rule on
  addresses can tell them apart. Its ``RTCConfiguration.port_range`` (set when a connection is
  made; it cannot be changed after) gives each peer's sockets a range of ports of their own, and
  the rules drop UDP between the two ends' ranges.

A *slot* (one of 32, held with a lock file for the life of the process) keeps the addresses and
ports of concurrent test processes apart, so one run's rules never touch another's peers.

A relay's transport can also watch what leaves it (``sent``: every data-channel message) and
alter it (``flip``: flip the last bit of the next circuit data frame it sends), as a relay
that reads or tampers with what it carries would.

Needs Linux, root and ``iptables``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from rpc.netcut import unavailable_reason

from p2prpc.node import Node
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import Link, RTCOptions, choose_transport
from p2prpc.transport.aiortc import AiortcLink
from p2prpc.wire.envelope import HEADER_SIZE, MAGIC, Kind

_SLOTS = 32
_PORTS = 200  # ports of one place: every socket of every connection it makes
_FIRST_PORT = 12000  # below the kernel's ephemeral ports (32768 on): nobody else's sockets


@cache
def _slot() -> int:
    """A slot no other process holds (its lock file stays locked until this process ends)."""
    for slot in range(_SLOTS):
        fd = os.open(f"/tmp/p2prpc-circuit-slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot  # the descriptor stays open: the lock with it
    raise RuntimeError(f"all {_SLOTS} circuit test slots are taken by other processes")


@dataclass(frozen=True)
class Place:
    """Where one peer's sockets are: its address (aiortc) and its range of ports (libwebrtc)."""

    address: str
    ports: tuple[int, int]


def place(index: int) -> Place:
    """This process's place number ``index`` (0: the relay, 1: ``a``, 2: ``b``, 3: one more)."""
    slot = _slot()
    first = _FIRST_PORT + (slot * 4 + index) * _PORTS
    address = "127.0.0.1" if index == 0 else f"127.77.{slot}.{index + 1}"
    return Place(address, (first, first + _PORTS - 1))


def _native() -> bool:
    return choose_transport().name != "aiortc"


def _tamper(owner: Watched, data: str | bytes) -> str | bytes:
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
    return data


class _AiortcLink(AiortcLink):
    def __init__(self, owner: Watched, options: RTCOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.owner = owner

    def send(self, data: str | bytes) -> None:
        super().send(_tamper(self.owner, data))


@cache
def _wrtc_link() -> type[Link]:
    import webrtc
    from webrtc.aiortc import rtcpeerconnection

    from p2prpc.transport.wrtc import WrtcLink

    class _WrtcLink(WrtcLink):
        def __init__(self, owner: Watched, options: RTCOptions, **kwargs: Any) -> None:
            # wrtc takes the port range only when the native connection is made (its
            # set_configuration refuses to change it), and webrtc.aiortc names none: its
            # constructor makes the native configuration with this one added.
            made = rtcpeerconnection.webrtc.RTCConfiguration
            rtcpeerconnection.webrtc.RTCConfiguration = partial(  # type: ignore[misc]
                webrtc.RTCConfiguration, port_range=owner.place.ports
            )
            try:
                super().__init__(options, **kwargs)
            finally:
                rtcpeerconnection.webrtc.RTCConfiguration = made  # type: ignore[misc]
            self.owner = owner

        def send(self, data: str | bytes) -> None:
            super().send(_tamper(self.owner, data))

    return _WrtcLink


class Watched:
    """The transport the tests run on (``P2PRPC_TRANSPORT``), its sockets in ``place``; what
    its links send can be watched (``watch``: kept in ``sent``) and altered (``flip``)."""

    def __init__(self, place: Place, *, watch: bool = False) -> None:
        self.place = place
        self.native = _native()
        self.name = f"{choose_transport().name}-watched"
        self.watch = watch
        self.sent: list[str | bytes] = []
        self.flip = 0

    @property
    def host_address(self) -> str:
        """The host candidates' address (libwebrtc's sockets are all on 127.0.0.1)."""
        return "127.0.0.1" if self.native else self.place.address

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> Link:
        cls = _wrtc_link() if self.native else _AiortcLink
        return cls(self, options, initiator=initiator, label=label)  # type: ignore[call-arg]


class Wall:
    """iptables rules on loopback that drop UDP between pairs of places, both ways."""

    def __init__(self) -> None:
        self._rules: list[str] = []

    @staticmethod
    def _ways(one: Place, other: Place) -> list[str]:
        rules = []
        for source, target in ((one, other), (other, one)):
            rules.append(f"INPUT -i lo -p udp -s {source.address} -d {target.address} -j DROP")
            sport, dport = (f"{p.ports[0]}:{p.ports[1]}" for p in (source, target))
            rules.append(f"INPUT -i lo -p udp --sport {sport} --dport {dport} -j DROP")
        return rules

    def block(self, one: Place, other: Place) -> None:
        """Drop every datagram between ``one`` and ``other`` from now on."""
        rules = self._ways(one, other)
        _restore("-I", rules)
        self._rules += rules

    def open(self) -> None:
        """Remove every rule: the direct paths work again."""
        rules, self._rules = self._rules, []
        _restore("-D", rules)


def _restore(action: str, rules: list[str]) -> None:
    if not rules:
        return
    script = "*filter\n" + "".join(f"{action} {rule}\n" for rule in rules) + "COMMIT\n"
    subprocess.run(
        ["iptables-restore", "--noflush"],
        input=script.encode(),
        check=action == "-I",
        capture_output=True,
    )


@contextlib.contextmanager
def wall() -> Iterator[Wall]:
    """A :class:`Wall`, every rule of which is removed at the end of the block."""
    made = Wall()
    try:
        yield made
    finally:
        made.open()


def node_at(tracker: TrackerServer, transport: Watched, **kwargs: Any) -> Node:
    kwargs.setdefault("ice_timeout", 2.0)
    return loopback_node(
        [tracker.url],
        "p2prpc-circuit-test",
        host_addresses=[transport.host_address],
        transport=transport,
        **kwargs,
    )


@dataclass
class Split:
    """What :func:`split_pair` made: the transports (``r``, ``a``, ``b``) and the wall."""

    transports: dict[str, Watched]
    wall: Wall

    def __getitem__(self, name: str) -> Watched:
        return self.transports[name]


@asynccontextmanager
async def split_pair(
    relay_options: dict[str, Any] | None = None,
    a_options: dict[str, Any] | None = None,
    b_options: dict[str, Any] | None = None,
    *,
    auto: bool = True,
    **kwargs: Any,
) -> AsyncIterator[tuple[Node, Node, Node, Split]]:
    """A relay ``r`` (``relay=True`` unless ``relay_options`` says otherwise) and two nodes
    ``a`` and ``b`` that reach it but not each other; started, ``r`` connected to both.
    ``auto`` false: ``a`` and ``b`` open no circuit of themselves (only by ``open``)."""
    reason = unavailable_reason()
    if reason is not None:
        import pytest

        pytest.skip(f"no firewall between the ends: {reason}")
    async with AsyncExitStack() as stack:
        split = Split(
            {
                "r": Watched(place(0), watch=True),
                "a": Watched(place(1)),
                "b": Watched(place(2)),
            },
            stack.enter_context(wall()),
        )
        split.wall.block(place(1), place(2))
        tracker = TrackerServer("127.0.0.1", 0)
        await tracker.start()
        stack.push_async_callback(tracker.close)
        options = {"relay": True, **kwargs, **(relay_options or {})}
        r = node_at(tracker, split["r"], **options)
        a = node_at(tracker, split["a"], **kwargs, **(a_options or {}))
        b = node_at(tracker, split["b"], **kwargs, **(b_options or {}))
        for node in (r, a, b):
            stack.push_async_callback(node.close)
            circuits = node.circuits
            assert circuits is not None
            circuits.auto = auto
        await r.start()
        await a.start()
        await b.start()
        await r.wait_for_peers(2, timeout=20)
        yield r, a, b, split
