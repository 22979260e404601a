"""The embedded tracker under abuse keeps serving well-behaved clients.

Each test runs one kind of abuse against a real :class:`TrackerServer` on loopback, then checks
that a well-behaved pair of clients still gets its announce replies and its offer and answer
relayed. The abusers connect from 127.0.0.2 where the per-IP cap matters (all of 127.0.0.0/8 is
loopback on Linux); the well-behaved clients from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import websockets
from websockets.asyncio.client import ClientConnection, connect

from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.tracker import (
    Announce,
    AnnounceReply,
    Answer,
    AnswerRelay,
    FailureReply,
    OfferPayload,
    OfferRelay,
    Scrape,
    ScrapeReply,
    ServerMessage,
    encode_client_message,
    parse_server_message,
)

pytestmark = pytest.mark.asyncio

SWARM = b"S" * 20  # where the abuse happens
GOOD = b"G" * 20  # where the well-behaved clients meet
TIMEOUT = 10.0


def peer_id(n: int) -> bytes:
    return n.to_bytes(20, "big")


async def recv(ws: ClientConnection) -> ServerMessage:
    async with asyncio.timeout(TIMEOUT):
        [message] = parse_server_message(await ws.recv())
    return message


async def well_behaved_exchange(url: str) -> float:
    """Two clients meet through the tracker: announce, offer relayed, answer relayed back.

    Returns how long it took (seconds).
    """
    started = time.monotonic()
    async with connect(url) as a, connect(url) as b:
        await a.send(encode_client_message(Announce(GOOD, peer_id(1), numwant=5)))
        assert isinstance(await recv(a), AnnounceReply)
        offer = OfferPayload(b"o" * 20, "v=0 an offer")
        await b.send(encode_client_message(Announce(GOOD, peer_id(2), offers=(offer,))))
        reply = await recv(b)
        assert isinstance(reply, AnnounceReply)
        assert reply.warning is None
        relay = await recv(a)
        assert relay == OfferRelay(GOOD, peer_id(2), offer.offer_id, offer.sdp)
        answer = Answer(GOOD, peer_id(1), peer_id(2), offer.offer_id, "v=0 an answer")
        await a.send(encode_client_message(answer))
        assert await recv(b) == AnswerRelay(GOOD, peer_id(1), offer.offer_id, "v=0 an answer")
        await a.send(encode_client_message(Announce(GOOD, peer_id(1), event="stopped")))
        await b.send(encode_client_message(Announce(GOOD, peer_id(2), event="stopped")))
    return time.monotonic() - started


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


def rss() -> int:
    """This process's resident memory now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def small_socket(url: str, address: str) -> socket.socket:
    """A TCP socket from ``address`` connected to the tracker at ``url``, with a small receive
    buffer, so that the kernel holds little for it when it does not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((address, 0))
    sock.connect((url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1])))
    return sock


def from_other_ip() -> dict[str, Any]:
    return {"local_addr": ("127.0.0.2", 0)}


async def test_garbage_and_binary_floods_from_a_socket_that_does_not_read(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(TrackerServer())
    abuser = await connect(tracker.url, sock=small_socket(tracker.url, "127.0.0.2"))
    stack.callback(abuser.transport.abort)  # it reads nothing, not even a close
    abuser.transport.pause_reading()
    frames: list[str | bytes] = ["not json", b"\xff\xfe\x00 binary", "[" * 1000, '{"action": 1}']
    sent = 0
    while not tracker.closed_slow and sent < 200_000:  # each gets a failure reason, never read
        await abuser.send(frames[sent % len(frames)])
        sent += 1
    # Refusals pile up unread (in the kernel's buffers, then the tracker's) until the tracker
    # closes the socket rather than hold more.
    async with asyncio.timeout(TIMEOUT):
        await tracker.wait_for(lambda stats: stats.sockets == 0)
    print(f"\nclosed a socket that does not read after {sent} garbage frames")
    assert tracker.closed_slow == 1
    assert await well_behaved_exchange(tracker.url) < TIMEOUT


async def test_ten_megabyte_frames_close_only_that_socket(stack: contextlib.AsyncExitStack) -> None:
    tracker = await stack.enter_async_context(TrackerServer())
    abuser = await connect(tracker.url, max_size=None, **from_other_ip())
    big = json.dumps({"action": "announce", "junk": "x" * 10_000_000})
    sending = asyncio.create_task(abuser.send(big))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(TIMEOUT):
            await abuser.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009  # message too big, refused from the frame's header
    with contextlib.suppress(websockets.ConnectionClosed):
        await sending
    assert abuser.state is websockets.State.CLOSED
    assert await well_behaved_exchange(tracker.url) < TIMEOUT


async def test_ten_thousand_offers_from_one_socket_are_rate_limited_and_told(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(TrackerServer(offer_burst=100, offer_rate=10))
    victim = await stack.enter_async_context(connect(tracker.url))
    await victim.send(encode_client_message(Announce(SWARM, peer_id(7))))
    assert isinstance(await recv(victim), AnnounceReply)
    abuser = await stack.enter_async_context(connect(tracker.url, **from_other_ip()))
    started = time.monotonic()
    warnings = 0
    for n in range(1_000):  # 10 offers an announce: 10,000 offers
        offers = tuple(OfferPayload(bytes([n % 256, i]) * 10, "v=0 flood") for i in range(10))
        await abuser.send(encode_client_message(Announce(SWARM, peer_id(9), offers=offers)))
        reply = await recv(abuser)
        assert isinstance(reply, AnnounceReply)
        warnings += reply.warning is not None and "not relayed" in reply.warning
    elapsed = time.monotonic() - started
    # Each announce relays one offer (the swarm has one other peer): the victim gets the burst
    # and then the rate, and the abuser is told of every offer dropped.
    relayed = 0
    with contextlib.suppress(TimeoutError):
        while True:
            async with asyncio.timeout(0.5):  # what was relayed is already on its way
                [message] = parse_server_message(await victim.recv())
            assert isinstance(message, OfferRelay)
            relayed += 1
    assert relayed <= 100 + 10 * elapsed + 1
    assert warnings >= 1_000 - relayed
    assert await well_behaved_exchange(tracker.url) < TIMEOUT


async def test_a_thousand_connections_from_one_address_meet_the_per_ip_cap(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(TrackerServer(max_connections_per_ip=256))
    started = time.monotonic()
    results = await asyncio.gather(
        *(stack.enter_async_context(connect(tracker.url, **from_other_ip())) for _ in range(1000)),
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    opened = [r for r in results if isinstance(r, ClientConnection)]
    refused = [r for r in results if isinstance(r, websockets.InvalidStatus)]
    reset = [r for r in results if not isinstance(r, ClientConnection | websockets.InvalidStatus)]
    assert len(opened) == 256
    # Those past the cap get HTTP 503 and the reason; those past twice the cap in their TCP
    # handshake at once are reset as soon as they are accepted.
    assert len(refused) + len(reset) == 744
    assert len(refused) >= 256
    assert all(r.response.status_code == 503 for r in refused)
    assert {bytes(r.response.body) for r in refused} == {
        b"too many connections from 127.0.0.2 (at most 256)\n"
    }
    assert all(isinstance(r, OSError | websockets.InvalidHandshake) for r in reset), reset
    assert tracker.stats().sockets == 256
    assert tracker.refused_connections == 744
    assert await well_behaved_exchange(tracker.url) < TIMEOUT
    print(f"\n1000 connections from one address: {elapsed:.2f} s")


async def test_a_thousand_concurrent_connections_and_the_total_cap(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(
        TrackerServer(max_connections=1002, max_connections_per_ip=1000)
    )
    rss_before = rss()
    started = time.monotonic()
    clients = await asyncio.gather(
        *(stack.enter_async_context(connect(tracker.url, **from_other_ip())) for _ in range(1000))
    )
    elapsed = time.monotonic() - started
    assert tracker.stats().sockets == 1000
    for i, ws in enumerate(clients[:50]):  # some of them in the swarm, idle afterwards
        await ws.send(encode_client_message(Announce(b"I" * 20, peer_id(100 + i), numwant=0)))
        assert isinstance(await recv(ws), AnnounceReply)
    took = await well_behaved_exchange(tracker.url)
    assert took < TIMEOUT
    # Once the two well-behaved sockets are gone, two more fit, and no third.
    async with asyncio.timeout(TIMEOUT):
        await tracker.wait_for(lambda stats: stats.sockets == 1000)
    for _ in range(2):
        await stack.enter_async_context(connect(tracker.url))
    with pytest.raises(websockets.InvalidStatus) as refused:
        await stack.enter_async_context(connect(tracker.url))
    assert refused.value.response.status_code == 503
    print(
        f"\n1000 connections: opened in {elapsed:.2f} s, well-behaved exchange {took * 1000:.0f} ms"
        f", RSS +{(rss() - rss_before) / 2**20:.1f} MiB (both ends in this process)"
    )


async def test_a_client_that_connects_and_never_reads_is_closed(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(
        TrackerServer(max_send_bytes=256 * 1024, write_limit=16 * 1024, offer_burst=10_000)
    )
    deaf = await connect(tracker.url, sock=small_socket(tracker.url, "127.0.0.2"))
    stack.callback(deaf.transport.abort)  # it reads nothing, not even a close
    await deaf.send(encode_client_message(Announce(SWARM, peer_id(66))))
    assert isinstance(await recv(deaf), AnnounceReply)
    deaf.transport.pause_reading()  # from now on it reads nothing

    sender = await stack.enter_async_context(connect(tracker.url))
    sdp = "v=0 " + "a" * 30_000
    sent = 0
    while not tracker.closed_slow and sent < 2_000:  # each offer goes to the deaf peer
        offer = OfferPayload(sent.to_bytes(20, "big"), sdp)
        await sender.send(encode_client_message(Announce(SWARM, peer_id(5), offers=(offer,))))
        assert isinstance(await recv(sender), AnnounceReply)
        sent += 1
    assert tracker.closed_slow == 1
    async with asyncio.timeout(TIMEOUT):
        await tracker.wait_for(lambda stats: stats.peers == 1 and stats.sockets == 1)
    print(f"\nclosed a client that does not read after {sent} offers of 30 KB to it")
    assert sent < 2_000  # closed long before: what it costs is bounded by the caps and the kernel
    assert await well_behaved_exchange(tracker.url) < TIMEOUT


async def test_two_addresses_cannot_fill_the_swarm_table(stack: contextlib.AsyncExitStack) -> None:
    tracker = await stack.enter_async_context(
        TrackerServer(max_swarms=160, max_info_hashes_per_socket=4)
    )
    assert tracker.swarms.max_swarms_per_source == 10
    # Two abusers, each with many sockets, try to open a new swarm per announce.
    refusals: dict[str, list[str]] = {}
    created = 0
    for address in ("127.0.0.2", "127.0.0.3"):
        refusals[address] = []
        sockets = [
            await stack.enter_async_context(connect(tracker.url, local_addr=(address, 0)))
            for _ in range(20)
        ]
        for n, ws in enumerate(sockets * 4):  # 80 announces, each into a swarm of its own
            info_hash = f"{address}/{n}".encode().ljust(20, b".")[:20]
            await ws.send(encode_client_message(Announce(info_hash, peer_id(n))))
            reply = await recv(ws)
            if isinstance(reply, AnnounceReply):
                created += 1
            else:
                assert isinstance(reply, FailureReply)
                refusals[address].append(reply.reason)
    assert created == 20
    assert tracker.stats().swarms == 20
    assert refusals == {a: ["too many swarms from one address (at most 10)"] * 70 for a in refusals}
    # The table is far from full: well-behaved clients from elsewhere still meet.
    assert await well_behaved_exchange(tracker.url) < TIMEOUT


async def open_from(url: str, address: str, count: int) -> list[ClientConnection | BaseException]:
    """Open ``count`` sockets to ``url`` from ``address`` at once: each socket, or its refusal."""
    return await asyncio.gather(
        *(connect(url, local_addr=(address, 0)) for _ in range(count)), return_exceptions=True
    )


async def test_idle_sockets_from_a_few_addresses_leave_room_for_others(
    stack: contextlib.AsyncExitStack,
) -> None:
    # As if under `ulimit -n 512`: 384 sockets after the 128 descriptors kept for the process,
    # 24 of them for handshakes in progress, and 1/16 of the rest from one address.
    tracker = await stack.enter_async_context(TrackerServer(fd_limit=512))
    assert (tracker.max_sockets, tracker.max_connections, tracker.max_connections_per_ip) == (
        384,
        360,
        22,
    )
    for n in range(2, 7):  # five addresses, 40 idle sockets each
        address = f"127.0.0.{n}"
        results = await open_from(tracker.url, address, 40)
        opened = [r for r in results if isinstance(r, ClientConnection)]
        for ws in opened:
            stack.push_async_callback(ws.close)
        refused = [r for r in results if isinstance(r, websockets.InvalidStatus)]
        assert len(opened) == 22
        assert {bytes(r.response.body) for r in refused} == {
            f"too many connections from {address} (at most 22)\n".encode()
        }
        assert len(refused) == 18
    assert tracker.stats().sockets == 5 * 22
    # A client from elsewhere still connects and meets its peer.
    assert await well_behaved_exchange(tracker.url) < TIMEOUT


async def test_sockets_that_say_nothing_are_closed(stack: contextlib.AsyncExitStack) -> None:
    tracker = await stack.enter_async_context(TrackerServer(hello_timeout=0.3, idle_timeout=1.0))
    silent = await stack.enter_async_context(connect(tracker.url, **from_other_ip()))
    opened = time.monotonic()
    garbage = await stack.enter_async_context(connect(tracker.url, **from_other_ip()))
    await garbage.send("not a request")  # refused: it does not count as saying something
    assert isinstance(parse_server_message(await garbage.recv())[0], FailureReply)
    chatty = await stack.enter_async_context(connect(tracker.url, **from_other_ip()))
    await chatty.send(encode_client_message(Announce(SWARM, peer_id(1))))
    assert isinstance(await recv(chatty), AnnounceReply)
    chatty_heard = time.monotonic()

    for ws in (silent, garbage):
        async with asyncio.timeout(TIMEOUT):
            await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (1008, "no request within 0.3 s of opening")
    assert time.monotonic() - opened >= 0.3
    # A client that keeps announcing is left alone; the one that announced once and went quiet
    # is closed a second after its announce, and leaves its swarm.
    steady = await stack.enter_async_context(connect(tracker.url))
    await steady.send(encode_client_message(Announce(SWARM, peer_id(2))))
    assert isinstance(await recv(steady), AnnounceReply)
    async with asyncio.timeout(TIMEOUT):
        await chatty.wait_closed()
    assert time.monotonic() - chatty_heard >= 1.0
    assert (chatty.close_code, chatty.close_reason) == (1008, "no request for 1 s")
    assert steady.state is websockets.State.OPEN
    await steady.send(encode_client_message(Announce(SWARM, peer_id(2))))
    reply = await recv(steady)
    assert isinstance(reply, AnnounceReply)
    assert (reply.complete, reply.incomplete) == (0, 1)
    assert tracker.closed_idle == 3


async def test_a_client_pipelining_300_requests_gets_every_answer(
    stack: contextlib.AsyncExitStack,
) -> None:
    tracker = await stack.enter_async_context(TrackerServer())
    ws = await stack.enter_async_context(connect(tracker.url))
    requests = [
        encode_client_message(Announce(SWARM, peer_id(n % 7), numwant=0))
        if n % 2
        else encode_client_message(Scrape((SWARM, GOOD)))
        for n in range(300)
    ]
    for request in requests:  # all sent before reading anything
        await ws.send(request)
    replies = [await recv(ws) for _ in requests]
    assert [type(r) for r in replies] == [
        AnnounceReply if n % 2 else ScrapeReply for n in range(300)
    ]
    assert tracker.closed_slow == 0
    assert ws.state is websockets.State.OPEN
    assert tracker.stats().peers == 7


REPO = Path(__file__).resolve().parents[2]  # where the child imports p2prpc from
CHILD = """
import asyncio, os, resource, sys
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
from p2prpc.tracker.server import TrackerServer

async def main():
    async with TrackerServer() as tracker:
        print(tracker.url, tracker.max_connections, tracker.max_connections_per_ip, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        files = [open(os.devnull) for _ in range(64)]  # the process still has descriptors
        print(tracker.stats().sockets, tracker.refused_connections, len(files), flush=True)
        for f in files:
            f.close()

asyncio.run(main())
"""


async def test_the_socket_cap_fits_the_processs_file_descriptors(
    stack: contextlib.AsyncExitStack,
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    stack.push_async_callback(child.wait)
    stack.callback(lambda: child.returncode is None and child.kill())
    assert child.stdout is not None and child.stdin is not None
    async with asyncio.timeout(TIMEOUT):
        url, cap, per_ip = (await child.stdout.readline()).decode().split()
    # ulimit -n 256: 128 sockets after the 128 reserved, 8 of them for handshakes.
    assert (int(cap), int(per_ip)) == (120, 7)
    opened = 0
    refusals: set[bytes] = set()
    for n in range(60):  # 300 sockets from 60 addresses, each within the per-address cap
        for _ in range(5):
            try:
                async with asyncio.timeout(TIMEOUT):
                    ws = await connect(url, local_addr=(f"127.0.1.{n + 1}", 0))
            except websockets.InvalidStatus as e:
                refusals.add(bytes(e.response.body))
            else:
                stack.push_async_callback(ws.close)
                opened += 1
    assert opened == 120
    assert refusals == {b"tracker is full (at most 120 connections)\n"}
    child.stdin.write(b"go\n")
    async with asyncio.timeout(TIMEOUT):
        sockets, refused, files = (await child.stdout.readline()).decode().split()
    assert (int(sockets), int(refused), int(files)) == (120, 180, 64)
    child.stdin.close()
    async with asyncio.timeout(TIMEOUT):
        assert await child.wait() == 0
