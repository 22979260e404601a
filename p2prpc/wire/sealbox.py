"""Offers and answers sealed to one peer's key, so that a member relaying them learns nothing.

The swarm seal (:func:`p2prpc.wire.secret.seal`) keeps trackers and outsiders out, but every
member holds its key: a member relaying signalling through the mesh could open what it carries.
Between peers with identities, a relayed offer is sealed instead to the recipient's X25519 key,
and the answer back to the offerer's. Pure layouts, no I/O:

- :class:`SealKey`: the 128-byte record that announces a peer's X25519 key, signed by its Ed25519
  identity over the swarm's info_hash and the peer id, so a relay cannot put its own X25519 key
  in another peer's place (the hello and the mesh's pex entries carry it as base64).
- :class:`SealKeyPair`: our X25519 private key (fresh for each swarm and peer id, never stored)
  and its record.
- :func:`seal_to` / :func:`open_from`: the sealed text. Its key comes from HKDF-SHA256 over two
  X25519 exchanges (a fresh ephemeral key with the recipient's, for forward secrecy; the sender's
  own with the recipient's, so only the holder of the sender's key can make it) salted with the
  swarm seal key (so only members can make or open it); ChaCha20-Poly1305 with both peer ids, the
  offer id and the header as associated data. A relay can neither read nor alter it, nor make a
  box that opens as another peer's.

Layouts are in ``docs/PROTOCOL.md``, section 6.5. Every reader raises only
:class:`~p2prpc.wire.secret.SealError` (a box) or :class:`SealKeyError` (a record), both
:class:`~p2prpc.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import RemoteProtocolError
from .secret import (
    MAX_SDP,
    SEAL_CLOCK_SKEW,
    SEAL_MAX_AGE,
    TIME_SIZE,
    SealError,
    read_stamped,
    stamp,
)

__all__ = [
    "RECORD_SIZE",
    "SEALED_TO_PREFIX",
    "SealKey",
    "SealKeyError",
    "SealKeyPair",
    "is_sealed_to",
    "open_from",
    "seal_key_bytes",
    "seal_to",
]

#: What starts an SDP sealed to one peer; the rest is unpadded base64url of the box.
SEALED_TO_PREFIX: Final = "p2prpc-sealed-to-1:"
#: The domain separator of what a :class:`SealKey`'s signature covers.
SEAL_KEY_LABEL: Final = b"p2prpc-seal-key-v1\0"
#: The domain separator of a box's key derivation and associated data.
BOX_LABEL: Final = b"p2prpc-sealed-to-v1\0"
KEY_SIZE: Final = 32  # Ed25519 and X25519 public keys alike
SIGNATURE_SIZE: Final = 64
#: A :class:`SealKey` as bytes: Ed25519 identity ‖ X25519 key ‖ signature.
RECORD_SIZE: Final = KEY_SIZE + KEY_SIZE + SIGNATURE_SIZE
#: What precedes the ciphertext in a box: the ephemeral X25519 key and the sender's record.
HEADER_SIZE: Final = KEY_SIZE + RECORD_SIZE
TAG_SIZE: Final = 16
_KINDS: Final = {"offer": b"\x01", "answer": b"\x02"}
_RECORD_TEXT: Final = (RECORD_SIZE + 2) // 3 * 4  # padded base64 of a record: 172 characters


class SealKeyError(RemoteProtocolError):
    """A seal-key record that is malformed (not base64 of 128 bytes)."""


def seal_key_bytes(info_hash: bytes, peer_id: bytes, identity: bytes, public: bytes) -> bytes:
    """What a :class:`SealKey`'s Ed25519 signature covers: that ``identity``, as ``peer_id`` in the
    swarm ``info_hash``, takes sealed offers and answers at the X25519 key ``public``."""
    if len(info_hash) != 20 or len(peer_id) != 20:
        raise ValueError("info_hash and peer ids are 20 bytes")
    if len(identity) != KEY_SIZE or len(public) != KEY_SIZE:
        raise ValueError("public keys are 32 bytes")
    return SEAL_KEY_LABEL + info_hash + peer_id + identity + public


@dataclass(frozen=True, slots=True)
class SealKey:
    """A peer's announced X25519 key, bound to its Ed25519 identity by a signature.

    ``identity``: the 32-byte Ed25519 public key that signed; ``public``: the 32-byte X25519 key;
    ``signature``: 64 bytes, Ed25519 of :func:`seal_key_bytes`. A record read from the wire is
    only well formed; :meth:`verify` says whether it binds ``public`` to a given peer id.
    """

    identity: bytes
    public: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """The 128 bytes: identity ‖ public ‖ signature."""
        return self.identity + self.public + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> SealKey:
        """A record from its 128 bytes; :class:`SealKeyError` for any other length."""
        if len(data) != RECORD_SIZE:
            raise SealKeyError(f"a seal key record is {RECORD_SIZE} bytes, not {len(data)}")
        return cls(
            bytes(data[:KEY_SIZE]),
            bytes(data[KEY_SIZE : 2 * KEY_SIZE]),
            bytes(data[2 * KEY_SIZE :]),
        )

    def to_text(self) -> str:
        """The record as hellos and pex entries carry it: padded standard base64 (172 chars)."""
        return base64.b64encode(self.to_bytes()).decode("ascii")

    @classmethod
    def from_text(cls, value: object) -> SealKey:
        """A record from :meth:`to_text`'s form; :class:`SealKeyError` for anything else
        (another type, other characters, a non-canonical encoding, another length)."""
        if not isinstance(value, str) or len(value) != _RECORD_TEXT:
            raise SealKeyError("a seal key is base64 of a 128-byte record")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SealKeyError("a seal key is base64 of a 128-byte record") from None
        if base64.b64encode(data).decode("ascii") != value:
            raise SealKeyError("a seal key is canonical base64")
        return cls.from_bytes(data)

    def verify(self, *, info_hash: bytes, peer_id: bytes) -> bool:
        """Whether ``identity`` signed ``public`` for ``peer_id`` in the swarm ``info_hash``."""
        try:
            signed = seal_key_bytes(info_hash, peer_id, self.identity, self.public)
            Ed25519PublicKey.from_public_bytes(self.identity).verify(self.signature, signed)
        except (InvalidSignature, ValueError):
            return False
        return True


class SealKeyPair:
    """Our X25519 key for sealed signalling and the :class:`SealKey` record announcing it.

    Made fresh by :meth:`generate` for one swarm (``info_hash``) and one peer id, and kept in
    memory only: what was sealed to it cannot be opened once the process is gone.
    """

    __slots__ = ("_private", "info_hash", "peer_id", "record")

    def __init__(
        self, private: X25519PrivateKey, record: SealKey, *, info_hash: bytes, peer_id: bytes
    ) -> None:
        self._private = private
        self.record = record
        self.info_hash = info_hash
        self.peer_id = peer_id

    @classmethod
    def generate(
        cls,
        *,
        identity: bytes,
        sign: Callable[[bytes], bytes],
        info_hash: bytes,
        peer_id: bytes,
    ) -> SealKeyPair:
        """A new X25519 key, its record signed by ``sign`` (the Ed25519 key ``identity``)."""
        private = X25519PrivateKey.generate()
        public = _raw(private.public_key())
        signature = sign(seal_key_bytes(info_hash, peer_id, identity, public))
        record = SealKey(identity, public, signature)
        return cls(private, record, info_hash=info_hash, peer_id=peer_id)

    def _exchange(self, public: bytes) -> bytes:
        return _exchange(self._private, public)

    def __repr__(self) -> str:
        return f"<SealKeyPair {self.record.public.hex()[:16]}… of {self.peer_id.hex()[:8]}>"


def is_sealed_to(text: str) -> bool:
    """Whether ``text`` is (meant as) an SDP sealed to one peer's key."""
    return text.startswith(SEALED_TO_PREFIX)


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _exchange(private: X25519PrivateKey, public: bytes) -> bytes:
    """X25519; :class:`SealError` for a key that gives no shared secret (a low-order point)."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise SealError("an X25519 key that gives no shared secret") from None


def _box_key(
    swarm_key: bytes, kind: bytes, secrets: bytes, ephemeral: bytes, sender: bytes, recipient: bytes
) -> tuple[bytes, bytes]:
    """The ChaCha20-Poly1305 key (32 bytes) and nonce (12) of one box."""
    if len(swarm_key) != 32:
        raise ValueError("the swarm seal key is 32 bytes")
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=44,
        salt=swarm_key,
        info=BOX_LABEL + kind + ephemeral + sender + recipient,
    ).derive(secrets)
    return okm[:32], okm[32:]


def _box_aad(
    kind: bytes, info_hash: bytes, from_id: bytes, to_id: bytes, offer_id: bytes, header: bytes
) -> bytes:
    for value in (info_hash, from_id, to_id, offer_id):
        if len(value) != 20:
            raise ValueError("ids and info_hash are 20 bytes")
    return BOX_LABEL + kind + info_hash + from_id + to_id + offer_id + header


def _kind(kind: str) -> bytes:
    found = _KINDS.get(kind)
    if found is None:
        raise ValueError("kind is 'offer' or 'answer'")
    return found


def seal_to(
    recipient: bytes,
    sender: SealKeyPair,
    swarm_key: bytes,
    kind: str,
    sdp: str,
    *,
    info_hash: bytes,
    from_id: bytes,
    to_id: bytes,
    offer_id: bytes,
    ephemeral: X25519PrivateKey | None = None,
    created: float | None = None,
) -> str:
    """The text that travels in place of an SDP, which only the holder of ``recipient`` opens.

    ``recipient``: the 32-byte X25519 key of a :class:`SealKey` verified for ``to_id``;
    ``sender``: our key pair, made for ``from_id`` in ``info_hash``; ``swarm_key``: the 32-byte
    swarm seal key; ``kind``: ``"offer"`` or ``"answer"``; ``created``: when it is sealed
    (seconds since the Unix epoch, by default now), sealed in as for the swarm seal
    (:func:`~p2prpc.wire.secret.stamp`). ``ephemeral`` is for tests only (by default a fresh key
    each). :class:`SealError` when ``recipient`` is unusable (a low-order
    point); :class:`ValueError` for sizes or ids that are not ours.
    """
    if sender.info_hash != info_hash or sender.peer_id != from_id:
        raise ValueError("the sender's key pair was made for another swarm or peer id")
    data = sdp.encode("utf-8", "surrogatepass")
    if len(data) > MAX_SDP:
        raise ValueError(f"an SDP of {len(data)} bytes is over {MAX_SDP}")
    tag = _kind(kind)
    ephemeral = X25519PrivateKey.generate() if ephemeral is None else ephemeral
    ephemeral_public = _raw(ephemeral.public_key())
    secrets = _exchange(ephemeral, recipient) + sender._exchange(recipient)
    key, nonce = _box_key(
        swarm_key, tag, secrets, ephemeral_public, sender.record.public, recipient
    )
    header = ephemeral_public + sender.record.to_bytes()
    aad = _box_aad(tag, info_hash, from_id, to_id, offer_id, header)
    box = header + ChaCha20Poly1305(key).encrypt(nonce, stamp(created) + data, aad)
    return SEALED_TO_PREFIX + base64.urlsafe_b64encode(box).rstrip(b"=").decode("ascii")


def open_from(
    recipient: SealKeyPair,
    swarm_key: bytes,
    kind: str,
    text: str,
    *,
    info_hash: bytes,
    from_id: bytes,
    to_id: bytes,
    offer_id: bytes,
    now: float | None = None,
    max_age: float = SEAL_MAX_AGE,
    max_skew: float = SEAL_CLOCK_SKEW,
) -> tuple[str, SealKey]:
    """The SDP inside a box sealed to ``recipient``, and the sender's record.

    The record is verified for ``from_id`` in ``info_hash``, and the box opens only if whoever
    made it holds that record's X25519 key: the returned record's ``identity`` is the Ed25519
    key that sent it (the caller checks it is the one it expects). :class:`SealError` unless it
    opens with exactly these ids, this kind and this swarm key, and
    :class:`~p2prpc.wire.secret.StaleSeal` unless it was sealed within ``max_age`` seconds before
    ``now`` (and at most ``max_skew`` after), as :func:`~p2prpc.wire.secret.open_sealed`.
    """
    if recipient.info_hash != info_hash or recipient.peer_id != to_id:
        raise ValueError("the recipient's key pair was made for another swarm or peer id")
    tag = _kind(kind)
    if not text.startswith(SEALED_TO_PREFIX):
        raise SealError(f"{kind} is not sealed to a peer's key")
    body = text[len(SEALED_TO_PREFIX) :]
    if len(body) > (MAX_SDP + TIME_SIZE + HEADER_SIZE + TAG_SIZE) * 4 // 3 + 4:
        raise SealError(f"sealed {kind} too long")
    try:
        box = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise SealError(f"sealed {kind} is not base64url") from None
    if base64.urlsafe_b64encode(box).rstrip(b"=") != body.encode("ascii", "replace"):
        raise SealError(f"sealed {kind} is not canonical unpadded base64url")
    if len(box) < HEADER_SIZE + TAG_SIZE:
        raise SealError(f"sealed {kind} too short")
    header, ciphertext = box[:HEADER_SIZE], box[HEADER_SIZE:]
    ephemeral, sender = header[:KEY_SIZE], SealKey.from_bytes(header[KEY_SIZE:])
    if not sender.verify(info_hash=info_hash, peer_id=from_id):
        raise SealError(f"sealed {kind}: the sender's key is not signed for its peer id")
    secrets = recipient._exchange(ephemeral) + recipient._exchange(sender.public)
    key, nonce = _box_key(
        swarm_key, tag, secrets, ephemeral, sender.public, recipient.record.public
    )
    aad = _box_aad(tag, info_hash, from_id, to_id, offer_id, header)
    try:
        data = ChaCha20Poly1305(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise SealError(f"sealed {kind} does not open: forged, altered or not for us") from None
    return read_stamped(kind, data, now=now, max_age=max_age, max_skew=max_skew), sender
