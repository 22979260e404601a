"""The circuit codec, without sockets: control messages, keys, sealing."""

from __future__ import annotations

import pytest

from p2prpc.wire.circuit import (
    MIN_WINDOW,
    CircuitError,
    Control,
    Ephemeral,
    Op,
    decode_control,
    encode_control,
    fingerprint,
)

A, B = bytes(range(20)), bytes(range(20, 40))


def pair() -> tuple[object, object, Ephemeral, Ephemeral]:
    ea, eb = Ephemeral(), Ephemeral()
    a = ea.cipher(eb.public, initiator=True, initiator_id=A, responder_id=B)
    b = eb.cipher(ea.public, initiator=False, initiator_id=A, responder_id=B)
    return a, b, ea, eb


def test_controls_round_trip_and_malformed_ones_are_refused() -> None:
    key = bytes(range(32))
    for control, to in [
        (Control(Op.CONNECT, "ab" * 20, key), True),
        (Control(Op.CONNECT, "cd" * 20, key, MIN_WINDOW), False),
        (Control(Op.ACCEPT, key=key, window=MIN_WINDOW), True),
        (Control(Op.CLOSE, reason="why"), True),
        (Control(Op.CREDIT), True),
    ]:
        assert decode_control(encode_control(control, to=to)) == control
    for bad in [
        {"circuit": "teleport"},
        {"circuit": "connect", "key": "AA=="},
        {
            "circuit": "connect",
            "to": "AB" * 20,
            "key": encode_control(Control(Op.ACCEPT, key=key))["key"],
        },
        {"circuit": "accept", "key": "not base64!" * 4},
        {"circuit": "credit", "window": 1},
        {"circuit": "close", "reason": "x" * 300},
    ]:
        with pytest.raises(CircuitError):
            decode_control(bad)


def test_both_ends_agree_and_messages_keep_their_type() -> None:
    a, b, ea, eb = pair()
    assert a.fingerprints() == (fingerprint(ea.public), fingerprint(eb.public))  # type: ignore[attr-defined]
    assert b.fingerprints() == a.fingerprints()[::-1]  # type: ignore[attr-defined]
    for message in ['^{"id":1}', b"\xb7binary", "", b"", "\udce9 lone"]:
        assert b.open(a.seal(message)) == message  # type: ignore[attr-defined]
        assert a.open(b.seal(message)) == message  # type: ignore[attr-defined]


def test_an_altered_replayed_or_reordered_frame_does_not_open() -> None:
    a, b, _, _ = pair()
    first, second = a.seal(b"one"), a.seal(b"two")  # type: ignore[attr-defined]
    flipped = first[:-1] + bytes((first[-1] ^ 1,))
    with pytest.raises(CircuitError):
        b.open(flipped)  # type: ignore[attr-defined]
    with pytest.raises(CircuitError):
        b.open(second)  # type: ignore[attr-defined]  # out of order
    assert b.open(first) == b"one"  # type: ignore[attr-defined]
    with pytest.raises(CircuitError):
        b.open(first)  # type: ignore[attr-defined]  # played again


def test_a_relay_in_the_middle_has_other_keys_at_each_end() -> None:
    ea, eb, r1, r2 = Ephemeral(), Ephemeral(), Ephemeral(), Ephemeral()
    at_a = ea.cipher(r1.public, initiator=True, initiator_id=A, responder_id=B)
    at_b = eb.cipher(r2.public, initiator=False, initiator_id=A, responder_id=B)
    # What A's handshake signs (its fingerprints) is not what B checks against.
    assert at_a.fingerprints() != at_b.fingerprints()[::-1]
    with pytest.raises(CircuitError):
        at_b.open(at_a.seal(b"x"))


def test_a_low_order_key_is_refused() -> None:
    with pytest.raises(CircuitError):
        Ephemeral().cipher(bytes(32), initiator=True, initiator_id=A, responder_id=B)
