"""The private network the interop tests run in.

Chromium never offers ICE candidates on loopback (only on the interface of its default route), and
aiortc skips loopback too, so WebRTC peers on one machine meet only over a real interface. The test
run therefore creates a network namespace holding `lo`, a veth pair with private addresses and a
default route that leads nowhere, and the pytest process moves itself into it for the whole
session: every tracker, node agent and browser it starts inherits the namespace, in-process aiortc
peers gather the veth addresses, and loopback keeps working for everything else. Nothing inside
can reach beyond the namespace.

Entering switches only the calling thread (setns(2) with CLONE_NEWNET), and new threads and
processes inherit the namespace of the thread that creates them: enter from the main thread
before any event loop or worker thread exists.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from dataclasses import dataclass, field

try:  # tests/ is on the path (pytest)
    from lab import namespaces  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # imported from the repository's root, as tests.interop.netns (make bench)
    from tests.lab import namespaces  # type: ignore[no-redef, unused-ignore]

PREFIX = "p2prpc-test-"
"""Namespaces named PREFIX + pid belong to the test run of that pytest process."""

ADDRESSES = ("10.213.0.1", "10.213.0.2")
"""The veth pair's addresses (v0, v1), one /24, only meaningful inside the namespace."""

GATEWAY = "10.213.0.254"
"""The default route's gateway: an address on v0's link that nothing answers."""


def unavailable_reason() -> str | None:
    """Why this machine cannot host the test network, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: run `make apt`"
    return None


def _ip(*args: str) -> str:
    output: str = namespaces.run("ip", *args)
    return output


@dataclass
class TestNetwork:
    """A network namespace this process created and lives in (see the module docstring)."""

    __test__ = False  # not a test class, despite its name

    name: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    addresses: tuple[str, str] = ADDRESSES
    _home: int | None = None  # a handle on the namespace we came from

    def create_and_enter(self) -> None:
        """Create the namespace with `lo` and the veth pair up, then move this thread into it."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("enter the test network from the main thread")
        namespaces.remove_stale(PREFIX)
        _ip("netns", "add", self.name)
        try:
            n = ("-n", self.name)
            _ip(*n, "link", "set", "lo", "up")
            _ip(*n, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
            for device, address in zip(("v0", "v1"), self.addresses, strict=True):
                # No IPv6 link-local addresses: they would only add candidates that go nowhere.
                _ip(*n, "link", "set", device, "addrgenmode", "none")
                _ip(*n, "addr", "add", f"{address}/24", "dev", device)
                _ip(*n, "link", "set", device, "up")
            # Chromium signals only the host candidate of the interface holding the default route
            # (it asks the kernel which source address would reach a public one), and none at all
            # without a default route. The gateway does not exist, so nothing is ever delivered:
            # UDP sends vanish and TCP connections fail once the gateway's ARP lookup does.
            _ip(*n, "route", "add", "default", "via", GATEWAY, "dev", "v0")
            self._home = namespaces.current()
            target = namespaces.open_namespace(self.name)
            try:
                namespaces.setns(target)
            finally:
                os.close(target)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Go back home, end whatever still runs inside, and delete the namespace."""
        if self._home is not None:
            try:
                namespaces.setns(self._home)
            finally:
                os.close(self._home)
                self._home = None
        # Only processes this run started can be inside: leftovers of failed cleanups.
        namespaces.delete(self.name)


current: TestNetwork | None = None
"""The network this process is in, while the interop tests run."""


def enter() -> TestNetwork:
    """Create the session's test network and move the calling (main) thread into it."""
    global current
    if current is None:
        network = TestNetwork()
        network.create_and_enter()
        current = network
    return current


def leave() -> None:
    """Leave and delete the session's test network, if there is one."""
    global current
    if current is not None:
        network, current = current, None
        network.close()
