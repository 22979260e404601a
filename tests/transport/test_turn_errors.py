"""What the TURN servers did, told as it was and alike on both transports, against a real
coturn (tests/lab/turn.py): no answer from a dead one, a host that does not resolve, credentials
refused by one reached only over loopback; and how long libwebrtc's session descriptions wait
for servers that do not answer (``gather_timeout`` after the first that did).

Needs root and coturn (``make apt``); skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiortc import RTCIceServer
from lab.namespaces import delete, remove_stale, run
from lab.turn import DEAD_PORT, USER, LoopbackTurn, TurnLab, free_port, unavailable_reason

from p2prpc.node import Node
from p2prpc.swarm.attempt import Unreachable
from p2prpc.testing import until
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import RTCOptions, choose_transport

pytestmark = [
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

ROOT = Path(__file__).resolve().parents[2]
NOT_A_HOST = "no-such-host.invalid"  # RFC 6761: never resolves
#: Seconds ``wrtc`` waits for candidates before it gives a description without the rest.
WRTC_GATHERING_TIMEOUT = 5.0

LIBWEBRTC = pytest.param(
    "libwebrtc",
    marks=pytest.mark.skipif(
        importlib.util.find_spec("webrtc") is None,
        reason="the libwebrtc transport needs wrtc (p2prpc[native])",
    ),
)
TRANSPORTS = ["aiortc", LIBWEBRTC]


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnLab]:
    with TurnLab() as lab:
        yield lab


async def offer(transport: str, options: RTCOptions) -> tuple[str, Any, float]:
    """An offering link's offer on ``transport``: (its SDP, the link, seconds it took)."""
    link: Any = choose_transport(transport).link(options, initiator=True, label="x" * 40)
    link.on_close = lambda: None
    began = time.monotonic()
    try:
        sdp = await link.create_offer()
        return sdp, link, time.monotonic() - began
    finally:
        await link.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_dead_turn_server_is_told_as_giving_no_answer(
    turn: TurnLab, transport: str
) -> None:
    """Nothing listens on the server's port: the offer leaves after 5 s (aioice's and wrtc's
    own wait; no server answered) and the server is named as giving no answer."""
    dead = turn.url(port=DEAD_PORT)
    options = RTCOptions(ice_servers=[turn.ice_server(dead)], ice_transport_policy="relay")
    sdp, link, _ = await offer(transport, options)
    assert "typ relay" not in sdp
    [error] = link.ice_errors
    assert (error.code, error.unresolved) == (None, False)
    assert str(error).startswith(f"no answer from TURN server {dead}?transport=udp (")


@pytest.mark.asyncio
@pytest.mark.parametrize(("policy", "dead"), [("relay", False), ("relay", True), ("all", True)])
async def test_a_libwebrtc_description_waits_no_longer_than_the_servers_answers(
    turn: TurnLab, policy: str, dead: bool
) -> None:
    """libwebrtc: a description leaves once every server answered (under either policy), or
    ``gather_timeout`` seconds after the first did, naming those that did not; not after
    wrtc's 5 s gathering timeout (libwebrtc itself tells of a dead server some 40 s later)."""
    pytest.importorskip("webrtc.aiortc", reason="the libwebrtc transport needs wrtc")
    servers = [turn.ice_server(turn.url())]
    if dead:
        servers.insert(0, turn.ice_server(turn.url(port=DEAD_PORT)))
    options = RTCOptions(
        ice_servers=servers,
        ice_transport_policy=policy,  # type: ignore[arg-type]
        gather_timeout=0.5,
    )
    sdp, link, seconds = await offer("libwebrtc", options)
    assert f"{turn.server} " in sdp and "typ relay" in sdp  # the working server's candidate
    assert seconds < WRTC_GATHERING_TIMEOUT, seconds
    if dead:  # the dead server was waited for gather_timeout past the working one's answer
        assert seconds >= options.gather_timeout, seconds
    assert [(e.url, e.code) for e in link.ice_errors] == (
        [(f"{turn.url(port=DEAD_PORT)}?transport=udp", None)] if dead else []
    )


@contextlib.contextmanager
def network(*, dummy: bool) -> Iterator[str]:
    """A network namespace with ``lo`` up and, with ``dummy``, a veth pair in it, one end with
    an address (a network that is not loopback) and no route beyond: no DNS server answers."""
    prefix = "p2prpc-turnerr-"
    remove_stale(prefix)
    name = f"{prefix}{os.getpid()}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        if dummy:
            run("ip", "-n", name, "link", "add", "net0", "type", "veth", "peer", "name", "net1")
            run("ip", "-n", name, "addr", "add", "10.231.0.1/24", "dev", "net0")
            for device in ("net0", "net1"):
                run("ip", "-n", name, "link", "set", device, "up")
        yield name
    finally:
        delete(name)


def gather_in(namespace: str, transport: str, url: str, credential: str) -> dict[str, Any]:
    """What :mod:`tests.lab.gatherpeer` says of one offer made in ``namespace`` (a process of
    its own: libwebrtc's threads stay in the namespace they were made in)."""
    argv = [sys.executable, "-m", "tests.lab.gatherpeer", transport, "all", url, USER, credential]
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        cwd=ROOT,
        env={**os.environ, "WRTC_ALLOW_LOOPBACK": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    said: dict[str, Any] = json.loads(result.stdout)
    return said


def transports() -> list[str]:
    found = importlib.util.find_spec("webrtc") is not None
    return ["aiortc", "libwebrtc"] if found else ["aiortc"]


def test_a_turn_host_that_does_not_resolve_is_told_as_such() -> None:
    """Where no DNS server answers (a namespace of its own: this machine's resolver may take
    its 5 s retry), both transports say the host does not resolve, at once."""
    url = f"turn:{NOT_A_HOST}:3478"
    with network(dummy=True) as namespace:
        for transport in transports():
            said = gather_in(namespace, transport, url, "x")
            [[code, named, unresolved, text]] = said["errors"]
            assert (code, named, unresolved) == (None, f"{url}?transport=udp", True), said
            assert text.startswith(f"the host of TURN server {url}?transport=udp does not resolve")


def test_a_turn_server_on_loopback_is_told_refusing_our_credentials() -> None:
    """coturn on 127.0.0.1 reached only over ``lo`` (a namespace with nothing else) refuses a
    wrong password: both transports say 401, and libwebrtc's offer leaves at its answer."""
    with network(dummy=False) as namespace, LoopbackTurn(namespace=namespace) as server:
        for transport in transports():
            said = gather_in(namespace, transport, server.url(), "wrong")
            [[code, url, _, text]] = said["errors"]
            assert (code, url) == (401, f"{server.url()}?transport=udp"), said
            assert "refused our credentials" in text
            assert said["seconds"] < WRTC_GATHERING_TIMEOUT, said


@pytest_asyncio.fixture
async def tracker() -> AsyncIterator[TrackerServer]:
    async with TrackerServer("127.0.0.1", 0) as server:
        yield server


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_peer_out_of_reach_names_the_turn_server_that_did_not_answer(
    tracker: TrackerServer, transport: str
) -> None:
    """Two nodes limited to relayed candidates, given a TURN server where nothing listens and
    then one that relays to no peer here: the attempt's reason names the first as giving no
    answer, and its advice is to check its URL and that it runs (libwebrtc's descriptions
    leave ``gather_timeout`` after the second answered; aiortc uses only the first)."""
    with LoopbackTurn(loopback_peers=False) as relaying_nowhere:
        dead = f"turn:127.0.0.1:{free_port('127.0.0.1')}?transport=tcp"
        servers = [
            RTCIceServer(urls=[dead], username=USER, credential="x"),
            relaying_nowhere.ice_server(),
        ]
        nodes = [
            Node(
                [tracker.url],
                "p2prpc-turn-errors",
                ice_servers=servers,
                ice_transport_policy="relay",
                ice_timeout=1.0,
                gather_timeout=0.5,
                transport=transport,
            )
            for _ in range(2)
        ]
        told: list[Unreachable] = []

        def unreachable(peer_id: str, why: Unreachable) -> None:
            if why.ice_errors:
                told.append(why)
            else:  # aiortc's answerer asks no server for an offer without any candidate; and
                # under load the dead server's failure may come after ICE gave up: try again
                nodes[0].p2pt.request_more_peers()

        nodes[0].p2pt.on("peerunreachable", unreachable)
        try:
            for started, node in enumerate(nodes, 1):
                await node.start()
                await tracker.wait_for(lambda stats, n=started: stats.peers >= n)
            nodes[0].p2pt.request_more_peers()
            await until(lambda: bool(told), (nodes[0].p2pt, "peerunreachable"), timeout=30)
        finally:
            for node in nodes:
                await node.close()
    why = told[0]
    assert why.reason.startswith(f"no answer from TURN server {dead} ("), why
    assert why.reason.endswith("; ICE found no working candidate pair"), why
    assert why.advice == "check the TURN server's URL, and that the server runs and is reachable"
