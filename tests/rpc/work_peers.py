"""The two sides of the work-budget test, each in a process of its own (``python work_peers.py
victim|hostile TRACKER_URL IDENTIFIER``), driven by lines on stdin, answering on stdout.

The victim serves Greeter with 16 MiB messages allowed and tells its CPU time (``cpu``). The
hostile peer sends SayHello calls whose payloads it picks byte for byte (``send MODE ENCODING
COUNT IN_FLIGHT``), and answers ``done BYTES_SENT SECONDS CODES`` once every call has ended.
Options after the victim's identifier (``work_rate=N`` ...) go to its node. The payloads:

- ``bomb``: 16 MiB of unknown protobuf fields (the costliest bytes to parse), compressed as tightly
  as the encoding goes (zstd: about 1.5 kB; deflate at level 9: about 16 kB);
- ``fit``: the costliest payload a receiver with the default ratio still takes: random bytes (which
  do not compress) followed by unknown fields, inflating to just under the ratio's bound;
- ``plain-bomb``, ``plain-fit``: unknown fields, not compressed, as long as those payloads are.
"""

from __future__ import annotations

import asyncio
import collections
import random
import sys
import time
import zlib
from typing import Any

from helloworld_p2prpc import GreeterServicer, GreeterStub, add_GreeterServicer_to_node
from helloworld_pb2 import HelloReply, HelloRequest

import p2prpc.rpc.client
from p2prpc.errors import RpcError
from p2prpc.rpc import ServicerContext
from p2prpc.testing import loopback_node
from p2prpc.wire.compression import CODECS

MAX_MESSAGE_SIZE = 16 * 2**20
#: What a receiver takes by default: a payload inflating to at most RATIO × its size + ALLOWANCE.
RATIO, ALLOWANCE = 64, 4096
FIELD = b"\xa0\x06\x01"  # field 100, varint 1: unknown to HelloRequest, 1 ns a byte to parse


def unknown_fields(size: int) -> bytes:
    """Exactly ``size`` bytes (at least 2) of unknown fields, most of them 3 bytes long."""
    short = b"\x10\x01"  # field 2, varint 1: 2 bytes
    rest = {0: b"", 1: short * 2, 2: short}[size % 3]
    return rest + FIELD * ((size - len(rest)) // 3)


def deflate_9(data: bytes) -> bytes:
    return zlib.compress(data, 9)


def tightest(encoding: str, data: bytes) -> bytes:
    return deflate_9(data) if encoding == "deflate" else CODECS[encoding].compress(data)


def bomb(encoding: str) -> bytes:
    return tightest(encoding, unknown_fields(MAX_MESSAGE_SIZE - 64))


def fit(encoding: str) -> bytes:
    noise = random.Random(1).randbytes(1500)
    head = b"\xaa\x06" + bytes([0xDC, 0x0B]) + noise  # field 101, 1500 bytes
    tail = 64 * 1600
    while True:
        data = head + unknown_fields(tail)
        packed = tightest(encoding, data)
        if len(data) <= RATIO * len(packed) + ALLOWANCE:
            return packed
        tail = int(tail * 0.97)


class Greeter(GreeterServicer):
    async def SayHello(self, request: HelloRequest, context: ServicerContext) -> HelloReply:
        return HelloReply(message=f"Hello, {request.name}")


async def lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def say(*words: object) -> None:
    print(*words, flush=True)


async def victim(url: str, identifier: str, *options: str) -> None:
    kwargs = {k: int(v) for k, v in (o.split("=") for o in options)}
    node = loopback_node([url], identifier, max_message_size=MAX_MESSAGE_SIZE, mesh=False, **kwargs)
    add_GreeterServicer_to_node(Greeter(), node)
    async with node:
        say("ready", node.peer_id)
        reader = await lines()
        while line := (await reader.readline()).decode().strip():
            if line == "cpu":
                say("cpu", time.process_time())


async def one(
    stub: GreeterStub,
    encoding: str,
    slots: asyncio.Semaphore,
    codes: collections.Counter[str],
) -> None:
    async with slots:
        try:
            await stub.SayHello(HelloRequest(), compression=encoding, timeout=60)
            codes["OK"] += 1
        except RpcError as e:
            codes[e.code().name] += 1


async def hostile(url: str, identifier: str, *_: str) -> None:
    node = loopback_node([url], identifier, mesh=False)
    chosen: list[tuple[bytes, bool]] = []

    def pack(*_: Any) -> tuple[bytes, bool]:
        return chosen[0]  # the payload this peer picked, whatever the message

    p2prpc.rpc.client.pack = pack  # type: ignore[assignment]
    async with node:
        victim_id = await node.wait_for_server("helloworld.Greeter", 30)
        stub = GreeterStub(node.to(victim_id))
        say("ready")
        reader = await lines()
        while line := (await reader.readline()).decode().strip():
            mode, encoding, count, in_flight = line.split()[1:]
            compressed = bomb(encoding) if mode.endswith("bomb") else fit(encoding)
            if mode.startswith("plain"):
                chosen[:] = [(unknown_fields(len(compressed)), False)]
            else:
                chosen[:] = [(compressed, True)]
            codes: collections.Counter[str] = collections.Counter()
            slots = asyncio.Semaphore(int(in_flight))
            started = time.perf_counter()
            await asyncio.gather(*(one(stub, encoding, slots, codes) for _ in range(int(count))))
            sent = int(count) * len(chosen[0][0])
            say(
                "done",
                sent,
                f"{time.perf_counter() - started:.3f}",
                ",".join(f"{k}={v}" for k, v in sorted(codes.items())),
            )


if __name__ == "__main__":
    role, url, identifier, *options = sys.argv[1:]
    asyncio.run((victim if role == "victim" else hostile)(url, identifier, *options))
