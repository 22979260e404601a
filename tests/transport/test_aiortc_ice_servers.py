"""What aiortc does with several ICE servers: it uses one STUN and one TURN URL per connection
(its own rules, read by ``ice_servers_used``), and a link given more says once which it drops."""

from __future__ import annotations

import logging

import pytest
from aiortc import RTCIceServer

from p2prpc.transport import RTCOptions
from p2prpc.transport.aiortc import AiortcLink, ice_servers_used

SERVERS = [
    RTCIceServer(urls=["stun:192.0.2.1:3478", "stun:192.0.2.2:3478"]),
    RTCIceServer(urls="turns:192.0.2.3:5349?transport=udp", username="a", credential="x"),
    RTCIceServer(urls=["turn:192.0.2.4:3478?transport=tcp"], username="b", credential="y"),
    RTCIceServer(urls=["turn:192.0.2.5:3478", "turns:192.0.2.6"], username="c", credential="z"),
]


def test_aiortc_uses_the_first_stun_url_and_the_first_turn_url_it_can() -> None:
    used, dropped = ice_servers_used(SERVERS)
    assert used == ["stun:192.0.2.1:3478", "turn:192.0.2.4:3478?transport=tcp"]
    assert dropped == [
        "stun:192.0.2.2:3478",
        "turns:192.0.2.3:5349?transport=udp",  # TURN over DTLS: aiortc has none
        "turn:192.0.2.5:3478",
        "turns:192.0.2.6",
    ]


def test_a_link_given_servers_aiortc_drops_warns_once_naming_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = RTCOptions(ice_servers=SERVERS)
    with caplog.at_level(logging.WARNING, logger="p2prpc.transport.aiortc"):
        for _ in range(3):
            AiortcLink(options, initiator=False, label="")
        AiortcLink(RTCOptions(), initiator=False, label="")  # P2PT's two default STUN servers
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    for url in ice_servers_used(SERVERS)[1]:
        assert url in message
    assert "libwebrtc" in message
    assert "turns: over TCP only" in message  # why the turns: URL over UDP is ignored


@pytest.mark.asyncio
async def test_aiortc_applies_the_relay_policy() -> None:
    """Limited to relayed candidates, with no TURN server, a link offers none at all."""
    for policy, host in (("all", True), ("relay", False)):
        options = RTCOptions(
            ice_servers=[], host_addresses=["127.0.0.1"], ice_transport_policy=policy
        )  # type: ignore[arg-type]
        link = AiortcLink(options, initiator=True, label="x" * 40)
        link.on_close = lambda: None
        try:
            assert ("typ host" in await link.create_offer()) is host
        finally:
            await link.wait_closed()
