"""Relayed signalling between peers with identities, sealed to the recipient's own key: the member
in the middle of the path, holding the swarm secret, can neither read nor alter what it carries,
nor put its own X25519 key in another peer's place."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.identity import Identity
from p2prpc.node import Node
from p2prpc.rpc import UnaryUnaryMethod
from p2prpc.swarm.connection import Connection
from p2prpc.wire.envelope import Envelope, Kind
from p2prpc.wire.frames import new_message_id
from p2prpc.wire.mesh import ListedPeer, Signal, SignalType, encode_pex, encode_signal
from p2prpc.wire.sealbox import SEALED_TO_PREFIX, SealKey, SealKeyPair, open_from, seal_to
from p2prpc.wire.secret import SealError, SwarmKeys, open_sealed, seal

from .test_mesh import SAY, SERVICE, line, mesh, until

pytestmark = pytest.mark.asyncio

SECRET = "sealed to keys 9a3f06d2c7e18b54"


def swarm_keys(node: Node) -> SwarmKeys:
    keys = node.p2pt.signalling.keys
    assert keys is not None
    return keys


def own_key(node: Node) -> SealKeyPair:
    found = node.p2pt.signalling.own_key
    assert found is not None
    return found


def identity_of(node: Node) -> Identity:
    assert node.identity is not None
    return node.identity


def knows_keys(node: Node, other: Node) -> Callable[[], bool]:
    """``node`` learnt from the exchange ``other``'s identity and its seal key."""

    def check() -> bool:
        known = node.known_peers.get(other.peer_id)
        return known is not None and known.seal_key == other.p2pt.seal_key is not None

    return check


def capture(relay: Node) -> list[Signal]:
    """Every signal ``relay`` receives, as it receives it (it still relays them)."""
    seen: list[Signal] = []
    layer = mesh(relay)
    real = layer._on_signal

    def spy(neighbour: str, signal: Signal) -> None:
        seen.append(signal)
        real(neighbour, signal)

    layer._on_signal = spy  # type: ignore[method-assign]
    return seen


async def say(node: Node, text: str) -> str:
    reply = await UnaryUnaryMethod(node, SAY, StringValue, StringValue)(
        StringValue(value=text), timeout=20
    )
    return reply.value


def session_secrets(node: Node, other: Node) -> list[str]:
    """What the SDPs of ``node``'s connection to ``other`` say that a relay must not learn: both
    DTLS fingerprints and every candidate line."""
    channel = node.p2pt._channel_for(other.peer_id)
    local, remote = channel.link.pc.localDescription, channel.link.pc.remoteDescription
    assert local is not None and remote is not None
    found = []
    for sdp in (local.sdp, remote.sdp):
        found += re.findall(r"a=fingerprint:sha-256 (\S+)", sdp)
        found += re.findall(r"a=candidate:(.+)", sdp)
    assert len(found) >= 4  # two fingerprints, a candidate or more each side
    return [f.strip() for f in found]


async def own_sdp(node: Node) -> str:
    """A real offer SDP of ``node``'s own (its DTLS certificate, its candidates)."""
    channel = Connection(node.p2pt.rtc_options, initiator=True)
    try:
        return await channel.create_offer()
    finally:
        channel.close()
        await channel.wait_closed()


async def test_the_member_relaying_cannot_open_what_it_carries() -> None:
    async with line(secret=SECRET, identities=True) as (a, b, c, _):
        seen = capture(b)
        await until([a, c], lambda: knows_keys(a, c)() and knows_keys(c, a)(), 10)
        assert await say(a, "sealed") == "Hello, sealed!"
        assert a.peers[c.peer_id].via == (f"signalled:{b.peer_id}",)
        assert a.peers[c.peer_id].public_key == identity_of(c).public_key

        offer = next(s for s in seen if s.type is SignalType.OFFER and s.to_id == c.peer_id)
        answer = next(s for s in seen if s.type is SignalType.ANSWER and s.to_id == a.peer_id)
        assert offer.offer_id == answer.offer_id
        carried = [offer.sdp, answer.sdp]
        assert all(t is not None and t.startswith(SEALED_TO_PREFIX) for t in carried)
        relayed = " ".join(str(encode_signal(s)) for s in (offer, answer))
        for secret in session_secrets(a, c):
            assert secret not in relayed and secret.lower() not in relayed.lower()

        # What b holds (the swarm keys, its own X25519 key) opens neither.
        assert offer.sdp is not None and answer.sdp is not None
        keys, offer_id = swarm_keys(b), bytes.fromhex(offer.offer_id)
        a_id, b_id, c_id = (bytes.fromhex(n.peer_id) for n in (a, b, c))
        for kind, text, sender, recipient in (
            ("offer", offer.sdp, a_id, c_id),
            ("answer", answer.sdp, c_id, a_id),
        ):
            for to_id in (recipient, None):
                with pytest.raises(SealError):
                    open_sealed(
                        keys.seal_key,
                        kind,
                        text,
                        info_hash=keys.info_hash,
                        from_id=sender,
                        to_id=to_id,
                        offer_id=offer_id,
                    )
            with pytest.raises(SealError):
                open_from(
                    own_key(b),
                    keys.seal_key,
                    kind,
                    text,
                    info_hash=keys.info_hash,
                    from_id=sender,
                    to_id=b_id,
                    offer_id=offer_id,
                )
        refused = b.p2pt.signalling.refused
        with pytest.raises(SealError):
            b.p2pt.signalling.open_relayed_offer(a_id, offer_id, offer.sdp, senders=None)
        assert b.p2pt.signalling.refused == refused + 1


async def test_what_the_member_relaying_alters_is_refused_and_the_genuine_signals_connect() -> None:
    async with line(secret=SECRET, identities=True) as (a, b, c, _):
        await until([a, c], lambda: knows_keys(a, c)() and knows_keys(c, a)(), 10)
        mine = await own_sdp(b)
        keys = swarm_keys(b)
        a_id, c_id = bytes.fromhex(a.peer_id), bytes.fromhex(c.peer_id)

        def forgeries(signal: Signal, sender: bytes, recipient: SealKey) -> list[str]:
            """b's three ways to alter what it relays: flip a byte, re-seal its own SDP with the
            swarm key (as a tracker-style offer), re-seal it to the recipient's key under a
            record b signed for the sender's peer id with its own identity."""
            assert signal.sdp is not None
            kind = signal.type.value
            ids = {
                "info_hash": keys.info_hash,
                "from_id": sender,
                "to_id": bytes.fromhex(signal.to_id),
                "offer_id": bytes.fromhex(signal.offer_id),
            }
            text = signal.sdp
            flipped = text[:-8] + ("A" if text[-8] != "A" else "B") + text[-7:]
            as_sender = SealKeyPair.generate(
                identity=identity_of(b).public_key,
                sign=identity_of(b).sign,
                info_hash=keys.info_hash,
                peer_id=sender,
            )
            return [
                flipped,
                seal(keys.seal_key, kind, mine, **ids),
                seal_to(recipient.public, as_sender, keys.seal_key, kind, mine, **ids),
            ]

        relay = mesh(b)
        real = relay._relay
        dropped: list[Signal] = []

        def tamper(neighbour: str, signal: Signal) -> None:
            if signal.type is SignalType.REFUSE and signal.from_id == c.peer_id:
                dropped.append(signal)  # c's refusals of the forgeries: a never hears of them
                return
            if signal.type is SignalType.OFFER and signal.to_id == c.peer_id:
                record = c.p2pt.seal_key
                assert record is not None
                for text in forgeries(signal, a_id, record):
                    real(neighbour, replace(signal, sdp=text))
            if signal.type is SignalType.ANSWER and signal.to_id == a.peer_id:
                record = a.p2pt.seal_key
                assert record is not None
                for text in forgeries(signal, c_id, record):
                    real(neighbour, replace(signal, sdp=text))
            real(neighbour, signal)  # and the genuine one, last

        relay._relay = tamper  # type: ignore[method-assign]
        offers_refused = c.p2pt.signalling.refused
        answers_refused = a.p2pt.signalling.refused

        assert await say(a, "genuine") == "Hello, genuine!"
        assert a.peers[c.peer_id].via == (f"signalled:{b.peer_id}",)
        assert c.peers[a.peer_id].public_key == identity_of(a).public_key
        # Every forgery was refused by its recipient, and counted.
        await until([b], lambda: len(dropped) == 3, 10)
        assert c.p2pt.signalling.refused == offers_refused + 3
        assert a.p2pt.signalling.refused == answers_refused + 3
        assert mesh(a).stats.offers_sent == 1 and mesh(c).stats.answers_sent == 1


async def test_a_relay_putting_its_own_x25519_key_in_a_peers_place_is_detected() -> None:
    async with line(secret=SECRET, identities=True) as (a, b, c, _):
        await until([a], knows_keys(a, c), 10)
        keys = swarm_keys(b)
        real = c.p2pt.seal_key
        assert real is not None
        c_key = identity_of(c).public_key
        signed_by_b = SealKeyPair.generate(
            identity=identity_of(b).public_key,
            sign=identity_of(b).sign,
            info_hash=keys.info_hash,
            peer_id=bytes.fromhex(c.peer_id),
        ).record
        substitutes = [
            replace(real, public=own_key(b).record.public),  # c's signature over another key
            signed_by_b,  # b's own identity signing for c, listed under c's key
            replace(signed_by_b, identity=c_key),
        ]
        services = frozenset({SERVICE})
        for count, substitute in enumerate(substitutes, 1):
            forged = ListedPeer(c.peer_id, services, frozenset(), c_key, substitute)
            envelope = Envelope(Kind.PEX, new_message_id(), body=encode_pex([forged]))
            b.send(a.peer_id, envelope, binary=False)
            await until([a], lambda count=count: mesh(a).stats.bad_seal_keys == count, 10)
            # a believes nothing b says of c: no key of b's to seal to in c's name.
            assert c.peer_id not in a.known_peers

        # Listed with its identity but without a seal key, c gets no offer sealed with the
        # swarm key, which b could open: a does not reach for c at all.
        stripped = ListedPeer(c.peer_id, services, frozenset(), c_key)
        b.send(
            a.peer_id,
            Envelope(Kind.PEX, new_message_id(), body=encode_pex([stripped])),
            binary=False,
        )
        await until([a], lambda: c.peer_id in a.known_peers, 10)
        assert a.known_peers[c.peer_id].seal_key is None
        seen = capture(b)
        assert await mesh(a).reach_service(SERVICE, 2) is False
        assert not seen and mesh(a).stats.offers_sent == 0

        # Honestly listed again, c is reached, through offers sealed to its own key.
        honest = ListedPeer(c.peer_id, services, frozenset(), c_key, real)
        b.send(
            a.peer_id, Envelope(Kind.PEX, new_message_id(), body=encode_pex([honest])), binary=False
        )
        await until([a], knows_keys(a, c), 10)
        assert await say(a, "again") == "Hello, again!"
        assert any(s.sdp and s.sdp.startswith(SEALED_TO_PREFIX) for s in seen)


async def test_a_hello_announcing_a_seal_key_its_identity_did_not_sign_is_ignored() -> None:
    async with line(secret=SECRET, identities=True) as (a, b, c, _):
        await until([a], knows_keys(a, c), 10)
        keys = swarm_keys(c)
        not_c = SealKeyPair.generate(
            identity=identity_of(a).public_key,
            sign=identity_of(a).sign,
            info_hash=keys.info_hash,
            peer_id=bytes.fromhex(c.peer_id),
        )
        c.set_hello("seal", not_c.record.to_text())  # c says hello again, to b
        await until([b], lambda: mesh(b).stats.bad_seal_keys == 1, 10)
        # b lists c without a seal key from then on; a hears of it.
        await until([a], lambda: a.known_peers[c.peer_id].seal_key is None, 10)
        assert a.known_peers[c.peer_id].public_key == identity_of(c).public_key
