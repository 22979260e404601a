"""What received JSON holds: the measure (``held_size``), the bound computed before parsing
(``estimate_held``), the per-peer and total byte budget, and the reassembler refusing a JSON
message too large parsed before it parses it."""

from __future__ import annotations

import gc
import json
import tracemalloc

import pytest

from p2prpc.errors import MessageTooBig, ParsedTooBig
from p2prpc.wire.frames import Frame, Reassembler, encode_message
from p2prpc.wire.held import ByteBudget, estimate_held, held_size

N = 20_000

#: Texts a peer may send to make a parse hold as much as it can, and a few ordinary ones.
SHAPES = {
    "empty objects": "[" + ",".join(["{}"] * N) + "]",
    "empty arrays": "[" + ",".join(["[]"] * N) + "]",
    "one-key objects": "[" + ",".join(['{"a":0}'] * N) + "]",
    "distinct keys": "[" + ",".join(f'{{"{i}":0}}' for i in range(N)) + "]",
    "eight-key objects": "["
    + ",".join(['{"a":0,"b":0,"c":0,"d":0,"e":0,"f":0,"g":0,"h":0}'] * N)
    + "]",
    "empty strings": "[" + ",".join(['""'] * N) + "]",
    "short strings": "[" + ",".join([f'"{i}"' for i in range(N)]) + "]",
    "floats": "[" + ",".join(["1.5"] * N) + "]",
    "ints": "[" + ",".join(str(i * 7919) for i in range(N)) + "]",
    "nested arrays": "[" * 500 + "]" * 500,
    "nested objects": '{"a":' * 500 + "1" + "}" * 500,
    "astral escape widens a string": '["' + "a" * N + '\\ud83d\\ude00"]',
    "latin-1 text": '["' + "é" * N + '"]',
    "a huge int": "[" + "9" * 4000 + "]",
    "one big object": "{" + ",".join(f'"k{i}":{i}' for i in range(N)) + "}",
    "whitespace": '[ {} , { "a" : [ ] } , [ ] , "x" ]',
    "an envelope": json.dumps(
        {"call": "/grpc.health.v1.Health/Watch", "msg": {"service": "x" * 100}, "timeout": 5}
    ),
    "braces inside strings": json.dumps(["inside strings", "{[,:" * 1000, '"\\"' * 100]),
    "escaped quotes and backslashes": json.dumps(["inside strings", '\\"{:' * 500, "\\" * 99]),
    "colons in strings": json.dumps(
        {"inside strings": ["v=0\r\na=fingerprint:sha-256 " + "AB:" * 31 + "a=ice:x\r\n" * 60] * 20}
    ),
}


@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_the_estimate_is_never_below_what_the_parsed_value_holds(text: str) -> None:
    value = json.loads(text)
    estimate, held = estimate_held(text), held_size(value)
    assert estimate >= held
    if "inside strings" not in text:  # (what strings hold counts as if it opened values)
        assert estimate <= 3 * held + 1000  # not so far above that ordinary messages are refused


@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_counted_again_past_a_limit_the_estimate_counts_only_structure(text: str) -> None:
    # Past the caller's limit the text is counted again with its strings set aside: still never
    # below what the parse holds, and now close to it even when strings are full of : , { [.
    value = json.loads(text)
    refined, held = estimate_held(text, within=0), held_size(value)
    assert held <= refined <= estimate_held(text)
    assert refined <= 3 * held + 1000


def test_a_string_that_never_ends_is_counted_as_its_characters() -> None:
    # Malformed text gets a number (the parser refuses it after), never less than the quick count
    # says its structure outside the last quote could hold.
    text = '[{},{},"' + "{:" * 1000
    assert estimate_held(text, within=0) >= len(text)


@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_held_size_is_at_least_what_the_parse_really_allocates(text: str) -> None:
    json.loads(text)  # once untraced: what the parser sets up once is no cost of this value
    gc.collect()
    tracemalloc.start()
    try:
        value = json.loads(text)
        allocated, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Less the list that holds the value and rounding (1000), and what the allocator's state
    # adds to a parse's own (free lists empty or full after the tests before it: 0.5 %).
    assert held_size(value) >= allocated * 0.995 - 1000


def test_held_size_counts_bytes_as_their_length() -> None:
    assert held_size(b"x" * 100) == 100
    assert held_size(memoryview(b"x" * 7)) == 7


def test_the_reassembler_refuses_a_json_message_too_large_parsed_without_parsing_it() -> None:
    text = "[" + ",".join(["{}"] * 100_000) + "]"  # 300 KB of text, 7 MB parsed
    budget = 1_000_000
    reassembler = Reassembler(max_parsed_size=budget)
    chunks = encode_message(json.loads(text), 150_001, chunk_length=16_000)
    frames = [json.loads(c[1:]) for c in chunks]
    gc.collect()
    tracemalloc.start()
    try:
        with pytest.raises(ParsedTooBig) as caught:
            for f in frames:
                reassembler.feed(
                    "peer", Frame(f["id"], f["msg"], f["c"], bool(f.get("last")), True), 0.0
                )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = caught.value
    assert isinstance(error, MessageTooBig)  # a size cap: RESOURCE_EXHAUSTED on a call
    assert error.message_id == 150_001
    assert error.estimate > budget == error.budget
    assert peak < 4 * len(text)  # the chunks and their joined text; never the 7 MB parse
    assert reassembler.held_bytes == 0 and reassembler.pending == 0
    # Within the budget the same reassembler parses as before.
    small = encode_message([{}] * 100, 150_002)
    f = json.loads(small[0][1:])
    message = reassembler.feed("peer", Frame(f["id"], f["msg"], 0, True, True), 0.0)
    assert message is not None and message.value == [{}] * 100


def test_a_string_message_is_never_estimated() -> None:
    reassembler = Reassembler(max_parsed_size=10)
    message = reassembler.feed("peer", Frame(1, "[{}]" * 100, 0, True, False), 0.0)
    assert message is not None and message.value == "[{}]" * 100


def test_the_byte_budget_refuses_past_either_cap_and_takes_nothing() -> None:
    budget = ByteBudget(per_key=100, total=150)
    assert budget.take("a", 60) and budget.take("a", 40)
    assert not budget.take("a", 1)  # a's cap
    assert budget.take("b", 50)
    assert not budget.take("c", 1)  # the total
    assert (budget.held("a"), budget.held("b"), budget.held()) == (100, 50, 150)
    budget.give_back("a", 100)
    assert budget.held("a") == 0 and budget.held() == 50
    assert budget.take("c", 100)
