"""ICE restarts between whole nodes: only the connection's other end can restart it, and only
between two libwebrtc ends that both restart; a restart goes through another tracker when the
connection's own is gone, and a tracker that stopped answering is reconnected for it
(docs/PROTOCOL.md section 9).

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
from p2prpc.p2pt import P2PT
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
async def connected(
    tracker: TrackerServer, url: str, transports: tuple[str, str], **options: Any
) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes on these transports, announcing to ``url`` (``tracker``'s, or a way to it),
    that said hello to each other; closed after."""
    nodes = [
        Node(
            [url],
            "p2prpc-restart",
            ice_servers=[],
            host_addresses=[ADDRESSES[0]],
            transport=transport,
            mesh=False,
            **options,
        )
        for transport in transports
    ]
    try:
        for started, node in enumerate(nodes, 1):
            await node.start()
            await tracker.wait_for(lambda stats, n=started: stats.peers >= n)
        async with asyncio.timeout(20):
            for node in nodes:
                await node.wait_for_peers(1)
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            await node.close()


@asynccontextmanager
async def pair(
    first: str, second: str, **options: Any
) -> AsyncIterator[tuple[TrackerServer, Node, Node]]:
    """A tracker and two nodes on these transports that said hello to each other."""
    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        connected(tracker, tracker.url, (first, second), **options) as (a, b),
    ):
        yield tracker, a, b


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
        local = theirs.link.pc.localDescription.sdp  # type: ignore[attr-defined]
        answered: list[str] = []
        for client in answerer.p2pt.trackers.values():
            send_answer = client.send_answer
            client.send_answer = (  # type: ignore[method-assign]
                lambda to, offer_id, text, send=send_answer: bool(
                    answered.append(text) or send(to, offer_id, text)
                )
            )
        await send_answers(tracker, offerer, answerer, [sent[0], forged(sent[0])], offerer_id)
        await send_answers(tracker, offerer, answerer, [own], stranger_id)
        await until(lambda: answerer.p2pt.ice_restarts["refused"] == 3,
                    (answerer.p2pt, "trackerwarning"), timeout=10)  # fmt: skip

        # Nothing was applied, gathered or sent: the same connection and description, still
        # restarted once, and it carries calls.
        assert theirs.link.pc.localDescription.sdp == local  # type: ignore[attr-defined]
        assert answered == []
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


@pytest.mark.parametrize("other", ["ice_restart_timeout=0", "plain P2PT"])
async def test_an_end_that_does_not_restart_is_never_sent_a_key_nor_restarted(other: str) -> None:
    """A libwebrtc node beside a libwebrtc node with restarts off, or a plain P2PT app on
    libwebrtc: the node's hellos say ``"restart": true`` at most, never its key, and a lost ICE
    closes the connection as before instead of restarting it."""
    async with TrackerServer("127.0.0.1", 0) as tracker:
        options: dict[str, Any] = {"ice_servers": [], "host_addresses": [ADDRESSES[0]]}
        node = Node([tracker.url], "p2prpc-restart", transport="libwebrtc", mesh=False, **options)
        heard: list[object] = []
        if other == "plain P2PT":
            peer: Node | P2PT = P2PT([tracker.url], "p2prpc-restart", transport="libwebrtc",
                                     **options)  # fmt: skip
            peer.on("msg", lambda _, msg: heard.append(msg))
        else:
            peer = Node([tracker.url], "p2prpc-restart", transport="libwebrtc", mesh=False,
                        ice_restart_timeout=0, **options)  # fmt: skip
            peer.p2pt.on("msg", lambda _, msg: heard.append(msg))
        p2pt = peer if isinstance(peer, P2PT) else peer.p2pt
        try:
            await node.start()
            await tracker.wait_for(lambda stats: stats.peers >= 1)
            await peer.start()
            peer_id = p2pt.peer_id
            await until(lambda: peer_id in node.p2pt.peers, (node.p2pt, "peerconnect"), timeout=20)
            ours = next(iter(node.p2pt._remotes[peer_id].channels.values()))
            assert ours.restart is not None  # the node restarts, were the other end to
            await until(lambda: any(isinstance(m, dict) and "hello" in m for m in heard),
                        (p2pt, "msg"), timeout=10)  # fmt: skip
            if isinstance(peer, Node):
                theirs = next(iter(p2pt._remotes[node.peer_id].channels.values()))
                assert theirs.restart is None and "restart" not in peer.hello()
            node.p2pt.ice_suspect(peer_id, ours.connection)
            assert not ours.restarting and node.p2pt.ice_restarts["lost"] == 0
            assert not ours.restart.armed and not ours.restart.key_sent
            assert not ours.link.keep_on_ice_failure  # a failed ICE closes it, as before
            hellos = [m["hello"] for m in heard if isinstance(m, dict) and "hello" in m]
            assert hellos and all(h.get("restart") in (None, True) for h in hellos)
        finally:
            await node.close()
            if isinstance(peer, P2PT):
                await peer.destroy()
            else:
                await peer.close()


async def test_a_restart_goes_through_another_tracker_when_the_connections_own_is_gone() -> None:
    """The tracker a connection was made through has stopped: its restart is signalled through
    the other tracker both ends use (docs/PROTOCOL.md section 9.2, Paths)."""
    async with (
        TrackerServer("127.0.0.1", 0) as first,
        TrackerServer("127.0.0.1", 0) as second,
        connected(first, first.url, ("libwebrtc", "libwebrtc")) as (a, b),
    ):
        nodes = (a, b)
        for node in nodes:  # the second tracker is added once they are connected
            node.p2pt.add_tracker(second.url)
        await second.wait_for(lambda stats: stats.peers >= 2)
        ab = connection(a, b)
        assert ab.origin == first.url
        offerer, answerer = (a, b) if ab.initiator else (b, a)
        ours, theirs = connection(offerer, answerer), connection(answerer, offerer)
        assert ours.restart is not None and theirs.restart is not None
        armed = (ours.restart, theirs.restart)
        steps = [(offerer.p2pt, "icerestart"), (answerer.p2pt, "icerestart")]
        await until(lambda: all(r.armed for r in armed), *steps, timeout=10)
        await first.close()
        gone = [(node.p2pt, "trackerwarning") for node in nodes]
        await until(lambda: not any(n.p2pt.trackers[first.url].connected for n in nodes),
                    *gone, timeout=10)  # fmt: skip
        offerer.p2pt.ice_suspect(answerer.peer_id, ours.connection)
        await until(lambda: ours.restarts == 1 and theirs.restarts == 1, *steps, timeout=20)
        assert ours.is_open and connection(offerer, answerer) is ours
        await asyncio.wait_for(offerer.unary_unary(HEALTH)(b"", timeout=10), 10)


class FreezingProxy:
    """A TCP proxy in front of a tracker whose connections can be frozen: a frozen one carries
    nothing either way and stays open (no FIN, no RST), as a socket whose network went away;
    connections made after a freeze are carried."""

    def __init__(self, port: int) -> None:
        self.port, self.url = port, ""
        self.accepted = 0
        self._pumps: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        self.freeze()
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            self._pumps.append(asyncio.create_task(self._pump(source, sink)))

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        sink.close()

    def freeze(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        self._pumps.clear()


async def test_a_tracker_that_stopped_answering_is_reconnected_when_a_restart_begins() -> None:
    """Both ends reach their tracker over sockets that went silent (no close, no error) as the
    path went: the restart drops them and reconnects, and is signalled over the new ones, well
    within ``ice_restart_timeout`` (a socket's own pings take 20 + 20 s to notice)."""
    async with TrackerServer("127.0.0.1", 0) as tracker:
        port = int(tracker.url.rsplit(":", 1)[1])
        async with (
            FreezingProxy(port) as proxy,
            connected(tracker, proxy.url, ("libwebrtc", "libwebrtc")) as (a, b),
        ):
            ab, ba = connection(a, b), connection(b, a)
            assert ab.restart is not None and ba.restart is not None
            armed = (ab.restart, ba.restart)
            steps = [(a.p2pt, "icerestart"), (b.p2pt, "icerestart")]
            await until(lambda: all(r.armed for r in armed), *steps, timeout=10)
            assert proxy.accepted == 2
            proxy.freeze()
            started_at = asyncio.get_running_loop().time()
            a.p2pt.ice_suspect(b.peer_id, ab.connection)
            b.p2pt.ice_suspect(a.peer_id, ba.connection)
            await until(lambda: ab.restarts == 1 and ba.restarts == 1, *steps, timeout=25)
            took = asyncio.get_running_loop().time() - started_at
            assert proxy.accepted == 4  # both reconnected
            assert took < ab.options.ice_restart_timeout
            assert a.p2pt.ice_restarts["gave_up"] == b.p2pt.ice_restarts["gave_up"] == 0
            await asyncio.wait_for(a.unary_unary(HEALTH)(b"", timeout=10), 10)
