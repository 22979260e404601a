"""Two homes behind NAT routers and a public network between them, for tests.

Six network namespaces (all addresses private; no packet leaves the machine)::

    home A 192.168.1.2 ── router A ── 10.218.1.0/24 ─┐
                          (NAT)                      public: 10.218.0.1 (coturn, the tracker)
    home B 192.168.2.2 ── router B ── 10.218.2.0/24 ─┘      default route into a dummy device

Each router masquerades what leaves its home (iptables ``MASQUERADE``) and drops what arrives
unasked (only replies to what its home sent pass, as a home router's firewall does). Its NAT
maps (:meth:`NatLab.nat`) as a ``"cone"`` (endpoint-independent: one outside port per inside
socket, whoever it talks to, so a STUN server's view of it is what a peer sees too) or as a
``"symmetric"`` NAT (``--random-fully``: a new random port for each destination, so the port a
STUN server saw is not the one a peer sees). The public namespace forwards between the routers;
its default route leads into a namespace that drops everything, where packets to addresses
nobody has (a home's private address) vanish silently, as on the internet. coturn
(:func:`tests.lab.turn.write_config`) and the embedded tracker (``p2prpc tracker``) listen on
:data:`PUBLIC` there.

Peers: the test process enters home A with the thread that runs its event loop
(:meth:`NatLab.inside`: the sockets it makes meanwhile are in home A), and a peer in home B runs
as a subprocess (:meth:`NatLab.command`). :meth:`NatLab.cut` cuts a home's uplink for a while;
:meth:`NatLab.turn_allocations` counts the allocations coturn granted; :meth:`NatLab.paced_tracker`
is a second tracker telling a short re-announce interval. Everything is removed on
:meth:`NatLab.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .namespaces import delete, inside, remove_stale, run, stop
from .turn import PASSWORD, PORT, USER, write_config

PREFIX = "p2prpc-nat-"
"""Namespaces named PREFIX + pid + "-" + a role belong to that process."""

PUBLIC = "10.218.0.1"
"""The public network's server address: coturn's and the tracker's."""

HOMES = {"a": "192.168.1.2", "b": "192.168.2.2"}
"""Each home's one host."""

Mapping = Literal["cone", "symmetric"]

ALLOCATED = "turn-allocated"
"""The comment of the rule that counts coturn's Allocate success responses."""


def unavailable_reason() -> str | None:
    """Why this machine cannot host the lab, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces, veth pairs and iptables rules need root"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("turnserver", "coturn")):
        if shutil.which(tool) is None:
            return f"`{tool}` ({package}) is not installed: run `make apt`"
    return None


@dataclass
class NatLab:
    """Two homes behind NATs, coturn and a tracker on a public network (module docstring)."""

    prefix: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}-")
    tracker_url: str = ""
    """The tracker, telling its default re-announce interval (120 s)."""
    _paced: dict[int, str] = field(default_factory=dict)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _directory: tempfile.TemporaryDirectory[str] | None = None
    _log: Path | None = None

    def ns(self, role: str) -> str:
        """The namespace of ``role``: ``public``, ``sink`` (where its default route leads),
        ``router-a``, ``router-b``, ``home-a``, ``home-b``."""
        return self.prefix + role

    def command(self, home: str, *argv: str) -> list[str]:
        """``argv`` as a command that runs in home ``home`` (``"a"`` or ``"b"``)."""
        return ["ip", "netns", "exec", self.ns(f"home-{home}"), *argv]

    def stun_url(self) -> str:
        return f"stun:{PUBLIC}:{PORT}"

    def turn_url(self, password: str = PASSWORD, transport: str = "udp") -> str:
        """coturn as a TURN URL with credentials (``password``: a wrong one, to be refused)."""
        return f"turn:{USER}:{password}@{PUBLIC}:{PORT}?transport={transport}"

    def paced_tracker(self, interval: int) -> str:
        """The URL of a tracker beside :attr:`tracker_url` that tells ``interval`` seconds
        between announces (started on first use); it keeps the default timeouts for silent
        peers and sockets (360 s and 240 s), as at the default interval."""
        if interval not in self._paced:
            pace = ["--interval", str(interval), "--peer-timeout", "360", "--idle-timeout", "240"]
            self._paced[interval] = self._start_tracker(pace)
        return self._paced[interval]

    @contextlib.contextmanager
    def cut(self, home: str) -> Iterator[None]:
        """Cut home ``home``'s uplink: its router forwards nothing between the home and the
        public network, either way, silently, until the block ends. NAT mappings stay (the
        router still tracks what it drops), as when a line goes down for a while."""
        router = f"router-{home}"
        rules = [["FORWARD", "-i", "wan"], ["FORWARD", "-o", "wan"]]
        added: list[list[str]] = []
        try:
            for rule in rules:
                self._in(router, "iptables", "-I", *rule, "-j", "DROP")
                added.append(rule)
            yield
        finally:
            for rule in added:
                self._in(router, "iptables", "-D", *rule, "-j", "DROP")

    def turn_allocations(self) -> int:
        """How many TURN allocations coturn has granted over UDP so far: the Allocate success
        responses it sent, counted by the kernel as they leave (exact, unlike its log, which
        it writes when it gets to it)."""
        public = ("ip", "netns", "exec", self.ns("public"))
        rules = run(*public, "iptables", "-L", "OUTPUT", "-v", "-n", "-x").splitlines()
        return sum(int(rule.split()[0]) for rule in rules if f"/* {ALLOCATED} */" in rule)

    def turn_log(self) -> str:
        """What coturn logged so far."""
        return self._log.read_text(errors="replace") if self._log is not None else ""

    def _ip(self, role: str, *argv: str) -> None:
        run("ip", "-n", self.ns(role), *argv)

    def _in(self, role: str, *argv: str) -> None:
        run("ip", "netns", "exec", self.ns(role), *argv)

    def _wire(self, left: str, left_if: str, right: str, right_if: str) -> None:
        run("ip", "-n", self.ns(left), "link", "add", left_if, "type", "veth", "peer", "name",
             right_if, "netns", self.ns(right))  # fmt: skip
        for role, device in ((left, left_if), (right, right_if)):
            self._ip(role, "link", "set", device, "addrgenmode", "none")  # no IPv6 candidates

    def _address(self, role: str, device: str, address: str) -> None:
        self._ip(role, "addr", "add", address, "dev", device)
        self._ip(role, "link", "set", device, "up")

    def open(self) -> NatLab:
        """Make the namespaces, start coturn and the tracker; returns once both listen."""
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"no NAT lab on this machine: {reason}")
        remove_stale(PREFIX)
        try:
            roles = ("public", "sink", "router-a", "router-b", "home-a", "home-b")
            for role in roles:
                run("ip", "netns", "add", self.ns(role))
                self._ip(role, "link", "set", "lo", "up")
            # The public network: the servers' address, and a silent default route into a
            # namespace that forwards nothing and answers nothing.
            self._ip("public", "addr", "add", f"{PUBLIC}/32", "dev", "lo")
            self._wire("public", "sink", "sink", "eth0")
            self._address("public", "sink", "10.218.9.1/24")
            self._address("sink", "eth0", "10.218.9.2/24")
            self._in("sink", "iptables", "-A", "INPUT", "-j", "DROP")
            self._ip("public", "route", "add", "default", "via", "10.218.9.2")
            self._in("public", "sysctl", "-qw", "net.ipv4.ip_forward=1")
            for home, number in (("a", 1), ("b", 2)):
                router, host = f"router-{home}", f"home-{home}"
                self._wire("public", f"isp-{home}", router, "wan")
                self._address("public", f"isp-{home}", f"10.218.{number}.1/24")
                self._address(router, "wan", f"10.218.{number}.2/24")
                self._ip(router, "route", "add", "default", "via", f"10.218.{number}.1")
                self._wire(router, "lan", host, "eth0")
                self._address(router, "lan", f"192.168.{number}.1/24")
                self._address(host, "eth0", f"{HOMES[home]}/24")
                self._ip(host, "route", "add", "default", "via", f"192.168.{number}.1")
                self._in(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
                # A home router's firewall: what arrives from outside unasked is dropped,
                # silently (no ICMP back).
                for chain in ("INPUT", "FORWARD"):
                    self._in(router, *f"iptables -A {chain} -i wan -m conntrack --ctstate "
                             "ESTABLISHED,RELATED -j ACCEPT".split())  # fmt: skip
                    self._in(router, *f"iptables -A {chain} -i wan -j DROP".split())
            self.nat("cone")
            # Counts what coturn answers an Allocate request with success (STUN type 0x0103).
            self._in("public", *f"iptables -A OUTPUT -p udp --sport {PORT} -m u32 --u32 "
                     f"0>>22&0x3C@8>>16=0x0103 -m comment --comment {ALLOCATED} "
                     "-j ACCEPT".split())  # fmt: skip
            self._start_servers()
        except BaseException:
            self.close()
            raise
        return self

    def nat(self, mapping: Mapping) -> None:
        """Make both routers map as ``mapping`` (for connections made from now on)."""
        extra = " --random-fully" if mapping == "symmetric" else ""
        for home in ("a", "b"):
            router = f"router-{home}"
            self._in(router, "iptables", "-t", "nat", "-F", "POSTROUTING")
            self._in(router, *f"iptables -t nat -A POSTROUTING -o wan -j MASQUERADE{extra}".split())

    def _start_servers(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="p2prpc-nat-")
        directory = Path(self._directory.name)
        self._log = directory / "turnserver.log"
        config = write_config(directory, PUBLIC, self._log)
        coturn = subprocess.Popen(
            ["ip", "netns", "exec", self.ns("public"), "turnserver", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._processes.append(coturn)
        self.tracker_url = self._start_tracker([])
        deadline = time.monotonic() + 10.0
        while f"{PUBLIC}:{PORT}" not in self.turn_log() or "listener opened" not in self.turn_log():
            if coturn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start: {self.turn_log()[-2000:]}")
            time.sleep(0.05)  # reading a log file: there is nothing to wait on

    def _start_tracker(self, options: list[str]) -> str:
        """Start ``p2prpc tracker`` with ``options`` on the public network; its URL."""
        tracker = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns("public"),
                sys.executable,
                "-m",
                "p2prpc",
                "tracker",
                "--host",
                PUBLIC,
                "--port",
                "0",
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=_ROOT,
        )
        self._processes.append(tracker)
        assert tracker.stdout is not None
        line = tracker.stdout.readline().decode().strip()
        if not re.fullmatch(r"ws://[0-9.]+:[0-9]+", line):
            raise RuntimeError(f"the tracker did not start: {line!r}")
        return line

    def close(self) -> None:
        """Stop every process, delete every namespace (and with them their links)."""
        for process in self._processes:
            stop(process)
            if process.stdout is not None:
                process.stdout.close()
        self._processes.clear()
        self._paced.clear()
        for role in ("home-a", "home-b", "router-a", "router-b", "public", "sink"):
            delete(self.ns(role))
        directory, self._directory = self._directory, None
        if directory is not None:
            directory.cleanup()

    def __enter__(self) -> NatLab:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def inside(self, home: str = "a") -> contextlib.AbstractContextManager[None]:
        """Move the calling thread into home ``home``, and back to where it was at the end."""
        return inside(self.ns(f"home-{home}"))


_ROOT = Path(__file__).resolve().parents[2]  # the repository, where pytest runs


async def libwebrtc_pass(test_file: str, own_process: str) -> str:
    """Run ``test_file``'s tests on libwebrtc in a pytest process of their own (libwebrtc's threads
    stay in the network namespace they were first made in), with ``own_process`` set in its
    environment; its output, once it passed (``AssertionError`` with its output otherwise)."""
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--transport",
            "libwebrtc",
            test_file,
        ],
        cwd=_ROOT,
        env={**os.environ, own_process: "1"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout
