"""A grpc.aio application goes peer to peer with only its channel and server made differently.

``route_guide_app`` is written for grpc.aio alone (grpcio-tools' generated module, grpc.aio's
interceptor classes, grpcio-health-checking and grpcio-reflection). It runs once over grpc.aio
on loopback and once over p2prpc (two nodes, real WebRTC), and the client must see the same.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import grpc.aio
import pytest
import route_guide_app as app
from grpc_tools import protoc

from p2prpc.rpc import Channel
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker import TrackerServer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def pb_grpc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """grpcio-tools' ``routeguide_pb2_grpc``, made now from protos/routeguide.proto."""
    out = tmp_path_factory.mktemp("grpc_out")
    protos = ROOT / "protos"
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        ["protoc", f"-I{protos}", f"-I{include}", f"--grpc_python_out={out}", "routeguide.proto"]
    )
    assert code == 0
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("routeguide_pb2_grpc")
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("routeguide_pb2_grpc", None)


EXPECTED = [
    ("state", grpc.ChannelConnectivity.READY),
    ("get", "", 409146138),
    ("get", "Patriots Path, Mendham, NJ", 407838351),
    ("call", "101 New Jersey 10, Whippany, NJ", grpc.StatusCode.OK, ""),
    ("list", [f.name for f in app.FEATURES if f.name]),
    ("read", [f.name for f in app.FEATURES if f.name]),
    ("record", 4, 4, pytest.approx(0, abs=10**9)),
    ("record-write", 2, 2),
    ("chat", ["note 0", "note 1"]),
    ("watch", grpc.StatusCode.UNIMPLEMENTED),
    ("deadline", grpc.StatusCode.DEADLINE_EXCEEDED),
    ("health", 1),
    ("health-unknown", grpc.StatusCode.NOT_FOUND),
    ("reflection", True),
]


async def over_grpc_aio(pb_grpc: ModuleType) -> tuple[list[object], list[str], list[str]]:
    auth = app.AuthInterceptor()
    server = grpc.aio.server(interceptors=[auth])
    checks = app.add_services(server, pb_grpc)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await app.mark_serving(checks)
    calls: list[str] = []
    interceptors = app.token_interceptors(calls)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=interceptors
        ) as channel:
            seen = await app.guide(channel, pb_grpc)
    finally:
        await server.stop(None)
    return seen, auth.seen, calls


async def test_the_application_runs_over_grpc_aio(pb_grpc: ModuleType) -> None:
    seen, served, called = await over_grpc_aio(pb_grpc)
    assert seen == EXPECTED
    assert served == called


async def over_p2prpc(pb_grpc: ModuleType) -> tuple[list[object], list[str], list[str]]:
    async with TrackerServer(LOOPBACK, 0) as tracker:
        # Only the lines that make the server and the channel differ from over_grpc_aio: a
        # node in a swarm in place of the server's address, a channel through a node.
        auth = app.AuthInterceptor()
        serving = loopback_node([tracker.url], "route-guide", server_interceptors=[auth])
        calling = loopback_node([tracker.url], "route-guide")
        try:
            server = serving.server
            checks = app.add_services(server, pb_grpc)
            await server.start()
            await app.mark_serving(checks)
            calls: list[str] = []
            interceptors = app.token_interceptors(calls)
            await calling.start()
            async with Channel(calling, interceptors=interceptors) as channel:
                seen = await app.guide(channel, pb_grpc)
            await server.stop(None)
        finally:
            await calling.close()
            await serving.close()
    return seen, auth.seen, calls


async def test_the_same_application_runs_over_p2prpc(pb_grpc: ModuleType) -> None:
    seen, served, called = await over_p2prpc(pb_grpc)
    assert seen == EXPECTED
    assert served == called
