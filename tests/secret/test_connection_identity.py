"""Identity belongs to a connection: a peer id is a claim anyone can make, a key is proven on one
connection, and nothing is decided from the claim alone.

The attacker here is a member (it holds the secret, where there is one) running a copy of the
library that announces and signs under another peer's id, and reaches its victim through a
relayed offer (the mesh's path; the tracker's is the same code from the handshake on).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc import Identity
from p2prpc.errors import RpcError
from p2prpc.node import Node, PeerInfo
from p2prpc.p2pt import P2PT
from p2prpc.rpc import (
    Cardinality,
    Handler,
    HandlerCallDetails,
    ServicerContext,
    StatusCode,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from p2prpc.rpc.endpoint import endpoint_of
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.secret import AuthError

pytestmark = pytest.mark.asyncio

SECRET = "q2J9-vR7mXc4T0pLw8sYb3NfK6dHz1Ue"
SERVICE = "test.Admin"
DELETE = f"/{SERVICE}/Delete"
COUNT = f"/{SERVICE}/Count"


class Admin:
    """A service whose calls record who the server believed was calling."""

    def __init__(self, answer: str = "deleted") -> None:
        self.answer = answer
        self.calls: list[tuple[str, list[bytes] | None]] = []
        self.cancelled = asyncio.Event()

    async def Delete(self, request: StringValue, context: ServicerContext) -> StringValue:
        self.calls.append((request.value, context.peer_identities()))
        return StringValue(value=f"{self.answer} {request.value}")

    async def Count(self, request: StringValue, context: ServicerContext) -> AsyncIterator[Any]:
        try:
            for n in range(1_000_000):
                yield StringValue(value=str(n))
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def serve(node: Node, admin: Admin) -> None:
    node.add_service(
        SERVICE,
        {
            DELETE: Handler(admin.Delete, Cardinality.UNARY_UNARY, StringValue, StringValue),
            COUNT: Handler(admin.Count, Cardinality.UNARY_STREAM, StringValue, StringValue),
        },
    )


def delete(target: Any) -> UnaryUnaryMethod[StringValue, StringValue]:
    return UnaryUnaryMethod(target, DELETE, StringValue, StringValue)


class AdminsOnly:
    """The README's server interceptor: only the listed keys may call."""

    def __init__(self, keys: list[bytes]) -> None:
        self.keys = keys
        self.seen: list[tuple[bytes, ...] | None] = []

    async def intercept_service(self, details: HandlerCallDetails, proceed: Any) -> Any:
        self.seen.append(details.peer_identities)
        if not details.peer_identities or details.peer_identities[0] not in self.keys:
            raise RpcError(StatusCode.PERMISSION_DENIED, "admins only")
        return await proceed(details)


@asynccontextmanager
async def nodes(*options: dict[str, Any], urls: list[str] | None = None) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        made = []
        for kwargs in options:
            node = loopback_node(urls or [], "identity-app", mesh=False, **kwargs)
            stack.push_async_callback(node.close)
            made.append(node)
        for node in made:
            await node.start()
        yield made


def claim(node: Node, peer_id: str) -> None:
    """Make ``node`` announce, seal and sign under another peer's id, as a modified copy of the
    library would (nothing stops anyone from choosing the 20 bytes it announces)."""
    p2pt = node.p2pt
    p2pt._peer_id = bytes.fromhex(peer_id)
    p2pt.peer_id = peer_id
    p2pt.signalling.peer_id = p2pt._peer_id
    p2pt._handshake.peer_id = p2pt._peer_id


async def connect(a: P2PT, b: P2PT, *, refused: bool = False) -> None:
    """One more connection from ``a`` to ``b``, its offer and answer relayed as the mesh does.
    ``refused``: ``b`` refuses it as it opens, which can be before ``a`` has applied the answer
    (libwebrtc opens the channel on its own thread), so ``a`` may not take it."""
    made = await a.make_offer(b.peer_id, origin="relay:test")
    assert made is not None
    offer_id, text = made
    answer = await b.answer_offer(a.peer_id, offer_id, text, origin="relay:test")
    assert answer is not None
    taken = await a.take_answer(b.peer_id, offer_id, answer)
    assert taken or refused


async def until(condition: Callable[[], bool], *nodes: Node, timeout: float = 15) -> None:
    """Wait until ``condition()`` holds, checked on every event of the nodes' P2PT and node."""
    changed = asyncio.Event()
    names = ("peerconnect", "peerclose", "peerrefused", "connectionclose", "msg")
    undo = []
    for node in nodes:
        for emitter, name in [(node.p2pt, n) for n in names] + [(node, "peer")]:
            listener = emitter.on(name, lambda *_: changed.set())
            undo.append((emitter, name, listener))
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                changed.clear()
                await changed.wait()
    finally:
        for emitter, name, listener in undo:
            emitter.remove_listener(name, listener)


def channels(node: Node, other: Node) -> int:
    """How many counted connections ``node`` has to ``other``."""
    remote = node.p2pt._remotes.get(other.peer_id)
    return len(remote.channels) if remote is not None else 0


@asynccontextmanager
async def two_connections(service: Admin) -> AsyncIterator[tuple[Node, Node]]:
    """A client and a server serving ``service``, with two connections between them."""
    async with nodes({}, {}) as (client, server):
        serve(server, service)
        await connect(client.p2pt, server.p2pt)
        await connect(server.p2pt, client.p2pt)
        await until(lambda: client.servers_of(SERVICE) != [], client)
        await both_open(client, server)
        yield client, server


async def both_open(node: Node, other: Node, timeout: float = 15) -> None:
    """Wait until ``node`` counts two connections to ``other`` (no event announces a backup
    connection, so this looks every 20 ms)."""
    async with asyncio.timeout(timeout):
        while channels(node, other) < 2:  # noqa: ASYNC110 - no event tells of a backup channel
            await asyncio.sleep(0.02)


def refusals(node: Node) -> list[tuple[str, Exception]]:
    found: list[tuple[str, Exception]] = []
    node.p2pt.on("peerrefused", lambda peer_id, error: found.append((peer_id, error)))
    return found


@pytest.mark.parametrize("secret", [SECRET, None], ids=["secret", "open"])
async def test_a_connection_that_proves_no_key_cannot_act_as_a_peer_that_proved_one(
    secret: str | None,
) -> None:
    """Reproduced: a member with no identity reached the server under an admin's peer id and
    its call ran with the admin's key in ``peer_identities()``."""
    server_id, admin_id = Identity.generate(), Identity.generate()
    common = {"secret": secret} if secret else {}
    guard = AdminsOnly([admin_id.public_key])
    admin_service = Admin()
    async with nodes(
        {**common, "identity": server_id, "server_interceptors": [guard], "auth_timeout": 1.0},
        {**common, "identity": admin_id},
        {**common},
    ) as (server, admin, member):
        serve(server, admin_service)
        refused = refusals(server)
        await connect(admin.p2pt, server.p2pt)
        await until(lambda: admin.servers_of(SERVICE) != [], admin)
        assert (await delete(admin)(StringValue(value="a"), timeout=10)).value == "deleted a"

        claim(member, admin.peer_id)
        await connect(member.p2pt, server.p2pt, refused=True)
        await until(lambda: any(pid == admin.peer_id for pid, _ in refused), server)
        assert isinstance(refused[0][1], AuthError)
        # Whatever the member managed to send meanwhile reached no servicer and no interceptor.
        if server.peer_id in member.p2pt.peers:
            with pytest.raises(RpcError):
                await delete(member.to(server.peer_id))(StringValue(value="b"), timeout=3)
        assert admin_service.calls == [("a", [admin_id.public_key])]
        assert guard.seen == [(admin_id.public_key,)]
        # The admin's own connection is untouched.
        assert server.p2pt.peers[admin.peer_id].public_key == admin_id.public_key
        assert (await delete(admin)(StringValue(value="c"), timeout=10)).value == "deleted c"
        assert admin_service.calls[-1] == ("c", [admin_id.public_key])


@pytest.mark.parametrize("secret", [SECRET, None], ids=["secret", "open"])
async def test_a_key_proven_under_an_id_outranks_who_claimed_the_id_first(
    secret: str | None,
) -> None:
    """Reproduced: a member connected under a server's peer id before the server did; once the
    server joined, the client's call pinned to the server's key got the member's forged reply."""
    client_id, server_id = Identity.generate(), Identity.generate()
    common = {"secret": secret} if secret else {}
    genuine, forged = Admin("deleted"), Admin("forged")
    async with nodes(
        {**common, "identity": client_id, "auth_timeout": 1.0},
        {**common, "identity": server_id},
        {**common},
    ) as (client, server, member):
        serve(server, genuine)
        serve(member, forged)
        refused = refusals(client)
        claim(member, server.peer_id)
        await connect(member.p2pt, client.p2pt)
        await until(lambda: client.servers_of(SERVICE) != [], client)
        with pytest.raises(RpcError) as nobody:  # the member proves no key: never picked
            await delete(client.to_identity(server_id.public_key))(
                StringValue(value="x"), timeout=2
            )
        assert nobody.value.code() in (StatusCode.UNAVAILABLE, StatusCode.DEADLINE_EXCEEDED)

        await connect(server.p2pt, client.p2pt)
        await until(
            lambda: (
                client.peer_identity(server.peer_id) == server_id.public_key
                and client.peers.get(server.peer_id) is not None
                and client.peers[server.peer_id].public_key == server_id.public_key
            ),
            client,
        )
        reply = await delete(client.to_identity(server_id.public_key))(
            StringValue(value="y"), timeout=10
        )
        assert reply.value == "deleted y"
        assert forged.calls == [] and genuine.calls == [("y", [client_id.public_key])]
        # The connection that proved nothing under the server's id is closed.
        await until(lambda: any(pid == server.peer_id for pid, _ in refused), client)
        # The server was told what the client serves (its hello went to the member's connection
        # first): both ends know each other.
        await until(lambda: server.peers.get(client.peer_id, PeerInfo("")).hello, server)
        remote = client.p2pt._remotes[server.peer_id]
        assert all(c.public_key == server_id.public_key for c in remote.channels.values())


async def test_over_a_tracker_a_member_under_an_admins_id_is_refused() -> None:
    """The same takeover through the tracker: the member announces under the admin's id."""
    server_id, admin_id = Identity.generate(), Identity.generate()
    common = {"secret": SECRET}
    guard = AdminsOnly([admin_id.public_key])
    admin_service = Admin()
    async with (
        TrackerServer("127.0.0.1", 0) as tracker,
        nodes(
            {**common, "identity": server_id, "server_interceptors": [guard]},
            {**common, "identity": admin_id},
            urls=[tracker.url],
        ) as (server, admin),
    ):
        serve(server, admin_service)
        async with asyncio.timeout(20):
            await admin.wait_for_server(SERVICE)
        refused = refusals(server)
        member = loopback_node([tracker.url], "identity-app", mesh=False, **common)
        claim(member, admin.peer_id)
        try:
            await member.start()
            await until(lambda: bool(refused), server, timeout=30)
            assert refused[0][0] == admin.peer_id
        finally:
            await member.close()
        assert admin_service.calls == [] and guard.seen == []
        reply = await delete(admin)(StringValue(value="z"), timeout=10)
        assert reply.value == "deleted z"
        assert admin_service.calls == [("z", [admin_id.public_key])]


async def test_a_call_ends_with_the_connection_it_was_made_on() -> None:
    """Reproduced: the server dropped a client's connection and cancelled its stream while the
    client had opened another connection to it; the client's call stayed open to its deadline.
    A call lives and dies with its connection, whatever other connections the peer keeps."""
    service = Admin()
    async with two_connections(service) as (client, server):
        remote = client.p2pt._remotes[server.peer_id]

        stream = UnaryStreamMethod(client, COUNT, StringValue, StringValue)(
            StringValue(), timeout=60
        )
        first = await asyncio.wait_for(stream.read(), 10)
        assert isinstance(first, StringValue)
        (attempt,) = endpoint_of(client)._client.values()
        assert attempt.connection is not None
        label = next(c.name for c in remote.channels.values() if c.connection == attempt.connection)
        server.p2pt._remotes[client.peer_id].channels[label].close()  # dropped at the server

        async with asyncio.timeout(10):  # not the call's 60 s deadline
            with pytest.raises(RpcError) as ended:
                while True:
                    await stream.read()
        assert ended.value.code() is StatusCode.UNAVAILABLE
        await asyncio.wait_for(service.cancelled.wait(), 10)
        # The peer itself stays, on its other connection, and new calls go there.
        assert client.p2pt.is_connected(server.peer_id)
        reply = await delete(client)(StringValue(value="after"), timeout=10)
        assert reply.value == "deleted after"


async def test_a_reply_on_another_connection_of_the_same_peer_is_not_the_calls() -> None:
    """Replies are taken only from the connection the call went on: a second connection under
    the same peer id (open swarm, no keys) cannot answer someone else's call."""
    service = Admin()
    async with two_connections(service) as (client, server):
        remote = client.p2pt._remotes[server.peer_id]
        stream = UnaryStreamMethod(client, COUNT, StringValue, StringValue)(
            StringValue(), timeout=30
        )
        await asyncio.wait_for(stream.read(), 10)
        (attempt,) = endpoint_of(client)._client.values()
        other = next(c for c in remote.channels.values() if c.connection != attempt.connection)
        from p2prpc.wire.envelope import Envelope, Kind, to_binary
        from p2prpc.wire.status import Status

        label = other.name
        server_side = server.p2pt._remotes[client.peer_id].channels[label]
        forged = Envelope(
            Kind.STATUS, attempt.call_id, 10_000, status=Status(StatusCode.OK, "forged end")
        )
        server_side.send(to_binary(forged))
        got = [await asyncio.wait_for(stream.read(), 10) for _ in range(5)]
        assert all(isinstance(m, StringValue) for m in got)  # the call went on
        assert not stream.done()
        stream.cancel()


async def test_a_relay_listing_a_peer_under_its_own_key_gets_no_connection_under_its_id() -> None:
    """Reproduced by a hostile review: a relay listed a peer with its own identity and seal key,
    opened the offer meant for that peer, answered under the peer's id proving no key, and
    answered calls to that id. A connection made to reach a key counts only if it proves it."""
    from p2prpc.wire.sealbox import SealKeyPair

    offerer_id, target_id, relay_id = Identity.generate(), Identity.generate(), Identity.generate()
    async with nodes(
        {"secret": SECRET, "identity": offerer_id, "auth_timeout": 1.0},
        {"secret": SECRET, "identity": target_id},
        {"secret": SECRET, "identity": relay_id},
    ) as (offerer, target, relay):
        serve(relay, Admin("forged"))
        refused = refusals(offerer)
        # The relay's record for the target's id, signed with its own key (what it lists).
        record = SealKeyPair.generate(
            identity=relay_id.public_key,
            sign=relay_id.sign,
            info_hash=relay.p2pt.info_hash,
            peer_id=bytes.fromhex(target.peer_id),
        )
        claim(relay, target.peer_id)
        relay.p2pt.signalling.own_key = record
        relay.p2pt._handshake.identity = None  # it proves the secret and no key
        relay.p2pt._handshake.id_nonce = None
        made = await offerer.p2pt.make_offer(
            target.peer_id, origin="relay:test", seal_to=record.record
        )
        assert made is not None
        offer_id, text = made
        answer = await relay.p2pt.answer_offer(offerer.peer_id, offer_id, text, origin="relay:test")
        assert answer is not None  # it could open what was sealed to its own key
        # Taken, or refused already: the connection can open and fail its handshake before
        # take_answer resumes (libwebrtc opens it on its own thread).
        await offerer.p2pt.take_answer(target.peer_id, offer_id, answer)
        await until(lambda: bool(refused), offerer)
        assert refused[0][0] == target.peer_id
        assert "reached for" in str(refused[0][1])
        assert target.peer_id not in offerer.p2pt.peers
        assert offerer.servers_of(SERVICE) == []


async def test_a_second_connection_with_the_label_of_another_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Labels are chosen by the offerer: a second connection under one peer id with a label
    already in use would take the first's place in the table and leave it open and unseen."""
    async with nodes({}, {}) as (a, b):
        label = "ab" * 20
        monkeypatch.setattr("p2prpc.swarm.connection.secrets.token_hex", lambda n: label)
        refused = refusals(b)
        await connect(a.p2pt, b.p2pt)
        await until(lambda: channels(b, a) == 1, b)
        first = b.p2pt._remotes[a.peer_id].channels[label]
        await connect(a.p2pt, b.p2pt, refused=True)  # the same label again
        await until(lambda: bool(refused), b)
        assert "label of another" in str(refused[0][1])
        assert b.p2pt._remotes[a.peer_id].channels[label] is first and first.is_open
        assert channels(b, a) == 1
