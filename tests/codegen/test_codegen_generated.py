"""The committed ``generated/`` tree: in sync with ``protos/``, lint-clean, and usable.

``make gen`` regenerates it: protoc with ``--python_out``, ``--pyi_out`` and ``--p2prpc_out`` over
every ``protos/**/*.proto``, then ``ruff format`` (protoc's own modules are not formatted). The
options under ``protos/p2prpc/`` are the exception: they are compiled into the package
(``p2prpc/options_pb2.py``), and shipped in it (``p2prpc/proto/``) for ``p2prpc gen``.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from codegen_support import (
    EXAMPLES,
    GENERATED,
    GOLDEN,
    OPTIONS_PROTOS,
    PACKAGE,
    ROOT,
    proto_names,
    ruff_format,
)

from p2prpc.codegen import generate, protoc
from p2prpc.codegen.protoc import options_include


def files_under(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_generated_is_in_sync_with_protos(tmp_path: Path) -> None:
    """What ``make gen`` would write now is, byte for byte, what is committed."""
    names = [str(EXAMPLES / name) for name in proto_names(EXAMPLES, exclude=OPTIONS_PROTOS)]
    assert generate(names, include=[str(EXAMPLES)], out=str(tmp_path)) == 0
    ruff_format(tmp_path)
    fresh, committed = files_under(tmp_path), files_under(GENERATED)
    assert sorted(fresh) == sorted(committed), "generated/ is stale: run make gen"
    for name, content in fresh.items():
        assert committed[name] == content, f"generated/{name} is stale: run make gen"


def test_the_package_options_are_in_sync_with_protos(tmp_path: Path) -> None:
    """``p2prpc/options_pb2.py(i)`` and the shipped ``.proto`` are what ``make gen`` makes of
    ``protos/p2prpc/``; no p2prpc module is generated for them (they declare no topic)."""
    names = [str(OPTIONS_PROTOS / name) for name in proto_names(OPTIONS_PROTOS)]
    assert names == [str(OPTIONS_PROTOS / "options.proto")]
    assert generate(names, include=[str(EXAMPLES)], out=str(tmp_path)) == 0
    ruff_format(tmp_path)
    assert sorted(files_under(tmp_path)) == ["p2prpc/options_pb2.py", "p2prpc/options_pb2.pyi"]
    for name, content in files_under(tmp_path).items():
        assert (ROOT / name).read_bytes() == content, f"{name} is stale: run make gen"
    shipped = Path(options_include()) / "p2prpc" / "options.proto"
    assert shipped.read_bytes() == (OPTIONS_PROTOS / "options.proto").read_bytes(), (
        "p2prpc/proto/p2prpc/options.proto differs from protos/p2prpc/options.proto: run make gen"
    )
    assert shipped.is_relative_to(PACKAGE)


def test_the_options_package_data_is_declared() -> None:
    """The shipped ``.proto`` is package data, so that an installed p2prpc has it too."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["p2prpc"]
    shipped = (PACKAGE / "proto" / "p2prpc" / "options.proto").relative_to(PACKAGE)
    assert any(shipped.match(pattern) for pattern in patterns)


def test_a_proto_imports_the_options_without_naming_their_root(tmp_path: Path) -> None:
    """``generate()`` (``p2prpc gen``) finds ``p2prpc/options.proto`` in the installed package."""
    (tmp_path / "room.proto").write_text(
        'syntax = "proto3";\nimport "p2prpc/options.proto";\n'
        'message Line { option (p2prpc.topic) = {name: "room"}; string text = 1; }\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert generate([str(tmp_path / "room.proto")], include=[str(tmp_path)], out=str(out)) == 0
    assert sorted(files_under(out)) == ["room_p2prpc.py", "room_pb2.py", "room_pb2.pyi"]
    assert "from p2prpc import options_pb2" in (out / "room_pb2.py").read_text(encoding="utf-8")
    assert 'TOPICS = ("room",)' in (out / "room_p2prpc.py").read_text(encoding="utf-8")


def test_examples_cover_every_call_shape() -> None:
    content = (GENERATED / "routeguide_p2prpc.py").read_text(encoding="utf-8")
    for shape in ("UNARY_UNARY", "UNARY_STREAM", "STREAM_UNARY", "STREAM_STREAM"):
        assert f"p2prpc.rpc.Cardinality.{shape}," in content
    assert "google_dot_protobuf_dot_empty__pb2.Empty," in content
    assert "routeguide__pb2.Feature.Change," in content
    assert content.count("idempotent=True") == 2


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_generated_code_is_lint_clean(command: list[str]) -> None:
    """Both the committed modules and the golden ones pass the project's ruff configuration."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", str(GENERATED), str(GOLDEN)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the modules at run time ----------------------------------------------------------------------

try:
    from p2prpc import rpc
except ImportError:  # pragma: no cover - while the runtime is being written
    rpc = None

needs_runtime = pytest.mark.skipif(rpc is None, reason="the p2prpc.rpc runtime is not importable")


class _Registrar:
    def __init__(self) -> None:
        self.services: dict[str, Any] = {}

    def add_service(self, name: str, handlers: Any) -> None:
        self.services[name] = handlers


@needs_runtime
def test_servicer_mapping_describes_every_method() -> None:
    routeguide_p2prpc = importlib.import_module("routeguide_p2prpc")
    routeguide_pb2 = importlib.import_module("routeguide_pb2")
    servicer = routeguide_p2prpc.RouteGuideServicer()
    registrar = _Registrar()
    routeguide_p2prpc.add_RouteGuideServicer_to_node(servicer, registrar)
    assert list(registrar.services) == ["routeguide.RouteGuide"]
    assert routeguide_p2prpc.SERVICES == ("routeguide.RouteGuide",)
    handlers = registrar.services["routeguide.RouteGuide"]
    shapes = {route: handler.cardinality for route, handler in handlers.items()}
    assert shapes == {
        "/routeguide.RouteGuide/GetFeature": rpc.Cardinality.UNARY_UNARY,
        "/routeguide.RouteGuide/ListFeatures": rpc.Cardinality.UNARY_STREAM,
        "/routeguide.RouteGuide/RecordRoute": rpc.Cardinality.STREAM_UNARY,
        "/routeguide.RouteGuide/RouteChat": rpc.Cardinality.STREAM_STREAM,
        "/routeguide.RouteGuide/WatchFeatures": rpc.Cardinality.UNARY_STREAM,
    }
    get_feature = handlers["/routeguide.RouteGuide/GetFeature"]
    assert get_feature.request_type is routeguide_pb2.Point
    assert get_feature.reply_type is routeguide_pb2.Feature
    assert get_feature.idempotent
    assert not handlers["/routeguide.RouteGuide/RouteChat"].idempotent
    assert get_feature.func == servicer.GetFeature


@needs_runtime
@pytest.mark.asyncio
async def test_stub_methods_are_the_runtime_method_objects() -> None:
    from p2prpc.node import Node

    routeguide_p2prpc = importlib.import_module("routeguide_p2prpc")
    node = Node()  # never started: no call is made
    stub = routeguide_p2prpc.RouteGuideStub(node)
    assert stub.GetFeature.channel == rpc.Channel(node)
    assert routeguide_p2prpc.RouteGuideStub(node.to("ab" * 20)).GetFeature.channel.peer == "ab" * 20
    assert isinstance(stub.GetFeature, rpc.UnaryUnaryMethod)
    assert isinstance(stub.ListFeatures, rpc.UnaryStreamMethod)
    assert isinstance(stub.RecordRoute, rpc.StreamUnaryMethod)
    assert isinstance(stub.RouteChat, rpc.StreamStreamMethod)
    assert stub.GetFeature.name == "/routeguide.RouteGuide/GetFeature"
    assert stub.GetFeature.idempotent
    assert not stub.ListFeatures.idempotent


@needs_runtime
@pytest.mark.asyncio
async def test_servicer_methods_not_overridden_are_unimplemented() -> None:
    helloworld_p2prpc = importlib.import_module("helloworld_p2prpc")
    helloworld_pb2 = importlib.import_module("helloworld_pb2")
    servicer = helloworld_p2prpc.GreeterServicer()
    request = helloworld_pb2.HelloRequest(name="x")
    with pytest.raises(rpc.RpcError) as unary:
        await servicer.SayHello(request, None)
    assert unary.value.code() is rpc.StatusCode.UNIMPLEMENTED
    stream = servicer.SayHelloStream(request, None)
    with pytest.raises(rpc.RpcError) as streaming:
        await anext(stream)
    assert streaming.value.code() is rpc.StatusCode.UNIMPLEMENTED


@needs_runtime
@pytest.mark.asyncio
async def test_keyword_named_methods_work_at_run_time(
    cases_out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from p2prpc.node import Node

    monkeypatch.syspath_prepend(str(cases_out))
    bare_p2prpc = importlib.import_module("bare_p2prpc")
    try:
        stub = bare_p2prpc.EchoStub(Node())
        assert stub.None_.name == "/Echo/None"
        handlers = bare_p2prpc.EchoServicer().__mapping__()
        assert handlers["/Echo/class"].reply_type.DESCRIPTOR.full_name == "Ping.Pong.Echo"
        assert bare_p2prpc.NothingServicer().__mapping__() == {}
    finally:
        for name in ("bare_p2prpc", "bare_pb2"):
            sys.modules.pop(name, None)


@pytest.mark.asyncio
async def test_a_generated_topic_carries_its_messages_between_nodes() -> None:
    from p2prpc.pubsub import Topic
    from p2prpc.testing import mesh

    chat_p2prpc = importlib.import_module("chat_p2prpc")
    chat_pb2 = importlib.import_module("chat_pb2")
    assert chat_p2prpc.TOPICS == ("chat", "chat.Presence")
    async with mesh(2) as m:
        alice, bob = m.nodes
        room = chat_p2prpc.ChatMessageTopic(alice)
        assert isinstance(room, Topic)
        assert (room.name, room.message_type) == ("chat", chat_pb2.ChatMessage)
        assert chat_p2prpc.PresenceTopic(alice).name == "chat.Presence"
        async with chat_p2prpc.ChatMessageTopic(bob).subscribe() as subscription:
            async with asyncio.timeout(20):
                while "chat" not in alice.peers[bob.peer_id].topics:
                    await _next_event(alice, "peer")
                assert await room.publish(chat_pb2.ChatMessage(author="alice", text="hi")) == 1
                received = await anext(subscription)
        assert (received.message.author, received.message.text) == ("alice", "hi")
        assert (received.sender, received.topic) == (alice.peer_id, "chat")


async def _next_event(node: Any, event: str) -> None:
    """Wait for the node's next ``event`` (a peer's hello, say)."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fire(*_: object) -> None:
        if not future.done():
            future.set_result(None)

    node.once(event, fire)
    await future


def test_generate_works_without_the_installed_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a checkout that was never installed, a throwaway script runs the plugin."""
    monkeypatch.setattr(protoc, "installed_plugin", lambda: None)
    proto = str(EXAMPLES / "helloworld.proto")
    assert generate([proto], include=[str(EXAMPLES)], out=str(tmp_path / "out")) == 0
    fresh = (tmp_path / "out" / "helloworld_p2prpc.py").read_text(encoding="utf-8")
    assert fresh == (GENERATED / "helloworld_p2prpc.py").read_text(encoding="utf-8")


def test_generate_reports_protoc_failures(tmp_path: Path) -> None:
    (tmp_path / "broken.proto").write_text('syntax = "proto3";\nmessage {\n', encoding="utf-8")
    status = generate([str(tmp_path / "broken.proto")], include=[str(tmp_path)], out=str(tmp_path))
    assert status != 0
    assert not list(tmp_path.glob("*.py"))
