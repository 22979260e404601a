"""Cutting the link between two in-process peers: iptables rules on loopback drop the UDP
datagrams to and from one end's sockets of their connections, until the cut is healed; or only
those to it (:func:`deafen`: a peer that stops reading). Only those ports are touched, so other
tests on the machine are not; every rule is removed on the way out. Works on both transports
(libwebrtc: by every local candidate's port).

Needs Linux, root and ``iptables`` (``make apt`` installs it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from p2prpc.mux import Mux
from p2prpc.p2pt import P2PT


def unavailable_reason() -> str | None:
    """Why this machine cannot cut a link, or ``None`` when it can."""
    if not sys.platform.startswith("linux"):
        return "iptables needs Linux"
    if os.geteuid() != 0:
        return "changing iptables rules needs root"
    if shutil.which("iptables") is None:
        return "`iptables` is not installed: run `make apt`"
    return None


def local_ports(link: Any) -> list[int]:
    """The UDP ports of ``link``'s own sockets: on libwebrtc every local candidate's (its
    selected pair may name no remote address: a peer-reflexive one is not exposed, and ICE may
    move to another of its sockets), on aiortc the selected pair's."""
    native = getattr(getattr(link, "pc", None), "_native", None)
    if native is not None:  # libwebrtc
        sctp = native.sctp
        if sctp is None:
            return []
        ice = sctp.transport.ice_transport
        candidates = ice.get_local_candidates()
        return sorted({c.port for c in candidates if c.protocol == "udp" and c.port is not None})
    pair = link.selected_pair()
    return [pair[0][1]] if pair is not None else []


def link_ports(node: Mux | P2PT, peer_id: str) -> list[int]:
    """The UDP ports at ``node``'s end of every connection from ``node`` to ``peer_id``."""
    p2pt = node.p2pt if isinstance(node, Mux) else node
    remote = p2pt._remotes.get(peer_id)
    ports: list[int] = []
    for channel in remote.channels.values() if remote is not None else ():
        ports += local_ports(channel.link)
    return ports


def _apply(action: str, rules: list[tuple[str, int]]) -> None:
    """Insert (``-I``) or delete (``-D``) one DROP rule on loopback input per (way, port), all
    in one ``iptables-restore`` (one process, not one per rule: the caller's loop waits)."""
    if not rules:
        return
    lines = [f"{action} INPUT -i lo -p udp {way} {port} -j DROP" for way, port in rules]
    script = "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
    subprocess.run(
        ["iptables-restore", "--noflush"],
        input=script.encode(),
        check=action == "-I",
        capture_output=True,
    )


class Cut:
    """A cut in force (see :func:`cut`): every datagram to or from one of ``ports`` is dropped
    as it arrives, so the ports of one end cut both ways; with ``inbound_only``, only those to
    one of ``ports`` (see :func:`deafen`)."""

    def __init__(self, ports: list[int], *, inbound_only: bool = False) -> None:
        self.ports = ports
        self.ways = ("--dport",) if inbound_only else ("--dport", "--sport")
        self._added: list[tuple[str, int]] = []

    def start(self) -> None:
        rules = [(way, port) for port in self.ports for way in self.ways]
        _apply("-I", rules)
        self._added += rules

    def heal(self) -> None:
        """Let datagrams through again."""
        rules, self._added = self._added, []
        _apply("-D", rules)


@contextlib.contextmanager
def cut(node: Mux | P2PT, peer_id: str) -> Iterator[Cut]:
    """Drop every datagram between ``node`` and ``peer_id`` (both in this process, on loopback)
    until :meth:`Cut.heal` or the end of the block."""
    ports = link_ports(node, peer_id)
    assert ports, f"no connection from {node.peer_id[:8]} to {peer_id[:8]} to cut"
    link = Cut(ports)
    try:
        link.start()
        yield link
    finally:
        link.heal()


@contextlib.contextmanager
def deafen(node: Mux | P2PT, peer_id: str) -> Iterator[Cut]:
    """``node`` takes nothing in from ``peer_id`` (as a process that stopped reading would leave
    it unread): every datagram arriving at ``node``'s sockets of its connections to ``peer_id``
    is dropped, while what ``node`` sends still goes out, until :meth:`Cut.heal` or the end of
    the block."""
    ports = link_ports(node, peer_id)
    assert ports, f"no connection from {node.peer_id[:8]} to {peer_id[:8]} to deafen"
    link = Cut(ports, inbound_only=True)
    try:
        link.start()
        yield link
    finally:
        link.heal()
