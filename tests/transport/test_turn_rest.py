"""TURN credentials as operators issue them, against a real coturn (tests/lab/turn.py) that takes
only TURN REST API credentials (``use-auth-secret``, ``static-auth-secret``): nodes limited to
relayed candidates meet through it with credentials a provider makes before each connection
attempt; expired ones are refused and the next attempt's renewed ones work; a provider that
raises is reported and asked again.

TURN over TCP: over UDP from this process's veth address it is slow under a loaded test run.
Needs root and coturn (``make apt``); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aiortc import RTCIceServer
from helloworld_p2prpc import GreeterServicer, GreeterStub, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest
from lab.turn import TurnLab, unavailable_reason

from p2prpc.errors import IceServersUnavailable
from p2prpc.node import Node
from p2prpc.rpc import ServicerContext
from p2prpc.testing import until
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport.ice import IceServerLike, TurnRestCredentials

pytestmark = [
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

SECRET = "shared-with-coturn-only"

TRANSPORTS = [
    pytest.param(
        "libwebrtc",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("webrtc") is None,
            reason="the libwebrtc transport needs wrtc (p2prpc[native])",
        ),
    ),
    "aiortc",
]


class Greeter(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        return HelloReply(message=f"hello {request.name}")


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnLab]:
    with TurnLab(auth_secret=SECRET) as lab:
        yield lab


@pytest_asyncio.fixture
async def tracker() -> AsyncIterator[TrackerServer]:
    async with TrackerServer("127.0.0.1", 0) as server:
        yield server


def relay_node(tracker: TrackerServer, servers: list[IceServerLike], transport: str) -> Node:
    return Node(
        [tracker.url],
        "p2prpc-turn-rest",
        ice_servers=servers,
        ice_transport_policy="relay",
        transport=transport,
    )


def relay_nodes(
    tracker: TrackerServer, servers: list[list[IceServerLike]], transport: str
) -> list[Node]:
    """A node for each list of servers; the first serves the greeter."""
    nodes = [relay_node(tracker, each, transport) for each in servers]
    add_GreeterServicer_to_node(Greeter(), nodes[0])
    return nodes


async def start(tracker: TrackerServer, nodes: list[Node]) -> None:
    for started, node in enumerate(nodes, 1):
        await node.start()
        await tracker.wait_for(lambda stats, n=started: stats.peers >= n)


async def call(nodes: list[Node]) -> None:
    async with asyncio.timeout(60):
        for node in nodes:
            await node.wait_for_peers(1)
        reply = await GreeterStub(nodes[1].to(nodes[0].peer_id)).SayHello(HelloRequest(name="b"))
    assert reply.message == "hello b"


def relayed(node: Node, turn: TurnLab) -> bool:
    """Whether every connection of ``node`` uses a pair of relayed addresses on the server."""
    pairs = [
        channel.link.selected_pair()
        for remote in node.p2pt._remotes.values()
        for channel in remote.channels.values()
    ]
    known = [(pair[0][0], pair[1][0]) for pair in pairs if pair is not None]
    return bool(known) and all(pair == (turn.server, turn.server) for pair in known)


def learnt_only_relayed_addresses(node: Node, turn: TurnLab) -> bool:
    """Whether every description ``node`` received offers relayed candidates on the server, and
    nothing else: under the relay policy no peer learns another's own addresses."""
    candidates = [
        line.split()
        for remote in node.p2pt._remotes.values()
        for channel in remote.channels.values()
        for line in channel.link.pc.remoteDescription.sdp.splitlines()  # type: ignore[attr-defined]
        if line.startswith("a=candidate:")
    ]
    return bool(candidates) and all(
        fields[4] == turn.server and fields[7] == "relay" for fields in candidates
    )


class Renewing:
    """A provider whose credentials expired an hour ago until :attr:`renewed`; counts its calls
    and the usernames it handed out."""

    def __init__(self, turn: TurnLab) -> None:
        url = turn.url(transport="tcp")
        self.expired = TurnRestCredentials(url, SECRET, ttl=-3600)
        self.fresh = TurnRestCredentials(url, SECRET, ttl=3600)
        self.renewed = False
        self.usernames: list[str] = []

    async def __call__(self) -> RTCIceServer:
        server = (self.fresh if self.renewed else self.expired)()
        assert server.username is not None
        self.usernames.append(server.username)
        return server


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rest_credentials_connect_relay_only_nodes(
    turn: TurnLab, tracker: TrackerServer, transport: str
) -> None:
    """Credentials made from the shared secret: coturn allocates for them, and two nodes that
    may use only relayed candidates call each other through it."""
    rest = TurnRestCredentials(turn.url(transport="tcp"), SECRET, user="alice", ttl=600)
    before = turn.log().count(":alice>, lifetime=")
    nodes = relay_nodes(tracker, [[rest], [rest]], transport)
    try:
        await start(tracker, nodes)
        await call(nodes)
        for node in nodes:
            assert relayed(node, turn)
            assert learnt_only_relayed_addresses(node, turn)
        assert turn.log().count(":alice>, lifetime=") > before  # allocations under that name
    finally:
        for node in nodes:
            await node.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_expired_credentials_are_refused_and_renewed_ones_connect(
    turn: TurnLab, tracker: TrackerServer, transport: str
) -> None:
    """While the provider hands out expired credentials coturn refuses them and no connection
    is made; once it renews them, the next attempt (asking it again) connects."""
    providers = [Renewing(turn), Renewing(turn)]
    nodes = relay_nodes(tracker, [[provider] for provider in providers], transport)
    try:
        await start(tracker, nodes)

        def refused() -> bool:
            log = turn.log()
            return all(
                provider.usernames
                and f"Cannot find credentials of user <{provider.usernames[0]}>" in log
                for provider in providers
            )

        # An offer or an answer leaves once its candidates are gathered (the allocation
        # refused): coturn has logged the refusal by the time the attempt is reported failed.
        # (With a TURN server, the first node offers to nobody: it answers the second's offer.)
        await until(refused, *((node.p2pt, "peerunreachable") for node in nodes), timeout=30)
        assert all(not node.peers for node in nodes)
        asked = [len(provider.usernames) for provider in providers]
        for provider in providers:
            provider.renewed = True
        for node in nodes:
            node.p2pt.request_more_peers()
        await call(nodes)
        for node in nodes:
            assert relayed(node, turn)
        # Asked again for the attempt that connected.
        assert all(len(p.usernames) > n for p, n in zip(providers, asked, strict=True))
    finally:
        for node in nodes:
            await node.close()


@pytest.mark.asyncio
async def test_a_provider_that_raises_is_reported_and_asked_again(
    turn: TurnLab, tracker: TrackerServer
) -> None:
    """The credential service is down for the first attempt: that attempt is told as a
    ``trackerwarning`` carrying :class:`IceServersUnavailable` (the provider's error its cause),
    and the next attempt's credentials connect through coturn."""
    rest = TurnRestCredentials(turn.url(transport="tcp"), SECRET)
    calls = 0

    def flaky() -> RTCIceServer:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("credential service down")
        return rest()

    nodes = relay_nodes(tracker, [[flaky], [rest]], "aiortc")
    warnings: list[Exception] = []
    nodes[0].p2pt.on("trackerwarning", lambda error, stats: warnings.append(error))
    try:
        await start(tracker, nodes)
        await until(lambda: bool(warnings), (nodes[0].p2pt, "trackerwarning"), timeout=30)
        [error] = [w for w in warnings if isinstance(w, IceServersUnavailable)]
        assert "credential service down" in str(error)
        assert isinstance(error.__cause__, ConnectionRefusedError)
        nodes[0].p2pt.request_more_peers()
        await call(nodes)
        assert relayed(nodes[0], turn) and calls >= 2
    finally:
        for node in nodes:
            await node.close()
