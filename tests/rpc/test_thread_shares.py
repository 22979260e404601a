"""Plain ``def`` methods share the server's thread pool among peers: one peer cannot take it all,
with request streams it leaves silent or with methods still running after their calls ended.
Whole peers over real WebRTC."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from p2prpc.errors import RpcError
from p2prpc.rpc import Channel, RetryPolicy, StatusCode
from p2prpc.testing import mesh

SERVICE = "threads.Pool"
ONCE = RetryPolicy(max_attempts=1)


class PoolServicer:
    """Plain ``def`` methods (run on the server's thread pool, as grpc.aio runs them)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0  # methods running in a thread now
        self.entered = 0  # methods that began
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()

    def _enter(self) -> None:
        with self.lock:
            self.running += 1
            self.entered += 1
        self.loop.call_soon_threadsafe(self.changed.set)

    async def wait_running(self, count: int, timeout: float = 10) -> None:
        """Wait until ``count`` methods or more run in threads at once."""
        async with asyncio.timeout(timeout):
            while self.running < count:
                self.changed.clear()
                await self.changed.wait()

    def _leave(self) -> None:
        with self.lock:
            self.running -= 1

    def echo(self, request: bytes, context: Any) -> bytes:
        return request

    def total(self, requests: Iterator[bytes], context: Any) -> bytes:
        self._enter()
        try:
            return b"".join(requests)
        finally:
            self._leave()

    def slow(self, request: bytes, context: Any) -> bytes:
        """Works for as long as the test lets it (as a method doing a long computation)."""
        self._enter()
        try:
            self.release.wait(30)
            return request
        finally:
            self._leave()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
                "Total": grpc.stream_unary_rpc_method_handler(self.total),
                "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            },
        )


async def _silent() -> AsyncIterator[bytes]:
    """A request stream that sends one request, then nothing, and never ends."""
    yield b"first"
    await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_one_peer_cannot_hold_every_thread_of_the_pool_with_silent_request_streams() -> None:
    """A peer opens as many client-streaming calls to a plain ``def`` method as the pool has
    threads, sends one request each, then nothing (no deadline): its methods hold at most its
    share (half the pool), the rest wait holding no thread, and another peer is served; when the
    peer's first call ends, its waiting one runs."""
    pool = ThreadPoolExecutor(2, thread_name_prefix="migration")
    servicer = PoolServicer()
    try:
        async with mesh(3, "threads-pool", migration_thread_pool=pool) as m:
            server, attacker, victim = m.nodes
            assert server.server.threads.per_peer == 1
            server.add_generic_rpc_handlers([servicer.handler()])
            for node in (attacker, victim):
                await node.wait_for_server(SERVICE, timeout=10)
            total = (
                Channel(attacker, retry_policy=ONCE)
                .to(server.peer_id)
                .stream_unary(f"/{SERVICE}/Total")
            )
            held = [asyncio.ensure_future(total(_silent())) for _ in range(2)]
            try:
                await servicer.wait_running(1)
                assert server.server.threads.held(attacker.peer_id) == 1
                echo = (
                    Channel(victim, retry_policy=ONCE)
                    .to(server.peer_id)
                    .unary_unary(f"/{SERVICE}/Echo")
                )
                assert await echo(b"ping", timeout=10) == b"ping"
                assert servicer.running == 1  # the attacker's second call still waits
                held[0].cancel()  # its thread's request iterator is woken, the thread returns
                await servicer.wait_running(1)
                await asyncio.wait([held[0]])
                async with asyncio.timeout(10):
                    while servicer.entered < 2:
                        servicer.changed.clear()
                        await servicer.changed.wait()
                assert server.server.threads.held(attacker.peer_id) == 1
            finally:
                for call in held:
                    call.cancel()
                await asyncio.gather(*held, return_exceptions=True)
    finally:
        servicer.release.set()
        await asyncio.to_thread(pool.shutdown, wait=True)


@pytest.mark.asyncio
async def test_a_peer_holds_no_more_threads_than_its_share_after_its_calls_end() -> None:
    """A plain ``def`` method keeps running (its thread held) after its call ended at its
    deadline; the peer's next call waits for that thread instead of taking another, so call
    after call the peer holds at most its share (here ``max_calls_per_peer``, 1)."""
    pool = ThreadPoolExecutor(4, thread_name_prefix="migration")
    servicer = PoolServicer()
    try:
        slots = {"migration_thread_pool": pool, "max_calls_per_peer": 1}
        async with mesh(2, "threads-slots", **slots) as m:
            server, attacker = m.nodes
            assert server.server.threads.per_peer == 1
            server.add_generic_rpc_handlers([servicer.handler()])
            await attacker.wait_for_server(SERVICE, timeout=10)
            slow = (
                Channel(attacker, retry_policy=ONCE)
                .to(server.peer_id)
                .unary_unary(f"/{SERVICE}/Slow")
            )
            for _ in range(3):
                with pytest.raises(RpcError) as caught:
                    await slow(b"x", timeout=0.5)
                assert caught.value.code() is StatusCode.DEADLINE_EXCEEDED
            await servicer.wait_running(1)
            assert servicer.running == 1
            assert servicer.entered == 1
            assert server.server.threads.held(attacker.peer_id) == 1
    finally:
        servicer.release.set()
        await asyncio.to_thread(pool.shutdown, wait=True)
