"""grpcio-tools' generated stubs over a p2prpc channel, between real nodes over WebRTC.

The stubs are generated here, as a grpc.aio application has them (``grpc_tools.protoc
--grpc_python_out`` for ``protos/routeguide.proto``; grpc.reflection.v1's from its descriptor),
and used unchanged: ``RouteGuideStub(channel)``, grpcio-health-checking's ``HealthStub`` and
grpcio-reflection's ``ServerReflectionStub`` against a node's own services.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.resources
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import grpc.aio
import pytest
import routeguide_pb2 as rg
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_tools import protoc
from routeguide_p2prpc import RouteGuideServicer, add_RouteGuideServicer_to_node

import p2prpc.rpc.client
from p2prpc.errors import RpcError
from p2prpc.node import Node
from p2prpc.rpc import Channel, ClientCallDetails, ServicerContext, StatusCode
from p2prpc.services import SERVING
from p2prpc.services.reflection import V1
from p2prpc.testing import mesh
from p2prpc.wire.compression import CODECS

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "routeguide.RouteGuide"
HANG, FAIL_ONCE, ALWAYS_UNAVAILABLE = -1, -2, -3


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """grpcio-tools' ``routeguide_pb2_grpc`` and a grpc.reflection.v1 ``_pb2_grpc``, generated
    into a temporary directory and imported from there."""
    out = tmp_path_factory.mktemp("grpc_stubs")
    include = importlib.resources.files("grpc_tools") / "_proto"
    assert (
        protoc.main(
            [
                "protoc",
                f"-I{ROOT / 'protos'}",
                f"-I{include}",
                f"--grpc_python_out={out}",
                str(ROOT / "protos" / "routeguide.proto"),
            ]
        )
        == 0
    )
    # grpcio-reflection ships v1alpha's stubs only: v1's are generated from its descriptor.
    # (Only the stubs: the messages are V1's.)
    v1 = descriptor_pb2.FileDescriptorProto()
    V1.ServerReflectionRequest.DESCRIPTOR.file.CopyToProto(v1)
    v1.name = "reflection_v1.proto"
    descriptors = out / "reflection_v1.pb"
    descriptors.write_bytes(descriptor_pb2.FileDescriptorSet(file=[v1]).SerializeToString())
    assert (
        protoc.main(
            [
                "protoc",
                f"--descriptor_set_in={descriptors}",
                f"--grpc_python_out={out}",
                "reflection_v1.proto",
            ]
        )
        == 0
    )
    # Its messages are the ones already made (importing a second module of them would add a
    # second file of the same names to the default pool, where reflection looks them up).
    sys.modules["reflection_v1_pb2"] = V1
    sys.path.insert(0, str(out))
    try:
        yield {
            name: importlib.import_module(name)
            for name in ("routeguide_pb2_grpc", "reflection_v1_pb2", "reflection_v1_pb2_grpc")
        }
    finally:
        sys.path.remove(str(out))
        for name in ("routeguide_pb2_grpc", "reflection_v1_pb2", "reflection_v1_pb2_grpc"):
            sys.modules.pop(name, None)


class Guide(RouteGuideServicer):
    """Echoes what it is sent; a latitude of HANG never answers, FAIL_ONCE fails UNAVAILABLE the
    first time, ALWAYS_UNAVAILABLE every time."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[tuple[str, Any]] = []
        self.remaining: list[float | None] = []

    async def GetFeature(self, request: rg.Point, context: ServicerContext) -> rg.Feature:
        self.calls += 1
        self.seen = list(context.invocation_metadata())
        self.remaining.append(context.time_remaining())
        if request.latitude == HANG:
            await asyncio.Event().wait()
        if request.latitude == ALWAYS_UNAVAILABLE or (
            request.latitude == FAIL_ONCE and self.calls == 1
        ):
            await context.abort(StatusCode.UNAVAILABLE, "warming up")
        context.set_trailing_metadata([(k, v) for k, v in self.seen if k.startswith("x-")])
        return rg.Feature(name=f"{request.latitude},{request.longitude}", location=request)

    async def ListFeatures(
        self, request: rg.Rectangle, context: ServicerContext
    ) -> AsyncIterator[rg.Feature]:
        for latitude in range(request.lo.latitude, request.hi.latitude + 1):
            yield rg.Feature(name=f"at {latitude}", location=rg.Point(latitude=latitude))

    async def RecordRoute(
        self, requests: AsyncIterator[rg.Point], context: ServicerContext
    ) -> rg.RouteSummary:
        points = [point async for point in requests]
        return rg.RouteSummary(point_count=len(points), distance=sum(p.latitude for p in points))

    async def RouteChat(
        self, requests: AsyncIterator[rg.RouteNote], context: ServicerContext
    ) -> AsyncIterator[rg.RouteNote]:
        async for note in requests:
            yield rg.RouteNote(message=note.message.upper(), location=note.location)


async def four_shapes(stub: Any) -> None:
    """The route guide client's four calls, as grpc's own asyncio example makes them."""
    feature = await stub.GetFeature(rg.Point(latitude=4, longitude=2), timeout=10)
    assert feature.name == "4,2"
    rectangle = rg.Rectangle(lo=rg.Point(latitude=1), hi=rg.Point(latitude=3))
    assert [f.name async for f in stub.ListFeatures(rectangle, timeout=10)] == [
        "at 1",
        "at 2",
        "at 3",
    ]

    async def route() -> AsyncIterator[rg.Point]:
        for latitude in (5, 6, 7):
            yield rg.Point(latitude=latitude)

    summary = await stub.RecordRoute(route(), timeout=10)
    assert (summary.point_count, summary.distance) == (3, 18)
    # grpc.aio's keyword for a request stream, and a plain iterable.
    summary = await stub.RecordRoute(request_iterator=[rg.Point(latitude=1)], timeout=10)
    assert summary.point_count == 1
    notes = [rg.RouteNote(message=m) for m in ("first", "second")]
    assert [n.message async for n in stub.RouteChat(iter(notes), timeout=10)] == [
        "FIRST",
        "SECOND",
    ]
    # Written to, as grpc.aio's stream-stream call is.
    chat = stub.RouteChat(timeout=10)
    await chat.write(rg.RouteNote(message="hi"))
    assert (await chat.read()).message == "HI"
    await chat.done_writing()
    assert await chat.read() is grpc.aio.EOF
    assert await chat.code() is StatusCode.OK


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_grpcio_tools_stubs_call_every_shape(
    generated: dict[str, ModuleType], binary: bool
) -> None:
    stubs = generated["routeguide_pb2_grpc"]
    async with mesh(2, "grpcio-stubs", binary=binary) as m:
        server, client = m.nodes
        add_RouteGuideServicer_to_node(Guide(), server)
        await client.wait_for_server(SERVICE, 10)
        await four_shapes(stubs.RouteGuideStub(Channel(client)))
        # What p2prpc's own stubs take, grpcio's take too.
        await four_shapes(stubs.RouteGuideStub(client))
        await four_shapes(stubs.RouteGuideStub(client.to(server.peer_id)))
        pinned = stubs.RouteGuideStub(client.to(client.peer_id[:12]))  # nobody serves there
        with pytest.raises(RpcError) as info:
            await pinned.GetFeature(rg.Point(), timeout=10)
        assert info.value.code() is StatusCode.UNAVAILABLE


async def test_the_standard_health_and_reflection_clients(
    generated: dict[str, ModuleType],
) -> None:
    async with mesh(2, "grpcio-standard") as m:
        server, client = m.nodes
        add_RouteGuideServicer_to_node(Guide(), server)
        await client.wait_for_server(SERVICE, 10)
        channel = Channel(client)

        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
        assert checked.status == SERVING
        with pytest.raises(RpcError) as info:
            await health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=10)
        assert info.value.code() is StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert (await watch.read()).status == SERVING
        watch.cancel()
        listed = await health.List(health_pb2.HealthListRequest(), timeout=10)
        assert listed.statuses[SERVICE].status == SERVING

        v1 = generated["reflection_v1_pb2"]
        for stub, messages in (
            (reflection_pb2_grpc.ServerReflectionStub(channel), reflection_pb2),
            (generated["reflection_v1_pb2_grpc"].ServerReflectionStub(channel), v1),
        ):
            requests = [
                messages.ServerReflectionRequest(list_services=""),
                messages.ServerReflectionRequest(file_containing_symbol=SERVICE),
            ]
            replies = [r async for r in stub.ServerReflectionInfo(iter(requests), timeout=10)]
            services = {s.name for s in replies[0].list_services_response.service}
            assert {SERVICE, "grpc.health.v1.Health"} <= services
            files = [
                descriptor_pb2.FileDescriptorProto.FromString(raw).name
                for raw in replies[1].file_descriptor_response.file_descriptor_proto
            ]
            assert files[0] == "routeguide.proto"


async def test_every_call_keyword(generated: dict[str, ModuleType]) -> None:
    stubs = generated["routeguide_pb2_grpc"]
    async with mesh(2, "grpcio-keywords") as m:
        server, client = m.nodes
        guide = Guide()
        stub = stubs.RouteGuideStub(Channel(client))

        # wait_for_ready: the call waits for a server of the service, which comes later.
        waiting = stub.GetFeature(rg.Point(latitude=1), wait_for_ready=True, timeout=30)
        with pytest.raises(RpcError) as info:
            await stub.GetFeature(rg.Point(latitude=1), timeout=30)
        assert info.value.code() is StatusCode.UNAVAILABLE
        assert not waiting.done()
        add_RouteGuideServicer_to_node(guide, server)
        assert (await waiting).name == "1,0"

        # metadata, and timeout: the server has the deadline, and a call past it ends.
        reply = stub.GetFeature(
            rg.Point(latitude=2), metadata=(("x-shop", "berlin"),), timeout=30, wait_for_ready=None
        )
        assert (await reply).name == "2,0"
        assert ("x-shop", "berlin") in guide.seen
        assert ("x-shop", "berlin") in list(await reply.trailing_metadata())
        remaining = guide.remaining[-1]
        assert remaining is not None and 0 < remaining <= 30
        with pytest.raises(RpcError) as info:
            await stub.GetFeature(rg.Point(latitude=HANG), timeout=0.5)
        assert info.value.code() is StatusCode.DEADLINE_EXCEEDED

        # credentials: refused as grpc.aio refuses them on a channel without TLS, every shape.
        token = grpc.access_token_call_credentials("secret")
        for call in (
            lambda: stub.GetFeature(rg.Point(), credentials=token),
            lambda: stub.ListFeatures(rg.Rectangle(), credentials=token),
            lambda: stub.RecordRoute(iter([]), credentials=token),
            lambda: stub.RouteChat(iter([]), None, None, token),  # grpc.aio's positional order
        ):
            with pytest.raises(grpc.aio.UsageError, match="only valid on secure channels"):
                call()
        calls = guide.calls
        assert (await stub.GetFeature(rg.Point(latitude=3), credentials=None)).name == "3,0"
        assert guide.calls == calls + 1

        # compression: grpc.Compression members as gRPC names them, per call.
        for compression in (grpc.Compression.Gzip, grpc.Compression.Deflate):
            summary = await stub.RecordRoute(
                iter([rg.Point(latitude=1)] * 3), timeout=10, compression=compression
            )
            assert summary.point_count == 3


class Compressing:
    """A client interceptor that compresses every call it sees."""

    def __init__(self, compression: Any) -> None:
        self.compression = compression
        self.calls = 0

    async def intercept_call(
        self,
        details: ClientCallDetails,
        proceed: Callable[[ClientCallDetails], Awaitable[Any]],
    ) -> Any:
        self.calls += 1
        return await proceed(dataclasses.replace(details, compression=self.compression))


@pytest.mark.parametrize(
    "compression", ["gzip", grpc.Compression.Gzip, grpc.Compression.Deflate, "zstd"]
)
async def test_compression_by_grpc_names_sends_fewer_bytes(compression: Any) -> None:
    if compression == "zstd" and "zstd" not in CODECS:
        pytest.skip("zstandard is not installed")
    async with mesh(2, "grpcio-gzip") as m:
        server, client = m.nodes
        add_RouteGuideServicer_to_node(Guide(), server)
        await client.wait_for_server(SERVICE, 10)
        assert "gzip" in server.peers[client.peer_id].encodings  # offered in the hello
        received: list[int] = []
        server.p2pt.on("data", lambda peer, data: received.append(len(data)))
        notes = [rg.RouteNote(message=f"note {i} " + "abc" * 300) for i in range(20)]

        async def sent(channel: Channel, **kwargs: Any) -> int:
            from routeguide_p2prpc import RouteGuideStub

            received.clear()
            replies = [r async for r in RouteGuideStub(channel).RouteChat(notes, **kwargs)]
            assert [r.message for r in replies] == [n.message.upper() for n in notes]
            return sum(received)

        plain = await sent(Channel(client))
        assert await sent(Channel(client), compression=compression) < plain // 3
        assert await sent(Channel(client, compression=compression)) < plain // 3
        # An interceptor may set it in the call's details.
        compressing = Compressing(compression)
        assert await sent(Channel(client, interceptors=[compressing])) < plain // 3
        assert compressing.calls == 1
        # NoCompression on a call turns the channel's off.
        off = await sent(
            Channel(client, compression=compression), compression=grpc.Compression.NoCompression
        )
        assert off >= plain * 0.9


async def test_a_gzip_bomb_is_refused_at_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that sends a gzip payload inflating past the ratio's bound (64 × its size + 4 KiB)
    gets RESOURCE_EXHAUSTED from the server, which stopped decompressing there."""
    async with mesh(2, "grpcio-bomb") as m:
        server, client = m.nodes
        guide = Guide()
        add_RouteGuideServicer_to_node(guide, server)
        await client.wait_for_server(SERVICE, 10)
        bomb = CODECS["gzip"].compress(b"\x00" * 2_000_000)
        assert len(bomb) * 64 + 4096 < 2_000_000 < server.max_message_size

        def pack(*_: Any) -> tuple[bytes, bool]:
            return bomb, True  # the payload this caller picked, whatever the message

        monkeypatch.setattr(p2prpc.rpc.client, "pack", pack)
        from routeguide_p2prpc import RouteGuideStub

        with pytest.raises(RpcError) as info:
            await RouteGuideStub(client).GetFeature(rg.Point(), compression="gzip", timeout=10)
        assert info.value.code() is StatusCode.RESOURCE_EXHAUSTED
        assert "inflates past" in info.value.details()
        assert guide.calls == 0
        monkeypatch.undo()
        reply = await RouteGuideStub(client).GetFeature(rg.Point(latitude=5), compression="gzip")
        assert reply.name == "5,0"


def service_config(**method: Any) -> list[tuple[str, Any]]:
    entry = {"name": [{"service": SERVICE, "method": "GetFeature"}], **method}
    return [("grpc.service_config", json.dumps({"methodConfig": [entry]}))]


RETRY = {
    "maxAttempts": 3,
    "initialBackoff": "0.01s",
    "maxBackoff": "0.05s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


async def test_a_service_config_retry_policy_retries_as_grpc_does(
    generated: dict[str, ModuleType],
) -> None:
    """A server that fails UNAVAILABLE once: a grpcio stub's method is not known to be
    idempotent, so without a retry policy the call fails (it may have run); the service
    config's policy declares it safe, and the call is tried again and succeeds."""
    stubs = generated["routeguide_pb2_grpc"]
    async with mesh(2, "grpcio-retry") as m:
        server, client = m.nodes
        guide = Guide()
        add_RouteGuideServicer_to_node(guide, server)
        await client.wait_for_server(SERVICE, 10)

        plain = stubs.RouteGuideStub(Channel(client))
        with pytest.raises(RpcError) as info:
            await plain.GetFeature(rg.Point(latitude=FAIL_ONCE), timeout=10)
        assert info.value.code() is StatusCode.UNAVAILABLE
        assert guide.calls == 1

        guide.calls = 0
        configured = stubs.RouteGuideStub(
            Channel(client, options=service_config(retryPolicy=RETRY))
        )
        call = configured.GetFeature(rg.Point(latitude=FAIL_ONCE), timeout=10)
        assert (await call).name == f"{FAIL_ONCE},0"
        assert guide.calls == 2
        assert ("grpc-previous-rpc-attempts", "1") in list(await call.trailing_metadata())

        # grpc.enable_retries=0 turns every retry off, the service config's too.
        guide.calls = 0
        off = Channel(
            client, options=[*service_config(retryPolicy=RETRY), ("grpc.enable_retries", 0)]
        )
        with pytest.raises(RpcError) as info:
            await stubs.RouteGuideStub(off).GetFeature(rg.Point(latitude=FAIL_ONCE), timeout=10)
        assert info.value.code() is StatusCode.UNAVAILABLE
        assert guide.calls == 1

        # maxAttempts bounds the attempts of a server that never recovers.
        guide.calls = 0
        with pytest.raises(RpcError) as info:
            await configured.GetFeature(rg.Point(latitude=ALWAYS_UNAVAILABLE), timeout=10)
        assert guide.calls == 3
        assert ("grpc-previous-rpc-attempts", "2") in list(info.value.trailing_metadata())


async def test_retry_throttling_stops_retries_once_half_the_tokens_are_spent(
    generated: dict[str, ModuleType],
) -> None:
    stubs = generated["routeguide_pb2_grpc"]
    async with mesh(2, "grpcio-throttle") as m:
        server, client = m.nodes
        guide = Guide()
        add_RouteGuideServicer_to_node(guide, server)
        await client.wait_for_server(SERVICE, 10)
        entry = {"name": [{"service": SERVICE}], "retryPolicy": {**RETRY, "maxAttempts": 5}}
        document = {"methodConfig": [entry], "retryThrottling": {"maxTokens": 4, "tokenRatio": 1}}
        channel = Channel(client, options=[("grpc.service_config", json.dumps(document))])
        stub = stubs.RouteGuideStub(channel)
        unavailable = rg.Point(latitude=ALWAYS_UNAVAILABLE)
        # 4 tokens: a failed attempt takes one; at 2 or fewer, no retry (4 → 3, retried;
        # → 2, not; then → 1).
        for attempts in (2, 1):
            guide.calls = 0
            with pytest.raises(RpcError):
                await stub.GetFeature(unavailable, timeout=10)
            assert guide.calls == attempts
        # Successes give tokens back (1 each, up to 4): retries come back.
        for _ in range(5):
            await stub.GetFeature(rg.Point(latitude=1), timeout=10)
        guide.calls = 0
        with pytest.raises(RpcError):
            await stub.GetFeature(unavailable, timeout=10)
        assert guide.calls == 2


async def test_a_service_config_timeout_bounds_a_call_to_a_server_that_never_answers(
    generated: dict[str, ModuleType],
) -> None:
    stubs = generated["routeguide_pb2_grpc"]
    async with mesh(2, "grpcio-timeout") as m:
        server, client = m.nodes
        guide = Guide()
        add_RouteGuideServicer_to_node(guide, server)
        await client.wait_for_server(SERVICE, 10)
        stub = stubs.RouteGuideStub(Channel(client, options=service_config(timeout="0.5s")))
        call = stub.GetFeature(rg.Point(latitude=HANG))  # no timeout of its own
        remaining = call.time_remaining()
        assert remaining is not None and remaining <= 0.5
        with pytest.raises(RpcError) as info:
            await call
        assert info.value.code() is StatusCode.DEADLINE_EXCEEDED
        server_remaining = guide.remaining[-1]
        assert server_remaining is not None and server_remaining <= 0.5  # travelled with it
        # A call's own shorter timeout stands; a longer one is cut to the config's.
        assert stub.GetFeature(rg.Point(latitude=HANG), timeout=0.2).time_remaining() <= 0.2
        longer = stub.GetFeature(rg.Point(latitude=HANG), timeout=60)
        assert longer.time_remaining() <= 0.5
        with pytest.raises(RpcError):
            await longer
        # Other methods of the service are not bounded.
        assert [f.name async for f in stub.ListFeatures(rg.Rectangle())] == ["at 0"]


async def test_a_service_config_wait_for_ready(generated: dict[str, ModuleType]) -> None:
    stubs = generated["routeguide_pb2_grpc"]
    async with mesh(2, "grpcio-ready") as m:
        server, client = m.nodes
        stub = stubs.RouteGuideStub(Channel(client, options=service_config(waitForReady=True)))
        waiting = stub.GetFeature(rg.Point(latitude=7), timeout=30)
        # The call's own choice stands over the config's.
        with pytest.raises(RpcError) as info:
            await stub.GetFeature(rg.Point(), wait_for_ready=False, timeout=30)
        assert info.value.code() is StatusCode.UNAVAILABLE
        assert not waiting.done()
        add_RouteGuideServicer_to_node(Guide(), server)
        assert (await waiting).name == "7,0"


async def test_message_length_options_bound_each_channel(
    generated: dict[str, ModuleType],
) -> None:
    stubs = generated["routeguide_pb2_grpc"]
    async with mesh(2, "grpcio-lengths") as m:
        server, client = m.nodes
        guide = Guide()
        add_RouteGuideServicer_to_node(guide, server)
        await client.wait_for_server(SERVICE, 10)
        big = rg.RouteNote(message="x" * 5000)
        small = Channel(client, options=[("grpc.max_send_message_length", 1000)])
        chat = stubs.RouteGuideStub(small).RouteChat(iter([big]), timeout=10)
        with pytest.raises(RpcError) as info:
            await chat.read()
        assert info.value.code() is StatusCode.RESOURCE_EXHAUSTED
        short = Channel(client, options=[("grpc.max_receive_message_length", 1000)])
        chat = stubs.RouteGuideStub(short).RouteChat(timeout=10)
        await chat.write(rg.RouteNote(message="small"))
        assert (await chat.read()).message == "SMALL"
        await chat.write(big)  # 5 kB out is fine; its 5 kB reply is not
        with pytest.raises(RpcError) as info:
            await chat.read()
        assert info.value.code() is StatusCode.RESOURCE_EXHAUSTED
        # The node's bound holds whatever the option says (at most a C int, as grpcio takes it).
        roomy = Channel(client, options=[("grpc.max_receive_message_length", 2**31 - 1)])
        assert roomy.message_limits("/x.Y/Z") == (None, 2**31 - 1)
        reply = await stubs.RouteGuideStub(roomy).GetFeature(rg.Point(latitude=1), timeout=10)
        assert reply.name == "1,0"


async def test_a_node_is_a_channel_for_grpcio_stubs_with_its_default_settings() -> None:
    node = Node()
    try:
        method = health_pb2_grpc.HealthStub(node).Check
        assert method.channel == Channel(node)
        pinned = health_pb2_grpc.HealthStub(node.to("ab12")).Watch
        assert pinned.channel == Channel(node, "ab12")
        keyed = health_pb2_grpc.HealthStub(node.to_identity(b"k" * 32)).List
        assert keyed.channel.allowed_servers == frozenset({b"k" * 32})
    finally:
        await node.close()


async def test_a_channel_is_a_grpc_aio_channel_and_its_methods_grpc_aio_multicallables() -> None:
    """What grpc.aio's type hints and isinstance checks expect of a channel and its stubs."""
    channel = Channel(Node())
    assert isinstance(channel, grpc.aio.Channel)
    assert isinstance(channel.unary_unary("/a.B/C"), grpc.aio.UnaryUnaryMultiCallable)
    assert isinstance(channel.unary_stream("/a.B/C"), grpc.aio.UnaryStreamMultiCallable)
    assert isinstance(channel.stream_unary("/a.B/C"), grpc.aio.StreamUnaryMultiCallable)
    assert isinstance(channel.stream_stream("/a.B/C"), grpc.aio.StreamStreamMultiCallable)
