"""aiortc glue: one RTCPeerConnection with one data channel, as simple-peer gives P2PT.

A :class:`Channel` is what P2PT calls a "peer" in JavaScript: one WebRTC connection to one remote
peer with one data channel on it. Offers and answers carry every ICE candidate in their SDP (no
trickle), which is what the WebTorrent tracker protocol relays.

Life of a channel, as explicit states::

    new ──offer/answer──▶ connecting ──data channel open──▶ open ──▶ closed
      └───────────────────────────────────────────────────────────────▲
                            (closed from any state: close(), failure, expiry)

ICE policy: ``ice_servers`` is handed to aiortc as is (``[]`` means host candidates only, no STUN
query ever leaves the machine; ``None`` means P2PT's defaults, the STUN servers simple-peer sets).
``host_addresses`` pins the host candidates to the given addresses, for example ``["127.0.0.1"]`` so
that two Python peers on one machine meet over loopback (aioice skips loopback by itself).

Socket buffers: aiortc's SCTP sends bursts of datagrams that a busy event loop may not read at once;
what does not fit in the UDP socket's receive buffer is dropped and only resent after SCTP's
retransmission timeout. ``udp_buffer_size`` (4 MiB by default) sizes the receive and send buffers
of the sockets under each connection, up to what the kernel allows (``net.core.rmem_max`` and
``net.core.wmem_max``; raise those for high rates).
"""

from __future__ import annotations

import asyncio
import asyncio.trsock
import contextvars
import enum
import itertools
import logging
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from .errors import PeerClosed
from .errors import SendQueueFull as SendQueueFull  # it lives in p2prpc.errors
from .wire.secret import sdp_fingerprint

logger = logging.getLogger(__name__)

#: The STUN servers simple-peer configures by default (what P2PT users on the internet get).
P2PT_ICE_SERVERS: tuple[RTCIceServer, ...] = (
    RTCIceServer(urls=["stun:stun.l.google.com:19302", "stun:global.stun.twilio.com:3478"]),
)

#: Above this many bytes waiting in the data channel, writes queue up instead (simple-peer: 64 KiB).
HIGH_WATER_MARK = 1024 * 1024
#: The queue drains again once the data channel's buffer falls to this many bytes.
LOW_WATER_MARK = 256 * 1024
#: The most bytes a channel queues above the data channel's buffer before ``send`` refuses more.
MAX_SEND_QUEUE = 16 * 2**20


#: The receive and send buffer asked for each UDP socket under a connection (the kernel clamps it).
UDP_BUFFER_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RTCOptions:
    """How WebRTC connections are set up.

    ``ice_servers``: ``None`` for P2PT's default STUN servers, ``[]`` for host candidates only.
    ``host_addresses``: when set, the only local addresses offered as ICE host candidates.
    ``high_water_mark`` and ``low_water_mark`` (bytes): data is handed to aiortc's data channel
    while its buffer holds at most ``high_water_mark`` bytes, and queued by us above that until it
    falls to ``low_water_mark``. ``max_send_queue`` (bytes): the most that queue may hold.
    ``udp_buffer_size``: bytes of receive and send buffer to ask for each UDP socket, granted up to
    ``net.core.rmem_max`` / ``net.core.wmem_max``; ``None`` keeps aioice's own (256 KiB receive).
    """

    ice_servers: Sequence[RTCIceServer] | None = None
    host_addresses: Sequence[str] | None = None
    udp_buffer_size: int | None = UDP_BUFFER_SIZE
    high_water_mark: int = HIGH_WATER_MARK
    low_water_mark: int = LOW_WATER_MARK
    max_send_queue: int = MAX_SEND_QUEUE
    extra: dict[str, object] = field(default_factory=dict)

    def configuration(self) -> RTCConfiguration:
        servers = P2PT_ICE_SERVERS if self.ice_servers is None else self.ice_servers
        return RTCConfiguration(iceServers=list(servers))


# aioice looks host addresses up through a module-level function; wrapping it once lets each
# connection pin its own addresses through a context variable, which asyncio copies into the tasks
# that gather candidates during setLocalDescription.
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


async def _set_local_description(
    pc: RTCPeerConnection, description: RTCSessionDescription, options: RTCOptions
) -> str:
    """Set the local description and return its SDP, which then carries every ICE candidate."""
    pinned = tuple(options.host_addresses) if options.host_addresses is not None else None
    token = _pinned_addresses.set(pinned)
    try:
        await pc.setLocalDescription(description)
    finally:
        _pinned_addresses.reset(token)
    if options.udp_buffer_size is not None:
        # The sockets exist once candidates are gathered, before the SDP naming them leaves us.
        size_udp_buffers(pc, options.udp_buffer_size)
    local = pc.localDescription
    assert local is not None  # set just above
    return local.sdp


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


def size_udp_buffers(pc: RTCPeerConnection, size: int) -> list[tuple[int, int]]:
    """Ask for ``size``-byte receive and send buffers on the UDP sockets of ``pc``.

    The kernel grants at most ``net.core.rmem_max`` (receive) and ``net.core.wmem_max`` (send)
    to an unprivileged request. Returns what each socket got, ``(SO_RCVBUF, SO_SNDBUF)`` as the
    kernel reports them (Linux reports twice the bytes granted: it counts its bookkeeping too).
    """
    granted = []
    for sock in udp_sockets(pc):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        except OSError as error:  # a closed socket, or a system without these options
            logger.debug("cannot size UDP buffers of %s: %s", sock, error)
            continue
        got = (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )
        logger.debug("UDP socket %s: asked %d bytes, granted %s", sock.getsockname(), size, got)
        granted.append(got)
    return granted


#: Numbers each connection of this process: what the layers above attribute calls to.
_connection_numbers = itertools.count(1)


class ChannelState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


#: Packs binary messages into one (``Channel.send``'s ``pack``).
_Pack = Callable[[Sequence[bytes]], bytes]


def _size(data: str | bytes) -> int:
    """The bytes a data-channel message takes on the wire (UTF-8 for text)."""
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


class Channel:
    """One WebRTC connection with one data channel to a remote peer.

    Callbacks (set by the owner before the channel can open): ``on_open()``, ``on_message(data)``,
    ``on_close()``. ``on_close`` is called exactly once, whatever closes the channel.

    Memory toward a peer that reads slowly or not at all: aiortc's data channel buffer holds at
    most ``high_water_mark`` bytes plus one message (data is handed to it only below that mark),
    and our queue above it at most ``max_send_queue`` bytes (:attr:`queued_bytes`); a ``send``
    that does not fit raises :class:`SendQueueFull`.

    Coalescing: small binary messages sent with a ``pack`` function (:meth:`send`) while an
    earlier one has just gone out in the same turn of the event loop wait until the end of that
    turn, and leave packed together in one data-channel message (at most ``pack_limit`` bytes of
    them); so do those that waited in the queue together. The first of a burst is never delayed.
    """

    def __init__(self, options: RTCOptions, *, initiator: bool) -> None:
        self.options = options
        self.initiator = initiator
        self.pc = RTCPeerConnection(options.configuration())
        self.name: str = secrets.token_hex(20) if initiator else ""
        #: This connection's number in this process (never reused; the label above is chosen by
        #: the offerer, so it cannot tell two peers' connections apart).
        self.connection: int = next(_connection_numbers)
        self.peer_id: str | None = None  # hex, known once the tracker tells us who answered
        #: The Ed25519 key the peer proved on this connection's handshake (``None``: none, yet).
        self.public_key: bytes | None = None
        #: How it was made: the tracker's announce URL, or ``relay:<peer id>`` through the mesh.
        self.origin = ""
        #: Made past the degree bound to reach a service (``P2PT.max_extra_peers``).
        self.extra = False
        self.state = ChannelState.NEW
        self.on_open: Callable[[], None] = lambda: None
        self.on_message: Callable[[str | bytes], None] = lambda data: None
        self.on_close: Callable[[], None] = lambda: None
        self._dc: RTCDataChannel | None = None
        # (message, its size, its tag, how it may be packed: see send, and the pack's limit)
        self._queue: deque[tuple[str | bytes, int, Hashable | None, _Pack | None, int]] = deque()
        self._queued_bytes = 0
        # Coalescing (see the class docstring): what waits for the end of this turn of the loop.
        self._corked: list[bytes] = []
        self._corked_bytes = 0
        self._corked_pack: _Pack | None = None
        self._turn_open = False  # something went to the data channel in this turn of the loop
        self.opened_at: float | None = None  # loop time when the data channel opened
        #: When this connection was built (``time.monotonic()``): how long it has been connecting.
        self.created_at = time.monotonic()
        self._writer: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        self._closing: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)
        if initiator:
            self._attach(self.pc.createDataChannel(self.name))
        else:
            self.pc.on("datachannel", self._attach)

    # -- signalling ---------------------------------------------------------------------------

    async def create_offer(self) -> str:
        """Initiator: return the offer SDP with every candidate in it."""
        self.state = ChannelState.CONNECTING
        return await _set_local_description(self.pc, await self.pc.createOffer(), self.options)

    async def accept_offer(self, sdp: str) -> str:
        """Answerer: take the remote offer and return the answer SDP."""
        self.state = ChannelState.CONNECTING
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        return await _set_local_description(self.pc, await self.pc.createAnswer(), self.options)

    async def accept_answer(self, sdp: str) -> None:
        """Initiator: take the remote answer; the data channel opens once ICE and DTLS are done."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def fingerprints(self) -> tuple[bytes, bytes]:
        """(local, remote) SHA-256 DTLS certificate fingerprints of this connection, as the
        descriptions name them (aiortc refuses a remote certificate that does not match)."""
        local, remote = self.pc.localDescription, self.pc.remoteDescription
        if local is None or remote is None:
            raise PeerClosed(f"data channel {self.name or '?'} has no session yet")
        return sdp_fingerprint(local.sdp), sdp_fingerprint(remote.sdp)

    # -- data ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state is ChannelState.OPEN

    @property
    def buffered_amount(self) -> int:
        """Bytes waiting to be sent: in the data channel plus in our own queue."""
        dc_amount = self._dc.bufferedAmount if self._dc is not None else 0
        return dc_amount + self._corked_bytes + self._queued_bytes

    @property
    def queued_bytes(self) -> int:
        """Bytes in our queue, not yet handed to the data channel (at most ``max_send_queue``)."""
        return self._queued_bytes

    def send(
        self,
        messages: Sequence[str | bytes],
        *,
        tag: Hashable | None = None,
        pack: Callable[[Sequence[bytes]], bytes] | None = None,
        pack_limit: int = 16 * 1024,
    ) -> None:
        """Send data-channel messages in order, queueing what the channel's buffer cannot take yet.

        Never blocks: below the high-water mark messages go straight to the data channel; above it
        they wait in a queue that a writer task drains as the buffer empties. ``tag`` marks the
        queued ones so that :meth:`withdraw` can take them back before they leave.

        ``pack``: these messages (bytes, each at most ``pack_limit // 2`` bytes) may travel packed
        with others, at most ``pack_limit`` bytes of them together, in one data-channel message
        that ``pack`` builds (the receiver must read what it builds); see the class docstring.
        Order is kept whatever is packed.

        All or nothing: raises :class:`SendQueueFull` (sending none of ``messages``) when those
        that would wait do not fit in ``max_send_queue`` bytes with what waits already, and
        :class:`PeerClosed` when the channel is not open.
        """
        dc = self._dc
        if self.state is not ChannelState.OPEN or dc is None:
            raise PeerClosed(f"data channel {self.name or '?'} is {self.state.value}")
        if dc.readyState != "open":  # closing under us: aiortc would raise InvalidStateError
            self.close()
            raise PeerClosed(f"data channel {self.name or '?'} is {dc.readyState}")
        sizes = []
        all_bytes = True
        for m in messages:
            if type(m) is bytes:
                sizes.append(len(m))
            else:
                sizes.append(_size(m))
                all_bytes = False
        high = self.options.high_water_mark
        direct = 0
        if not self._queue:  # as many as go straight to the data channel, as below
            buffered = dc.bufferedAmount + self._corked_bytes
            while direct < len(sizes) and buffered <= high:
                buffered += sizes[direct]
                direct += 1
        waiting = sum(sizes[direct:])
        if waiting and self._queued_bytes + waiting > self.options.max_send_queue:
            raise SendQueueFull(
                f"{waiting} bytes to queue for data channel {self.name} where "
                f"{self._queued_bytes} of {self.options.max_send_queue} are queued already"
            )
        if pack is not None and (not all_bytes or max(sizes, default=pack_limit) > pack_limit // 2):
            pack = None
        if pack is not None and direct == len(messages) and self._turn_open:
            if self._corked_pack is not pack:
                self._uncork()
            for message, size in zip(messages, sizes, strict=True):
                if self._corked_bytes + size > pack_limit:  # a batch never holds more
                    self._uncork()
                self._corked_pack = pack
                self._corked.append(message)  # type: ignore[arg-type]  # bytes, as pack says
                self._corked_bytes += size
            return
        self._uncork()
        if self.state is not ChannelState.OPEN:  # it closed while handing over what waited
            raise PeerClosed(f"data channel {self.name or '?'} is {self.state.value}")
        for i in range(direct):
            dc.send(messages[i])
        if direct and not self._turn_open:
            self._turn_open = True
            asyncio.get_running_loop().call_soon(self._end_turn)
        if direct < len(messages):
            self._queue.extend(
                (m, size, tag, pack, pack_limit)
                for m, size in zip(messages[direct:], sizes[direct:], strict=True)
            )
            self._queued_bytes += waiting
            self._drained.clear()
            if self._writer is None:
                self._writer = asyncio.get_running_loop().create_task(self._write_queue())

    def _uncork(self) -> None:
        """Hand what waits for the end of the turn to the data channel, packed, in order."""
        corked = self._corked
        if not corked:
            return
        pack = self._corked_pack
        self._corked, self._corked_bytes, self._corked_pack = [], 0, None
        dc = self._dc
        if dc is None or self.state is not ChannelState.OPEN:
            return
        if dc.readyState != "open":  # closing under us: the connection is lost, and so is this
            self.close()
            return
        dc.send(corked[0] if len(corked) == 1 or pack is None else pack(corked))

    def _end_turn(self) -> None:
        self._turn_open = False
        self._uncork()

    def withdraw(self, tag: Hashable) -> int:
        """Take back the queued messages sent with ``tag`` that have not reached the data channel.

        Returns how many were withdrawn. Those already handed to aiortc are sent regardless, so
        a receiver may be left with the beginning of something (P2PT frames expire there).
        """
        if tag is None:
            raise ValueError("withdraw needs the tag the messages were sent with, not None")
        if not self._queue:
            return 0
        kept = deque(entry for entry in self._queue if entry[2] != tag)
        withdrawn = len(self._queue) - len(kept)
        if withdrawn:
            self._queue = kept
            self._queued_bytes = sum(entry[1] for entry in kept)
            if not kept:
                self._drained.set()
        return withdrawn

    async def drain(self) -> None:
        """Wait until everything queued by :meth:`send` has been handed to the data channel.

        Then the whole ``max_send_queue`` is free again. Raises :class:`PeerClosed` if the channel
        closed meanwhile (what was queued is lost).
        """
        if not self._drained.is_set():
            await self._drained.wait()
        if self.state is ChannelState.CLOSED:
            raise PeerClosed(f"data channel {self.name} closed")

    async def _write_queue(self) -> None:
        dc = self._dc
        assert dc is not None
        low = asyncio.Event()
        dc.bufferedAmountLowThreshold = self.options.low_water_mark
        dc.on("bufferedamountlow", low.set)
        try:
            while self._queue and self.state is ChannelState.OPEN:
                if dc.bufferedAmount > self.options.high_water_mark:
                    low.clear()
                    await low.wait()
                    continue
                queue = self._queue  # withdraw() replaces it, but never across this block
                data, size, _, pack, limit = queue.popleft()
                self._queued_bytes -= size
                if pack is None or not queue or queue[0][3] is not pack:
                    dc.send(data)
                    continue
                # Messages that waited together leave together, as many as one batch holds.
                batch, room = [data], limit - size
                while queue and queue[0][3] is pack and queue[0][1] <= room:
                    more, more_size, _, _, _ = queue.popleft()
                    self._queued_bytes -= more_size
                    room -= more_size
                    batch.append(more)
                dc.send(pack(batch))  # type: ignore[arg-type]  # bytes, as pack says
        finally:
            dc.remove_listener("bufferedamountlow", low.set)
            self._writer = None
            if not self._queue:
                self._drained.set()

    # -- life ---------------------------------------------------------------------------------

    def _attach(self, dc: RTCDataChannel) -> None:
        if self._dc is not None:  # one data channel per connection, as simple-peer does
            dc.close()
            return
        self._dc = dc
        self.name = dc.label
        dc.on("message", self._on_dc_message)
        dc.on("close", self._on_dc_close)
        if dc.readyState == "open":
            self._on_dc_open()
        else:
            dc.on("open", self._on_dc_open)

    def _on_dc_open(self) -> None:
        if self.state in (ChannelState.NEW, ChannelState.CONNECTING):
            self.state = ChannelState.OPEN
            self.opened_at = asyncio.get_running_loop().time()
            self.on_open()

    def _on_dc_message(self, data: str | bytes) -> None:
        if self.state is not ChannelState.OPEN:
            return
        try:
            self.on_message(data)
        except Exception:
            # A handler's bug must not reach aiortc: raised from its receive path, it kills the
            # connection, and every later message with it. It stays a traceback in the log.
            logger.exception("handling a message from %s failed", self.peer_id)

    def _on_dc_close(self) -> None:
        self.close()

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.close()

    def close(self) -> None:
        """Close the connection (idempotent); ``on_close`` runs now, the teardown in background."""
        if self.state is ChannelState.CLOSED:
            return
        was_started = self.state is not ChannelState.NEW
        if self._corked and self._dc is not None and self._dc.readyState == "open":
            try:  # sent before the close: handed to aiortc like the unpacked ones
                self._uncork()
            except Exception:  # on_close runs whatever happens here
                logger.exception("flushing data channel %s on close failed", self.name)
        self.state = ChannelState.CLOSED
        self._queue.clear()
        self._queued_bytes = 0
        self._corked, self._corked_bytes, self._corked_pack = [], 0, None
        self._drained.set()
        if self._writer is not None:
            self._writer.cancel()
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.pc.close())
        if was_started or self._dc is not None:
            logger.debug("channel %s to %s closed", self.name, self.peer_id)
        self.on_close()

    async def wait_closed(self) -> None:
        """Close and wait until the peer connection has released its sockets."""
        self.close()
        if self._writer is not None:
            await asyncio.wait([self._writer])
        if self._closing is not None:
            await self._closing
