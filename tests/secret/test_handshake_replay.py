"""A handshake frame recorded on one connection proves nothing on another.

Over real WebRTC on loopback. What crosses a data channel is DTLS-encrypted, so nobody outside a
connection records its handshake frame or the hello after it; the one who can is its other end.
Here c, a member, records the frame a sent it and sends it as its own first message to b, which
admits a's identity only: the frame names a's peer id and the DTLS fingerprints of the a–c
connection, so b refuses it. So does b a hello sent where the proof must come first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from p2prpc import Identity
from p2prpc.swarm.connection import Connection
from p2prpc.testing import loopback_p2pt
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import RTCOptions
from p2prpc.wire.frames import encode_message, new_message_id
from p2prpc.wire.secret import AUTH_MAGIC, AuthError, sdp_fingerprint

pytestmark = pytest.mark.asyncio

SECRET = "a long shared secret"


def recorded_proof(recorded: list[bytes]) -> Callable[[Connection], str | bytes]:
    return lambda channel: recorded[0]


def hello_first(recorded: list[bytes]) -> Callable[[Connection], str | bytes]:
    return lambda channel: encode_message({"hello": {"v": 1}}, new_message_id())[0]


@pytest.mark.parametrize("first_message", [recorded_proof, hello_first])
async def test_a_member_cannot_pass_off_a_proof_it_recorded_or_say_hello_first(
    first_message: Callable[[list[bytes]], Callable[[Connection], str | bytes]],
) -> None:
    a_id, c_id = Identity.generate(), Identity.generate()
    async with TrackerServer("127.0.0.1", 0) as tracker:
        a = loopback_p2pt([tracker.url], "app", secret=SECRET, identity=a_id)
        c = loopback_p2pt([tracker.url], "app", secret=SECRET, identity=c_id)
        b = loopback_p2pt(
            [tracker.url], "app", secret=SECRET, allowed_peers=[a_id.public_key], auth_timeout=5
        )
        try:
            recorded: list[bytes] = []
            on_proof = c._on_proof

            def record(channel: Connection, data: str | bytes) -> None:
                if channel.peer_id == a.peer_id and isinstance(data, bytes):
                    recorded.append(data)
                on_proof(channel, data)

            c._on_proof = record  # type: ignore[method-assign]
            # Each end admits the other once it has checked the other's frame: c has recorded
            # a's once c met a (a meeting c says nothing of c's side).
            met = [asyncio.get_running_loop().create_future() for _ in range(2)]
            a.once("peerconnect", lambda peer: met[0].set_result(None))
            c.once("peerconnect", lambda peer: met[1].set_result(None))
            await a.start()
            await c.start()
            await asyncio.wait_for(asyncio.gather(*met), 10)
            assert recorded and recorded[0][0] == AUTH_MAGIC
            assert c.peers[a.peer_id].public_key == a_id.public_key  # it proved a's key to c

            # From now on c's first message on a new connection is the recorded frame (or a
            # hello); b admits a's key only.
            c._handshake.frame = first_message(recorded)  # type: ignore[method-assign,assignment]
            refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

            def on_refused(peer_id: str, error: Exception) -> None:
                if peer_id == c.peer_id and not refused.done():
                    refused.set_result(error)

            b.on("peerrefused", on_refused)
            admitted: list[str] = []
            b.on("peerconnect", lambda peer: admitted.append(peer.id))
            delivered: list[object] = []
            b.on("msg", lambda peer, msg: delivered.append(msg))
            a_met_b: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            b.on("peerconnect", lambda peer: peer.id == a.peer_id and a_met_b.set_result(None))
            await b.start()
            error = await asyncio.wait_for(refused, 10)
            await asyncio.wait_for(a_met_b, 10)
        finally:
            for p2pt in (a, b, c):
                await p2pt.destroy()
        assert admitted == [a.peer_id]  # a, never c
        assert delivered == [] and b.refused_peers >= 1
        assert isinstance(error, AuthError)
        if first_message is recorded_proof:
            assert "wrong for this connection" in str(error)
        else:
            assert "before proving" in str(error)


async def test_every_connection_has_its_own_dtls_certificate() -> None:
    """What makes a frame fit one connection only: it names both ends' DTLS certificates, and
    aiortc makes one per connection, so even between the same two peers no frame fits another."""
    channels = [Connection(RTCOptions(ice_servers=[]), initiator=True) for _ in range(3)]
    try:
        offers = [await channel.create_offer() for channel in channels]
    finally:
        await asyncio.gather(*(channel.wait_closed() for channel in channels))
    assert len({sdp_fingerprint(sdp) for sdp in offers}) == 3
