"""The plugin as a pure function: CodeGeneratorRequest in, files (or an error) out.

The exact text of every module generated from ``tests/codegen/protos/`` is pinned by golden files in
``tests/codegen/golden/``. After an intended change to the output, rewrite them with

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/codegen

and review the diff.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from codegen_support import (
    GOLDEN,
    ROOT,
    TEST_PROTOS,
    compile_descriptors,
    make_request,
    proto_names,
)
from google.protobuf.compiler.plugin_pb2 import CodeGeneratorResponse
from google.protobuf.descriptor_pb2 import Edition, FileDescriptorSet
from hypothesis import given, settings
from hypothesis import strategies as st

from p2prpc.codegen import render
from p2prpc.codegen.source import LINE_LENGTH, ImportStatement, docstring_lines, import_lines
from p2prpc.codegen.symbols import module_alias, module_import

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def rendered(descriptors: FileDescriptorSet) -> dict[str, str]:
    response = render(make_request(descriptors, proto_names(TEST_PROTOS)))
    assert not response.error
    return {file.name: file.content for file in response.file}


def render_proto(tmp_path: Path, text: str, name: str = "t.proto") -> CodeGeneratorResponse:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return render(make_request(compile_descriptors(tmp_path, [name], tmp_path), [name]))


# --- golden files -------------------------------------------------------------------------------


def test_golden_files_are_the_output(descriptors: FileDescriptorSet) -> None:
    files = rendered(descriptors)
    if UPDATE:
        for old in GOLDEN.rglob("*.py"):
            old.unlink()
        for name, content in files.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_text(content, encoding="utf-8", newline="\n")
    golden = {path.relative_to(GOLDEN).as_posix() for path in GOLDEN.rglob("*.py")}
    assert golden == set(files), "UPDATE_GOLDEN=1 regenerates the golden files"
    for name, content in files.items():
        expected = (GOLDEN / name).read_text(encoding="utf-8")
        assert content == expected, f"{name} differs from its golden copy (UPDATE_GOLDEN=1)"


def test_golden_set_covers_the_cases() -> None:
    names = {path.relative_to(GOLDEN).as_posix() for path in GOLDEN.rglob("*.py")}
    # A file without services or topics gets no module; a dashed name becomes an underscore.
    assert names == {
        "bare_p2prpc.py",
        "editions_p2prpc.py",
        "lobby_p2prpc.py",
        "acme/v1/events_p2prpc.py",
        "acme/v1/shop_p2prpc.py",
        "acme/v1/shop_admin_p2prpc.py",
        "org/example/very/long/package_name/v1beta2/storage_service_with_a_long_file_name_p2prpc.py",
        "org/example/very/long/package_name/v1beta2/table_change_stream_with_a_long_file_name_p2prpc.py",
    }


def test_protoc_runs_the_plugin_to_the_same_files(
    descriptors: FileDescriptorSet, cases_out: Path
) -> None:
    """The installed plugin, run by protoc, writes exactly what render() returns."""
    for name, content in rendered(descriptors).items():
        assert (cases_out / name).read_text(encoding="utf-8") == content
    written = {p.relative_to(cases_out).as_posix() for p in cases_out.rglob("*.py")}
    assert {name for name in written if name.endswith("_p2prpc.py")} == set(rendered(descriptors))


def test_output_is_deterministic(descriptors: FileDescriptorSet) -> None:
    first = render(make_request(descriptors, proto_names(TEST_PROTOS)))
    again = render(make_request(descriptors, list(reversed(proto_names(TEST_PROTOS)))))
    assert {f.name: f.content for f in first.file} == {f.name: f.content for f in again.file}
    assert first.SerializeToString(deterministic=True) == render(
        make_request(descriptors, proto_names(TEST_PROTOS))
    ).SerializeToString(deterministic=True)


# --- what the response declares -----------------------------------------------------------------


def test_supports_proto3_optional_and_editions(descriptors: FileDescriptorSet) -> None:
    response = render(make_request(descriptors, ["editions.proto"]))
    assert response.supported_features == (
        CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
        | CodeGeneratorResponse.FEATURE_SUPPORTS_EDITIONS
    )
    assert response.minimum_edition == Edition.EDITION_PROTO2
    assert response.maximum_edition >= Edition.EDITION_2023
    assert [file.name for file in response.file] == ["editions_p2prpc.py"]


def test_only_requested_files_are_generated(descriptors: FileDescriptorSet) -> None:
    response = render(make_request(descriptors, ["acme/v1/shop-admin.proto"]))
    assert [file.name for file in response.file] == ["acme/v1/shop_admin_p2prpc.py"]


def test_a_file_without_services_or_topics_gets_no_module(descriptors: FileDescriptorSet) -> None:
    response = render(make_request(descriptors, ["acme/v1/common.proto"]))
    assert not response.error
    assert list(response.file) == []


# --- names ---------------------------------------------------------------------------------------


def test_keyword_method_names_get_an_underscore_and_keep_their_route(
    descriptors: FileDescriptorSet,
) -> None:
    content = rendered(descriptors)["bare_p2prpc.py"]
    assert "self.None_: p2prpc.rpc.UnaryUnaryMethod[" in content
    assert '"/Echo/None",' in content
    assert "async def class_(" in content
    assert "def print(" in content  # a builtin, not a keyword
    assert "class importStub:" in content
    assert 'SERVICES = ("Echo", "import", "Nothing")' in content


def test_message_classes_are_named_through_their_module(
    descriptors: FileDescriptorSet,
) -> None:
    content = rendered(descriptors)["acme/v1/shop_admin_p2prpc.py"]
    assert "from acme.v1 import common_pb2 as acme_dot_v1_dot_common__pb2" in content
    assert "from acme.v1 import shop_admin_pb2 as acme_dot_v1_dot_shop__admin__pb2" in content
    assert "acme_dot_v1_dot_common__pb2.Outer.Inner.Deepest," in content
    assert '"/acme.v1.admin.Admin/Reprice",' in content
    assert 'node.add_service("acme.v1.admin.Auditor", servicer.__mapping__())' in content


def test_idempotency_levels_mark_methods_idempotent(descriptors: FileDescriptorSet) -> None:
    content = rendered(descriptors)["acme/v1/shop_p2prpc.py"]
    tree = ast.parse(content)
    idempotent = {
        node.args[1].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and any(k.arg == "idempotent" for k in node.keywords)
        and isinstance(node.args[1], ast.Constant)
    }
    # GetPrice: NO_SIDE_EFFECTS, SetPrice: IDEMPOTENT, Total: NO_SIDE_EFFECTS; in the stub and
    # in the handlers (whose second argument is the cardinality, not the route).
    assert idempotent == {"/acme.v1.Shop/GetPrice", "/acme.v1.Shop/SetPrice", "/acme.v1.Shop/Total"}
    assert content.count("idempotent=True") == 6


def test_a_message_named_with_a_keyword_is_an_error(tmp_path: Path) -> None:
    response = render_proto(
        tmp_path,
        'syntax = "proto3";\npackage p;\nmessage None {}\n'
        "service S { rpc M(p.None) returns (p.None); }\n",
    )
    assert "p.None" in response.error
    assert list(response.file) == []


def test_methods_with_the_same_python_name_are_an_error(tmp_path: Path) -> None:
    response = render_proto(
        tmp_path,
        'syntax = "proto3";\nmessage M {}\nservice S { rpc None(M) returns (M); '
        "rpc None_(M) returns (M); }\n",
    )
    assert "None_" in response.error


def test_a_parameter_is_an_error(descriptors: FileDescriptorSet) -> None:
    response = render(make_request(descriptors, ["bare.proto"], parameter="verbose"))
    assert "verbose" in response.error
    assert list(response.file) == []


# --- docstrings ----------------------------------------------------------------------------------


def test_docstrings_hold_the_comments(descriptors: FileDescriptorSet) -> None:
    content = rendered(descriptors)["acme/v1/shop_p2prpc.py"]
    stub = next(
        node
        for node in ast.parse(content).body
        if isinstance(node, ast.ClassDef) and node.name == "ShopStub"
    )
    doc = ast.get_docstring(stub, clean=False)
    assert doc is not None
    assert content.isascii()
    comment = (TEST_PROTOS / "acme/v1/shop.proto").read_text(encoding="utf-8")
    start = comment.index("// A shop.")
    lines = comment[start : comment.index("service Shop")].splitlines()
    assert doc.split() == " ".join(line.removeprefix("//") for line in lines).split()
    for line in content.splitlines():
        assert len(line) <= LINE_LENGTH


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(min_value=0, max_value=12))
def test_any_text_makes_a_docstring_with_that_text(text: str, depth: int) -> None:
    indent = 4 * depth
    lines = docstring_lines(text, indent)
    if not text.strip():
        assert lines == []
        return
    literal = "\n".join(lines)
    assert literal.isascii()
    value = ast.literal_eval(literal)
    assert value.split() == text.split()
    for line in lines:
        if " " in line.strip():  # a single long word may overflow, as ruff allows
            assert indent + len(line) <= LINE_LENGTH


@pytest.mark.parametrize(
    "text",
    [
        '"',
        '""',
        '"""',
        '""""',
        'say "hi"',
        '"quoted"',
        "ends with a backslash \\",
        'a \\" b',
        'x\\"',
        "first\n  indented\n\tsecond",
        "é\u2019\U0001f600\x00\x7f",
        "word " * 40,
    ],
)
def test_docstrings_are_formatted_as_ruff_formats_them(text: str) -> None:
    source = "class C:\n" + "\n".join(
        "    " + line if line else "" for line in docstring_lines(text, 4)
    )
    source += "\n"
    check_ruff_format(source)
    assert ast.literal_eval("\n".join(docstring_lines(text, 4))).split() == text.split()


# --- imports -------------------------------------------------------------------------------------


def test_imports_are_sorted_as_ruff_sorts_them() -> None:
    modules = [
        "a10_pb2",
        "a9_pb2",
        "A_pb2",
        "b_pb2",
        "foo_bar_pb2",
        "foobar_pb2",
        "foo.bar_pb2",
        "foo.Baz_pb2",
        "foo.bar.x_pb2",
        "foo_bar.x_pb2",
        "google.protobuf.empty_pb2",
        "google.protobuf.timestamp_pb2",
        "Zeta.x_pb2",
        "zeta10.x_pb2",
        "zeta2.x_pb2",
        "zeta_.x_pb2",
        # Too long for one line: wrapped in parentheses (from), left long with noqa (import).
        "org.example.very.long.package_name.v1beta2.storage_service_with_a_long_file_name_pb2",
        "storage_service_with_a_very_very_long_file_name_pb2",
    ]
    stdlib = [ImportStatement("typing", "Any"), ImportStatement("collections.abc", "AsyncIterator")]
    block = import_lines(
        [stdlib, [module_import(m) for m in modules], [ImportStatement("p2prpc.rpc")]]
    )
    uses = [
        f"    {name}," for name in ["Any", "AsyncIterator", "p2prpc", *map(module_alias, modules)]
    ]
    source = "\n".join([*block, "", "print(", *uses, ")", ""])
    result = run_ruff(["check", "--select", "I,F401,E501"], source)
    assert result.returncode == 0, result.stdout + result.stderr


def run_ruff(arguments: list[str], source: str) -> subprocess.CompletedProcess[str]:
    """Run ruff on ``source`` as if it were a file of this project (its config, its first party)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            *arguments,
            "--no-cache",
            "--stdin-filename",
            "tests/codegen/generated_example.py",
            "-",
        ],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def check_ruff_format(source: str) -> None:
    result = run_ruff(["format", "--diff"], source)
    assert result.returncode == 0, result.stdout + result.stderr
