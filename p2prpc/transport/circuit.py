"""A relayed connection as one more :class:`~p2prpc.transport.Link`: a circuit through a relay.

A :class:`CircuitLink` is the link of a connection whose messages ride a relay's two real
connections (``docs/PROTOCOL.md`` section 8; the circuit layer, :mod:`p2prpc.circuit`, carries
its frames). Everything above the seam (the handshake, hello, envelopes, calls, streams,
topics, keepalive, flow control) works on it unchanged. Its messages are sealed end to end
(:class:`~p2prpc.wire.circuit.CircuitCipher`); its :meth:`~CircuitLink.fingerprints` are those
of the two ends' ephemeral keys, so the handshake binds a proof to the real other end.

Flow: the link may have at most ``window`` bytes of sealed data in flight (sent, and not yet
granted back by the other end once it read them); what does not fit waits here and counts in
:attr:`~CircuitLink.buffered_amount`, so the connection above queues as it does on a data
channel, and the relay never holds more than the window of one circuit's direction.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from ..errors import PeerClosed, TooLargeForPeer
from ..wire.circuit import MAX_CIRCUIT_MESSAGE, SEAL_OVERHEAD, CircuitCipher, CircuitError
from . import IceServerError, Link, RTCOptions

logger = logging.getLogger(__name__)


class CircuitLink:
    """One end of a circuit (a :class:`~p2prpc.transport.Link`).

    ``send_data(sealed)`` hands one sealed data frame to the relay's leg (false: the leg is
    gone); ``send_credit(n)`` grants the other end ``n`` more bytes; ``send_close(reason)`` tells
    it the circuit is closed. The circuit layer calls :meth:`established` once keys are agreed
    (the data channel "opens"), :meth:`receive` for each data frame, :meth:`credit` for each
    grant, and :meth:`lost` when the circuit ends from elsewhere.
    """

    #: A circuit has no ICE of its own to restart (its legs are the relay's connections).
    ice_restarts = False
    keep_on_ice_failure = False

    def __init__(
        self,
        *,
        label: str,
        window: int,
        send_data: Callable[[bytes], bool],
        send_credit: Callable[[int], object],
        send_close: Callable[[str], object],
    ) -> None:
        self.on_open: Callable[[], None] = lambda: None
        self.on_message: Callable[[str | bytes], None] = lambda data: None
        self.on_buffered_low: Callable[[], None] | None = None
        self.on_close: Callable[[], None] = lambda: None
        self.on_ice_state: Callable[[str], None] = lambda state: None
        self._label = label
        self.window = window
        self._send_data = send_data
        self._send_credit = send_credit
        self._send_close = send_close
        self._cipher: CircuitCipher | None = None
        self._credit = window  # bytes we may still send
        self._waiting: deque[bytes] = deque()  # sealed, waiting for credit
        self._waiting_bytes = 0
        self._read = 0  # bytes read since the last grant
        self._low: int | None = None
        self._acknowledged = 0
        self._open = False
        self._closed = False
        self._closed_event = asyncio.Event()
        #: Why the circuit closed, when it did ("" while open).
        self.close_reason = ""

    # -- what the circuit layer calls ------------------------------------------------------------

    def established(self, cipher: CircuitCipher) -> None:
        """Keys are agreed: the link is open."""
        if self._closed or self._open:
            return
        self._cipher = cipher
        self._open = True
        self.on_ice_state("connected")
        self.on_open()

    def receive(self, sealed: bytes) -> None:
        """A data frame from the other end: open it and deliver it (a frame that does not open
        closes the circuit, and the other end is told why)."""
        cipher = self._cipher
        if cipher is None or self._closed:
            return
        try:
            message = cipher.open(sealed)
        except CircuitError as e:
            logger.warning("circuit %s closed: %s", self._label[:8], e)
            self.close(str(e))
            return
        self._acknowledged += 1
        self._read += len(sealed)
        if self._read >= self.window // 2:
            self._send_credit(self._read)
            self._read = 0
        self.on_message(message)

    def credit(self, increment: int) -> None:
        """The other end read ``increment`` more bytes: send what waits for them. A grant past
        what was sent closes the circuit."""
        if self._closed:
            return
        self._credit += increment
        self._acknowledged += 1
        if self._credit > self.window:
            self.close("the other end granted more than was sent")
            return
        self._flush()

    def lost(self, reason: str) -> None:
        """The circuit ended elsewhere (the other end, the relay, or a leg closed)."""
        if self._closed:
            return
        self.close_reason = reason
        self._closed = True
        self._shut()

    # -- Link ------------------------------------------------------------------------------------

    async def restart_offer(self) -> str:
        raise NotImplementedError("a circuit does not restart ICE")

    async def accept_restart_offer(self, sdp: str) -> str:
        raise NotImplementedError("a circuit does not restart ICE")

    async def accept_restart_answer(self, sdp: str) -> None:
        raise NotImplementedError("a circuit does not restart ICE")

    @property
    def ice_errors(self) -> list[IceServerError]:
        return []

    @property
    def label(self) -> str:
        return self._label

    async def create_offer(self) -> str:
        raise PeerClosed("a circuit is opened by its layer, not by an offer")

    async def accept_offer(self, sdp: str) -> str:
        raise PeerClosed("a circuit is opened by its layer, not by an offer")

    async def accept_answer(self, sdp: str) -> None:
        raise PeerClosed("a circuit is opened by its layer, not by an answer")

    def fingerprints(self) -> tuple[bytes, bytes]:
        if self._cipher is None:
            raise PeerClosed("the circuit has no keys yet")
        return self._cipher.fingerprints()

    @property
    def writable(self) -> bool:
        return self._open and not self._closed

    @property
    def buffered_amount(self) -> int:
        return self._waiting_bytes

    @property
    def acknowledged(self) -> int:
        return self._acknowledged

    def set_low_threshold(self, size: int) -> None:
        self._low = size

    def send(self, data: str | bytes) -> None:
        cipher = self._cipher
        if cipher is None or not self.writable:
            raise PeerClosed("the circuit is closed")
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
        if size > MAX_CIRCUIT_MESSAGE:
            raise TooLargeForPeer(
                f"a circuit message of {size} bytes, where a circuit carries at most "
                f"{MAX_CIRCUIT_MESSAGE}",
                size=size,
                limit=MAX_CIRCUIT_MESSAGE,
            )
        sealed = cipher.seal(data)
        self._waiting.append(sealed)
        self._waiting_bytes += len(sealed)
        self._flush()

    def _flush(self) -> None:
        """Send what waits while credit lasts (the credit may go below zero by one frame, so a
        frame larger than the window still goes, alone)."""
        waiting = self._waiting
        while waiting and self._credit > 0 and not self._closed:
            sealed = waiting.popleft()
            self._waiting_bytes -= len(sealed)
            self._credit -= len(sealed)
            if not self._send_data(sealed):
                self.close("the relay's connection is gone")
                return
        low = self._low
        if low is not None and self._waiting_bytes <= low and self.on_buffered_low is not None:
            self.on_buffered_low()

    @property
    def max_message_size(self) -> int | None:
        return MAX_CIRCUIT_MESSAGE

    @property
    def round_trip(self) -> float | None:
        return None

    @property
    def burst_size(self) -> int | None:
        return None

    def selected_pair(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        return None

    def udp_buffers(self, size: int | None = None) -> list[tuple[int, int]]:
        return []

    def close(self, reason: str = "closed by this end") -> None:
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        self._send_close(reason)
        self._shut()

    def _shut(self) -> None:
        self._waiting.clear()
        self._waiting_bytes = 0
        self._closed_event.set()
        self.on_close()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()


class CircuitTransport:
    """Hands one prepared :class:`CircuitLink` to the :class:`~p2prpc.swarm.connection.Connection`
    built over it."""

    name = "circuit"

    def __init__(self, link: CircuitLink) -> None:
        self._link = link

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> Link:
        return self._link


#: The overhead of one sealed message, for who sizes messages to a circuit.
OVERHEAD = SEAL_OVERHEAD
