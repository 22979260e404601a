"""A real TURN server (coturn) for tests, on a network of its own.

:class:`TurnLab` makes a network namespace joined to the caller's by a veth pair with private
addresses: :attr:`TurnLab.client` on the caller's side, :attr:`TurnLab.server` inside, and no
route beyond this process's own addresses. coturn (``turnserver``, Debian package ``coturn``:
``make apt``) runs inside with a configuration file of its own in a temporary directory:
long-term credentials (:data:`USER`, :data:`PASSWORD`, realm :data:`REALM`; or, with
``auth_secret``, the TURN REST API's made from that secret), TURN over UDP and
TCP on :data:`PORT`, over TLS on :data:`TLS_PORT` (a self-signed certificate made here),
relayed addresses on :attr:`TurnLab.server` and relaying only to those, no CLI. Peers in this
process reach it through the veth pair; peers limited to relayed candidates
(``ice_transport_policy="relay"``) meet only through it. Nothing leaves the machine. Every
process, namespace and interface made here is removed on :meth:`TurnLab.close` (or at the end
of a ``with`` block).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiortc import RTCIceServer

from .namespaces import delete, inside, remove_stale, run, stop

PREFIX = "p2prpc-turn-"
"""Namespaces named PREFIX + pid belong to that process."""

USER = "p2prpc"
PASSWORD = "relay-me-please"
REALM = "p2prpc.test"
PORT = 3478
"""TURN over UDP and over TCP."""
TLS_PORT = 5349
"""TURN over TLS (``turns:``)."""
DEAD_PORT = 3479
"""A port of the server's address where nothing listens (a dead TURN server)."""


def unavailable_reason() -> str | None:
    """Why this machine cannot run the lab, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "a network namespace and a veth pair need root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: run `make apt`"
    if shutil.which("turnserver") is None:
        return "`turnserver` (coturn) is not installed: run `make apt`"
    return None


def self_signed(directory: Path, address: str) -> tuple[Path, Path]:
    """A certificate for ``address`` signed by its own key: (certificate, key) PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def write_config(
    directory: Path,
    address: str,
    log: Path,
    auth_secret: str | None = None,
    *,
    port: int = PORT,
    tls_port: int = TLS_PORT,
) -> Path:
    """coturn's configuration file in ``directory``: listening and relaying on ``address``
    only (relaying only to it), TURN over UDP and TCP on ``port`` and TLS on ``tls_port`` (a
    certificate made here), long-term credentials (:data:`USER`, :data:`PASSWORD`) or, with
    ``auth_secret``, TURN REST API ones; it logs to ``log``."""
    cert, key = self_signed(directory, address)
    config = directory / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                f"listening-ip={address}",
                f"relay-ip={address}",
                f"listening-port={port}",
                f"tls-listening-port={tls_port}",
                "min-port=49152",
                "max-port=49999",
                "lt-cred-mech",
                *(
                    [f"user={USER}:{PASSWORD}"]
                    if auth_secret is None
                    else ["use-auth-secret", f"static-auth-secret={auth_secret}"]
                ),
                f"realm={REALM}",
                f"cert={cert}",
                f"pkey={key}",
                "no-dtls",
                "no-cli",
                "no-multicast-peers",
                "denied-peer-ip=0.0.0.0-255.255.255.255",
                f"allowed-peer-ip={address}",
                "fingerprint",
                f"pidfile={directory / 'turnserver.pid'}",
                f"userdb={directory / 'turndb'}",
                f"log-file={log}",
                "simple-log",
                "verbose",
                "",
            ]
        )
    )
    return config


def wait_listening(
    process: subprocess.Popen[bytes],
    address: tuple[str, int],
    deadline: float,
    log: Callable[[], str],
) -> None:
    """Until coturn (``process``) accepts TCP at ``address``; ``RuntimeError`` with the end of
    its ``log()`` when it exits first or ``deadline`` (``time.monotonic``) passes."""
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"turnserver exited: {log()[-2000:]}")
        try:
            with socket.create_connection(address, timeout=0.5):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"turnserver not listening: {log()[-2000:]}") from error
            time.sleep(0.05)  # polling a port: there is nothing to wait on


def stop_coturn(
    process: subprocess.Popen[bytes] | None, directory: tempfile.TemporaryDirectory[str] | None
) -> tuple[None, None]:
    """Stop a coturn and remove its configuration's directory, either of them absent; ``(None,
    None)``, for the owner to hold instead."""
    if process is not None:
        stop(process)
    if directory is not None:
        directory.cleanup()
    return None, None


@dataclass
class TurnLab:
    """coturn in a namespace of its own, reachable from this process (see the module docstring)."""

    name: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    auth_secret: str | None = None
    """With a secret, coturn takes TURN REST API credentials made from it (``use-auth-secret``,
    ``static-auth-secret``) instead of :data:`USER` and :data:`PASSWORD`."""
    _process: subprocess.Popen[bytes] | None = None
    _directory: tempfile.TemporaryDirectory[str] | None = None
    _log: Path | None = None

    @property
    def _net(self) -> int:
        return os.getpid() % 250 + 1

    @property
    def client(self) -> str:
        """This process's address on the veth pair."""
        return f"10.217.{self._net}.1"

    @property
    def server(self) -> str:
        """coturn's address: where it listens and relays from."""
        return f"10.217.{self._net}.2"

    @property
    def _outside(self) -> str:
        return f"ptc{os.getpid() % 100000}"  # the veth end on this process's side

    def url(
        self, scheme: str = "turn", transport: str | None = None, port: int | None = None
    ) -> str:
        """A TURN URL of this server: ``turn:ADDRESS:3478``, ``...?transport=tcp``, ``turns:``."""
        port = port if port is not None else TLS_PORT if scheme == "turns" else PORT
        query = f"?transport={transport}" if transport is not None else ""
        return f"{scheme}:{self.server}:{port}{query}"

    def ice_server(
        self, *urls: str, username: str = USER, credential: str = PASSWORD
    ) -> RTCIceServer:
        """An ``RTCIceServer`` for ``urls`` (all of this server's by default), with credentials."""
        chosen = list(urls) or [self.url(), self.url(transport="tcp"), self.url("turns")]
        return RTCIceServer(urls=chosen, username=username, credential=credential)

    def log(self) -> str:
        """What coturn logged so far."""
        return self._log.read_text(errors="replace") if self._log is not None else ""

    def open(self) -> TurnLab:
        """Make the namespace and the veth pair and start coturn; returns once it listens."""
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"no TURN lab on this machine: {reason}")
        remove_stale(PREFIX)
        run("ip", "netns", "add", self.name)
        try:
            inside = ("ip", "-n", self.name)
            run(*inside, "link", "set", "lo", "up")
            run("ip", "link", "add", self._outside, "type", "veth", "peer", "name", "turn0",
                 "netns", self.name)  # fmt: skip
            for ip, device, address in (
                (("ip",), self._outside, self.client),
                (inside, "turn0", self.server),
            ):
                run(*ip, "link", "set", device, "addrgenmode", "none")  # no IPv6 candidates
                run(*ip, "addr", "add", f"{address}/24", "dev", device)
                run(*ip, "link", "set", device, "up")
            # Back to this process whatever address it sends from (libwebrtc tries every one
            # of its interfaces): coturn relays only to its own addresses (allowed-peer-ip).
            run(*inside, "route", "add", "default", "via", self.client)
            self._directory = tempfile.TemporaryDirectory(prefix="p2prpc-turn-")
            directory = Path(self._directory.name)
            self._log = directory / "turnserver.log"
            config = write_config(directory, self.server, self._log, self.auth_secret)
            self._process = subprocess.Popen(
                ["ip", "netns", "exec", self.name, "turnserver", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._wait_listening()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_listening(self, timeout: float = 10.0) -> None:
        """Until coturn accepts TCP on both of its ports (it listens on UDP by then too)."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        for port in (PORT, TLS_PORT):
            wait_listening(self._process, (self.server, port), deadline, self.log)

    def close(self) -> None:
        """Stop coturn, delete the namespace and the veth pair (idempotent)."""
        self._process, self._directory = stop_coturn(self._process, self._directory)
        delete(self.name)  # takes the veth pair with it
        with contextlib.suppress(RuntimeError):
            run("ip", "link", "del", self._outside)

    def __enter__(self) -> TurnLab:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def free_port(host: str) -> int:
    """A port of ``host`` free for both UDP and TCP now (coturn listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port


@dataclass
class LoopbackTurn:
    """coturn on 127.0.0.1 on ports free when it starts, in this process's network (no root:
    only ``turnserver``; libwebrtc may then reach it from other interfaces too) or in the
    network namespace ``namespace`` (root; one with only ``lo`` up has it reached over ``lo``
    alone). Same credentials as :class:`TurnLab`; it relays only to 127.0.0.1, and only with
    ``loopback_peers`` (coturn's ``--allow-loopback-peers``; without, every relay is refused)."""

    host: str = "127.0.0.1"
    namespace: str | None = None
    loopback_peers: bool = True
    port: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _directory: tempfile.TemporaryDirectory[str] | None = None
    _log: Path | None = None

    def url(self, transport: str | None = None) -> str:
        query = f"?transport={transport}" if transport is not None else ""
        return f"turn:{self.host}:{self.port}{query}"

    def ice_server(self, *urls: str, credential: str = PASSWORD) -> RTCIceServer:
        return RTCIceServer(urls=list(urls) or [self.url()], username=USER, credential=credential)

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log is not None else ""

    def open(self) -> LoopbackTurn:
        if shutil.which("turnserver") is None:
            raise RuntimeError("`turnserver` (coturn) is not installed: run `make apt`")
        with inside(self.namespace) if self.namespace else contextlib.nullcontext():
            self._start()
        return self

    def _start(self) -> None:
        self.port = free_port(self.host)
        self._directory = tempfile.TemporaryDirectory(prefix="p2prpc-turn-lo-")
        directory = Path(self._directory.name)
        self._log = directory / "turnserver.log"
        config = write_config(
            directory, self.host, self._log, port=self.port, tls_port=free_port(self.host)
        )
        self._process = subprocess.Popen(
            ["turnserver", "-c", str(config)]
            + (["--allow-loopback-peers"] if self.loopback_peers else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(self._process, (self.host, self.port), time.monotonic() + 10.0, self.log)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._process, self._directory = stop_coturn(self._process, self._directory)

    def __enter__(self) -> LoopbackTurn:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
