"""Every error p2prpc raises on purpose, in one hierarchy users can catch by meaning.

Which side broke a protocol is part of the name: a ``Remote…`` error means a peer or a tracker sent
something malformed, a ``Local…`` error means this process asked for something the protocol forbids.
Anything else that escapes the library is a bug and stays a traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from typing import Any

import grpc.aio
from grpc import StatusCode

#: A metadata entry: a key and its value (as :data:`p2prpc.wire.status.Metadatum`).
_Metadatum = tuple[str, str | bytes]


class P2PRPCError(Exception):
    """Base class of every error p2prpc raises on purpose."""


class ProtocolError(P2PRPCError):
    """A protocol was broken."""


class RemoteProtocolError(ProtocolError):
    """A peer or a tracker sent something the protocol does not allow.

    ``message_id``: the P2PT message (and so the call) it concerns, when that is known, so that
    the peer can be answered on it.
    """

    message_id: int | None = None


class LocalProtocolError(ProtocolError):
    """This process asked for something the protocol does not allow."""


class FrameError(RemoteProtocolError):
    """A P2PT data-channel frame is malformed (not ``^`` + a JSON object of the right shape)."""


class MessageTooBig(RemoteProtocolError):
    """A message (being reassembled, or as announced) exceeds a configured size cap."""


class ParsedTooBig(MessageTooBig):
    """A JSON message would hold more once parsed than the budget for one message allows.

    Refused before it is parsed, from an estimate that is never below what the parsed value
    holds (:func:`p2prpc.wire.held.estimate_held`); ``message_id`` names the message, and
    ``estimate`` and ``budget`` are in bytes.
    """

    def __init__(self, message: str, *, estimate: int = 0, budget: int = 0) -> None:
        super().__init__(message)
        self.estimate = estimate
        self.budget = budget


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


class SendQueueFull(PeerError, BufferError):
    """The data to send does not fit in what is left of the channel's send queue.

    Nothing of it was sent or queued. The peer is reading more slowly than we write (or not at
    all): wait with ``drain()`` and send again, or give up on that peer.
    """


class TooLargeForPeer(LocalProtocolError, ValueError):
    """A message to send does not fit in a limit its receiver announced: the largest
    data-channel message its session description takes (``a=max-message-size``), or the largest
    message its hello says it reads (``max_message_size``).

    Nothing of that message was sent, and nothing sent before or after it is affected. ``size``
    is the message's size in bytes as it would travel, ``limit`` the announced one.
    """

    def __init__(self, message: str, *, size: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class ReplyTimeout(PeerError, TimeoutError):
    """No reply arrived before the timeout passed."""


class InvalidMessage(LocalProtocolError, ValueError):
    """A message to send is not a JSON value (wrong type, NaN or Infinity, a cycle, non-str key)."""


class NothingToRespond(LocalProtocolError):
    """``respond`` was called on a peer handle that was not handed over with a message."""


class Destroyed(P2PRPCError):
    """The P2PT instance was destroyed."""


class WeakSecret(P2PRPCError, ValueError):
    """A swarm secret too weak to close a swarm: refused where it is configured.

    Anyone can read a closed swarm's info_hash from a tracker and test guesses of the secret
    against it offline, so a secret must be one nobody can guess. A secret is refused when it has
    fewer than 16 bytes (a ``str``: fewer than 16 characters or 16 UTF-8 bytes) or when its
    estimated entropy is under 64 bits (:func:`p2prpc.wire.secret.secret_strength` gives the
    rule). The estimate cannot recognise words, so passing it does not make a secret strong:
    ``p2prpc secret`` makes one that is (32 random bytes). ``size`` is the secret's length in
    bytes, ``bits`` the estimate; the message never contains the secret.
    """

    def __init__(self, message: str, *, size: int, bits: float) -> None:
        super().__init__(message)
        self.size = size
        self.bits = bits


class InvalidIceServer(P2PRPCError, ValueError):
    """An ICE server that cannot be used, refused where it is configured: a URL that is not a
    ``stun:``, ``stuns:``, ``turn:`` or ``turns:`` URL as RFC 7064 and RFC 7065 write them (host,
    port 1 to 65535, ``?transport=udp`` or ``tcp`` on TURN only), credentials on a STUN URL, a
    TURN server without a username and credential, or an entry that is neither a URL, an
    ``RTCIceServer`` nor a provider. ``part`` names what is wrong (``"scheme"``, ``"host"``,
    ``"port"``, ``"query"``, ``"credentials"``, ``"entry"``); the message shows the URL with its
    credentials left out, never them.
    """

    def __init__(self, message: str, *, part: str) -> None:
        super().__init__(message)
        self.part = part


class IceServersUnavailable(P2PRPCError):
    """An ICE server provider (a function in ``ice_servers``) raised, returned something that is
    no ICE server, or did not return within its time: the connection it was asked for is not
    attempted (``trackerwarning`` on the tracker's path; the next attempt asks again). The
    provider's own exception, if any, is the ``__cause__``."""


class KeyFileExists(P2PRPCError, FileExistsError):
    """Something already is where a private key was to be written: a file (replaced only when
    asked, ``overwrite=True`` or ``p2prpc keygen --force``), or a symbolic link or anything else
    that is not a regular file (never written through nor replaced). Nothing was written.

    ``filename`` is the path, ``strerror`` what is there, ``replaceable`` whether asking to
    overwrite would have replaced it (a regular file) or not (a link, a directory...).
    """

    def __init__(self, filename: str, reason: str, *, replaceable: bool) -> None:
        super().__init__(errno.EEXIST, reason, filename)
        self.replaceable = replaceable


class CodegenError(P2PRPCError):
    """A ``.proto`` file that cannot be turned into valid Python; protoc reports the message."""


class NoAddress(P2PRPCError, RuntimeError):
    """A p2prpc server was asked to listen on an address (``add_insecure_port``,
    ``add_secure_port``): it has none. Peers find it through the swarm (its node's trackers and
    identifier, and the mesh), and a closed swarm's secret and identities take the place of TLS
    credentials. A ``RuntimeError``, as grpc raises when it cannot bind a port."""


class InvalidMetadata(LocalProtocolError, ValueError):
    """Metadata that gRPC does not allow: a key that is not lower-case ``[0-9a-z_.-]``, a ``-bin``
    key whose value is not bytes, or a value that is not printable ASCII (gRPC's metadata rules,
    https://grpc.io/docs/guides/metadata/)."""


class InvalidChannelOption(P2PRPCError, ValueError):
    """A channel option a channel over a swarm does not take: an unknown key, a value of the
    wrong type, or a keepalive the node does not keep (refused when the channel is made)."""


class InvalidServiceConfig(InvalidChannelOption):
    """A ``grpc.service_config`` gRPC would refuse, with gRPC's words for each field."""


class RpcError(P2PRPCError, grpc.aio.AioRpcError):
    """A call ended with a status other than OK: grpc.aio's ``AioRpcError``, with its methods.

    Raised by client calls (``await call``, iterating a streaming call), and raised by servicers
    (or by ``context.abort``) to end a call with that status. ``code()``, ``details()``,
    ``initial_metadata()``, ``trailing_metadata()`` and ``debug_error_string()`` answer as in
    grpc.aio; ``except grpc.aio.AioRpcError`` and ``except grpc.RpcError`` catch it too, and
    ``grpc_status.rpc_status.from_call(error)`` reads its ``google.rpc.Status`` details.

    ``trailing_metadata`` (and ``initial_metadata``) take a :class:`grpc.aio.Metadata`, a sequence
    of ``(key, value)`` pairs or a mapping.
    """

    def __init__(
        self,
        code: StatusCode,
        details: str = "",
        trailing_metadata: grpc.aio.Metadata
        | Iterable[_Metadatum]
        | Mapping[str, str | bytes]
        | None = None,
        *,
        initial_metadata: grpc.aio.Metadata | Iterable[_Metadatum] | None = None,
        debug_error_string: str | None = None,
    ) -> None:
        if not isinstance(code, StatusCode):
            raise TypeError(f"code must be a grpc.StatusCode, not {type(code).__name__}")
        initial = _as_metadata(initial_metadata)
        trailing = _as_metadata(trailing_metadata)
        debug = debug_error_string or f"p2prpc: {code.name}: {details}"
        grpc.aio.AioRpcError.__init__(self, code, initial, trailing, details, debug)
        # Kept here too: grpc's own attributes are private to grpc.
        self._status = (code, details, initial, trailing, debug)

    def code(self) -> StatusCode:
        return self._status[0]

    def details(self) -> str:
        return self._status[1]

    def initial_metadata(self) -> grpc.aio.Metadata:
        return self._status[2]

    def trailing_metadata(self) -> grpc.aio.Metadata:  # type: ignore[override]
        return self._status[3]

    def debug_error_string(self) -> str:
        return self._status[4]

    def __reduce__(self) -> tuple[Any, ...]:
        code, details, initial, trailing, debug = self._status
        return (
            _rebuild_rpc_error,
            (type(self), code, details, tuple(trailing), tuple(initial), debug),
        )


def _rebuild_rpc_error(
    cls: type[RpcError],
    code: StatusCode,
    details: str,
    trailing: tuple[_Metadatum, ...],
    initial: tuple[_Metadatum, ...],
    debug: str | None,
) -> RpcError:
    return cls(code, details, trailing, initial_metadata=initial, debug_error_string=debug)


def _as_metadata(
    value: grpc.aio.Metadata | Iterable[_Metadatum] | Mapping[str, str | bytes] | None,
) -> grpc.aio.Metadata:
    if value is None:
        return grpc.aio.Metadata()
    if isinstance(value, grpc.aio.Metadata):
        return value
    if isinstance(value, Mapping):
        return grpc.aio.Metadata(*value.items())
    return grpc.aio.Metadata(*value)
