"""Payload compression codecs and the compressed binary envelope (pure, no I/O)."""

from __future__ import annotations

import os
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.errors import MessageTooBig
from p2prpc.wire.compression import CODECS, CompressionError, compress, decompress
from p2prpc.wire.envelope import BinaryReader, Envelope, Kind, to_binary

ENCODINGS = sorted(CODECS)


def test_both_encodings_are_available_here() -> None:
    assert ENCODINGS == ["deflate", "zstd"]


@pytest.mark.parametrize("encoding", ENCODINGS)
@given(data=st.binary(max_size=5000))
def test_round_trip(encoding: str, data: bytes) -> None:
    packed, compressed = compress(encoding, data)
    assert decompress(encoding, packed, len(data)) == data if compressed else packed == data


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_only_what_shrinks_is_compressed(encoding: str) -> None:
    text = b"the same record, again and again; " * 1000
    packed, compressed = compress(encoding, text)
    assert compressed and len(packed) < len(text) // 10
    noise = os.urandom(10_000)
    assert compress(encoding, noise) == (noise, False)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decompression_is_bounded(encoding: str) -> None:
    packed, compressed = compress(encoding, b"\0" * 1_000_000)
    assert compressed and len(packed) < 5_000
    with pytest.raises(MessageTooBig):
        decompress(encoding, packed, 100_000)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_garbage_is_a_compression_error(encoding: str) -> None:
    with pytest.raises(CompressionError):
        decompress(encoding, b"definitely not compressed", 1000)


def test_truncated_deflate_is_an_error() -> None:
    with pytest.raises(CompressionError):
        decompress("deflate", zlib.compress(b"x" * 1000)[:-4], 10_000)


def test_compressed_binary_envelopes_round_trip() -> None:
    payload, _ = compress("deflate", b"abc" * 40_000)
    call = Envelope(
        Kind.CALL,
        7,
        method="/a.B/C",
        payload=payload,
        has_payload=True,
        encoding="deflate",
        compressed=True,
    )
    reader = BinaryReader()
    results = [reader.feed("peer", frame) for frame in to_binary(call, frame_size=256)]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == call
