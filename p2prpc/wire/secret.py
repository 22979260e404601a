"""Secret swarms and peer identities on the wire: pure layouts, no I/O.

- :func:`derive_keys`: a swarm secret and an identifier give the swarm's info_hash and its keys
  (scrypt, then HKDF-SHA256), so the tracker never learns the identifier, nobody finds the swarm
  without the secret, and guessing the secret from the public info_hash is slow.
  :func:`check_secret` refuses secrets too weak for that (:func:`secret_strength` is the rule);
  :func:`new_secret` makes a good one.
- :func:`seal` / :func:`open_sealed`: an offer's or an answer's SDP and the time it was sealed,
  encrypted and authenticated (ChaCha20-Poly1305, a fresh random nonce each) with the peer ids and
  the offer id bound as associated data, so a tracker can neither read nor alter it, nor its DTLS
  fingerprints; one sealed too long ago (or ahead of our clock) does not open, so what a third
  party recorded cannot be played back later (replays within that window are for
  :class:`~p2prpc.swarm.sealing.Signalling` to refuse).
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
import bisect
import functools
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import RemoteProtocolError, WeakSecret

__all__ = [
    "AUTH_MAGIC",
    "SEAL_PREFIX",
    "AuthError",
    "AuthFrame",
    "ReplayedSeal",
    "SealError",
    "StaleSeal",
    "SwarmKeys",
    "bound_peer_id",
    "canonical_json",
    "check_secret",
    "decode_auth",
    "derive_keys",
    "is_auth_frame",
    "make_auth",
    "new_secret",
    "one_certificate",
    "open_sealed",
    "publication_bytes",
    "sdp_fingerprint",
    "seal",
    "secret_strength",
    "verify_auth",
    "verify_publication",
]

#: What starts the salt of the secret's scrypt (a fixed, public domain separator and version;
#: the identifier follows it).
KDF_SALT: Final = b"p2prpc swarm secret v2"
#: scrypt's parameters (RFC 7914): 128 × r × N bytes of memory (64 MiB), about 0.1 s of one core.
SCRYPT_N: Final = 2**16
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
#: What a secret needs to be accepted (:func:`check_secret`): bytes, characters (of a str), and
#: estimated bits.
MIN_SECRET_BYTES: Final = 16
MIN_SECRET_CHARS: Final = 16
MIN_SECRET_BITS: Final = 64
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
AUTH_VERSION: Final = 2
#: Handshake flags: what the frame proves.
FLAG_SECRET: Final = 1
FLAG_IDENTITY: Final = 2
MAC_SIZE: Final = 32
KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
#: Random bytes that, with a public key, make the peer id of a node with an identity.
ID_NONCE_SIZE: Final = 16
_ZERO_ID: Final = bytes(20)
#: A certificate fingerprint attribute (RFC 8122), any hash function, the attribute's name in any
#: case: what follows its colon.
_FINGERPRINT_LINE = re.compile(r"^a=fingerprint:([^\r\n]*)", re.M | re.I)
_SHA256_DIGEST = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}")


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
    if isinstance(secret, str):
        return secret.encode("utf-8", "surrogatepass")
    if isinstance(secret, (bytes, bytearray, memoryview)):
        return bytes(secret)
    raise TypeError(f"a swarm secret is str or bytes, not {type(secret).__name__}")


# Classes of the strength estimate, with how many symbols each holds. A bytes secret's bytes and a
# str secret's ASCII characters fall in the first four (or the fifth):
_LOWER: Final = frozenset(range(ord("a"), ord("z") + 1))
_UPPER: Final = frozenset(range(ord("A"), ord("Z") + 1))
_DIGITS: Final = frozenset(range(ord("0"), ord("9") + 1))
_PUNCTUATION: Final = frozenset(range(0x20, 0x7F)) - _LOWER - _UPPER - _DIGITS  # 33, space too
_CLASS_SIZES: Final = ((_LOWER, 26), (_UPPER, 26), (_DIGITS, 10), (_PUNCTUATION, 33))
#: Any other byte of a bytes secret: control bytes and bytes 0x80-0xFF.
_OTHER_SIZE: Final = 256 - 95
#: The ASCII control characters of a str secret (U+0000-U+001F and U+007F).
_CONTROL_SIZE: Final = 33
#: A str secret's other characters: a class per Unicode block (:data:`_BLOCKS`), holding as many
#: symbols as the block has code points, up to :data:`_BLOCK_SIZE`, or up to
#: :data:`_LARGE_BLOCK_SIZE` for blocks of ideographs and syllables (:data:`_LARGE_BLOCKS`).
_BLOCK_SIZE: Final = 100
_LARGE_BLOCK_SIZE: Final = 3000
#: A unit continuing a progression of every k-th unit counts nothing, for these k (1: abcd,
#: 2: a1b2c3, 3: a1Ab2Bc3C).
_PROGRESSION_LAGS: Final = (1, 2, 3)
#: Where each printable ASCII character sits on a US QWERTY keyboard (row, column; a shifted
#: character where its key is): walks along it are progressions too (``qwerty``, ``1qaz2wsx``).
_KEY_POSITIONS: Final = {
    char: (row, column)
    for rows in (
        ("`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./"),
        ("~!@#$%^&*()_+", "QWERTYUIOP{}|", 'ASDFGHJKL:"', "ZXCVBNM<>?"),
    )
    for row, keys in enumerate(rows)
    for column, char in enumerate(keys)
}
_REPEAT_MIN: Final = 3
_REPEAT_WINDOW: Final = 64
#: Where each Unicode block from U+0080 on starts (Blocks.txt of Unicode 14.0, the version of
#: Python 3.11's unicodedata), and where each gap between blocks does (a gap is a class as well):
#: the class of a character is the last entry at or below it.
# fmt: off
_BLOCKS: Final = (
    0x80, 0x100, 0x180, 0x250, 0x2B0, 0x300, 0x370, 0x400, 0x500, 0x530, 0x590, 0x600, 0x700, 0x750,
    0x780, 0x7C0, 0x800, 0x840, 0x860, 0x870, 0x8A0, 0x900, 0x980, 0xA00, 0xA80, 0xB00, 0xB80,
    0xC00, 0xC80, 0xD00, 0xD80, 0xE00, 0xE80, 0xF00, 0x1000, 0x10A0, 0x1100, 0x1200, 0x1380, 0x13A0,
    0x1400, 0x1680, 0x16A0, 0x1700, 0x1720, 0x1740, 0x1760, 0x1780, 0x1800, 0x18B0, 0x1900, 0x1950,
    0x1980, 0x19E0, 0x1A00, 0x1A20, 0x1AB0, 0x1B00, 0x1B80, 0x1BC0, 0x1C00, 0x1C50, 0x1C80, 0x1C90,
    0x1CC0, 0x1CD0, 0x1D00, 0x1D80, 0x1DC0, 0x1E00, 0x1F00, 0x2000, 0x2070, 0x20A0, 0x20D0, 0x2100,
    0x2150, 0x2190, 0x2200, 0x2300, 0x2400, 0x2440, 0x2460, 0x2500, 0x2580, 0x25A0, 0x2600, 0x2700,
    0x27C0, 0x27F0, 0x2800, 0x2900, 0x2980, 0x2A00, 0x2B00, 0x2C00, 0x2C60, 0x2C80, 0x2D00, 0x2D30,
    0x2D80, 0x2DE0, 0x2E00, 0x2E80, 0x2F00, 0x2FE0, 0x2FF0, 0x3000, 0x3040, 0x30A0, 0x3100, 0x3130,
    0x3190, 0x31A0, 0x31C0, 0x31F0, 0x3200, 0x3300, 0x3400, 0x4DC0, 0x4E00, 0xA000, 0xA490, 0xA4D0,
    0xA500, 0xA640, 0xA6A0, 0xA700, 0xA720, 0xA800, 0xA830, 0xA840, 0xA880, 0xA8E0, 0xA900, 0xA930,
    0xA960, 0xA980, 0xA9E0, 0xAA00, 0xAA60, 0xAA80, 0xAAE0, 0xAB00, 0xAB30, 0xAB70, 0xABC0, 0xAC00,
    0xD7B0, 0xD800, 0xDB80, 0xDC00, 0xE000, 0xF900, 0xFB00, 0xFB50, 0xFE00, 0xFE10, 0xFE20, 0xFE30,
    0xFE50, 0xFE70, 0xFF00, 0xFFF0, 0x10000, 0x10080, 0x10100, 0x10140, 0x10190, 0x101D0, 0x10200,
    0x10280, 0x102A0, 0x102E0, 0x10300, 0x10330, 0x10350, 0x10380, 0x103A0, 0x103E0, 0x10400,
    0x10450, 0x10480, 0x104B0, 0x10500, 0x10530, 0x10570, 0x105C0, 0x10600, 0x10780, 0x107C0,
    0x10800, 0x10840, 0x10860, 0x10880, 0x108B0, 0x108E0, 0x10900, 0x10920, 0x10940, 0x10980,
    0x109A0, 0x10A00, 0x10A60, 0x10A80, 0x10AA0, 0x10AC0, 0x10B00, 0x10B40, 0x10B60, 0x10B80,
    0x10BB0, 0x10C00, 0x10C50, 0x10C80, 0x10D00, 0x10D40, 0x10E60, 0x10E80, 0x10EC0, 0x10F00,
    0x10F30, 0x10F70, 0x10FB0, 0x10FE0, 0x11000, 0x11080, 0x110D0, 0x11100, 0x11150, 0x11180,
    0x111E0, 0x11200, 0x11250, 0x11280, 0x112B0, 0x11300, 0x11380, 0x11400, 0x11480, 0x114E0,
    0x11580, 0x11600, 0x11660, 0x11680, 0x116D0, 0x11700, 0x11750, 0x11800, 0x11850, 0x118A0,
    0x11900, 0x11960, 0x119A0, 0x11A00, 0x11A50, 0x11AB0, 0x11AC0, 0x11B00, 0x11C00, 0x11C70,
    0x11CC0, 0x11D00, 0x11D60, 0x11DB0, 0x11EE0, 0x11F00, 0x11FB0, 0x11FC0, 0x12000, 0x12400,
    0x12480, 0x12550, 0x12F90, 0x13000, 0x13430, 0x13440, 0x14400, 0x14680, 0x16800, 0x16A40,
    0x16A70, 0x16AD0, 0x16B00, 0x16B90, 0x16E40, 0x16EA0, 0x16F00, 0x16FA0, 0x16FE0, 0x17000,
    0x18800, 0x18B00, 0x18D00, 0x18D80, 0x1AFF0, 0x1B000, 0x1B100, 0x1B130, 0x1B170, 0x1B300,
    0x1BC00, 0x1BCA0, 0x1BCB0, 0x1CF00, 0x1CFD0, 0x1D000, 0x1D100, 0x1D200, 0x1D250, 0x1D2E0,
    0x1D300, 0x1D360, 0x1D380, 0x1D400, 0x1D800, 0x1DAB0, 0x1DF00, 0x1E000, 0x1E030, 0x1E100,
    0x1E150, 0x1E290, 0x1E2C0, 0x1E300, 0x1E7E0, 0x1E800, 0x1E8E0, 0x1E900, 0x1E960, 0x1EC70,
    0x1ECC0, 0x1ED00, 0x1ED50, 0x1EE00, 0x1EF00, 0x1F000, 0x1F030, 0x1F0A0, 0x1F100, 0x1F200,
    0x1F300, 0x1F600, 0x1F650, 0x1F680, 0x1F700, 0x1F780, 0x1F800, 0x1F900, 0x1FA00, 0x1FA70,
    0x1FB00, 0x1FC00, 0x20000, 0x2A6E0, 0x2A700, 0x2B740, 0x2B820, 0x2CEB0, 0x2EBF0, 0x2F800,
    0x2FA20, 0x30000, 0x31350, 0xE0000, 0xE0080, 0xE0100, 0xE01F0, 0xF0000, 0x100000,
)
_LARGE_BLOCKS: Final = frozenset(
    {
        0x3400, 0x4E00, 0xA000, 0xAC00, 0xF900, 0x17000, 0x18800, 0x18B00, 0x18D00, 0x1B170,
        0x20000, 0x2A700, 0x2B740, 0x2B820, 0x2CEB0, 0x2F800, 0x30000,
    }
)
# fmt: on


def _units(secret: str | bytes) -> str:
    """The units the strength estimate works on, as a string of code points: a str secret's
    characters, a bytes secret's bytes (as the code points 0-255)."""
    if isinstance(secret, str):
        return secret
    return _secret_bytes(secret).decode("latin-1")


def _alphabet(units: str, *, characters: bool) -> int:
    """The sum of the sizes of the classes ``units`` draws from (characters of a str secret, or
    bytes of a bytes one)."""
    codes = {ord(unit) for unit in units}
    alphabet = sum(size for members, size in _CLASS_SIZES if not members.isdisjoint(codes))
    if not characters:
        return alphabet + (_OTHER_SIZE if any(c < 0x20 or c > 0x7E for c in codes) else 0)
    if any(c < 0x20 or c == 0x7F for c in codes):
        alphabet += _CONTROL_SIZE
    blocks = {bisect.bisect_right(_BLOCKS, c) - 1 for c in codes if c >= 0x80}
    for k in blocks:
        start = _BLOCKS[k]
        end = _BLOCKS[k + 1] if k + 1 < len(_BLOCKS) else 0x110000
        cap = _LARGE_BLOCK_SIZE if start in _LARGE_BLOCKS else _BLOCK_SIZE
        alphabet += min(end - start, cap)
    return alphabet


def _continues(codes: list[int], i: int, keys: list[tuple[int, int] | None]) -> bool:
    """Whether unit ``i`` follows from the units around it, so counts nothing: it equals the unit
    before it, or is in a run (an arithmetic progression of 3 or more consecutive units) other
    than as its first unit (``abcd``, ``aceg``, ``4321``, ``абвг``: only the first counts), or
    continues a progression of every 2nd or 3rd unit (:data:`_PROGRESSION_LAGS`),
    ``u[i] - u[i-k] == u[i-k] - u[i-2k]`` (``a1b2c3d4``: only ``a1b2`` counts; ``1q2w3e4r``:
    ``1``, ``2`` and the letters). The same holds of positions on a keyboard (``keys``, from
    :data:`_KEY_POSITIONS`; ``None`` for a unit off it): ``qwerty``, ``1q2w3e``, ``1qaz``."""
    if i >= 1 and codes[i] == codes[i - 1]:
        return True
    if 1 <= i < len(codes) - 1 and codes[i + 1] - codes[i] == codes[i] - codes[i - 1]:
        return True  # the second unit of a run
    if any(
        i >= 2 * k and codes[i] - codes[i - k] == codes[i - k] - codes[i - 2 * k]
        for k in _PROGRESSION_LAGS
    ):
        return True
    return _walks(keys, i)


def _walks(keys: list[tuple[int, int] | None], i: int) -> bool:
    """Whether unit ``i`` continues a walk on the keyboard: the step to it from the unit ``k``
    back is the step before that (``k`` in :data:`_PROGRESSION_LAGS`), a step to a neighbouring
    key, or it is the second unit of such a walk of consecutive units."""

    def step(a: int, b: int) -> tuple[int, int] | None:
        here, there = keys[a], keys[b]
        if here is None or there is None:
            return None
        rows, columns = there[0] - here[0], there[1] - here[1]
        return (rows, columns) if max(abs(rows), abs(columns)) == 1 else None

    if 1 <= i < len(keys) - 1 and (s := step(i - 1, i)) is not None and s == step(i, i + 1):
        return True
    return any(
        i >= 2 * k and (s := step(i - k, i)) is not None and s == step(i - 2 * k, i - k)
        for k in _PROGRESSION_LAGS
    )


def secret_strength(secret: str | bytes) -> float:
    """The estimated entropy of a swarm secret, in bits: the rule :class:`~p2prpc.errors.WeakSecret`
    applies (at least :data:`MIN_SECRET_BITS`).

    Computed on the secret's units: a ``str``'s characters (Unicode code points, not its UTF-8),
    a ``bytes``'s bytes. Every unit that counts is worth log2 of the alphabet the secret draws
    from, the sum of the sizes of the classes present: lower-case ASCII letters 26, upper-case 26,
    digits 10, other printable ASCII and space 33; then for bytes any other byte 161 (so random
    bytes are worth about 8 bits each), and for characters ASCII controls 33 and a class per
    Unicode block, the block's number of code points up to 100 (up to 3,000 for the blocks of CJK
    ideographs, Hangul and Yi syllables, Tangut, Khitan and Nushu): Cyrillic counts 100, so
    ``пароль`` draws from 100 symbols and ``parolь`` from 126.

    A unit counts nothing when it equals the unit before it (``aaaa``); when it is in a run, an
    arithmetic progression of 3 or more consecutive units, other than as the run's first unit
    (``abcd``, ``aceg``, ``4321``, ``абвг``, bytes 0, 2, 4...: only the first counts); when it
    continues an arithmetic progression of every 2nd or every 3rd unit (interleaved runs:
    ``a1b2c3d4`` counts ``a1b2``); when it continues a walk from key to neighbouring key on a US
    QWERTY keyboard, the same ways (``qwerty``, ``1qaz``, ``1q2w3e4r``); and when it is part of
    a run of 3 or more units that already occurred in the 64 units before it
    (``passwordpassword``). It never recognises words, in any script:
    ``sunshine2024!!!!`` scores 67 bits, far more than it is worth, which is why
    :func:`new_secret` and ``p2prpc secret`` exist.
    """
    units = _units(secret)
    alphabet = _alphabet(units, characters=isinstance(secret, str))
    if alphabet < 2:
        return 0.0
    codes = [ord(unit) for unit in units]
    keys = [_KEY_POSITIONS.get(unit) for unit in units]
    counted = 0
    i = 0
    while i < len(units):
        repeat = _repeat_length(units, i)
        if repeat:
            i += repeat
            continue
        if not _continues(codes, i, keys):
            counted += 1
        i += 1
    return counted * math.log2(alphabet)


def _repeat_length(units: str, i: int) -> int:
    """How many units from ``i`` on repeat units that start in the :data:`_REPEAT_WINDOW` before
    ``i`` (0 when fewer than :data:`_REPEAT_MIN`); linear in the repeat's length."""
    head = units[i : i + _REPEAT_MIN]
    if len(head) < _REPEAT_MIN:
        return 0
    j = units.find(head, max(0, i - _REPEAT_WINDOW), i + _REPEAT_MIN - 1)
    if j < 0:
        return 0
    length = _REPEAT_MIN
    while i + length < len(units) and units[j + length] == units[i + length]:
        length += 1
    return length


def check_secret(secret: str | bytes) -> bytes:
    """The secret's bytes, once it is strong enough to close a swarm: at least
    :data:`MIN_SECRET_BYTES` bytes, at least :data:`MIN_SECRET_CHARS` characters for a ``str``,
    and at least :data:`MIN_SECRET_BITS` by :func:`secret_strength`'s estimate;
    :class:`~p2prpc.errors.WeakSecret` otherwise, whose message says how to make a good one and
    never contains the secret. ``TypeError`` when it is neither str nor bytes."""
    data = _secret_bytes(secret)
    how = "make one with `p2prpc secret` (32 random bytes; see docs/SECURITY.md)"
    if not data:
        raise WeakSecret(f"a swarm secret must not be empty: {how}", size=0, bits=0.0)
    bits = secret_strength(secret)
    if isinstance(secret, str):
        needs = f"{MIN_SECRET_CHARS} characters ({MIN_SECRET_BYTES} bytes)"
        has = f"{len(secret)} characters ({len(data)} bytes)"
        short = len(secret) < MIN_SECRET_CHARS or len(data) < MIN_SECRET_BYTES
    else:
        needs, has, short = (
            f"{MIN_SECRET_BYTES} bytes",
            f"{len(data)} bytes",
            len(data) < MIN_SECRET_BYTES,
        )
    if short or bits < MIN_SECRET_BITS:
        raise WeakSecret(
            f"a swarm secret needs at least {needs} and an estimated {MIN_SECRET_BITS} bits of "
            f"entropy, because anyone can test guesses of it against the swarm's info_hash; this "
            f"one has {has} and about {bits:.0f} bits: {how}",
            size=len(data),
            bits=bits,
        )
    return data


def new_secret() -> str:
    """A fresh swarm secret: 32 random bytes (256 bits) as 43 characters of unpadded base64url,
    what ``p2prpc secret`` prints."""
    return secrets.token_urlsafe(32)


@functools.lru_cache(maxsize=32)
def _master_key(data: bytes, identifier: str) -> bytes:
    """scrypt of the secret, salted with :data:`KDF_SALT` and the identifier: the costly step,
    done once per secret and identifier in a process."""
    salt = KDF_SALT + b"\0" + identifier.encode("utf-8", "surrogatepass")
    kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(data)


def derive_keys(secret: str | bytes, identifier: str) -> SwarmKeys:
    """The info_hash and keys of the swarm ``identifier`` closed by ``secret`` (layout:
    ``docs/PROTOCOL.md`` section 6.1).

    A master key is scrypt of the secret's bytes (``N`` = :data:`SCRYPT_N`, ``r`` =
    :data:`SCRYPT_R`, ``p`` = :data:`SCRYPT_P`, 32 bytes; salt :data:`KDF_SALT`, a zero byte and
    the identifier's UTF-8), and each output is HKDF-Expand-SHA256 of it with the purpose's label
    as ``info``. The scrypt step is what makes guessing the secret from a public info_hash
    costly: about 0.1 s of one core and 64 MiB of memory per guess (docs/SECURITY.md has the
    figures). It runs once per secret and identifier in a process (later calls are served from
    memory, which keeps the secret and the master key for the process's lifetime), blocking the
    caller, hence the event loop when a ``P2PT`` or a ``Node`` is made inside one.

    Raises :class:`~p2prpc.errors.WeakSecret` for a secret :func:`check_secret` refuses.
    """
    master = _master_key(check_secret(secret), identifier)

    def expand(label: bytes, length: int) -> bytes:
        return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=label).derive(master)

    return SwarmKeys(
        info_hash=expand(b"info_hash", 20),
        seal_key=expand(b"seal", 32),
        proof_key=expand(b"proof", 32),
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
    data = stamp(created) + data
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
    return read_stamped(kind, data, now=now, max_age=max_age, max_skew=max_skew)


def stamp(created: float | None = None) -> bytes:
    """The 8-byte creation time that starts what a seal holds: milliseconds since the Unix epoch,
    big-endian (``created`` in seconds; by default now). ``ValueError`` for a time that is not
    one since the epoch (negative, infinite, NaN)."""
    created = time.time() if created is None else created
    if not 0 <= created * 1000 < 2.0**64:  # also false for NaN
        raise ValueError("the creation time is not a time since the Unix epoch")
    return min(round(created * 1000), 2**64 - 1).to_bytes(TIME_SIZE, "big")


def read_stamped(
    kind: str,
    data: bytes,
    *,
    now: float | None = None,
    max_age: float = SEAL_MAX_AGE,
    max_skew: float = SEAL_CLOCK_SKEW,
) -> str:
    """The SDP after the creation time in what a seal held (:func:`stamp`): :class:`StaleSeal`
    when it was sealed more than ``max_age`` seconds before ``now`` (by default now) or more than
    ``max_skew`` after, :class:`SealError` when it holds no time or no UTF-8 text."""
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


def _sha256_fingerprints(sdp: str) -> set[bytes]:
    """Every certificate the SHA-256 fingerprint lines of ``sdp`` name (the hash function's
    name in any case, as libwebrtc reads it); :class:`AuthError` for one that does not read."""
    named = set()
    for found in _FINGERPRINT_LINE.finditer(sdp):
        fields = found.group(1).split()
        if fields and fields[0].lower() == "sha-256":
            if len(fields) != 2 or not _SHA256_DIGEST.fullmatch(fields[1]):
                raise AuthError(f"unreadable sha-256 fingerprint {found.group(0)[:120]!r}")
            named.add(bytes.fromhex(fields[1].replace(":", "")))
    return named


def sdp_fingerprint(sdp: str) -> bytes:
    """The SHA-256 DTLS certificate fingerprint an SDP names, as 32 bytes.

    A WebRTC stack refuses a DTLS peer whose certificate does not match the fingerprints of the
    remote description, so this names the key the other end really holds, provided the stack
    checks this one: aiortc checks every fingerprint it can compute, libwebrtc only the last
    line of a section, so a description goes to libwebrtc through :func:`one_certificate`.
    :class:`AuthError` when the SDP names no SHA-256 fingerprint, or several different ones.
    """
    named = _sha256_fingerprints(sdp)
    if len(named) != 1:
        raise AuthError(
            "the session description names no sha-256 fingerprint"
            if not named
            else f"the session description names {len(named)} DTLS certificates"
        )
    return named.pop()


def one_certificate(sdp: str) -> str:
    """``sdp`` with its SHA-256 fingerprint lines alone: the lines of other hash functions
    dropped, so that the stack it is handed to checks the certificate :func:`sdp_fingerprint`
    names (and the handshake binds) and no other. libwebrtc checks the last fingerprint line of
    a section, whatever the ones before it say: given a description naming one certificate
    first and another last, it would let the other one's holder in under the first one's name.

    :class:`AuthError` when the SDP names no SHA-256 fingerprint, several different ones, or one
    that does not read.
    """
    sdp_fingerprint(sdp)
    kept = []
    for line in sdp.split("\n"):  # lines as SDP parsers split them, "\r" kept at their end
        found = _FINGERPRINT_LINE.match(line)
        fields = found.group(1).split() if found is not None else []
        if found is None or (fields and fields[0].lower() == "sha-256"):
            kept.append(line)
    return "\n".join(kept)


def bound_peer_id(public_key: bytes, nonce: bytes) -> bytes:
    """The 20-byte peer id of a node with an identity: the first 20 bytes of
    SHA-256("p2prpc-peer-id-v1" 0x00 ‖ public key (32) ‖ nonce (16)).

    A node with an identity takes this id (a fresh ``nonce`` each run, so it is as unlinkable
    across runs as P2PT's random ids), and its handshake frame carries the nonce: a connection
    that proves a key under an id not bound to that key is refused, so nobody can prove a key
    under another node's id, and a key proven under an id outranks any connection that proves
    none under the same id. Raises ``ValueError`` for a key that is not 32 bytes or a nonce that
    is not 16.
    """
    if len(public_key) != KEY_SIZE or len(nonce) != ID_NONCE_SIZE:
        raise ValueError("a bound peer id takes a 32-byte public key and a 16-byte nonce")
    digest = hashlib.sha256(b"p2prpc-peer-id-v1\0" + public_key + nonce).digest()
    return digest[:20]


@dataclass(frozen=True, slots=True)
class AuthFrame:
    """A decoded handshake frame."""

    flags: int
    mac: bytes | None
    public_key: bytes | None
    id_nonce: bytes | None
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
    id_nonce: bytes | None,
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
            b"p2prpc-auth-v2\0",
            info_hash,
            sender_id,
            receiver_id,
            sender_fingerprint,
            receiver_fingerprint,
            bytes([flags]),
            public_key or b"",
            id_nonce or b"",
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
    id_nonce: bytes | None = None,
    sign: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Our handshake frame for one connection: a proof of the secret when ``proof_key`` is
    given, a signature by our identity when ``public_key``, ``id_nonce`` and ``sign`` are
    (``local_id`` must then be :func:`bound_peer_id` of the key and the nonce)."""
    flags = (FLAG_SECRET if proof_key is not None else 0) | (
        FLAG_IDENTITY if public_key is not None else 0
    )
    if public_key is not None and (
        id_nonce is None or bound_peer_id(public_key, id_nonce) != local_id
    ):
        raise ValueError("an identity's peer id must be bound_peer_id(public_key, id_nonce)")
    transcript = _transcript(
        info_hash,
        local_id,
        remote_id,
        local_fingerprint,
        remote_fingerprint,
        flags,
        public_key,
        id_nonce if public_key is not None else None,
    )
    out = bytearray((AUTH_MAGIC, AUTH_VERSION, flags))
    if proof_key is not None:
        out += hmac.digest(proof_key, transcript, "sha256")
    if public_key is not None:
        if sign is None or len(public_key) != KEY_SIZE:
            raise ValueError("an identity needs its 32-byte public key and a signing function")
        assert id_nonce is not None  # checked above
        out += public_key + id_nonce + sign(transcript)
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
    expected += KEY_SIZE + ID_NONCE_SIZE + SIGNATURE_SIZE if flags & FLAG_IDENTITY else 0
    if len(data) != expected:
        raise AuthError(f"handshake frame of {len(data)} bytes, not {expected}")
    offset = 3
    mac = key = nonce = signature = None
    if flags & FLAG_SECRET:
        mac = data[offset : offset + MAC_SIZE]
        offset += MAC_SIZE
    if flags & FLAG_IDENTITY:
        key = data[offset : offset + KEY_SIZE]
        nonce = data[offset + KEY_SIZE : offset + KEY_SIZE + ID_NONCE_SIZE]
        signature = data[offset + KEY_SIZE + ID_NONCE_SIZE :]
    return AuthFrame(flags, mac, key, nonce, signature)


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

    With ``proof_key`` the frame must prove the secret. A key, when present, must be the one
    ``remote_id`` is bound to (:func:`bound_peer_id`) and its signature must verify. Raises
    :class:`AuthError` otherwise.
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
        frame.id_nonce,
    )
    if proof_key is not None:
        if frame.mac is None:
            raise AuthError("the peer proves no knowledge of the swarm secret")
        if not hmac.compare_digest(frame.mac, hmac.digest(proof_key, transcript, "sha256")):
            raise AuthError("the peer's proof of the swarm secret is wrong for this connection")
    if frame.public_key is not None:
        assert frame.signature is not None and frame.id_nonce is not None
        if bound_peer_id(frame.public_key, frame.id_nonce) != remote_id:
            raise AuthError("the peer proves a key its peer id is not bound to")
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
