"""gRPC metadata: the rules for keys and values, and its JSON wire form. Pure: no I/O.

Metadata is a multimap, a sequence of ``(key, value)`` pairs in order, as gRPC has it
(https://grpc.io/docs/guides/metadata/): keys are lower-case ASCII letters, digits, ``-``, ``_``
and ``.``; a key ending in ``-bin`` carries bytes, any other key a string of printable ASCII.

On the wire (docs/PROTOCOL.md, section 2) metadata is a JSON object from key to value, or to a list
of values when a key repeats; ``-bin`` values travel in base64, as gRPC sends them over HTTP/2. A
plain ``{"key": "value"}`` object, as a JavaScript P2PT app writes it, is valid metadata.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidMetadata, RemoteProtocolError
from .status import Metadatum

_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
#: The most entries one metadata may carry, and the most characters of keys and values together.
MAX_ENTRIES = 256
MAX_SIZE = 16 * 1024


class MetadataError(RemoteProtocolError):
    """Metadata received from a peer breaks gRPC's rules or the wire form."""


def check_key(key: object) -> str:
    """``key`` if gRPC allows it; :class:`InvalidMetadata` says why not."""
    if not isinstance(key, str) or not key:
        raise InvalidMetadata(f"metadata key {key!r} must be a non-empty string")
    if not _KEY_CHARS.issuperset(key):
        raise InvalidMetadata(
            f"metadata key {key!r} may hold only lower-case letters, digits, '-', '_' and '.'"
        )
    return key


def check_entry(key: object, value: object) -> Metadatum:
    """One entry as gRPC allows it: bytes under a ``-bin`` key, printable ASCII otherwise."""
    name = check_key(key)
    if name.endswith("-bin"):
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidMetadata(f"metadata key {name!r} ends in -bin: its value must be bytes")
        return name, bytes(value)
    if not isinstance(value, str):
        raise InvalidMetadata(
            f"metadata {name!r} takes a str value (bytes go under a key ending in -bin)"
        )
    if not all(" " <= c <= "~" for c in value):
        raise InvalidMetadata(f"metadata {name!r} must be printable ASCII")
    return name, value


def normalize(
    metadata: Iterable[tuple[Any, Any]] | Mapping[Any, Any] | None,
) -> tuple[Metadatum, ...]:
    """Caller-given metadata (pairs, a ``grpc.aio.Metadata`` or a mapping) as checked pairs."""
    if metadata is None:
        return ()
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    entries = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidMetadata(f"metadata entries are (key, value) pairs, not {item!r:.60}")
        entries.append(check_entry(*item))
    if len(entries) > MAX_ENTRIES:
        raise InvalidMetadata(f"more than {MAX_ENTRIES} metadata entries")
    size = sum(
        len(k) + (4 * ((len(v) + 2) // 3) if isinstance(v, bytes) else len(v)) for k, v in entries
    )
    if size > MAX_SIZE:
        raise InvalidMetadata(f"metadata of {size} characters is over the {MAX_SIZE} a peer takes")
    return tuple(entries)


def to_json(metadata: Iterable[Metadatum]) -> dict[str, Any]:
    """The wire form: key → value, or key → [values] when it repeats; ``-bin`` in base64."""
    out: dict[str, Any] = {}
    for key, value in metadata:
        text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        if key not in out:
            out[key] = text
        elif isinstance(out[key], list):
            out[key].append(text)
        else:
            out[key] = [out[key], text]
    return out


def from_json(value: object, what: str = "metadata") -> tuple[Metadatum, ...]:
    """Read the wire form; :class:`MetadataError` names what is wrong."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise MetadataError(f"{what} must be a JSON object")
    entries: list[Metadatum] = []
    size = 0
    for key, values in value.items():
        for item in values if isinstance(values, list) else [values]:
            if not isinstance(item, str):
                raise MetadataError(f"{what} values must be strings (or lists of strings)")
            size += len(key) + len(item)
            decoded: str | bytes = item
            if isinstance(key, str) and key.endswith("-bin"):
                try:
                    decoded = base64.b64decode(item + "=" * (-len(item) % 4), validate=True)
                except (binascii.Error, ValueError) as e:
                    raise MetadataError(f"{what} {key!r} is not base64: {e}") from e
            try:
                entries.append(check_entry(key, decoded))
            except InvalidMetadata as e:
                raise MetadataError(f"{what}: {e}") from e
            if len(entries) > MAX_ENTRIES or size > MAX_SIZE:
                raise MetadataError(f"{what} over {MAX_ENTRIES} entries or {MAX_SIZE} characters")
    return tuple(entries)
