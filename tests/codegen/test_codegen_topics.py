"""Topics declared with ``option (p2prpc.topic)``: which messages, their names, their handles.

The exact text is pinned by the golden files (``acme/v1/events.proto``, ``lobby.proto`` and the
long-named file under ``org/``); these tests state the rules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from codegen_support import ROOT, make_request
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from hypothesis import given, settings
from hypothesis import strategies as st
from test_codegen_render import check_ruff_format, render_proto, rendered, run_ruff

from p2prpc.codegen.source import string_literal
from p2prpc.codegen.topics import MAX_NAME_LENGTH

OPTIONS = 'syntax = "proto3";\npackage p;\nimport "p2prpc/options.proto";\n'


def handles(content: str) -> dict[str, tuple[str, str]]:
    """Each topic class of a module: its base class and its ``NAME``."""
    found = {}
    for node in ast.parse(content).body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Topic"):
            (base,) = node.bases
            (name,) = (
                statement.value.value
                for statement in node.body
                if isinstance(statement, ast.Assign)
                and isinstance(statement.value, ast.Constant)
                and [ast.unparse(t) for t in statement.targets] == ["NAME"]
            )
            found[node.name] = (ast.unparse(base), name)
    return found


def topics_constant(content: str) -> tuple[str, ...]:
    for node in ast.parse(content).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "TOPICS":
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple)
            return value
    raise AssertionError("no TOPICS")


def test_every_message_with_the_option_gets_a_handle(descriptors: FileDescriptorSet) -> None:
    content = rendered(descriptors)["acme/v1/events_p2prpc.py"]
    alias = "acme_dot_v1_dot_events__pb2"
    late = 'orders/"late" \\ café'
    assert handles(content) == {
        "PriceChangedTopic": (f"p2prpc.pubsub.Topic[{alias}.PriceChanged]", "prices"),
        # An empty name, set or left out, is the message's full name.
        "HeartbeatTopic": (f"p2prpc.pubsub.Topic[{alias}.Heartbeat]", "acme.v1.events.Heartbeat"),
        "Order_ShippedTopic": (
            f"p2prpc.pubsub.Topic[{alias}.Order.Shipped]",
            "acme.v1.events.Order.Shipped",
        ),
        "Order_Shipped_LateTopic": (f"p2prpc.pubsub.Topic[{alias}.Order.Shipped.Late]", late),
    }
    # Declaration order, outer messages before the ones nested in them.
    assert topics_constant(content) == (
        "prices",
        "acme.v1.events.Heartbeat",
        "acme.v1.events.Order.Shipped",
        late,
    )
    assert "Order.Cancelled" not in content
    assert "OrderTopic" not in content


def test_a_handle_is_a_typed_topic_bound_to_a_node(descriptors: FileDescriptorSet) -> None:
    content = rendered(descriptors)["lobby_p2prpc.py"]
    handle = next(
        node
        for node in ast.parse(content).body
        if isinstance(node, ast.ClassDef) and node.name == "ArrivalTopic"
    )
    assert ast.get_docstring(handle) == "Someone came in or left."
    init = next(node for node in handle.body if isinstance(node, ast.FunctionDef))
    assert ast.unparse(init.args) == "self, node: p2prpc.node.Node"
    assert [ast.unparse(s) for s in init.body] == [
        "super().__init__(node, self.NAME, lobby__pb2.Arrival)"
    ]
    # Without a package the full name is the message's name; services come first.
    assert topics_constant(content) == ("Arrival",)
    assert content.index("SERVICES = ") < content.index("TOPICS = ")
    assert "typed handles for the topics" in ast.get_docstring(ast.parse(content), clean=True)


def test_a_message_without_comments_gets_a_docstring(descriptors: FileDescriptorSet) -> None:
    content = rendered(descriptors)["acme/v1/events_p2prpc.py"]
    assert '"""The topic "acme.v1.events.Heartbeat", of acme.v1.events.Heartbeat messages."""' in (
        content
    )


def test_topics_only_need_the_options_file(tmp_path: Path) -> None:
    response = render_proto(tmp_path, OPTIONS + "message M { option (p2prpc.topic) = {}; }\n")
    assert not response.error
    (file,) = response.file
    assert file.name == "t_p2prpc.py"
    assert topics_constant(file.content) == ("p.M",)
    assert "p2prpc.rpc" not in file.content


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        (
            'message A { option (p2prpc.topic) = {name: "x"}; }\n'
            'message B { option (p2prpc.topic) = {name: "x"}; }\n',
            "p.A and p.B are both topic 'x'",
        ),
        (
            'message A { option (p2prpc.topic) = {name: "p.B"}; }\n'
            "message B { option (p2prpc.topic) = {}; }\n",
            "p.A and p.B are both topic 'p.B'",
        ),
        (
            "message A { message B { option (p2prpc.topic) = {}; } }\n"
            "message A_B { option (p2prpc.topic) = {}; }\n",
            "the Python class A_BTopic",
        ),
        (
            f'message A {{ option (p2prpc.topic) = {{name: "{"x" * (MAX_NAME_LENGTH + 1)}"}}; }}\n',
            f"a name has at most {MAX_NAME_LENGTH} characters",
        ),
        ("message None { option (p2prpc.topic) = {}; }\n", "p.None"),
    ],
    ids=["same-name", "name-of-another", "same-class", "too-long", "keyword"],
)
def test_topics_that_cannot_be_generated_are_errors(
    tmp_path: Path, messages: str, error: str
) -> None:
    response = render_proto(tmp_path, OPTIONS + messages)
    assert error in response.error
    assert list(response.file) == []


def test_the_longest_name_is_accepted(tmp_path: Path) -> None:
    name = "x" * MAX_NAME_LENGTH
    response = render_proto(
        tmp_path, OPTIONS + f'message A {{ option (p2prpc.topic) = {{name: "{name}"}}; }}\n'
    )
    assert not response.error
    assert topics_constant(response.file[0].content) == (name,)


def test_options_parsed_before_the_extension_is_known_are_read(tmp_path: Path) -> None:
    """A request read before :mod:`p2prpc.options_pb2` was imported holds the option as an
    unknown field; ``render()`` still finds it."""
    (tmp_path / "t.proto").write_text(
        OPTIONS + 'message M { option (p2prpc.topic) = {name: "m"}; }\n', encoding="utf-8"
    )
    from codegen_support import compile_descriptors

    request = make_request(compile_descriptors(tmp_path, ["t.proto"], tmp_path), ["t.proto"])
    (tmp_path / "request.binpb").write_bytes(request.SerializeToString())
    script = (
        "import sys\n"
        "from google.protobuf.compiler.plugin_pb2 import CodeGeneratorRequest\n"
        "request = CodeGeneratorRequest.FromString(open(sys.argv[1], 'rb').read())\n"
        "assert 'p2prpc.options_pb2' not in sys.modules\n"
        "from p2prpc.codegen import render\n"
        "(file,) = render(request).file\n"
        "print(file.content)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "request.binpb")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert topics_constant(result.stdout) == ("m",)


# --- names as Python literals --------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_name_makes_a_literal_of_that_name(text: str) -> None:
    literal = string_literal(text)
    assert literal.isascii()
    assert ast.literal_eval(literal) == text


@pytest.mark.parametrize(
    "name",
    [
        "chat",
        '"',
        "'",
        "'\"'",
        '"\'"',
        'say "hi"',
        "it's",
        "a\\b",
        "\\",
        "tab\tnew\nline",
        "é\u2019\U0001f600\x00\x7f",
        "x" * 86,  # NAME = "..." just fits at its indentation
        "x" * 87,
        "x" * 88,  # fits only in parentheses on a line of its own
        "x" * 90,
        "x" * 91,  # fits nowhere
        "many words " * 20,
        "x" * MAX_NAME_LENGTH,
    ],
)
def test_names_are_lint_clean_and_formatted_as_ruff_formats_them(tmp_path: Path, name: str) -> None:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("\t", "\\t").replace("\x00", "\\000").replace("\x7f", "\\177")
    response = render_proto(
        tmp_path, OPTIONS + f'message A {{ option (p2prpc.topic) = {{name: "{escaped}"}}; }}\n'
    )
    assert not response.error, response.error
    content = response.file[0].content
    assert handles(content)["ATopic"][1] == name
    assert topics_constant(content) == (name,)
    check_ruff_format(content)
    result = run_ruff(["check"], content)
    assert result.returncode == 0, result.stdout + result.stderr
