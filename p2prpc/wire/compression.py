"""Payload compression for the binary envelope, named as gRPC names its encodings.

``deflate`` comes from the standard library; ``zstd`` when the ``zstandard`` package is installed
(``pip install p2prpc[zstd]``). A sender compresses a payload only when the receiver said in its
hello that it reads the encoding, and keeps the compressed form only when it is smaller: data that
does not shrink (already compressed, random) travels as it is. Decompression is bounded by the
receiver's maximum message size, so a small frame cannot expand without limit.
"""

from __future__ import annotations

import contextlib
import io
import zlib
from typing import Protocol

from ..errors import MessageTooBig, RemoteProtocolError

IDENTITY = "identity"


class CompressionError(RemoteProtocolError):
    """A compressed payload could not be decompressed."""


class Codec(Protocol):
    name: str

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes, max_size: int) -> bytes: ...


class Deflate:
    """zlib's deflate (RFC 1950 framing), at a level that favours speed."""

    name = "deflate"

    def __init__(self, level: int = 1) -> None:
        self.level = level

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decompress(self, data: bytes, max_size: int) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, max_size + 1)
        except zlib.error as e:
            raise CompressionError(f"bad deflate data: {e}") from e
        if len(out) > max_size or inflater.unconsumed_tail:
            raise MessageTooBig(f"payload inflates past {max_size} bytes")
        if not inflater.eof:
            raise CompressionError("truncated deflate data")
        return out


class Zstd:
    """Zstandard, through the ``zstandard`` package."""

    name = "zstd"

    def __init__(self, level: int = 3) -> None:
        import zstandard

        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def decompress(self, data: bytes, max_size: int) -> bytes:
        try:
            with self._decompressor.stream_reader(io.BytesIO(data)) as reader:
                out = reader.read(max_size + 1)
        except self._error as e:
            raise CompressionError(f"bad zstd data: {e}") from e
        if len(out) > max_size:
            raise MessageTooBig(f"payload inflates past {max_size} bytes")
        return out


def _available() -> dict[str, Codec]:
    codecs: dict[str, Codec] = {"deflate": Deflate()}
    with contextlib.suppress(ImportError):
        codecs["zstd"] = Zstd()
    return codecs


#: The encodings this process reads and writes, by name.
CODECS: dict[str, Codec] = _available()


def compress(encoding: str, data: bytes) -> tuple[bytes, bool]:
    """``(payload, compressed)``: the compressed form when it is smaller, else ``data`` itself."""
    codec = CODECS.get(encoding)
    if codec is None or not data:
        return data, False
    packed = codec.compress(data)
    if len(packed) >= len(data):
        return data, False
    return packed, True


def decompress(encoding: str, data: bytes, max_size: int) -> bytes:
    codec = CODECS.get(encoding)
    if codec is None:
        raise CompressionError(f"unknown encoding {encoding!r}")
    return codec.decompress(data, max_size)
