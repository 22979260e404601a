"""Fuzzing what secret mode reads from others: sealed SDP from a tracker (at any time of the
opener's clock), SDP sealed to our key and seal key records from relays, handshake frames and
signed topic headers from peers. Only typed errors escape."""

from __future__ import annotations

import base64
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from p2prpc.identity import Identity
from p2prpc.wire.envelope import EnvelopeError, from_json
from p2prpc.wire.mesh import MeshError, decode_pex
from p2prpc.wire.sealbox import SealKey, SealKeyError, SealKeyPair, open_from, seal_to
from p2prpc.wire.secret import (
    AUTH_MAGIC,
    SEAL_CLOCK_SKEW,
    SEAL_MAX_AGE,
    AuthError,
    SealError,
    bound_peer_id,
    derive_keys,
    make_auth,
    open_sealed,
    seal,
    verify_auth,
)

FUZZ = settings.get_profile(os.environ.get("P2PRPC_FUZZ_PROFILE", "fuzz-ci"))

KEYS = derive_keys("fuzz secret 7c2e9f04b16d3a58", "fuzz")
IDS = {"info_hash": KEYS.info_hash, "from_id": b"\x01" * 20, "offer_id": b"\x03" * 20}
NOW = 1_700_000_000.0  # when SEALED was sealed and is opened: fixed, so runs are repeatable
SEALED = seal(KEYS.seal_key, "answer", "v=0\r\n", to_id=b"\x02" * 20, created=NOW, **IDS)
ME = Identity.generate()
ENDS = {
    "info_hash": KEYS.info_hash,
    "local_fingerprint": b"\xaa" * 32,
    "remote_fingerprint": b"\xbb" * 32,
}
ME_NONCE = b"\x05" * 16
ME_ID = bound_peer_id(ME.public_key, ME_NONCE)
SENDER = SealKeyPair.generate(
    identity=ME.public_key, sign=ME.sign, info_hash=KEYS.info_hash, peer_id=b"\x01" * 20
)
RECIPIENT = SealKeyPair.generate(
    identity=ME.public_key, sign=ME.sign, info_hash=KEYS.info_hash, peer_id=b"\x02" * 20
)
TO_RECIPIENT = {**IDS, "to_id": b"\x02" * 20}
SEALED_TO = seal_to(
    RECIPIENT.record.public, SENDER, KEYS.seal_key, "offer", "v=0\r\n", **TO_RECIPIENT
)
FRAME = make_auth(
    local_id=ME_ID,
    remote_id=b"\x02" * 20,
    proof_key=KEYS.proof_key,
    public_key=ME.public_key,
    id_nonce=ME_NONCE,
    sign=ME.sign,
    **ENDS,
)


def _mutations(base: bytes) -> st.SearchStrategy[bytes]:
    """``base`` with bytes replaced, cut or extended, and anything at all."""
    edits = st.lists(st.tuples(st.integers(0, len(base) + 4), st.integers(0, 255)), max_size=6)

    def apply(cut: int, changes: list[tuple[int, int]]) -> bytes:
        data = bytearray(base[:cut])
        for at, value in changes:
            if at < len(data):
                data[at] = value
            else:
                data.append(value)
        return bytes(data)

    return st.one_of(
        st.builds(apply, st.integers(0, len(base) + 4), edits), st.binary(max_size=300)
    )


@FUZZ
@given(
    st.one_of(st.text(max_size=400), _mutations(SEALED.encode()).map(lambda b: b.decode("latin-1")))
)
def test_opening_sealed_text_raises_only_seal_error(text: str) -> None:
    try:
        sdp = open_sealed(KEYS.seal_key, "answer", text, to_id=b"\x02" * 20, now=NOW, **IDS)
    except SealError:
        return
    assert text == SEALED and sdp == "v=0\r\n"  # nothing else opens


@FUZZ
@given(st.floats(allow_nan=False), _mutations(SEALED.encode()).map(lambda b: b.decode("latin-1")))
def test_opening_at_any_time_raises_only_seal_error(now: float, text: str) -> None:
    """Whatever the clock says (far past, far future, infinities) and whatever arrives."""
    try:
        sdp = open_sealed(KEYS.seal_key, "answer", text, to_id=b"\x02" * 20, now=now, **IDS)
    except SealError:
        return
    assert (
        text == SEALED and sdp == "v=0\r\n" and NOW - SEAL_CLOCK_SKEW <= now <= NOW + SEAL_MAX_AGE
    )


@FUZZ
@given(_mutations(FRAME))
def test_handshake_frames_raise_only_auth_error(data: bytes) -> None:
    args = {"local_id": b"\x02" * 20, "remote_id": ME_ID, "proof_key": KEYS.proof_key}
    ends = {**ENDS, "local_fingerprint": ENDS["remote_fingerprint"]}
    ends["remote_fingerprint"] = ENDS["local_fingerprint"]
    try:
        key = verify_auth(bytes([AUTH_MAGIC]) + data[1:] if data else data, **args, **ends)
    except AuthError:
        return
    assert key == ME.public_key and data[1:] == FRAME[1:]


def _pub(extra: dict[str, Any]) -> dict[str, Any]:
    return {"pub": "t", "msg": {}, "from": "01" * 20, "seq": 1, "hops": 1, **extra}


header_values = st.one_of(
    st.none(),
    st.text(max_size=120),
    st.integers(),
    st.binary(max_size=96).map(lambda b: base64.b64encode(b).decode()),
)


@FUZZ
@given(st.dictionaries(st.sampled_from(["key", "sig", "seq", "from"]), header_values))
def test_signed_publish_headers_raise_only_envelope_errors(extra: dict[str, Any]) -> None:
    try:
        envelope = from_json(_pub(extra), 1)
    except EnvelopeError:
        return
    if envelope.publisher is not None:
        assert len(envelope.publisher) == 32 and envelope.signature is not None
        assert len(envelope.signature) == 64 and envelope.seq >= 0


@FUZZ
@given(
    st.one_of(
        st.text(max_size=400),
        _mutations(SEALED_TO.encode()).map(lambda b: b.decode("latin-1")),
    )
)
def test_opening_text_sealed_to_us_raises_only_seal_error(text: str) -> None:
    try:
        sdp, sender = open_from(RECIPIENT, KEYS.seal_key, "offer", text, **TO_RECIPIENT)
    except SealError:
        return
    assert text == SEALED_TO and sdp == "v=0\r\n" and sender == SENDER.record


@FUZZ
@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=200),
        _mutations(SENDER.record.to_bytes()).map(lambda b: base64.b64encode(b).decode()),
    )
)
def test_seal_key_records_raise_only_typed_errors(value: object) -> None:
    try:
        record = SealKey.from_text(value)
    except SealKeyError:
        pass
    else:
        signed = record.verify(info_hash=KEYS.info_hash, peer_id=b"\x01" * 20)
        assert signed == (record == SENDER.record)  # nothing else is signed for that peer id
    try:
        key = base64.b64encode(ME.public_key).decode()
        listed = decode_pex({"peers": [{"id": "01" * 20, "key": key, "seal": value}]})
    except MeshError:
        return
    assert value is None or listed[0].seal_key == SealKey.from_text(value)
