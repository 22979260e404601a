"""Flow control for one call, both ways: the writer waits while the peer's window is shut, and
the reader grants window back as its application reads (``docs/PROTOCOL.md`` §2.2; the
arithmetic is :mod:`p2prpc.wire.window`).

Either side of a call has one of each: a server writes replies and reads requests, a client
writes requests and reads replies. Toward a peer whose hello announced no window (a plain P2PT
app, an older node) nothing waits and nothing is granted: the per-call caps alone bound what
either side holds, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import TYPE_CHECKING, Protocol

from ..errors import PeerClosed, SendQueueFull
from ..wire.envelope import Envelope, Kind
from ..wire.window import Credit, Grants, message_cost

if TYPE_CHECKING:
    from ..mux import Mux

__all__ = ["ReadWindow", "SendWindow"]


class SendWindow:
    """What a writer of one call may still send: the window the peer announced (``None``: it
    announced none, and the writer never waits)."""

    __slots__ = ("_ended", "_opened", "credit")

    def __init__(self, size: int | None) -> None:
        self.credit = Credit(size)
        self._opened: asyncio.Event | None = None
        self._ended = False

    @property
    def limited(self) -> bool:
        """Whether the peer's window limits this writer."""
        return self.credit.size is not None

    async def wait(self) -> None:
        """Return once a message may be sent (the credit is positive), or the call has ended
        (:meth:`close`): a writer never waits past its call."""
        while not self.credit.open and not self._ended:
            if self._opened is None:
                self._opened = asyncio.Event()
            self._opened.clear()
            await self._opened.wait()

    def spend(self, payload: object, has_payload: bool = True) -> None:
        """A message with this payload is being sent: count its cost."""
        if self.credit.size is not None:
            self.credit.spend(message_cost(payload, has_payload))

    def grant(self, increment: int) -> None:
        """A window update came; :class:`~p2prpc.wire.window.FlowControlError` when it opens
        the window past its size."""
        self.credit.grant(increment)
        if self._opened is not None and self.credit.open:
            self._opened.set()

    def close(self) -> None:
        """The call has ended: wake the writer, and never make it wait again."""
        self._ended = True
        if self._opened is not None:
            self._opened.set()


class Reader(Protocol):
    """The side of a call that reads a stream: what its window updates are sent with."""

    @property
    def node(self) -> Mux: ...
    @property
    def peer_id(self) -> str: ...
    @property
    def call_id(self) -> int: ...
    @property
    def binary(self) -> bool: ...
    @property
    def tag(self) -> Hashable: ...
    @property
    def connection(self) -> int | None: ...


class ReadWindow:
    """The reader's grants for one call: ``kind`` is the window update it sends
    (``REPLY_WINDOW`` from a client, ``MSG_WINDOW`` from a server), in the call's form, once
    the application has read half the node's window; only to a peer whose hello announced a
    window (it reads them). A grant that does not fit in the send queue is sent once the
    queue drains."""

    __slots__ = ("_binary", "_ended", "_grants", "_retry", "_side", "kind")

    def __init__(self, side: Reader, kind: Kind, *, binary: bool) -> None:
        self._side = side
        self.kind = kind
        self._binary = binary
        self._grants = Grants(side.node.window)
        self._ended = False
        self._retry: asyncio.Task[None] | None = None

    def cost(self, envelope: Envelope) -> int:
        """What a received request or reply counts against the window. The binary form's cost
        is free to count; the JSON form's (its JSON text, written again) is counted only for a
        peer that reads window updates (0 for a plain P2PT app)."""
        side = self._side
        if not self._binary and side.node.peer_window(side.peer_id) is None:
            return 0
        return message_cost(envelope.payload, envelope.has_payload)

    def read(self, cost: int) -> None:
        """The application has read a message of this ``cost``: grant, if half the window
        has been read since the last grant."""
        if self._ended or not cost:
            return
        increment = self._grants.read(cost)
        if increment:
            self._send(increment)

    def close(self) -> None:
        """The call has ended: nothing more is granted."""
        self._ended = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _send(self, increment: int) -> None:
        side = self._side
        node = side.node
        if node.peer_window(side.peer_id) is None:
            self._grants.kept(increment)  # it reads none (yet): granted if it says it does
            return
        try:
            node.send(
                side.peer_id,
                Envelope(self.kind, side.call_id, increment),
                binary=side.binary,
                tag=side.tag,
                connection=side.connection,
            )
        except PeerClosed:
            pass  # the call ends with its connection
        except SendQueueFull:
            self._grants.kept(increment)
            if self._retry is None:
                self._retry = asyncio.get_running_loop().create_task(self._send_when_drained())
                node.track_task(self._retry)

    async def _send_when_drained(self) -> None:
        side = self._side
        try:
            await side.node.drain(side.peer_id, side.connection)
        except PeerClosed:
            return
        finally:
            self._retry = None
        increment = self._grants.take()
        if increment and not self._ended:
            self._send(increment)
