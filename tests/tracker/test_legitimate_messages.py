"""What a P2PT client legitimately sends a tracker, and what the tracker relays, is never refused
by the bound on what a message may hold parsed (``wire.held.parse_refusal``).

That bound first counts every ``:`` and ``,`` as if it opened a value, and an SDP is full of them
(a fingerprint alone has 31): an announce with five real offers came out at about 16 bytes a
character, over the 3 a character (plus 64 KiB) such a message may hold, so that one announce in a
hundred or so was refused and its node never joined the swarm. Real offers from the transport,
as many as the tracker takes, in every message that carries them."""

from __future__ import annotations

import asyncio
import os

import pytest

from p2prpc.tracker.server import DEFAULT_MAX_OFFERS
from p2prpc.transport import RTCOptions, default_transport
from p2prpc.wire.tracker import (
    Announce,
    Answer,
    AnswerRelay,
    OfferPayload,
    OfferRelay,
    encode_client_message,
    encode_server_message,
    parse_client_message,
    parse_server_message,
)

pytestmark = pytest.mark.asyncio

#: More host addresses than a typical machine has make SDPs longer than usual (one candidate each).
OPTIONS = RTCOptions(
    ice_servers=[], host_addresses=[f"127.0.0.{i}" for i in range(1, 6)], udp_buffer_size=None
)


async def real_offers(count: int) -> list[str]:
    transport = default_transport()
    links = [
        transport.link(OPTIONS, initiator=True, label=os.urandom(20).hex()) for _ in range(count)
    ]
    try:
        return list(await asyncio.gather(*(link.create_offer() for link in links)))
    finally:
        for link in links:
            link.close()
        await asyncio.gather(*(link.wait_closed() for link in links))


async def test_an_announce_with_the_most_offers_a_tracker_takes_is_read() -> None:
    sdps = await real_offers(DEFAULT_MAX_OFFERS)
    assert all(sdp.count(":") > 40 for sdp in sdps)  # what made the bound refuse them
    announce = Announce(
        info_hash=os.urandom(20),
        peer_id=os.urandom(20),
        numwant=len(sdps),
        offers=tuple(OfferPayload(offer_id=os.urandom(20), sdp=sdp) for sdp in sdps),
    )
    text = encode_client_message(announce)
    request = parse_client_message(text, max_offers=DEFAULT_MAX_OFFERS)
    assert [offer.sdp for offer in request.offers] == sdps  # type: ignore[union-attr]


async def test_relayed_offers_and_answers_and_the_answer_itself_are_read() -> None:
    (sdp,) = await real_offers(1)
    info_hash, peer_id, offer_id = os.urandom(20), os.urandom(20), os.urandom(20)
    for relayed in (
        OfferRelay(info_hash, peer_id, offer_id, sdp),
        AnswerRelay(info_hash, peer_id, offer_id, sdp),
    ):
        (read,) = parse_server_message(encode_server_message(relayed))
        assert read.sdp == sdp  # type: ignore[union-attr]
    answer = Answer(
        info_hash=info_hash, peer_id=peer_id, to_peer_id=os.urandom(20), offer_id=offer_id, sdp=sdp
    )
    assert parse_client_message(encode_client_message(answer)).sdp == sdp  # type: ignore[union-attr]
