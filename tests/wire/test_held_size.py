"""``held_size`` counts what the object-at-a-time walk it replaced counts, for any JSON value."""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from p2prpc.wire.held import held_size


def walked(payload: Any) -> int:
    """Every object of a JSON value, one at a time: dicts give their keys and values, lists
    their items, each counted by ``sys.getsizeof`` as often as it appears."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return len(payload)
    total, stack = 0, [payload]
    while stack:
        item = stack.pop()
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return total


class Rows(list[object]):
    """A list subclass, as code may pass one."""


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(), inner, max_size=8),
    max_leaves=60,
)


@given(json_values)
def test_held_size_counts_every_object_of_a_json_value_once_each_time_it_appears(
    value: Any,
) -> None:
    assert held_size(value) == walked(value)
    parsed = json.loads(json.dumps(value))  # as a parse builds it: shared keys, small ints
    assert held_size(parsed) == walked(parsed)


def test_held_size_of_the_dearest_shapes_and_of_deep_nesting() -> None:
    for value in (
        [[] for _ in range(20_000)],
        [{} for _ in range(20_000)],
        json.loads("[" * 400 + "]" * 400),
        json.loads('{"a":' * 400 + "1" + "}" * 400),
        {"k": [{"a": [1, "2", None, True, 1.5, {}]}] * 50},
        b"bytes",
        "text",
        # What code (not a parse) may pass: subclasses, tuples, keys that are not strings.
        OrderedDict(a=[1, 2, 3] * 100),
        {"k": Rows([{"a": "b" * 50}] * 20)},
        [("a", "b"), {1: "one", 2: ["two"]}],
        {1: "one", 2: ["two"], 3: {4: None}},
    ):
        assert held_size(value) == walked(value)
