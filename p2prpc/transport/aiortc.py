"""The aiortc transport: pure Python WebRTC, installed with p2prpc (the default everywhere).

One :class:`AiortcLink` is one ``RTCPeerConnection`` with one ``RTCDataChannel``. Two things
aiortc does not offer are added here, in the only module that touches aiortc's internals:

- Host candidates pinned to given addresses (``RTCOptions.host_addresses``): aioice looks host
  addresses up through a module-level function; wrapping it once lets each connection pin its own
  through a context variable, which asyncio copies into the tasks that gather candidates.
- UDP socket buffers: aiortc's SCTP sends bursts of datagrams that a busy event loop may not read
  at once; what does not fit in the receive buffer is dropped and only resent after SCTP's
  retransmission timeout. ``RTCOptions.udp_buffer_size`` (4 MiB by default) sizes the buffers of
  the sockets under each connection, up to ``net.core.rmem_max`` / ``net.core.wmem_max``.
- What its SCTP association knows of the path: the round trip it measured, and its burst: each
  time it transmits, aiortc sends at most ``SCTP_MAX_BURST`` (4) chunks of ``USERDATA_MAX_LENGTH``
  (1160) bytes beyond what is in flight, and it transmits once for each data-channel message it
  takes and once for each acknowledgement. Messages of at most one burst therefore fill its
  congestion window at once, while the chunks of a larger one leave four per acknowledgement.

ICE servers: aiortc (aioice) uses ONE STUN and ONE TURN server per connection: the first
``stun:`` URL, and the first TURN URL it can use (``turn:`` over UDP or ``?transport=tcp``,
``turns:`` over TLS on TCP), in the order given. The others are dropped (:func:`ice_servers_used`
tells which; the first link to drop a set of them logs a warning naming them, unless they are
P2PT's default STUN servers), so a dead first
TURN server is not stood in for by the next one. It has no ICE restart. The relay policy
(``RTCOptions.ice_transport_policy``) it applies as libwebrtc does.
"""

from __future__ import annotations

import asyncio
import asyncio.trsock
import contextvars
import logging
import socket
from collections.abc import Callable
from typing import Any

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcicetransport import parse_stun_turn_uri
from aiortc.rtcsctptransport import SCTP_MAX_BURST, USERDATA_MAX_LENGTH

from ..errors import PeerClosed
from ..wire.sdp import max_message_size
from ..wire.secret import sdp_fingerprint
from . import IceServerError, RTCOptions
from .channel import DataChannelLink

__all__ = [
    "AIORTC",
    "BURST_SIZE",
    "AiortcLink",
    "AiortcTransport",
    "ice_servers_used",
    "release_sockets",
    "size_udp_buffers",
    "udp_sockets",
]

logger = logging.getLogger(__name__)

#: The most bytes of one message aiortc's SCTP sends in one go (see the module docstring).
BURST_SIZE = SCTP_MAX_BURST * USERDATA_MAX_LENGTH

_pinned_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "p2prpc_pinned_addresses", default=None
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    pinned = _pinned_addresses.get()
    if pinned is None:
        return _original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


aioice.ice.get_host_addresses = _get_host_addresses

# What the TURN servers said while one link gathered its candidates: aioice drops a failed
# allocation without a word, so each link collects the errors of its own through this variable
# (asyncio copies it into the task that allocates).
_ice_errors: contextvars.ContextVar[list[IceServerError] | None] = contextvars.ContextVar(
    "p2prpc_ice_errors", default=None
)
_original_relayed_candidate = aioice.ice.relayed_candidate


async def _relayed_candidate(*args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        return await _original_relayed_candidate(*args, **kwargs)
    except (Exception, asyncio.CancelledError) as error:
        sink = _ice_errors.get()
        if sink is not None:
            sink.append(_turn_error(error, loop.time() - began, **kwargs))
        raise


def _turn_error(
    error: BaseException,
    waited: float,
    *,
    turn_server: tuple[str, int] | None = None,
    turn_transport: str = "udp",
    **_: Any,
) -> IceServerError:
    """What a failed allocation says: the server's error code, its host that does not resolve,
    or no answer (aioice gives each server 5 s, then cancels the allocation)."""
    if turn_server is None:
        url = "turn"
    else:
        host = f"[{turn_server[0]}]" if ":" in turn_server[0] else turn_server[0]
        url = f"turn:{host}:{turn_server[1]}?transport={turn_transport}"
    response = getattr(error, "response", None)
    if response is not None:
        code = getattr(response, "error_code", None)
        text = str(response.attributes.get("ERROR-CODE", ("", ""))[1])
        return IceServerError(url, code, text or type(error).__name__)
    if isinstance(error, socket.gaierror):
        return IceServerError(url, None, str(error) or type(error).__name__, unresolved=True)
    if isinstance(error, asyncio.CancelledError):
        return IceServerError(url, None, f"nothing within {waited:.1f} s")
    return IceServerError(url, None, str(error) or type(error).__name__)


aioice.ice.relayed_candidate = _relayed_candidate


def udp_sockets(pc: RTCPeerConnection) -> list[asyncio.trsock.TransportSocket]:
    """The UDP sockets aioice opened for the data channels of ``pc`` (none before gathering)."""
    sctp = pc.sctp
    if sctp is None:
        return []
    # aiortc exposes the ICE transport; the aioice connection under it, and the datagram
    # transports of its candidates, only as attributes of its own.
    connection = getattr(sctp.transport.transport.iceGatherer, "_connection", None)
    found = []
    for protocol in getattr(connection, "_protocols", ()):
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and sock.type == socket.SOCK_DGRAM:
            found.append(sock)
    return found


def release_sockets(pc: RTCPeerConnection) -> int:
    """Close whatever UDP transports under ``pc`` are still open; returns how many.

    ``pc.close()`` closes what ICE gathered before it ran; a close that lands while candidates
    are being gathered (a connection dropped as it is made) can leave the sockets gathered after
    it open. Called after every close, so that a link's sockets are released whatever the order.
    """
    sctp = pc.sctp
    if sctp is None:
        return 0
    connection = getattr(sctp.transport.transport.iceGatherer, "_connection", None)
    closed = 0
    for protocol in getattr(connection, "_protocols", ()):
        transport = getattr(protocol, "transport", None)
        if transport is not None and not transport.is_closing():
            transport.close()
            closed += 1
    return closed


def size_udp_buffers(pc: RTCPeerConnection, size: int | None) -> list[tuple[int, int]]:
    """Ask for ``size``-byte receive and send buffers on the UDP sockets of ``pc`` (``None``:
    only report them).

    The kernel grants at most ``net.core.rmem_max`` (receive) and ``net.core.wmem_max`` (send)
    to an unprivileged request. Returns what each socket got, ``(SO_RCVBUF, SO_SNDBUF)`` as the
    kernel reports them (Linux reports twice the bytes granted: it counts its bookkeeping too).
    """
    granted = []
    for sock in udp_sockets(pc):
        try:
            if size is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            got = (
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
            )
        except OSError as error:  # a closed socket, or a system without these options
            logger.debug("cannot size UDP buffers of %s: %s", sock, error)
            continue
        logger.debug("UDP socket %s: asked %s bytes, has %s", sock.getsockname(), size, got)
        granted.append(got)
    return granted


def ice_servers_used(servers: list[RTCIceServer]) -> tuple[list[str], list[str]]:
    """(used, dropped): the URLs of ``servers`` aiortc uses, at most one STUN and one TURN URL,
    and those it ignores, each in the order given (aiortc's own choice, read from its rules:
    the first ``stun:`` URL; the first ``turn:`` URL over ``udp`` or ``tcp`` or ``turns:`` URL
    over ``tcp`` whose server has a password credential). ``ValueError`` for a malformed URL,
    as aiortc raises."""
    used: list[str] = []
    dropped: list[str] = []
    stun = turn = False
    for server in servers:
        for url in [server.urls] if isinstance(server.urls, str) else server.urls:
            parsed = parse_stun_turn_uri(url)
            scheme, transport = parsed["scheme"], parsed.get("transport")
            if scheme == "stun" and not stun:
                stun = True
                used.append(url)
            elif (
                not turn
                and server.credentialType == "password"
                and (
                    (scheme == "turn" and transport in ("udp", "tcp"))
                    or (scheme == "turns" and transport == "tcp")
                )
            ):
                turn = True
                used.append(url)
            else:
                dropped.append(url)
    return used, dropped


_warned: set[tuple[str, ...]] = set()  # the sets of dropped URLs a warning has named


def _warn_dropped(servers: list[RTCIceServer]) -> None:
    used, dropped = ice_servers_used(servers)
    if dropped and tuple(dropped) not in _warned:
        _warned.add(tuple(dropped))
        logger.warning(
            "aiortc uses one STUN and one TURN server per connection, the first of each it can"
            " use (TURN over UDP or TCP with a password, turns: over TCP only): %s; it ignores"
            " %s; transport='libwebrtc' uses them all",
            ", ".join(used) or "none of these",
            ", ".join(dropped),
        )


class AiortcLink(DataChannelLink):
    """:class:`~p2prpc.transport.Link` over aiortc (see that protocol for the contract)."""

    def __init__(self, options: RTCOptions, *, initiator: bool, label: str) -> None:
        self.options = options
        servers = options.servers()
        if options.ice_servers is not None:  # P2PT's defaults: the second STUN server is spare
            _warn_dropped(servers)
        policy = RTCIceTransportPolicy(options.ice_transport_policy)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        self._init_channel(initiator=initiator, label=label)
        self._remote_max: int | None = None  # the remote's max-message-size, once it is known
        self._round_trip: float | None = None  # the shortest round trip SCTP measured
        self._watching = False
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("iceconnectionstatechange", self._on_ice_connection_state)
        if initiator:
            self._attach(self.pc.createDataChannel(label))
        else:
            self.pc.on("datachannel", self._attach)

    # -- signalling ---------------------------------------------------------------------------

    async def create_offer(self) -> str:
        return await self._set_local(await self.pc.createOffer())

    async def accept_offer(self, sdp: str) -> str:
        self._remote_max = max_message_size(sdp)  # known before the channel can open
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        return await self._set_local(await self.pc.createAnswer())

    async def accept_answer(self, sdp: str) -> None:
        self._remote_max = max_message_size(sdp)  # known before the channel can open
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def _set_local(self, description: RTCSessionDescription) -> str:
        """Set the local description and return its SDP, which then carries every candidate."""
        options = self.options
        pinned = tuple(options.host_addresses) if options.host_addresses is not None else None
        token = _pinned_addresses.set(pinned)
        errors = _ice_errors.set(self._ice_errors)
        try:
            await self.pc.setLocalDescription(description)
        finally:
            _ice_errors.reset(errors)
            _pinned_addresses.reset(token)
            if self._closed:  # closed while candidates were gathered: release what came after
                release_sockets(self.pc)
        if self._closed:
            raise PeerClosed(f"data channel {self._label or '?'} closed while it was being made")
        if options.udp_buffer_size is not None:
            # The sockets exist once candidates are gathered, before the SDP naming them leaves.
            size_udp_buffers(self.pc, options.udp_buffer_size)
        self._watch_round_trips()
        local = self.pc.localDescription
        assert local is not None  # set just above
        return local.sdp

    def fingerprints(self) -> tuple[bytes, bytes]:
        local, remote = self.pc.localDescription, self.pc.remoteDescription
        if local is None or remote is None:
            raise PeerClosed(f"data channel {self._label or '?'} has no session yet")
        return sdp_fingerprint(local.sdp), sdp_fingerprint(remote.sdp)

    # -- data ---------------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        dc = self._dc
        return dc is not None and dc.readyState == "open"

    @property
    def buffered_amount(self) -> int:
        dc = self._dc
        return dc.bufferedAmount if dc is not None else 0

    @property
    def acknowledged(self) -> int:
        sctp = self.pc.sctp
        # SCTP's cumulative acknowledgement: it moves only when the remote acknowledges data.
        return getattr(sctp, "_last_sacked_tsn", 0) if sctp is not None else 0

    def set_low_threshold(self, size: int) -> None:
        if self._dc is not None:
            self._dc.bufferedAmountLowThreshold = size

    def send(self, data: str | bytes) -> None:
        dc = self._dc
        if dc is None:
            raise PeerClosed(f"data channel {self._label or '?'} is not open")
        dc.send(data)

    @property
    def max_message_size(self) -> int | None:
        return self._remote_max

    @property
    def round_trip(self) -> float | None:
        return self._round_trip

    def _watch_round_trips(self) -> None:
        """Keep the shortest of the round trips SCTP measures (it hands each to a method of its
        own, which keeps only a smoothed average: on a busy event loop that includes queueing)."""
        sctp = self.pc.sctp
        if sctp is None or self._watching:
            return
        self._watching = True
        update: Callable[[float], None] = sctp._update_rto

        def measured(rtt: float) -> None:
            if self._round_trip is None or rtt < self._round_trip:
                self._round_trip = rtt
            update(rtt)

        sctp._update_rto = measured  # type: ignore[method-assign,assignment]

    @property
    def burst_size(self) -> int | None:
        return BURST_SIZE

    def selected_pair(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        sctp = self.pc.sctp
        if sctp is None:
            return None
        ice = sctp.transport.transport
        # aioice keeps the nominated pair on its connection, as an attribute of its own.
        connection = getattr(ice, "_connection", None)
        pair = getattr(connection, "_nominated", {}).get(1) if connection is not None else None
        if pair is None:
            return None
        local: tuple[str, int] = pair.local_addr
        remote: tuple[str, int] = pair.remote_addr
        return local, remote

    def udp_buffers(self, size: int | None = None) -> list[tuple[int, int]]:
        return size_udp_buffers(self.pc, size)

    # -- life ---------------------------------------------------------------------------------

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.close()

    def _on_ice_connection_state(self) -> None:
        if not self._closed:
            self.on_ice_state(self.pc.iceConnectionState)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = asyncio.get_running_loop().create_task(self._close_pc())
        self.on_close()

    async def _close_pc(self) -> None:
        await self.pc.close()
        release_sockets(self.pc)

    async def wait_closed(self) -> None:
        self.close()
        if self._closing is not None:
            await self._closing


class AiortcTransport:
    """Makes :class:`AiortcLink` objects."""

    name = "aiortc"

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> AiortcLink:
        return AiortcLink(options, initiator=initiator, label=label)


#: The aiortc transport.
AIORTC = AiortcTransport()
