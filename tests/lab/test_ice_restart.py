"""ICE restarts on libwebrtc: a connection rides out a change of address and a link cut longer
than libwebrtc's ICE gives a path (about 15 s), with its calls, as the same connection.

Two homes behind cone NATs with a STUN server (:mod:`tests.lab.nat`); both peers are
subprocesses, each in its home (``tests/lab/restartpeer.py``): libwebrtc's threads stay in the
network namespace they were first used in. Home A's peer calls home B's, one unary call after
another, while the test changes home A's address, then takes its link down for 17 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from .nat import HOMES, NatLab, unavailable_reason

pytestmark = [
    pytest.mark.skipif(
        unavailable_reason() is not None, reason=f"no NAT lab here: {unavailable_reason()}"
    ),
]
pytest.importorskip("webrtc.aiortc", reason="ICE restarts are libwebrtc's (p2prpc[native])")

#: libwebrtc gives a path up about 15 s into an outage: the cut lasts longer.
CUT = 17.0


@pytest.fixture(scope="module")
def lab() -> Iterator[NatLab]:
    with NatLab() as made:
        made.nat("cone")
        yield made


class Peer:
    """A restartpeer subprocess: its peer id, and its JSON lines as they come."""

    def __init__(self, lab: NatLab, home: str, role: str, transport: str) -> None:
        argv = [sys.executable, "-m", "tests.lab.restartpeer", role, transport,
                lab.tracker_url, "restart-lab", lab.stun_url()]  # fmt: skip
        self.process = subprocess.Popen(
            lab.command(home, *argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.peer_id = self.process.stdout.readline().decode().strip()
        self.lines: list[dict[str, Any]] = []

    def read_until(self, condition: Any, timeout: float) -> dict[str, Any]:
        """Read lines until one satisfies ``condition``; that line (AssertionError past
        ``timeout`` seconds or at the end of the output)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(json.loads(line))
            if condition(self.lines[-1]):
                return self.lines[-1]
        raise AssertionError(f"not seen within {timeout} s; last lines: {self.lines[-5:]}")

    def calls(self) -> int:
        return max((line["calls"] for line in self.lines if "calls" in line), default=0)

    def finish(self) -> dict[str, Any]:
        """Close its stdin: its summary."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.read_until(lambda line: "ice_restarts" in line, 90)

    def close(self) -> str:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stderr is not None
        log = self.process.stderr.read().decode(errors="replace")
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return log


@contextmanager
def peers(lab: NatLab, transports: tuple[str, str]) -> Iterator[tuple[Peer, Peer]]:
    """Home B's server and home A's client (which connects and starts calling)."""
    server = Peer(lab, "b", "server", transports[1])
    client = None
    try:
        assert len(server.peer_id) == 40, "the server did not start"
        client = Peer(lab, "a", "client", transports[0])
        assert len(client.peer_id) == 40, "the client did not start"
        client.read_until(lambda line: "calls" in line, 30)
        yield client, server
    finally:
        logs = [p.close() for p in (client, server) if p is not None]
        print("\n".join(log[-3000:] for log in logs))


def _ip(lab: NatLab, home: str, *argv: str) -> None:
    subprocess.run(["ip", "-n", lab.ns(f"home-{home}"), *argv], check=True)


@contextmanager
def readdressed(lab: NatLab, address: str) -> Iterator[None]:
    """Home A's host on ``address`` (its default route again), and back at the end."""
    old = HOMES["a"]
    _ip(lab, "a", "addr", "del", f"{old}/24", "dev", "eth0")
    _ip(lab, "a", "addr", "add", f"{address}/24", "dev", "eth0")
    _ip(lab, "a", "route", "replace", "default", "via", "192.168.1.1")
    try:
        yield
    finally:
        _ip(lab, "a", "addr", "flush", "dev", "eth0")
        _ip(lab, "a", "addr", "add", f"{old}/24", "dev", "eth0")
        _ip(lab, "a", "route", "replace", "default", "via", "192.168.1.1")


def cut_link(lab: NatLab, seconds: float) -> None:
    """Home A's link down for ``seconds``, then up with its default route again."""
    _ip(lab, "a", "link", "set", "eth0", "down")
    try:
        time.sleep(seconds)  # the outage itself: what is tested is that it lasts this long
    finally:
        _ip(lab, "a", "link", "set", "eth0", "up")
        _ip(lab, "a", "route", "replace", "default", "via", "192.168.1.1")


@pytest.mark.transport_only("libwebrtc", reason="its peers run libwebrtc in processes of their own")
def test_a_connection_rides_out_a_new_address_and_a_long_cut_with_its_calls(
    lab: NatLab,
) -> None:
    with peers(lab, ("libwebrtc", "libwebrtc")) as (client, server):
        before = client.calls()
        with readdressed(lab, "192.168.1.77"):
            # The calls go on from the new address (ICE restarted: the old one is gone).
            client.read_until(lambda line: line.get("calls", 0) >= before + 10, 40)
            moved = client.calls()
            cut_link(lab, CUT)
            client.read_until(lambda line: line.get("calls", 0) >= moved + 10, 40)
        summary = client.finish()
        far = server.finish()
    assert summary["failures"] == []
    assert (summary["peerconnect"], summary["peerclose"]) == (1, 0)
    assert (far["peerconnect"], far["peerclose"]) == (1, 0)
    # The first connection carried them through: ICE restarted on it, once for each fault.
    assert summary["first_open"]
    # One restart at least, for the new address (the cut may be ridden out by libwebrtc's own
    # ICE when the machine is slow to give the path up): no call failed either way.
    assert summary["first_restarts"] >= 1
    assert summary["ice_restarts"]["gave_up"] == 0
    assert summary["ice_restarts"]["refused"] == far["ice_restarts"]["refused"] == 0
