"""Memory a peer can make a node hold, in both directions, and refusals that the other side hears.

Budgets: calls served at once per peer (``max_calls_per_peer``), unread request messages per call
(bytes and count), and the send queue toward a peer (``max_send_queue``), whose frames for calls
that have ended are withdrawn.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from rpc_processes import example_server

from p2prpc.errors import RpcError
from p2prpc.rpc import (
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    StatusCode,
    StreamStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.testing import loopback_node, mesh, until
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
S = StringValue
ONCE = RetryPolicy(max_attempts=1)


class Servicer:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.two_running = asyncio.Event()
        self.running = 0

    async def Slow(self, request: S, context: ServicerContext) -> S:
        self.running += 1
        if self.running == 2:
            self.two_running.set()
        await self.release.wait()
        return S(value="done")

    async def Deaf(self, requests: AsyncIterator[S], context: ServicerContext) -> AsyncIterator[S]:
        """Never reads its requests."""
        await self.release.wait()
        yield S(value="late")

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        return {
            "/b.S/Slow": Handler(self.Slow, Cardinality.UNARY_UNARY, S, S),
            "/b.S/Deaf": Handler(self.Deaf, Cardinality.STREAM_STREAM, S, S),
        }


async def test_calls_past_the_per_peer_cap_are_refused_at_once() -> None:
    async with mesh(2, max_calls_per_peer=2) as m:
        server, client = m.nodes
        servicer = Servicer()
        server.add_service("b.S", servicer.handlers())
        await client.wait_for_server("b.S", timeout=10)
        slow = UnaryUnaryMethod(Channel(client, retry_policy=ONCE), "/b.S/Slow", S, S)
        first, second = slow(S(), timeout=30), slow(S(), timeout=30)
        await asyncio.wait_for(servicer.two_running.wait(), 10)
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(slow(S(), timeout=30), 10)
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED
        servicer.release.set()
        assert [await first, await second] == [S(value="done")] * 2
        assert await slow(S(), timeout=10) == S(value="done")  # room again


async def test_unread_requests_past_the_budget_end_the_call_and_the_client_hears() -> None:
    """A client that does not honour windows (as toward a server whose hello announced none,
    an older node) meets the per-call cap; one that does waits (``test_flow_control.py``)."""
    async with mesh(2, max_message_size=64 * 1024) as m:  # budget: 4 × 64 KiB of unread requests
        server, client = m.nodes
        server.add_service("b.S", Servicer().handlers())
        await client.wait_for_server("b.S", timeout=10)
        client.peers[server.peer_id].window = 0  # the client sees no window: it never waits
        call = StreamStreamMethod(client, "/b.S/Deaf", S, S)(timeout=60)
        for _ in range(100):  # 800 KiB in all; the refusal may come back while writing
            try:
                await call.write(S(value="x" * 8192))
            except asyncio.InvalidStateError:
                break
        with pytest.raises(RpcError) as caught:
            await asyncio.wait_for(call.read(), 10)
        assert caught.value.code() is StatusCode.RESOURCE_EXHAUSTED


async def test_the_send_queue_toward_a_peer_that_stopped_reading_is_bounded_and_withdrawn() -> None:
    """A server frozen with SIGSTOP; 1 MB calls with a 2 s timeout: every call ends with a status,
    the queue toward the server never passes its cap, and what failed calls queued is withdrawn."""
    import helloworld_p2prpc
    import helloworld_pb2

    cap = 4 * 2**20
    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        example_server(tracker.url, "budget-test") as server,
        loopback_node(
            [tracker.url], "budget-test", keepalive_interval=None, max_send_queue=cap
        ) as client,
    ):
        server_id = await client.wait_for_server("helloworld.Greeter", timeout=30)
        greeter = helloworld_p2prpc.GreeterStub(Channel(client, retry_policy=ONCE))
        big = helloworld_pb2.HelloRequest(name="x" * 2**20)
        assert (await greeter.SayHello(helloworld_pb2.HelloRequest(name="a"))).message
        server.send_signal(signal.SIGSTOP)
        channel = client.p2pt._channel_for(server_id)
        most = 0
        codes = []
        for _ in range(4):
            calls = [greeter.SayHello(big, timeout=2) for _ in range(5)]
            for call in calls:
                with pytest.raises(RpcError) as caught:
                    await call
                codes.append(caught.value.code())
                most = max(most, channel.queued_bytes)
        assert set(codes) <= {StatusCode.DEADLINE_EXCEEDED, StatusCode.RESOURCE_EXHAUSTED}
        assert StatusCode.DEADLINE_EXCEEDED in codes
        assert most <= cap
        # Nothing of the failed calls is still queued: at most their small cancels are.
        assert channel.queued_bytes < 4096


# -- what a peer's JSON-form messages make a node hold: counted as parsed, per peer and in all ---


class Hostile:
    """A plain P2PT peer in a node's swarm that writes envelopes by hand (a JavaScript P2PT app
    can send anything), and collects what comes back on each message id."""

    def __init__(self, p2pt: Any, node_id: str) -> None:
        self.p2pt = p2pt
        self.node_id = node_id
        self.answers: dict[int, list[dict[str, Any]]] = {}
        self.changed = asyncio.Event()
        p2pt.on("msg", self._on_msg)

    def _on_msg(self, peer: Any, msg: Any) -> None:
        if isinstance(msg, dict) and peer.message_id is not None:
            self.answers.setdefault(peer.message_id, []).append(msg)
            self.changed.set()

    def post(self, msg_id: int, value: Any) -> None:
        self.p2pt.post(self.p2pt.peers[self.node_id], value, msg_id)

    async def wait(self, condition: Any, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    def status(self, msg_id: int) -> dict[str, Any] | None:
        return next((m["status"] for m in self.answers.get(msg_id, []) if "status" in m), None)


@asynccontextmanager
async def hostile_peer(**node_options: Any) -> AsyncIterator[tuple[Any, Hostile]]:
    from p2prpc.testing import loopback_p2pt

    async with mesh(1, **node_options) as m:
        node = m.nodes[0]
        attacker = loopback_p2pt([m.tracker.url], "p2prpc")
        try:
            await attacker.start()
            await until(
                lambda: node.peer_id in attacker.peers and attacker.peer_id in node.peers,
                (attacker, "peerconnect"),
                (node.p2pt, "peerconnect"),  # the node lists a peer on connecting, before hello
                timeout=30,
            )
            yield node, Hostile(attacker, node.peer_id)
        finally:
            await attacker.destroy()


RESOURCE_EXHAUSTED = StatusCode.RESOURCE_EXHAUSTED.value[0]


async def test_a_long_call_keeps_its_decoded_request_not_the_json_it_came_as() -> None:
    """Health ``Watch`` calls in the JSON form whose request carries 90 KB of ``[{},{},...]``
    (2 MB parsed, and ignored by the decoder): once decoded, nothing of it is held, however long
    the calls live."""
    import gc
    import tracemalloc

    calls, count = 10, 30_000
    async with hostile_peer() as (node, attacker):
        junk = [{}] * count
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for i in range(calls):
                attacker.post(
                    200_000 + i,
                    {"call": "/grpc.health.v1.Health/Watch", "msg": {"service": "", "x": junk}},
                )
            # Each call is running once its first status has come back.
            await attacker.wait(
                lambda: all(attacker.answers.get(200_000 + i) for i in range(calls)), 20
            )
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        sent = calls * (3 * count + 60)
        assert len(endpoint_of(node)._server) == calls  # all still running
        assert node.queued.held() == 0
        assert after - before < 4 * sent  # the 20 MB the requests parsed to are gone


async def test_unread_requests_count_against_a_budget_for_the_whole_peer() -> None:
    """Three calls, each within its own budget of unread requests (4 × 64 KiB), together over
    the peer's: the call that passes it ends RESOURCE_EXHAUSTED, and the node never holds more
    than the peer's budget for it."""
    budget = 300_000
    async with hostile_peer(max_message_size=64 * 1024, max_queued_bytes_per_peer=budget) as (
        node,
        attacker,
    ):
        node.add_service("b.S", Servicer().handlers())
        most = 0
        for call in range(3):
            attacker.post(300_000 + call, {"call": "/b.S/Deaf"})
        for seq in range(8):  # 8 × 20 KB a call, 480 KB in all
            for call in range(3):
                attacker.post(300_000 + call, {"msg": "x" * 20_000, "seq": seq})
        await attacker.wait(lambda: any(attacker.status(300_000 + c) for c in range(3)))
        most = max(most, node.queued.held(attacker.p2pt.peer_id))
        refused = [c for c in range(3) if attacker.status(300_000 + c)]
        assert refused
        for c in refused:
            status = attacker.status(300_000 + c)
            assert status is not None and status["code"] == RESOURCE_EXHAUSTED
            assert "from this peer" in status["details"]
        assert most <= budget
        assert node.queued.held() <= budget


async def test_a_call_whose_first_request_passes_the_peers_budget_is_refused_at_once() -> None:
    budget = 100_000
    async with hostile_peer(max_queued_bytes_per_peer=budget) as (node, attacker):
        node.add_service("b.S", Servicer().handlers())
        attacker.post(400_000, {"call": "/b.S/Deaf", "msg": "x" * 60_000})  # waits, unread
        attacker.post(400_001, {"call": "/b.S/Deaf", "msg": "x" * 60_000})  # would pass it
        await attacker.wait(lambda: attacker.status(400_001) is not None)
        status = attacker.status(400_001)
        assert status is not None and status["code"] == RESOURCE_EXHAUSTED
        assert attacker.status(400_000) is None  # the first goes on
        assert 60_000 < node.queued.held() <= budget
        attacker.post(400_000, {"cancel": True})
        await until(lambda: node.queued.held() == 0, (node.p2pt, "msg"))


async def test_a_json_call_too_large_parsed_is_refused_unparsed_and_answered() -> None:
    async with hostile_peer(max_parsed_size=1_000_000) as (node, attacker):
        warned: list[Exception] = []
        node.p2pt.on("peerwarning", lambda peer, error: warned.append(error))
        attacker.post(
            500_000,
            {"call": "/grpc.health.v1.Health/Check", "msg": {"x": [{}] * 100_000}},  # 7 MB parsed
        )
        await attacker.wait(lambda: attacker.status(500_000) is not None)
        status = attacker.status(500_000)
        assert status is not None and status["code"] == RESOURCE_EXHAUSTED
        from p2prpc.errors import ParsedTooBig

        assert any(isinstance(e, ParsedTooBig) for e in warned)


async def test_unread_replies_count_against_a_budget_for_the_whole_peer() -> None:
    """A server that streams replies nobody reads to two calls, each within its own budget of
    unread replies, together over the peer's: a call ends RESOURCE_EXHAUSTED, the server is told
    (cancel), and the client never holds more than the budget for it."""
    from p2prpc.rpc import UnaryStreamMethod

    budget = 150_000
    async with hostile_peer(max_message_size=64 * 1024, max_queued_bytes_per_peer=budget) as (
        node,
        server,
    ):
        calls: list[int] = []

        def on_call(peer: Any, msg: Any) -> None:
            if isinstance(msg, dict) and "call" in msg:
                calls.append(peer.message_id)
                for seq in range(6):  # 6 × 20 KB each
                    server.post(peer.message_id, {"reply": "x" * 20_000, "seq": seq})

        server.p2pt.on("msg", on_call)
        server.post(600_000, {"hello": {"v": 1, "services": ["b.S"], "binary": False}})
        await node.wait_for_server("b.S", 10)
        method = UnaryStreamMethod(Channel(node, retry_policy=ONCE), "/b.S/Stream", S, S)
        first, second = method(S(), timeout=30), method(S(), timeout=30)

        def cancelled() -> list[int]:
            return [c for c in calls if any("cancel" in m for m in server.answers.get(c, []))]

        await server.wait(lambda: len(calls) == 2 and bool(cancelled()))
        assert len(cancelled()) == 1
        codes = []
        for call in (first, second):
            if call.done():
                codes.append(await call.code())
        assert StatusCode.RESOURCE_EXHAUSTED in codes
        assert node.queued.held(server.p2pt.peer_id) <= budget
        for call in (first, second):
            call.cancel()
        assert node.queued.held() == 0  # what the calls held is given back as they end


# -- what a node keeps of JSON-form payloads once their messages are handled ---------------------

#: ``[{},{},...]``: 3 characters a dict, 72 bytes each parsed (24 times what was sent).
JUNK_COUNT = 10_000


def _junk_request() -> dict[str, Any]:
    """A health request carrying 30 KB of ``[{},{},...]`` under an unknown field (720 KB
    parsed): the decoder ignores it."""
    return {"service": "", "x": [{}] * JUNK_COUNT}


async def _growth(send: Callable[[], Any], settle: Callable[[], Any]) -> int:
    """Bytes traced memory grew by from ``send()`` until ``await settle()`` returns, collected."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        send()
        await settle()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before


def _kept_bound(sent: int, messages: int) -> int:
    """What a node may keep of JSON messages: 4 times what was sent and a little a message,
    plus what the test's own peers allocate meanwhile."""
    return 4 * sent + 1024 * messages + 300_000


@pytest.mark.parametrize("readable", [True, False], ids=["decodes", "does-not-decode"])
async def test_unread_json_requests_are_kept_decoded_not_parsed(readable: bool) -> None:
    """A request stream nobody reads, each JSON request 30 KB of ``[{},{},...]`` (720 KB
    parsed): what waits is the decoded request (or the status its decoding gave), about what
    was sent, and the budget counts that; the call then ends as the requests are read."""
    from grpc_health.v1.health_pb2 import HealthCheckRequest

    release = asyncio.Event()

    async def deaf(requests: AsyncIterator[Any], context: ServicerContext) -> AsyncIterator[Any]:
        await release.wait()
        async for _ in requests:
            pass
        yield HealthCheckRequest(service="read")

    count = 8
    async with hostile_peer(max_message_size=4 * 2**20) as (node, attacker):
        node.add_service(
            "b.S",
            {
                "/b.S/Deaf": Handler(
                    deaf, Cardinality.STREAM_STREAM, HealthCheckRequest, HealthCheckRequest
                )
            },
        )
        request = _junk_request() if readable else {"service": [{}] * JUNK_COUNT}
        call_id = 800_000

        def send() -> None:
            attacker.post(call_id, {"call": "/b.S/Deaf", "msg": request})
            for seq in range(1, count):
                attacker.post(call_id, {"msg": request, "seq": seq})

        call = lambda: endpoint_of(node)._server.get((attacker.p2pt.peer_id, call_id))  # noqa: E731

        async def settle() -> None:
            await until(
                lambda: call() is not None and call()._next_seq == count,  # type: ignore[union-attr]
                (node.p2pt, "msg"),
            )

        grown = await _growth(send, settle)
        sent = count * (3 * JUNK_COUNT + 60)
        assert grown < _kept_bound(sent, count)
        assert node.queued.held() < 1024 * count  # charged as kept, not as parsed
        release.set()
        attacker.post(call_id, {"end": True, "seq": count})
        await attacker.wait(lambda: attacker.status(call_id) is not None)
        status = attacker.status(call_id)
        assert status is not None
        if readable:
            assert status["code"] == StatusCode.OK.value[0]
            replies = [m["reply"] for m in attacker.answers[call_id] if "reply" in m]
            assert replies == [{"service": "read"}]
        else:
            assert status["code"] == StatusCode.INVALID_ARGUMENT.value[0]
        assert node.queued.held() == 0


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw-json"])
async def test_unread_json_replies_are_kept_decoded_or_as_text_not_parsed(raw: bool) -> None:
    """A server streams JSON replies of 30 KB of ``[{},{},...]`` that nobody reads: a typed
    call keeps each decoded, a raw JSON call (``JSONMethod``) keeps compact text, parsed when
    read; either is about what was sent."""
    from grpc_health.v1.health_pb2 import HealthCheckRequest

    from p2prpc.rpc import UnaryStreamMethod
    from p2prpc.rpc.client import JSONMethod

    count = 8
    async with hostile_peer(max_message_size=4 * 2**20, binary=not raw) as (node, server):
        calls: list[int] = []
        reply = _junk_request()

        def on_call(peer: Any, msg: Any) -> None:
            if isinstance(msg, dict) and "call" in msg:
                calls.append(peer.message_id)

        server.p2pt.on("msg", on_call)
        server.post(600_001, {"hello": {"v": 1, "services": ["b.S"], "binary": False}})
        await node.wait_for_server("b.S", 10)
        channel = Channel(node, retry_policy=ONCE)
        if raw:
            call: Any = JSONMethod(channel, "/b.S/Stream")([{}], timeout=60)
        else:
            method = UnaryStreamMethod(channel, "/b.S/Stream", S, HealthCheckRequest)
            call = method(S(), timeout=60)
        await server.wait(lambda: len(calls) == 1)

        def send() -> None:
            for seq in range(count):
                server.post(calls[0], {"reply": reply, "seq": seq})

        async def settle() -> None:
            attempt = call._attempt
            await until(lambda: len(attempt.replies) == count, (node.p2pt, "msg"))

        grown = await _growth(send, settle)
        sent = count * (3 * JUNK_COUNT + 60)
        assert grown < _kept_bound(sent, count)
        held = node.queued.held()
        assert 0 < held < (sent + 1024 * count if raw else 1024 * count)
        first = await asyncio.wait_for(call.read(), 5)
        if raw:
            assert first == reply  # the JSON as it came
        else:
            assert first == HealthCheckRequest()
        call.cancel()


async def test_a_paced_peers_json_envelopes_wait_as_text_not_parsed() -> None:
    """A peer past its work budget has its envelopes wait; JSON ones wait as compact text (about
    what was sent), not as the values they parsed to (24 times that), and are charged so."""
    count = 8
    # Each call costs about 9 MB of work: at 4 MiB/s the next waits about 2 s for its turn.
    async with hostile_peer(work_rate=4 * 2**20, work_burst=2**16) as (node, attacker):
        peer_id = attacker.p2pt.peer_id
        call_ids = [810_000 + i for i in range(count)]

        def send() -> None:
            for call_id in call_ids:
                attacker.post(
                    call_id, {"call": "/grpc.health.v1.Health/Check", "msg": _junk_request()}
                )

        def waiting() -> int:
            delayed = node._delayed.get(peer_id)
            return len(delayed.queue) if delayed is not None else 0

        async def settle() -> None:
            # The first is served at once (its work puts the peer in debt); the rest wait.
            await until(lambda: waiting() == count - 1, (node.p2pt, "msg"))

        grown = await _growth(send, settle)
        sent = count * (3 * JUNK_COUNT + 60)
        assert grown < _kept_bound(sent, count)
        assert node.delayed_bytes(peer_id) < 2 * sent  # charged as kept, not as parsed
        # They are served in turn as the budget refills, each answered.
        await attacker.wait(lambda: attacker.status(call_ids[1]) is not None, 15)
        assert attacker.status(call_ids[0])["code"] == 0  # type: ignore[index]
        assert attacker.status(call_ids[1])["code"] == 0  # type: ignore[index]


async def test_what_waits_for_a_paced_peer_is_charged_at_no_less_than_it_holds() -> None:
    """Envelopes of a paced peer wait charged with everything they hold, metadata included (256
    entries in 800 bytes of JSON hold about 17 KB): what waits never holds more than
    ``max_delayed_bytes`` says."""
    count = 200
    async with hostile_peer(work_rate=2**20, work_burst=2**16) as (node, attacker):
        peer_id = attacker.p2pt.peer_id
        # A call that parses to much puts the peer in debt for seconds: what follows waits.
        attacker.post(820_000, {"call": "/grpc.health.v1.Health/Check", "msg": _junk_request()})

        def send() -> None:
            for i in range(count):
                attacker.post(821_000 + i, {"headers": {"a": [""] * 256}})

        def waiting() -> int:
            delayed = node._delayed.get(peer_id)
            return len(delayed.queue) if delayed is not None else 0

        async def settle() -> None:
            await until(lambda: waiting() == count, (node.p2pt, "msg"))

        grown = await _growth(send, settle)
        assert node.delayed_bytes(peer_id) >= grown  # charged at no less than it holds
