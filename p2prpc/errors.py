"""Every error p2prpc raises on purpose, in one hierarchy users can catch by meaning.

Which side broke a protocol is part of the name: a ``Remote…`` error means a peer or a tracker sent
something malformed, a ``Local…`` error means this process asked for something the protocol forbids.
Anything else that escapes the library is a bug and stays a traceback.
"""

from __future__ import annotations


class P2PRPCError(Exception):
    """Base class of every error p2prpc raises on purpose."""


class ProtocolError(P2PRPCError):
    """A protocol was broken."""


class RemoteProtocolError(ProtocolError):
    """A peer or a tracker sent something the protocol does not allow."""


class LocalProtocolError(ProtocolError):
    """This process asked for something the protocol does not allow."""


class FrameError(RemoteProtocolError):
    """A P2PT data-channel frame is malformed (not ``^`` + a JSON object of the right shape)."""


class MessageTooBig(RemoteProtocolError):
    """A message (being reassembled, or as announced) exceeds a configured size cap."""


class TooManyPending(RemoteProtocolError):
    """A peer has more unfinished messages in flight than the configured cap allows."""


class TrackerProtocolError(RemoteProtocolError):
    """A tracker message (received by a client or a server) is malformed."""


class TrackerRequestError(TrackerProtocolError):
    """A request a tracker received is malformed or refused.

    Carries what the tracker needs to address its ``failure reason`` reply so that the client
    can tell which of its swarms it is about: the ``action`` ("announce" or "scrape") and the
    ``info_hash`` when the request named a valid one.
    """

    def __init__(self, reason: str, *, action: str = "announce", info_hash: bytes | None = None):
        super().__init__(reason)
        self.reason = reason
        self.action = action
        self.info_hash = info_hash


class InvalidTrackerMessage(LocalProtocolError, ValueError):
    """A tracker message to send breaks the protocol (an id not 20 bytes, offers with stopped…)."""


class TrackerFailure(P2PRPCError):
    """A tracker answered with ``failure reason``."""


class PeerError(P2PRPCError):
    """Something went wrong with one remote peer."""


class PeerClosed(PeerError, ConnectionError):
    """The peer went away (its last data channel closed) before the operation completed."""


class ReplyTimeout(PeerError, TimeoutError):
    """No reply arrived before the timeout passed."""


class InvalidMessage(LocalProtocolError, ValueError):
    """A message to send is not a JSON value (wrong type, NaN or Infinity, a cycle, non-str key)."""


class NothingToRespond(LocalProtocolError):
    """``respond`` was called on a peer handle that was not handed over with a message."""


class Destroyed(P2PRPCError):
    """The P2PT instance was destroyed."""
