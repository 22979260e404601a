"""Cost properties of every decoder of what a peer or a tracker client sends.

For random input, shaped to cost the most per byte (runs of the cheapest-to-write, dearest-to-read
units: empty JSON lists, unknown protobuf fields, compressible payloads) as well as arbitrary
bytes, each decoder must stay within the cost model:

- memory: the peak ``tracemalloc`` sees during the call, what it returns included, is at most
  ``4 ×`` the input's bytes plus :data:`CONSTANT`. JSON texts whose legitimate forms are small
  (a binary envelope's header, a tracker message, a P2PT frame's keys) are held to that too: they
  are measured before parsing and refused past :func:`~p2prpc.wire.held.parse_refusal`'s bound.
  A P2PT message marked as JSON (and a JSON payload read from one) may parse to far more than its
  text (a legitimate 4 MiB message to some 100 MiB), so its parse is a transient of one message
  at a time: the peak may pass that bound by the message's
  :func:`~p2prpc.wire.held.estimate_held`, no more, and a message whose estimate is over the
  reassembler's ``max_parsed_size`` is refused unparsed (the bound holds without the transient);
- CPU: ``time.process_time`` of the call (the least of 3 runs, each repeated until it is long
  enough to time) is at most :data:`CPU_FACTOR` times the same decoder's on a plain input of the
  same size (a string or bytes field, uncompressed), measured alongside.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import zstandard
from google.protobuf.wrappers_pb2 import StringValue
from hypothesis import given, settings
from hypothesis import strategies as st

from p2prpc.errors import ParsedTooBig, RemoteProtocolError, RpcError, TrackerRequestError
from p2prpc.wire.compression import decompress
from p2prpc.wire.envelope import (
    BinaryReader,
    Envelope,
    Kind,
    from_json,
    iter_batch,
    pack_batch,
    to_binary,
)
from p2prpc.wire.frames import MAX_PARSED_SIZE, Reassembler, decode_frame, encode_message
from p2prpc.wire.held import estimate_held
from p2prpc.wire.payload import MessageCodec
from p2prpc.wire.tracker import parse_client_message

_PROFILE = os.environ.get("P2PRPC_FUZZ_PROFILE", "fuzz-ci")
# Each example is timed several times: `make test` runs a sample of them, `make fuzz` all.
_BASE = settings.get_profile(_PROFILE)
FUZZ = settings(_BASE, max_examples=24) if _PROFILE == "fuzz-ci" else _BASE

MEMORY_FACTOR = 4
#: Memory any call may take whatever its input: small objects, a decoder's own state.
CONSTANT = 64 * 1024
#: Generous, so that a loaded machine does not make the test flake; amplifications found so far
#: are larger.
CPU_FACTOR = 50
#: Timings shorter than this are repeated until they are this long.
MIN_TIMING = 0.002
MAX_SIZE = 1 << 20

EXPECTED = (RemoteProtocolError, RpcError, TrackerRequestError)


def peak_memory(decode: Callable[[], Any]) -> int:
    """Bytes allocated at the peak of ``decode()``, what it returns still held.

    No ``gc.collect()`` first: only what is allocated after the start is traced, so garbage left
    before cannot count, and a full collection costs as much as the whole session holds (late in
    a suite run, most of this test's time). ``decode()`` runs once untraced first, so that what a
    codec sets up once for the process (zstd's stream buffers on its first streamed frame) is not
    counted against the input that happens to come first."""
    with contextlib.suppress(EXPECTED):
        decode()
    tracemalloc.start()
    try:
        result = decode()
        _, peak = tracemalloc.get_traced_memory()
        del result
    except EXPECTED:
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def cpu_time(decode: Callable[[], Any]) -> float:
    """Seconds of CPU one ``decode()`` takes: the least of 3 timings. The objects alive before
    are frozen out of the collector meanwhile: a collection the decode's own objects set off
    would otherwise also walk everything the test process holds (every module loaded), a cost
    of this process's size, not of the input's."""
    gc.collect()
    gc.freeze()
    try:
        return _least_of_three(decode)
    finally:
        gc.unfreeze()


def _least_of_three(decode: Callable[[], Any]) -> float:
    def once() -> None:
        with contextlib.suppress(EXPECTED):
            decode()

    repeat = 1
    while True:
        started = time.process_time()
        for _ in range(repeat):
            once()
        took = time.process_time() - started
        if took >= MIN_TIMING or repeat >= 1024:
            break
        repeat *= 4
    best = took
    for _ in range(2):
        started = time.process_time()
        for _ in range(repeat):
            once()
        best = min(best, time.process_time() - started)
    return best / repeat


def check(
    size: int, decode: Callable[[], Any], baseline: Callable[[], Any], transient: int = 0
) -> None:
    """``decode()`` of ``size`` bytes of input within the model; ``transient``: the estimate of
    the one JSON message it parses whole, when it parses one."""
    peak = peak_memory(decode)
    assert peak <= MEMORY_FACTOR * size + CONSTANT + transient, (
        f"{peak} bytes at the peak for {size} bytes of input"
        + (f" and a {transient}-byte parse" if transient else "")
    )
    cost, plain = cpu_time(decode), cpu_time(baseline)
    assert cost <= CPU_FACTOR * max(plain, 1e-5), (
        f"{cost * 1e6:.0f} µs for {size} bytes, ×{cost / max(plain, 1e-5):.0f} a plain parse's"
    )


# -- inputs ---------------------------------------------------------------------------------------

#: Units that cost a JSON reader the most for their size, and some ordinary ones.
JSON_UNITS = ["[],", "{},", "0,", '"",', '{"a":[]},', '"abcdefgh",', "1e5,", "[[[[]]]],"]


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """A JSON array of one unit repeated, up to about 64 KiB."""
    unit = draw(st.sampled_from(JSON_UNITS))
    count = draw(st.integers(0, (64 * 1024) // len(unit)))
    return "[" + (unit * count)[:-1] + "]"


#: Protobuf units: unknown varint fields, unknown empty length-delimited, a known string.
PROTO_UNITS = [b"\x78\x00", b"\x7a\x00", b"\x0a\x00", b"\x78\xff\xff\xff\xff\x0f", b"\x0a\x01x"]


@st.composite
def proto_payloads(draw: st.DrawFn) -> bytes:
    unit = draw(st.sampled_from(PROTO_UNITS))
    count = draw(st.integers(0, (64 * 1024) // len(unit)))
    return unit * count


# -- P2PT frames and their reassembly, the JSON envelope decoder -----------------------------------


def reassemble(frames: list[str], max_parsed_size: int = MAX_PARSED_SIZE) -> Any:
    reassembler = Reassembler(max_message_length=2 * MAX_SIZE, max_parsed_size=max_parsed_size)
    message = None
    for frame in frames:
        decoded = decode_frame(frame)
        if decoded is not None:
            message = reassembler.feed("peer", decoded, 0.0)
    return message


def transient(frames: list[str], max_parsed_size: int = MAX_PARSED_SIZE) -> int:
    """What parsing the message these frames carry may hold for a moment: its text's estimate
    when the reassembler parses it, 0 when it refuses it unparsed (and then says so)."""
    text = "".join(json.loads(frame[1:])["msg"] for frame in frames)
    estimate = estimate_held(text)
    if estimate <= max_parsed_size:
        return estimate
    with pytest.raises(ParsedTooBig):
        reassemble(frames, max_parsed_size)
    return 0


@FUZZ
@given(json_texts(), st.booleans())
def test_decoding_a_p2pt_frame_costs_within_the_model(junk: str, first: bool) -> None:
    """A frame's keys besides ``msg``, parsed then dropped, in P2PT's key order or another."""
    keys = '"id":1,"msg":"hi","c":0'
    frame = "^{" + (f'"junk":{junk},{keys}' if first else f'{keys},"junk":{junk}') + "}"
    plain = '^{"id":1,"msg":"' + "x" * len(junk) + '","c":0}'
    check(len(frame.encode()), lambda: decode_frame(frame), lambda: decode_frame(plain))


#: Budgets for one message's parse: the default, and ones that the inputs here pass.
parse_budgets = st.sampled_from([MAX_PARSED_SIZE, 256 * 1024, 16 * 1024])


@FUZZ
@given(json_texts(), parse_budgets)
def test_reassembling_a_p2pt_message_costs_within_the_model(text: str, budget: int) -> None:
    frames = encode_message(json.loads(text), 123456)
    plain = encode_message({"pad": "x" * max(len(text) - 10, 0)}, 123456)
    size = sum(len(f.encode()) for f in frames)
    check(
        size,
        lambda: reassemble(frames, budget),
        lambda: reassemble(plain),
        transient(frames, budget),
    )


@FUZZ
@given(json_texts(), st.sampled_from(["call", "msg", "reply", "pub", "hello"]), parse_budgets)
def test_reading_a_json_envelope_costs_within_the_model(text: str, kind: str, budget: int) -> None:
    """The whole path of a JSON envelope: the P2PT frames, the JSON text, the envelope."""
    values: dict[str, Any] = {
        "call": {"call": "/a.B/C", "msg": {"junk": json.loads(text)}},
        "msg": {"msg": {"junk": json.loads(text)}, "seq": 0},
        "reply": {"reply": {"junk": json.loads(text)}, "seq": 0},
        "pub": {"pub": "t", "msg": {"junk": json.loads(text)}, "seq": 0, "hops": 1},
        "hello": {"hello": {"v": 1, "junk": json.loads(text)}},
    }
    frames = encode_message(values[kind], 123456)
    plain = encode_message({**values[kind], "pad": "x" * len(text)} | _no_junk(kind), 123456)
    size = sum(len(f.encode()) for f in frames)

    def read(frames: list[str], budget: int = MAX_PARSED_SIZE) -> Any:
        message = reassemble(frames, budget)
        return from_json(message.value, message.id)

    check(size, lambda: read(frames, budget), lambda: read(plain), transient(frames, budget))


def _no_junk(kind: str) -> dict[str, Any]:
    return {
        "call": {"msg": {}},
        "msg": {"msg": {}},
        "reply": {"reply": {}},
        "pub": {"msg": {}},
        "hello": {"hello": {"v": 1}},
    }[kind]


# -- binary frames and batches --------------------------------------------------------------------

kinds = st.sampled_from(
    [Kind.CALL, Kind.MSG, Kind.REPLY, Kind.STATUS, Kind.HEADERS, Kind.HELLO, Kind.PUBLISH]
)


def binary_frames(kind: Kind, payload: bytes, header: str) -> list[bytes]:
    env: dict[Kind, Envelope] = {
        Kind.CALL: Envelope(Kind.CALL, 7, method="/a.B/C", payload=payload, has_payload=True),
        Kind.MSG: Envelope(Kind.MSG, 7, payload=payload, has_payload=True),
        Kind.REPLY: Envelope(Kind.REPLY, 7, payload=payload, has_payload=True),
        Kind.PUBLISH: Envelope(
            Kind.PUBLISH, 7, payload=payload, has_payload=True, topic="t", origin="a" * 40
        ),
    }
    if kind in env:
        return to_binary(env[kind])
    # Kinds whose cost is their JSON header: a header of the text given, up to 64 KiB.
    import struct

    raw = json.dumps({kind.name.lower(): {"junk": json.loads(header)}}).encode()[:0xFFFF]
    return [struct.pack(">BBBIIH", 0xB7, kind, 0, 7, 0, len(raw)) + raw]


def read_binary(frames: list[bytes]) -> Any:
    reader = BinaryReader(max_message_size=2 * MAX_SIZE)
    out = None
    for frame in frames:
        out = reader.feed("peer", frame, 0.0)
    return out


@FUZZ
@given(kinds, proto_payloads(), json_texts().filter(lambda t: len(t) < 60_000))
def test_reading_binary_frames_costs_within_the_model(
    kind: Kind, payload: bytes, header: str
) -> None:
    """The plain input beside it is the same kind of frame: a payload of zero bytes for the kinds
    that carry one, a header whose junk is one string for those whose cost is their header."""
    frames = binary_frames(kind, payload, header)
    size = sum(map(len, frames))
    plain = binary_frames(kind, b"\0" * len(payload), json.dumps("x" * max(len(header) - 2, 0)))
    check(size, lambda: read_binary(frames), lambda: read_binary(plain))


@FUZZ
@given(st.lists(st.binary(min_size=0, max_size=2000), max_size=16))
def test_reading_a_batch_costs_within_the_model(payloads: list[bytes]) -> None:
    frames = [
        to_binary(Envelope(Kind.MSG, 7, i, payload=p, has_payload=True))[0]
        for i, p in enumerate(payloads)
    ]
    batch = pack_batch(frames)
    plain = pack_batch(
        [
            to_binary(Envelope(Kind.PONG, 7, payload=b"\0" * len(p), has_payload=True))[0]
            for p in payloads
        ]
    )

    def read(batch: bytes) -> Any:
        reader = BinaryReader()
        return [reader.feed("peer", frame, 0.0) for frame in iter_batch(batch)]

    check(len(batch), lambda: read(batch), lambda: read(plain))


# -- tracker requests -----------------------------------------------------------------------------


@FUZZ
@given(json_texts().filter(lambda t: len(t) < 100_000), st.integers(0, 10))
def test_reading_a_tracker_request_costs_within_the_model(junk: str, offers: int) -> None:
    request = {
        "action": "announce",
        "info_hash": "i" * 20,
        "peer_id": "p" * 20,
        "numwant": 10,
        "offers": [
            {"offer": {"type": "offer", "sdp": "v=0"}, "offer_id": "o" * 20} for _ in range(offers)
        ],
        "junk": json.loads(junk),
    }
    data = json.dumps(request)
    plain = json.dumps({**request, "junk": "x" * len(junk)})
    check(
        len(data.encode()),
        lambda: parse_client_message(data),
        lambda: parse_client_message(plain),
    )


# -- payloads, compressed or not ------------------------------------------------------------------


def compressed(encoding: str, data: bytes) -> bytes:
    if encoding == "deflate":
        return zlib.compress(data, 9)
    return zstandard.ZstdCompressor(level=19).compress(data)


@FUZZ
@given(proto_payloads(), st.sampled_from([None, "deflate", "zstd"]))
def test_decoding_a_payload_costs_within_the_model(data: bytes, encoding: str | None) -> None:
    codec = MessageCodec(StringValue)
    wire = data if encoding is None else compressed(encoding, data)
    plain = StringValue(value="x" * max(len(wire) - 4, 0)).SerializeToString()

    def decode() -> Any:
        payload = wire if encoding is None else decompress(encoding, wire, MAX_SIZE)
        return codec.decode(payload, MAX_SIZE)

    check(len(wire), decode, lambda: codec.decode(plain, MAX_SIZE))


@FUZZ
@given(json_texts(), parse_budgets)
def test_decoding_a_json_payload_costs_within_the_model(text: str, budget: int) -> None:
    codec = MessageCodec(StringValue)
    frames = encode_message({"value": "v", "junk": json.loads(text)}, 1)
    plain = encode_message({"value": "x" * len(text)}, 1)

    def decode(frames: list[str], budget: int = MAX_PARSED_SIZE) -> Any:
        return codec.decode(reassemble(frames, budget).value, MAX_SIZE)

    size = sum(len(f.encode()) for f in frames)
    check(size, lambda: decode(frames, budget), lambda: decode(plain), transient(frames, budget))
