"""Cutting the link between two in-process peers: iptables rules on loopback drop the UDP
datagrams of their connections, both ways, until the cut is healed. Only those two ports are
touched, so other tests on the machine are not; every rule is removed on the way out.

Needs Linux, root and ``iptables`` (``make apt`` installs it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

from p2prpc.mux import Mux


def unavailable_reason() -> str | None:
    """Why this machine cannot cut a link, or ``None`` when it can."""
    if not sys.platform.startswith("linux"):
        return "iptables needs Linux"
    if os.geteuid() != 0:
        return "changing iptables rules needs root"
    if shutil.which("iptables") is None:
        return "`iptables` is not installed: run `make apt`"
    return None


def link_ports(node: Mux, peer_id: str) -> list[int]:
    """The UDP ports, at both ends, of every connection from ``node`` to ``peer_id``."""
    remote = node.p2pt._remotes.get(peer_id)
    ports = []
    for channel in remote.channels.values() if remote is not None else ():
        pair = channel.link.selected_pair()
        if pair is not None:
            (_, local), (_, far) = pair
            ports += [local, far]
    return ports


def _rule(action: str, port: int) -> list[str]:
    return [
        "iptables",
        action,
        "INPUT",
        "-i",
        "lo",
        "-p",
        "udp",
        "--dport",
        str(port),
        "-j",
        "DROP",
    ]


class Cut:
    """A cut in force (see :func:`cut`)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self._added: list[int] = []

    def start(self) -> None:
        for port in self.ports:
            subprocess.run(_rule("-I", port), check=True, capture_output=True)
            self._added.append(port)

    def heal(self) -> None:
        """Let datagrams through again."""
        while self._added:
            port = self._added.pop()
            subprocess.run(_rule("-D", port), check=False, capture_output=True)


@contextlib.contextmanager
def cut(node: Mux, peer_id: str) -> Iterator[Cut]:
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
