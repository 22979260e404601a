"""The topic repair envelopes, ``want`` and ``have``, in both forms (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.wire.envelope import (
    BinaryReader,
    Envelope,
    EnvelopeError,
    Kind,
    from_json,
    to_binary,
    to_json,
)

PEER = "ab" * 20
KEY = bytes(range(32))

topics = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=256)
peer_ids = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
keys = st.one_of(st.none(), st.binary(min_size=32, max_size=32))


def binary_round_trip(envelope: Envelope) -> Envelope | None:
    reader = BinaryReader()
    result = None
    for frame in to_binary(envelope):
        result = reader.feed("p", frame, now=0.0)
    return result


@given(topics, peer_ids, st.integers(0, 2**32 - 1), keys)
def test_a_have_reads_back_in_both_forms(
    topic: str, origin: str, seq: int, key: bytes | None
) -> None:
    have = Envelope(Kind.HAVE, 9, seq, topic=topic, origin=origin, publisher=key)
    assert from_json(to_json(have), 9) == Envelope(
        Kind.HAVE, 9, seq, topic=topic, origin=origin, publisher=key, json=True
    )
    assert binary_round_trip(have) == have


@given(topics, peer_ids, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=64), keys)
def test_a_want_reads_back_in_both_forms(
    topic: str, origin: str, seqs: list[int], key: bytes | None
) -> None:
    want = Envelope(Kind.WANT, 9, topic=topic, origin=origin, seqs=tuple(seqs), publisher=key)
    assert from_json(to_json(want), 9) == Envelope(
        Kind.WANT, 9, topic=topic, origin=origin, seqs=tuple(seqs), publisher=key, json=True
    )
    assert binary_round_trip(want) == want


def test_the_json_form_of_a_have() -> None:
    have = Envelope(Kind.HAVE, 9, 12, topic="chat", origin=PEER, publisher=KEY)
    assert to_json(have) == {
        "have": "chat",
        "from": PEER,
        "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "seq": 12,
    }


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"have": "", "from": PEER, "seq": 1}, "have must name a topic"),
        ({"have": "t" * 257, "from": PEER, "seq": 1}, "have must name a topic"),
        ({"have": 5, "from": PEER, "seq": 1}, "have must name a topic"),
        ({"have": "t", "seq": 1}, "peer id"),
        ({"have": "t", "from": "me", "seq": 1}, "peer id"),
        ({"have": "t", "from": PEER, "seq": -1}, "seq"),
        ({"have": "t", "from": PEER, "seq": 2**32}, "seq"),
        ({"have": "t", "from": PEER, "seq": True}, "seq"),
        ({"have": "t", "from": PEER, "seq": 1, "key": "!!"}, "base64"),
        ({"have": "t", "from": PEER, "seq": 1, "key": "AAAA"}, "32-byte"),
        ({"want": "t", "from": PEER, "seqs": []}, "seqs"),
        ({"want": "t", "from": PEER, "seqs": list(range(65))}, "seqs"),
    ],
)
def test_a_malformed_have_or_want_is_an_envelope_error(value: Any, why: str) -> None:
    with pytest.raises(EnvelopeError, match=why):
        from_json(value, 1)
