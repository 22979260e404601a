"""The UDP sockets under a data channel get the buffers asked for, as far as the kernel allows.

Linux clamps a request to ``net.core.rmem_max`` / ``net.core.wmem_max`` and reports twice what it
granted (it counts its bookkeeping too); these tests expect exactly that. They are about aiortc's
sockets (aioice's): libwebrtc owns its sockets and sizes their buffers itself, and its links say
so (they report no sockets, whatever size is asked for).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from p2prpc import P2PT
from p2prpc.swarm.connection import Connection
from p2prpc.testing import swarm
from p2prpc.transport import UDP_BUFFER_SIZE
from p2prpc.transport.aiortc import size_udp_buffers, udp_sockets

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(sys.platform != "linux", reason="expects Linux's socket buffer accounting"),
]

about_aioice = pytest.mark.transport_only(
    "aiortc",
    reason="aioice's UDP sockets: libwebrtc owns its sockets and sizes their buffers itself",
)


def sysctl(name: str) -> int:
    return int(Path("/proc/sys/net/core", name).read_text())


def granted(size: int) -> tuple[int, int]:
    """What Linux reports for SO_RCVBUF and SO_SNDBUF after asking ``size`` bytes."""
    return 2 * min(size, sysctl("rmem_max")), 2 * min(size, sysctl("wmem_max"))


def channels(p2pt: P2PT) -> list[Connection]:
    return [c for peer in p2pt.peers.values() for c in peer._remote.channels.values() if c.is_open]


def buffers(channel: Connection) -> list[tuple[int, int]]:
    sockets = udp_sockets(channel.link.pc)
    assert sockets, "an open channel has UDP sockets"
    assert all(s.type == socket.SOCK_DGRAM for s in sockets)
    return [
        (
            s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )
        for s in sockets
    ]


@about_aioice
@pytest.mark.parametrize("size", [UDP_BUFFER_SIZE, 1024 * 1024, 64 * 1024 * 1024])
async def test_open_channels_have_the_granted_buffers(size: int) -> None:
    async with swarm(2, udp_buffer_size=size) as s:
        for p2pt in s.peers:
            (channel,) = channels(p2pt)
            assert set(buffers(channel)) == {granted(size)}


@about_aioice
async def test_the_default_is_udp_buffer_size() -> None:
    async with swarm(2) as s:
        for p2pt in s.peers:
            assert p2pt.rtc_options.udp_buffer_size == UDP_BUFFER_SIZE
            (channel,) = channels(p2pt)
            assert set(buffers(channel)) == {granted(UDP_BUFFER_SIZE)}


@about_aioice
async def test_none_leaves_aioice_receive_buffer() -> None:
    async with swarm(2, udp_buffer_size=None) as s:
        for p2pt in s.peers:
            (channel,) = channels(p2pt)
            receive = {r for r, _ in buffers(channel)}
            assert receive == {granted(256 * 1024)[0]}  # aioice asks 256 KiB itself


@about_aioice
async def test_size_udp_buffers_returns_what_the_kernel_reports() -> None:
    async with swarm(2, udp_buffer_size=None) as s:
        (channel,) = channels(s.peers[0])
        got = size_udp_buffers(channel.link.pc, 512 * 1024)
        assert got == buffers(channel) == [granted(512 * 1024)] * len(got)


@pytest.mark.transport_only("libwebrtc", reason="what a libwebrtc link says of its sockets")
async def test_a_libwebrtc_link_reports_no_sockets_to_size() -> None:
    async with swarm(2, udp_buffer_size=1024 * 1024) as s:
        for p2pt in s.peers:
            (channel,) = channels(p2pt)
            assert channel.link.udp_buffers(512 * 1024) == channel.link.udp_buffers() == []
