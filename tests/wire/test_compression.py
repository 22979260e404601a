"""Payload compression codecs and the compressed binary envelope (pure, no I/O)."""

from __future__ import annotations

import gzip
import os
import random
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.errors import MessageTooBig
from p2prpc.wire.compression import (
    CODECS,
    MAX_RATIO,
    RATIO_ALLOWANCE,
    CompressionError,
    InflatesTooMuch,
    compress,
    decompress,
    inflate_limit,
)
from p2prpc.wire.envelope import BinaryReader, Envelope, Kind, to_binary

ENCODINGS = sorted(CODECS)


def test_every_encoding_is_available_here() -> None:
    assert ENCODINGS == ["deflate", "gzip", "zstd"]


@pytest.mark.parametrize("encoding", ENCODINGS)
@given(data=st.binary(max_size=5000))
def test_round_trip(encoding: str, data: bytes) -> None:
    packed, compressed = compress(encoding, data)
    assert decompress(encoding, packed, len(data)) == data if compressed else packed == data


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_only_what_shrinks_is_compressed(encoding: str) -> None:
    words = [b"record", b"again", b"name", b"city", b"score", b"active", b"tags", b"the"]
    rng = random.Random(1)
    text = b" ".join(rng.choice(words) + str(rng.randrange(100)).encode() for _ in range(5000))
    packed, compressed = compress(encoding, text)
    assert compressed and len(packed) < len(text) * 0.34
    noise = os.urandom(10_000)
    assert compress(encoding, noise) == (noise, False)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decompression_is_bounded(encoding: str) -> None:
    packed = CODECS[encoding].compress(b"\0" * 1_000_000)
    assert len(packed) < 5_000
    with pytest.raises(MessageTooBig):
        decompress(encoding, packed, 100_000, max_ratio=1e9)


# Unknown protobuf fields (field 100, varint 1), the costliest bytes to parse: 4 MiB of them.
BOMB = b"\xa0\x06\x01" * (4 * 2**20 // 3)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_payload_that_inflates_past_the_ratio_is_refused(encoding: str) -> None:
    packed = CODECS[encoding].compress(BOMB)
    assert len(BOMB) > MAX_RATIO * len(packed)  # under the 4 MiB size cap, over the ratio
    with pytest.raises(InflatesTooMuch, match="times its size"):
        decompress(encoding, packed, 4 * 2**20 + 1)
    # Within the ratio it inflates, up to the bound exactly.
    limit = inflate_limit(len(packed), 2**30)
    assert limit == int(MAX_RATIO * len(packed)) + RATIO_ALLOWANCE
    fitting = CODECS[encoding].compress(BOMB[:limit])
    assert decompress(encoding, fitting, 2**30, max_ratio=limit / len(fitting)) == BOMB[:limit]
    assert decompress(encoding, packed, 2**30, max_ratio=1e6) == BOMB


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_bomb_under_any_size_cap_is_refused_by_its_ratio(encoding: str) -> None:
    """64 MiB of zeros in a few kB: refused once the output passes the ratio's bound, whatever
    the size cap allows."""
    packed = CODECS[encoding].compress(b"\0" * 2**26)
    with pytest.raises(InflatesTooMuch):
        decompress(encoding, packed, 2**30)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_sender_keeps_within_the_ratio_a_receiver_takes(encoding: str) -> None:
    zeros = b"\0" * 1_000_000
    assert compress(encoding, zeros) == (zeros, False)  # it would inflate past MAX_RATIO
    some = os.urandom(20_000) + b"\0" * 200_000
    packed, compressed = compress(encoding, some)
    assert compressed and decompress(encoding, packed, len(some)) == some


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_garbage_is_a_compression_error(encoding: str) -> None:
    with pytest.raises(CompressionError):
        decompress(encoding, b"definitely not compressed", 1000)


def test_truncated_deflate_is_an_error() -> None:
    with pytest.raises(CompressionError):
        decompress("deflate", zlib.compress(b"x" * 1000)[:-4], 10_000)


def test_gzip_is_rfc_1952_as_grpc_and_the_standard_library_write_it() -> None:
    text = b" ".join(b"gzip %d" % i for i in range(3000))
    packed, compressed = compress("gzip", text)
    assert compressed and packed[:2] == b"\x1f\x8b"  # gzip's magic, not zlib's header
    assert gzip.decompress(packed) == text
    assert decompress("gzip", gzip.compress(text, mtime=0), len(text)) == text
    with pytest.raises(CompressionError, match="truncated"):
        decompress("gzip", packed[:-4], 100_000, max_ratio=1e6)
    with pytest.raises(CompressionError, match="after the gzip member"):
        decompress("gzip", packed + gzip.compress(b"more"), 100_000, max_ratio=1e6)
    with pytest.raises(CompressionError):  # zlib's framing is not gzip's
        decompress("gzip", zlib.compress(text), 100_000)


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
