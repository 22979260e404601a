"""Flow control's arithmetic: what a call's message costs against a window, what a writer may
still send, and when a reader grants more. Pure: no I/O (``docs/PROTOCOL.md`` §2.2).

A receiver announces a window in its hello (``"window": bytes``): for each call, the bytes of
request or reply messages a sender may have sent that the receiving application has not read
yet. Each message counts as the receiver's budgets count an unread message
(:data:`~p2prpc.wire.held.ENVELOPE_OVERHEAD`, 512 bytes, plus its payload as carried:
:func:`message_cost`). The sender may send while its credit is positive (:class:`Credit`), so
that a message larger than the whole window still goes, alone; the reader grants back what its
application has read once that reaches half the window (:class:`Grants`), as HTTP/2
implementations batch their WINDOW_UPDATE frames. A reader therefore holds at most the window
plus one message for a call whose sender honours it.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import RemoteProtocolError
from .held import ENVELOPE_OVERHEAD

__all__ = ["Credit", "FlowControlError", "Grants", "message_cost", "payload_cost"]

# Written once: json.dumps with options builds an encoder a call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class FlowControlError(RemoteProtocolError):
    """A window update the receiver of it cannot honour: it would open the window beyond its
    size (more granted back than was ever sent), HTTP/2's FLOW_CONTROL_ERROR."""


def payload_cost(payload: Any) -> int:
    """The bytes a payload counts for: bytes (the binary form, compressed if it is) by their
    length; a JSON value (the JSON form) by the UTF-8 length of its compact JSON text (no
    whitespace, non-ASCII characters as themselves); compact text kept from one
    (:class:`~p2prpc.wire.payload.JSONText`) by its length."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return len(payload)
    data = getattr(payload, "data", None)  # JSONText: the compact text, as UTF-8
    if isinstance(data, bytes):
        return len(data)
    return len(_COMPACT.encode(payload).encode("utf-8", "surrogatepass"))


def message_cost(payload: Any, has_payload: bool = True) -> int:
    """What one request (``msg``) or reply (``reply``) counts against its call's window:
    :data:`~p2prpc.wire.held.ENVELOPE_OVERHEAD` plus :func:`payload_cost`."""
    return ENVELOPE_OVERHEAD + (payload_cost(payload) if has_payload else 0)


class Credit:
    """A writer's side of one call's window: ``size`` bytes (``None``: the peer announced no
    window, and nothing limits the writer). The writer may send while :attr:`open`; each
    message sent :meth:`spend`\\ s its cost (the credit may go below zero by that message);
    each window update :meth:`grant`\\ s bytes back."""

    __slots__ = ("credit", "size")

    def __init__(self, size: int | None) -> None:
        if size is not None and size <= 0:
            raise ValueError("a window is a positive number of bytes")
        self.size = size
        self.credit = size if size is not None else 0

    @property
    def open(self) -> bool:
        """Whether a message may be sent now."""
        return self.size is None or self.credit > 0

    def spend(self, cost: int) -> None:
        if self.size is not None:
            self.credit -= cost

    def grant(self, increment: int) -> None:
        """``increment`` more bytes may be sent; :class:`FlowControlError` when that would
        open the window past its size (the reader grants back only what was sent)."""
        if self.size is None:
            return  # not limited: nothing to open
        if self.credit + increment > self.size:
            raise FlowControlError(
                f"a window update of {increment} bytes opens the window to "
                f"{self.credit + increment}, past its {self.size} bytes"
            )
        self.credit += increment


class Grants:
    """A reader's side of one call's window of ``size`` bytes: :meth:`read` counts what its
    application has read and says how many bytes to grant back now, once they reach half the
    window (0: not yet). What could not be sent is :meth:`kept` for the next grant."""

    __slots__ = ("read_bytes", "size")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError("a window is a positive number of bytes")
        self.size = size
        self.read_bytes = 0  # read since the last grant

    def read(self, cost: int) -> int:
        self.read_bytes += cost
        if 2 * self.read_bytes < self.size:
            return 0
        grant, self.read_bytes = self.read_bytes, 0
        return grant

    def kept(self, increment: int) -> None:
        """A grant of ``increment`` bytes could not be sent: count it again."""
        self.read_bytes += increment

    def take(self) -> int:
        """All the bytes read and not granted yet (to send them now)."""
        grant, self.read_bytes = self.read_bytes, 0
        return grant
