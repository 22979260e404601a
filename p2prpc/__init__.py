"""p2prpc: peers that call and publish to each other over WebRTC, found through WebTorrent trackers.

``P2PT`` is the wire-compatible port of the JavaScript P2PT library; ``Node`` is a p2prpc peer,
on which the RPC (:mod:`p2prpc.rpc`) and pub/sub (:mod:`p2prpc.pubsub`) layers build.

Names are loaded on first use (PEP 562), so ``import p2prpc.wire.frames`` or the protoc plugin
does not load WebRTC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        Destroyed,
        FrameError,
        InvalidMetadata,
        KeyFileExists,
        LocalProtocolError,
        MessageTooBig,
        NothingToRespond,
        P2PRPCError,
        ParsedTooBig,
        PeerClosed,
        PeerError,
        ProtocolError,
        RemoteProtocolError,
        ReplyTimeout,
        RpcError,
        TooLargeForPeer,
        TooManyPending,
        TrackerFailure,
        TrackerProtocolError,
        WeakSecret,
    )
    from .identity import Identity
    from .node import Node
    from .p2pt import P2PT, Peer, Reply, TrackerStats
    from .rpc.channel import Channel
    from .rpc.client import EOF
    from .tracker.server import TrackerServer
    from .wire.status import StatusCode

_WHERE = {
    "Identity": ".identity",
    "Node": ".node",
    "P2PT": ".p2pt",
    "Peer": ".p2pt",
    "Reply": ".p2pt",
    "TrackerStats": ".p2pt",
    "Channel": ".rpc.channel",
    "EOF": ".rpc.client",
    "TrackerServer": ".tracker.server",
    "StatusCode": ".wire.status",
    **{
        name: ".errors"
        for name in (
            "Destroyed",
            "FrameError",
            "InvalidMetadata",
            "KeyFileExists",
            "LocalProtocolError",
            "MessageTooBig",
            "NothingToRespond",
            "P2PRPCError",
            "ParsedTooBig",
            "PeerClosed",
            "PeerError",
            "ProtocolError",
            "RemoteProtocolError",
            "ReplyTimeout",
            "RpcError",
            "TooLargeForPeer",
            "TooManyPending",
            "TrackerFailure",
            "TrackerProtocolError",
            "WeakSecret",
        )
    },
}

__all__ = [
    "EOF",
    "P2PT",
    "Channel",
    "Destroyed",
    "FrameError",
    "Identity",
    "InvalidMetadata",
    "KeyFileExists",
    "LocalProtocolError",
    "MessageTooBig",
    "Node",
    "NothingToRespond",
    "P2PRPCError",
    "ParsedTooBig",
    "Peer",
    "PeerClosed",
    "PeerError",
    "ProtocolError",
    "RemoteProtocolError",
    "Reply",
    "ReplyTimeout",
    "RpcError",
    "StatusCode",
    "TooLargeForPeer",
    "TooManyPending",
    "TrackerFailure",
    "TrackerProtocolError",
    "TrackerServer",
    "TrackerStats",
    "WeakSecret",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'p2prpc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
