"""Fuzzing what a node reads from peers above the envelope: hellos and protobuf payloads.

Only the library's typed errors may escape (``RpcError`` with INVALID_ARGUMENT or
RESOURCE_EXHAUSTED for payloads; nothing for hellos, which are read leniently), and the size cap
holds for every payload that is accepted.
"""

from __future__ import annotations

import os
from typing import Any

from google.protobuf.descriptor_pb2 import FileDescriptorProto
from google.protobuf.struct_pb2 import Struct
from hypothesis import given, settings
from hypothesis import strategies as st

from p2prpc.errors import RpcError
from p2prpc.node import PeerInfo
from p2prpc.wire.payload import MessageCodec
from p2prpc.wire.status import StatusCode

FUZZ = settings.get_profile(os.environ.get("P2PRPC_FUZZ_PROFILE", "fuzz-ci"))

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(2**64)]),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(["name", "package", "messageType", "field", "number", "fields"]),
                st.text(max_size=8),
            ),
            children,
            max_size=5,
        ),
    ),
    max_leaves=20,
)
HELLO_KEYS = ["v", "binary", "services", "topics", "encodings", "keepalive", "relay"]
MAX = 4096


@FUZZ
@given(st.dictionaries(st.one_of(st.sampled_from(HELLO_KEYS), st.text(max_size=6)), json_values))
def test_any_hello_reads_without_error(hello: dict[str, Any]) -> None:
    info = PeerInfo.from_hello("ab" * 20, hello)
    assert all(isinstance(name, str) for name in info.services | info.topics | info.encodings)
    assert isinstance(info.version, int) and isinstance(info.binary, bool)


@FUZZ
@given(st.one_of(st.binary(max_size=2 * MAX), json_values))
def test_any_payload_decodes_or_is_a_typed_status(payload: Any) -> None:
    for message_type in (FileDescriptorProto, Struct):
        try:
            message = MessageCodec(message_type).decode(payload, MAX)
        except RpcError as error:
            assert error.code() in (StatusCode.INVALID_ARGUMENT, StatusCode.RESOURCE_EXHAUSTED)
        else:
            assert message.ByteSize() <= MAX
