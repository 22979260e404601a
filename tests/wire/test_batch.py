"""The batch layout: several binary frames in one data-channel message (PROTOCOL.md §4)."""

from __future__ import annotations

import pytest

from p2prpc.wire.envelope import (
    BATCH_KIND,
    MAGIC,
    Envelope,
    EnvelopeError,
    Kind,
    is_batch,
    iter_batch,
    pack_batch,
    to_binary,
)


def frames() -> list[bytes]:
    out = [f for n in range(3) for f in to_binary(Envelope(Kind.MSG, 7, seq=n, payload=b"x" * n))]
    out += to_binary(Envelope(Kind.PING, 9))
    return out


def test_a_batch_reads_back_as_the_frames_packed_in_order() -> None:
    packed = pack_batch(frames())
    assert packed[:3] == bytes((MAGIC, BATCH_KIND, 0))
    assert is_batch(packed)
    assert list(iter_batch(packed)) == frames()
    # Each frame as a u32 big-endian length and its bytes.
    first = frames()[0]
    assert packed[3:7] == len(first).to_bytes(4) and packed[7 : 7 + len(first)] == first


def test_a_frame_is_not_a_batch() -> None:
    assert not any(is_batch(f) for f in frames())
    with pytest.raises(EnvelopeError):
        list(iter_batch(frames()[0]))


@pytest.mark.parametrize(
    ("tail", "why"),
    [
        (b"\x00\x00\x00\x00", "an empty frame"),
        (b"\x00\x00\x00\x20" + bytes((MAGIC,)) * 4, "a length past the end"),
        (b"\x00\x00", "the end inside a length"),
        (b"\x00\x00\x00\x02\x00\x01", "a frame without the magic byte"),
        (b"\x00\x00\x00\x03" + bytes((MAGIC, BATCH_KIND, 0)), "a batch inside"),
    ],
)
def test_a_malformed_batch_yields_what_came_before_the_fault_then_raises(
    tail: bytes, why: str
) -> None:
    good = frames()
    read: list[bytes] = []
    with pytest.raises(EnvelopeError):
        for frame in iter_batch(pack_batch(good) + tail):
            read.append(frame)
    assert read == good, why


@pytest.mark.parametrize(
    "data",
    [bytes((MAGIC, BATCH_KIND, 0)), bytes((MAGIC, BATCH_KIND, 1)) + pack_batch(frames())[3:]],
)
def test_an_empty_batch_or_unknown_flags_are_refused(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        list(iter_batch(data))


def test_a_frame_cut_short_in_a_batch_names_its_kind_and_call_id() -> None:
    call = to_binary(Envelope(Kind.CALL, 123456, method="/a.B/C", payload=b"", has_payload=True))
    with pytest.raises(EnvelopeError) as caught:
        list(iter_batch(pack_batch(call)[:-3]))
    assert (caught.value.frame_kind, caught.value.message_id) == (Kind.CALL, 123456)
    with pytest.raises(EnvelopeError) as caught:  # too little of it to read a call id
        list(iter_batch(pack_batch([bytes((MAGIC, Kind.CALL, 0, 1))])))
    assert (caught.value.frame_kind, caught.value.message_id) == (None, None)
