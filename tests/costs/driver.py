"""The processes of the cost tests: a victim node and a hostile peer, each in its own process.

``python driver.py victim TRACKER_URL [heap]`` runs a node with the budgets below, serving a small
test service, the standard services and a topic (``heap``: tracing its Python heap with
:mod:`tracemalloc`, which ``gc`` and ``peak`` then report); ``python driver.py attacker TRACKER_URL
VICTIM_ID`` runs a raw P2PT peer that hand-builds envelopes (``p2prpc.wire.envelope``) and sends
each case of :data:`CASES` to the victim on command. Both print one JSON line when ready, then read
one JSON command a line on stdin and answer each with one JSON line on stdout.

A case is the list of data-channel messages it sends (text P2PT frames or binary frames), so
that its baseline can be the same number of messages of the same sizes, carrying what the victim
reads and drops (``pong`` envelopes padded to size): the cost of receiving and parsing those
bytes plainly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import json
import os
import random
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "generated")]

from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402
from grpc_health.v1 import health_pb2  # noqa: E402

from p2prpc.errors import PeerClosed, SendQueueFull  # noqa: E402
from p2prpc.p2pt import Peer  # noqa: E402
from p2prpc.pubsub import Topic  # noqa: E402
from p2prpc.rpc import (  # noqa: E402
    Cardinality,
    Channel,
    Handler,
    RetryPolicy,
    ServicerContext,
    UnaryStreamMethod,
)
from p2prpc.services.reflection import V1  # noqa: E402
from p2prpc.testing import loopback_node, loopback_p2pt  # noqa: E402
from p2prpc.wire.envelope import (  # noqa: E402
    HEADER_SIZE,
    BinaryReader,
    Envelope,
    Kind,
    pack_batch,
    to_binary,
)
from p2prpc.wire.frames import decode_frame, encode_message, new_message_id  # noqa: E402
from p2prpc.wire.held import estimate_held  # noqa: E402
from p2prpc.wire.status import Status, StatusCode  # noqa: E402

S = StringValue
IDENTIFIER = "p2prpc-costs"
TOPIC = "costs.topic"
MiB = 2**20

#: The victim's configured budgets (what the tests hold it to besides the 4× model).
VICTIM_OPTIONS: dict[str, Any] = {
    "max_message_size": 1 * MiB,
    "max_calls_per_peer": 64,
    "max_peer_bytes": 8 * MiB,
    "max_total_bytes": 16 * MiB,
    "max_send_queue": 4 * MiB,
}
#: The most a peer may make the victim hold, in bytes, by its configuration (its node total).
VICTIM_BUDGET = VICTIM_OPTIONS["max_total_bytes"]

#: Messages the victim publishes on start, for ``want`` to ask for again.
PUBLISHED = 16
PUBLISHED_SIZE = 32 * 1024


def say(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def commands() -> AsyncIterator[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield json.loads(line)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_memory() -> int:
    """Collect garbage and give freed heap back to the system; the resident set after."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss()


# -- the victim -----------------------------------------------------------------------------------


class Bench:
    """The victim's own service: a unary echo (the well-behaved peer's calls), a unary call that
    never ends (held calls), and a bidirectional stream that never reads its requests."""

    async def Echo(self, request: S, context: ServicerContext) -> S:
        return request

    async def Hold(self, request: S, context: ServicerContext) -> S:
        await asyncio.Event().wait()
        return request

    async def Deaf(self, requests: AsyncIterator[S], context: ServicerContext) -> AsyncIterator[S]:
        await asyncio.Event().wait()
        yield S()

    def handlers(self) -> dict[str, Handler[Any, Any]]:
        return {
            "/costs.Bench/Echo": Handler(self.Echo, Cardinality.UNARY_UNARY, S, S),
            "/costs.Bench/Hold": Handler(self.Hold, Cardinality.UNARY_UNARY, S, S),
            "/costs.Bench/Deaf": Handler(self.Deaf, Cardinality.STREAM_STREAM, S, S),
        }


def heap() -> int:
    """The Python heap in use, as :mod:`tracemalloc` traces it (0 when it is not tracing)."""
    import tracemalloc

    return tracemalloc.get_traced_memory()[0]


async def victim(tracker: str, mode: str = "") -> None:
    import tracemalloc

    if mode == "heap":
        tracemalloc.start()
    node = loopback_node([tracker], IDENTIFIER, **VICTIM_OPTIONS)
    node.add_service("costs.Bench", Bench().handlers())
    topic = Topic(node, TOPIC, S)
    subscription = topic.subscribe()  # never read: what arrives waits in its queue
    await node.start()
    await node.wait_for_peers(1, 60)
    for i in range(PUBLISHED):
        await topic.publish(S(value=f"{i:04d}" + "p" * (PUBLISHED_SIZE - 4)))
    say({"peer_id": node.peer_id, "pid": os.getpid(), "rss": release_memory()})
    calls: list[Any] = []
    async for command in commands():
        what = command["do"]
        if what == "gc":
            say({"rss": release_memory(), "heap": heap(), "queued": subscription.pending()})
        elif what == "reset_peak":
            tracemalloc.reset_peak()
            say({"heap": heap()})
        elif what == "peak":
            say({"heap": tracemalloc.get_traced_memory()[1]})
        elif what == "call_attacker":
            channel = Channel(
                node,
                peer=command["peer"],
                compression=command.get("encoding"),
                retry_policy=RetryPolicy(max_attempts=1),
            )
            feed = UnaryStreamMethod(channel, "/costs.Evil/Feed", S, S)
            calls += [feed(S(), timeout=300) for _ in range(command["n"])]
            say({"calls": len(calls)})
        elif what == "reset":  # between cases: end our calls, read what the topic queued
            for call in calls:
                call.cancel()
            calls.clear()
            while subscription.pending():
                await anext(subscription)
            say({"rss": release_memory()})
        elif what == "stop":
            break
    subscription.close()
    await node.close()


# -- the attacker ---------------------------------------------------------------------------------

Wire = list[str | bytes]


def binary(env: Envelope, *, compact: bool = False) -> Wire:
    return list(to_binary(env, compact=compact))


def text(value: Any, msg_id: int | None = None) -> Wire:
    return list(encode_message(value, new_message_id() if msg_id is None else msg_id))


def size_of(message: str | bytes) -> int:
    return len(message.encode() if isinstance(message, str) else message)


def nested_json(size: int) -> list[Any]:
    """A JSON value of about ``size`` characters that costs its reader the most objects per
    character: empty lists (``[],``: three characters, a list object each)."""
    return [[] for _ in range(size // 3)]


def unknown_fields(size: int) -> bytes:
    """``size`` bytes of protobuf that parse as unknown fields only (field 15, varint 0, over
    and over): the most work per byte for a parser that keeps unknown fields."""
    return b"\x78\x00" * (size // 2)


@functools.cache
def bomb(encoding: str, size: int) -> bytes:
    data = unknown_fields(size)
    if encoding == "deflate":
        return zlib.compress(data, 9)
    import zstandard

    return zstandard.ZstdCompressor(level=19).compress(data)


def peer_id_hex(rng: random.Random) -> str:
    return rng.randbytes(20).hex()


def max_metadata(rng: random.Random) -> tuple[tuple[str, str], ...]:
    """Metadata at a peer's caps: 256 entries in about 16 KiB, as many keys as it takes."""
    return tuple((f"k{i:03d}-{rng.randrange(10**6):06d}", "v" * 40) for i in range(250))


@dataclass
class Attack:
    """What a case knows: the victim, the calls it has open to us, and a random source."""

    victim: str
    victim_calls: list[tuple[int, bool]] = field(default_factory=list)  # (call id, compressed)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def fresh(self) -> int:
        return self.rng.randrange(100_000, 2**31)


def _calls_then(
    kind_frames: Callable[[int, int], Wire],
    calls: int,
    each: int,
    method: str,
    form: str,
    *,
    encoding: str | None = None,
) -> Callable[[Attack], Wire]:
    def build(a: Attack) -> Wire:
        out: Wire = []
        ids = [a.fresh() for _ in range(calls)]
        for call_id in ids:
            if form == "binary":
                out += binary(Envelope(Kind.CALL, call_id, method=method, encoding=encoding))
            else:
                out += text({"call": method}, call_id)
        for round_ in range(each):
            for call_id in ids:
                out += kind_frames(call_id, round_)
        return out

    return build


def case_call(form: str, variant: str = "") -> Callable[[Attack], Wire]:
    def build(a: Attack) -> Wire:
        out: Wire = []
        if variant in ("zstd", "deflate"):
            payload = bomb(variant, VICTIM_OPTIONS["max_message_size"] - 64)
            for _ in range(200):
                out += binary(
                    Envelope(
                        Kind.CALL,
                        a.fresh(),
                        method="/costs.Bench/Echo",
                        payload=payload,
                        has_payload=True,
                        encoding=variant,
                        compressed=True,
                    )
                )
            return out
        if form == "json":
            # Calls whose request is a JSON value of empty lists under an unknown field.
            for _ in range(8):
                msg = {"value": "x", "junk": nested_json(256 * 1024)}
                out += text({"call": "/costs.Bench/Hold", "msg": msg}, a.fresh())
            return out
        metadata = max_metadata(a.rng)
        for _ in range(160):  # held calls up to the per-peer cap (64), then refused ones
            out += binary(
                Envelope(
                    Kind.CALL,
                    a.fresh(),
                    method="/costs.Bench/Hold",
                    metadata=metadata,
                    payload=b"",
                    has_payload=True,
                )
            )
        return out

    return build


def case_msg(form: str, variant: str = "") -> Callable[[Attack], Wire]:
    def frames(call_id: int, seq: int) -> Wire:
        if variant:
            return binary(
                Envelope(
                    Kind.MSG,
                    call_id,
                    seq,
                    payload=bomb(variant, VICTIM_OPTIONS["max_message_size"] - 64),
                    has_payload=True,
                    compressed=True,
                )
            )
        if form == "binary":
            return binary(
                Envelope(Kind.MSG, call_id, seq, payload=unknown_fields(60_000), has_payload=True)
            )
        return text({"msg": {"value": "x", "junk": nested_json(60_000)}, "seq": seq}, call_id)

    each = 64 if variant else 4
    return _calls_then(frames, 8, each, "/costs.Bench/Deaf", form, encoding=variant or None)


def case_small(kind: Kind, form: str, count: int = 3000) -> Callable[[Attack], Wire]:
    """Floods of envelopes without payload: per-message work, and numbers the peer chooses."""

    def build(a: Attack) -> Wire:
        out: Wire = []
        deaf = [a.fresh() for _ in range(32)]
        if kind is Kind.END:
            for call_id in deaf:
                if form == "binary":
                    out += binary(Envelope(Kind.CALL, call_id, method="/costs.Bench/Deaf"))
                else:
                    out += text({"call": "/costs.Bench/Deaf"}, call_id)
        for i in range(count):
            call_id = deaf[i % len(deaf)] if kind is Kind.END else a.fresh()
            if kind is Kind.CANCEL:  # a held call opened, then cancelled: churn
                if form == "binary":
                    out += binary(
                        Envelope(
                            Kind.CALL,
                            call_id,
                            method="/costs.Bench/Hold",
                            payload=b"",
                            has_payload=True,
                        )
                    )
                    out += binary(Envelope(Kind.CANCEL, call_id))
                else:
                    out += text({"call": "/costs.Bench/Hold", "msg": {}}, call_id)
                    out += text({"cancel": True}, call_id)
                continue
            seq = 2**32 - 1 - i if kind is Kind.END else 0
            if form == "binary":
                out += binary(Envelope(kind, call_id, seq))
            else:
                value: dict[str, Any] = {kind.name.lower(): True}
                if kind is Kind.END:
                    value["seq"] = seq
                out += text(value, call_id)
        return out

    return build


def case_window(kind: Kind, form: str) -> Callable[[Attack], Wire]:
    """Floods of window updates, every other one on a call in progress (the streams we call
    the victim's Deaf with, for ``reply_window``; the victim's calls to us, for ``msg_window``),
    each opening its window far past what was sent, and the rest on ids with no call."""

    def build(a: Attack) -> Wire:
        out: Wire = []
        key = kind.name.lower()
        if kind is Kind.REPLY_WINDOW:
            calls = [a.fresh() for _ in range(32)]
            for call_id in calls:
                if form == "binary":
                    out += binary(Envelope(Kind.CALL, call_id, method="/costs.Bench/Deaf"))
                else:
                    out += text({"call": "/costs.Bench/Deaf"}, call_id)
        else:
            calls = [cid for cid, _ in a.victim_calls] or [a.fresh()]
        for i in range(3000):
            call_id = calls[i % len(calls)] if i % 2 else a.fresh()
            increment = 2**31 - 1 - i
            if form == "binary":
                out += binary(Envelope(kind, call_id, increment))
            else:
                out += text({key: increment}, call_id)
        return out

    return build


def case_server_side(kind: Kind, form: str, variant: str = "") -> Callable[[Attack], Wire]:
    """What a server sends: on the calls the victim has open to us, and on ids it never used."""

    def build(a: Attack) -> Wire:
        out: Wire = []
        calls = [cid for cid, _ in a.victim_calls] or [a.fresh()]
        if kind is Kind.REPLY:
            for seq in range(4 if not variant else 64):
                for call_id in calls:
                    if variant:
                        payload = bomb(variant, VICTIM_OPTIONS["max_message_size"] - 64)
                        out += binary(
                            Envelope(
                                Kind.REPLY,
                                call_id,
                                seq,
                                payload=payload,
                                has_payload=True,
                                compressed=True,
                            )
                        )
                    elif form == "binary":
                        out += binary(
                            Envelope(
                                Kind.REPLY,
                                call_id,
                                seq,
                                payload=unknown_fields(60_000),
                                has_payload=True,
                            )
                        )
                    else:
                        reply = {"value": "x", "junk": nested_json(60_000)}
                        out += text({"reply": reply, "seq": seq}, call_id)
            return out
        metadata = max_metadata(a.rng)
        for i in range(48 if kind is Kind.STATUS else 120):
            call_id = calls[i % len(calls)] if kind is Kind.HEADERS else a.fresh()
            if kind is Kind.HEADERS:
                env = Envelope(Kind.HEADERS, call_id, metadata=metadata)
            else:
                env = Envelope(
                    Kind.STATUS,
                    call_id,
                    2**32 - 1,
                    status=Status(StatusCode.INTERNAL, "d" * 40_000, metadata),
                )
            if form == "binary":
                out += binary(env)
            else:
                from p2prpc.wire.envelope import to_json

                out += text(to_json(env), call_id)
        return out

    return build


def hostile_hello(rng: random.Random) -> dict[str, Any]:
    names = [f"svc{i:04d}." + "s" * 240 for i in range(1024)]
    return {
        "v": 1,
        "binary": True,
        "services": names,
        "topics": names,
        "keepalive": False,
        "mesh": 1,
        "relay": True,
        "junk": "j" * 60_000,
        "seed": rng.random(),
    }


def case_hello(form: str) -> Callable[[Attack], Wire]:
    def build(a: Attack) -> Wire:
        out: Wire = []
        for _ in range(4):
            hello = hostile_hello(a.rng)
            if form == "binary":
                from p2prpc.wire.envelope import MAGIC

                header = json.dumps({"hello": hello}).encode()
                if len(header) > 0xFFFF:  # a binary hello's header is at most 64 KiB
                    hello["services"] = hello["services"][:100]
                    hello["topics"] = hello["topics"][:100]
                    hello["junk"] = "j" * 1000
                    header = json.dumps({"hello": hello}).encode()
                import struct

                out.append(
                    struct.pack(">BBBIIH", MAGIC, Kind.HELLO, 0, a.fresh(), 0, len(header)) + header
                )
            else:
                out += text({"hello": hello})
        return out

    return build


def case_publish(form: str, variant: str) -> Callable[[Attack], Wire]:
    def build(a: Attack) -> Wire:
        out: Wire = []
        origins = [peer_id_hex(a.rng) for _ in range(64)]
        for i in range(32):
            origin = origins[i % len(origins)] if variant == "gaps" else origins[0]
            seq = a.rng.randrange(1, 4000) if variant == "gaps" else i
            if form == "binary":
                payload = S(value="p" * 60_000).SerializeToString()
                out += binary(
                    Envelope(
                        Kind.PUBLISH,
                        a.fresh(),
                        seq,
                        payload=payload,
                        has_payload=True,
                        topic=TOPIC,
                        origin=origin,
                        hops=8,
                    )
                )
            else:
                msg = {"value": "x", "junk": nested_json(60_000)}
                out += text({"pub": TOPIC, "msg": msg, "from": origin, "seq": seq, "hops": 8})
        return out

    return build


def case_publish_relayed_to(a: Attack) -> Wire:
    """Compact publishes that each name 255 peers the previous hop sent them to, with almost no
    payload, from a few publishers that send only odd numbers: every message waits behind a
    gap, holding what it brought."""
    out: Wire = []
    origins = [peer_id_hex(a.rng) for _ in range(4)]
    relayed_to = tuple(peer_id_hex(a.rng) for _ in range(255))
    for i in range(1000):
        env = Envelope(
            Kind.PUBLISH,
            a.fresh(),
            2 * (i // len(origins)) + 1,
            payload=b"p",
            has_payload=True,
            topic=TOPIC,
            origin=origins[i % len(origins)],
            hops=0,
            relayed_to=relayed_to,
        )
        out += list(to_binary(env, compact_publish=True))
    return out


def case_publish_seen(a: Attack) -> Wire:
    """The smallest publishes there are (compact header, empty payload), each a new id on a topic
    the victim does not read, packed in batches: what they cost is the ids the seen cache
    remembers."""
    origin = peer_id_hex(a.rng)
    frames = [
        data
        for i in range(40_000)
        for data in to_binary(
            Envelope(
                Kind.PUBLISH,
                a.fresh(),
                1000 + i,
                payload=b"",
                has_payload=True,
                topic="x",
                origin=origin,
                hops=0,
            ),
            compact_publish=True,
        )
    ]
    per_batch = 16_000 // (len(frames[0]) + 4)
    return [pack_batch(frames[i : i + per_batch]) for i in range(0, len(frames), per_batch)]


def case_want(form: str) -> Callable[[Attack], Wire]:
    def build(a: Attack) -> Wire:
        out: Wire = []
        seqs = [i % PUBLISHED for i in range(64)]
        for _ in range(2000):
            value = {"want": TOPIC, "from": a.victim, "seqs": seqs}
            if form == "binary":
                out += binary(
                    Envelope(Kind.WANT, a.fresh(), topic=TOPIC, origin=a.victim, seqs=tuple(seqs))
                )
            else:
                out += text(value)
        return out

    return build


def case_pex(form: str) -> Callable[[Attack], Wire]:
    def build(a: Attack) -> Wire:
        out: Wire = []
        names = [f"s{i:02d}." + "n" * 250 for i in range(64)]
        for _ in range(2):
            peers = [
                {"id": peer_id_hex(a.rng), "services": names, "topics": names} for _ in range(64)
            ]
            if form == "binary":
                import struct

                from p2prpc.wire.envelope import MAGIC

                small = [
                    {**peer, "services": names[:16], "topics": names[:16]} for peer in peers[:3]
                ]
                header = json.dumps({"pex": {"peers": small}}).encode()
                out.append(
                    struct.pack(">BBBIIH", MAGIC, Kind.PEX, 0, a.fresh(), 0, len(header)) + header
                )
            else:
                out += text({"pex": {"peers": peers}})
        return out

    return build


def case_signal(form: str, sdp: str) -> Callable[[Attack], Wire]:
    def build(a: Attack) -> Wire:
        out: Wire = []
        for _ in range(400):
            signal = {
                "type": "offer",
                "from": peer_id_hex(a.rng),
                "to": a.victim,
                "offer_id": a.rng.randbytes(20).hex(),
                "sdp": sdp,
                "hops": 2,
            }
            if form == "binary":
                import struct

                from p2prpc.wire.envelope import MAGIC

                header = json.dumps({"signal": signal}).encode()
                out.append(
                    struct.pack(">BBBIIH", MAGIC, Kind.SIGNAL, 0, a.fresh(), 0, len(header))
                    + header
                )
            else:
                out += text({"signal": signal})
        return out

    return build


def case_health(form: str, method: str) -> Callable[[Attack], Wire]:
    def build(a: Attack) -> Wire:
        out: Wire = []
        name = "h" * 1024
        path = f"/grpc.health.v1.Health/{method}"
        for _ in range(300 if method == "Watch" else 2000):
            call_id = a.fresh()
            if form == "binary":
                request = health_pb2.HealthCheckRequest(service=name).SerializeToString()
                out += binary(
                    Envelope(Kind.CALL, call_id, method=path, payload=request, has_payload=True)
                )
            else:
                out += text({"call": path, "msg": {"service": name}}, call_id)
        return out

    return build


def case_reflection(form: str) -> Callable[[Attack], Wire]:
    def build(a: Attack) -> Wire:
        out: Wire = []
        call_id = a.fresh()
        if form == "binary":
            out += binary(Envelope(Kind.CALL, call_id, method=V1.method))
        else:
            out += text({"call": V1.method}, call_id)
        asks = ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]
        for seq in range(3000):
            symbol = asks[seq % 2]
            if form == "binary":
                request = V1.ServerReflectionRequest(file_containing_symbol=symbol)
                out += binary(
                    Envelope(
                        Kind.MSG,
                        call_id,
                        seq,
                        payload=request.SerializeToString(),
                        has_payload=True,
                    )
                )
            else:
                out += text({"msg": {"fileContainingSymbol": symbol}, "seq": seq}, call_id)
        return out

    return build


#: Each case: (builder, setup) where setup is what the victim must do first (``call_attacker``
#: with an encoding, or nothing).
CASES: dict[str, tuple[Callable[..., Wire], dict[str, Any] | None]] = {}


def case_have(form: str) -> Callable[[Attack], Wire]:
    """Haves naming numbers far ahead in 64 streams the victim subscribes to (each met with one
    message first), and in as many it never carried: each costs a claim and the victim's asks
    for it, which the attacker never answers."""

    def build(a: Attack) -> Wire:
        out: Wire = []
        origins = [peer_id_hex(a.rng) for _ in range(64)]
        strangers = [peer_id_hex(a.rng) for _ in range(64)]
        for origin in origins:
            if form == "binary":
                payload = S(value="first").SerializeToString()
                out += binary(
                    Envelope(
                        Kind.PUBLISH,
                        a.fresh(),
                        0,
                        payload=payload,
                        has_payload=True,
                        topic=TOPIC,
                        origin=origin,
                    )
                )
            else:
                out += text({"pub": TOPIC, "msg": "first", "from": origin, "seq": 0, "hops": 0})
        for i in range(2000):
            origin = (origins if i % 2 else strangers)[i % 64]
            seq = 1_000_000 + i
            if form == "binary":
                out += binary(Envelope(Kind.HAVE, a.fresh(), seq, topic=TOPIC, origin=origin))
            else:
                out += text({"have": TOPIC, "from": origin, "seq": seq})
        return out

    return build


def _register(sdp: str) -> None:
    for form in ("binary", "json"):
        CASES[f"call-{form}"] = (case_call(form), None)
        CASES[f"msg-{form}"] = (case_msg(form), None)
        CASES[f"end-{form}"] = (case_small(Kind.END, form), None)
        CASES[f"cancel-{form}"] = (case_small(Kind.CANCEL, form, 1500), None)
        CASES[f"ping-{form}"] = (case_small(Kind.PING, form), None)
        CASES[f"pong-{form}"] = (case_small(Kind.PONG, form), None)
        CASES[f"reply-{form}"] = (case_server_side(Kind.REPLY, form), {"n": 8})
        CASES[f"status-{form}"] = (case_server_side(Kind.STATUS, form), None)
        CASES[f"headers-{form}"] = (case_server_side(Kind.HEADERS, form), {"n": 8})
        CASES[f"reply_window-{form}"] = (case_window(Kind.REPLY_WINDOW, form), None)
        CASES[f"msg_window-{form}"] = (case_window(Kind.MSG_WINDOW, form), {"n": 8})
        CASES[f"hello-{form}"] = (case_hello(form), None)
        CASES[f"publish-{form}-inorder"] = (case_publish(form, "inorder"), None)
        CASES[f"publish-{form}-gaps"] = (case_publish(form, "gaps"), None)
        CASES[f"want-{form}"] = (case_want(form), None)
        CASES[f"have-{form}"] = (case_have(form), None)
        CASES[f"pex-{form}"] = (case_pex(form), None)
        CASES[f"signal-{form}"] = (case_signal(form, sdp), None)
        CASES[f"health-check-{form}"] = (case_health(form, "Check"), None)
        CASES[f"health-watch-{form}"] = (case_health(form, "Watch"), None)
        CASES[f"reflection-{form}"] = (case_reflection(form), None)
    CASES["publish-binary-relayed-to"] = (case_publish_relayed_to, None)
    CASES["publish-binary-seen"] = (case_publish_seen, None)
    for encoding in ("zstd", "deflate"):
        CASES[f"call-binary-{encoding}"] = (case_call("binary", encoding), None)
        CASES[f"msg-binary-{encoding}"] = (case_msg("binary", encoding), None)
        CASES[f"reply-binary-{encoding}"] = (
            case_server_side(Kind.REPLY, "binary", encoding),
            {"n": 8, "encoding": encoding},
        )


#: Case names in a stable order, for the tests to parametrize over without starting a process.
CASE_NAMES = (
    [
        f"{kind}-{form}"
        for kind in (
            "call",
            "msg",
            "end",
            "cancel",
            "reply",
            "status",
            "headers",
            "reply_window",
            "msg_window",
            "hello",
            "ping",
            "pong",
            "pex",
            "signal",
            "want",
            "have",
            "health-check",
            "health-watch",
            "reflection",
        )
        for form in ("binary", "json")
    ]
    + [f"publish-{form}-{v}" for form in ("binary", "json") for v in ("inorder", "gaps")]
    + ["publish-binary-relayed-to", "publish-binary-seen"]
    + [
        f"{kind}-binary-{encoding}"
        for kind in ("call", "msg", "reply")
        for encoding in ("zstd", "deflate")
    ]
)


def baseline_of(wire: Wire, rng: random.Random) -> Wire:
    """The same number of data-channel messages of the same sizes, as padded ``pong``
    envelopes: what the victim reads, parses and drops."""
    out: Wire = []
    for message in wire:
        n = size_of(message)
        if isinstance(message, bytes):
            pad = max(n - HEADER_SIZE, 0)
            out += to_binary(
                Envelope(Kind.PONG, rng.randrange(2**31), payload=b"\x00" * pad, has_payload=True)
            )[:1]
        else:
            pad = max(n - 60, 0)
            frames = text({"pong": True, "pad": "x" * pad})
            out += frames[:1] if len(frames) == 1 else text({"pong": True, "pad": "x" * 15_000})
    return out


def largest_parse(wire: Wire) -> int:
    """The most one P2PT message of ``wire`` marked as JSON may hold parsed, as the victim
    estimates it before parsing (:func:`~p2prpc.wire.held.estimate_held`): the transient its
    parse may add to the victim's peak, one message at a time."""
    texts: dict[int, list[str]] = {}
    largest = 0
    for message in wire:
        frame = decode_frame(message) if isinstance(message, str) else None
        if frame is None:
            continue
        chunks = texts.setdefault(frame.id, [])
        if frame.c == 0:
            chunks.clear()
        chunks.append(frame.msg)
        if frame.last:
            if frame.o:
                largest = max(largest, estimate_held("".join(chunks)))
            del texts[frame.id]
    return largest


def opened_calls(wire: Wire) -> list[tuple[int, str]]:
    """The calls a case's messages open: (call id, form)."""
    from p2prpc.wire.frames import decode_frame

    out = []
    for message in wire:
        if isinstance(message, bytes):
            if message[1] == Kind.CALL:
                out.append((int.from_bytes(message[3:7]), "binary"))
        elif '\\"call\\"' in message[:200]:
            frame = decode_frame(message)
            if frame is not None and frame.c == 0:
                out.append((frame.id, "json"))
    return out


class Attacker:
    def __init__(self, tracker: str, victim_id: str) -> None:
        self.victim = victim_id
        self.p2pt = loopback_p2pt([tracker], IDENTIFIER, max_send_queue=64 * MiB)
        self.reader = BinaryReader(max_message_size=64 * MiB)
        self.waiting: dict[int, asyncio.Future[None]] = {}
        self.attack = Attack(victim_id)
        self.p2pt.on("peerconnect", self.on_peerconnect)
        self.p2pt.on("msg", self.on_msg)
        self.p2pt.binary_handler = self.on_binary

    def on_peerconnect(self, peer: Peer) -> None:
        hello = {
            "v": 1,
            "binary": True,
            "encodings": ["deflate", "zstd"],
            "services": ["costs.Evil"],
            "topics": [TOPIC],
            "keepalive": False,
            "compact": False,
            "compact_publish": False,
            "batch": False,
            "window": 2**31 - 1,  # honours windows, so that window updates are read as such
            "relay": True,
            "mesh": 1,
        }
        self.p2pt.post(peer, {"hello": hello}, new_message_id())

    def on_msg(self, peer: Peer, msg: Any) -> None:
        if peer.id != self.victim or peer.message_id is None or not isinstance(msg, dict):
            return
        if "call" in msg:
            self.attack.victim_calls.append((peer.message_id, False))
        elif "status" in msg:
            self.settle(peer.message_id)

    def on_binary(self, peer_id: str, data: bytes, connection: int) -> None:
        if peer_id != self.victim:
            return
        try:
            env = self.reader.feed(peer_id, data)
        except Exception:
            return
        if env is None:
            return
        if env.kind is Kind.CALL:
            self.attack.victim_calls.append((env.call_id, env.encoding is not None))
        elif env.kind is Kind.STATUS or (env.kind is Kind.REPLY and env.status is not None):
            self.settle(env.call_id)

    def settle(self, call_id: int) -> None:
        future = self.waiting.pop(call_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def connected(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.p2pt.is_connected(self.victim):
            if time.monotonic() > deadline:
                raise TimeoutError("the victim is not connected")
            self.p2pt.request_more_peers()
            await asyncio.sleep(0.2)

    async def sync(self, timeout: float = 60) -> None:
        """A unary call answered after everything sent before it was read."""
        call_id = new_message_id()
        future = self.waiting[call_id] = asyncio.get_running_loop().create_future()
        frame = to_binary(
            Envelope(Kind.CALL, call_id, method="/costs.Bench/Echo", payload=b"", has_payload=True)
        )
        self.p2pt.send_raw(self.victim, frame)
        await asyncio.wait_for(future, timeout)

    async def send(self, wire: Wire) -> bool:
        """Send every message, waiting while the queue is long; False when the victim
        dropped us part-way."""
        try:
            for start in range(0, len(wire), 64):
                self.p2pt.send_raw(self.victim, wire[start : start + 64])
                await self.p2pt.drain(self.victim)
            await self.sync()
        except (PeerClosed, SendQueueFull, TimeoutError):
            return False
        return True

    async def cleanup(self) -> None:
        """Cancel every call the last case opened, so that none is held into the next."""
        wire: Wire = []
        for call_id, form in getattr(self, "opened", []):
            if form == "binary":
                wire += binary(Envelope(Kind.CANCEL, call_id))
            else:
                wire += text({"cancel": True}, call_id)
        self.opened = []
        self.attack.victim_calls.clear()
        await self.connected()
        await self.send(wire)

    async def run(self, name: str, baseline: bool, build_only: bool = False) -> dict[str, Any]:
        await self.connected()
        builder, _ = CASES[name]
        wire = builder(self.attack)
        repeat = 1
        if baseline:
            # Repeated until it is long enough to time well (the CPU clock ticks every 10 ms).
            wire = baseline_of(wire, self.attack.rng)
            size = sum(map(size_of, wire))
            repeat = max(1, min(20, 3000 // len(wire), MiB // max(size, 1)))
            wire = wire * repeat
        sent = sum(map(size_of, wire)) // repeat
        started = time.monotonic()
        ok = await self.send(wire)
        if not ok:
            await self.connected()
        self.opened = opened_calls(wire)
        return {
            "sent": sent,
            "transient": 0 if baseline else largest_parse(wire),
            "messages": len(wire),
            "served": ok,
            "repeat": repeat,
            "seconds": time.monotonic() - started,
        }


async def offer_sdp() -> str:
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("x")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def attacker(tracker: str, victim_id: str) -> None:
    _register(await offer_sdp())
    attacker = Attacker(tracker, victim_id)
    await attacker.p2pt.start()
    await attacker.connected(60)
    say({"pid": os.getpid(), "peer_id": attacker.p2pt.peer_id})
    async for command in commands():
        what = command["do"]
        if what == "run":
            try:
                say(await attacker.run(command["case"], command.get("baseline", False)))
            except Exception as e:
                say({"error": repr(e)})
        elif what == "cleanup":
            await attacker.cleanup()
            say({})
        elif what == "calls":
            say({"calls": len(attacker.attack.victim_calls)})
        elif what == "stop":
            break
    await attacker.p2pt.destroy()


# -- the tracker flood ----------------------------------------------------------------------------


def latin1(data: bytes) -> str:
    return data.decode("latin-1")


def tracker_flood(rng: random.Random, swarm: str, baseline: bool, sockets: int) -> list[list[str]]:
    """Per socket, the text frames it sends: announces of fresh peer ids carrying the most
    offers the tracker relays (10, of 4 KiB SDP each), half into the swarm a well-behaved peer
    is in (relayed to it), half into fresh swarms (tracker state); or, as the baseline, scrapes
    padded to the same sizes."""
    out: list[list[str]] = []
    sdp = "v=0\r\n" + "a=x-pad:" + "s" * 4000 + "\r\n"
    for _ in range(sockets):
        frames = []
        for i in range(24):
            info_hash = swarm if i % 2 else latin1(rng.randbytes(20))
            offers = [
                {"offer": {"type": "offer", "sdp": sdp}, "offer_id": latin1(rng.randbytes(20))}
                for _ in range(10)
            ]
            announce = {
                "action": "announce",
                "info_hash": info_hash,
                "peer_id": latin1(rng.randbytes(20)),
                "numwant": 10,
                "uploaded": 0,
                "downloaded": 0,
                "event": "started",
                "offers": offers,
            }
            frame = json.dumps(announce)
            if baseline:
                scrape = {"action": "scrape", "info_hash": info_hash, "pad": ""}
                pad = len(frame) - len(json.dumps(scrape))
                frame = json.dumps({**scrape, "pad": "x" * pad})
            frames.append(frame)
        out.append(frames)
    return out


async def flooder(tracker: str, swarm_hex: str) -> None:
    import websockets

    rng = random.Random(11)
    say({"pid": os.getpid()})
    async for command in commands():
        if command["do"] == "stop":
            break
        plan = tracker_flood(rng, latin1(bytes.fromhex(swarm_hex)), command["baseline"], 4)
        sent = 0
        started = time.monotonic()

        async def one(frames: list[str]) -> int:
            count = 0
            async with websockets.connect(tracker, max_size=2**22) as ws:
                drain = asyncio.create_task(_drain(ws))
                for frame in frames:
                    await ws.send(frame)
                    count += len(frame.encode())
                drain.cancel()
            return count

        sent = sum(await asyncio.gather(*(one(frames) for frames in plan)))
        say(
            {
                "sent": sent,
                "messages": sum(map(len, plan)),
                "served": True,
                "seconds": time.monotonic() - started,
            }
        )


async def _drain(ws: Any) -> None:
    async for _ in ws:
        pass


def main() -> None:
    role, *args = sys.argv[1:]
    if role == "victim":
        asyncio.run(victim(*args))
    elif role == "attacker":
        asyncio.run(attacker(*args))
    elif role == "flooder":
        asyncio.run(flooder(*args))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
