"""Secret swarms and peer identities on the wire: pure layouts, no I/O.

- :func:`derive_keys`: a swarm secret and an identifier give the swarm's info_hash and its keys
  (HKDF-SHA256), so the tracker never learns the identifier and nobody finds the swarm without
  the secret.
- :func:`seal` / :func:`open_sealed`: an offer's or an answer's SDP and the time it was sealed,
  encrypted and authenticated (ChaCha20-Poly1305, a fresh random nonce each) with the peer ids and
  the offer id bound as associated data, so a tracker can neither read nor alter it, nor its DTLS
  fingerprints; one sealed too long ago (or ahead of our clock) does not open, so what a third
  party recorded cannot be played back later (replays within that window are for
  :class:`~p2prpc.signalling.Signalling` to refuse).
- :func:`make_auth` / :func:`verify_auth`: the first data-channel message of each connection in
  secret or identity mode. It proves knowledge of the secret (HMAC-SHA256) and, with an identity,
  holding an Ed25519 key, both over the two DTLS fingerprints of *this* connection and both peer
  ids, so neither can be replayed on another connection or relayed by a man in the middle.
- :func:`publication_bytes`: what a topic message's Ed25519 signature covers.

Layouts are in ``docs/PROTOCOL.md``, section 6. Every decoder raises
:class:`~p2prpc.errors.RemoteProtocolError` subclasses on bad input, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import RemoteProtocolError

__all__ = [
    "AUTH_MAGIC",
    "SEAL_PREFIX",
    "AuthError",
    "AuthFrame",
    "ReplayedSeal",
    "SealError",
    "StaleSeal",
    "SwarmKeys",
    "canonical_json",
    "decode_auth",
    "derive_keys",
    "is_auth_frame",
    "make_auth",
    "open_sealed",
    "publication_bytes",
    "sdp_fingerprint",
    "seal",
    "verify_auth",
    "verify_publication",
]

#: The salt of every HKDF derivation (a fixed, public domain separator).
KDF_SALT: Final = b"p2prpc swarm secret v1"
#: What starts a sealed SDP string; the rest is unpadded base64url of nonce ‖ ciphertext ‖ tag.
SEAL_PREFIX: Final = "p2prpc-sealed-2:"
#: The first bytes of a sealed SDP's associated data (the layout's version, kept with the prefix's).
SEAL_LABEL: Final = b"p2prpc-seal-v2\0"
#: Seconds a sealed offer or answer opens for after it was sealed, by the opener's clock: P2PT's
#: offer lifetime (50 s) and :data:`SEAL_CLOCK_SKEW` for the sealer's clock being behind ours.
SEAL_MAX_AGE: Final = 80.0
#: Seconds a sealed offer or answer may claim to come from ahead of the opener's clock.
SEAL_CLOCK_SKEW: Final = 30.0
#: The creation time leading the sealed plaintext: milliseconds since the Unix epoch, u64 BE.
TIME_SIZE: Final = 8
#: The largest SDP we seal or open (the tracker client's own frame cap is 1 MiB).
MAX_SDP: Final = 256 * 1024
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
#: The first byte of a handshake frame: neither ``^`` (P2PT) nor 0xB7 (the binary envelope).
AUTH_MAGIC: Final = 0xA5
AUTH_VERSION: Final = 1
#: Handshake flags: what the frame proves.
FLAG_SECRET: Final = 1
FLAG_IDENTITY: Final = 2
MAC_SIZE: Final = 32
KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
_ZERO_ID: Final = bytes(20)
_FINGERPRINT = re.compile(
    r"^a=fingerprint:sha-256 ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31})\s*$", re.M
)


class SealError(RemoteProtocolError):
    """A sealed offer or answer that does not open: not sealed, forged, altered, or sealed with
    another secret. It is dropped, never answered."""


class StaleSeal(SealError):
    """A sealed offer or answer that opens but was sealed longer ago than the opener allows, or
    claims a time too far ahead of the opener's clock: a recording played back, or a clock far
    off. Dropped, never answered."""


class ReplayedSeal(SealError):
    """A sealed offer or answer opened once already (the same sender, offer id and kind): a copy
    played back. Dropped, never answered."""


class AuthError(RemoteProtocolError):
    """A handshake frame that is malformed or proves nothing we accept."""


@dataclass(frozen=True, slots=True)
class SwarmKeys:
    """What a secret and an identifier derive: the swarm's info_hash and its two keys."""

    info_hash: bytes  # 20 bytes, announced to trackers instead of SHA-1(identifier)
    seal_key: bytes  # 32 bytes, ChaCha20-Poly1305 key of offers and answers
    proof_key: bytes  # 32 bytes, HMAC-SHA256 key of the channel handshake


def _secret_bytes(secret: str | bytes) -> bytes:
    data = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not data:
        raise ValueError("a swarm secret must not be empty")
    return data


def derive_keys(secret: str | bytes, identifier: str) -> SwarmKeys:
    """HKDF-SHA256 of ``secret`` (salt :data:`KDF_SALT`), one output per purpose: ``info`` is
    the purpose's label, a zero byte and the identifier's UTF-8 bytes."""
    ikm = _secret_bytes(secret)
    ident = identifier.encode("utf-8", "surrogatepass")

    def derive(label: bytes, length: int) -> bytes:
        kdf = HKDF(
            algorithm=hashes.SHA256(), length=length, salt=KDF_SALT, info=label + b"\0" + ident
        )
        return kdf.derive(ikm)

    return SwarmKeys(
        info_hash=derive(b"info_hash", 20),
        seal_key=derive(b"seal", 32),
        proof_key=derive(b"proof", 32),
    )


# -- sealed offers and answers --------------------------------------------------------------------


def _seal_aad(
    kind: str, info_hash: bytes, from_id: bytes, to_id: bytes | None, offer_id: bytes
) -> bytes:
    if kind not in ("offer", "answer"):
        raise ValueError("kind is 'offer' or 'answer'")
    for value in (info_hash, from_id, offer_id, to_id or _ZERO_ID):
        if len(value) != 20:
            raise ValueError("ids and info_hash are 20 bytes")
    return (
        SEAL_LABEL
        + (b"\x01" if kind == "offer" else b"\x02")
        + info_hash
        + from_id
        + (to_id or _ZERO_ID)
        + offer_id
    )


def seal(
    key: bytes,
    kind: str,
    sdp: str,
    *,
    info_hash: bytes,
    from_id: bytes,
    to_id: bytes | None,
    offer_id: bytes,
    nonce: bytes | None = None,
    created: float | None = None,
) -> str:
    """The sealed text that travels in place of an SDP (``kind``: ``"offer"`` or ``"answer"``).

    ``to_id`` is ``None`` for an offer (the tracker picks who receives it; 20 zero bytes are
    bound instead). ``created``: when it is sealed, in seconds since the Unix epoch (by default
    now); openers refuse it once it is older than their ``max_age``. ``nonce`` is for tests only:
    by default 12 fresh random bytes.
    """
    data = sdp.encode("utf-8", "surrogatepass")
    if len(data) > MAX_SDP:
        raise ValueError(f"an SDP of {len(data)} bytes is over {MAX_SDP}")
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    if len(nonce) != NONCE_SIZE:
        raise ValueError("the nonce is 12 bytes")
    created = time.time() if created is None else created
    if not 0 <= created * 1000 < 2.0**64:  # also false for NaN
        raise ValueError("the creation time is not a time since the Unix epoch")
    millis = min(round(created * 1000), 2**64 - 1)
    data = millis.to_bytes(TIME_SIZE, "big") + data
    aad = _seal_aad(kind, info_hash, from_id, to_id, offer_id)
    box = nonce + ChaCha20Poly1305(key).encrypt(nonce, data, aad)
    return SEAL_PREFIX + base64.urlsafe_b64encode(box).rstrip(b"=").decode("ascii")


def open_sealed(
    key: bytes,
    kind: str,
    text: str,
    *,
    info_hash: bytes,
    from_id: bytes,
    to_id: bytes | None,
    offer_id: bytes,
    now: float | None = None,
    max_age: float = SEAL_MAX_AGE,
    max_skew: float = SEAL_CLOCK_SKEW,
) -> str:
    """The SDP inside a sealed text; :class:`SealError` unless it opens with exactly these ids,
    and :class:`StaleSeal` (a :class:`SealError`) unless it was sealed at most ``max_age`` seconds
    before ``now`` and at most ``max_skew`` seconds after it (``now``: seconds since the Unix
    epoch, by default the clock's)."""
    if not text.startswith(SEAL_PREFIX):
        raise SealError(f"a plain (unsealed) {kind} in a secret swarm, or another seal version")
    body = text[len(SEAL_PREFIX) :]
    if len(body) > (MAX_SDP + TIME_SIZE + NONCE_SIZE + TAG_SIZE) * 4 // 3 + 4:
        raise SealError(f"sealed {kind} too long")
    try:
        box = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as e:
        raise SealError(f"sealed {kind} is not base64url: {e}") from None
    if base64.urlsafe_b64encode(box).rstrip(b"=") != body.encode("ascii", "replace"):
        raise SealError(f"sealed {kind} is not canonical unpadded base64url")  # one text per box
    if len(box) < NONCE_SIZE + TAG_SIZE:
        raise SealError(f"sealed {kind} too short")
    aad = _seal_aad(kind, info_hash, from_id, to_id, offer_id)
    try:
        data = ChaCha20Poly1305(key).decrypt(box[:NONCE_SIZE], box[NONCE_SIZE:], aad)
    except InvalidTag:
        raise SealError(f"sealed {kind} does not open: forged, altered or another secret") from None
    if len(data) < TIME_SIZE:
        raise SealError(f"sealed {kind} holds no creation time")
    now = time.time() if now is None else now
    age = now - int.from_bytes(data[:TIME_SIZE], "big") / 1000
    if age > max_age:
        raise StaleSeal(f"sealed {kind} is {age:.0f} s old, over {max_age:g} s: played back?")
    if -age > max_skew:
        raise StaleSeal(f"sealed {kind} is dated {-age:.0f} s ahead of our clock")
    try:
        return data[TIME_SIZE:].decode("utf-8")
    except UnicodeDecodeError:
        raise SealError(f"sealed {kind} holds no UTF-8 text") from None


# -- the channel handshake -------------------------------------------------------------------------


def sdp_fingerprint(sdp: str) -> bytes:
    """The SHA-256 DTLS certificate fingerprint an SDP names, as 32 bytes.

    aiortc (like every WebRTC stack) refuses a DTLS peer whose certificate does not match the
    fingerprints of the remote description, so this names the key the other end really holds.
    """
    found = _FINGERPRINT.search(sdp)
    if found is None:
        raise AuthError("the session description names no sha-256 fingerprint")
    return bytes.fromhex(found.group(1).replace(":", ""))


@dataclass(frozen=True, slots=True)
class AuthFrame:
    """A decoded handshake frame."""

    flags: int
    mac: bytes | None
    public_key: bytes | None
    signature: bytes | None


def is_auth_frame(data: str | bytes) -> bool:
    return isinstance(data, bytes) and data[:1] == bytes([AUTH_MAGIC])


def _transcript(
    info_hash: bytes,
    sender_id: bytes,
    receiver_id: bytes,
    sender_fingerprint: bytes,
    receiver_fingerprint: bytes,
    flags: int,
    public_key: bytes | None,
) -> bytes:
    """What a handshake frame's MAC and signature cover: who says it to whom, over which DTLS
    certificates (sender's first, so a frame cannot be reflected back), in which swarm."""
    for value in (info_hash, sender_id, receiver_id):
        if len(value) != 20:
            raise ValueError("ids and info_hash are 20 bytes")
    for value in (sender_fingerprint, receiver_fingerprint):
        if len(value) != 32:
            raise ValueError("fingerprints are 32 bytes (SHA-256)")
    return b"".join(
        (
            b"p2prpc-auth-v1\0",
            info_hash,
            sender_id,
            receiver_id,
            sender_fingerprint,
            receiver_fingerprint,
            bytes([flags]),
            public_key or b"",
        )
    )


def make_auth(
    *,
    info_hash: bytes,
    local_id: bytes,
    remote_id: bytes,
    local_fingerprint: bytes,
    remote_fingerprint: bytes,
    proof_key: bytes | None = None,
    public_key: bytes | None = None,
    sign: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Our handshake frame for one connection: a proof of the secret when ``proof_key`` is
    given, a signature by our identity when ``public_key`` and ``sign`` are."""
    flags = (FLAG_SECRET if proof_key is not None else 0) | (
        FLAG_IDENTITY if public_key is not None else 0
    )
    transcript = _transcript(
        info_hash, local_id, remote_id, local_fingerprint, remote_fingerprint, flags, public_key
    )
    out = bytearray((AUTH_MAGIC, AUTH_VERSION, flags))
    if proof_key is not None:
        out += hmac.digest(proof_key, transcript, "sha256")
    if public_key is not None:
        if sign is None or len(public_key) != KEY_SIZE:
            raise ValueError("an identity needs its 32-byte public key and a signing function")
        out += public_key + sign(transcript)
    return bytes(out)


def decode_auth(data: bytes) -> AuthFrame:
    """A handshake frame's fields; :class:`AuthError` when it is malformed."""
    if len(data) < 3 or data[0] != AUTH_MAGIC:
        raise AuthError("not a handshake frame")
    if data[1] != AUTH_VERSION:
        raise AuthError(f"handshake version {data[1]} is not {AUTH_VERSION}")
    flags = data[2]
    if flags & ~(FLAG_SECRET | FLAG_IDENTITY):
        raise AuthError(f"unknown handshake flags {flags:#x}")
    expected = 3 + (MAC_SIZE if flags & FLAG_SECRET else 0)
    expected += KEY_SIZE + SIGNATURE_SIZE if flags & FLAG_IDENTITY else 0
    if len(data) != expected:
        raise AuthError(f"handshake frame of {len(data)} bytes, not {expected}")
    offset = 3
    mac = key = signature = None
    if flags & FLAG_SECRET:
        mac = data[offset : offset + MAC_SIZE]
        offset += MAC_SIZE
    if flags & FLAG_IDENTITY:
        key = data[offset : offset + KEY_SIZE]
        signature = data[offset + KEY_SIZE :]
    return AuthFrame(flags, mac, key, signature)


def verify_auth(
    data: bytes,
    *,
    info_hash: bytes,
    local_id: bytes,
    remote_id: bytes,
    local_fingerprint: bytes,
    remote_fingerprint: bytes,
    proof_key: bytes | None = None,
) -> bytes | None:
    """Check the remote's handshake frame for this connection; return the public key it proves
    (``None`` when it shows no identity).

    With ``proof_key`` the frame must prove the secret. A signature, when present, must verify.
    Raises :class:`AuthError` otherwise.
    """
    frame = decode_auth(data)
    transcript = _transcript(
        info_hash,
        remote_id,
        local_id,
        remote_fingerprint,
        local_fingerprint,
        frame.flags,
        frame.public_key,
    )
    if proof_key is not None:
        if frame.mac is None:
            raise AuthError("the peer proves no knowledge of the swarm secret")
        if not hmac.compare_digest(frame.mac, hmac.digest(proof_key, transcript, "sha256")):
            raise AuthError("the peer's proof of the swarm secret is wrong for this connection")
    if frame.public_key is not None:
        assert frame.signature is not None
        try:
            Ed25519PublicKey.from_public_bytes(frame.public_key).verify(frame.signature, transcript)
        except (InvalidSignature, ValueError):
            raise AuthError("the peer's identity signature is wrong for this connection") from None
    return frame.public_key


# -- signed topic messages ------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """The bytes a JSON-form topic payload is signed as: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8", "surrogatepass")


def publication_bytes(topic: str, origin: str, seq: int, payload: bytes) -> bytes:
    """What a publisher signs: topic, its peer id, the message's seq and the payload bytes
    (protobuf bytes in the binary form, :func:`canonical_json` in the JSON form). Hops and the
    relay list are not covered: relays change them."""
    name = topic.encode("utf-8", "surrogatepass")
    return b"".join(
        (
            b"p2prpc-pub-v1\0",
            len(name).to_bytes(2, "big"),
            name,
            bytes.fromhex(origin),
            seq.to_bytes(8, "big"),
            payload,
        )
    )


def verify_publication(public_key: bytes, signature: bytes, signed: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``signed``."""
    if len(public_key) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True
