"""Connecting slots: how long a connection we answered may hold one, and who may take them.

Over real WebRTC on loopback. A connection we answered whose offerer never takes the answer (an
offer played back by someone who will not) holds a slot among ``max_connecting`` until
``answer_timeout``; offers that keep coming must not keep a new peer out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from p2prpc import P2PT
from p2prpc.swarm.connection import Connection, ConnectionState
from p2prpc.testing import loopback_p2pt, swarm
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import RTCOptions
from p2prpc.wire.tracker import (
    Announce,
    AnswerRelay,
    OfferPayload,
    encode_client_message,
    parse_server_message,
)

pytestmark = pytest.mark.asyncio

LOOPBACK = RTCOptions(ice_servers=[], host_addresses=["127.0.0.1"])


async def test_a_connection_we_answered_that_never_opens_frees_its_slot_after_answer_timeout() -> (
    None
):
    """The offerer takes no answer: the slot is free again after ``answer_timeout``, not after
    the 50 s an offer lives."""
    async with contextlib.AsyncExitStack() as stack:
        tracker = await stack.enter_async_context(TrackerServer("127.0.0.1", 0))
        member = loopback_p2pt([tracker.url], "slots", max_connecting=1, answer_timeout=1.0)
        stack.push_async_callback(member.destroy)
        answered: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        created = member.adopt

        def channel_created(channel: Connection, *args: Any) -> None:
            created(channel, *args)
            if not channel.initiator and not answered.done():
                answered.set_result(channel)

        member.adopt = channel_created  # type: ignore[method-assign]
        await member.start()
        async with asyncio.timeout(10):
            await tracker.wait_for(lambda stats: stats.peers == 1)

        # Someone offers through the tracker and never takes the answer.
        offerer = Connection(LOOPBACK, initiator=True)
        stack.push_async_callback(offerer.wait_closed)
        offer = OfferPayload(bytes.fromhex(offerer.name), await offerer.create_offer())
        ws = await stack.enter_async_context(connect(tracker.url, compression=None))
        await ws.send(
            encode_client_message(
                Announce(member.info_hash, os.urandom(20), numwant=1, offers=(offer,))
            )
        )
        channel = await asyncio.wait_for(answered, 10)
        started = time.monotonic()
        closed: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        on_close = channel.on_close

        def close() -> None:
            on_close()
            if not closed.done():
                closed.set_result(time.monotonic())

        channel.on_close = close
        async with asyncio.timeout(10):  # its answer reached the offerer, who leaves it there
            while not any(
                isinstance(m, AnswerRelay) for m in parse_server_message(await ws.recv())
            ):
                pass
        assert not member.accepts_offer_from("ab" * 20)  # the one slot is held
        ended = await asyncio.wait_for(closed, member.answer_timeout + 2)
        assert ended - started >= member.answer_timeout - 0.1
        assert channel.state is ConnectionState.CLOSED and channel.opened_at is None
        assert member.accepts_offer_from("ab" * 20)  # free again


def answered(p2pt: P2PT, peer_id: str, *, initiator: bool = False) -> Connection:
    """A connection to ``peer_id`` handed to ``p2pt`` as a tracker client hands one over: one
    we answered (or, ``initiator``, one whose answer we took), connecting until closed."""
    channel = Connection(p2pt.rtc_options, initiator=initiator)
    channel.peer_id = peer_id
    p2pt.adopt(channel)
    return channel


async def test_one_peer_takes_at_most_two_slots_and_backups_at_most_half() -> None:
    async with swarm(3, max_connecting=4, answer_grace=60.0) as s:
        a, b, c = s.peers
        x, y = "11" * 20, "22" * 20  # peers a is not connected to
        made = []
        try:
            made += [answered(a, x), answered(a, x)]
            assert not a.accepts_offer_from(x)  # two connecting: its share
            assert a.accepts_offer_from(y)
            made[0].close()
            assert a.accepts_offer_from(x)
            made += [answered(a, b.peer_id), answered(a, c.peer_id)]  # backups: 2 of the 4 slots
            assert not a.accepts_offer_from(b.peer_id) and not a.accepts_offer_from(c.peer_id)
            assert a.accepts_offer_from(y)  # 3 connecting: the 4th is a new peer's
            made.append(answered(a, y))
            assert not a.accepts_offer_from("33" * 20)  # all taken, none for answer_grace yet
        finally:
            await asyncio.gather(*(channel.wait_closed() for channel in made))


async def test_a_new_peer_takes_the_place_of_the_connection_we_answered_longest_ago() -> None:
    async with swarm(2, max_connecting=3, answer_grace=0.0) as s:
        a, b = s.peers
        ours = answered(a, "11" * 20, initiator=True)  # an answer we took: never given up
        oldest, newer = answered(a, "22" * 20), answered(a, b.peer_id)
        made = [ours, oldest, newer]
        try:
            assert not a.accepts_offer_from(b.peer_id)  # a backup never takes another's place
            assert a.accepts_offer_from("33" * 20)
            made.append(answered(a, "33" * 20))
            assert oldest.state is ConnectionState.CLOSED
            assert (
                ours.state is not ConnectionState.CLOSED
                and newer.state is not ConnectionState.CLOSED
            )
            assert len(a._connecting) == 3
        finally:
            await asyncio.gather(*(channel.wait_closed() for channel in made))
