"""p2prpc: peers that call and publish to each other over WebRTC, found through WebTorrent trackers.

``P2PT`` is the wire-compatible port of the JavaScript P2PT library; the RPC and pub/sub layers
build on it.
"""

from .errors import (
    Destroyed,
    FrameError,
    LocalProtocolError,
    MessageTooBig,
    NothingToRespond,
    P2PRPCError,
    PeerClosed,
    PeerError,
    ProtocolError,
    RemoteProtocolError,
    ReplyTimeout,
    TooManyPending,
    TrackerFailure,
    TrackerProtocolError,
)
from .p2pt import P2PT, Peer, Reply, TrackerStats

__all__ = [
    "P2PT",
    "Destroyed",
    "FrameError",
    "LocalProtocolError",
    "MessageTooBig",
    "NothingToRespond",
    "P2PRPCError",
    "Peer",
    "PeerClosed",
    "PeerError",
    "ProtocolError",
    "RemoteProtocolError",
    "Reply",
    "ReplyTimeout",
    "TooManyPending",
    "TrackerFailure",
    "TrackerProtocolError",
    "TrackerStats",
]
