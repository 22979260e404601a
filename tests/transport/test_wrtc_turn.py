"""libwebrtc through a real TURN server (coturn, tests/lab/turn.py): nodes limited to relayed
candidates (``ice_transport_policy="relay"``) meet only through it, over UDP and TCP, and with
several servers given, through the one that works when the first is dead or refuses them; over
TLS (``turns:``) libwebrtc trusts only the certificate authorities built into it.

Needs root and coturn (``make apt``); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aiortc import RTCIceServer
from helloworld_p2prpc import GreeterServicer, GreeterStub, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest
from lab.turn import DEAD_PORT, TurnLab, unavailable_reason

from p2prpc.node import Node
from p2prpc.rpc import ServicerContext
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import RTCOptions

pytest.importorskip("webrtc.aiortc", reason="the libwebrtc transport needs wrtc (p2prpc[native])")

from p2prpc.transport.wrtc import WrtcLink, first_of_each_turn_url

pytestmark = [
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]


class Greeter(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        return HelloReply(message=f"hello {request.name}")


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnLab]:
    with TurnLab() as lab:
        yield lab


@pytest_asyncio.fixture
async def tracker() -> AsyncIterator[TrackerServer]:
    async with TrackerServer("127.0.0.1", 0) as server:
        yield server


async def relayed_call(tracker: TrackerServer, servers: list[RTCIceServer]) -> list[Node]:
    """Two libwebrtc nodes limited to relayed candidates from ``servers``: the second calls the
    first once they meet. Returns them, started (the caller closes them)."""
    nodes = [
        Node(
            [tracker.url],
            "p2prpc-turn",
            ice_servers=servers,
            ice_transport_policy="relay",
            transport="libwebrtc",
        )
        for _ in range(2)
    ]
    add_GreeterServicer_to_node(Greeter(), nodes[0])
    for started, node in enumerate(nodes, 1):
        await node.start()
        await tracker.wait_for(lambda stats, n=started: stats.peers >= n)
    async with asyncio.timeout(30):
        for node in nodes:
            await node.wait_for_peers(1)
        reply = await GreeterStub(nodes[1].to(nodes[0].peer_id)).SayHello(HelloRequest(name="b"))
    assert reply.message == "hello b"
    return nodes


async def relayed_pairs(node: Node, turn: TurnLab) -> list[tuple[str, str]]:
    """The local and remote addresses of the candidate pairs ``node``'s connections use, once
    libwebrtc names one (its network thread may name it a moment after a call went through:
    no event says when, so it is looked at every 10 ms, for at most 5 s)."""
    async with asyncio.timeout(5):
        while True:
            pairs = []
            for remote in node.p2pt._remotes.values():
                for channel in remote.channels.values():
                    pair = channel.link.selected_pair()
                    if pair is not None:
                        pairs.append((pair[0][0], pair[1][0]))
            if pairs:
                return pairs
            await asyncio.sleep(0.01)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("scheme", "transport"),
    [("turn", None), ("turn", "tcp")],
    ids=["udp", "tcp"],
)
async def test_relay_only_nodes_meet_through_turn(
    turn: TurnLab, tracker: TrackerServer, scheme: str, transport: str | None
) -> None:
    """One TURN URL, one way to reach the server: the call can only go through it that way."""
    url = turn.url(scheme, transport)
    before = turn.log().count("session")
    nodes = await relayed_call(tracker, [turn.ice_server(url)])
    try:
        for node in nodes:
            # Both ends of the pair in use are relayed addresses on the TURN server.
            pairs = await relayed_pairs(node, turn)
            assert pairs and all(pair == (turn.server, turn.server) for pair in pairs), pairs
        assert turn.log().count("session") > before  # coturn allocated for them
    finally:
        for node in nodes:
            await node.close()


@pytest.mark.asyncio
async def test_turns_checks_the_certificate_against_libwebrtcs_own_roots(turn: TurnLab) -> None:
    """``turns:`` is TURN over TLS, and libwebrtc verifies the server's certificate against the
    root certificates built into it (not the system's, nor ``SSL_CERT_FILE``): the lab's
    self-signed one is refused after the TLS handshake starts, so no relayed candidate is made
    (a server with a certificate from a public authority is needed; none is reachable here)."""
    before = turn.log().count("TLS/TCP socket")
    link = WrtcLink(
        RTCOptions(ice_servers=[turn.ice_server(turn.url("turns"))], ice_transport_policy="relay"),
        initiator=True,
        label="x" * 40,
    )
    link.on_close = lambda: None
    try:
        offer = await link.create_offer()
    finally:
        await link.wait_closed()
    assert "typ relay" not in offer
    assert turn.log().count("TLS/TCP socket") > before  # it did speak TLS to the server


@pytest.mark.asyncio
@pytest.mark.parametrize("first", ["dead", "refusing"])
async def test_a_dead_or_refusing_first_turn_server_leaves_the_second(
    turn: TurnLab, tracker: TrackerServer, first: str
) -> None:
    """Several servers, the first useless (nothing listens on its port; or its credentials are
    refused): libwebrtc gathers from all of them and the nodes meet through the second."""
    if first == "dead":
        useless = turn.ice_server(
            turn.url(port=DEAD_PORT), turn.url(transport="tcp", port=DEAD_PORT)
        )
        working = turn.ice_server(turn.url())
    else:  # the same server, reached another way (one allocation per client address and port)
        useless = turn.ice_server(turn.url(), credential="wrong")
        working = turn.ice_server(turn.url(transport="tcp"))
    servers = [RTCIceServer(urls=[f"stun:{turn.server}:{DEAD_PORT}"]), useless, working]
    nodes = await relayed_call(tracker, servers)
    try:
        for node in nodes:
            assert await relayed_pairs(node, turn)
    finally:
        for node in nodes:
            await node.close()


@pytest.mark.asyncio
async def test_every_server_and_url_is_handed_to_libwebrtc_as_given() -> None:
    """STUN and TURN servers, several URLs each, TCP and TLS ones, all reach libwebrtc's
    configuration, in order, with their credentials; and the relay policy with them."""
    servers = [
        RTCIceServer(urls=["stun:192.0.2.1:3478", "stun:192.0.2.2:3478"]),
        RTCIceServer(
            urls=["turn:192.0.2.3:3478", "turn:192.0.2.3:3478?transport=tcp"],
            username="a",
            credential="x",
        ),
        RTCIceServer(urls=["turns:192.0.2.4:5349"], username="b", credential="y"),
    ]
    for policy in ("all", "relay"):
        link = WrtcLink(
            RTCOptions(ice_servers=servers, ice_transport_policy=policy),  # type: ignore[arg-type]
            initiator=True,
            label="x" * 40,
        )
        link.on_close = lambda: None
        try:
            configuration = link.pc._native.get_configuration()
            assert [(s.urls, s.username, s.credential) for s in configuration.ice_servers] == [
                (s.urls, s.username, s.credential) for s in servers
            ]
            assert configuration.ice_transport_policy.value == policy
        finally:
            await link.wait_closed()


def test_an_unknown_ice_transport_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="ice_transport_policy must be one of all, relay"):
        RTCOptions(ice_transport_policy="public")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_refused_turn_credential_is_a_401_and_loopback_does_not_hold_the_offer(
    turn: TurnLab,
) -> None:
    """libwebrtc's ``icecandidateerror`` for a TURN server that refused our credentials is one
    :class:`~p2prpc.transport.IceServerError` of code 401 (once, whichever networks asked it).
    This process allowed loopback candidates (tests/conftest.py), so libwebrtc also asks the
    server from ``lo``, where nothing answers: the offer leaves once every other network has
    the server's answer, while libwebrtc still gathers there, its candidates ended."""
    refused = turn.url(transport="udp")  # as libwebrtc names it
    link = WrtcLink(
        RTCOptions(ice_servers=[turn.ice_server(refused, credential="wrong")]),
        initiator=True,
        label="refused",
    )
    try:
        sdp = await link.create_offer()
        assert link.pc.iceGatheringState == "gathering"  # libwebrtc still asks from lo
        assert sdp.count("a=end-of-candidates") == 1
        candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate")]
        assert candidates and not any(" 127.0.0.1 " in line for line in candidates)
        assert [(e.code, e.url) for e in link.ice_errors] == [(401, refused)]
        assert "refused our credentials" in str(link.ice_errors[0])
    finally:
        await link.wait_closed()


@pytest.mark.asyncio
async def test_a_turn_url_given_again_with_other_credentials_is_named_and_left_out(
    turn: TurnLab, tracker: TrackerServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Rotated credentials listed side by side: the server keeps one allocation per client
    address and port and libwebrtc asks it from one socket, so a later entry for the same URL
    never stands in for the first (with the wrong credentials first, two nodes did not meet in
    30 s). Later entries are left out of what libwebrtc is handed, and a warning names them."""
    right = turn.ice_server(turn.url())
    again = RTCIceServer(
        urls=[f"turn:{turn.server}?transport=udp", turn.url(transport="tcp")],
        username="alice",
        credential="wrong",
    )
    with caplog.at_level(logging.WARNING, logger="p2prpc.transport.wrtc"):
        nodes = await relayed_call(tracker, [right, again])
    try:
        handed = nodes[0].p2pt._remotes[nodes[1].peer_id]
        for channel in handed.channels.values():
            configuration = channel.link.pc._native.get_configuration()
            assert [(s.urls, s.username) for s in configuration.ice_servers] == [
                (right.urls, right.username),
                ([turn.url(transport="tcp")], "alice"),
            ]
    finally:
        for node in nodes:
            await node.close()
    named = [r.getMessage() for r in caplog.records if "given again" in r.getMessage()]
    assert len(named) == 1  # once, not once a connection
    assert f"turn:{turn.server}?transport=udp" in named[0] and "wrong" not in named[0]


def test_only_turn_urls_given_again_are_left_out() -> None:
    servers = [
        RTCIceServer(urls=["stun:192.0.2.1", "turn:192.0.2.3"], username="a", credential="x"),
        RTCIceServer(
            urls=["stun:192.0.2.1:3478", "TURN:192.0.2.3:3478?transport=udp", "turns:192.0.2.3"],
            username="b",
            credential="y",
        ),
        RTCIceServer(urls="turn:192.0.2.3:3478", username="c", credential="z"),
    ]
    kept = first_of_each_turn_url(servers)
    assert [(s.urls, s.username) for s in kept] == [
        (["stun:192.0.2.1", "turn:192.0.2.3"], "a"),
        (["stun:192.0.2.1:3478", "turns:192.0.2.3"], "b"),
    ]
    assert kept[0] is servers[0]
