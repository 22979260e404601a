"""Relayed connections (circuits): the control messages, the keys and the sealed frames.

Pure codecs: no asyncio, no sockets. ``docs/PROTOCOL.md`` section 8 is the specification. A
circuit is a connection between two peers A and B that cannot reach each other directly, carried
by a neighbour R of both (a *relay*: a node built with ``relay=True``) over its own two
connections. It rides one envelope kind, ``CIRCUIT`` (22), in the binary form only, and only to
peers whose hello says ``"circuit"``. The frame's call id names the circuit on that leg, its JSON
header (``{"circuit": op, ...}``) says what it is, and a data frame has no header at all:

- ``connect`` A → R ``{"to": B, "key": E_A}``; R → B ``{"from": A, "key": E_A, "window": W}``.
- ``accept`` B → R ``{"key": E_B}``; R → A ``{"key": E_B, "window": W}``.
- ``refuse`` and ``close`` ``{"reason": text}``, either way; a relay passes them on.
- ``credit``: the frame's ``seq`` is how many more bytes of data the sender may send (the
  receiver has read them).
- data: no header; the payload is one sealed message (:class:`CircuitCipher`).

The two ends agree keys over the circuit: X25519 of their ephemeral keys, HKDF-SHA256 into one
ChaCha20-Poly1305 key per direction, nonces counting the frames of each direction from 0. A
relay that alters, drops, reorders or replays a frame makes it not open. :func:`fingerprint` of
each end's ephemeral key is what the handshake (section 6.3) binds to in place of the DTLS
fingerprints: a relay that runs one key exchange with each end has other keys at each, so a
proof made to it does not verify at the other end.

Every reader raises only :class:`CircuitError` (a :class:`~p2prpc.errors.RemoteProtocolError`).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import RemoteProtocolError

#: What a node's hello says under ``"circuit"``: ``{"v": 1}`` for an end, plus ``"relay":
#: true`` for a node that carries others' circuits.
CIRCUIT_VERSION = 1
#: The largest message one circuit data frame carries, in bytes before sealing: what the
#: circuit's link says its remote takes (``max_message_size``), so that one message is one frame
#: on each leg and a relay never reassembles anything.
MAX_CIRCUIT_MESSAGE = 16 * 1024
#: What sealing adds to a message: its type byte and the AEAD tag.
SEAL_OVERHEAD = 1 + 16
#: The largest data frame payload a relay passes on.
MAX_SEALED = MAX_CIRCUIT_MESSAGE + SEAL_OVERHEAD
#: The smallest and largest window a relay may give (bytes of data in flight each way).
MIN_WINDOW = 2 * MAX_SEALED
MAX_WINDOW = 2**31 - 1
#: The longest reason text carried in a refuse or close.
MAX_REASON = 256
#: The most frames one direction of a circuit may carry (its nonce counter; it then closes).
MAX_FRAMES = 2**64 - 1

_LABEL = b"p2prpc-circuit-v1\x00"
_FP_LABEL = b"p2prpc-circuit-fp-v1\x00"
_TEXT, _BINARY = 0, 1
_NONCE_PREFIX = b"\x00\x00\x00\x00"
_COUNTER = struct.Struct(">Q")


class CircuitError(RemoteProtocolError):
    """A circuit message is malformed, or a sealed frame does not open."""


class Op(enum.Enum):
    CONNECT = "connect"
    ACCEPT = "accept"
    REFUSE = "refuse"
    CLOSE = "close"
    CREDIT = "credit"


@dataclass(frozen=True, slots=True)
class Control:
    """One circuit control message (the JSON header of a ``CIRCUIT`` frame). ``peer``: ``to``
    (A → R) or ``from`` (R → B) of a connect; ``key``: an end's ephemeral X25519 public key;
    ``window``: the bytes each end may have in flight (what the relay gives); ``reason``: why a
    circuit is refused or closed."""

    op: Op
    peer: str | None = None
    key: bytes | None = None
    window: int | None = None
    reason: str | None = None


def encode_control(control: Control, *, to: bool = True) -> dict[str, Any]:
    """The JSON header of ``control`` (``to``: a connect names its peer as ``to``, else
    ``from``)."""
    out: dict[str, Any] = {"circuit": control.op.value}
    if control.peer is not None:
        out["to" if to else "from"] = control.peer
    if control.key is not None:
        out["key"] = base64.b64encode(control.key).decode("ascii")
    if control.window is not None:
        out["window"] = control.window
    if control.reason is not None:
        out["reason"] = control.reason[:MAX_REASON]
    return out


def _peer_id(value: object) -> str:
    if (
        not isinstance(value, str)
        or len(value) != 40
        or value.strip("0123456789abcdef") != ""  # lower-case hex only
    ):
        raise CircuitError(
            f"a circuit names a peer by 40 lower-case hex characters, not {value!r:.60}"
        )
    return value


def _key(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 44:
        raise CircuitError("a circuit key is 32 bytes in padded base64")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise CircuitError(f"a circuit key is not base64: {e}") from e
    if len(key) != 32 or base64.b64encode(key).decode("ascii") != value:
        raise CircuitError("a circuit key is 32 bytes in canonical base64")
    return key


def decode_control(header: Mapping[str, Any]) -> Control:
    """Read a ``CIRCUIT`` frame's JSON header; :class:`CircuitError` names what is wrong."""
    raw = header.get("circuit")
    try:
        op = Op(raw)
    except ValueError:
        raise CircuitError(f"unknown circuit op {raw!r:.40}") from None
    peer: str | None = None
    key: bytes | None = None
    window: int | None = None
    reason: str | None = None
    if op is Op.CONNECT:
        if ("to" in header) == ("from" in header):
            raise CircuitError("a connect names its peer once: to (to a relay) or from")
        peer = _peer_id(header["to"] if "to" in header else header["from"])
    if op in (Op.CONNECT, Op.ACCEPT):
        key = _key(header.get("key"))
    if "window" in header:
        value = header["window"]
        if type(value) is not int or not MIN_WINDOW <= value <= MAX_WINDOW:
            raise CircuitError(f"a circuit window is {MIN_WINDOW} to {MAX_WINDOW} bytes")
        window = value
    if op in (Op.REFUSE, Op.CLOSE):
        value = header.get("reason", "")
        if not isinstance(value, str) or len(value) > MAX_REASON:
            raise CircuitError(f"a circuit's reason is text of at most {MAX_REASON} characters")
        reason = value
    return Control(op, peer, key, window, reason)


def is_to_relay(header: Mapping[str, Any]) -> bool:
    """Whether a connect asks its receiver to relay (it names ``to``, not ``from``)."""
    return "to" in header


def fingerprint(public_key: bytes) -> bytes:
    """What the handshake binds to for a circuit end whose ephemeral key is ``public_key``
    (32 bytes): SHA-256 of ``"p2prpc-circuit-fp-v1" 0x00 ‖ key``."""
    return hashlib.sha256(_FP_LABEL + public_key).digest()


class Ephemeral:
    """One end's fresh X25519 key pair for one circuit (never stored)."""

    __slots__ = ("_private", "public")

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public: bytes = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def cipher(
        self, remote: bytes, *, initiator: bool, initiator_id: bytes, responder_id: bytes
    ) -> CircuitCipher:
        """The circuit's cipher with the other end's key ``remote``; :class:`CircuitError` when
        the exchange gives all zeros (a low-order key)."""
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(remote))
        except ValueError as e:
            raise CircuitError(f"the circuit's key exchange failed: {e}") from e
        ours, theirs = self.public, remote
        first, second = (ours, theirs) if initiator else (theirs, ours)
        info = _LABEL + first + second + initiator_id + responder_id
        keys = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=info).derive(shared)
        forward, backward = keys[:32], keys[32:]
        send, receive = (forward, backward) if initiator else (backward, forward)
        return CircuitCipher(send, receive, local=ours, remote=theirs)


class CircuitCipher:
    """Seals and opens one circuit's data frames: ChaCha20-Poly1305, one key per direction, the
    nonce the frame's number in its direction (4 zero bytes ‖ u64 big-endian). A message is a
    type byte (0 text, as UTF-8; 1 binary) and its bytes."""

    __slots__ = ("_receive", "_received", "_send", "_sent", "local", "remote")

    def __init__(self, send: bytes, receive: bytes, *, local: bytes, remote: bytes) -> None:
        self._send = ChaCha20Poly1305(send)
        self._receive = ChaCha20Poly1305(receive)
        self._sent = 0
        self._received = 0
        self.local = local
        self.remote = remote

    def fingerprints(self) -> tuple[bytes, bytes]:
        """(local, remote) :func:`fingerprint` of the two ends' keys."""
        return fingerprint(self.local), fingerprint(self.remote)

    def seal(self, message: str | bytes) -> bytes:
        """The sealed payload of one data frame."""
        if self._sent >= MAX_FRAMES:
            raise CircuitError("the circuit has carried all the frames its nonces number")
        if isinstance(message, str):
            plain = bytes((_TEXT,)) + message.encode("utf-8", "surrogatepass")
        else:
            plain = bytes((_BINARY,)) + message
        nonce = _NONCE_PREFIX + _COUNTER.pack(self._sent)
        self._sent += 1
        return self._send.encrypt(nonce, plain, None)

    def open(self, sealed: bytes) -> str | bytes:
        """The message of the next data frame; :class:`CircuitError` when it does not open
        (altered, out of order, replayed, or sealed with other keys)."""
        if len(sealed) < SEAL_OVERHEAD:
            raise CircuitError("a circuit data frame shorter than its tag")
        nonce = _NONCE_PREFIX + _COUNTER.pack(self._received)
        try:
            plain = self._receive.decrypt(nonce, sealed, None)
        except InvalidTag:
            raise CircuitError(
                "a circuit data frame did not open (altered or out of order)"
            ) from None
        self._received += 1
        if plain[0] == _TEXT:
            try:
                return plain[1:].decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as e:
                raise CircuitError(f"a circuit text message is not UTF-8: {e}") from e
        if plain[0] == _BINARY:
            return plain[1:]
        raise CircuitError(f"a circuit message of unknown type {plain[0]}")
