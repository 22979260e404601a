"""The pure layout of offers and answers sealed to one peer's key, and of the seal key record."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2prpc.errors import RemoteProtocolError
from p2prpc.identity import Identity
from p2prpc.swarm.sealing import Signalling
from p2prpc.wire.sealbox import (
    RECORD_SIZE,
    SEALED_TO_PREFIX,
    SealKey,
    SealKeyError,
    SealKeyPair,
    is_sealed_to,
    open_from,
    seal_key_bytes,
    seal_to,
)
from p2prpc.wire.secret import ReplayedSeal, SealError, StaleSeal, derive_keys, open_sealed

KEYS = derive_keys("sealbox secret 5f1a7c93e02b", "app")
A, B, M, OFFER = b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20, b"\x0f" * 20
FINGERPRINT = ":".join(["AB"] * 32)
SDP = f"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\na=fingerprint:sha-256 {FINGERPRINT}\r\n"
ID_A, ID_B, ID_M = Identity.generate(), Identity.generate(), Identity.generate()


def pair(identity: Identity, peer_id: bytes, info_hash: bytes = KEYS.info_hash) -> SealKeyPair:
    return SealKeyPair.generate(
        identity=identity.public_key, sign=identity.sign, info_hash=info_hash, peer_id=peer_id
    )


PAIR_A, PAIR_B, PAIR_M = pair(ID_A, A), pair(ID_B, B), pair(ID_M, M)


def ids(**overrides: Any) -> dict[str, Any]:
    return {"info_hash": KEYS.info_hash, "offer_id": OFFER, **overrides}


def offer(sdp: str = SDP, sender: SealKeyPair = PAIR_A, **overrides: Any) -> str:
    args = ids(from_id=sender.peer_id, to_id=B) | overrides
    return seal_to(PAIR_B.record.public, sender, KEYS.seal_key, "offer", sdp, **args)


def open_offer(text: str, recipient: SealKeyPair = PAIR_B, **overrides: Any) -> tuple[str, SealKey]:
    args = ids(from_id=A, to_id=recipient.peer_id) | overrides
    return open_from(recipient, KEYS.seal_key, "offer", text, **args)


# -- the seal key record ---------------------------------------------------------------------------


def test_a_record_binds_an_x25519_key_to_an_identity_for_one_peer_id_in_one_swarm() -> None:
    record = PAIR_A.record
    assert record.identity == ID_A.public_key and len(record.public) == 32
    assert len(record.to_bytes()) == RECORD_SIZE == 128
    assert record.verify(info_hash=KEYS.info_hash, peer_id=A)
    assert not record.verify(info_hash=KEYS.info_hash, peer_id=B)  # another peer id
    elsewhere = derive_keys("other secret 8d2b4e61a7c0", "app").info_hash
    assert not record.verify(info_hash=elsewhere, peer_id=A)
    # A relay that puts its own X25519 key in A's record, or signs A's with its own identity:
    assert not replace(record, public=PAIR_M.record.public).verify(
        info_hash=KEYS.info_hash, peer_id=A
    )
    assert not replace(record, identity=ID_M.public_key).verify(info_hash=KEYS.info_hash, peer_id=A)
    # What it can make verifies only under its own identity, which the reader compares.
    forged = pair(ID_M, A)
    assert forged.record.verify(info_hash=KEYS.info_hash, peer_id=A)
    assert forged.record.identity != ID_A.public_key
    signed = seal_key_bytes(KEYS.info_hash, A, ID_A.public_key, record.public)
    assert signed.startswith(b"p2prpc-seal-key-v1\0") and len(signed) == 19 + 20 + 20 + 64


def test_a_record_round_trips_as_canonical_base64_and_nothing_else_reads() -> None:
    record = PAIR_A.record
    text = record.to_text()
    assert SealKey.from_text(text) == record and len(text) == 172
    last = text[-2]
    other = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    non_canonical = text[:-2] + other[other.index(last) ^ 1] + "="  # the same bytes, spare bits set
    assert base64.b64decode(non_canonical) == base64.b64decode(text)
    for bad in (
        None,
        42,
        text[:-4],
        text + "AAAA",
        text.replace(text[10], "*" if text[10] != "*" else "-", 1),
        base64.b64encode(record.to_bytes()[:-1] + b"\0\0").decode(),  # 129 bytes
        non_canonical,
    ):
        with pytest.raises(SealKeyError):
            SealKey.from_text(bad)
    with pytest.raises(SealKeyError):
        SealKey.from_bytes(b"\0" * 127)
    assert issubclass(SealKeyError, RemoteProtocolError)


# -- the sealed box --------------------------------------------------------------------------------


def test_an_offer_sealed_to_b_opens_for_b_alone_and_names_its_sender() -> None:
    text = offer()
    assert is_sealed_to(text) and text.startswith(SEALED_TO_PREFIX)
    assert "fingerprint" not in text and FINGERPRINT not in text and "192.0.2.7" not in text
    sdp, sender = open_offer(text)
    assert sdp == SDP and sender == PAIR_A.record and sender.identity == ID_A.public_key
    assert offer() != text  # a fresh ephemeral key each: nothing repeats
    # The swarm key alone (what every member, a relay too, holds) opens nothing of it.
    for to_id in (B, None):
        with pytest.raises(SealError):
            open_sealed(KEYS.seal_key, "offer", text, from_id=A, to_id=to_id, **ids())
    # Nor does another member's own key, even with the ids rewritten for it.
    with pytest.raises(SealError):
        open_offer(text, recipient=PAIR_M)


def test_an_answer_travels_back_sealed_to_the_offerers_key() -> None:
    _, sender = open_offer(offer())
    answer = seal_to(
        sender.public, PAIR_B, KEYS.seal_key, "answer", "v=0 answer", **ids(from_id=B, to_id=A)
    )
    opened, answerer = open_from(PAIR_A, KEYS.seal_key, "answer", answer, **ids(from_id=B, to_id=A))
    assert opened == "v=0 answer" and answerer == PAIR_B.record
    with pytest.raises(SealError):  # an answer does not open as an offer
        open_from(PAIR_A, KEYS.seal_key, "offer", answer, **ids(from_id=B, to_id=A))


@pytest.mark.parametrize(
    "overrides",
    [
        {"from_id": M},  # as the relay's own offer
        {"offer_id": b"\x01" * 20},  # as another offer
    ],
)
def test_a_box_opens_only_with_the_ids_it_was_sealed_with(overrides: dict[str, Any]) -> None:
    with pytest.raises(SealError):
        open_offer(offer(), **overrides)


def test_a_box_opens_in_no_other_swarm() -> None:
    """B's peer id and X25519 key in another swarm (another info_hash), as if B were there."""
    elsewhere = derive_keys("other secret 8d2b4e61a7c0", "app").info_hash
    b_there = SealKeyPair(PAIR_B._private, PAIR_B.record, info_hash=elsewhere, peer_id=B)
    with pytest.raises(SealError):
        open_offer(offer(), recipient=b_there, info_hash=elsewhere)


def test_another_swarm_key_opens_nothing() -> None:
    other = derive_keys("other secret 8d2b4e61a7c0", "app").seal_key
    with pytest.raises(SealError, match="does not open"):
        open_from(PAIR_B, other, "offer", offer(), **ids(from_id=A, to_id=B))


def _flip(text: str, at: int) -> str:
    body = text[len(SEALED_TO_PREFIX) :]
    box = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    box[at] ^= 0x01
    return SEALED_TO_PREFIX + base64.urlsafe_b64encode(bytes(box)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "at",
    [0, 31, 32, 63, 64, 95, 96, 159, 160, -17, -1],
    ids=lambda at: f"byte {at}",
)
def test_any_flipped_byte_refuses_the_box(at: int) -> None:
    """Ephemeral key (0–31), sender's identity (32–63), X25519 key (64–95), signature (96–159),
    ciphertext (160…), tag (last 16)."""
    with pytest.raises(SealError):
        open_offer(_flip(offer(), at))


def test_a_relay_cannot_reseal_its_own_sdp_as_the_sender() -> None:
    evil = "v=0\r\na=fingerprint:sha-256 " + ":".join(["EE"] * 32) + "\r\n"
    # With its own record made for A's peer id: it opens, and names the relay's identity, which
    # the reader (expecting A's) refuses.
    forged = pair(ID_M, A)
    _, sender = open_offer(offer(evil, sender=forged))
    assert sender.identity == ID_M.public_key != ID_A.public_key
    # With A's record in the header, it cannot make the box: it does not hold A's X25519 key.
    header_swap = seal_to(
        PAIR_B.record.public, forged, KEYS.seal_key, "offer", evil, **ids(from_id=A, to_id=B)
    )
    body = bytearray(base64.urlsafe_b64decode(header_swap[len(SEALED_TO_PREFIX) :] + "=="))
    body[32:160] = PAIR_A.record.to_bytes()
    swapped = SEALED_TO_PREFIX + base64.urlsafe_b64encode(bytes(body)).rstrip(b"=").decode()
    with pytest.raises(SealError, match="does not open"):
        open_offer(swapped)
    # With its own record for its own peer id, as from A: the record does not verify for A.
    with pytest.raises(SealError, match="not signed"):
        open_offer(
            seal_to(
                PAIR_B.record.public,
                PAIR_M,
                KEYS.seal_key,
                "offer",
                evil,
                **ids(from_id=M, to_id=B),
            )
        )


def test_malformed_text_raises_seal_error_only() -> None:
    text = offer()
    body = text[len(SEALED_TO_PREFIX) :]
    for bad in (
        SDP,  # plain
        "p2prpc-sealed-1:" + body,  # the swarm seal's prefix
        SEALED_TO_PREFIX,
        SEALED_TO_PREFIX + body[:200],  # shorter than header and tag
        SEALED_TO_PREFIX + body + "=",
        SEALED_TO_PREFIX + body[:-1] + "*",
        SEALED_TO_PREFIX + "A" * 400_000,
    ):
        with pytest.raises(SealError):
            open_offer(bad)


def test_a_low_order_ephemeral_key_is_refused_as_a_seal_error() -> None:
    body = bytearray(base64.urlsafe_b64decode(offer()[len(SEALED_TO_PREFIX) :] + "=="))
    body[:32] = bytes(32)
    text = SEALED_TO_PREFIX + base64.urlsafe_b64encode(bytes(body)).rstrip(b"=").decode()
    with pytest.raises(SealError, match="no shared secret"):
        open_offer(text)
    with pytest.raises(SealError, match="no shared secret"):
        seal_to(bytes(32), PAIR_A, KEYS.seal_key, "offer", SDP, **ids(from_id=A, to_id=B))


def test_a_fixed_ephemeral_key_gives_a_fixed_box_and_a_key_pair_serves_its_own_ids() -> None:
    fixed = X25519PrivateKey.from_private_bytes(b"\x07" * 32)
    assert offer(ephemeral=fixed, created=1e9) == offer(ephemeral=fixed, created=1e9)
    with pytest.raises(ValueError, match="another swarm or peer id"):
        offer(from_id=M)  # A's key pair, another sender id
    with pytest.raises(ValueError, match="another swarm or peer id"):
        open_offer(offer(), to_id=M)
    with pytest.raises(ValueError, match="offer"):
        seal_to(
            PAIR_B.record.public, PAIR_A, KEYS.seal_key, "hello", SDP, **ids(from_id=A, to_id=B)
        )
    assert "SealKeyPair" in repr(PAIR_A) and PAIR_A.peer_id.hex()[:8] in repr(PAIR_A)


def test_a_box_carries_when_it_was_sealed_and_opens_only_in_its_time() -> None:
    """What a relay records cannot be played back later: as the swarm seal, a box holds its
    sealing time and is refused once older than ``max_age`` or dated ahead of the skew."""
    text = offer(created=1_000_000.0)
    assert open_offer(text, now=1_000_050.0, max_age=80.0)[0] == SDP
    with pytest.raises(StaleSeal, match="old"):
        open_offer(text, now=1_000_081.0, max_age=80.0)
    with pytest.raises(StaleSeal, match="ahead"):
        open_offer(text, now=999_960.0, max_skew=30.0)


def test_a_box_opens_once_at_its_recipient() -> None:
    """Signalling opens a box sealed to its key once: a copy is refused and counted, and a
    forgery under the same ids does not use up the genuine one."""
    clock = [1_000_000.0]
    b = Signalling(KEYS.info_hash, B, KEYS, clock=lambda: clock[0])
    b.own_key = PAIR_B
    genuine = offer(created=clock[0])
    forged = offer(sender=pair(ID_M, A), created=clock[0])  # M signs a record for A's id
    with pytest.raises(SealError):
        b.open_relayed_offer(A, OFFER, forged, senders={ID_A.public_key})
    assert b.open_relayed_offer(A, OFFER, genuine, senders={ID_A.public_key})[0] == SDP
    with pytest.raises(ReplayedSeal):
        b.open_relayed_offer(A, OFFER, genuine, senders={ID_A.public_key})
    assert b.refused == 2
