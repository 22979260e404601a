"""Helpers for the codegen tests: test protos compiled to descriptors, and generated modules.

``tests/codegen/protos/`` holds protos written to exercise the plugin (no package, nested
packages, imports across files, nested and well-known types, Python keywords, every call shape,
editions, topics); ``protos/`` at the root holds the examples whose output is committed in
``generated/``, and ``protos/p2prpc/`` the options compiled into the package.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.compiler.plugin_pb2 import CodeGeneratorRequest
from google.protobuf.descriptor_pb2 import FileDescriptorSet

from p2prpc.codegen.protoc import options_include, well_known_include

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "protos"
GENERATED = ROOT / "generated"
TEST_PROTOS = Path(__file__).resolve().parent / "protos"
GOLDEN = Path(__file__).resolve().parent / "golden"
PACKAGE = ROOT / "p2prpc"
OPTIONS_PROTOS = EXAMPLES / "p2prpc"
"""The protos compiled into the package (``p2prpc.options_pb2``) rather than into ``generated/``."""


def proto_names(root: Path, exclude: Path | None = None) -> list[str]:
    """The ``.proto`` files under ``root`` (but not under ``exclude``), as protoc names them
    (relative, ``/``-separated)."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*.proto")
        if exclude is None or not path.is_relative_to(exclude)
    )


def compile_descriptors(root: Path, names: Sequence[str], out: Path) -> FileDescriptorSet:
    """Compile ``names`` (relative to ``root``) with every import and source info, as protoc hands
    them to a plugin."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    target = out / "descriptors.binpb"
    status = protoc.main(
        [
            "protoc",
            f"--proto_path={root}",
            f"--proto_path={options_include()}",
            f"--proto_path={well_known_include()}",
            f"--descriptor_set_out={target}",
            "--include_imports",
            "--include_source_info",
            *(str(root / name) for name in names),
        ]
    )
    assert status == 0, f"protoc failed on {names}"
    return FileDescriptorSet.FromString(target.read_bytes())


def make_request(
    descriptors: FileDescriptorSet, to_generate: Sequence[str], parameter: str = ""
) -> CodeGeneratorRequest:
    """The request protoc would send for ``to_generate``: those files and all they import."""
    request = CodeGeneratorRequest(file_to_generate=to_generate, parameter=parameter)
    # protoc lists every file after the files it imports, which --include_imports also does.
    request.proto_file.extend(descriptors.file)
    return request


def ruff_format(directory: Path) -> None:
    """Format ``directory`` as ``make gen`` formats ``generated/`` and the package's
    ``options_pb2`` (protoc's own modules need it)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--quiet",
            "--no-cache",
            "--config",
            str(ROOT / "pyproject.toml"),
            str(directory),
        ],
        check=True,
    )
