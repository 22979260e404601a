"""A hostile relay and a hostile end against the circuit layer, over real WebRTC on loopback:
what they send by hand (raw ``CIRCUIT`` frames) is refused or closes only its own circuit, both
sides are told, and nothing is left behind (``docs/PROTOCOL.md`` section 8)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from p2prpc.circuit import RelayLimits, _End
from p2prpc.node import Node
from p2prpc.testing import mesh
from p2prpc.wire.circuit import (
    MAX_CIRCUIT_MESSAGE,
    MAX_SEALED,
    MIN_WINDOW,
    SEAL_OVERHEAD,
    Control,
    Ephemeral,
    Op,
    encode_control,
)
from p2prpc.wire.envelope import Envelope, Kind
from p2prpc.wire.work import OPEN_COST

from .test_circuit import circuits, poll

pytestmark = pytest.mark.asyncio


class Heard:
    """What a node's circuit layer is sent, frame by frame: ``(call id, header or None)``, and
    the sizes of the data frames' payloads."""

    def __init__(self, node: Node) -> None:
        self.frames: list[tuple[int, dict[str, Any] | None]] = []
        self.sizes: list[int] = []
        layer = circuits(node)
        received = layer.on_envelope

        def on_envelope(peer_id: str, envelope: Envelope, connection: int) -> None:
            self.frames.append((envelope.call_id, envelope.body))
            if envelope.body is None and isinstance(envelope.payload, bytes):
                self.sizes.append(len(envelope.payload))
            received(peer_id, envelope, connection)

        layer.on_envelope = on_envelope  # type: ignore[method-assign]

    def ops(self, cid: int) -> list[str]:
        return [body["circuit"] for c, body in self.frames if c == cid and body is not None]

    def reason(self, cid: int) -> str:
        return next(
            str(body.get("reason"))
            for c, body in self.frames
            if c == cid and body is not None and body["circuit"] in ("refuse", "close")
        )


@asynccontextmanager
async def relay_and_end(
    relay: bool = True, **options: Any
) -> AsyncIterator[tuple[Node, Node, Heard]]:
    """A relay ``r`` (``relay=True`` unless told) connected to an end ``b`` (the same
    ``options``); what ``r`` is sent is heard."""
    async with mesh(2, relay=relay, **options) as m:
        r, b = m.nodes
        yield r, b, Heard(r)


def bring(r: Node, b: Node, cid: int, origin: str) -> None:
    """The relay brings ``b`` a circuit from ``origin`` (whoever that is), as a relay would."""
    control = Control(Op.CONNECT, origin, Ephemeral().public, 256 * 1024)
    body = encode_control(control, to=False)
    r.send(b.peer_id, Envelope(Kind.CIRCUIT, cid, body=body), binary=True)


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        ("end", "from this node itself"),
        ("relay", "from the relay bringing it"),
        ("no-relay", "whose hello says it relays none"),
    ],
)
async def test_an_end_refuses_a_circuit_from_itself_from_its_relay_or_from_no_relay(
    origin: str, reason: str
) -> None:
    async with relay_and_end(relay=origin != "no-relay") as (r, b, heard):
        before = circuits(b).stats.refused
        bring(
            r,
            b,
            77,
            b.peer_id if origin == "end" else r.peer_id if origin == "relay" else "ab" * 20,
        )
        await poll(lambda: heard.ops(77) != [])
        assert heard.ops(77) == ["refuse"]
        assert reason in heard.reason(77)
        assert circuits(b).stats.refused == before + 1
        assert circuits(b)._ends == {}
        assert list(b.peers) == [r.peer_id]  # neither itself nor another peer
        assert len(b.p2pt.connections(r.peer_id)) == 1


async def test_a_relay_bringing_circuits_faster_than_the_end_takes_them_is_refused_and_told() -> (
    None
):
    limits = RelayLimits()
    burst = 64 * 2**20
    # Work refills slowly enough here that what the circuits cost shows in the relay's budget.
    async with relay_and_end(work_rate=1.0, work_burst=burst) as (r, b, heard):
        ids = list(range(1, 41))
        origins = [f"{n:040x}" for n in range(1000, 1040)]
        for cid, origin in zip(ids, origins, strict=True):
            bring(r, b, cid, origin)
        await poll(lambda: all(heard.ops(cid) for cid in ids))
        answers = [heard.ops(cid)[0] for cid in ids]
        accepted = answers.count("accept")
        # A burst, then at the rate (the test takes well under the seconds it would need).
        assert 1 <= accepted <= limits.incoming_burst + 4 * limits.incoming_rate
        refused = [cid for cid in ids if heard.ops(cid)[0] == "refuse"]
        assert len(refused) == len(ids) - accepted
        assert all("too many circuits" in heard.reason(cid) for cid in refused)
        # Every circuit it accepted was charged the work a key exchange costs.
        assert b._work.tokens(r.peer_id, time.monotonic()) <= burst - accepted * OPEN_COST
        assert r.peer_id in b.peers  # the relay's own connection stands


#: For ends that open circuits to each other while connected directly as well.
ROOMY = {"max_channels_per_peer": 8, "max_connecting_per_peer": 8}


@asynccontextmanager
async def circuit(**options: Any) -> AsyncIterator[tuple[Node, Node, Node, _End]]:
    """Three nodes (each ``relay=True``; ``options`` for all); ``a`` has a circuit open to
    ``b`` through ``r``: its end is returned."""
    async with mesh(3, relay=True, **ROOMY, **options) as m:
        r, a, b = m.nodes
        assert await circuits(a).open(b.peer_id, via=r.peer_id) is True
        (end,) = circuits(a)._ends.values()
        yield r, a, b, end


async def test_a_relay_closes_a_circuit_on_a_data_frame_too_short_to_be_sealed() -> None:
    async with circuit() as (r, a, b, end):
        (far,) = circuits(b)._ends.values()
        heard = Heard(b)
        told = Heard(a)
        a.send(
            r.peer_id,
            Envelope(Kind.CIRCUIT, end.cid, payload=b"", has_payload=True),
            binary=True,
            connection=end.connection,
        )
        await poll(lambda: told.ops(end.cid) != [])
        assert told.ops(end.cid) == ["close"]
        assert "shorter than any sealed message" in told.reason(end.cid)
        await poll(lambda: circuits(r).relayed_circuits == 0 and circuits(b)._ends == {})
        # The relay passed nothing of it on: b heard only sealed messages, then the close.
        assert all(size >= SEAL_OVERHEAD for size in heard.sizes)
        assert heard.ops(far.cid) == ["close"]
        assert circuits(r).held_bytes() == 0


async def test_a_throttled_relay_waits_once_per_leg_however_many_frames_wait() -> None:
    frames = 3000
    limits = RelayLimits(circuit_rate=32 * 1024)
    async with circuit(relay_limits=limits) as (r, _, b, end):
        relay = circuits(r)
        pumps = 0
        pump = relay._pump

        def counted(*args: Any) -> None:
            nonlocal pumps
            pumps += 1
            pump(*args)

        relay._pump = counted  # type: ignore[method-assign]
        (far,) = circuits(b)._ends.values()
        assert end.link is not None and far.link is not None
        received = far.link.acknowledged
        before = relay.stats.forwarded_bytes
        for _ in range(2):  # past the circuit's burst: what follows waits in the relay
            end.link.send(b"\0" * 16 * 1024)
        for _ in range(frames):
            end.link.send("x")  # one frame each, of the smallest size
        sent = 2 * (16 * 1024 + SEAL_OVERHEAD + 1) + frames * (SEAL_OVERHEAD + 1)
        await poll(lambda: relay.stats.forwarded_bytes - before >= sent, timeout=20)
        await poll(lambda: far.link is not None and far.link.acknowledged >= received + frames)
        # Each frame is pumped when it comes, or once by the timer the rate set: never once per
        # frame waiting for every frame that goes.
        assert pumps <= 3 * frames
        assert relay.held_bytes() == 0


def held(value: object, seen: set[int] | None = None) -> int:
    """What ``value`` holds in memory, the objects it refers to included (containers, slotted
    objects, dataclasses), each counted once."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, tuple | list | deque):
        size += sum(held(item, seen) for item in value)
    for name in getattr(type(value), "__slots__", ()):
        if hasattr(value, name):
            size += held(getattr(value, name), seen)
    return size


async def test_frames_waiting_in_a_throttled_relay_hold_about_their_bytes() -> None:
    limits = RelayLimits(window=MIN_WINDOW, circuit_rate=MAX_SEALED)
    async with circuit(relay_limits=limits) as (r, a, _, end):
        relay = circuits(r)
        _, leg, _ = relay._relayed[(a.peer_id, end.cid)]
        assert end.link is not None
        end.link.send(b"\0" * MAX_CIRCUIT_MESSAGE)  # the circuit's burst: what follows waits
        while end.link.buffered_amount == 0:  # the rest of the window, in the smallest frames
            end.link.send("x")
        await poll(lambda: relay.held_bytes() >= 8000)  # hundreds of tiny frames wait
        frames = leg.waiting
        waiting = relay.held_bytes()
        # Held at their bytes and 8 a frame (with what buffers keep for growth), not as an object
        # each (before: 102,982 bytes for 15,948 of frames).
        assert held(frames) <= 1.25 * (waiting + 8 * len(frames)) + 4096


async def test_circuits_opened_and_closed_in_a_tight_loop_leave_nothing_behind() -> None:
    limits = RelayLimits(
        connect_rate=1000, connect_burst=1000, incoming_rate=1000, incoming_burst=1000
    )
    async with mesh(3, relay=True, relay_limits=limits, **ROOMY) as m:
        r, a, b = m.nodes
        tasks = len(asyncio.all_tasks())
        for _ in range(30):
            assert await circuits(a).open(b.peer_id, via=r.peer_id) is True
            (end,) = circuits(a)._ends.values()
            circuits(a)._close_end(end, "done with it")
            await poll(lambda: circuits(r).relayed_circuits == 0 and not circuits(b)._ends)
        await poll(lambda: len(asyncio.all_tasks()) <= tasks)
        for node in (r, a, b):
            layer = circuits(node)
            assert not layer._relayed and not layer._ends and not layer._circuit_buckets
            assert layer.held_bytes() == 0
            assert not node.p2pt._connecting
            # Only direct connections are left: no circuit's.
            assert not [
                c
                for p in node.peers
                for c in node.p2pt.connections(p)
                if getattr(node.p2pt.channel(p, c), "relayed", False)
            ]
        assert circuits(r).stats.relayed == 30
