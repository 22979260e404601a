"""Closed swarms over real WebRTC on loopback: what a tracker in the middle sees and can do, in
open mode and in secret mode, and who gets in."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc import Identity
from p2prpc.errors import RpcError
from p2prpc.node import Node
from p2prpc.rpc import (
    Cardinality,
    Channel,
    Handler,
    HandlerCallDetails,
    RetryPolicy,
    ServicerContext,
    StatusCode,
    UnaryUnaryMethod,
)
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.secret import AUTH_MAGIC, SEAL_PREFIX, SealError

from .mitm import MitmTracker

pytestmark = pytest.mark.asyncio

SERVICE = "test.Greeter"
SAY = f"/{SERVICE}/Say"
IDENTIFIER = "closed-app"
SECRET = "closed-app secret 5b1f0e9a73c2d846"
GUESS = "a wrong guess 0c7d3a9e51f2b864"


class Greeter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[bytes] | None]] = []

    async def Say(self, request: StringValue, context: ServicerContext) -> StringValue:
        self.calls.append((request.value, context.peer_identities()))
        return StringValue(value=f"Hello, {request.value}!")


def serve(node: Node, greeter: Greeter) -> None:
    node.add_service(
        SERVICE, {SAY: Handler(greeter.Say, Cardinality.UNARY_UNARY, StringValue, StringValue)}
    )


def say(target: Any) -> UnaryUnaryMethod[StringValue, StringValue]:
    return UnaryUnaryMethod(target, SAY, StringValue, StringValue)


@asynccontextmanager
async def nodes(*kwargs: dict[str, Any], urls: list[str]) -> AsyncIterator[list[Node]]:
    async with AsyncExitStack() as stack:
        started = []
        for options in kwargs:
            node = loopback_node(urls, options.pop("identifier", IDENTIFIER), **options)
            stack.push_async_callback(node.close)
            started.append(node)
        for node in started:
            await node.start()
        yield started


async def until(node: Node, event: str, condition: Callable[[], bool], timeout: float = 20) -> None:
    """Wait until ``condition()`` holds, checked whenever the node's P2PT emits ``event``."""
    changed = asyncio.Event()
    listener = node.p2pt.on(event, lambda *_: changed.set())
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                changed.clear()
                await changed.wait()
    finally:
        node.p2pt.remove_listener(event, listener)


def pwn(direction: str, data: str | bytes) -> str | bytes:
    """What the tracker in the middle does to every message: rewrite the greeting."""
    if isinstance(data, bytes):
        return data.replace(b"Hello, ", b"Pwned, ")
    return data.replace("Hello, ", "Pwned, ")


def _bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


async def test_open_mode_a_tracker_in_the_middle_reads_and_rewrites_a_call() -> None:
    """P2PT issue #9, shown: nothing protects an open swarm from its tracker."""
    async with MitmTracker(pwn) as mitm, nodes({}, {}, urls=[mitm.url]) as (server, client):
        serve(server, Greeter())
        async with asyncio.timeout(20):
            await client.wait_for_server(SERVICE)
        reply = await say(client)(StringValue(value="card 4111-1111"), timeout=10)
        assert reply.value == "Pwned, card 4111-1111!"
        assert any(b"card 4111-1111" in _bytes(data) for _, data in mitm.relayed)
        assert mitm.info_hashes == {hashlib.sha1(IDENTIFIER.encode()).digest()}


async def test_secret_mode_peers_refuse_the_tracker_and_meet_through_an_honest_one() -> None:
    async with (
        MitmTracker(pwn) as mitm,
        TrackerServer("127.0.0.1", 0) as honest,
        nodes({"secret": SECRET}, {"secret": SECRET}, urls=[mitm.url, honest.url]) as (
            server,
            client,
        ),
    ):
        warnings: list[Exception] = []
        client.p2pt.on("trackerwarning", lambda error, stats: warnings.append(error))
        server.p2pt.on("trackerwarning", lambda error, stats: warnings.append(error))
        serve(server, Greeter())
        async with asyncio.timeout(20):
            await client.wait_for_server(SERVICE)
        reply = await say(client)(StringValue(value="card 4111-1111"), timeout=10)
        assert reply.value == "Hello, card 4111-1111!"
        # The tracker answered one's offer and offered to the other, with its own plain SDP:
        # both were refused, neither answered.
        refused = lambda: client.p2pt.signalling.refused + server.p2pt.signalling.refused  # noqa: E731
        await until(client, "trackerwarning", lambda: refused() >= 2)
        await until(server, "trackerwarning", lambda: refused() >= 2)
        assert any(isinstance(w, SealError) for w in warnings)
        assert mitm.relayed == []  # no connection through it ever opened
        assert mitm.sdps and all(s.startswith(SEAL_PREFIX) for s in mitm.sdps)
        assert not any("fingerprint" in s or "127.0.0.1" in s for s in mitm.sdps)
        assert list(client.p2pt.peers) == [server.peer_id]
        assert mitm.info_hashes == {client.p2pt.info_hash}
        assert client.p2pt.info_hash != hashlib.sha1(IDENTIFIER.encode()).digest()


async def test_with_sealing_off_the_proof_alone_refuses_a_tracker_in_the_middle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sealing turned off (plain SDP in a secret swarm): the tracker gets its connections open,
    and the handshake, bound to the DTLS fingerprints, still keeps it out of the swarm."""
    from p2prpc.swarm.sealing import Signalling

    for name in ("open_offer", "open_answer", "seal_offer", "seal_answer"):
        monkeypatch.setattr(Signalling, name, lambda self, *ids_and_sdp: ids_and_sdp[-1])
    async with (
        MitmTracker(pwn) as mitm,
        nodes({"secret": SECRET}, {"secret": SECRET}, urls=[mitm.url]) as (a, b),
    ):
        connected: list[str] = []
        for node in (a, b):
            node.p2pt.on("peerconnect", lambda peer: connected.append(peer.id))
        await until(a, "peerrefused", lambda: a.p2pt.refused_peers >= 1)
        await until(b, "peerrefused", lambda: b.p2pt.refused_peers >= 1)
        assert mitm.opened.is_set()  # the tracker was in the middle, at the WebRTC level
        assert connected == [] and not a.p2pt.peers and not b.p2pt.peers
        # All that crossed it were the two handshakes, each for the wrong connection.
        assert mitm.relayed and all(
            isinstance(d, bytes) and d[0] == AUTH_MAGIC for _, d in mitm.relayed
        )


async def test_without_the_secret_or_with_another_a_node_never_connects() -> None:
    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        nodes(
            {"secret": SECRET}, {"secret": SECRET}, {"secret": GUESS}, {}, urls=[tracker.url]
        ) as (
            a,
            b,
            wrong,
            none,
        ),
    ):
        # An outsider that learned the swarm's info_hash (from the tracker) but not its secret.
        stolen = loopback_node([tracker.url], IDENTIFIER, secret=GUESS)
        stolen.p2pt.info_hash = a.p2pt.info_hash
        stolen.p2pt.signalling.info_hash = a.p2pt.info_hash
        seen: list[object] = []
        for outsider in (wrong, none, stolen):
            outsider.p2pt.on("data", lambda peer, data: seen.append(data))
            outsider.p2pt.on("peerconnect", lambda peer: seen.append(peer))
        try:
            async with asyncio.timeout(20):
                await a.wait_for_peers(1)
            await stolen.start()
            # Its offers reach the members and do not open there; theirs do not open for it.
            await until(a, "trackerwarning", lambda: a.p2pt.signalling.refused >= 1)
            a.p2pt.request_more_peers()
            await until(stolen, "trackerwarning", lambda: stolen.p2pt.signalling.refused >= 1)
        finally:
            await stolen.close()
        assert seen == []
        assert set(a.p2pt.peers) == {b.peer_id} and set(b.p2pt.peers) == {a.peer_id}
        assert a.p2pt.info_hash != hashlib.sha1(IDENTIFIER.encode()).digest()
        assert len({a.p2pt.info_hash, wrong.p2pt.info_hash, none.p2pt.info_hash}) == 3


async def test_a_node_with_another_secret_is_told_unavailable_once_the_tracker_counts_nobody() -> (
    None
):
    """For it the swarm is empty: a call fails UNAVAILABLE as soon as the tracker has answered
    (not at its deadline), and with wait_for_ready it waits until its deadline."""
    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        nodes({"secret": SECRET}, {"secret": GUESS}, urls=[tracker.url]) as (server, wrong),
    ):
        serve(server, Greeter())
        once = Channel(wrong, retry_policy=RetryPolicy(max_attempts=1))
        async with asyncio.timeout(20):
            while (state := once.get_state()) is not grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                await once.wait_for_state_change(state)
        with pytest.raises(RpcError) as caught:
            await say(once)(StringValue(value="x"), timeout=30)
        assert caught.value.code() is StatusCode.UNAVAILABLE
        assert "knows no other peer in the swarm" in caught.value.details()
        with pytest.raises(RpcError) as caught:
            await say(once)(StringValue(value="x"), timeout=0.5, wait_for_ready=True)
        assert caught.value.code() is StatusCode.DEADLINE_EXCEEDED


async def test_allowed_peers_refuses_a_peer_holding_the_secret_before_any_call() -> None:
    server_id, friend_id, intruder_id = (Identity.generate() for _ in range(3))
    greeter = Greeter()
    async with TrackerServer("127.0.0.1", 0) as tracker:
        common = {"secret": SECRET}
        async with nodes(
            {**common, "identity": server_id, "allowed_peers": [friend_id.public_key]},
            {**common, "identity": intruder_id},
            urls=[tracker.url],
        ) as (server, intruder):
            serve(server, greeter)
            admitted: list[str] = []
            server.p2pt.on("peerconnect", lambda peer: admitted.append(peer.id))
            await until(server, "peerrefused", lambda: server.p2pt.refused_peers >= 1)
            await until(intruder, "peerclose", lambda: server.peer_id not in intruder.p2pt.peers)
            with pytest.raises(RpcError) as failed:
                await say(intruder.to(server.peer_id))(StringValue(value="let me in"), timeout=5)
            assert failed.value.code() is StatusCode.UNAVAILABLE
            assert greeter.calls == [] and admitted == []
            assert intruder.servers_of(SERVICE) == []
            async with nodes({**common, "identity": friend_id}, urls=[tracker.url]) as (friend,):
                async with asyncio.timeout(20):
                    await friend.wait_for_server(SERVICE)
                reply = await say(friend.to_identity(server_id.public_key))(
                    StringValue(value="friend"), timeout=10
                )
                assert reply.value == "Hello, friend!"
                assert greeter.calls == [("friend", [friend_id.public_key])]
                assert friend.peers[server.peer_id].public_key == server_id.public_key
            # The friend may have let the intruder in (it allows anyone with the secret); once the
            # friend has gone, the intruder is left with no one: the server never admitted it.
            await until(intruder, "peerclose", lambda: intruder.p2pt.peers == {})


async def test_open_mode_identities_reach_servicers_interceptors_and_channels() -> None:
    server_id, known_id = Identity.generate(), Identity.generate()
    seen: list[HandlerCallDetails] = []

    class OnlyKnownKeys:
        async def intercept_service(self, details: HandlerCallDetails, proceed: Any) -> Any:
            seen.append(details)
            if details.method == SAY and details.peer_identities is None:
                raise RpcError(StatusCode.PERMISSION_DENIED, "say who you are")
            return await proceed(details)

    greeter = Greeter()
    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        nodes(
            {"identity": server_id, "server_interceptors": [OnlyKnownKeys()]},
            {},
            {"identity": known_id},
            urls=[tracker.url],
        ) as (server, anonymous, known),
    ):
        serve(server, greeter)
        async with asyncio.timeout(20):
            await anonymous.wait_for_server(SERVICE)
            await known.wait_for_server(SERVICE)
        assert anonymous.peers[server.peer_id].public_key == server_id.public_key
        with pytest.raises(RpcError) as denied:
            await say(anonymous)(StringValue(value="anon"), timeout=10)
        assert denied.value.code() is StatusCode.PERMISSION_DENIED
        reply = await say(known)(StringValue(value="me"), timeout=10)
        assert reply.value == "Hello, me!"
        assert greeter.calls == [("me", [known_id.public_key])]
        assert [d.peer_identities for d in seen] == [None, (known_id.public_key,)]
        other = Channel(known, allowed_servers=[Identity.generate().public_key])
        with pytest.raises(RpcError) as nobody:
            await say(other)(StringValue(value="x"), timeout=10)
        assert nobody.value.code() is StatusCode.UNAVAILABLE
