"""The pure layouts of secret mode: key derivation, sealed SDP, the handshake frame, signed pubs."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.errors import RemoteProtocolError
from p2prpc.identity import Identity
from p2prpc.wire.envelope import BinaryReader, Envelope, Kind, from_json, to_binary, to_json
from p2prpc.wire.secret import (
    AUTH_MAGIC,
    SEAL_CLOCK_SKEW,
    SEAL_MAX_AGE,
    SEAL_PREFIX,
    AuthError,
    SealError,
    StaleSeal,
    canonical_json,
    decode_auth,
    derive_keys,
    make_auth,
    open_sealed,
    publication_bytes,
    sdp_fingerprint,
    seal,
    verify_auth,
    verify_publication,
)

A, B, OFFER = b"\x0a" * 20, b"\x0b" * 20, b"\x0f" * 20
FP_A, FP_B = b"\xaa" * 32, b"\xbb" * 32
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\na=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"


def test_derived_info_hash_is_not_the_identifiers_sha1_and_depends_on_both() -> None:
    keys = derive_keys("s3cret", "my-app")
    assert len(keys.info_hash) == 20
    assert keys.info_hash != hashlib.sha1(b"my-app").digest()
    assert keys.info_hash != derive_keys("other", "my-app").info_hash
    assert keys.info_hash != derive_keys("s3cret", "my-app2").info_hash
    assert derive_keys(b"s3cret", "my-app") == keys  # str is its UTF-8 bytes
    assert len({keys.info_hash[:20], keys.seal_key[:20], keys.proof_key[:20]}) == 3


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        derive_keys("", "x")


def _seal(key: bytes, kind: str = "offer", to: bytes | None = None, **kw: bytes) -> str:
    ids = {"info_hash": b"\x01" * 20, "from_id": A, "to_id": to, "offer_id": OFFER, **kw}
    return seal(key, kind, SDP, **ids)  # type: ignore[arg-type]


def test_sealed_sdp_hides_the_sdp_and_opens_with_the_same_ids() -> None:
    key = derive_keys("k", "x").seal_key
    text = _seal(key)
    assert text.startswith(SEAL_PREFIX)
    assert "fingerprint" not in text and "127.0.0.1" not in text
    assert _seal(key) != text  # a fresh nonce each time
    opened = open_sealed(
        key, "offer", text, info_hash=b"\x01" * 20, from_id=A, to_id=None, offer_id=OFFER
    )
    assert opened == SDP


@pytest.mark.parametrize(
    "change",
    [
        {"from_id": B},
        {"offer_id": A},
        {"info_hash": b"\x02" * 20},
        {"to_id": B},
        {"kind": "answer"},
        {"key": bytes(32)},
    ],
)
def test_sealed_sdp_does_not_open_with_other_ids_kind_or_key(change: dict[str, object]) -> None:
    key = derive_keys("k", "x").seal_key
    text = _seal(key)
    args: dict[str, object] = {
        "key": key,
        "kind": "offer",
        "info_hash": b"\x01" * 20,
        "from_id": A,
        "to_id": None,
        "offer_id": OFFER,
        **change,
    }
    key_, kind = args.pop("key"), args.pop("kind")
    with pytest.raises(SealError):
        open_sealed(key_, kind, text, **args)  # type: ignore[arg-type]


IDS: dict[str, Any] = {"info_hash": b"\x01" * 20, "from_id": A, "to_id": B, "offer_id": OFFER}
OFFER_IDS: dict[str, Any] = {**IDS, "to_id": None}  # an offer through a tracker: no recipient
T0 = 1_700_000_000.0  # a fixed "now", seconds since the Unix epoch


def test_the_sealed_layout_is_nonce_then_the_sealed_time_and_sdp_with_v2_associated_data() -> None:
    key = derive_keys("k", "x").seal_key
    nonce = bytes(range(12))
    text = seal(key, "answer", SDP, nonce=nonce, created=T0 + 0.25, **IDS)
    assert text.startswith("p2prpc-sealed-2:") and SEAL_PREFIX == "p2prpc-sealed-2:"
    body = text[len(SEAL_PREFIX) :]
    assert "=" not in body
    box = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert box[:12] == nonce
    aad = b"p2prpc-seal-v2\0" + b"\x02" + b"\x01" * 20 + A + B + OFFER
    plain = ChaCha20Poly1305(key).decrypt(nonce, box[12:], aad)
    assert plain[:8] == round((T0 + 0.25) * 1000).to_bytes(8, "big")
    assert plain[8:] == SDP.encode()
    assert len(box) == 12 + 8 + len(SDP.encode()) + 16


def test_a_seal_of_the_first_layout_or_without_a_time_is_refused() -> None:
    key = derive_keys("k", "x").seal_key
    nonce = bytes(12)
    aad = b"p2prpc-seal-v2\0" + b"\x02" + b"\x01" * 20 + A + B + OFFER
    for prefix, plain in (
        ("p2prpc-sealed-1:", SDP.encode()),  # version 1: no time, another prefix
        (SEAL_PREFIX, b"1234567"),  # seven bytes: no room for the time
    ):
        box = nonce + ChaCha20Poly1305(key).encrypt(nonce, plain, aad)
        text = prefix + base64.urlsafe_b64encode(box).rstrip(b"=").decode()
        with pytest.raises(SealError):
            open_sealed(key, "answer", text, now=T0, **IDS)


def test_a_seal_opens_from_its_time_for_max_age_seconds_and_not_before_the_skew() -> None:
    key = derive_keys("k", "x").seal_key
    text = seal(key, "offer", SDP, created=T0, **OFFER_IDS)

    def opened(now: float, max_age: float = SEAL_MAX_AGE, max_skew: float = SEAL_CLOCK_SKEW) -> str:
        return open_sealed(
            key, "offer", text, now=now, max_age=max_age, max_skew=max_skew, **OFFER_IDS
        )

    for now in (T0, T0 + SEAL_MAX_AGE - 0.01, T0 - SEAL_CLOCK_SKEW + 0.01):
        assert opened(now) == SDP
    for now in (T0 + SEAL_MAX_AGE + 0.01, T0 + 3600, T0 - SEAL_CLOCK_SKEW - 0.01, 0.0):
        with pytest.raises(StaleSeal):
            opened(now)
    assert opened(T0 + 200, max_age=300) == SDP  # the window is the opener's to set
    with pytest.raises(StaleSeal, match="ahead"):
        opened(T0 - 5, max_skew=1)
    assert issubclass(StaleSeal, SealError)
    assert SEAL_MAX_AGE == 50 + SEAL_CLOCK_SKEW  # P2PT's offer lifetime, and the skew
    fresh = seal(key, "offer", SDP, **OFFER_IDS)  # sealed now, opened now: by this clock
    assert open_sealed(key, "offer", fresh, **OFFER_IDS) == SDP


@given(
    created_ms=st.integers(0, 2**50),
    age_ms=st.integers(-(10**7), 10**7),
    max_age=st.integers(1, 10**4),
    max_skew=st.integers(0, 10**4),
)
def test_a_seal_opens_exactly_within_its_window(
    created_ms: int, age_ms: int, max_age: int, max_skew: int
) -> None:
    key = bytes(32)
    text = seal(key, "offer", "v=0", created=created_ms / 1000, nonce=bytes(12), **OFFER_IDS)
    now = (created_ms + age_ms) / 1000
    inside = -max_skew * 1000 <= age_ms <= max_age * 1000
    margin = abs(age_ms - max_age * 1000) > 1 and abs(age_ms + max_skew * 1000) > 1
    try:
        sdp = open_sealed(
            key, "offer", text, now=now, max_age=max_age, max_skew=max_skew, **OFFER_IDS
        )
    except StaleSeal:
        assert not inside or not margin  # float rounding at the very edge only
    else:
        assert sdp == "v=0" and (inside or not margin)


def test_sealing_refuses_a_time_that_is_not_one() -> None:
    key = bytes(32)
    for created in (-1.0, 2.0**64 / 1000, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="time"):
            seal(key, "offer", SDP, created=created, **OFFER_IDS)


def test_plain_or_mangled_sdp_is_refused() -> None:
    key = derive_keys("k", "x").seal_key
    ids = {"info_hash": b"\x01" * 20, "from_id": A, "to_id": None, "offer_id": OFFER}
    with pytest.raises(SealError, match="plain"):
        open_sealed(key, "offer", SDP, **ids)  # type: ignore[arg-type]
    text = _seal(key)
    flipped = text[:-3] + ("A" if text[-3] != "A" else "B") + text[-2:]
    with pytest.raises(SealError):
        open_sealed(key, "offer", flipped, **ids)  # type: ignore[arg-type]


@given(st.text(max_size=300))
def test_opening_anything_raises_only_seal_error(text: str) -> None:
    key = bytes(32)
    with pytest.raises(SealError):
        open_sealed(
            key, "answer", SEAL_PREFIX + text, info_hash=A, from_id=A, to_id=B, offer_id=OFFER
        )


def test_sdp_fingerprint() -> None:
    assert sdp_fingerprint(SDP) == b"\xab" * 32
    with pytest.raises(AuthError):
        sdp_fingerprint("v=0\r\n")


def _frame(**kw: object) -> bytes:
    args: dict[str, object] = {
        "info_hash": b"\x01" * 20,
        "local_id": A,
        "remote_id": B,
        "local_fingerprint": FP_A,
        "remote_fingerprint": FP_B,
        **kw,
    }
    return make_auth(**args)  # type: ignore[arg-type]


def _verify(frame: bytes, **kw: object) -> bytes | None:
    args: dict[str, object] = {
        "info_hash": b"\x01" * 20,
        "local_id": B,
        "remote_id": A,
        "local_fingerprint": FP_B,
        "remote_fingerprint": FP_A,
        **kw,
    }
    return verify_auth(frame, **args)  # type: ignore[arg-type]


def test_handshake_proves_the_secret_for_this_connection_only() -> None:
    proof = derive_keys("k", "x").proof_key
    frame = _frame(proof_key=proof)
    assert frame[0] == AUTH_MAGIC and len(frame) == 3 + 32
    assert _verify(frame, proof_key=proof) is None
    for wrong in (
        {"proof_key": derive_keys("k2", "x").proof_key},
        {"proof_key": proof, "remote_fingerprint": FP_B},  # another DTLS certificate: a relay
        {"proof_key": proof, "local_fingerprint": FP_A},
        {"proof_key": proof, "remote_id": B},
        {"proof_key": proof, "info_hash": b"\x02" * 20},
    ):
        with pytest.raises(AuthError):
            _verify(frame, **wrong)
    with pytest.raises(AuthError, match="no knowledge"):
        _verify(_frame(), proof_key=proof)


def test_a_handshake_cannot_be_reflected_to_its_sender() -> None:
    proof = derive_keys("k", "x").proof_key
    frame = _frame(proof_key=proof)
    with pytest.raises(AuthError):  # A receives its own frame back, as if B had sent it
        verify_auth(
            frame,
            info_hash=b"\x01" * 20,
            local_id=A,
            remote_id=B,
            local_fingerprint=FP_A,
            remote_fingerprint=FP_B,
            proof_key=proof,
        )


def test_handshake_proves_an_identity() -> None:
    me = Identity.generate()
    frame = _frame(public_key=me.public_key, sign=me.sign)
    assert _verify(frame) == me.public_key
    forged = bytearray(frame)
    forged[3:35] = Identity.generate().public_key  # claims another key with this signature
    with pytest.raises(AuthError, match="signature"):
        _verify(bytes(forged))
    with pytest.raises(AuthError):
        _verify(frame, remote_fingerprint=FP_B)


@given(st.binary(max_size=200))
def test_decoding_any_bytes_raises_only_auth_error(data: bytes) -> None:
    try:
        decode_auth(bytes([AUTH_MAGIC]) + data)
        _verify(bytes([AUTH_MAGIC]) + data, proof_key=bytes(32))
    except RemoteProtocolError as e:
        assert isinstance(e, AuthError)


def test_signed_publications() -> None:
    me = Identity.generate()
    signed = publication_bytes("chat", A.hex(), 7, b"payload")
    signature = me.sign(signed)
    assert verify_publication(me.public_key, signature, signed)
    for other in (
        publication_bytes("chat", A.hex(), 8, b"payload"),
        publication_bytes("chat", B.hex(), 7, b"payload"),
        publication_bytes("chat2", A.hex(), 7, b"payload"),
        publication_bytes("chat", A.hex(), 7, b"Payload"),
    ):
        assert not verify_publication(me.public_key, signature, other)
    assert not verify_publication(Identity.generate().public_key, signature, signed)
    assert not verify_publication(b"short", signature, signed)
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_identity_file_is_private_and_loads_back(tmp_path: Path) -> None:
    me = Identity.generate()
    path = tmp_path / "id.pem"
    path.write_text("old")
    os.chmod(path, 0o644)
    me.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Identity.load(path).public_key == me.public_key
    assert len(me.public_key) == 32


def _signed_pub() -> Envelope:
    return Envelope(
        Kind.PUBLISH,
        123456,
        7,
        payload=b"\n\x02hi",
        has_payload=True,
        topic="chat",
        origin=A.hex(),
        hops=3,
        publisher=b"\x01" * 32,
        signature=b"\x02" * 64,
    )


def test_a_signed_publish_keeps_key_and_signature_in_both_forms() -> None:
    env = _signed_pub()
    (frame,) = to_binary(env)
    decoded = BinaryReader(max_message_size=1 << 20).feed("peer", frame)
    assert decoded is not None
    assert (decoded.publisher, decoded.signature) == (env.publisher, env.signature)
    as_json = to_json(replace(env, payload={"text": "hi"}))
    assert set(as_json) >= {"key", "sig"}
    back = from_json(as_json, 123456)
    assert (back.publisher, back.signature, back.seq) == (env.publisher, env.signature, 7)


@pytest.mark.parametrize(
    "change",
    [
        {"key": "AAAA"},  # 3 bytes
        {"sig": "not base64!"},
        {"key": None},  # a signature without its key
        {"seq": None},  # unnumbered: nothing to sign over
        {"from": None},
        {"key": 5},
    ],
)
def test_a_malformed_signed_publish_is_refused(change: dict[str, object]) -> None:
    value = {**to_json(replace(_signed_pub(), payload={"text": "hi"})), **change}
    value = {k: v for k, v in value.items() if v is not None}
    with pytest.raises(RemoteProtocolError):
        from_json(value, 1)


@given(st.dictionaries(st.sampled_from(["key", "sig"]), st.text(max_size=120) | st.integers()))
def test_any_key_and_sig_parse_or_raise_a_remote_protocol_error(extra: dict[str, object]) -> None:
    value = {**to_json(replace(_signed_pub(), payload={"text": "hi"})), **extra}
    try:
        env = from_json(value, 1)
    except RemoteProtocolError:
        return
    assert env.publisher is not None and len(env.publisher) == 32
    assert env.signature is not None and len(env.signature) == 64
