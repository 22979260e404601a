"""The libwebrtc transport: Chrome's WebRTC engine through the ``wrtc`` package (``pip install
p2prpc[native]``), by its aiortc-shaped API ``webrtc.aiortc``.

One :class:`WrtcLink` is one ``RTCPeerConnection`` with one ``RTCDataChannel``, as
:class:`~p2prpc.transport.aiortc.AiortcLink` is on aiortc; the two interoperate (the transport is
not visible to the other peer). Where it differs:

- libwebrtc gathers loopback candidates only when allowed before its first connection in the
  process (:func:`allow_loopback`, or ``WRTC_ALLOW_LOOPBACK=1``). A first link whose
  ``RTCOptions.host_addresses`` names a loopback address allows them, so that two peers on one
  machine meet over 127.0.0.1 as on aiortc; a later one raises :class:`LoopbackRefused`, which
  says how to allow them (a P2PT or Node pinned so raises it when it is made:
  :meth:`WrtcTransport.prepare`). They are offered only where ``host_addresses`` names them,
  as Chrome offers none (though, once allowed, a connection to an address of this machine may
  use them).
- :meth:`WrtcLink.selected_pair` is ``None`` while the remote candidate in use is one libwebrtc
  learnt from connectivity checks (peer-reflexive: its address is not exposed).
- ``RTCOptions.host_addresses`` keeps only the host candidates on the given addresses in the
  session descriptions this side sends (libwebrtc gathers on every interface; the remote peer
  learns of, and so checks, only the pinned ones).
- ``RTCOptions.udp_buffer_size`` is not applied: libwebrtc owns its sockets and sizes their
  buffers itself (:meth:`WrtcLink.udp_buffers` reports none).
- :attr:`WrtcLink.acknowledged` does not move (libwebrtc does not expose its SCTP
  acknowledgements); a peer's liveness is then judged by its own messages and pings alone.
- :attr:`WrtcLink.round_trip` and :attr:`WrtcLink.burst_size` are ``None``: libwebrtc measures its
  path and paces its own SCTP.
- libwebrtc ends gathering only when every server has answered or timed out (some 40 s for
  one that is dead) and, once loopback candidates are allowed, also asks the servers from the
  loopback interface, where no answer comes from a server elsewhere; ``wrtc`` would hold each
  description until its own gathering timeout (5 s). A link therefore sends its description
  once every network has a candidate or an error from each server URL it can reach (under
  ``ice_transport_policy="relay"``: once each TURN URL has given a relayed candidate or an
  error), or ``RTCOptions.gather_timeout`` seconds (2) after the first candidate a server gave
  (see :class:`_Gathering`), marked ``a=end-of-candidates``; with no server answering, after
  those 5 s. A TURN server silent until then is told in :attr:`WrtcLink.ice_errors` as giving
  no answer.
- What a TURN server refused (:attr:`WrtcLink.ice_errors`) comes from the native connection's
  ``icecandidateerror`` event (the W3C one: a TURN 401 is ``errorCode`` 401; 701, no answer or
  a host that does not resolve, is ``code`` ``None``). No answer to a question asked from
  loopback of a server that is not on loopback is not one (none comes there).
- The selected candidate pair is read from the native ICE transport under the aiortc-shaped one,
  ``RTCOptions.ice_transport_policy`` is set on the native connection, and the native
  ``icecandidate`` and ``icecandidateerror`` events are heard there (``webrtc.aiortc`` names
  none of these): the only places this module reaches below that API.

Every STUN and TURN server in ``RTCOptions.ice_servers`` is used, each URL of each (``stun:``,
``turn:`` over UDP or ``?transport=tcp``, ``turns:`` over TLS): libwebrtc gathers candidates from
all of them and ICE picks the best pair that works, so a dead server costs its own candidates
and, for each description, at most ``gather_timeout`` seconds past another server's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aioice.ice
from aiortc import RTCIceServer

from ..errors import PeerClosed
from ..wire.sdp import max_message_size
from ..wire.secret import AuthError, one_certificate, sdp_fingerprint
from . import IceServerError, RTCOptions, TransportUnavailable
from .channel import DataChannelLink
from .ice import redact

try:
    import webrtc
    import webrtc.aiortc as _wrtc
except ImportError as error:  # the optional dependency is missing
    raise TransportUnavailable(
        "the libwebrtc transport needs the wrtc package: pip install p2prpc[native]",
        name=error.name,
        path=error.path,
    ) from error

__all__ = [
    "LIBWEBRTC",
    "LoopbackRefused",
    "WrtcLink",
    "WrtcTransport",
    "allow_loopback",
    "first_of_each_turn_url",
    "pin_host_candidates",
]

logger = logging.getLogger(__name__)

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ host\b.*\r?\n", re.MULTILINE)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a hostname (mDNS candidates): not a loopback address
        return False


def pin_host_candidates(sdp: str, addresses: Sequence[str] | None) -> str:
    """``sdp`` without the host candidates whose address is not in ``addresses`` (``None``: every
    one but loopback addresses). Server-reflexive and relayed candidates are kept whatever their
    address."""
    keep = None if addresses is None else set(addresses)

    def kept(line: re.Match[str]) -> str:
        address = line.group(1)
        wanted = not _is_loopback(address) if keep is None else address in keep
        return line.group(0) if wanted else ""

    return _CANDIDATE.sub(kept, sdp)


_NETWORK_ID = re.compile(r"\bnetwork-id (\d+)")
_DEFAULT_PORTS = {"stun": 3478, "turn": 3478, "turns": 5349}
#: Seconds ``wrtc`` waits for candidates before it gives a description without the rest.
_GATHERING_TIMEOUT = 5.0
#: W3C ``RTCPeerConnectionIceErrorEvent.errorCode`` for a server that did not answer.
_UNREACHABLE = 701

#: (scheme, host, port, transport) of an ICE server URL, as libwebrtc's events name it.
_ServerKey = tuple[str, str, int, str]


def _server_key(url: str) -> _ServerKey | None:
    """What identifies an ICE server URL (``stun:``, ``turn:``, ``turns:``) whatever its spelling
    (default port and transport, credentials, case); ``None`` for one that is not such a URL."""
    scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not rest:
        return None
    rest, _, query = rest.partition("?")
    rest = rest.rpartition("@")[2]  # user:password@host:port
    transport = "tcp" if scheme == "turns" else "udp"
    for parameter in query.split("&"):
        name, _, value = parameter.partition("=")
        if name == "transport" and value:
            transport = value.lower()
    if rest.startswith("["):  # [IPv6]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = rest.partition(":")
    try:
        port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, host.lower(), port, transport


class _Gathering:
    """When the candidates a link will send are all in, before libwebrtc says so (it still asks
    the servers from the loopback interface, where in a process that allowed loopback
    candidates no answer comes, and waits out dead servers for some 40 s):

    - policy ``"all"``: every network has, for each STUN and TURN server URL it can reach, a
      candidate gathered from it or an ``icecandidateerror`` naming it (the error's address is
      the local one, masked, or its port the network's UDP socket's). A loopback network
      reaches only servers on loopback, any other network the servers of its address family
      not on loopback;
    - policy ``"relay"`` (no host candidates to tell the networks by): every TURN server URL
      has given a relayed candidate or an error on as many networks (network ids, or masked
      local addresses) as ``addresses`` (this machine's interface addresses) has that reach it;
    - or ``timeout`` seconds after the first candidate a server gave: the servers that have
      said nothing by then are left out (:meth:`unanswered`).

    A server libwebrtc says nothing of (a server-reflexive candidate equal to another, which it
    drops; a TCP TURN server it does not ask once a UDP one gave a relayed candidate) is waited
    for until then.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        relay: bool = False,
        addresses: Sequence[str] = (),
        timeout: float,
    ) -> None:
        self.urls = urls
        self.relay = relay
        self.addresses = addresses
        #: Under the relay policy, the networks each server URL was heard from.
        self.heard: dict[_ServerKey, set[str]] = {}
        self.timeout = timeout
        keys = {key for key in map(_server_key, urls) if key is not None}
        self.expected = {key for key in keys if key[0] != "stun"} if relay else keys
        #: network id -> (host address, UDP port) of each network
        self.networks: dict[str, tuple[str, int | None]] = {}
        self.resolved: dict[str, set[_ServerKey]] = {}
        #: The servers that gave a candidate or an error, from any network.
        self.answered: set[_ServerKey] = set()
        self.done = asyncio.Event()
        #: Set when libwebrtc said gathering is complete.
        self.complete = False
        #: Set when every server was heard from (every network's, under policy ``"all"``).
        self.settled = False
        self._timer: asyncio.TimerHandle | None = None

    def on_candidate(self, event: Any) -> None:
        candidate = event.candidate
        if candidate is None:  # gathering is complete
            self.complete = True
            self.done.set()
            return
        found = _NETWORK_ID.search(candidate.candidate)
        if found is None:
            return
        network = found.group(1)
        if candidate.type == "host":
            address = str(candidate.address or "")
            udp = candidate.port if candidate.protocol == "udp" else None
            if udp is None and network in self.networks:
                udp = self.networks[network][1]
            self.networks[network] = (address, udp)
            self.resolved.setdefault(network, set())
        elif candidate.url:
            key = _server_key(candidate.url)
            if key is not None:
                self.resolved.setdefault(network, set()).add(key)
                self.answered.add(key)
                self.heard.setdefault(key, set()).add(network)
                if self._timer is None and not self.done.is_set():
                    loop = asyncio.get_running_loop()
                    self._timer = loop.call_later(self.timeout, self.done.set)
        self._check()

    def on_error(self, event: Any) -> None:
        key = _server_key(str(event.url or ""))
        if key is None:
            return
        masked = str(event.address or "")
        if _told(key, masked, event.error_code):
            self.answered.add(key)
            self.heard.setdefault(key, set()).add(f"error from {masked or '?'}")
        prefix = masked[:-1] if masked.endswith("x") else masked
        for network, (address, port) in self.networks.items():
            if (port is not None and event.port == port) or (prefix and address.startswith(prefix)):
                self.resolved.setdefault(network, set()).add(key)
        self._check()

    def _check(self) -> None:
        if self.relay:
            settled = all(
                len(self.heard.get(key, ())) >= max(1, self._reaching(key)) for key in self.expected
            )
        else:
            # Not before a network that reaches a server has its answers: host candidates of
            # the others may still be on their way (the loopback ones often come first).
            wanted = [
                (self._reachable(address), self.resolved.get(network, set()))
                for network, (address, _) in self.networks.items()
            ]
            settled = any(servers for servers, _ in wanted) and all(
                servers <= heard for servers, heard in wanted
            )
        if settled and not self.done.is_set():
            self.settled = True
            self.done.set()

    def _reachable(self, address: str) -> set[_ServerKey]:
        """The servers a network of this address asks and hears from: from loopback only
        those on loopback; from any other network those not on loopback, and not those at an
        address of the other family (libwebrtc skips them without a word)."""
        if _is_loopback(address):
            return {key for key in self.expected if _is_loopback(key[1])}
        ipv6 = ":" in address
        return {
            key
            for key in self.expected
            if not _is_ip(key[1]) or ((":" in key[1]) == ipv6 and not _is_loopback(key[1]))
        }

    def _reaching(self, key: _ServerKey) -> int:
        """How many of ``addresses`` reach the server ``key`` (see :meth:`_reachable`)."""
        return sum(key in self._reachable(address) for address in self.addresses)

    def unanswered(self) -> list[str]:
        """The TURN server URLs (as libwebrtc names them) that gave neither a candidate nor an
        error, from any network."""
        return [
            _server_url(key)
            for key in sorted(self.expected - self.answered)
            if key[0] in ("turn", "turns")
        ]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _interface_addresses() -> list[str]:
    """The addresses libwebrtc gathers on (a network each): every interface's but link-local
    IPv6 ones, loopback ones only once allowed."""
    found = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)  # none on loopback
    return [*found, "127.0.0.1", "::1"] if _loopback_allowed else found


def _server_url(key: _ServerKey) -> str:
    scheme, host, port, transport = key
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}:{host}:{port}?transport={transport}"


def _told(key: _ServerKey, local: str, code: int | None) -> bool:
    """An ``icecandidateerror`` tells what the server did: it answered (a code other than 701),
    or the server is on loopback, or it was asked from elsewhere than loopback (where, for a
    server that is not on loopback, no answer comes)."""
    return code != _UNREACHABLE or _is_loopback(key[1]) or not _from_loopback(local)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _from_loopback(address: str) -> bool:
    """An ``icecandidateerror``'s local address (libwebrtc masks its end: ``127.0.0.x``) is a
    loopback one."""
    return address.startswith(("127.", "::1", "0:0:0:0:0:0:0:1"))


def _end_candidates(sdp: str) -> str:
    """``sdp`` with ``a=end-of-candidates`` closing each media section that lacks it (before its
    ``a=setup`` line when that comes last, as ``webrtc.aiortc`` puts it)."""
    head, *sections = sdp.split("\r\nm=")
    parts = [head]
    for section in sections:
        if "a=end-of-candidates" not in section:
            lines = section.rstrip("\r\n").split("\r\n")
            at = (
                len(lines) - 1
                if lines[-1].startswith("a=setup:") and len(lines) > 1
                else len(lines)
            )
            lines.insert(at, "a=end-of-candidates")
            section = "\r\n".join(lines) + "\r\n"
        parts.append(section)
    return "\r\nm=".join(parts)


class LoopbackRefused(RuntimeError):
    """A link was pinned to a loopback address after libwebrtc made a connection without loopback
    candidates: it decides once per process, before its first connection."""


_loopback_allowed = os.environ.get("WRTC_ALLOW_LOOPBACK") == "1"  # wrtc allowed them on import


def allow_loopback() -> None:
    """Let libwebrtc gather loopback candidates in this process (idempotent).

    :class:`LoopbackRefused` once a libwebrtc connection exists without them: call this (or set
    ``WRTC_ALLOW_LOOPBACK=1``) before the first one.
    """
    global _loopback_allowed
    if _loopback_allowed:
        return
    try:
        webrtc.allow_loopback()
    except webrtc.InvalidStateError as error:
        raise LoopbackRefused(
            "libwebrtc gathers loopback candidates only when allowed before its first connection"
            " in the process: set WRTC_ALLOW_LOOPBACK=1, or call"
            " p2prpc.transport.wrtc.allow_loopback() before making any"
        ) from error
    _loopback_allowed = True


_warned_repeats: set[tuple[str, ...]] = set()  # the TURN URLs given again a warning has named


def first_of_each_turn_url(servers: Sequence[RTCIceServer]) -> list[RTCIceServer]:
    """``servers`` with each TURN server URL kept in the first entry that names it only (URLs
    compared as :func:`_server_key` identifies them). libwebrtc asks one TURN server from one
    socket, and the server keeps one allocation per client address and port, so entries of one
    URL with other credentials never stand in for the first (the first's refusal stands: tested
    against coturn); a warning names them, once. Credentials that change are given one at a time,
    by a provider (:class:`~p2prpc.transport.ice.TurnRestCredentials` or a function)."""
    seen: set[_ServerKey] = set()
    kept: list[RTCIceServer] = []
    repeated: list[str] = []
    for server in servers:
        urls = [server.urls] if isinstance(server.urls, str) else list(server.urls)
        own = []
        for url in urls:
            key = _server_key(url)
            if key is not None and key[0] != "stun":
                if key in seen:
                    repeated.append(redact(url))
                    continue
                seen.add(key)
            own.append(url)
        if len(own) == len(urls):
            kept.append(server)
        elif own:
            kept.append(
                RTCIceServer(
                    urls=own,
                    username=server.username,
                    credential=server.credential,
                    credentialType=server.credentialType,
                )
            )
    if repeated and tuple(repeated) not in _warned_repeats:
        _warned_repeats.add(tuple(repeated))
        logger.warning(
            "TURN server given again in a later entry, ignored: %s (a TURN server keeps one"
            " allocation per client address and port, so only the first entry's credentials"
            " are used; rotate credentials with a provider such as TurnRestCredentials)",
            ", ".join(repeated),
        )
    return kept


class WrtcLink(DataChannelLink):
    """:class:`~p2prpc.transport.Link` over libwebrtc (see that protocol for the contract).

    ICE restarts: :meth:`restart_offer` asks the native connection to restart ICE
    (``restartIce()``, which ``webrtc.aiortc`` names not) and makes the next offer, which then
    carries new ICE credentials and candidates gathered anew on the interfaces there are now;
    the DTLS certificate, association and data channel stay. While ``keep_on_ice_failure`` is
    set, a failed ICE leaves the connection open for that.
    """

    ice_restarts = True

    def __init__(self, options: RTCOptions, *, initiator: bool, label: str) -> None:
        self.options = options
        if any(_is_loopback(address) for address in options.host_addresses or ()):
            allow_loopback()
        servers = [
            _wrtc.RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
            for s in first_of_each_turn_url(options.servers())
        ]
        self.pc = _wrtc.RTCPeerConnection(_wrtc.RTCConfiguration(iceServers=servers))
        if options.ice_transport_policy != "all":
            # webrtc.aiortc's configuration names no transport policy: set it on the native
            # connection, before any candidate is gathered (every server is kept as given).
            native = self.pc._native
            configuration = native.get_configuration()
            configuration.ice_transport_policy = options.ice_transport_policy
            native.set_configuration(configuration)
        self._init_channel(initiator=initiator, label=label)
        self._local_sdp: str | None = None  # what we sent: with only the pinned host candidates
        self._remote_sdp: str | None = None
        self._remote_max: int | None = None
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self._heard_native = False  # the native candidate events are heard (from _set_local)
        self._gathering: _Gathering | None = None
        self._setting: asyncio.Future[None] | None = None  # a description's gathering, left
        self._restart_gathered: asyncio.Event | None = None  # set when a restart's gathering ends
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("iceconnectionstatechange", self._on_ice_connection_state)
        if initiator:
            self._attach(self.pc.createDataChannel(label))
        else:
            self.pc.on("datachannel", self._attach)

    # -- signalling ---------------------------------------------------------------------------

    async def create_offer(self) -> str:
        async with self._making():
            return await self._set_local(await self.pc.createOffer())

    async def accept_offer(self, sdp: str) -> str:
        async with self._making():
            sdp = self._remote(sdp)
            await self.pc.setRemoteDescription(_wrtc.RTCSessionDescription(sdp=sdp, type="offer"))
            return await self._set_local(await self.pc.createAnswer())

    async def accept_answer(self, sdp: str) -> None:
        async with self._making():
            sdp = self._remote(sdp)
            await self.pc.setRemoteDescription(_wrtc.RTCSessionDescription(sdp=sdp, type="answer"))

    def _remote(self, sdp: str) -> str:
        """The remote description as libwebrtc is to take it: naming one certificate, the one
        the handshake binds (:func:`~p2prpc.wire.secret.one_certificate`; ``AuthError``
        otherwise, before anything is applied). Kept before it is applied: the data channel can
        open before the coroutine applying it resumes, and its handshake reads the
        fingerprints."""
        sdp = one_certificate(sdp)
        self._remote_sdp = sdp
        self._remote_max = max_message_size(sdp)
        return sdp

    @contextlib.asynccontextmanager
    async def _making(self) -> AsyncIterator[None]:
        """:class:`PeerClosed` for a step of the handshake that the link's close overtook.

        libwebrtc aborts an operation in flight on a closed connection, and ``wrtc`` tells its
        awaiter by raising :class:`asyncio.CancelledError` into it, which is no cancellation of
        the caller's: it is told apart by the task's own cancellation count.
        """
        if self._closed:
            raise PeerClosed(f"data channel {self._label or '?'} closed while it was being made")
        task = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else 0
        try:
            yield
        except asyncio.CancelledError:
            if not self._closed or task is None or task.cancelling() > cancelling:
                raise  # the caller's own cancellation
            raise PeerClosed(
                f"data channel {self._label or '?'} closed while it was being made"
            ) from None
        if self._closed:
            raise PeerClosed(f"data channel {self._label or '?'} closed while it was being made")

    def _hear_native(self) -> None:
        """Hear the native connection's candidate events (the loop runs: it takes handlers then)."""
        if self._heard_native:
            return
        self._heard_native = True
        native: Any = self.pc._native
        native.on("icecandidateerror", self._on_candidate_error)
        native.on("icecandidate", self._on_candidate)
        native.on("iceconnectionstatechange", self._on_native_ice_state)
        urls = [
            url
            for server in self.options.servers()
            for url in ([server.urls] if isinstance(server.urls, str) else server.urls)
        ]
        if urls:
            self._gathering = self._new_gathering(urls)

    def _new_gathering(self, urls: Sequence[str]) -> _Gathering:
        relay = self.options.ice_transport_policy == "relay"
        return _Gathering(
            urls,
            relay=relay,
            addresses=_interface_addresses() if relay else (),
            timeout=self.options.gather_timeout,
        )

    def _on_native_ice_state(self, *_: object) -> None:
        """``disconnected`` (nothing heard for a few seconds), which ``webrtc.aiortc`` reports
        as ``completed``, as aiortc would."""
        native: Any = self.pc._native
        if not self._closed and str(native.ice_connection_state.value) == "disconnected":
            self.on_ice_state("disconnected")

    def _on_candidate(self, event: Any) -> None:
        if event.candidate is None and self._restart_gathered is not None:
            self._restart_gathered.set()
        if self._gathering is not None:
            self._gathering.on_candidate(event)

    def _on_candidate_error(self, event: Any) -> None:
        """A STUN or TURN server refused, or did not answer: a TURN server's is kept, unless it
        is no answer to a question asked from loopback of a server elsewhere (none comes)."""
        if self._gathering is not None:
            self._gathering.on_error(event)
        url = str(event.url or "")
        key = _server_key(url)
        if key is None or key[0] not in ("turn", "turns"):
            return
        if not _told(key, str(event.address or ""), event.error_code):
            return
        text = str(event.error_text or "")
        code = None if event.error_code == _UNREACHABLE else int(event.error_code)
        unresolved = code is None and "host lookup" in text.lower()
        self._ice_error(IceServerError(url, code, text or "no answer", unresolved))

    def _ice_error(self, error: IceServerError) -> None:
        """Keep ``error``: one per server and code, not one per network."""
        if all((e.url, e.code) != (error.url, error.code) for e in self._ice_errors):
            self._ice_errors.append(error)

    def _unanswered(self, gathering: _Gathering, began: float) -> None:
        """The description leaves without the TURN servers that said nothing: keep each as
        giving no answer (libwebrtc tells of them only some 40 s later)."""
        if gathering.complete or gathering.settled:
            return
        waited = asyncio.get_running_loop().time() - began
        for url in gathering.unanswered():
            self._ice_error(IceServerError(url, None, f"nothing within {waited:.1f} s"))

    async def _set_local(self, description: _wrtc.RTCSessionDescription) -> str:
        """Set the local description and return its SDP, once it carries every candidate (every
        one this link sends: see :class:`_Gathering`)."""
        self._hear_native()
        gathering = self._gathering
        if gathering is None:
            await self.pc.setLocalDescription(description)  # returns once gathering is complete
            local = self.pc.localDescription
            assert local is not None  # set just above
            sdp = local.sdp
        else:
            sdp = await self._set_local_early(description, gathering)
        self._local_sdp = pin_host_candidates(sdp, self.options.host_addresses)
        return self._local_sdp

    async def _set_local_early(
        self, description: _wrtc.RTCSessionDescription, gathering: _Gathering
    ) -> str:
        """Set the local description; return its SDP once gathering completes, or once every
        network but loopback has its candidates (``wrtc``'s wait then ends in background)."""
        began = asyncio.get_running_loop().time()
        setting = asyncio.ensure_future(self.pc.setLocalDescription(description))
        gathered = asyncio.ensure_future(gathering.done.wait())
        try:
            await asyncio.wait([setting, gathered], return_when=asyncio.FIRST_COMPLETED)
            local = self.pc.localDescription
            if not setting.done() and local is not None:
                # Set natively, its candidates in: only wrtc's wait for the rest is left.
                setting.add_done_callback(_retrieve)
                self._setting = setting
                self._unanswered(gathering, began)
                return _end_candidates(local.sdp)
            await setting
        except BaseException:
            setting.cancel()
            raise
        finally:
            gathered.cancel()
            gathering.close()
        self._unanswered(gathering, began)
        local = self.pc.localDescription
        assert local is not None  # set just above
        return local.sdp

    # -- ICE restarts -------------------------------------------------------------------------

    async def restart_offer(self) -> str:
        async with self._making():
            native: Any = self.pc._native
            native.restart_ice()
            return await self._set_restarted(await self.pc.createOffer())

    async def accept_restart_offer(self, sdp: str) -> str:
        sdp = self._same_certificate(sdp)
        async with self._making():
            self._remote(sdp)
            await self.pc.setRemoteDescription(_wrtc.RTCSessionDescription(sdp=sdp, type="offer"))
            return await self._set_restarted(await self.pc.createAnswer())

    async def _set_restarted(self, description: _wrtc.RTCSessionDescription) -> str:
        """Set a description that restarts ICE and return its SDP once the candidates gathered
        anew are in it. ``webrtc.aiortc`` returns at once here (its gathering state is still
        the first gathering's ``complete``): the end is the native ``icecandidate`` event
        without a candidate, or :class:`_Gathering`'s, or wrtc's gathering timeout (5 s)."""
        self._hear_native()
        ended = self._restart_gathered = asyncio.Event()
        gathering = self._gathering
        if gathering is not None:
            gathering = self._gathering = self._new_gathering(gathering.urls)
        waits = [asyncio.ensure_future(ended.wait())]
        if gathering is not None:
            waits.append(asyncio.ensure_future(gathering.done.wait()))
        try:
            await self.pc.setLocalDescription(description)
            await asyncio.wait(waits, timeout=_GATHERING_TIMEOUT, return_when="FIRST_COMPLETED")
        finally:
            for wait in waits:
                wait.cancel()
            if gathering is not None:
                gathering.close()
            self._restart_gathered = None
        local = self.pc.localDescription
        if local is None or self._closed:
            raise PeerClosed(f"data channel {self._label or '?'} closed while it restarted ICE")
        self._local_sdp = pin_host_candidates(
            _end_candidates(local.sdp), self.options.host_addresses
        )
        return self._local_sdp

    async def accept_restart_answer(self, sdp: str) -> None:
        sdp = self._same_certificate(sdp)
        if self.pc.signalingState != "have-local-offer":
            raise ValueError("no restart offer waits for an answer")
        await self.accept_answer(sdp)

    def _same_certificate(self, sdp: str) -> str:
        """A restart renegotiates ICE only: the remote's DTLS certificate stays what it was, and
        the description names no other (wherever it names it). Returns it as libwebrtc is to
        take it (:meth:`_remote`)."""
        remote = self._remote_sdp
        try:
            sdp = one_certificate(sdp)
            same = remote is not None and sdp_fingerprint(sdp) == sdp_fingerprint(remote)
        except AuthError:  # it names none, or more than one
            same = False
        if not same:
            raise ValueError("a restart description names another DTLS certificate")
        return sdp

    def fingerprints(self) -> tuple[bytes, bytes]:
        local, remote = self._local_sdp, self._remote_sdp
        if local is None or remote is None:
            raise PeerClosed(f"data channel {self._label or '?'} has no session yet")
        return sdp_fingerprint(local), sdp_fingerprint(remote)

    # -- data ---------------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        dc = self._dc
        return dc is not None and not self._closed and dc.readyState == "open"

    @property
    def buffered_amount(self) -> int:
        dc = self._dc
        return dc.bufferedAmount if dc is not None and not self._closed else 0

    @property
    def acknowledged(self) -> int:
        return 0  # libwebrtc does not expose SCTP's acknowledgements (see the module docstring)

    def set_low_threshold(self, size: int) -> None:
        if self._dc is not None and not self._closed:
            self._dc.bufferedAmountLowThreshold = size

    def send(self, data: str | bytes) -> None:
        dc = self._dc
        if dc is None or self._closed:
            raise PeerClosed(f"data channel {self._label or '?'} is not open")
        dc.send(data)

    @property
    def max_message_size(self) -> int | None:
        return self._remote_max

    @property
    def round_trip(self) -> float | None:
        return None

    @property
    def burst_size(self) -> int | None:
        return None

    def selected_pair(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        if self._closed:
            return None
        native: Any = getattr(self.pc, "_native", None)  # webrtc.aiortc names no selected pair
        sctp = native.sctp if native is not None else None
        if sctp is None:
            return None
        pair = sctp.transport.ice_transport.get_selected_candidate_pair()
        if pair is None:
            return None
        local, remote = pair.local, pair.remote
        if None in (local.address, local.port, remote.address, remote.port):
            return None
        return (local.address, local.port), (remote.address, remote.port)

    def udp_buffers(self, size: int | None = None) -> list[tuple[int, int]]:
        return []  # libwebrtc owns its sockets

    # -- life ---------------------------------------------------------------------------------

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "closed" or (state == "failed" and not self.keep_on_ice_failure):
            self.close()

    def _on_ice_connection_state(self, *_: object) -> None:
        if not self._closed:
            self.on_ice_state(str(self.pc.iceConnectionState))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = asyncio.get_running_loop().create_task(self.pc.close())
        self.on_close()

    async def wait_closed(self) -> None:
        self.close()
        if self._closing is not None:
            await self._closing
        if self._setting is not None:  # wrtc's wait for gathering ends with the connection
            await asyncio.wait([self._setting])


def _retrieve(task: asyncio.Future[None]) -> None:
    """Take a background step's outcome: its error (the link closed) is the link's own to tell."""
    if not task.cancelled():
        task.exception()


class WrtcTransport:
    """Makes :class:`WrtcLink` objects."""

    name = "libwebrtc"

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> WrtcLink:
        return WrtcLink(options, initiator=initiator, label=label)

    def prepare(self, options: RTCOptions) -> None:
        """Allow loopback candidates now when ``options`` pins a loopback address:
        :class:`LoopbackRefused` here, where the peer is made, rather than in a background
        connection attempt."""
        if any(_is_loopback(address) for address in options.host_addresses or ()):
            allow_loopback()


#: The libwebrtc transport.
LIBWEBRTC = WrtcTransport()
