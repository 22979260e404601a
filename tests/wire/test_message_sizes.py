"""Cutting messages to a size in bytes: P2PT frames within a receiver's max-message-size, binary
frames within a frame size (the first one growing for its header within a hard limit), and the
max-message-size a session description announces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2prpc.errors import LocalProtocolError, TooLargeForPeer
from p2prpc.wire.envelope import (
    BINARY_FRAME_SIZE,
    HEADER_SIZE,
    BinaryReader,
    Envelope,
    Kind,
    to_binary,
)
from p2prpc.wire.frames import MAX_MESSAGE_LENGTH, Reassembler, decode_frame, encode_message
from p2prpc.wire.sdp import DEFAULT_MAX_MESSAGE_SIZE, max_message_size

SDP = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n"


@pytest.mark.parametrize(
    ("line", "size"),
    [
        ("a=max-message-size:262144\r\n", 262144),
        ("a=max-message-size:4096\n", 4096),
        ("a=max-message-size:0\r\n", None),  # RFC 8841: any size
        ("", DEFAULT_MAX_MESSAGE_SIZE),  # none named: 64 KiB
        ("a=max-message-size:lots\r\n", DEFAULT_MAX_MESSAGE_SIZE),
        ("a=max-message-size:99999999999999\r\n", DEFAULT_MAX_MESSAGE_SIZE),
    ],
)
def test_the_max_message_size_a_description_announces(line: str, size: int | None) -> None:
    assert max_message_size(SDP + line) == size


def reassembled(frames: list[str]) -> object:
    reassembler = Reassembler(max_message_length=2**24)
    message = None
    for text in frames:
        frame = decode_frame(text)
        assert frame is not None
        message = reassembler.feed("peer", frame, 0.0)
    assert message is not None
    return message.value


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(["a", '"', "\x01", "é", "€", "\U0001f600", "\ud800", "\n"])),
    st.integers(min_value=80, max_value=70_000),
)
def test_p2pt_frames_fit_in_utf8_bytes_and_read_back_whole(text: str, limit: int) -> None:
    frames = encode_message(text * 40, 123456, max_frame_bytes=limit)
    assert max(len(f.encode()) for f in frames) <= limit
    assert reassembled(frames) == text * 40


def test_without_a_tight_limit_p2pt_frames_are_p2pts_own() -> None:
    text = "\x01" * 40_000  # 6 bytes a unit: 16000 units take 96000 bytes
    assert encode_message(text, 7, max_frame_bytes=262144) == encode_message(text, 7)
    cut = encode_message(text, 7, max_frame_bytes=65536)
    assert len(cut) > len(encode_message(text, 7)) == 3
    assert max(len(f.encode()) for f in cut) <= 65536
    assert encode_message("a" * MAX_MESSAGE_LENGTH, 7, max_frame_bytes=20_000) == encode_message(
        "a" * MAX_MESSAGE_LENGTH, 7
    )


def test_frames_too_small_for_one_character_are_refused() -> None:
    with pytest.raises(TooLargeForPeer):
        encode_message("\x01", 123456, max_frame_bytes=40)


def read(frames: list[bytes]) -> Envelope:
    reader = BinaryReader(max_message_size=2**22)
    envelope = None
    for frame in frames:
        envelope = reader.feed("peer", frame, now=0.0)
    assert envelope is not None
    return envelope


def test_binary_frames_keep_to_the_frame_size() -> None:
    envelope = Envelope(Kind.MSG, 5, 1, payload=bytes(range(256)) * 100, has_payload=True)
    frames = to_binary(envelope, frame_size=4640)
    assert max(map(len, frames)) <= 4640
    assert len(frames) == -(-25600 // (4640 - HEADER_SIZE))
    assert read(frames).payload == envelope.payload


def test_a_header_past_the_frame_size_grows_the_first_frame_within_the_hard_limit() -> None:
    big = (("x-big", "m" * 6000),)
    call = Envelope(
        Kind.CALL, 9, method="/a.B/C", metadata=big, payload=bytes(20_000), has_payload=True
    )
    frames = to_binary(call, frame_size=4640, max_frame_size=8192)
    assert 4640 < len(frames[0]) <= 8192
    assert max(map(len, frames[1:])) <= 4640
    back = read(frames)
    assert (back.metadata, back.payload) == (big, call.payload)
    with pytest.raises(TooLargeForPeer) as caught:
        to_binary(call, frame_size=4096, max_frame_size=4096)
    assert caught.value.limit == 4096
    with pytest.raises(LocalProtocolError) as protocol:  # the protocol's own limit, not a peer's
        huge = Envelope(Kind.CALL, 9, method="/a.B/C", metadata=(("x", "m" * 65_600),))
        to_binary(huge, frame_size=BINARY_FRAME_SIZE)
    assert not isinstance(protocol.value, TooLargeForPeer)
