"""What a session description announces about the data channel, read without a WebRTC stack."""

from __future__ import annotations

import re

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "max_message_size"]

DEFAULT_MAX_MESSAGE_SIZE = 65536
"""The largest message to send to a peer whose description announces no limit (RFC 8841 §6.1)."""

_MAX_MESSAGE_SIZE = re.compile(r"^a=max-message-size:[ \t]*([0-9]{1,12})[ \t]*\r?$", re.MULTILINE)


def max_message_size(sdp: str) -> int | None:
    """The largest data-channel message, in bytes, the side that wrote ``sdp`` takes: its
    ``a=max-message-size`` (RFC 8841), :data:`DEFAULT_MAX_MESSAGE_SIZE` when it names none (or
    none that reads as a number), and ``None`` when it names 0: any size.

    libwebrtc (browsers, JavaScript P2PT through wrtc) and aiortc announce 262144.
    """
    found = _MAX_MESSAGE_SIZE.search(sdp)
    if found is None:
        return DEFAULT_MAX_MESSAGE_SIZE
    size = int(found.group(1))
    return size if size > 0 else None
