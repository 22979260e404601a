"""gRPC metadata rules and its wire form, in both envelope forms (pure, no network)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.errors import InvalidMetadata
from p2prpc.wire import metadata as md
from p2prpc.wire.envelope import (
    BinaryReader,
    Envelope,
    EnvelopeError,
    Kind,
    from_json,
    to_binary,
    to_json,
)
from p2prpc.wire.status import Status, StatusCode, code_from_number, code_number

ENTRIES = (("trace", "t1"), ("trace", "t2"), ("token-bin", b"\x00\xff\x10"))

keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20)
entry = st.one_of(
    st.tuples(
        keys.filter(lambda k: not k.endswith("-bin")), st.text(alphabet=" !~azAZ09", max_size=20)
    ),
    st.tuples(keys.map(lambda k: k + "-bin"), st.binary(max_size=20)),
)


@given(st.lists(entry, max_size=20))
def test_any_valid_metadata_survives_the_json_form(entries: list[tuple[str, str | bytes]]) -> None:
    assert md.from_json(md.to_json(entries)) == tuple(
        sorted(entries, key=lambda e: [k for k, _ in entries].index(e[0]))
    )


def test_repeated_keys_and_binary_values_travel_in_both_forms() -> None:
    call = Envelope(Kind.CALL, 7, method="/a.B/C", metadata=ENTRIES)
    assert to_json(call)["metadata"] == {"trace": ["t1", "t2"], "token-bin": "AP8Q"}
    assert from_json(to_json(call), 7).metadata == ENTRIES
    (frame,) = to_binary(call)
    assert BinaryReader().feed("peer", frame).metadata == ENTRIES  # type: ignore[union-attr]
    headers = Envelope(Kind.HEADERS, 7, metadata=ENTRIES)
    assert from_json(to_json(headers), 7) == replace(headers, json=True)
    (frame,) = to_binary(headers)
    assert BinaryReader().feed("peer", frame) == headers
    status = Envelope(Kind.STATUS, 7, status=Status(StatusCode.NOT_FOUND, "gone", ENTRIES))
    assert from_json(to_json(status), 7) == replace(status, json=True)
    assert to_json(status)["status"]["code"] == 5


def test_a_plain_json_object_is_metadata() -> None:
    """What a JavaScript P2PT app writes: {"key": "value"}."""
    assert md.from_json({"x-user": "ada", "n": "1"}) == (("x-user", "ada"), ("n", "1"))


@pytest.mark.parametrize(
    "bad",
    [{"Upper": "x"}, {"k": 5}, {"k": ["a", 1]}, {"k-bin": "!!notbase64"}, {"k": "tab\there"}, []],
)
def test_bad_metadata_from_a_peer_is_an_envelope_error(bad: object) -> None:
    with pytest.raises(EnvelopeError):
        from_json({"call": "/a.B/C", "metadata": bad}, 1)


@pytest.mark.parametrize(
    "entries",
    [[("X-Trace", "T")], [("k-bin", "text")], [("k", b"raw")], [("", "v")], [("k", "é")], ["k"]],
)
def test_metadata_gRPC_does_not_allow_is_refused_locally(entries: list[object]) -> None:
    with pytest.raises(InvalidMetadata):
        md.normalize(entries)  # type: ignore[arg-type]


def test_status_codes_travel_as_grpc_numbers() -> None:
    assert [code_number(c) for c in StatusCode] == list(range(17))
    assert all(code_from_number(code_number(c)) is c for c in StatusCode)
    for bad in (17, -1, True, "0"):
        with pytest.raises(EnvelopeError):
            from_json({"status": {"code": bad}}, 1)
