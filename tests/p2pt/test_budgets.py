"""What one peer can make another hold at the P2PT layer: byte budgets and the age limit.

Over real WebRTC on loopback: the sending side writes raw P2PT frames that start messages and never
finish them, the receiving side refuses past its budgets, reports each refusal with ``peerwarning``
and stays usable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from p2prpc import P2PT, Peer
from p2prpc.errors import TooManyPending
from p2prpc.testing import swarm
from p2prpc.wire.frames import MessageExpired

pytestmark = pytest.mark.asyncio


def unfinished(msg_id: int, text: str) -> str:
    """The first chunk of a message whose last chunk never comes."""
    return "^" + json.dumps({"id": msg_id, "msg": text, "c": 0})


def warnings(p2pt: P2PT) -> asyncio.Queue[tuple[Peer, Exception]]:
    queue: asyncio.Queue[tuple[Peer, Exception]] = asyncio.Queue()
    p2pt.on("peerwarning", lambda peer, error: queue.put_nowait((peer, error)))
    return queue


def echo(p2pt: P2PT) -> None:
    p2pt.on("msg", lambda peer, msg: peer.respond(msg))


async def echo_works(a: P2PT, b: P2PT) -> None:
    """``b`` (an :func:`echo`) answers ``a``."""
    _, reply = await asyncio.wait_for(a.send(a.peers[b.peer_id], "still there?"), 10)
    assert reply == "still there?"


async def test_a_peer_cannot_make_another_hold_more_than_its_byte_budget() -> None:
    budget = 200_000
    async with swarm(2, max_peer_bytes=budget, max_total_bytes=10 * budget) as s:
        a, b = s.peers
        warned = warnings(b)
        reassembler = b._reassembler
        held: list[int] = []
        b.on("data", lambda *_: held.append(reassembler.held_bytes))
        chunk = "x" * 15_000
        a.send_raw(a.peers[b.peer_id], [unfinished(100_000 + i, chunk) for i in range(30)])
        peer, error = await asyncio.wait_for(warned.get(), 10)
        assert peer.id == a.peer_id
        assert isinstance(error, TooManyPending)
        assert "bytes" in str(error)
        echo(b)
        await echo_works(a, b)
        assert max(held) <= budget
        assert reassembler.held_bytes_of(a.peer_id) <= budget
        assert reassembler.held_bytes > budget - 15_100  # it did fill up to the budget
        assert b.peers[a.peer_id].connected


async def test_unfinished_messages_expire_even_when_nothing_more_arrives() -> None:
    async with swarm(2, max_message_age=0.3) as s:
        a, b = s.peers
        warned = warnings(b)
        a.send_raw(a.peers[b.peer_id], [unfinished(123_456, "half a message")])
        peer, error = await asyncio.wait_for(warned.get(), 10)
        assert isinstance(error, MessageExpired)
        assert "123456" in str(error)
        assert peer.id == a.peer_id
        assert b._reassembler.held_bytes == 0
        assert b._reassembler.pending == 0
        echo(b)
        await echo_works(a, b)


async def test_the_total_budget_holds_across_peers() -> None:
    budget = 100_000
    options: dict[str, Any] = {"max_peer_bytes": budget, "max_total_bytes": budget + 20_000}
    async with swarm(3, **options) as s:
        a, b, c = s.peers
        warned = warnings(c)
        chunk = "y" * 15_000
        a.send_raw(a.peers[c.peer_id], [unfinished(100_000 + i, chunk) for i in range(5)])
        b.send_raw(b.peers[c.peer_id], [unfinished(100_000 + i, chunk) for i in range(5)])
        _, error = await asyncio.wait_for(warned.get(), 10)
        assert isinstance(error, TooManyPending)
        assert "all peers" in str(error)
        assert c._reassembler.held_bytes <= budget + 20_000
        echo(c)
        await echo_works(a, c)
        await echo_works(b, c)


async def test_a_handler_that_raises_does_not_cost_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with swarm(2) as s:
        a, b = s.peers
        received: list[object] = []
        after = asyncio.Event()

        def handler(peer: Peer, msg: object) -> None:
            received.append(msg)
            if msg == "boom":
                raise RuntimeError("a bug in the application's handler")
            after.set()

        b.on("msg", handler)
        a.send(a.peers[b.peer_id], "boom")
        a.send(a.peers[b.peer_id], "after")
        await asyncio.wait_for(after.wait(), 10)
        assert received == ["boom", "after"]
        assert a.peer_id in b.peers
        assert "a bug in the application's handler" in caplog.text


async def test_a_json_message_too_large_parsed_is_refused_before_it_is_parsed() -> None:
    """``[{},{},...]`` holds 24 times its text parsed: over ``max_parsed_size`` it is refused
    unparsed (``peerwarning`` naming the message) and the receiver holds about its text, never
    the parse."""
    import gc
    import tracemalloc

    from p2prpc.errors import ParsedTooBig
    from p2prpc.wire.frames import encode_message

    count = 200_000  # 600 KB of text, 14 MB parsed
    async with swarm(2, max_parsed_size=2_000_000) as s:
        a, b = s.peers
        warned = warnings(b)
        got: list[object] = []
        b.on("msg", lambda peer, msg: got.append(msg))
        frames = encode_message([{}] * count, 123_457)  # written before anything is measured
        sent = sum(len(f) for f in frames)
        gc.collect()
        tracemalloc.start()
        try:
            a.send_raw(a.peers[b.peer_id], frames)
            peer, error = await asyncio.wait_for(warned.get(), 10)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peer.id == a.peer_id
        assert isinstance(error, ParsedTooBig) and error.message_id == 123_457
        assert error.estimate > 24 * count
        assert peak < 6 * sent  # both ends' copies of the text in flight; the parse never was
        assert not got
        echo(b)
        await echo_works(a, b)  # and the peer stays connected


async def test_messages_holds_at_most_max_bytes_for_a_reader_that_does_not_read() -> None:
    from p2prpc.wire.held import held_size

    budget = 200_000
    async with swarm(2) as s:
        a, b = s.peers
        reader = b.messages(maxsize=1000, max_bytes=budget)
        first = asyncio.ensure_future(reader.__anext__())
        a.post(a.peers[b.peer_id], "start", 100_000)
        assert (await asyncio.wait_for(first, 10))[1] == "start"
        arrived = asyncio.Event()
        seen: list[object] = []

        def note(peer: Peer, msg: object) -> None:
            seen.append(msg)
            if len(seen) == 20:
                arrived.set()

        b.on("msg", note)
        value = [{} for _ in range(1000)]  # 3 KB of text, about 72 KB held
        for i in range(20):
            a.post(a.peers[b.peer_id], value, 100_001 + i)
        await asyncio.wait_for(arrived.wait(), 10)
        kept = []
        while len(kept) < 20 - b.messages_dropped:
            kept.append((await asyncio.wait_for(reader.__anext__(), 5))[1])
        assert b.messages_dropped > 0
        assert sum(held_size(v) for v in kept) <= budget
        assert kept == [value] * len(kept)
        await reader.aclose()
