"""Peers that differ from ours in what they announce: an aiortc transport whose session
descriptions say another ``a=max-message-size`` than aiortc's own 262144.

Its links are aiortc's, and they receive messages of any size: only what they tell the other
side changes, as a WebRTC stack with a smaller receive limit would tell it. Install it on a P2PT
before it starts: ``p2pt.pool.transport = Announcing(4096)``.
"""

from __future__ import annotations

import re

from p2prpc.transport import RTCOptions
from p2prpc.transport.aiortc import AiortcLink

_LINE = re.compile(r"^a=max-message-size:[0-9]+\r?$", re.MULTILINE)


def announce(sdp: str, size: int) -> str:
    """``sdp`` saying ``a=max-message-size:size`` (in place of what it said)."""
    changed, count = _LINE.subn(f"a=max-message-size:{size}\r", sdp)
    if count == 0:
        raise ValueError("the session description names no max-message-size to change")
    return changed


class _AnnouncingLink(AiortcLink):
    def __init__(self, size: int, options: RTCOptions, *, initiator: bool, label: str) -> None:
        super().__init__(options, initiator=initiator, label=label)
        self.announced = size

    async def create_offer(self) -> str:
        return announce(await super().create_offer(), self.announced)

    async def accept_offer(self, sdp: str) -> str:
        return announce(await super().accept_offer(sdp), self.announced)


class Announcing:
    """The aiortc transport, announcing ``max_message_size`` bytes (0: any size)."""

    name = "aiortc-announcing"

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> AiortcLink:
        return _AnnouncingLink(self.max_message_size, options, initiator=initiator, label=label)
