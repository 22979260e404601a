"""ICE restarts between whole nodes: only the connection's other end can restart it, and only
between two libwebrtc ends (docs/PROTOCOL.md section 9).

A genuine restart is started as the keepalive starts one (:meth:`P2PT.ice_suspect`) on a
working path, and goes through the embedded tracker; a third client of that tracker then plays
back, forges and misattributes restart messages. Like tests/transport/test_wrtc_nodes.py these
run inside the interop namespace (libwebrtc gathers no loopback candidates).
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from interop.netns import ADDRESSES

from p2prpc.node import Node
from p2prpc.swarm.connection import Connection
from p2prpc.testing import until
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import RTCOptions
from p2prpc.wire.frames import new_message_id
from p2prpc.wire.restart import (
    PREFIX,
    RestartError,
    RestartKind,
    RestartState,
    encode_key,
    new_key,
)
from p2prpc.wire.restart import decode as decode_restart
from p2prpc.wire.secret import SEAL_PREFIX, new_secret
from p2prpc.wire.tracker import Announce, Answer, encode_client_message

pytest.importorskip("webrtc.aiortc", reason="the libwebrtc transport needs wrtc (p2prpc[native])")

from p2prpc.transport.wrtc import LIBWEBRTC

pytestmark = [pytest.mark.asyncio, pytest.mark.interop]

HEALTH = "/grpc.health.v1.Health/Check"

#: A description's SHA-256 DTLS certificate fingerprint line.
FINGERPRINT = re.compile(r"^a=fingerprint:sha-256 [0-9A-F:]+", re.M)


@asynccontextmanager
async def pair(
    first: str, second: str, **options: Any
) -> AsyncIterator[tuple[TrackerServer, Node, Node]]:
    """A tracker and two nodes on these transports that said hello to each other."""
    async with TrackerServer("127.0.0.1", 0) as tracker:
        nodes = [
            Node(
                [tracker.url],
                "p2prpc-restart",
                ice_servers=[],
                host_addresses=[ADDRESSES[0]],
                transport=transport,
                mesh=False,
                **options,
            )
            for transport in (first, second)
        ]
        try:
            for started, node in enumerate(nodes, 1):
                await node.start()
                await tracker.wait_for(lambda stats, n=started: stats.peers >= n)
            async with asyncio.timeout(20):
                for node in nodes:
                    await node.wait_for_peers(1)
            yield tracker, nodes[0], nodes[1]
        finally:
            for node in nodes:
                await node.close()


def connection(node: Node, other: Node) -> Connection:
    """The first open connection of ``node`` to ``other``."""
    return next(iter(node.p2pt._remotes[other.peer_id].channels.values()))


async def send_answers(tracker: TrackerServer, node: Node, to: Node, texts: list[str],
                       sender: bytes) -> None:  # fmt: skip
    """A third client of the tracker sends ``texts`` to ``to`` as answers from ``sender``."""
    own = secrets.token_bytes(20)
    async with websockets.connect(tracker.url) as ws:
        info_hash = node.p2pt.info_hash
        await ws.send(encode_client_message(Announce(info_hash=info_hash, peer_id=own, numwant=0)))
        await ws.recv()  # the tracker's answer: we are in the swarm
        for text in texts:
            to_id, offer_id = bytes.fromhex(to.peer_id), secrets.token_bytes(20)
            answer = Answer(info_hash=info_hash, peer_id=sender, to_peer_id=to_id,
                            offer_id=offer_id, sdp=text)  # fmt: skip
            await ws.send(encode_client_message(answer))


def forged(text: str) -> str:
    """``text`` with one bit of its MAC changed."""
    body = text[len(PREFIX) :]
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[40] ^= 1
    return PREFIX + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def test_only_the_other_end_restarts_a_connection_and_only_once_per_message() -> None:
    async with pair("libwebrtc", "libwebrtc") as (tracker, a, b):
        # The connection's offerer restarts it; its answerer is who the offers go to.
        ab = connection(a, b)
        offerer, answerer = (a, b) if ab.initiator else (b, a)
        ours = connection(offerer, answerer)
        theirs = connection(answerer, offerer)
        assert ours.restart is not None and theirs.restart is not None
        armed = (ours.restart, theirs.restart)
        steps = [(offerer.p2pt, "icerestart"), (answerer.p2pt, "icerestart")]
        await until(lambda: all(r.armed for r in armed), *steps, timeout=10)
        sent: list[str] = []
        send = ours.send_restart
        ours.send_restart = lambda channel, text: bool(sent.append(text) or send(channel, text))
        offerer.p2pt.ice_suspect(answerer.peer_id, ours.connection)
        await until(lambda: ours.restarts == 1 and theirs.restarts == 1, *steps, timeout=20)
        assert [offerer.p2pt.ice_restarts[k] for k in ("lost", "restarted", "refused")] == [1, 1, 0]
        assert answerer.p2pt.ice_restarts["restarted"] == 1

        # A third peer: the genuine offer played back, one with its MAC altered, and one it
        # makes itself under its own id naming the connection; all reach the answerer.
        stranger_id = secrets.token_bytes(20)
        stranger = RestartState(initiator=True)
        stranger.set_remote_key(secrets.token_bytes(32))
        own = stranger.seal(RestartKind.OFFER, sender=stranger_id,
                            receiver=bytes.fromhex(answerer.peer_id),
                            fingerprints=theirs.fingerprints()[::-1],
                            connection_id=bytes.fromhex(theirs.name), sdp=sent[0])  # fmt: skip
        offerer_id = bytes.fromhex(offerer.peer_id)
        await send_answers(tracker, offerer, answerer, [sent[0], forged(sent[0])], offerer_id)
        await send_answers(tracker, offerer, answerer, [own], stranger_id)
        await until(lambda: answerer.p2pt.ice_restarts["refused"] == 3,
                    (answerer.p2pt, "trackerwarning"), timeout=10)  # fmt: skip

        # Nothing was applied: the same connection, still restarted once, and it carries calls.
        assert answerer.p2pt.ice_restarts["lost"] == 1 and theirs.restarts == 1
        assert not theirs.restarting and theirs.is_open and ours.is_open
        assert answerer.p2pt.connections(offerer.peer_id)[0] == theirs.connection
        await asyncio.wait_for(answerer.unary_unary(HEALTH)(b"", timeout=10), 10)


@pytest.mark.parametrize("order", [("libwebrtc", "aiortc"), ("aiortc", "libwebrtc")])
async def test_a_libwebrtc_end_never_restarts_with_an_aiortc_end(order: tuple[str, str]) -> None:
    async with pair(*order) as (_, a, b):
        native, other = (a, b) if order[0] == "libwebrtc" else (b, a)
        ours, theirs = connection(native, other), connection(other, native)
        await native.wait_until(lambda: other.peer_id in native.peers, timeout=5)
        # The aiortc end announces nothing, so the libwebrtc end never sends its key.
        assert theirs.restart is None and not theirs.link.ice_restarts
        assert ours.restart is not None
        assert not ours.restart.armed and not ours.restart.key_sent
        assert not ours.link.keep_on_ice_failure  # a failed ICE closes it, as before
        native.p2pt.ice_suspect(other.peer_id, ours.connection)
        assert not ours.restarting and native.p2pt.ice_restarts["lost"] == 0
        await asyncio.wait_for(native.unary_unary(HEALTH)(b"", timeout=10), 10)


async def test_in_a_secret_swarm_the_tracker_carries_restarts_sealed() -> None:
    async with pair("libwebrtc", "libwebrtc", secret=new_secret()) as (_, a, b):
        ab = connection(a, b)
        offerer, answerer = (a, b) if ab.initiator else (b, a)
        ours, theirs = connection(offerer, answerer), connection(answerer, offerer)
        assert ours.restart is not None and theirs.restart is not None
        armed = (ours.restart, theirs.restart)
        steps = [(offerer.p2pt, "icerestart"), (answerer.p2pt, "icerestart")]
        await until(lambda: all(r.armed for r in armed), *steps, timeout=10)
        carried: list[str] = []
        for node in (offerer, answerer):
            for client in node.p2pt.trackers.values():
                send = client.send_answer
                client.send_answer = (  # type: ignore[method-assign]
                    lambda to, offer_id, text, send=send: bool(
                        carried.append(text) or send(to, offer_id, text)
                    )
                )
        offerer.p2pt.ice_suspect(answerer.peer_id, ours.connection)
        await until(lambda: ours.restarts == 1 and theirs.restarts == 1, *steps, timeout=20)
        assert len(carried) >= 2  # an offer and its answer
        assert all(text.startswith(SEAL_PREFIX) and PREFIX not in text for text in carried)
        await asyncio.wait_for(offerer.unary_unary(HEALTH)(b"", timeout=10), 10)


async def test_a_restart_key_that_changes_or_does_not_read_is_refused_and_reported() -> None:
    async with pair("libwebrtc", "libwebrtc") as (_, a, b):
        ab, ba = connection(a, b), connection(b, a)
        assert ab.restart is not None and ba.restart is not None
        armed = (ab.restart, ba.restart)
        await until(lambda: all(r.armed for r in armed), (a.p2pt, "icerestart"),
                    (b.p2pt, "icerestart"), timeout=10)  # fmt: skip
        given = ba.restart.remote_key
        warnings: list[Exception] = []
        b.on("peerwarning", lambda peer_id, error: warnings.append(error))
        peer = a.p2pt.peers[b.peer_id]
        for value in (encode_key(new_key()), "not a key", encode_key(ab.restart.local_key)):
            hello = {**a.hello(), "restart": value}  # another key, none, the same one again
            a.p2pt.post(peer, {"hello": hello}, new_message_id(), connection=ab.connection)
        await until(lambda: len(warnings) >= 2, (b, "peerwarning"), timeout=10)
        assert [type(e) for e in warnings] == [RestartError, RestartError]
        assert "changed" in str(warnings[0]) and "44 characters" in str(warnings[1])
        assert b.p2pt.ice_restarts["refused"] == 2
        assert ba.restart.remote_key == given  # the key it gave first stands
        # The connection still restarts with the keys given first, and carries calls.
        offerer, answerer = (a, b) if ab.initiator else (b, a)
        ours, theirs = (ab, ba) if ab.initiator else (ba, ab)
        steps = [(offerer.p2pt, "icerestart"), (answerer.p2pt, "icerestart")]
        offerer.p2pt.ice_suspect(answerer.peer_id, ours.connection)
        await until(lambda: ours.restarts == 1 and theirs.restarts == 1, *steps, timeout=20)
        await asyncio.wait_for(a.unary_unary(HEALTH)(b"", timeout=10), 10)
        assert len(warnings) == 2


async def test_a_restart_naming_another_certificate_is_refused_however_it_names_it() -> None:
    """The connection's other end, holding both restart keys, offers a restart whose description
    names another DTLS certificate beside the connection's own (after it: libwebrtc checks the
    last one; before it; its hash function's name in capitals): refused, counted, nothing
    applied, and the connection goes on with the certificate it was made with."""
    async with pair("libwebrtc", "libwebrtc") as (tracker, a, b):
        ab = connection(a, b)
        offerer, answerer = (a, b) if ab.initiator else (b, a)
        ours, theirs = connection(offerer, answerer), connection(answerer, offerer)
        assert ours.restart is not None and theirs.restart is not None
        armed = (ours.restart, theirs.restart)
        steps = [(offerer.p2pt, "icerestart"), (answerer.p2pt, "icerestart")]
        await until(lambda: all(r.armed for r in armed), *steps, timeout=10)
        sent: list[str] = []
        send = ours.send_restart
        ours.send_restart = lambda channel, text: bool(sent.append(text) or send(channel, text))
        offerer.p2pt.ice_suspect(answerer.peer_id, ours.connection)
        await until(lambda: ours.restarts == 1 and theirs.restarts == 1, *steps, timeout=20)
        genuine = decode_restart(sent[0]).sdp
        own = FINGERPRINT.search(genuine)
        assert own is not None
        fingerprints = theirs.fingerprints()

        other = LIBWEBRTC.link(RTCOptions(ice_servers=[]), initiator=True, label="x" * 40)
        other.on_close = lambda: None
        try:
            found = FINGERPRINT.search(await other.create_offer())
            assert found is not None
            another = found.group(0)
        finally:
            await other.wait_closed()
        line = own.group(0)
        descriptions = [
            genuine.replace(line, f"{line}\r\n{another}"),  # ours first, libwebrtc reads the last
            genuine.replace(line, f"{another}\r\n{line}"),
            genuine.replace(line, f"{line}\r\n{another.replace('sha-256', 'SHA-256')}"),
        ]
        texts = [
            ours.restart.seal(
                RestartKind.OFFER,
                sender=bytes.fromhex(offerer.peer_id),
                receiver=bytes.fromhex(answerer.peer_id),
                fingerprints=ours.fingerprints(),
                connection_id=bytes.fromhex(ours.name),
                sdp=sdp,
            )
            for sdp in descriptions
        ]
        await send_answers(tracker, offerer, answerer, texts, bytes.fromhex(offerer.peer_id))
        await until(lambda: answerer.p2pt.ice_restarts["refused"] == len(texts),
                    (answerer.p2pt, "trackerwarning"), timeout=10)  # fmt: skip
        assert theirs.fingerprints() == fingerprints and theirs.is_open
        assert answerer.p2pt.ice_restarts["lost"] == 1 and theirs.restarts == 1
        await asyncio.wait_for(answerer.unary_unary(HEALTH)(b"", timeout=10), 10)
