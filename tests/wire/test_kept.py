"""What a node keeps of a received JSON payload until it is read: decoded at once into the message
its reader expects, or compact text parsed again when read; never the parsed value."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import Int64Value, StringValue
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.errors import RpcError
from p2prpc.wire.held import held_size
from p2prpc.wire.payload import (
    Decoded,
    JSONCodec,
    JSONText,
    MessageCodec,
    decode,
    keep,
    kept_size,
)
from p2prpc.wire.status import StatusCode

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(JSON)
def test_json_text_gives_back_the_value_it_kept(value: Any) -> None:
    assert JSONText(value).value() == value


def test_json_text_keeps_what_parsing_gave_even_unusual_values() -> None:
    text = '["\\ud800", NaN, -0.0, 123456789012345678901234567890, {"k": "\\u00e9\\ud83d\\ude00"}]'
    value = json.loads(text)
    again = JSONText(value).value()
    assert again[0] == "\ud800" and math.isnan(again[1])
    assert math.copysign(1, again[2]) == -1 and again[3:] == value[3:]


def test_json_text_holds_about_the_text_not_the_parsed_value() -> None:
    text = json.dumps([{}] * 10_000)
    value = json.loads(text)
    kept = JSONText(value)
    assert kept.size() <= len(text) + 200  # about what was sent
    assert held_size(value) > 20 * kept.size()  # what parsing holds
    assert kept_size(kept) == kept.size()


def test_a_message_codec_keeps_the_decoded_message() -> None:
    codec = MessageCodec(StringValue)
    kept = keep("x" * 1000, codec, 10_000)
    assert isinstance(kept, Decoded)
    assert kept_size(kept) < 1200
    assert codec.decode(kept, 10_000) == StringValue(value="x" * 1000)
    # A reader of another type reads it by its proto3 JSON, as it would have read the payload.
    assert MessageCodec(Int64Value).decode(keep("7", MessageCodec(Int64Value), 100), 100).value == 7


@pytest.mark.parametrize(
    ("payload", "max_size", "code"),
    [
        ({"value": [{}] * 1000}, 10_000, StatusCode.INVALID_ARGUMENT),
        ("x" * 2000, 1000, StatusCode.RESOURCE_EXHAUSTED),
    ],
)
def test_a_payload_that_does_not_decode_keeps_only_its_status(
    payload: Any, max_size: int, code: StatusCode
) -> None:
    codec = MessageCodec(StringValue)
    with pytest.raises(RpcError) as direct:
        codec.decode(payload, max_size)
    kept = keep(payload, codec, max_size)
    assert kept_size(kept) < 1200
    with pytest.raises(RpcError) as later:
        codec.decode(kept, max_size)
    assert later.value.code() is direct.value.code() is code
    assert later.value.details() == direct.value.details()[:1024]
    assert later.value.__cause__ is None  # nothing that would keep the parsed value alive


def test_json_and_other_codecs_read_kept_text_as_the_value() -> None:
    value = {"a": [1, 2, {"b": None}]}

    class Upper:
        def encode(self, value: Any, binary: bool, max_size: int) -> Any:
            return value

        def decode(self, payload: Any, max_size: int) -> Any:
            return json.dumps(payload).upper()

    kept = keep(value, JSONCodec(), 1000)
    assert isinstance(kept, JSONText)
    assert JSONCodec().decode(kept, 1000) == value
    assert decode(Upper(), kept, 1000) == json.dumps(value).upper()
    assert keep(b"bytes", MessageCodec(StringValue), 1000) == b"bytes"
