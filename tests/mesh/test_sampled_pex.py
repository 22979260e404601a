"""Mesh attempts ending early: a relay's capped pex is a sample, not a loss."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest

from p2prpc.wire.envelope import Envelope, Kind
from p2prpc.wire.frames import new_message_id
from p2prpc.wire.mesh import MAX_LISTED, ListedPeer, encode_pex

from .test_mesh import meet_through_b, mesh, relayed_trio, until

pytestmark = pytest.mark.asyncio


async def test_an_attempt_is_not_ended_by_a_full_pex_that_leaves_its_target_out() -> None:
    # A relay with more than MAX_LISTED (64) other neighbours sends each a random sample of
    # them, reshuffled every round (Mesh._send_pex, encode_pex). a's offer to c went through b
    # and waits for c's answer; b's next exchange is a full sample that happens to leave c out,
    # though b is still connected to c and c's answer is on its way back through b.
    # _drop_unreachable read that as "b lost c" and abandoned the offer, so the answer found no
    # offer (take_answer: False) and the connection that would have opened never did.
    async with AsyncExitStack() as stack:
        tracker, a, b, c = await relayed_trio(stack, "mesh-sample")
        offered = asyncio.Event()

        async def slow_answer(*args: Any, **kwargs: Any) -> str | None:
            offered.set()
            await asyncio.Future()  # held: the answer is still on its way
            return None

        c.p2pt.answer_offer = slow_answer  # type: ignore[method-assign]
        await meet_through_b(tracker, a, b, c)
        await asyncio.wait_for(offered.wait(), 20)
        attempt = mesh(a)._attempts[c.peer_id]
        assert attempt.via == b.peer_id and attempt.offer_id is not None
        assert c.peer_id in b.p2pt.peers

        sample = [ListedPeer(f"{i:040x}") for i in range(1, MAX_LISTED + 1)]  # c not drawn
        received = mesh(a).stats.pex_received
        body = encode_pex(sample)
        assert mesh(b)._post(a.peer_id, Envelope(Kind.PEX, new_message_id(), body=body))
        await until([a], lambda: mesh(a).stats.pex_received > received, 5)
        assert mesh(a).stats.throttled == 0
        assert mesh(a)._attempts.get(c.peer_id) is attempt
        assert a.p2pt.waiting_offer(attempt.offer_id) == c.peer_id
