"""A binary payload refused part-way costs one error, not one a frame (pure, no network)."""

from __future__ import annotations

import pytest

from p2prpc.errors import MessageTooBig
from p2prpc.wire.envelope import BinaryReader, Envelope, Kind, to_binary


def test_the_rest_of_a_refused_payload_is_dropped_quietly_and_the_reader_goes_on() -> None:
    reader = BinaryReader(max_message_size=100_000)
    big = Envelope(Kind.CALL, 9, method="/a.B/C", payload=b"x" * 300_000, has_payload=True)
    frames = to_binary(big)
    assert len(frames) == 5
    errors = 0
    for frame in frames:
        try:
            assert reader.feed("p", frame, now=0.0) is None
        except MessageTooBig:
            errors += 1
    assert errors == 1
    assert reader.held_bytes() == 0
    small = Envelope(Kind.CALL, 9, method="/a.B/C", payload=b"ok", has_payload=True)
    (frame,) = to_binary(small)
    assert reader.feed("p", frame, now=0.0) == small  # the same call id, a new call: read
    with pytest.raises(MessageTooBig):  # and a new oversized one is refused again
        for frame in to_binary(big):
            reader.feed("p", frame, now=0.0)
