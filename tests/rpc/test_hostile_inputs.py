"""What a hostile review found, each kept as a test: every call ends with one status on both
sides, whatever the servicer, an interceptor or the caller does, and stop(grace) returns."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from helloworld_p2prpc import GreeterServicer, GreeterStub, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest

from p2prpc.errors import RpcError
from p2prpc.node import Node
from p2prpc.rpc import Channel, ClientCallDetails, ServicerContext, StatusCode
from p2prpc.testing import mesh
from p2prpc.wire.payload import held_size

pytestmark = pytest.mark.asyncio

HERE = Path(__file__).resolve().parent


@asynccontextmanager
async def served(servicer: GreeterServicer, **options: Any) -> AsyncIterator[Node]:
    async with mesh(2, **options) as m:
        server, client = m.nodes
        add_GreeterServicer_to_node(servicer, server)
        await client.wait_for_server("helloworld.Greeter", 10)
        yield client


class Huge(GreeterServicer):
    def __init__(self, how: str) -> None:
        self.how = how

    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        if self.how == "details":
            raise ValueError("x" * 70_000)
        if self.how == "abort":
            await context.abort(StatusCode.NOT_FOUND, "y" * 70_000)
        context.set_trailing_metadata([("k", "v" * 3_000)] * 5 * 5)
        return HelloReply()


@pytest.mark.parametrize("how", ["details", "abort", "trailers"])
async def test_a_status_too_large_for_its_header_still_ends_the_call(how: str) -> None:
    async with served(Huge(how)) as client:
        with pytest.raises(RpcError) as caught:
            async with asyncio.timeout(5):  # no deadline on the call: it must end by itself
                await GreeterStub(client).SayHello(HelloRequest())
        assert caught.value.code() in (StatusCode.UNKNOWN, StatusCode.INTERNAL)


class Odd(BaseException):
    pass


class Raises(GreeterServicer):
    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        raise self.error()


@pytest.mark.parametrize("error", [GeneratorExit, Odd])
async def test_a_servicer_raising_a_base_exception_is_answered_unknown(
    error: type[BaseException],
) -> None:
    async with served(Raises(error)) as client:
        with pytest.raises(RpcError) as caught:
            async with asyncio.timeout(5):
                await GreeterStub(client).SayHello(HelloRequest())
        assert caught.value.code() is StatusCode.UNKNOWN


class Plain(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        return HelloReply(message="ok")


class RaisingInterceptor:
    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        raise ValueError("an interceptor's bug")


class CachingInterceptor:
    async def intercept_call(
        self, details: ClientCallDetails, proceed: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        return HelloReply(message="cached")  # answered without making the call


@pytest.mark.parametrize("case", ["raises", "answers", "huge-metadata", "infinite-timeout"])
async def test_the_call_object_always_settles(case: str) -> None:
    async with served(Plain(), binary=case != "infinite-timeout") as client:
        if case == "raises":
            call = GreeterStub(Channel(client, interceptors=[RaisingInterceptor()])).SayHello(
                HelloRequest()
            )
            with pytest.raises(ValueError):
                await call
            expected = StatusCode.UNKNOWN
        elif case == "answers":
            call = GreeterStub(Channel(client, interceptors=[CachingInterceptor()])).SayHello(
                HelloRequest()
            )
            assert (await call).message == "cached"
            expected = StatusCode.OK
        elif case == "huge-metadata":
            with pytest.raises(ValueError):  # InvalidMetadata: over what a peer takes
                GreeterStub(client).SayHello(
                    HelloRequest(), metadata=[(f"k{i}", "v" * 300) for i in range(250)]
                )
            return
        else:
            call = GreeterStub(client).SayHello(HelloRequest(), timeout=float("inf"))
            assert (await call).message == "ok"
            expected = StatusCode.OK
        async with asyncio.timeout(2):
            assert await call.code() is expected
        assert call.done()


class NoReply(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        raise RpcError(StatusCode.OK, "")  # an OK status and no reply: a broken server


async def test_a_unary_call_that_ends_ok_without_a_reply_is_internal_on_every_accessor() -> None:
    async with served(NoReply()) as client:
        call = GreeterStub(client).SayHello(HelloRequest(), timeout=5)
        with pytest.raises(RpcError) as caught:
            await call
        assert caught.value.code() is StatusCode.INTERNAL
        assert await call.code() is StatusCode.INTERNAL


async def test_a_timeout_of_zero_is_deadline_exceeded_not_ok() -> None:
    async with served(Plain(), binary=False) as client:
        peer = client.p2pt.peers[client.servers_of("helloworld.Greeter")[0]]
        _, answer = await client.p2pt.send(
            peer, {"call": "/helloworld.Greeter/SayHello", "msg": {}, "timeout": 0}
        )
        assert answer["status"]["code"] == StatusCode.DEADLINE_EXCEEDED.value[0]  # type: ignore[index, call-overload]


async def test_queued_json_is_counted_by_what_it_holds() -> None:
    assert held_size([[] for _ in range(1000)]) >= 1000 * 56
    assert held_size(b"x" * 100) == 100


async def test_stop_returns_after_the_grace_even_if_a_servicer_ignores_cancellation() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "generated")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "stubborn_servicer.py"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert "stop returned after" in out.decode(), out


async def test_a_hello_cannot_pin_much_memory() -> None:
    from p2prpc.mux import HELLO_MAX_EXTRA, HELLO_MAX_NAMES, PeerInfo
    from p2prpc.wire.held import held_size

    hello = {
        "services": [f"s{i}" for i in range(100_000)] + ["x" * 100_000],
        "junk": ["y" * 1000] * 1000,
        "small": 1,
    }
    info = PeerInfo.from_hello("ab" * 20, hello)
    assert len(info.services) == HELLO_MAX_NAMES
    assert "junk" not in info.extra  # over the room a hello's extras may take
    assert len(str(info.extra)) <= HELLO_MAX_EXTRA
    # Room is what the extras hold parsed, not their JSON: 60 KB of empty lists holds 1.4 MB.
    cheap_to_send = {"small": 1, "lists": [[] for _ in range(20_000)]}
    info = PeerInfo.from_hello("ab" * 20, cheap_to_send)
    assert "lists" not in info.extra and info.extra == {"small": 1}
    assert held_size(info.extra) <= HELLO_MAX_EXTRA


async def test_forged_publishers_cannot_grow_a_subscribers_state() -> None:
    from google.protobuf.wrappers_pb2 import StringValue

    from p2prpc.pubsub import Topic, router_of
    from p2prpc.pubsub.router import MAX_STREAMS
    from p2prpc.testing import loopback_node
    from p2prpc.wire.envelope import Envelope, Kind

    node = loopback_node([])  # never started: the router's rules need no network
    router = router_of(node)
    Topic(node, "t", StringValue).subscribe()
    for i in range(MAX_STREAMS + 500):
        origin = f"{i:040x}"
        router._on_publish(
            "c" * 40,
            Envelope(Kind.PUBLISH, 1, -1, payload=b"", has_payload=True, topic="t", origin=origin),
        )
    assert len(router._order) <= MAX_STREAMS
    assert len(router._anonymous_seq) <= MAX_STREAMS
    await node.close()
