"""libwebrtc over loopback: links pinned to 127.0.0.1 meet there, as aiortc's do.

libwebrtc decides once per process, before its first connection, whether it gathers loopback
candidates: a first link pinned to loopback allows them, and a later one says how to allow them.
(The test run allows them from the start: tests/conftest.py.)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import textwrap

import pytest

from p2prpc.transport import TRANSPORT_ENV, RTCOptions, Transport

pytest.importorskip("webrtc.aiortc", reason="the libwebrtc transport needs wrtc (p2prpc[native])")

from p2prpc.transport.aiortc import AIORTC
from p2prpc.transport.wrtc import LIBWEBRTC
from p2prpc.wire.secret import AuthError

LOOPBACK = RTCOptions(ice_servers=[], host_addresses=["127.0.0.1"], udp_buffer_size=None)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("offering", "answering"),
    [(LIBWEBRTC, LIBWEBRTC), (LIBWEBRTC, AIORTC), (AIORTC, LIBWEBRTC)],
    ids=["libwebrtc-libwebrtc", "libwebrtc-aiortc", "aiortc-libwebrtc"],
)
async def test_links_pinned_to_loopback_meet_there(
    offering: Transport, answering: Transport
) -> None:
    offerer = offering.link(LOOPBACK, initiator=True, label=secrets.token_hex(20))
    answerer = answering.link(LOOPBACK, initiator=False, label="")
    opened = asyncio.Event()
    got: asyncio.Queue[str | bytes] = asyncio.Queue()
    offerer.on_open, answerer.on_open = opened.set, lambda: None
    offerer.on_message, answerer.on_message = lambda _: None, got.put_nowait
    offerer.on_close = answerer.on_close = lambda: None
    try:
        offer = await offerer.create_offer()
        assert " 127.0.0.1 " in offer
        await offerer.accept_answer(await answerer.accept_offer(offer))
        async with asyncio.timeout(10):
            await opened.wait()
            offerer.send("over loopback")
            assert await got.get() == "over loopback"
    finally:
        await offerer.wait_closed()
        await answerer.wait_closed()
    # Loopback candidates are offered only where they are asked for, as Chrome offers none.
    unpinned = LIBWEBRTC.link(RTCOptions(ice_servers=[]), initiator=True, label="x" * 40)
    try:
        offer = await unpinned.create_offer()
        assert not [
            line for line in offer.splitlines() if "a=candidate" in line and " 127.0.0.1 " in line
        ]
    finally:
        await unpinned.wait_closed()


def test_pinning_to_loopback_after_the_first_connection_says_how_to_allow_it() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        import webrtc.aiortc
        from p2prpc.transport import RTCOptions
        from p2prpc.transport.wrtc import LIBWEBRTC, LoopbackRefused

        async def main():
            other = webrtc.aiortc.RTCPeerConnection()  # libwebrtc used without loopback
            first = LIBWEBRTC.link(RTCOptions(ice_servers=[]), initiator=True, label="a" * 40)
            try:
                LIBWEBRTC.link(
                    RTCOptions(ice_servers=[], host_addresses=["127.0.0.1"]),
                    initiator=True,
                    label="b" * 40,
                )
            except LoopbackRefused as error:
                print("refused:", error)
            await first.wait_closed()
            await other.close()

        asyncio.run(main())
        """
    )
    assert_refused(script, without=("WRTC_ALLOW_LOOPBACK",))


def test_a_node_pinned_to_loopback_after_the_first_connection_refuses_when_it_is_made() -> None:
    # Its connections are made in the background, where the refusal reached nobody: the node's
    # calls failed DEADLINE_EXCEEDED "tracker ... has not answered yet".
    script = textwrap.dedent(
        """
        import asyncio
        import webrtc.aiortc
        from p2prpc import Node
        from p2prpc.transport.wrtc import LoopbackRefused

        async def main():
            other = webrtc.aiortc.RTCPeerConnection()  # libwebrtc used without loopback
            Node(["ws://127.0.0.1:9"], "app", ice_servers=[], transport="libwebrtc")
            try:
                Node(
                    ["ws://127.0.0.1:9"],
                    "app",
                    ice_servers=[],
                    host_addresses=["127.0.0.1"],
                    transport="libwebrtc",
                )
            except LoopbackRefused as error:
                print("refused:", error)
            else:
                print("made")
            await other.close()

        asyncio.run(main())
        """
    )
    assert_refused(script, without=("WRTC_ALLOW_LOOPBACK", TRANSPORT_ENV))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("offering", "answering"),
    [(LIBWEBRTC, LIBWEBRTC), (AIORTC, AIORTC), (LIBWEBRTC, AIORTC), (AIORTC, LIBWEBRTC)],
    ids=["libwebrtc-libwebrtc", "aiortc-aiortc", "libwebrtc-aiortc", "aiortc-libwebrtc"],
)
async def test_the_offerer_knows_the_session_when_its_channel_opens_before_the_answer_is_applied(
    offering: Transport, answering: Transport
) -> None:
    # On a busy event loop the data channel can open (ICE, DTLS and SCTP take a few ms over
    # loopback) before the coroutine that applied the answer resumes: here that coroutine
    # resumes only once the channel has opened. The handshake of a closed swarm reads both
    # fingerprints the moment the channel opens, and a connection sizes its frames by the
    # remote's max-message-size.
    offerer = offering.link(LOOPBACK, initiator=True, label=secrets.token_hex(20))
    answerer = answering.link(LOOPBACK, initiator=False, label="")
    opened = asyncio.Event()
    at_open: list[object] = []

    def on_open() -> None:
        try:
            at_open.append((offerer.fingerprints(), offerer.max_message_size))
        except Exception as error:  # what the handshake would have met
            at_open.append(error)
        opened.set()

    offerer.on_open, answerer.on_open = on_open, lambda: None
    offerer.on_message = answerer.on_message = lambda _: None
    offerer.on_close = answerer.on_close = lambda: None
    pc = offerer.pc  # type: ignore[attr-defined]
    apply = pc.setRemoteDescription

    async def applied_late(description: object) -> None:
        await apply(description)
        await opened.wait()

    pc.setRemoteDescription = applied_late
    try:
        offer = await offerer.create_offer()
        async with asyncio.timeout(10):
            await offerer.accept_answer(await answerer.accept_offer(offer))
        (seen,) = at_open
        assert not isinstance(seen, Exception), seen
        assert seen == (offerer.fingerprints(), 262144)
        local, remote = offerer.fingerprints()
        assert answerer.fingerprints() == (remote, local)
    finally:
        await offerer.wait_closed()
        await answerer.wait_closed()


def assert_refused(script: str, without: tuple[str, ...]) -> None:
    """Run ``script`` in a fresh interpreter without the environment variables ``without``: it
    must print the refusal, which names the variable that would allow loopback."""
    env = {k: v for k, v in os.environ.items() if k not in without}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "WRTC_ALLOW_LOOPBACK=1" in result.stdout


def fingerprint_lines(sdp: str, algorithm: str = "sha-256") -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith(f"a=fingerprint:{algorithm} ")]


@pytest.mark.asyncio
@pytest.mark.parametrize("offering", [LIBWEBRTC, AIORTC], ids=["libwebrtc", "aiortc"])
async def test_libwebrtc_checks_the_certificate_the_handshake_binds_and_no_other(
    offering: Transport,
) -> None:
    """The handshake binds a connection to the SHA-256 fingerprint its remote description names;
    libwebrtc checks the DTLS certificate against the last fingerprint line. A description (as a
    tracker in the middle would write it) naming another certificate before or after the real
    one is refused before anything is applied; the fingerprints of other hash functions
    (aiortc offers SHA-384 and SHA-512 too) are not given to libwebrtc, so one naming another
    certificate lets nobody else in."""
    decoys = AIORTC.link(LOOPBACK, initiator=True, label=secrets.token_hex(20))
    decoys.on_close = lambda: None
    try:
        decoy_offer = await decoys.create_offer()
    finally:
        await decoys.wait_closed()
    (decoy,) = fingerprint_lines(decoy_offer)
    (decoy_512,) = fingerprint_lines(decoy_offer, "sha-512")

    def forged(sdp: str, before: bool) -> str:
        (real,) = fingerprint_lines(sdp)
        return sdp.replace(real, f"{decoy}\r\n{real}" if before else f"{real}\r\n{decoy}")

    # Offers naming two certificates, and an answer naming two: refused, nothing applied.
    for before in (True, False):
        offerer = offering.link(LOOPBACK, initiator=True, label=secrets.token_hex(20))
        answerer = LIBWEBRTC.link(LOOPBACK, initiator=False, label="")
        for link in (offerer, answerer):
            link.on_open, link.on_message, link.on_close = (
                lambda: None,
                lambda _: None,
                lambda: None,
            )
        try:
            offer = await offerer.create_offer()
            with pytest.raises(AuthError, match="2 DTLS certificates"):
                await answerer.accept_offer(forged(offer, before))
            assert answerer.pc.remoteDescription is None  # type: ignore[attr-defined]
        finally:
            await offerer.wait_closed()
            await answerer.wait_closed()
    offerer = LIBWEBRTC.link(LOOPBACK, initiator=True, label=secrets.token_hex(20))
    answerer = offering.link(LOOPBACK, initiator=False, label="")
    for link in (offerer, answerer):
        link.on_open, link.on_message, link.on_close = lambda: None, lambda _: None, lambda: None
    try:
        answer = await answerer.accept_offer(await offerer.create_offer())
        with pytest.raises(AuthError, match="2 DTLS certificates"):
            await offerer.accept_answer(forged(answer, before=True))
    finally:
        await offerer.wait_closed()
        await answerer.wait_closed()

    # The real certificate by SHA-256, another by SHA-512 last: libwebrtc checks the first.
    offerer = offering.link(LOOPBACK, initiator=True, label=secrets.token_hex(20))
    answerer = LIBWEBRTC.link(LOOPBACK, initiator=False, label="")
    opened = asyncio.Event()
    offerer.on_open, answerer.on_open = lambda: None, opened.set
    for link in (offerer, answerer):
        link.on_message, link.on_close = lambda _: None, lambda: None
    try:
        offer = await offerer.create_offer()
        real = fingerprint_lines(offer)[0]
        answer = await answerer.accept_offer(offer.replace(real, f"{real}\r\n{decoy_512}"))
        await offerer.accept_answer(answer)
        async with asyncio.timeout(10):
            await opened.wait()
        assert answerer.fingerprints()[1] == offerer.fingerprints()[0]
    finally:
        await offerer.wait_closed()
        await answerer.wait_closed()
