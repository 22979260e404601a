"""Peer exchange and relayed signalling objects: round trips, caps, malformed input, rates."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.errors import RemoteProtocolError
from p2prpc.identity import Identity
from p2prpc.wire.envelope import Envelope, Kind, from_json, is_envelope, to_json
from p2prpc.wire.mesh import (
    MAX_HOPS,
    MAX_LISTED,
    MAX_NAMES,
    ListedPeer,
    MeshError,
    RateLimiter,
    Signal,
    SignalType,
    decode_pex,
    decode_signal,
    encode_pex,
    encode_signal,
)
from p2prpc.wire.sealbox import SealKeyPair

A, B, OFFER = "a" * 40, "b" * 40, "0123456789" * 4


def test_a_pex_round_trips_and_lists_at_most_the_cap() -> None:
    peers = [
        ListedPeer(f"{i:040x}", frozenset({"x.S"}), frozenset({"t"}), bytes([i]) * 32)
        for i in range(MAX_LISTED + 5)
    ]
    body = encode_pex(peers)
    assert len(body["peers"]) == MAX_LISTED
    assert decode_pex(body) == tuple(peers[:MAX_LISTED])
    assert decode_pex(encode_pex([ListedPeer(A)])) == (ListedPeer(A),)


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"peers": {}},
        {"peers": [{"id": A}] * 2},  # the same peer twice
        {"peers": [{"id": "A" * 40}]},
        {"peers": [{"id": A, "services": ["s"] * (MAX_NAMES + 1)}]},
        {"peers": [{"id": A, "topics": [""]}]},
        {"peers": [{"id": A, "services": "s"}]},
        {"peers": [{"id": A, "key": "AAAA"}]},  # 3 bytes
        {"peers": [{"id": A, "key": "not base64!"}]},
        {"peers": [{"id": A, "seal": "AAAA"}]},  # 3 bytes, not a 128-byte seal key record
        {"peers": [{"id": A, "seal": 7}]},
        {"peers": [{"id": f"{i:040x}"} for i in range(MAX_LISTED + 1)]},
        {"peers": ["x"]},
    ],
)
def test_a_malformed_or_oversized_pex_is_refused(body: Any) -> None:
    with pytest.raises(MeshError) as raised:
        decode_pex(body)
    assert isinstance(raised.value, RemoteProtocolError)


def test_pex_entries_carry_a_seal_key_record_as_read() -> None:
    identity = Identity.generate()
    own = SealKeyPair.generate(
        identity=identity.public_key, sign=identity.sign, info_hash=b"\1" * 20, peer_id=b"\2" * 20
    )
    listed = ListedPeer(A, frozenset({"s.S"}), frozenset(), identity.public_key, own.record)
    body = encode_pex([listed, ListedPeer(B)])
    assert body["peers"][0]["seal"] == own.record.to_text()
    assert "seal" not in body["peers"][1]
    assert decode_pex(body) == (listed, ListedPeer(B))
    # Read as it is: whether it is signed for that peer id is the mesh's to check.
    assert decode_pex(encode_pex([ListedPeer(B, seal_key=own.record)]))[0].seal_key == own.record


def test_signals_round_trip() -> None:
    for signal in (
        Signal(SignalType.OFFER, A, B, OFFER, "v=0\r\n", 2, True),
        Signal(SignalType.OFFER, A, B, OFFER, "v=0\r\n", 2, short=True),
        Signal(SignalType.ANSWER, B, A, OFFER, "p2prpc-sealed-2:xyz", 0),
        Signal(SignalType.REFUSE, B, A, OFFER, None, MAX_HOPS),
    ):
        assert decode_signal(encode_signal(signal)) == signal


def test_only_an_offer_says_its_sender_is_short_of_peers() -> None:
    offer = encode_signal(Signal(SignalType.OFFER, A, B, OFFER, "v=0", 2, short=True))
    assert offer["short"] is True
    assert "short" not in encode_signal(Signal(SignalType.OFFER, A, B, OFFER, "v=0", 2))
    answer = {**encode_signal(Signal(SignalType.ANSWER, B, A, OFFER, "v=0", 2)), "short": True}
    assert decode_signal(answer).short is False
    assert decode_signal({**offer, "short": 1}).short is False


@pytest.mark.parametrize(
    "change",
    [
        {"type": "hello"},
        {"from": "x"},
        {"to": None},
        {"offer_id": "A" * 40},
        {"hops": MAX_HOPS + 1},
        {"hops": -1},
        {"hops": True},
        {"sdp": ""},
        {"sdp": "x" * (32 * 1024 + 1)},
        {"sdp": 5},
    ],
)
def test_a_malformed_signal_is_refused(change: dict[str, Any]) -> None:
    body = {**encode_signal(Signal(SignalType.OFFER, A, B, OFFER, "v=0", 1)), **change}
    with pytest.raises(MeshError):
        decode_signal(body)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), st.lists, max_leaves=8))
def test_any_json_value_is_read_or_refused_as_mesh_error(value: Any) -> None:
    for decode in (decode_pex, decode_signal):
        for body in (value, {"peers": value}, {"type": "offer", "from": value}):
            with contextlib.suppress(MeshError):
                decode(body)


def test_envelopes_carry_pex_and_signal_in_the_json_form() -> None:
    body = encode_signal(Signal(SignalType.REFUSE, A, B, OFFER, None, 1))
    for kind, key in ((Kind.PEX, "pex"), (Kind.SIGNAL, "signal")):
        value = to_json(Envelope(kind, 123456, body=body))
        assert value == {key: body} and is_envelope(value)
        assert from_json(value, 123456).body == body
        with pytest.raises(RemoteProtocolError):
            from_json({key: [1]}, 1)


def test_the_rate_limiter_allows_a_burst_then_the_rate_per_key() -> None:
    limiter = RateLimiter(rate=2, burst=3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)  # keys apart
    assert not limiter.allow("a", 0.25)
    assert limiter.allow("a", 0.5)  # one token in half a second
    assert [limiter.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]
    limiter.discard("a")
    assert len(limiter) == 1
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
