"""The transport seam's libwebrtc implementation, on its own: two links in the test network.

These links meet over the test namespace's veth pair (tests/interop/netns.py), as peers on two
machines would, so they are marked ``interop`` and run inside it (test_wrtc_loopback.py has
them meet over loopback).
"""

from __future__ import annotations

import asyncio
import os
import secrets

import pytest

from p2prpc.errors import PeerClosed
from p2prpc.transport import RTCOptions, Transport

pytest.importorskip("webrtc.aiortc", reason="the libwebrtc transport needs wrtc (p2prpc[native])")

from interop.netns import ADDRESSES

from p2prpc.transport.aiortc import AIORTC, AiortcLink
from p2prpc.transport.wrtc import LIBWEBRTC, WrtcLink, pin_host_candidates

pytestmark = pytest.mark.interop

#: Host candidates on the namespace's first address only: every link in these tests meets there.
PINNED = RTCOptions(ice_servers=[], host_addresses=[ADDRESSES[0]], udp_buffer_size=None)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("offering", "answering"),
    [(LIBWEBRTC, LIBWEBRTC), (LIBWEBRTC, AIORTC), (AIORTC, LIBWEBRTC)],
    ids=["libwebrtc-libwebrtc", "libwebrtc-aiortc", "aiortc-libwebrtc"],
)
async def test_two_links_connect_carry_both_kinds_of_message_and_close_once(
    offering: Transport, answering: Transport
) -> None:
    label = secrets.token_hex(20)
    offerer = offering.link(PINNED, initiator=True, label=label)
    answerer = answering.link(PINNED, initiator=False, label="ignored")
    assert (offerer.label, answerer.label) == (label, "")
    with pytest.raises(PeerClosed):
        offerer.fingerprints()  # no session yet
    opened = [asyncio.Event(), asyncio.Event()]
    got: asyncio.Queue[str | bytes] = asyncio.Queue()
    back: asyncio.Queue[str | bytes] = asyncio.Queue()
    closes: list[str] = []
    offerer.on_open, answerer.on_open = opened[0].set, opened[1].set
    answerer.on_message = got.put_nowait
    offerer.on_message = back.put_nowait
    offerer.on_close = lambda: closes.append("offerer")
    answerer.on_close = lambda: closes.append("answerer")
    try:
        offer = await offerer.create_offer()
        # No trickle: every candidate is in the SDP, and only the pinned host address.
        assert f" {ADDRESSES[0]} " in offer and "a=candidate" in offer
        assert f" {ADDRESSES[1]} " not in offer
        answer = await answerer.accept_offer(offer)
        assert f" {ADDRESSES[0]} " in answer and f" {ADDRESSES[1]} " not in answer
        await offerer.accept_answer(answer)
        async with asyncio.timeout(10):
            await opened[0].wait()
            await opened[1].wait()
        assert answerer.label == label and offerer.writable and answerer.writable
        local, remote = offerer.fingerprints()
        assert answerer.fingerprints() == (remote, local) and len(local) == 32
        assert offerer.max_message_size == answerer.max_message_size == 262144
        for link in (offerer, answerer):
            # On the pinned address, or on loopback: the test run lets libwebrtc gather loopback
            # candidates (tests/conftest.py), which reach this machine's addresses too. A remote
            # candidate learnt from connectivity checks has no address libwebrtc exposes.
            pair = link.selected_pair()
            if pair is not None or isinstance(link, AiortcLink):
                assert pair is not None
                assert {pair[0][0], pair[1][0]} <= {ADDRESSES[0], "127.0.0.1"}
        offerer.send("text")
        offerer.send(b"\x00bytes")
        answerer.send(b"back")
        async with asyncio.timeout(10):
            assert await got.get() == "text"
            assert await got.get() == b"\x00bytes"
            assert await back.get() == b"back"
        low = asyncio.Event()
        offerer.set_low_threshold(0)
        offerer.on_buffered_low = low.set
        for _ in range(64):
            offerer.send(b"x" * 65536)
        assert offerer.buffered_amount > 0
        async with asyncio.timeout(10):
            await low.wait()  # it drained to the threshold
        assert offerer.buffered_amount == 0
        async with asyncio.timeout(10):
            for _ in range(64):
                assert len(await got.get()) == 65536  # in order, none lost
    finally:
        offerer.close()
        offerer.close()
        await offerer.wait_closed()
        async with asyncio.timeout(10):
            while "answerer" not in closes:  # noqa: ASYNC110 - the remote's close has no future
                await asyncio.sleep(0.02)
        await answerer.wait_closed()
    assert sorted(closes) == ["answerer", "offerer"]
    assert not offerer.writable and not answerer.writable
    for link in (offerer, answerer):
        if isinstance(link, WrtcLink):
            with pytest.raises(PeerClosed):
                link.send(b"after")  # a typed error, not libwebrtc's own
            assert link.buffered_amount == 0 and link.selected_pair() is None


@pytest.mark.asyncio
async def test_a_link_closed_while_it_gathers_fails_its_offer_and_closes() -> None:
    """A connection dropped as it is made (a retired offer, a swarm leaving) is closed while ICE
    gathers its candidates: making the offer then fails PeerClosed."""
    for _ in range(5):
        link = LIBWEBRTC.link(PINNED, initiator=True, label=secrets.token_hex(20))
        assert isinstance(link, WrtcLink)
        making = asyncio.ensure_future(link.create_offer())
        await asyncio.sleep(0)  # let the gathering begin before the close
        link.close()
        with pytest.raises(PeerClosed):
            await making
        await link.wait_closed()
        assert link.pc.connectionState == "closed" and not link.writable


def test_pinning_keeps_only_the_given_host_candidates_and_every_other_kind() -> None:
    sdp = (
        "v=0\r\n"
        "a=candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host generation 0\r\n"
        "a=candidate:2 1 udp 2122260223 10.0.0.2 5001 typ host generation 0\r\n"
        "a=candidate:3 1 udp 1686052607 1.2.3.4 5002 typ srflx raddr 10.0.0.2 rport 5001\r\n"
        "a=end-of-candidates\r\n"
    )
    pinned = pin_host_candidates(sdp, ["10.0.0.1"])
    assert "10.0.0.1 5000" in pinned and "10.0.0.2 5001 typ host" not in pinned
    assert "1.2.3.4 5002 typ srflx" in pinned and pinned.endswith("a=end-of-candidates\r\n")
    assert pin_host_candidates(sdp, None) == sdp


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    """Threads of this process, libwebrtc's native ones included."""
    return len(os.listdir("/proc/self/task"))


@pytest.mark.asyncio
async def test_closing_frees_what_a_link_holds_over_many_cycles() -> None:
    """Connect, exchange, close, thirty times: file descriptors and threads end where the first
    cycle left them (libwebrtc keeps its worker threads for the process)."""

    async def cycle() -> None:
        offerer = LIBWEBRTC.link(PINNED, initiator=True, label=secrets.token_hex(20))
        answerer = LIBWEBRTC.link(PINNED, initiator=False, label="")
        opened = [asyncio.Event(), asyncio.Event()]
        got, closed = asyncio.Event(), asyncio.Event()
        offerer.on_open, answerer.on_open = opened[0].set, opened[1].set
        answerer.on_message = lambda _data: got.set()
        answerer.on_close = closed.set
        try:
            await offerer.accept_answer(await answerer.accept_offer(await offerer.create_offer()))
            async with asyncio.timeout(10):
                await opened[0].wait()
                await opened[1].wait()
                offerer.send(b"ping")
                await got.wait()
        finally:
            await offerer.wait_closed()
            async with asyncio.timeout(10):
                await closed.wait()  # the remote saw the close
            await answerer.wait_closed()

    await cycle()
    fds, threads = _open_fds(), _threads()
    for _ in range(30):
        await cycle()
    after = _open_fds(), _threads()
    assert after[0] <= fds and after[1] <= threads, (fds, threads, after)


@pytest.mark.asyncio
async def test_a_cancelled_offer_is_cancelled_not_closed() -> None:
    """The caller's own cancellation of a handshake step stays a cancellation (wrtc raises the
    same ``CancelledError`` for a step its close aborts, which PeerClosed stands for)."""
    link = LIBWEBRTC.link(PINNED, initiator=True, label=secrets.token_hex(20))
    making = asyncio.ensure_future(link.create_offer())
    await asyncio.sleep(0)  # under way
    making.cancel()
    link.close()  # in the same turn: the caller's cancellation still wins
    with pytest.raises(asyncio.CancelledError):
        await making
    await link.wait_closed()
