"""Every encoding takes a payload as one whole stream, as gzip does: bytes after it, a second
stream, or a stream cut short are refused with CompressionError (pure codecs, no I/O)."""

from __future__ import annotations

import pytest
import zstandard

from p2prpc.errors import MessageTooBig
from p2prpc.wire import compression
from p2prpc.wire.compression import CODECS, CompressionError, decompress

ENCODINGS = sorted(CODECS)
DATA = b"record again name city " * 50


@pytest.mark.parametrize("encoding", sorted(compression.CODECS))
def test_every_encoding_refuses_bytes_after_its_stream(encoding: str) -> None:
    """gzip refuses bytes after its member (CompressionError); deflate and zstd must too, rather
    than drop them silently (a sender's bug or a smuggled tail is never read as the message)."""
    packed = compression.CODECS[encoding].compress(b"x" * 100)
    with pytest.raises(compression.CompressionError):
        compression.decompress(encoding, packed + b"tail", 1 << 20)


@pytest.mark.parametrize("encoding", sorted(compression.CODECS))
def test_every_encoding_refuses_a_second_stream(encoding: str) -> None:
    packed = compression.CODECS[encoding].compress(b"x" * 100)
    with pytest.raises(compression.CompressionError):
        compression.decompress(encoding, packed + packed, 1 << 20)


@pytest.mark.parametrize("tail", [b"\0", b"tail", b"\x28\xb5\x2f\xfd"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_names_the_bytes_after_its_stream(encoding: str, tail: bytes) -> None:
    packed = CODECS[encoding].compress(DATA)
    with pytest.raises(CompressionError, match="bytes after"):
        decompress(encoding, packed + tail, 1 << 20)
    assert decompress(encoding, packed, 1 << 20) == DATA


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_refuses_a_stream_cut_short(encoding: str) -> None:
    packed = CODECS[encoding].compress(DATA)
    for cut in (1, 2, 4, len(packed) // 2):
        with pytest.raises(CompressionError):
            decompress(encoding, packed[:-cut], 1 << 20)


# A zstd frame need not say its size (a streaming compressor's does not); such frames take another
# path, held to the same rules and bounds.
SIZELESS = zstandard.ZstdCompressor(write_content_size=False)
EMPTY = zstandard.ZstdCompressor().compress(b"")


@pytest.mark.parametrize(
    "payload",
    [
        SIZELESS.compress(DATA) + b"tail",
        SIZELESS.compress(DATA) * 2,
        SIZELESS.compress(DATA) + EMPTY,
        SIZELESS.compress(DATA)[:-3],
        EMPTY + b"tail",  # says it holds nothing, which the one-shot call takes on trust
        EMPTY * 2,
    ],
    ids=["tail", "second", "empty-second", "cut", "empty-tail", "empty-twice"],
)
def test_a_zstd_frame_that_does_not_say_its_size_is_one_whole_frame(payload: bytes) -> None:
    with pytest.raises(CompressionError):
        decompress("zstd", payload, 1 << 20)


def test_a_zstd_frame_that_does_not_say_its_size_round_trips_and_stays_bounded() -> None:
    assert zstandard.frame_content_size(SIZELESS.compress(DATA)) == -1
    assert decompress("zstd", SIZELESS.compress(DATA), 1 << 20) == DATA
    assert decompress("zstd", EMPTY, 1 << 20) == b""
    bomb = SIZELESS.compress(b"\0" * 1_000_000)
    with pytest.raises(MessageTooBig):
        decompress("zstd", bomb, 100_000, max_ratio=1e9)
    with pytest.raises(MessageTooBig):  # and by its ratio, under a size cap it keeps within
        decompress("zstd", bomb, 1 << 30)
