"""ICE servers as users give them (p2prpc.transport.ice): URLs with credentials read strictly,
TURN REST credentials, the environment, and providers asked before each connection attempt by
real loopback peers (a failing or hanging provider is reported, never a hang)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import pytest
from aiortc import RTCIceServer

from p2prpc.errors import IceServersUnavailable, InvalidIceServer
from p2prpc.p2pt import P2PT
from p2prpc.testing import loopback_p2pt, until, wait_connected
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import GATHER_TIMEOUT, P2PT_ICE_SERVERS
from p2prpc.transport.ice import (
    ICE_SERVERS_ENV,
    TURN_SECRET_ENV,
    IceServers,
    TurnRestCredentials,
    ice_servers_from_environment,
    parse_ice_url,
    redact,
    split_ice_urls,
)

CREDENTIAL = "hunter2-not-for-logs"


@pytest.mark.parametrize(
    ("url", "urls", "username", "credential"),
    [
        ("stun:stun.example.org", "stun:stun.example.org", None, None),
        ("STUN:192.0.2.1:3478", "stun:192.0.2.1:3478", None, None),
        ("stun:[2001:db8::1]:19302", "stun:[2001:db8::1]:19302", None, None),
        ("stuns:stun.example.org:5349", "stuns:stun.example.org:5349", None, None),
        ("turn:alice:pw@turn.example.org", "turn:turn.example.org", "alice", "pw"),
        (
            "turn:1700000000%3Aalice:a%2Fb%40c%3D@10.0.0.1:3478?transport=tcp",
            "turn:10.0.0.1:3478?transport=tcp",
            "1700000000:alice",
            "a/b@c=",
        ),
        ("turn:u:p:q@h?transport=udp", "turn:h?transport=udp", "u", "p:q"),
        ("turns:u:p@[::1]", "turns:[::1]", "u", "p"),
    ],
)
def test_urls_are_read_into_ice_servers(
    url: str, urls: str, username: str | None, credential: str | None
) -> None:
    server = parse_ice_url(url)
    assert (server.urls, server.username, server.credential) == ([urls], username, credential)


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("http://stun.example.org", "scheme"),
        ("stun.example.org:3478", "scheme"),
        (f"turn://alice:{CREDENTIAL}@h", "host"),
        ("stun:", "host"),
        (f"turn:alice:{CREDENTIAL}@", "host"),
        ("stun:bad host", "host"),
        ("stun:[not-v6]:3478", "host"),
        ("stun:[::1]x", "host"),
        (f"turn:alice:{CREDENTIAL}@h:0", "port"),
        (f"turn:alice:{CREDENTIAL}@h:65536", "port"),
        (f"turn:alice:{CREDENTIAL}@h:34x", "port"),
        ("stun:h:", "port"),
        ("stun:h?transport=udp", "query"),
        (f"turn:alice:{CREDENTIAL}@h?transport=sctp", "query"),
        (f"turn:alice:{CREDENTIAL}@h?foo=bar", "query"),
        (f"stun:alice:{CREDENTIAL}@h", "credentials"),
        (f"turn:{CREDENTIAL}@h", "credentials"),
        (f"turn:alice:{CREDENTIAL}@x@h", "credentials"),
        (f"turn::{CREDENTIAL}@h", "credentials"),
        ("turn:alice:%ff@h", "credentials"),
    ],
)
def test_a_malformed_url_names_the_bad_part_and_never_the_credential(url: str, part: str) -> None:
    with pytest.raises(InvalidIceServer) as caught:
        parse_ice_url(url)
    assert caught.value.part == part
    assert CREDENTIAL not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_redact_hides_whatever_is_before_the_host() -> None:
    assert redact(f"turn:alice:{CREDENTIAL}@h:3478?transport=tcp") == (
        "turn:***@h:3478?transport=tcp"
    )
    assert redact("stun:h") == "stun:h"


def test_lists_are_split_on_commas_and_white_space() -> None:
    assert split_ice_urls(" stun:a, turn:u:p@b\tturns:u:p@c ,,\n") == [
        "stun:a",
        "turn:u:p@b",
        "turns:u:p@c",
    ]


def test_a_turn_server_without_credentials_is_refused_however_given() -> None:
    for servers in (["turn:h"], [RTCIceServer(urls=["turn:h"])]):
        with pytest.raises(InvalidIceServer, match="needs a username and a credential"):
            IceServers(servers)  # type: ignore[arg-type]
    with pytest.raises(InvalidIceServer, match="go in its username"):
        IceServers([RTCIceServer(urls=["turn:u:p@h"], username="u", credential="p")])
    with pytest.raises(InvalidIceServer, match="not int"):
        IceServers([42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not one string"):
        IceServers("stun:h")  # type: ignore[arg-type]


def test_p2pt_takes_urls_beside_ice_server_objects() -> None:
    given = RTCIceServer(urls=["stun:192.0.2.9"])
    p2pt = P2PT([], "x", ice_servers=[f"turn:alice:{CREDENTIAL}@192.0.2.1?transport=tcp", given])
    assert p2pt.rtc_options.ice_servers == [
        RTCIceServer(
            urls=["turn:192.0.2.1?transport=tcp"], username="alice", credential=CREDENTIAL
        ),
        given,
    ]
    with pytest.raises(InvalidIceServer) as caught:
        P2PT([], "x", ice_servers=[f"turn:alice:{CREDENTIAL}@192.0.2.1:99999"])
    assert caught.value.part == "port" and CREDENTIAL not in str(caught.value)


def test_gather_timeout_reaches_the_links_and_is_seconds() -> None:
    assert P2PT([], "x").rtc_options.gather_timeout == GATHER_TIMEOUT == 2.0
    assert P2PT([], "x", gather_timeout=0.5).rtc_options.gather_timeout == 0.5
    with pytest.raises(ValueError, match="gather_timeout is seconds"):
        P2PT([], "x", gather_timeout=-1)


@pytest.mark.parametrize(
    ("servers", "relaying"),
    [
        (None, False),  # P2PT's STUN servers
        ([], False),
        (["stun:stun.example.org", "stuns:stun.example.org"], False),
        ([RTCIceServer(urls=["STUN:stun.example.org"])], False),
        (["stun:stun.example.org", "turn:u:p@turn.example.org"], True),
        (["turns:u:p@turn.example.org"], True),
        ([RTCIceServer(urls="TURN:turn.example.org", username="u", credential="p")], True),
        ([lambda: RTCIceServer(urls=["stun:stun.example.org"])], True),  # it may return one
        ([TurnRestCredentials("turn:turn.example.org", "s3cret")], True),
    ],
)
def test_a_turn_server_is_in_play_when_one_is_named_or_a_provider_is_given(
    servers: list[object] | None, relaying: bool
) -> None:
    assert IceServers(servers).relaying is relaying  # type: ignore[arg-type]


def test_turn_rest_credentials_are_the_hmac_of_their_expiry_and_user() -> None:
    rest = TurnRestCredentials(
        ["turn:h:3478?transport=tcp", "turns:h"],
        CREDENTIAL,
        user="alice",
        ttl=600,
        clock=lambda: 1_700_000_000.5,
    )
    server = rest()
    assert server.urls == ["turn:h:3478?transport=tcp", "turns:h"]
    assert server.username == "1700000600:alice"
    expected = hmac.new(CREDENTIAL.encode(), b"1700000600:alice", hashlib.sha1).digest()
    assert server.credential == base64.b64encode(expected).decode()
    assert CREDENTIAL not in repr(rest)
    with pytest.raises(InvalidIceServer, match="replace those in the URL") as caught:
        TurnRestCredentials([f"turn:u:{CREDENTIAL}@h"], "s")
    assert CREDENTIAL not in str(caught.value)
    with pytest.raises(InvalidIceServer, match="for turn: and turns:"):
        TurnRestCredentials(["stun:h"], "s")
    with pytest.raises(ValueError, match="no ':'"):
        TurnRestCredentials(["turn:h"], "s", user="a:b")
    with pytest.raises(ValueError, match="empty"):
        TurnRestCredentials(["turn:h"], "")


def test_the_environment_names_servers_and_the_turn_rest_secret() -> None:
    assert ice_servers_from_environment({}) is None
    assert ice_servers_from_environment({ICE_SERVERS_ENV: "  "}) is None
    entries = ice_servers_from_environment(
        {ICE_SERVERS_ENV: "stun:a,turn:b?transport=tcp", TURN_SECRET_ENV: CREDENTIAL}
    )
    assert entries is not None and entries[0] == "stun:a"
    provider = entries[1]
    assert isinstance(provider, TurnRestCredentials)
    assert provider().urls == ["turn:b?transport=tcp"]
    with pytest.raises(InvalidIceServer, match=f"^{ICE_SERVERS_ENV}: .*TURN REST secret"):
        ice_servers_from_environment({ICE_SERVERS_ENV: "turn:b"})


def test_p2pt_takes_the_environments_servers_when_given_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert P2PT([], "x").rtc_options.ice_servers is None  # P2PT's STUN servers
    assert P2PT([], "x").rtc_options.servers() == list(P2PT_ICE_SERVERS)
    monkeypatch.setenv(ICE_SERVERS_ENV, f"stun:192.0.2.1 turn:u:{CREDENTIAL}@192.0.2.2")
    assert P2PT([], "x").rtc_options.ice_servers == [
        RTCIceServer(urls=["stun:192.0.2.1"]),
        RTCIceServer(urls=["turn:192.0.2.2"], username="u", credential=CREDENTIAL),
    ]
    assert P2PT([], "x", ice_servers=[]).rtc_options.ice_servers == []  # given: kept


@pytest.mark.asyncio
async def test_providers_are_asked_before_each_connection_attempt() -> None:
    """A plain and an async provider: each peer asks its own for every offer it makes and every
    offer it answers, including after the peers met (a newcomer's offer). A provider may
    return a TURN server, so these peers offer only to peers not connected yet."""
    calls = {"plain": 0, "async": 0}

    def plain() -> list[RTCIceServer]:
        calls["plain"] += 1
        return []

    async def later() -> list[str]:
        calls["async"] += 1
        await asyncio.sleep(0)  # a provider that awaits something
        return []

    async with TrackerServer("127.0.0.1", 0) as tracker:
        peers = [
            loopback_p2pt([tracker.url], "ice-providers", ice_servers=[plain]),
            loopback_p2pt([tracker.url], "ice-providers", ice_servers=[later]),
        ]
        try:
            for peer in peers:
                await peer.start()
            await wait_connected(peers, 1)
            assert calls["plain"] >= 1 and calls["async"] >= 1
            made = dict(calls)
            peers.append(loopback_p2pt([tracker.url], "ice-providers"))
            await peers[-1].start()  # it offers to both: each answer asks the provider again
            await until(
                lambda: calls["plain"] > made["plain"] and calls["async"] > made["async"],
                (peers[0], "peerconnect"),
                (peers[1], "peerconnect"),
                timeout=10,
            )
        finally:
            for peer in peers:
                await peer.destroy()


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["raises", "hangs", "returns garbage"])
async def test_a_failing_provider_is_reported_then_asked_again(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The attempt is not made and a ``trackerwarning`` says why (no hang: a hanging async
    provider is given up after ``ice_servers_timeout``), logged once however often it fails;
    once it works, the peers meet."""
    broken = True
    failed = 0

    async def provider() -> object:
        nonlocal failed
        if broken:
            failed += 1
            if fault == "raises":
                raise RuntimeError("token service unreachable")
            if fault == "hangs":
                await asyncio.Event().wait()
            return 42
        return []

    async with TrackerServer("127.0.0.1", 0) as tracker:
        peers = [
            loopback_p2pt(
                [tracker.url],
                "ice-failing",
                ice_servers=[provider],  # type: ignore[list-item]
                ice_servers_timeout=0.2,
            ),
            loopback_p2pt([tracker.url], "ice-failing"),
        ]
        warnings: list[Exception] = []
        peers[0].on("trackerwarning", lambda error, stats: warnings.append(error))
        try:
            for peer in peers:
                await peer.start()
            await until(
                lambda: any(isinstance(w, IceServersUnavailable) for w in warnings),
                (peers[0], "trackerwarning"),
                timeout=20,
            )
            error = next(w for w in warnings if isinstance(w, IceServersUnavailable))
            expected = {
                "raises": "failed: RuntimeError: token service unreachable",
                "hangs": "did not return within 0.2 s",
                "returns garbage": "not int",
            }[fault]
            assert expected in str(error)
            if fault != "hangs":
                assert error.__cause__ is not None
            assert not peers[0].peers and not peers[1].peers
            peers[0].request_more_peers()  # another attempt: it asks the provider again
            await until(lambda: failed >= 2, (peers[0], "trackerwarning"), timeout=20)
            logged = [r for r in caplog.records if r.name == "p2prpc.transport.ice"]
            assert len(logged) == 1 and logged[0].levelname == "WARNING"
            broken = False
            peers[0].request_more_peers()
            await wait_connected(peers, 1)
        finally:
            for peer in peers:
                await peer.destroy()
