"""Envelopes holding text UTF-8 cannot encode (lone surrogates) are still written: a compact
header falls back to the JSON header, whose escapes carry the text, and reads back the same."""

from __future__ import annotations

import pytest

from p2prpc.wire.envelope import BinaryReader, Envelope, Flags, Kind, to_binary
from p2prpc.wire.status import Status, StatusCode

LONE = "x\ud800y\udfff"

ENVELOPES = {
    "call": Envelope(
        Kind.CALL, 7, method=f"/a.B/{LONE}", timeout=1.5, payload=b"", has_payload=True
    ),
    "status": Envelope(Kind.STATUS, 7, 3, status=Status(StatusCode.NOT_FOUND, LONE)),
    "final reply": Envelope(
        Kind.REPLY, 7, 0, payload=b"p", has_payload=True, status=Status(StatusCode.OK, LONE)
    ),
    "publish": Envelope(
        Kind.PUBLISH, 7, 4, payload=b"m", has_payload=True, topic=LONE, origin="ab" * 20, hops=2
    ),
}


@pytest.mark.parametrize("envelope", ENVELOPES.values(), ids=ENVELOPES.keys())
def test_text_utf8_cannot_encode_travels_in_the_json_header(envelope: Envelope) -> None:
    (frame,) = to_binary(envelope, compact=True, compact_publish=True)
    assert not frame[2] & Flags.COMPACT
    assert BinaryReader().feed("peer", frame) == envelope
