"""The transport seam's aiortc implementation, on its own: two links on loopback."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from p2prpc.errors import PeerClosed
from p2prpc.transport import RTCOptions, default_transport
from p2prpc.transport.aiortc import AiortcLink

pytestmark = pytest.mark.asyncio

LOOPBACK = RTCOptions(ice_servers=[], host_addresses=["127.0.0.1"], udp_buffer_size=None)


async def test_two_links_connect_carry_both_kinds_of_message_and_close_once() -> None:
    transport = default_transport()
    assert transport.name == "aiortc"
    label = secrets.token_hex(20)
    offerer = transport.link(LOOPBACK, initiator=True, label=label)
    answerer = transport.link(LOOPBACK, initiator=False, label="ignored")
    assert isinstance(offerer, AiortcLink) and isinstance(answerer, AiortcLink)
    assert (offerer.label, answerer.label) == (label, "")
    with pytest.raises(PeerClosed):
        offerer.fingerprints()  # no session yet
    opened = [asyncio.Event(), asyncio.Event()]
    got: asyncio.Queue[str | bytes] = asyncio.Queue()
    closes: list[str] = []
    offerer.on_open, answerer.on_open = opened[0].set, opened[1].set
    answerer.on_message = got.put_nowait
    offerer.on_close = lambda: closes.append("offerer")
    answerer.on_close = lambda: closes.append("answerer")
    try:
        offer = await offerer.create_offer()
        assert "a=candidate" in offer and "127.0.0.1" in offer  # no trickle: all in the SDP
        answer = await answerer.accept_offer(offer)
        await offerer.accept_answer(answer)
        async with asyncio.timeout(10):
            await opened[0].wait()
            await opened[1].wait()
        assert answerer.label == label and offerer.writable and answerer.writable
        local, remote = offerer.fingerprints()
        assert answerer.fingerprints() == (remote, local) and len(local) == 32
        pair = offerer.selected_pair()
        assert pair is not None and pair[0][0] == pair[1][0] == "127.0.0.1"
        buffers = offerer.udp_buffers(256 * 1024)
        assert buffers and all(rcv >= 256 * 1024 for rcv, _ in buffers)  # Linux reports 2×
        offerer.send("text")
        offerer.send(b"\x00bytes")
        async with asyncio.timeout(10):
            assert await got.get() == "text"
            assert await got.get() == b"\x00bytes"
        low = asyncio.Event()
        offerer.set_low_threshold(0)
        offerer.on_buffered_low = low.set
        offerer.send(b"x" * 100_000)
        async with asyncio.timeout(10):
            await low.wait()  # it drained to the threshold
        assert offerer.buffered_amount == 0
    finally:
        offerer.close()
        offerer.close()
        await offerer.wait_closed()
        async with asyncio.timeout(10):
            while "answerer" not in closes:  # noqa: ASYNC110 - the remote's close has no future
                await asyncio.sleep(0.02)
        await answerer.wait_closed()
    assert sorted(closes) == ["answerer", "offerer"]
    assert not offerer.writable


async def test_a_link_closed_while_it_gathers_releases_every_socket() -> None:
    """A connection dropped as it is made (a retired offer, a swarm leaving) is closed while ICE
    gathers its candidates: making the offer then fails PeerClosed, and no socket stays open."""
    from p2prpc.transport.aiortc import release_sockets, udp_sockets

    overtaken = 0
    for _ in range(10):
        link = default_transport().link(LOOPBACK, initiator=True, label=secrets.token_hex(20))
        assert isinstance(link, AiortcLink)
        making = asyncio.ensure_future(link.create_offer())
        await asyncio.sleep(0)  # let the gathering begin before the close
        link.close()
        try:
            await making
        except PeerClosed:
            overtaken += 1
        await link.wait_closed()
        assert release_sockets(link.pc) == 0  # nothing was left open to release
        assert all(sock.fileno() == -1 for sock in udp_sockets(link.pc))
    assert overtaken > 0  # the close did overtake a gathering
