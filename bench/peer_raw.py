"""A raw data channel in a worker process: the ``raw.*`` commands, the baseline.

What an application would write on aiortc alone: one RTCPeerConnection, one ordered reliable data
channel (as simple-peer opens), binary messages, no framing beyond what each benchmark needs. The
orchestrator carries the offer and answer between the two workers (``offer`` → ``answer`` →
``accept``); host candidates are pinned to one address (aioice skips loopback by itself) and no
STUN server is asked unless ``ice_servers`` names some (URLs as p2prpc reads them:
``stun:HOST:PORT``, ``turn:USER:PASS@HOST:PORT``). Its UDP sockets get the buffers p2prpc's get
in the same run (``bench.udp``), so that the two differ only above the data channel.

``transport="libwebrtc"`` runs the same script on ``webrtc.aiortc`` (libwebrtc through ``wrtc``,
aiortc's API): the raw baseline of p2prpc on libwebrtc. There the host candidates are pinned by
keeping only those on the address in the session description sent (libwebrtc gathers on every
interface; loopback ones once allowed, as p2prpc's libwebrtc transport allows them), and the UDP
buffers are libwebrtc's own.

The answering side serves, in the mode the orchestrator sets (``serve``):

- ``ping``: every message is sent straight back;
- ``echo``: a first message gives a length; messages are gathered until that many bytes came,
  then those bytes go back in ``chunk``-byte messages (what a unary echo does);
- ``stream``: any message asks for ``count`` messages of ``size`` bytes;
- ``sink``: stamped messages (``bench.stamp``) are counted, with their latency (fan-out).

A :class:`RawHub` holds several such connections, to publish to all of them (fan-out).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
import time
from types import ModuleType
from typing import Any

import aioice.ice
import aiortc

from p2prpc.transport.aiortc import size_udp_buffers
from p2prpc.transport.ice import parse_ice_url

from . import udp
from .records import make_records
from .stamp import Receipts, now_ms, stamped

HIGH_WATER_MARK = 1024 * 1024
"""Bytes a sender lets wait in the data channel before it waits for them to drain (as p2prpc)."""
LOW_WATER_MARK = 256 * 1024

_LENGTH = struct.Struct(">Q")  # an echo starts with its length in one message


def _pin_host_addresses(address: str) -> None:
    def pinned(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return [address]

    aioice.ice.get_host_addresses = pinned


TRANSPORTS = ("aiortc", "libwebrtc")
"""Which WebRTC a raw peer runs on: aiortc, or libwebrtc by its aiortc-shaped API."""


def _api(transport: str) -> ModuleType:
    """The aiortc-shaped module of ``transport``."""
    if transport == "aiortc":
        return aiortc
    if transport == "libwebrtc":
        import webrtc.aiortc

        return webrtc.aiortc
    raise ValueError(f"no transport {transport!r}: one of {TRANSPORTS}")


# A data channel of either API (aiortc's or webrtc.aiortc's): the same attributes and events.
Channel = Any


async def send_all(channel: Channel, payload: bytes, chunk: int) -> None:
    """Send ``payload`` in ``chunk``-byte messages, pausing while the channel holds too much.

    The same water marks as p2prpc's channels use, so that both leave aiortc queues alike.
    """
    view = memoryview(payload)
    low = asyncio.Event()
    channel.bufferedAmountLowThreshold = LOW_WATER_MARK
    channel.on("bufferedamountlow", low.set)
    try:
        for offset in range(0, len(view), chunk):
            if channel.bufferedAmount > HIGH_WATER_MARK:
                low.clear()
                await low.wait()
            channel.send(bytes(view[offset : offset + chunk]))
    finally:
        channel.remove_listener("bufferedamountlow", low.set)


class RawPeer:
    """One side of a raw aiortc data channel."""

    def __init__(self) -> None:
        self.pc: Any = None  # an RTCPeerConnection of aiortc or of webrtc.aiortc
        self.channel: Channel | None = None
        self.transport = "aiortc"
        self.host = "127.0.0.1"
        self._open: asyncio.Future[Channel] | None = None
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._records: bytes | None = None
        self.receipts = Receipts()

    async def _describe(self, pc: Any, offer: bool) -> str:
        description = await (pc.createOffer() if offer else pc.createAnswer())
        await pc.setLocalDescription(description)  # returns once every candidate is gathered
        assert pc.localDescription is not None
        if self.transport == "libwebrtc":
            from p2prpc.transport.wrtc import pin_host_candidates

            return pin_host_candidates(pc.localDescription.sdp, [self.host])
        size = udp.buffer_size()
        if size is not None:
            size_udp_buffers(pc, size)
        sdp: str = pc.localDescription.sdp
        return sdp

    def _new_pc(self, host: str, transport: str, ice_servers: list[str] | None = None) -> Any:
        api = _api(transport)
        servers = []
        for url in ice_servers or []:
            server = parse_ice_url(url)
            servers.append(
                api.RTCIceServer(
                    urls=server.urls, username=server.username, credential=server.credential
                )
            )
        self.transport, self.host = transport, host
        if transport == "libwebrtc":
            if ipaddress.ip_address(host).is_loopback:
                from p2prpc.transport.wrtc import allow_loopback

                allow_loopback()
        else:
            _pin_host_addresses(host)
        self.pc = api.RTCPeerConnection(api.RTCConfiguration(iceServers=servers))
        self._open = asyncio.get_running_loop().create_future()
        return self.pc

    def _description(self, sdp: str, kind: str) -> Any:
        return _api(self.transport).RTCSessionDescription(sdp=sdp, type=kind)

    def _attach(self, channel: Channel) -> None:
        self.channel = channel
        channel.on("message", self._inbox.put_nowait)

        def opened() -> None:
            if self._open is not None and not self._open.done():
                self._open.set_result(channel)

        if channel.readyState == "open":
            opened()
        else:
            channel.on("open", opened)

    async def cmd_offer(
        self,
        host: str = "127.0.0.1",
        transport: str = "aiortc",
        ice_servers: list[str] | None = None,
    ) -> str:
        """Offer a connection with one data channel on ``transport`` (``aiortc`` or
        ``libwebrtc``), with these STUN and TURN servers (none by default); returns the offer
        SDP."""
        pc = self._new_pc(host, transport, ice_servers)
        self._attach(pc.createDataChannel("bench"))
        return await self._describe(pc, offer=True)

    async def cmd_answer(
        self,
        sdp: str,
        host: str = "127.0.0.1",
        transport: str = "aiortc",
        ice_servers: list[str] | None = None,
    ) -> str:
        """Answer an offer on ``transport`` (with ``ice_servers``, as :meth:`cmd_offer`);
        returns the answer SDP."""
        pc = self._new_pc(host, transport, ice_servers)
        pc.on("datachannel", self._attach)
        await pc.setRemoteDescription(self._description(sdp, "offer"))
        return await self._describe(pc, offer=False)

    async def cmd_accept(self, sdp: str) -> None:
        """Take the answer to this side's offer."""
        if self.pc is None:
            raise RuntimeError("raw.offer first")
        await self.pc.setRemoteDescription(self._description(sdp, "answer"))

    async def cmd_wait_open(self, timeout: float = 30.0) -> None:
        if self._open is None:
            raise RuntimeError("raw.offer or raw.answer first")
        await asyncio.wait_for(self._open, timeout)

    async def cmd_close(self) -> None:
        """Close the connection (the next ``offer`` or ``answer`` makes a new one)."""
        await self.aclose()
        self._tasks.clear()
        self.pc = self.channel = self._open = None
        self._inbox = asyncio.Queue()

    def _channel(self) -> Channel:
        if self.channel is None or self.channel.readyState != "open":
            raise RuntimeError("the data channel is not open")
        return self.channel

    # -- the answering side -------------------------------------------------------------------

    async def cmd_serve(
        self, mode: str, size: int = 0, count: int = 0, chunk: int = 16 * 1024
    ) -> None:
        """Serve in ``mode`` (``ping``, ``echo``, ``stream``, ``sink``) until told another one."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        runs = {
            "ping": self._ping_server,
            "echo": self._echo_server,
            "stream": self._stream_server,
            "sink": self._sink,
        }
        task = asyncio.get_running_loop().create_task(runs[mode](size, count, chunk))
        self._tasks.add(task)

    async def _ping_server(self, size: int, count: int, chunk: int) -> None:
        channel = self._channel()
        self._inbox = asyncio.Queue()
        channel.remove_all_listeners("message")
        channel.on("message", channel.send)  # straight back, from the event itself

    async def _echo_server(self, size: int, count: int, chunk: int) -> None:
        channel = self._channel()
        self._restart_inbox(channel)
        while True:
            (size,) = _LENGTH.unpack(await self._inbox.get())
            parts = []
            received = 0
            while received < size:
                part = await self._inbox.get()
                parts.append(part)
                received += len(part)
            await send_all(channel, b"".join(parts), chunk)

    async def _stream_server(self, size: int, count: int, chunk: int) -> None:
        channel = self._channel()
        self._restart_inbox(channel)
        message = os.urandom(size)
        while True:
            await self._inbox.get()
            low = asyncio.Event()
            channel.bufferedAmountLowThreshold = LOW_WATER_MARK
            channel.on("bufferedamountlow", low.set)
            try:
                for _ in range(count):
                    if channel.bufferedAmount > HIGH_WATER_MARK:
                        low.clear()
                        await low.wait()
                    channel.send(message)
            finally:
                channel.remove_listener("bufferedamountlow", low.set)

    async def _sink(self, size: int, count: int, chunk: int) -> None:
        channel = self._channel()
        channel.remove_all_listeners("message")
        channel.on("message", self.receipts.record)

    async def cmd_reset(self) -> None:
        self.receipts.reset()

    async def cmd_collect(
        self, count: int, timeout: float = 60.0, quiet: float = 3.0
    ) -> dict[str, Any]:
        """In ``sink`` mode: wait for ``count`` stamped messages (or ``quiet`` seconds without
        one); what came."""
        await self.receipts.wait(count, timeout, quiet)
        return self.receipts.result()

    def _restart_inbox(self, channel: Channel) -> None:
        self._inbox = asyncio.Queue()
        channel.remove_all_listeners("message")
        channel.on("message", self._inbox.put_nowait)

    # -- the measuring side -------------------------------------------------------------------

    async def cmd_ping(self, count: int, size: int, warmup: int = 20) -> list[float]:
        """``count`` sequential round trips of a ``size``-byte message; each in milliseconds."""
        channel = self._channel()
        self._restart_inbox(channel)
        message = os.urandom(size)
        times = []
        for i in range(warmup + count):
            start = time.perf_counter()
            channel.send(message)
            await self._inbox.get()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
        return times

    async def cmd_ping_flight(self, concurrency: int, seconds: float, size: int) -> float:
        """Round trips with ``concurrency`` messages in flight for ``seconds``: per second."""
        channel = self._channel()
        self._restart_inbox(channel)
        message = os.urandom(size)
        done = 0
        start = time.perf_counter()
        deadline = start + seconds
        for _ in range(concurrency):
            channel.send(message)
        in_flight = concurrency
        while in_flight:
            await self._inbox.get()
            in_flight -= 1
            done += 1
            if time.perf_counter() < deadline:
                channel.send(message)
                in_flight += 1
        return done / (time.perf_counter() - start)

    async def cmd_echo(
        self, size: int, chunk: int = 16 * 1024, records: bool = False
    ) -> dict[str, float]:
        """Send ``size`` bytes in ``chunk``-byte messages, wait for all of them back.

        The bytes are random, or with ``records`` a serialized ``bench.Records`` of about that
        size. Returns the seconds the echo took and its exact size.
        """
        channel = self._channel()
        self._restart_inbox(channel)
        if records:
            if self._records is None or len(self._records) < size:
                self._records = make_records(size).SerializeToString()
            payload = self._records
        else:
            payload = os.urandom(size)
        size = len(payload)
        start = time.perf_counter()
        channel.send(_LENGTH.pack(size))
        sending = asyncio.get_running_loop().create_task(send_all(channel, payload, chunk))
        parts = []
        received = 0
        while received < size:
            part = await self._inbox.get()
            parts.append(part)
            received += len(part)
        elapsed = time.perf_counter() - start
        await sending
        if b"".join(parts) != payload:
            raise RuntimeError("the echo came back different")
        return {"seconds": elapsed, "bytes": size}

    async def cmd_stream(self, count: int, size: int) -> float:
        """Ask for ``count`` messages of ``size`` bytes; seconds until the last one came."""
        channel = self._channel()
        self._restart_inbox(channel)
        start = time.perf_counter()
        channel.send(b"go")
        for _ in range(count):
            await self._inbox.get()
        return time.perf_counter() - start

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.pc is not None:
            await self.pc.close()


class RawHub:
    """Several raw data channels from one process, publishing to all of them (fan-out)."""

    def __init__(self) -> None:
        self.peers: dict[str, RawPeer] = {}

    async def cmd_offer(self, key: str, host: str = "127.0.0.1", transport: str = "aiortc") -> str:
        peer = self.peers[key] = RawPeer()
        return await peer.cmd_offer(host, transport)

    async def cmd_accept(self, key: str, sdp: str) -> None:
        await self.peers[key].cmd_accept(sdp)

    async def cmd_wait_open(self, timeout: float = 30.0) -> None:
        await asyncio.gather(*(p.cmd_wait_open(timeout) for p in self.peers.values()))

    async def cmd_publish(self, count: int, size: int, interval: float = 0.0) -> dict[str, float]:
        """Send ``count`` stamped messages of ``size`` bytes on every channel, ``interval`` s
        apart (0: back to back, pausing only while a channel holds too much)."""
        channels = [p._channel() for p in self.peers.values()]
        low = asyncio.Event()
        for channel in channels:
            channel.bufferedAmountLowThreshold = LOW_WATER_MARK
            channel.on("bufferedamountlow", low.set)
        first = now_ms()
        try:
            for seq in range(count):
                message = stamped(seq, size)
                for channel in channels:
                    while channel.bufferedAmount > HIGH_WATER_MARK:
                        low.clear()
                        await low.wait()
                    channel.send(message)
                if interval:
                    await asyncio.sleep(interval)
        finally:
            for channel in channels:
                channel.remove_listener("bufferedamountlow", low.set)
        return {"t_first_ms": first, "t_done_ms": now_ms()}

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.peers.values()), return_exceptions=True)
