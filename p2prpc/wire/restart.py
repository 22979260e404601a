"""ICE restart signalling between two p2prpc peers: the restart key and the restart message.

Pure codecs: no asyncio, no sockets. ``docs/PROTOCOL.md`` section 9 is the specification.

A connection whose two ends restart ICE (both hellos on it say ``"restart"``) has each end send
the other a fresh random 32-byte *restart key* in its hello, inside the connection's DTLS. When
ICE is lost, the connection's offerer sends a restart offer and the answerer a restart answer,
each a :class:`RestartMessage` through a signalling path (a tracker's ``answer`` action, a mesh
``signal``), as the text :func:`encode` makes:

``p2prpc-restart-1:`` + unpadded base64url of kind (1) ‖ connection id (20) ‖ counter (u64,
big-endian) ‖ HMAC-SHA256 (32) ‖ SDP (UTF-8).

The MAC's key is :func:`mac_key` of both ends' restart keys; it covers the kind, both peer ids,
both DTLS fingerprints (sender's first), the connection id, the counter and the SDP, so a
message is accepted only from the connection's other end, for that connection, in that
direction, once (:class:`RestartState` keeps the highest counter accepted).

Every reader raises only :class:`RestartError` (a :class:`~p2prpc.errors.RemoteProtocolError`).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from ..errors import RemoteProtocolError

__all__ = [
    "KEY_SIZE",
    "MAX_SDP",
    "PREFIX",
    "RestartError",
    "RestartKind",
    "RestartMessage",
    "RestartState",
    "decode",
    "decode_key",
    "encode",
    "encode_key",
    "is_restart",
    "mac_key",
    "new_key",
]

#: What starts a restart message's text.
PREFIX = "p2prpc-restart-1:"
#: Bytes of a restart key, of a connection id, of a peer id, of a DTLS fingerprint, of the MAC.
KEY_SIZE = 32
ID_SIZE = 20
FINGERPRINT_SIZE = 32
MAC_SIZE = 32
#: The longest SDP a restart message carries, in bytes (what a relayed signal carries at most).
MAX_SDP = 32 * 1024
_HEADER = struct.Struct(">B20sQ")
_TRANSCRIPT = b"p2prpc-restart-v1\x00"
_KEY_LABEL = b"p2prpc-restart-key-v1\x00"
_MAX_COUNTER = 2**64 - 1


class RestartError(RemoteProtocolError):
    """A restart message or key is malformed, forged, altered or replayed."""


class RestartKind(enum.IntEnum):
    OFFER = 1
    ANSWER = 2


@dataclass(frozen=True, slots=True)
class RestartMessage:
    """One restart offer or answer as read (its MAC not yet checked: :meth:`RestartState.open`).

    ``connection_id``: the offer id of the offer that made the connection (its data channel's
    label), 20 bytes; ``counter``: higher than any the sender used on it before."""

    kind: RestartKind
    connection_id: bytes
    counter: int
    mac: bytes
    sdp: str


def new_key() -> bytes:
    """A fresh random restart key (32 bytes)."""
    return secrets.token_bytes(KEY_SIZE)


def encode_key(key: bytes) -> str:
    """A restart key as a hello carries it: padded standard base64 (44 characters)."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"a restart key is {KEY_SIZE} bytes, not {len(key)}")
    return base64.b64encode(key).decode("ascii")


def decode_key(value: object) -> bytes:
    """A hello's ``"restart"`` key; :class:`RestartError` unless it is canonical padded base64
    of 32 bytes."""
    if not isinstance(value, str) or len(value) != 44:
        raise RestartError("a restart key is 44 characters of base64")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RestartError(f"a restart key is not base64: {e}") from None
    if len(key) != KEY_SIZE or base64.b64encode(key).decode("ascii") != value:
        raise RestartError("a restart key is not canonical base64 of 32 bytes")
    return key


def mac_key(offerer_key: bytes, answerer_key: bytes) -> bytes:
    """The MAC key of a connection: SHA-256 of the label, the restart key of the end that made
    the connection's original offer, then the other end's."""
    if len(offerer_key) != KEY_SIZE or len(answerer_key) != KEY_SIZE:
        raise ValueError(f"restart keys are {KEY_SIZE} bytes")
    return hashlib.sha256(_KEY_LABEL + offerer_key + answerer_key).digest()


def _mac(
    key: bytes,
    kind: RestartKind,
    sender: bytes,
    receiver: bytes,
    sender_fingerprint: bytes,
    receiver_fingerprint: bytes,
    connection_id: bytes,
    counter: int,
    sdp: bytes,
) -> bytes:
    for name, value, size in (
        ("sender", sender, ID_SIZE),
        ("receiver", receiver, ID_SIZE),
        ("sender_fingerprint", sender_fingerprint, FINGERPRINT_SIZE),
        ("receiver_fingerprint", receiver_fingerprint, FINGERPRINT_SIZE),
        ("connection_id", connection_id, ID_SIZE),
    ):
        if len(value) != size:
            raise ValueError(f"{name} is {size} bytes, not {len(value)}")
    transcript = b"".join(
        (
            _TRANSCRIPT,
            bytes([kind]),
            sender,
            receiver,
            sender_fingerprint,
            receiver_fingerprint,
            connection_id,
            counter.to_bytes(8, "big"),
            sdp,
        )
    )
    return hmac.digest(key, transcript, "sha256")


def encode(
    key: bytes,
    kind: RestartKind,
    *,
    sender: bytes,
    receiver: bytes,
    fingerprints: tuple[bytes, bytes],
    connection_id: bytes,
    counter: int,
    sdp: str,
) -> str:
    """The text of a restart message from ``sender`` to ``receiver`` (peer ids, 20 bytes) on the
    connection ``connection_id``, MACed under ``key`` (:func:`mac_key`); ``fingerprints``:
    (sender's, receiver's) DTLS fingerprints of that connection. ``ValueError`` for a counter
    out of 1..2**64-1 or an SDP over :data:`MAX_SDP` bytes."""
    if not 1 <= counter <= _MAX_COUNTER:
        raise ValueError(f"a restart counter is in 1..2**64-1, not {counter}")
    body = sdp.encode("utf-8")
    if len(body) > MAX_SDP:
        raise ValueError(f"a restart SDP is at most {MAX_SDP} bytes, not {len(body)}")
    mac = _mac(key, kind, sender, receiver, *fingerprints, connection_id, counter, body)
    raw = _HEADER.pack(kind, connection_id, counter) + mac + body
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def is_restart(text: str) -> bool:
    """Whether ``text`` (an answer's or a signal's ``sdp``) is a restart message."""
    return text.startswith(PREFIX)


def decode(text: str) -> RestartMessage:
    """Read a restart message's text (:class:`RestartError` when it is not one, well formed);
    its MAC is checked by :meth:`RestartState.open`."""
    if not text.startswith(PREFIX):
        raise RestartError("not a restart message")
    body = text[len(PREFIX) :]
    if len(body) > (MAX_SDP + _HEADER.size + MAC_SIZE) * 4 // 3 + 4:
        raise RestartError(f"a restart message's SDP is at most {MAX_SDP} bytes")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as e:
        raise RestartError(f"a restart message is not base64url: {e}") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != body.encode("ascii", "replace"):
        raise RestartError("a restart message is not canonical unpadded base64url")
    if len(raw) < _HEADER.size + MAC_SIZE:
        raise RestartError(f"a restart message of {len(raw)} bytes is too short")
    kind, connection_id, counter = _HEADER.unpack_from(raw)
    if kind not in (RestartKind.OFFER, RestartKind.ANSWER):
        raise RestartError(f"unknown restart kind {kind}")
    if counter == 0:
        raise RestartError("a restart counter starts at 1")
    mac = raw[_HEADER.size : _HEADER.size + MAC_SIZE]
    try:
        sdp = raw[_HEADER.size + MAC_SIZE :].decode("utf-8")
    except UnicodeDecodeError:
        raise RestartError("a restart message's SDP is not UTF-8") from None
    if len(raw) - _HEADER.size - MAC_SIZE > MAX_SDP:
        raise RestartError(f"a restart message's SDP is at most {MAX_SDP} bytes")
    return RestartMessage(RestartKind(kind), connection_id, counter, mac, sdp)


class RestartState:
    """One connection's restart keys and counters, from one end's point of view.

    ``local_key`` is this end's restart key (sent in its hello once the peer's hello on the
    connection says ``"restart"``); :meth:`set_remote_key` takes the peer's. ``initiator``: this
    end made the connection's original offer (it sends restart offers; the other end answers).
    """

    def __init__(self, *, initiator: bool, local_key: bytes | None = None) -> None:
        self.initiator = initiator
        self.local_key = local_key if local_key is not None else new_key()
        self.remote_key: bytes | None = None
        #: The peer said, in a hello on this connection, that it restarts ICE.
        self.remote_restarts = False
        #: This end's key went out in a hello on this connection.
        self.key_sent = False
        self.sent = 0  # the last counter this end used
        self.received = 0  # the highest counter accepted from the other end

    @property
    def armed(self) -> bool:
        """Both keys are known: restart messages can be made and checked."""
        return self.remote_key is not None

    def set_remote_key(self, key: bytes) -> None:
        """Take the peer's restart key (:class:`RestartError` for another one than it gave
        before: a connection's keys never change)."""
        if self.remote_key is not None and not hmac.compare_digest(self.remote_key, key):
            raise RestartError("the peer's restart key changed")
        self.remote_key = key
        self.remote_restarts = True

    def _key(self) -> bytes:
        if self.remote_key is None:
            raise RestartError("no restart key from the peer on this connection")
        if self.initiator:
            return mac_key(self.local_key, self.remote_key)
        return mac_key(self.remote_key, self.local_key)

    def seal(
        self,
        kind: RestartKind,
        *,
        sender: bytes,
        receiver: bytes,
        fingerprints: tuple[bytes, bytes],
        connection_id: bytes,
        sdp: str,
    ) -> str:
        """A restart message with the next counter (``fingerprints``: local, remote)."""
        self.sent += 1
        return encode(
            self._key(),
            kind,
            sender=sender,
            receiver=receiver,
            fingerprints=fingerprints,
            connection_id=connection_id,
            counter=self.sent,
            sdp=sdp,
        )

    def open(
        self,
        message: RestartMessage,
        *,
        sender: bytes,
        receiver: bytes,
        fingerprints: tuple[bytes, bytes],
        connection_id: bytes,
    ) -> str:
        """The SDP of ``message`` from ``sender`` (``fingerprints``: local, remote), once its
        MAC verifies and its counter is above every one accepted before; :class:`RestartError`
        otherwise (nothing changes then). The counter is taken as used."""
        local, remote = fingerprints
        expected = _mac(
            self._key(),
            message.kind,
            sender,
            receiver,
            remote,
            local,
            connection_id,
            message.counter,
            message.sdp.encode("utf-8"),
        )
        if message.connection_id != connection_id or not hmac.compare_digest(expected, message.mac):
            raise RestartError("a restart message's MAC does not verify")
        if message.counter <= self.received:
            raise RestartError(
                f"a restart message played back (counter {message.counter}, "
                f"{self.received} taken already)"
            )
        wanted = RestartKind.ANSWER if self.initiator else RestartKind.OFFER
        if message.kind is not wanted:
            raise RestartError(f"a restart {message.kind.name.lower()} to the connection's "
                               f"{'offerer' if self.initiator else 'answerer'}")  # fmt: skip
        self.received = message.counter
        return message.sdp
