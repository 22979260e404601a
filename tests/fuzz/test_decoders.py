"""Fuzzing every place where input from a peer or a tracker enters: only typed errors escape.

Each decoder gets inputs that are mostly well-formed (so that the fuzzer gets past the first check)
with any field possibly replaced by anything JSON can say, including integers of hundreds of
digits, and raw text and bytes besides. Stateful readers get sequences, and after every step
their held memory is checked against their caps.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from p2prpc.errors import RemoteProtocolError, TrackerProtocolError, TrackerRequestError
from p2prpc.tracker.server import Swarms
from p2prpc.wire.envelope import (
    MAGIC,
    BinaryReader,
    EnvelopeError,
    from_json,
    iter_batch,
    pack_batch,
)
from p2prpc.wire.frames import Reassembler, decode_frame
from p2prpc.wire.tracker import (
    encode_server_message,
    parse_client_message,
    parse_server_message,
)

FUZZ = settings.get_profile(os.environ.get("P2PRPC_FUZZ_PROFILE", "fuzz-ci"))

# -- JSON values, with the numbers that break naive readers -------------------------------------

huge_ints = st.sampled_from([10**400, -(10**400), 2**64, 2**32, -1, 10**20, 2**53 + 1])
numbers = st.one_of(
    huge_ints,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, 0.5, -0.0]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))


def json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(keys, st.text(max_size=8)), children, max_size=5),
        ),
        max_leaves=12,
    )


def objects(fields: dict[str, st.SearchStrategy[Any]], keys: list[str]) -> st.SearchStrategy[Any]:
    """Dicts with some of ``fields`` (each well-formed or anything), plus stray keys."""
    anything = json_values(st.sampled_from(keys))
    return st.fixed_dictionaries(
        {},
        optional={name: st.one_of(strategy, anything) for name, strategy in fields.items()},
    ).flatmap(
        lambda d: st.dictionaries(st.sampled_from(keys), anything, max_size=2).map(
            lambda extra: {**extra, **d}
        )
    )


def dumps(value: Any) -> str:
    return json.dumps(value)


# -- P2PT frames and their reassembly -------------------------------------------------------------

FRAME_KEYS = ["id", "msg", "c", "last", "o"]
frame_objects = objects(
    {
        "id": st.sampled_from([100001, 100002, 100003]),
        "msg": st.text(max_size=40),
        "c": st.integers(0, 4),
        "last": st.booleans(),
        "o": st.booleans(),
    },
    FRAME_KEYS,
)
frame_data = st.one_of(
    frame_objects.map(lambda o: "^" + dumps(o)),
    frame_objects.map(lambda o: ("^" + dumps(o)).encode()),
    st.text(max_size=40).map(lambda t: "^" + t),
    st.binary(max_size=40).map(lambda b: b"^" + b),
    st.text(max_size=20),
)
frame_steps = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), frame_data, st.floats(0, 3)), max_size=30
)


@FUZZ
@given(frame_steps)
def test_frames_reassembler_raises_only_typed_errors_and_holds_within_caps(
    steps: list[tuple[str, str | bytes, float]],
) -> None:
    peer_cap, total_cap = 800, 1500
    reassembler = Reassembler(
        max_message_length=120,
        max_pending=3,
        max_age=4.0,
        max_peer_bytes=peer_cap,
        max_total_bytes=total_cap,
    )
    now = 0.0
    for key, data, elapsed in steps:
        now += elapsed
        try:
            frame = decode_frame(data)
            if frame is not None:
                reassembler.feed(key, frame, now)
        except RemoteProtocolError:
            pass
        reassembler.expire(now)
        assert reassembler.held_bytes <= total_cap
        for k in "abc":
            assert 0 <= reassembler.held_bytes_of(k) <= peer_cap
        assert reassembler.held_bytes == sum(reassembler.held_bytes_of(k) for k in "abc")
        assert reassembler.pending <= 9
    for k in "abc":
        reassembler.discard(k)
    assert (reassembler.held_bytes, reassembler.pending, reassembler.pending_length) == (0, 0, 0)


# -- the envelope, JSON form ----------------------------------------------------------------------

ENVELOPE_KEYS = [
    "call", "msg", "timeout", "metadata", "seq", "end", "cancel", "reply", "status", "trailers",
    "hello", "pub", "from", "hops", "to", "code", "details", "encoding", "reply_window",
    "msg_window", "want", "have", "seqs", "key",
]  # fmt: skip
status_objects = objects(
    {"code": st.integers(-1, 17), "details": st.text(max_size=10)}, ["code", "details"]
)
string_maps = st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
peer_ids = st.sampled_from(["ab" * 20, "0" * 40, "g" * 40])
envelope_fields: dict[str, st.SearchStrategy[Any]] = {
    "call": st.sampled_from(["/a.B/C", "/pkg.Service/Method", "a/b", "//"]),
    "msg": json_values(st.sampled_from(ENVELOPE_KEYS)),
    "timeout": st.one_of(huge_ints, numbers),
    "metadata": string_maps,
    "seq": st.one_of(st.integers(0, 5), huge_ints),
    "end": st.just(True),
    "cancel": st.just(True),
    "reply": leaves,
    "status": status_objects,
    "trailers": string_maps,
    "hello": st.dictionaries(st.text(max_size=5), leaves, max_size=3),
    "pub": st.text(max_size=10),
    "from": peer_ids,
    "hops": st.one_of(st.integers(-1, 300), huge_ints),
    "to": st.lists(peer_ids, max_size=3),
    "encoding": st.sampled_from(["deflate", "zstd", ""]),
    "reply_window": st.one_of(st.integers(-1, 2**31), huge_ints, leaves),
    "msg_window": st.one_of(st.integers(-1, 2**31), huge_ints, leaves),
    "want": st.text(max_size=10),
    "have": st.text(max_size=10),
    "seqs": st.lists(st.one_of(st.integers(-1, 5), huge_ints), max_size=70),
    "key": st.one_of(st.sampled_from(["AAAA", "A" * 43 + "=", "!"]), st.text(max_size=8)),
}
ENVELOPE_KINDS = {  # the key that names each kind, and the other keys it reads
    "call": ["msg", "timeout", "metadata", "encoding"],
    "msg": ["seq"],
    "end": ["seq"],
    "cancel": [],
    "reply": ["seq", "status", "trailers"],
    "status": ["seq", "trailers", "reply"],
    "hello": [],
    "pub": ["msg", "from", "hops", "to", "seq"],
    "reply_window": ["seq"],
    "msg_window": ["seq"],
    "want": ["from", "seqs", "key"],
    "have": ["from", "seq", "key"],
}


def envelope_of(kind: str) -> st.SearchStrategy[Any]:
    names = [kind, *ENVELOPE_KINDS[kind]]
    return objects({name: envelope_fields[name] for name in names}, ENVELOPE_KEYS).filter(
        lambda o: kind in o
    ) | st.fixed_dictionaries(
        {kind: envelope_fields[kind]},
        optional={name: envelope_fields[name] for name in ENVELOPE_KINDS[kind]},
    )


envelope_objects = st.one_of([envelope_of(kind) for kind in ENVELOPE_KINDS])


@FUZZ
@given(st.one_of(envelope_objects, json_values(st.sampled_from(ENVELOPE_KEYS))), numbers)
def test_json_envelope_decoder_raises_only_envelope_errors(value: Any, call_id: Any) -> None:
    try:
        envelope = from_json(value, call_id)
    except EnvelopeError:
        return
    if envelope.timeout is not None:
        assert 0 <= envelope.timeout <= 1e9


# -- the envelope, binary form --------------------------------------------------------------------

compact_publish_headers = st.builds(
    lambda hops, count, topic, ids, tail: (
        struct.pack(">BBH", hops, count, len(topic)) + topic + b"".join(ids) + tail
    ),
    st.integers(0, 255),
    st.integers(0, 4),
    st.binary(max_size=6),
    st.lists(st.binary(min_size=19, max_size=21), max_size=5),
    st.sampled_from([b"", b"\x01" * 96, b"\x01" * 95]),
)
headers = st.one_of(
    envelope_objects.map(lambda o: dumps(o).encode()),
    st.binary(max_size=30),
    st.just(b""),
    compact_publish_headers,
)
binary_frames = st.builds(
    lambda magic, kind, flags, call_id, seq, header, fix_length, length, payload: (
        struct.pack(
            ">BBBIIH",
            magic,
            kind,
            flags,
            call_id,
            seq,
            len(header) if fix_length else length,
        )
        + header
        + payload
    ),
    st.sampled_from([MAGIC, MAGIC, MAGIC, 0]),
    st.one_of(st.integers(0, 16), st.sampled_from([20, 21])),
    st.one_of(st.integers(0, 16), st.sampled_from([17, 19, 25]), st.integers(0, 255)),
    st.sampled_from([0, 1, 2**32 - 1]),
    st.sampled_from([0, 1, 7, 2**31 - 1, 2**31]),
    headers,
    st.booleans(),
    st.integers(0, 0xFFFF),
    st.binary(max_size=120),
)
binary_data = st.one_of(binary_frames, binary_frames.map(lambda b: b[: len(b) // 2]), st.binary())


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), binary_data, st.floats(0, 3)), max_size=25))
def test_binary_envelope_reader_raises_only_typed_errors_and_holds_within_caps(
    steps: list[tuple[str, bytes, float]],
) -> None:
    size, pending = 300, 3
    reader = BinaryReader(max_message_size=size, max_pending=pending, max_age=4.0)
    now = 0.0
    for key, data, elapsed in steps:
        now += elapsed
        try:
            envelope = reader.feed(key, data, now=now)
        except RemoteProtocolError:
            envelope = None
        if envelope is not None and envelope.timeout is not None:
            assert 0 <= envelope.timeout <= 1e9
        for k in "ab":
            assert reader.held_bytes(k) <= size * pending
        assert reader.held_bytes() == reader.held_bytes("a") + reader.held_bytes("b")
    reader.discard("a")
    reader.discard("b")
    assert reader.held_bytes() == 0


batches = st.one_of(
    st.lists(binary_frames, min_size=1, max_size=5).map(pack_batch),
    st.lists(binary_frames, min_size=1, max_size=5).map(lambda fs: pack_batch(fs)[:-3]),
    st.binary().map(lambda b: bytes((MAGIC, 14, 0)) + b),
    st.binary(),
)


@FUZZ
@given(batches)
def test_batch_reader_yields_whole_frames_then_raises_only_envelope_errors(data: bytes) -> None:
    frames: list[bytes] = []
    try:
        for frame in iter_batch(data):
            frames.append(frame)
    except EnvelopeError:
        pass
    else:
        assert frames and pack_batch(frames) == data  # what reads whole is what was packed
    assert all(f[0] == MAGIC and f[1] != 14 for f in frames)
    assert sum(map(len, frames)) <= len(data)


# -- tracker messages: what a tracker reads -------------------------------------------------------

binary_ids = st.one_of(
    st.binary(min_size=20, max_size=20).map(lambda b: b.decode("latin-1")),
    st.text(min_size=19, max_size=21),
)
descriptions = st.builds(
    lambda kind, sdp: {"type": kind, "sdp": sdp},
    st.sampled_from(["offer", "answer", "pranswer"]),
    st.text(max_size=20),
)
TRACKER_KEYS = [
    "action", "info_hash", "peer_id", "to_peer_id", "offer_id", "offers", "offer", "answer",
    "numwant", "uploaded", "downloaded", "left", "event", "trackerid", "interval",
    "min interval", "complete", "incomplete", "failure reason", "warning message", "tracker id",
    "files", "flags",
]  # fmt: skip
client_fields: dict[str, st.SearchStrategy[Any]] = {
    "action": st.sampled_from(["announce", "scrape", "other"]),
    "info_hash": st.one_of(binary_ids, st.lists(binary_ids, max_size=3)),
    "peer_id": binary_ids,
    "to_peer_id": binary_ids,
    "offer_id": binary_ids,
    "answer": descriptions,
    "offers": st.lists(
        objects({"offer": descriptions, "offer_id": binary_ids}, ["offer", "offer_id"]),
        max_size=4,
    ),
    "numwant": st.one_of(st.integers(-1, 60), huge_ints),
    "uploaded": numbers,
    "downloaded": numbers,
    "left": numbers,
    "event": st.sampled_from(["started", "stopped", "completed", "update", "", "bogus"]),
    "trackerid": st.text(max_size=5),
}
client_requests = objects(client_fields, TRACKER_KEYS)
text_or_bytes = st.one_of(st.text(max_size=40), st.binary(max_size=40))


@FUZZ
@given(
    st.lists(
        st.one_of(
            client_requests.map(dumps),
            client_requests.map(lambda o: dumps(o).encode()),
            text_or_bytes,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_tracker_reads_requests_raising_only_request_errors(requests: list[str | bytes]) -> None:
    swarms: Swarms[int] = Swarms(max_swarms=3, max_peers_per_swarm=3, max_info_hashes_per_socket=2)
    for conn, data in enumerate(requests):
        try:
            message = parse_client_message(data, max_offers=3)
        except TrackerRequestError as e:
            assert e.reason
            continue
        for _, reply in swarms.receive(conn % 2, message, float(conn)):
            encode_server_message(reply)  # whatever it answers can be written back
    assert swarms.stats().peers <= 9


# -- tracker messages: what a client reads --------------------------------------------------------

server_fields: dict[str, st.SearchStrategy[Any]] = {
    "action": st.sampled_from(["announce", "scrape", "other"]),
    "info_hash": binary_ids,
    "peer_id": binary_ids,
    "offer_id": binary_ids,
    "offer": descriptions,
    "answer": descriptions,
    "interval": numbers,
    "min interval": numbers,
    "complete": numbers,
    "incomplete": numbers,
    "failure reason": st.text(max_size=10),
    "warning message": st.text(max_size=10),
    "tracker id": st.text(max_size=5),
    "files": st.dictionaries(
        binary_ids,
        objects(
            {"complete": numbers, "incomplete": numbers, "downloaded": numbers},
            ["complete", "incomplete", "downloaded"],
        ),
        max_size=2,
    ),
    "flags": objects({"min_request_interval": numbers}, ["min_request_interval"]),
}
server_messages = objects(server_fields, TRACKER_KEYS)


@FUZZ
@given(
    st.one_of(
        server_messages.map(dumps), server_messages.map(lambda o: dumps(o).encode()), text_or_bytes
    )
)
def test_client_reads_tracker_messages_raising_only_tracker_errors(data: str | bytes) -> None:
    try:
        messages = parse_server_message(data)
    except TrackerProtocolError:
        return
    for message in messages:
        interval = getattr(message, "interval", None)
        if interval is not None:
            assert interval > 0


# -- what a JSON text holds once parsed, bounded before parsing ---------------------------------

wide_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "é", "Ā", "😀", '"', "\\", "{[,:", "\u2028"]
)


@FUZZ
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), numbers, wide_text),
        lambda children: st.one_of(
            st.lists(children, max_size=12),
            st.dictionaries(wide_text, children, max_size=8),
        ),
        max_leaves=60,
    ),
    st.booleans(),
    st.booleans(),
)
def test_the_estimate_before_parsing_is_never_below_what_the_value_holds(
    value: Any, ascii_only: bool, spaced: bool
) -> None:
    from p2prpc.wire.held import estimate_held, held_size

    separators = (", ", ": ") if spaced else (",", ":")
    text = json.dumps(value, ensure_ascii=ascii_only, separators=separators)
    held = held_size(json.loads(text))
    assert estimate_held(text) >= held
    assert estimate_held(text, within=0) >= held  # counted again, strings set aside


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.text(alphabet='"\\{}[],:a', min_size=100, max_size=700),
            st.dictionaries(st.text(alphabet='"\\{:', max_size=300), st.just({}), max_size=3),
            st.just([]),
        ),
        max_size=8,
    )
)
def test_long_strings_of_quotes_and_structure_still_count_at_least_what_is_held(
    value: Any,
) -> None:
    # Long strings of quotes, backslashes and structure: the second count runs on most of them.
    from p2prpc.wire.held import estimate_held, held_size

    text = json.dumps(value)
    assert estimate_held(text, within=0) >= held_size(json.loads(text))
