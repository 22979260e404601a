"""Offers and answers carried outside trackers (P2PT.make_offer, answer_offer, take_answer) between
peers with identities in a secret swarm: sealed to the recipient's key, and what is sealed only
with the swarm key (which every member, every relay, holds) refused where an identity is known."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from p2prpc import P2PT, Identity
from p2prpc.testing import LOOPBACK
from p2prpc.wire.sealbox import SEALED_TO_PREFIX, SealKey, SealKeyPair
from p2prpc.wire.secret import SEAL_PREFIX

pytestmark = pytest.mark.asyncio

SECRET = "relayed secret 4c8e1f7a09d3b265"
ORIGIN = "relay:" + "ee" * 20


@asynccontextmanager
async def swarm(*options: dict[str, Any]) -> AsyncIterator[list[P2PT]]:
    """P2PT peers of one secret swarm on loopback, with no tracker: only what the test carries
    between them signals."""
    async with AsyncExitStack() as stack:
        made = []
        for kwargs in options:
            p2pt = P2PT(
                [], "sealed-to", ice_servers=[], host_addresses=[LOOPBACK], secret=SECRET, **kwargs
            )
            stack.push_async_callback(p2pt.destroy)
            await p2pt.start()
            made.append(p2pt)
        yield made


def record(p2pt: P2PT) -> SealKey:
    assert p2pt.seal_key is not None
    return p2pt.seal_key


async def test_an_offer_sealed_to_the_peers_key_is_answered_to_ours_and_connects() -> None:
    ix, iy = Identity.generate(), Identity.generate()
    async with swarm({"identity": ix}, {"identity": iy}) as (x, y):
        assert record(x).identity == ix.public_key and record(x).public != record(y).public
        assert record(y).verify(info_hash=y.info_hash, peer_id=y.peer_id_bytes)
        made = await x.make_offer(y.peer_id, origin=ORIGIN, seal_to=record(y))
        assert made is not None
        offer_id, offer = made
        assert offer.startswith(SEALED_TO_PREFIX)
        answer = await y.answer_offer(
            x.peer_id, offer_id, offer, origin=ORIGIN, sender_identity=ix.public_key
        )
        assert answer is not None and answer.startswith(SEALED_TO_PREFIX)
        assert await x.take_answer(y.peer_id, offer_id, answer)
        px, py = await x.wait_for_peer(10), await y.wait_for_peer(10)
        assert (px.id, px.public_key) == (y.peer_id, iy.public_key)
        assert (py.id, py.public_key) == (x.peer_id, ix.public_key)
        assert x.signalling.refused == y.signalling.refused == 0


async def test_a_receiver_that_knows_the_senders_identity_refuses_the_swarm_seal() -> None:
    ix, iy = Identity.generate(), Identity.generate()
    options = (
        {"identity": ix},
        {"identity": iy},
        {"identity": iy, "allowed_peers": [ix.public_key]},
    )
    async with swarm(*options) as (x, y, strict):
        for receiver, told in ((y, ix.public_key), (strict, None)):
            made = await x.make_offer(receiver.peer_id, origin=ORIGIN)  # the swarm seal only
            assert made is not None and made[1].startswith(SEAL_PREFIX)
            refused = receiver.signalling.refused
            answer = await receiver.answer_offer(
                x.peer_id, made[0], made[1], origin=ORIGIN, sender_identity=told
            )
            assert answer is None and receiver.signalling.refused == refused + 1
            x.abandon_offer(made[0])

        # Sealed to y's key, but by an identity other than the one y knows for x.
        made = await x.make_offer(y.peer_id, origin=ORIGIN, seal_to=record(y))
        assert made is not None
        other = Identity.generate().public_key
        refused = y.signalling.refused
        answer = await y.answer_offer(x.peer_id, *made, origin=ORIGIN, sender_identity=other)
        assert answer is None and y.signalling.refused == refused + 1
        x.abandon_offer(made[0])

        # Knowing no identity of the sender (and no allowed_peers), y takes the swarm seal, as
        # from a peer without one.
        made = await x.make_offer(y.peer_id, origin=ORIGIN)
        assert made is not None
        answer = await y.answer_offer(x.peer_id, *made, origin=ORIGIN)
        assert answer is not None and answer.startswith(SEAL_PREFIX)


async def test_an_offer_sealed_to_a_key_takes_only_an_answer_from_that_key() -> None:
    ix, iy = Identity.generate(), Identity.generate()
    async with swarm({"identity": ix}, {"identity": iy}) as (x, y):
        made = await x.make_offer(y.peer_id, origin=ORIGIN, seal_to=record(y))
        assert made is not None
        offer_id, offer = made
        genuine = await y.answer_offer(
            x.peer_id, offer_id, offer, origin=ORIGIN, sender_identity=ix.public_key
        )
        assert genuine is not None
        sdp = "v=0\r\n"  # what a relay would put in the answer's place
        impostor = SealKeyPair.generate(
            identity=ix.public_key, sign=ix.sign, info_hash=y.info_hash, peer_id=y.peer_id_bytes
        )
        y.signalling.own_key, real = impostor, y.signalling.own_key  # y, signing as another key
        other_key = y.signalling.seal_answer_to(x.peer_id_bytes, offer_id, sdp, record(x))
        y.signalling.own_key = real
        forgeries = [
            y.signalling.seal_answer(x.peer_id_bytes, offer_id, sdp),  # the swarm seal
            other_key,
            genuine[:-8] + ("A" if genuine[-8] != "A" else "B") + genuine[-7:],
        ]
        for text in forgeries:
            assert not await x.take_answer(y.peer_id, offer_id, text)
        assert x.signalling.refused == len(forgeries)
        assert x.waiting_offer(offer_id) == y.peer_id  # the offer still waits for the genuine one
        assert await x.take_answer(y.peer_id, offer_id, genuine)
        assert (await x.wait_for_peer(10)).public_key == iy.public_key


async def test_an_unusable_seal_key_makes_no_offer_and_without_identities_nothing_changes() -> None:
    ix, iy = Identity.generate(), Identity.generate()
    async with swarm({"identity": ix}, {"identity": iy}, {}) as (x, y, plain):
        low_order = replace(record(y), public=bytes(32))
        assert await x.make_offer(y.peer_id, origin=ORIGIN, seal_to=low_order) is None
        assert plain.seal_key is None
        # Without an identity of its own, a peer seals with the swarm key even when asked to
        # seal to a key, and answers what is so sealed.
        made = await plain.make_offer(y.peer_id, origin=ORIGIN, seal_to=record(y))
        assert made is not None and made[1].startswith(SEAL_PREFIX)
        answer = await y.answer_offer(plain.peer_id, *made, origin=ORIGIN)
        assert answer is not None and answer.startswith(SEAL_PREFIX)
        assert await plain.take_answer(y.peer_id, made[0], answer)
        assert (await plain.wait_for_peer(10)).public_key == iy.public_key
