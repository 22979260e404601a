"""The envelope decoders under hostile input: huge numbers, unfinished payloads, their age."""

from __future__ import annotations

import json
import struct

import pytest

from p2prpc.errors import MessageTooBig, RemoteProtocolError, TooManyPending
from p2prpc.wire.envelope import (
    MAGIC,
    MAX_TIMEOUT,
    BinaryReader,
    Envelope,
    EnvelopeError,
    Flags,
    Kind,
    from_json,
    to_binary,
)

HUGE = 10**400


def binary_call(
    header: dict[str, object], flags: Flags = Flags.NONE, payload: bytes = b""
) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">BBBIIH", MAGIC, Kind.CALL, flags, 7, 0, len(raw)) + raw + payload


@pytest.mark.parametrize("timeout", [HUGE, -HUGE, 1e308, float(MAX_TIMEOUT) * 10])
def test_a_huge_timeout_is_read_or_refused_never_overflows(timeout: float) -> None:
    for read in (
        lambda: from_json({"call": "/a.B/C", "timeout": timeout}, 1),
        lambda: BinaryReader().feed("peer", binary_call({"call": "/a.B/C", "timeout": timeout})),
    ):
        try:
            envelope = read()
        except EnvelopeError as e:
            assert timeout < 0
            assert "negative" in str(e)
        else:
            assert envelope is not None
            assert envelope.timeout == MAX_TIMEOUT


def test_ordinary_timeouts_are_kept() -> None:
    assert from_json({"call": "/a.B/C", "timeout": 2.5}, 1).timeout == 2.5
    assert from_json({"call": "/a.B/C", "timeout": 0}, 1).timeout == 0.0


def test_a_binary_header_with_nan_or_a_non_utf8_byte_is_an_envelope_error() -> None:
    raw = b'{"call": "/a.B/C", "timeout": NaN}'
    frame = struct.pack(">BBBIIH", MAGIC, Kind.CALL, 0, 7, 0, len(raw)) + raw
    with pytest.raises(EnvelopeError):
        BinaryReader().feed("peer", frame)
    bad = struct.pack(">BBBIIH", MAGIC, Kind.CALL, 0, 7, 0, 2) + b"\xff\xfe\xff"
    with pytest.raises(RemoteProtocolError):
        BinaryReader().feed("peer", bad)


def test_a_memoryview_frame_is_read() -> None:
    frame = to_binary(Envelope(Kind.REPLY, 3, 0, payload=b"abc", has_payload=True))[0]
    envelope = BinaryReader().feed("peer", memoryview(frame))  # type: ignore[arg-type]
    assert envelope is not None
    assert envelope.payload == b"abc"


def big_reply(call_id: int, size: int) -> list[bytes]:
    return to_binary(
        Envelope(Kind.REPLY, call_id, 0, payload=b"z" * size, has_payload=True), frame_size=1024
    )


def test_unfinished_payloads_expire_after_max_age() -> None:
    reader = BinaryReader(max_age=10.0)
    frames = big_reply(1, 5000)
    for frame in frames[:-1]:
        assert reader.feed("peer", frame, now=0.0) is None
    held = reader.held_bytes("peer")
    assert held > 0
    assert reader.held_bytes() == held
    assert reader.expire(now=10.0) == 0
    assert reader.expire(now=10.5) == 1
    assert reader.held_bytes() == 0
    assert reader.pending == 0
    # The end of a dropped payload reads as the start of nothing: a one-frame reply of its tail.
    late = reader.feed("peer", frames[-1], now=11.0)
    assert late is not None
    assert len(late.payload) < 5000


def test_feed_expires_by_its_clock() -> None:
    now = [0.0]
    reader = BinaryReader(max_age=5.0, clock=lambda: now[0])
    frames = big_reply(1, 3000)
    reader.feed("a", frames[0])
    assert reader.pending == 1
    now[0] = 6.0
    reader.feed("b", big_reply(2, 10)[0])  # any frame: the stale payload of "a" goes
    assert reader.pending == 0
    assert reader.held_bytes() == 0


def test_held_bytes_stay_within_the_caps_and_are_released() -> None:
    reader = BinaryReader(max_message_size=4000, max_pending=2)
    for call_id in (1, 2):
        for frame in big_reply(call_id, 3500)[:-1]:
            reader.feed("peer", frame, now=0.0)
    assert reader.held_bytes("peer") <= 2 * 4000
    with pytest.raises(TooManyPending):
        reader.feed("peer", big_reply(3, 3500)[0], now=0.0)
    with pytest.raises(MessageTooBig):
        for frame in big_reply(4, 5000)[:-1]:
            reader.feed("other", frame, now=0.0)
    assert reader.held_bytes("other") == 0
    reader.discard("peer")
    assert reader.held_bytes() == 0


def test_an_unfinished_payload_keeps_its_header_as_it_came_not_parsed() -> None:
    """A first frame's JSON header is read and checked, then kept as its bytes until the last
    frame: 16 unfinished payloads whose headers are ``[[],[],...]`` (20 times their size once
    parsed) hold about what was sent, and each still reads whole when it ends."""
    import gc
    import tracemalloc

    reader = BinaryReader(max_pending=16)
    junk = json.dumps({"call": "/t.S/M", "junk": [[]] * 1000}, separators=(",", ":")).encode()

    def first(call_id: int) -> bytes:
        head = struct.pack(
            ">BBBIIH", MAGIC, Kind.CALL, Flags.PAYLOAD | Flags.MORE, call_id, 0, len(junk)
        )
        return head + junk + b"x"

    frames = [first(i) for i in range(16)]
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for frame in frames:
            assert reader.feed("p", frame) is None
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    sent = sum(len(f) for f in frames)
    assert after - before < 4 * sent + 16 * 1024
    last = struct.pack(">BBBIIH", MAGIC, Kind.CALL, Flags.PAYLOAD, 3, 0, 0) + b"y"
    envelope = reader.feed("p", last)
    assert envelope is not None and envelope.method == "/t.S/M" and envelope.payload == b"xy"
