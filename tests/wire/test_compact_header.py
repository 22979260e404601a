"""The binary form's compact call and status headers read back as the JSON ones do (pure)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.wire.envelope import (
    MAGIC,
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


def read_back(envelope: Envelope, **layout: bool) -> Envelope | None:
    """What a reader makes of ``envelope`` sent in binary frames (``layout``: to_binary's
    ``compact`` and ``compact_publish``)."""
    reader = BinaryReader()
    result = None
    for frame in to_binary(envelope, **layout):
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


peer_ids = st.binary(min_size=20, max_size=20).map(bytes.hex)


def read_publish(envelope: Envelope, compact: bool) -> Envelope | None:
    return read_back(envelope, compact_publish=compact)


@given(
    st.text(min_size=1, max_size=40),
    peer_ids,
    st.integers(0, 255),
    st.lists(peer_ids, max_size=12).map(tuple),
    st.one_of(
        st.none(),
        st.tuples(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64)),
    ),
    st.binary(max_size=70_000),
)
def test_a_publish_reads_the_same_in_both_header_layouts(
    topic: str,
    origin: str,
    hops: int,
    relayed_to: tuple[str, ...],
    signed: tuple[bytes, bytes] | None,
    payload: bytes,
) -> None:
    publisher, signature = signed if signed is not None else (None, None)
    message = Envelope(
        Kind.PUBLISH,
        11,
        seq=5,
        payload=payload,
        has_payload=True,
        topic=topic,
        origin=origin,
        hops=hops,
        relayed_to=relayed_to,
        publisher=publisher,
        signature=signature,
    )
    assert read_publish(message, compact=True) == read_publish(message, compact=False) == message
    first = to_binary(message, compact_publish=True)[0]
    assert first[2] & Flags.COMPACT
    # 4 + topic + 20 per peer id (+ 96 when signed) instead of JSON with 40 hex characters each.
    header_length = int.from_bytes(first[11:13])
    extra = 96 if signed is not None else 0
    assert header_length == 4 + len(topic.encode()) + 20 * (1 + len(relayed_to)) + extra


def test_a_publish_without_its_publishers_peer_id_keeps_the_json_header() -> None:
    message = Envelope(Kind.PUBLISH, 3, seq=0, payload=b"x", has_payload=True, topic="t")
    frame = to_binary(message, compact_publish=True)[0]
    assert not frame[2] & Flags.COMPACT
    assert read_publish(message, compact=True) == message


def test_compact_publish_headers_go_only_where_asked() -> None:
    message = Envelope(
        Kind.PUBLISH, 3, seq=0, payload=b"x", has_payload=True, topic="t", origin="ab" * 20
    )
    assert not to_binary(message, compact=True)[0][2] & Flags.COMPACT
    assert to_binary(message, compact_publish=True)[0][2] & Flags.COMPACT


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (b"\x08\x00\x00\x01t" + b"\xab" * 19, "a peer id cut short"),
        (b"\x08\x02\x00\x01t" + b"\xab" * 40, "fewer peer ids than it says"),
        (b"\x08\x00\x00\x00" + b"\xab" * 20, "no topic"),
        (b"\x08\x00\x00\x01t" + b"\xab" * 20 + b"\x00" * 10, "a tail that is not a signature"),
        (b"\x08\x00\x00\x02\xff\xfe" + b"\xab" * 20, "a topic that is not UTF-8"),
        (b"\x08\x00", "a header cut short"),
    ],
)
def test_a_malformed_compact_publish_header_is_an_envelope_error(header: bytes, why: str) -> None:
    frame = struct.pack(
        ">BBBIIH", MAGIC, Kind.PUBLISH, Flags.PAYLOAD | Flags.COMPACT, 1, 0, len(header)
    )
    with pytest.raises(EnvelopeError):
        BinaryReader().feed("p", frame + header + b"payload", now=0.0)


def test_a_topic_utf8_cannot_encode_is_sent_as_the_json_header_sends_it() -> None:
    # JSON reads "\ud800" in a topic (a lone surrogate escape), so a hostile peer can publish to
    # such a topic and a relay passes it on. The JSON header writes it (as an escape); the compact
    # header's topic.encode() raised UnicodeEncodeError out of to_binary instead, so a relay to a
    # compact_publish peer (any peer whose hello says relay: true gets every topic) failed in the
    # middle of _send_on, and the message was delivered neither to the rest nor locally.
    envelope = Envelope(
        Kind.PUBLISH,
        7,
        3,
        payload=b"x",
        has_payload=True,
        topic="t\ud800",
        origin="ab" * 20,
        hops=1,
    )
    plain = read_back(envelope, compact_publish=False)
    assert plain is not None and plain.topic == "t\ud800"
    compact = read_back(envelope, compact_publish=True)
    assert compact == plain


def test_method_names_remembered_stay_bounded() -> None:
    """Compact headers remember the method names they carry (to write and to read them again
    cheaply), but never more than a bound, whatever a peer sends: every name still reads back
    as itself, and an invalid one is still refused."""
    from p2prpc.wire import envelope

    reader = BinaryReader()
    bound = envelope._MAX_CACHED
    for i in range(3 * bound):
        call = Envelope(Kind.CALL, 100_000 + i, method=f"/s{i}.S/M", timeout=1.5)
        (frame,) = to_binary(call, compact=True)
        assert reader.feed("p", frame, now=0.0) == call
    for table in (envelope._METHOD_PREFIXES, envelope._METHODS_READ, envelope._VALID_METHODS):
        assert 0 < len(table) <= bound
    bad = Envelope(Kind.CALL, 7, method="/no-method")
    (frame,) = to_binary(bad, compact=True)
    with pytest.raises(EnvelopeError):
        reader.feed("p", frame, now=0.0)
    assert "/no-method" not in envelope._VALID_METHODS
