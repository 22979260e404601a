"""What a link does with its one data channel, the same on every transport: the handlers the
layer above sets (before or after the channel exists) handed straight to the channel's event
emitter, and the channel taken once (aiortc's and wrtc's data channels are both pyee emitters
with the same events)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import IceServerError

__all__ = ["DataChannelLink"]


def _nothing() -> None:
    pass


def _nothing_with(data: str | bytes) -> None:
    pass


def _no_state(state: str) -> None:
    pass


class DataChannelLink:
    """The data-channel half of a :class:`~p2prpc.transport.Link`: ``label``, ``on_open``,
    ``on_message``, ``on_buffered_low``, ``on_close``, ``on_ice_state``, ``ice_errors``. A
    subclass calls :meth:`_init_channel`, hands its data channel to :meth:`_attach` (the one it
    made, or the remote's), and has ``close()`` and ``_closed``."""

    _closed: bool
    #: Whether the transport restarts ICE (see :class:`~p2prpc.transport.Link`).
    ice_restarts = False
    #: Kept open while ICE is failed (a restart may bring it back): set by the owner.
    keep_on_ice_failure = False

    if TYPE_CHECKING:

        def close(self) -> None: ...  # each transport closes its own connection

    def _init_channel(self, *, initiator: bool, label: str) -> None:
        self.on_open: Callable[[], None] = _nothing
        # Handed to the data channel's emitter as they are set: no hop of ours per message, and
        # no listener at all for the buffered-amount event while nobody waits on it.
        self._on_message: Callable[[str | bytes], None] = _nothing_with
        self._on_buffered_low: Callable[[], None] | None = None
        self.on_close: Callable[[], None] = _nothing
        self.on_ice_state: Callable[[str], None] = _no_state
        #: What the ICE servers refused while candidates were gathered (the transport adds).
        self._ice_errors: list[IceServerError] = []
        self._label = label if initiator else ""
        self._dc: Any = None

    @property
    def ice_errors(self) -> list[IceServerError]:
        return list(self._ice_errors)

    @property
    def label(self) -> str:
        return self._label

    @property
    def on_message(self) -> Callable[[str | bytes], None]:
        return self._on_message

    @on_message.setter
    def on_message(self, handler: Callable[[str | bytes], None]) -> None:
        dc = self._dc
        if dc is not None:
            dc.remove_listener("message", self._on_message)
            dc.on("message", handler)
        self._on_message = handler

    @property
    def on_buffered_low(self) -> Callable[[], None] | None:
        return self._on_buffered_low

    @on_buffered_low.setter
    def on_buffered_low(self, handler: Callable[[], None] | None) -> None:
        dc = self._dc
        if dc is not None:
            if self._on_buffered_low is not None:
                dc.remove_listener("bufferedamountlow", self._on_buffered_low)
            if handler is not None:
                dc.on("bufferedamountlow", handler)
        self._on_buffered_low = handler

    def _attach(self, dc: Any) -> None:
        if self._dc is not None:  # one data channel per connection, as simple-peer does
            dc.close()
            return
        self._dc = dc
        self._label = dc.label
        dc.on("message", self._on_message)
        dc.on("close", self.close)
        if self._on_buffered_low is not None:
            dc.on("bufferedamountlow", self._on_buffered_low)
        if dc.readyState == "open":
            self.on_open()
        else:
            dc.on("open", self._on_dc_open)

    def _on_dc_open(self) -> None:
        if not self._closed:
            self.on_open()

    async def restart_offer(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} does not restart ICE")

    async def accept_restart_offer(self, sdp: str) -> str:
        raise NotImplementedError(f"{type(self).__name__} does not restart ICE")

    async def accept_restart_answer(self, sdp: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not restart ICE")
