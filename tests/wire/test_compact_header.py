"""The binary form's compact call and status headers read back as the JSON ones do (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.wire.envelope import (
    BinaryReader,
    Envelope,
    EnvelopeError,
    Flags,
    Kind,
    to_binary,
)
from p2prpc.wire.status import Status, StatusCode

methods = st.builds(
    lambda s, m: f"/{s}/{m}",
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz.é", min_size=1, max_size=30),
    st.text(alphabet="ABCdefXYZ_9", min_size=1, max_size=30),
)
keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)
metadata = st.lists(
    st.tuples(keys.filter(lambda k: not k.endswith("-bin")), st.text(alphabet="ab c~", max_size=9)),
    max_size=3,
).map(lambda pairs: tuple(sorted(pairs, key=lambda p: [k for k, _ in pairs].index(p[0]))))


def read_back(envelope: Envelope, compact: bool) -> Envelope | None:
    reader = BinaryReader()
    result = None
    for frame in to_binary(envelope, compact=compact):
        result = reader.feed("p", frame, now=0.0)
    return result


@given(
    methods,
    st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)),
    metadata,
    st.binary(max_size=70_000),
)
def test_a_call_reads_the_same_in_both_header_layouts(
    method: str, timeout: float | None, meta: tuple[tuple[str, str], ...], payload: bytes
) -> None:
    call = Envelope(
        Kind.CALL,
        7,
        method=method,
        timeout=timeout,
        metadata=meta,
        payload=payload,
        has_payload=True,
    )
    assert read_back(call, compact=True) == read_back(call, compact=False) == call
    assert to_binary(call, compact=True)[0][2] & Flags.COMPACT


@given(st.sampled_from(list(StatusCode)), st.text(max_size=200), metadata, st.booleans())
def test_a_status_or_final_reply_reads_the_same_in_both_layouts(
    code: StatusCode, details: str, trailers: tuple[tuple[str, str], ...], final_reply: bool
) -> None:
    status = Status(code, details, trailers)
    envelope = (
        Envelope(Kind.REPLY, 3, 1, payload=b"r", has_payload=True, status=status)
        if final_reply
        else Envelope(Kind.STATUS, 3, 2, status=status)
    )
    assert read_back(envelope, compact=True) == read_back(envelope, compact=False) == envelope


@pytest.mark.parametrize(
    "header", [b"", b"\x00", b"\x00\x09/a", b"\x00\x02/a", b"\xff\xff", b"\x00\x03\xff\xfe\xfd"]
)
def test_a_truncated_compact_header_is_an_envelope_error(header: bytes) -> None:
    (frame,) = to_binary(Envelope(Kind.CALL, 1, method="/a.B/C"), compact=True)
    cut = frame[:11] + len(header).to_bytes(2, "big") + header
    with pytest.raises(EnvelopeError):
        BinaryReader().feed("p", cut, now=0.0)
