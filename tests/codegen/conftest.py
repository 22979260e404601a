"""Fixtures for the codegen tests (helpers in ``codegen_support``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from codegen_support import TEST_PROTOS, compile_descriptors, proto_names
from google.protobuf.descriptor_pb2 import FileDescriptorSet

from p2prpc.codegen import generate


@pytest.fixture(scope="session")
def descriptors(tmp_path_factory: pytest.TempPathFactory) -> FileDescriptorSet:
    """The test protos as a descriptor set with source info (comments)."""
    out = tmp_path_factory.mktemp("descriptors")
    return compile_descriptors(TEST_PROTOS, proto_names(TEST_PROTOS), out)


@pytest.fixture(scope="session")
def cases_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test protos compiled by protoc with the installed plugin, as ``make gen`` would."""
    out = tmp_path_factory.mktemp("test-protos-out")
    names = [str(TEST_PROTOS / name) for name in proto_names(TEST_PROTOS)]
    assert generate(names, include=[str(TEST_PROTOS)], out=str(out)) == 0
    return out
