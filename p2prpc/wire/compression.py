"""Payload compression for the binary envelope, named as gRPC names its encodings.

``deflate`` (zlib's framing) and ``gzip`` (RFC 1952's, grpc.Compression.Gzip) come from the
standard library; ``zstd`` when the ``zstandard`` package is installed
(``pip install p2prpc[zstd]``). A sender compresses a payload only when the receiver said in its
hello that it reads the encoding, and keeps the compressed form only when it is smaller: data that
does not shrink (already compressed, random) travels as it is.

Decompression is bounded twice, and stops as soon as it passes either bound: by the receiver's
maximum message size, and by a ratio of output to input (:func:`inflate_limit`: at most
``max_ratio`` × the compressed size + :data:`RATIO_ALLOWANCE` bytes; :data:`MAX_RATIO`, 64, by
default), so that decoding costs a bounded amount of work per byte received. Real data rarely
inflates past 64 (text and records compress 3 to 10 times, logs and repetitive JSON up to about
30); a sender keeps the compressed form only within that ratio, so that a receiver with the
default never refuses it. A payload past a bound is refused with :class:`InflatesTooMuch` (a
:class:`~p2prpc.errors.MessageTooBig`, RESOURCE_EXHAUSTED on a call).

A payload is one whole stream of its encoding (one zlib stream, one gzip member, one zstd frame):
one cut short, followed by any byte, or followed by a second stream is refused with
:class:`CompressionError` (INTERNAL on a call), by every encoding alike; nothing a payload
carries is dropped unread.
"""

from __future__ import annotations

import contextlib
import io
import zlib
from typing import Protocol

from ..errors import MessageTooBig, RemoteProtocolError

IDENTITY = "identity"

#: The most a compressed payload may inflate, as a ratio of output to input bytes (by default).
MAX_RATIO = 64.0

#: Bytes a compressed payload may inflate to beyond ``ratio`` × its size (a small payload's
#: frame overhead is a large share of it).
RATIO_ALLOWANCE = 4096


class CompressionError(RemoteProtocolError):
    """A compressed payload could not be decompressed."""


class InflatesTooMuch(MessageTooBig):
    """A compressed payload inflates past the receiver's bound (its size, or its ratio)."""


def inflate_limit(size: int, max_size: int, max_ratio: float = MAX_RATIO) -> int:
    """The most bytes a compressed payload of ``size`` bytes may inflate to: ``max_ratio`` ×
    ``size`` + :data:`RATIO_ALLOWANCE`, and never past ``max_size``."""
    return min(max_size, int(max_ratio * size) + RATIO_ALLOWANCE)


class Codec(Protocol):
    name: str

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes, max_size: int) -> bytes: ...


class Deflate:
    """zlib's deflate (RFC 1950 framing), one stream, at a level that favours speed."""

    name = "deflate"

    def __init__(self, level: int = 1) -> None:
        self.level = level

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decompress(self, data: bytes, max_size: int) -> bytes:
        inflater = zlib.decompressobj()
        try:  # stops once it has made one byte past the bound
            out = inflater.decompress(data, max_size + 1)
        except zlib.error as e:
            raise CompressionError(f"bad deflate data: {e}") from e
        if len(out) > max_size or inflater.unconsumed_tail:
            raise InflatesTooMuch(f"payload inflates past {max_size} bytes")
        if not inflater.eof:
            raise CompressionError("truncated deflate data")
        if inflater.unused_data:
            raise CompressionError("bytes after the deflate stream")
        return out


class Gzip:
    """Deflate in gzip's framing (RFC 1952), one member, at a level that favours speed: what gRPC
    calls ``gzip`` (``grpc.Compression.Gzip``)."""

    name = "gzip"

    def __init__(self, level: int = 1) -> None:
        self.level = level

    def compress(self, data: bytes) -> bytes:
        packer = zlib.compressobj(self.level, zlib.DEFLATED, _GZIP_WBITS)
        return packer.compress(data) + packer.flush()

    def decompress(self, data: bytes, max_size: int) -> bytes:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        try:  # stops once it has made one byte past the bound
            out = inflater.decompress(data, max_size + 1)
        except zlib.error as e:
            raise CompressionError(f"bad gzip data: {e}") from e
        if len(out) > max_size or inflater.unconsumed_tail:
            raise InflatesTooMuch(f"payload inflates past {max_size} bytes")
        if not inflater.eof:
            raise CompressionError("truncated gzip data")
        if inflater.unused_data:
            raise CompressionError("bytes after the gzip member")
        return out


#: zlib's window bits for the gzip header and trailer (RFC 1952) around a 32 KiB window.
_GZIP_WBITS = 16 + zlib.MAX_WBITS


#: Bytes read at once from a zstd frame that does not say its size.
_ZSTD_PIECE = 16 * 1024


class Zstd:
    """Zstandard, one frame, through the ``zstandard`` package."""

    name = "zstd"

    def __init__(self, level: int = 3) -> None:
        import zstandard

        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError
        self._content_size = zstandard.frame_content_size

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def decompress(self, data: bytes, max_size: int) -> bytes:
        try:
            declared = self._content_size(data)  # -1: not said
        except self._error as e:
            raise CompressionError(f"bad zstd data: {e}") from e
        if declared > max_size:
            raise InflatesTooMuch(f"payload says it inflates to {declared} bytes")
        if declared > 0:
            # Into a buffer of the size the frame says (zstd refuses a frame that makes more),
            # refusing any byte after the frame.
            try:
                return self._decompressor.decompress(data, allow_extra_data=False)
            except self._error as e:
                raise _zstd_error(e) from e
        # A frame that does not say its size (or says 0, which the one-shot call takes on trust):
        # decompressed up to one byte past the bound, then, once the frame is known to make no
        # more than the bound, read again to find where it ends.
        try:
            with self._decompressor.stream_reader(io.BytesIO(data)) as reader:
                # In pieces: one read asks zstd for an output buffer of its own size (up to
                # 128 KiB whatever the frame makes); stops one byte past the bound.
                pieces = []
                total = 0
                while total <= max_size:
                    piece = reader.read(min(_ZSTD_PIECE, max_size + 1 - total))
                    if not piece:
                        break
                    pieces.append(piece)
                    total += len(piece)
                out = b"".join(pieces)
        except self._error as e:
            raise CompressionError(f"bad zstd data: {e}") from e
        if len(out) > max_size:
            raise InflatesTooMuch(f"payload inflates past {max_size} bytes")
        ender = self._decompressor.decompressobj(write_size=_ZSTD_PIECE, read_across_frames=False)
        try:
            again = ender.decompress(data)
        except self._error as e:
            raise CompressionError(f"bad zstd data: {e}") from e
        if not ender.eof or len(again) != len(out):
            raise CompressionError("truncated zstd data")
        if ender.unused_data:
            raise CompressionError("bytes after the zstd frame")
        return out


def _zstd_error(error: Exception) -> CompressionError:
    if "unused data" in str(error):
        return CompressionError("bytes after the zstd frame")
    return CompressionError(f"bad zstd data: {error}")


def _available() -> dict[str, Codec]:
    codecs: dict[str, Codec] = {"deflate": Deflate(), "gzip": Gzip()}
    with contextlib.suppress(ImportError):
        codecs["zstd"] = Zstd()
    return codecs


#: The encodings this process reads and writes, by name.
CODECS: dict[str, Codec] = _available()


def compress(encoding: str, data: bytes) -> tuple[bytes, bool]:
    """``(payload, compressed)``: the compressed form when it is smaller and inflates within
    :data:`MAX_RATIO` (what a receiver takes by default), else ``data`` itself."""
    codec = CODECS.get(encoding)
    if codec is None or not data:
        return data, False
    packed = codec.compress(data)
    if len(packed) >= len(data) or len(data) > inflate_limit(len(packed), len(data)):
        return data, False
    return packed, True


def decompress(encoding: str, data: bytes, max_size: int, max_ratio: float = MAX_RATIO) -> bytes:
    """``data`` decompressed; :class:`InflatesTooMuch` once the output passes
    :func:`inflate_limit` (``max_size`` bytes, or ``max_ratio`` × ``len(data)`` + the allowance),
    before any more is made; :class:`CompressionError` when it does not decompress."""
    codec = CODECS.get(encoding)
    if codec is None:
        raise CompressionError(f"unknown encoding {encoding!r}")
    limit = inflate_limit(len(data), max_size, max_ratio)
    try:
        return codec.decompress(data, limit)
    except InflatesTooMuch as e:
        if limit < max_size:
            raise InflatesTooMuch(
                f"payload of {len(data)} bytes inflates past {limit} bytes "
                f"(at most {max_ratio:g} times its size + {RATIO_ALLOWANCE})"
            ) from e
        raise
