"""The thread shares of plain ``def`` methods against a hostile peer and unlucky orderings: each
test plays a fault a peer (or an ordering) can cause and states what must hold."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from p2prpc.errors import RpcError
from p2prpc.rpc import Channel, RetryPolicy
from p2prpc.rpc.serving import ThreadShares
from p2prpc.testing import mesh

SERVICE = "threads.Hostile"
ONCE = RetryPolicy(max_attempts=1)


class Signals:
    """Counters set from any thread, awaited on the loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def bump(self, name: str) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1
        # A generator the test left suspended is closed when it is collected, perhaps after the
        # test's loop has closed: its cleanup still counts, and wakes nobody.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.changed.set)

    def count(self, name: str) -> int:
        with self.lock:
            return self.counts.get(name, 0)

    async def wait(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


# -- ThreadShares, pure -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_freed_share_is_not_lost_when_the_waiter_it_woke_ends_in_the_same_turn() -> None:
    """A peer at its share has two calls waiting. One of its threads returns, and in the same
    turn of the loop the first waiting call ends (its peer cancelled it: a ``cancel`` envelope
    read in that turn). The freed share must go to the second waiting call; it must not wait
    until some other thread of the peer returns (here: never)."""
    pool = ThreadPoolExecutor(2)
    shares = ThreadShares(pool, 1)
    signals = Signals()
    release = threading.Event()

    def hold() -> None:
        signals.bump("held")
        release.wait(30)

    tasks: list[asyncio.Future[Any]] = []
    try:
        holder = asyncio.ensure_future(shares.run("peer", hold))
        tasks.append(holder)
        await signals.wait(lambda: signals.count("held") == 1)
        first = asyncio.ensure_future(shares.run("peer", lambda: "first"))
        second = asyncio.ensure_future(shares.run("peer", lambda: "second"))
        tasks += [first, second]
        await asyncio.sleep(0)  # one turn: each task takes its first step (FIFO)
        assert len(shares._waiting.get("peer", ())) == 2  # both wait for the peer's share
        give = shares._give

        def give_then_first_ends(peer_id: str) -> None:
            give(peer_id)  # the thread's return, as the pool reports it on the loop
            first.cancel()  # the first waiter's call ends in the same turn

        shares._give = give_then_first_ends  # type: ignore[method-assign]
        release.set()
        await asyncio.wait([holder], timeout=10)
        done, _ = await asyncio.wait([second], timeout=5)
        assert second in done, (
            f"the second waiting call never got the share freed for it "
            f"(held now: {shares.held('peer')}, waiting: {len(shares._waiting.get('peer', ()))})"
        )
        assert second.result() == "second"
    finally:
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


# -- whole peers ------------------------------------------------------------------------------


class FeedServicer:
    """A plain ``def`` reply stream (a generator run on the pool, as grpc.aio runs it) whose
    ``finally`` takes its time (a cleanup: flushing, releasing a connection), and a plain echo."""

    def __init__(self, signals: Signals) -> None:
        self.signals = signals
        self.release = threading.Event()

    def feed(self, request: bytes, context: Any) -> Iterator[bytes]:
        try:
            yield b"first"
            self.signals.bump("waiting")
            self.release.wait(30)  # a next item that takes its time
            yield b"second"
        finally:
            self.signals.bump("cleanup")
            self.release.wait(30)  # the cleanup, as long as the test lets it
            self.signals.bump("cleaned")

    def flood(self, request: bytes, context: Any) -> Iterator[bytes]:
        """Items larger than a third of the call's window: once the client stops reading, the
        generator stays suspended at its third ``yield`` (the server waits for the window)."""
        try:
            while True:
                self.signals.bump("yielded")
                yield b"x" * 400_000
        finally:
            self.signals.bump("cleanup")
            self.release.wait(30)  # the cleanup, as long as the test lets it
            self.signals.bump("cleaned")

    def echo(self, request: bytes, context: Any) -> bytes:
        return request

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Feed": grpc.unary_stream_rpc_method_handler(self.feed),
                "Flood": grpc.unary_stream_rpc_method_handler(self.flood),
                "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
            },
        )


@pytest.mark.asyncio
async def test_closing_a_peers_reply_generators_counts_in_its_share() -> None:
    """A peer starts plain ``def`` reply streams and cancels each after its first reply: each
    generator's ``close`` (its ``finally``) runs on the pool. When those closes are run outside
    the peer's share, a peer cancelling as many streams as the pool has threads holds every
    thread, and another peer's plain ``def`` call is never run: the share must count them as it
    counts a method still computing after its call ended."""
    pool = ThreadPoolExecutor(2, thread_name_prefix="hostile-pool")
    signals = Signals()
    servicer = FeedServicer(signals)
    try:
        async with mesh(3, "hostile21b-close", migration_thread_pool=pool) as m:
            server, attacker, victim = m.nodes
            assert server.server.threads.per_peer == 1
            server.add_generic_rpc_handlers([servicer.handler()])
            for node in (attacker, victim):
                await node.wait_for_server(SERVICE, timeout=10)
            flood = (
                Channel(attacker, retry_policy=ONCE)
                .to(server.peer_id)
                .unary_stream(f"/{SERVICE}/Flood")
            )
            call = flood(b"x", timeout=30)  # never read: the window shuts after 3 items
            await signals.wait(lambda: signals.count("yielded") >= 3)
            call.cancel()
            await signals.wait(lambda: signals.count("cleanup") >= 1)
            # What the first stream yielded (3, or a 4th its generator made before the window
            # stopped it, as the transport's timing allows), all before its close.
            yielded = signals.count("yielded")
            # The close holds the attacker's share: its next stream waits for it, on the loop.
            second = flood(b"x", timeout=30)
            echo = (
                Channel(victim, retry_policy=ONCE)
                .to(server.peer_id)
                .unary_unary(f"/{SERVICE}/Echo")
            )
            try:
                got = await echo(b"ping", timeout=5)
            except RpcError as e:
                got = e.code()
            assert server.server.threads.held(attacker.peer_id) == 1
            assert signals.count("yielded") == yielded  # the second stream has had no thread
            second.cancel()
            assert got == b"ping", (
                f"another peer's plain def call was not run ({got}): the attacker's cancelled "
                f"generators hold the pool (attacker's counted share: "
                f"{server.server.threads.held(attacker.peer_id)})"
            )
    finally:
        servicer.release.set()
        await asyncio.to_thread(pool.shutdown, wait=True)


@pytest.mark.asyncio
async def test_a_stopped_node_leaves_no_pool_of_its_own_running() -> None:
    """The server makes its own pool (none given) and shuts it down when its node stops. A
    plain ``def`` reply stream is waiting for its next item in that pool when the node stops:
    the call is cancelled, and closing its generator must not make a fresh pool that nobody
    shuts down (its threads would outlive the node, each a thread left running)."""
    signals = Signals()
    servicer = FeedServicer(signals)
    try:
        async with mesh(2, "hostile21b-stop") as m:
            server, client = m.nodes
            server.add_generic_rpc_handlers([servicer.handler()])
            await client.wait_for_server(SERVICE, timeout=10)
            feed = (
                Channel(client, retry_policy=ONCE)
                .to(server.peer_id)
                .unary_stream(f"/{SERVICE}/Feed")
            )
            call = feed(b"x", timeout=20)
            assert await call.read() == b"first"
            await signals.wait(lambda: signals.count("waiting") >= 1)
            await server.stop(None)
            with pytest.raises(RpcError):
                await call.read()
            servicer.release.set()
            left = server.server._threads
            assert left is None or getattr(left.pool, "_shutdown", True), (
                "after the node stopped, its server holds a pool that was never shut down"
            )
    finally:
        servicer.release.set()


@pytest.mark.asyncio
async def test_a_reply_generator_cancelled_while_computing_its_next_item_is_closed() -> None:
    """A plain ``def`` reply stream is computing its next item on the pool when its client
    cancels the call. Its generator cannot be closed while it runs (``generator already
    executing``); once that item is computed the generator must still be closed, so that its
    ``finally`` frees what it holds for the call, as the server promises for every call end."""
    signals = Signals()
    servicer = FeedServicer(signals)
    try:
        async with mesh(2, "hostile21b-close-running") as m:
            server, client = m.nodes
            server.add_generic_rpc_handlers([servicer.handler()])
            await client.wait_for_server(SERVICE, timeout=10)
            feed = (
                Channel(client, retry_policy=ONCE)
                .to(server.peer_id)
                .unary_stream(f"/{SERVICE}/Feed")
            )
            call = feed(b"x", timeout=20)
            assert await call.read() == b"first"
            await signals.wait(lambda: signals.count("waiting") >= 1)
            call.cancel()
            await until_no_call(server)
            servicer.release.set()  # the next item is computed: the generator can be closed now
            with contextlib.suppress(TimeoutError):
                await signals.wait(lambda: signals.count("cleanup") >= 1, timeout=10)
            assert signals.count("cleanup") == 1, (
                "the generator's finally never ran: its close failed while it was computing"
            )
    finally:
        servicer.release.set()


async def until_no_call(node: Any) -> None:
    from p2prpc.rpc.endpoint import endpoint_of

    await asyncio.wait_for(endpoint_of(node).wait_served(), 10)
