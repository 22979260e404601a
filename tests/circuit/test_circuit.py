"""Calls and topics through a relay between two nodes that cannot connect directly, over real
WebRTC on loopback (``tests/circuit/paths.py`` makes the direct path impossible)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.circuit import Circuits, RelayLimits
from p2prpc.identity import Identity
from p2prpc.node import Node
from p2prpc.pubsub import Topic
from p2prpc.rpc import Cardinality, Handler, RpcError, ServicerContext, StatusCode
from p2prpc.testing import until
from p2prpc.tools import Swarm, list_peers
from p2prpc.wire.circuit import (
    MAX_SEALED,
    MAX_WINDOW,
    MIN_WINDOW,
    CircuitCipher,
    Control,
    Ephemeral,
    Op,
)
from p2prpc.wire.envelope import Envelope, Kind

from .paths import Watched, place, split_pair

pytestmark = pytest.mark.asyncio

SERVICE = "circuit.Echo"
SAY = f"/{SERVICE}/Say"
COUNT = f"/{SERVICE}/Count"
SUM = f"/{SERVICE}/Sum"
SECRET = "plaintext-the-relay-must-not-see-7d1f"
#: For ends that open circuits to each other by hand: room for them beside the direct attempts
#: the swarm still makes (which the ends' default caps would count against them).
ROOMY = {"max_channels_per_peer": 8, "max_connecting_per_peer": 8}


async def _say(request: StringValue, context: ServicerContext) -> StringValue:
    return StringValue(value=f"{request.value} / {SECRET}")


async def _count(request: StringValue, context: ServicerContext) -> AsyncIterator[StringValue]:
    for i in range(int(request.value)):
        yield StringValue(value=f"{i}:{'x' * 3000}")


async def _sum(requests: AsyncIterator[StringValue], context: ServicerContext) -> StringValue:
    total = 0
    async for request in requests:
        total += len(request.value)
    return StringValue(value=str(total))


def serve(node: Node) -> None:
    node.add_service(
        SERVICE,
        {
            SAY: Handler(_say, Cardinality.UNARY_UNARY, StringValue, StringValue),
            COUNT: Handler(_count, Cardinality.UNARY_STREAM, StringValue, StringValue),
            SUM: Handler(_sum, Cardinality.STREAM_UNARY, StringValue, StringValue),
        },
    )


def circuits(node: Node) -> Circuits:
    found = node.circuits
    assert found is not None
    return found


async def poll(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait until ``condition()`` holds, checked at least every 50 ms (what it reads, such as
    the exchange's lists, has no event of its own)."""
    never = asyncio.Event()
    async with asyncio.timeout(timeout):
        while not condition():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(never.wait(), 0.05)


async def reached(a: Node, b: Node, timeout: float = 25) -> None:
    """Wait until ``a`` and ``b`` see each other (through a circuit, since nothing else works)."""
    await until(
        lambda: b.peer_id in a.peers and a.peer_id in b.peers,
        (a, "peer"),
        (b, "peer"),
        timeout=timeout,
    )


async def know_each_other(a: Node, b: Node) -> None:
    """Wait until each knows the other from the exchange, and their direct attempt is over."""
    await poll(
        lambda: (
            b.peer_id in a.known_peers
            and a.peer_id in b.known_peers
            and a.p2pt.accepts_offer_from(b.peer_id)
            and b.p2pt.accepts_offer_from(a.peer_id)
        ),
        timeout=15,
    )


async def test_unreachable_peers_call_each_other_through_a_relay() -> None:
    async with split_pair() as (r, a, b, walls):
        serve(b)
        await reached(a, b)
        # The direct attempt failed, and the connection they have rides the relay.
        assert a.peers[b.peer_id].via == (f"relay:{r.peer_id}",)
        assert b.peers[a.peer_id].via == (f"relay:{r.peer_id}",)
        assert circuits(a).circuits() == {b.peer_id: [r.peer_id]}
        reply = await a.to(b.peer_id).unary_unary(
            SAY, StringValue.SerializeToString, StringValue.FromString
        )(StringValue(value="hi"), timeout=10)
        assert reply.value == f"hi / {SECRET}"
        assert circuits(r).stats.relayed >= 1
        assert circuits(r).stats.forwarded_bytes > 0
        # Nothing the relay sent carries the plaintext: it read none.
        assert walls["r"].sent
        assert not any(
            SECRET.encode() in (m if isinstance(m, bytes) else m.encode()) for m in walls["r"].sent
        )


def stub(a: Node, b: Node) -> tuple[object, object, object]:
    target = a.to(b.peer_id)
    ser, de = StringValue.SerializeToString, StringValue.FromString
    return (
        target.unary_unary(SAY, ser, de),
        target.unary_stream(COUNT, ser, de),
        target.stream_unary(SUM, ser, de),
    )


async def test_streams_both_ways_and_topics_cross_the_relay() -> None:
    async with split_pair() as (_r, a, b, _):
        serve(b)
        news = Topic(b, "news", StringValue).subscribe()
        await reached(a, b)
        _, count, total = stub(a, b)
        replies = [m.value async for m in count(StringValue(value="60"), timeout=20)]  # type: ignore[operator]
        assert len(replies) == 60 and replies[-1].startswith("59:")  # 180 kB, past one window

        async def requests() -> AsyncIterator[StringValue]:
            for _ in range(40):
                yield StringValue(value="y" * 5000)

        assert (await total(requests(), timeout=20)).value == str(40 * 5000)  # type: ignore[operator]
        await until(lambda: "news" in a.peers[b.peer_id].topics, (a, "peer"), timeout=10)
        await Topic(a, "news", StringValue).publish(StringValue(value="across"))
        got = await asyncio.wait_for(anext(aiter(news)), 10)
        assert got.message.value == "across"


async def test_identities_are_proven_over_the_circuit_and_a_flipped_bit_closes_it() -> None:
    ka, kb = Identity.generate(), Identity.generate()
    async with split_pair(
        relay_options={"identity": Identity.generate()},
        a_options={"identity": ka},
        b_options={"identity": kb},
    ) as (_r, a, b, walls):
        serve(b)
        await reached(a, b)
        # The handshake ran over the circuit, bound to the two ends' keys: each proved its own.
        assert a.peers[b.peer_id].public_key == kb.public_key
        assert b.peers[a.peer_id].public_key == ka.public_key
        say, _, _ = stub(a, b)
        assert (await say(StringValue(value="one"), timeout=10)).value.startswith("one")  # type: ignore[operator]
        closed: list[str] = []
        a.p2pt.on("peerclose", lambda peer: closed.append("a"))
        b.p2pt.on("peerclose", lambda peer: closed.append("b"))
        walls["r"].flip = 1  # the relay alters the next data frame it passes on
        with pytest.raises(RpcError) as failed:
            await say(StringValue(value="two"), timeout=10)  # type: ignore[operator]
        assert failed.value.code() is StatusCode.UNAVAILABLE  # ended, not hung nor altered
        await until(
            lambda: closed == ["a", "b"] or sorted(closed) == ["a", "b"],
            (a.p2pt, "peerclose"),
            (b.p2pt, "peerclose"),
            timeout=10,
        )
        bad = circuits(a).stats.bad_frames + circuits(b).stats.bad_frames
        assert bad == 1  # one end found it; the other was told and closed too


async def test_a_node_without_relay_carries_nothing() -> None:
    async with split_pair(relay_options={"relay": False}) as (r, a, b, _walls):
        serve(b)
        await poll(lambda: b.peer_id in a.known_peers)
        assert await circuits(a).open(b.peer_id, via=r.peer_id) is False
        assert circuits(r).stats.refused >= 1
        assert circuits(r).relayed_circuits == 0
        assert circuits(r).stats.forwarded_bytes == 0
        assert circuits(a).relays_for(b.peer_id) == []  # its hello says it relays nothing
        assert b.peer_id not in a.peers


async def test_a_relay_at_its_most_circuits_refuses_another_and_says_why() -> None:
    limits = RelayLimits(max_circuits=1)
    async with split_pair(relay_options={"relay_limits": limits}) as (r, a, b, _):
        await reached(a, b)
        assert circuits(r).relayed_circuits == 1
        refused = circuits(r).stats.refused  # a crossing attempt of the other end's may be one
        assert await circuits(a).open(b.peer_id, via=r.peer_id) is False
        assert circuits(r).stats.refused == refused + 1
        assert circuits(r).relayed_circuits == 1  # the first one stands


async def test_a_throttled_relay_holds_at_most_the_window_and_delivers_everything() -> None:
    limits = RelayLimits(window=MIN_WINDOW, circuit_rate=160 * 1024)
    async with split_pair(relay_options={"relay_limits": limits}) as (r, a, b, _):
        serve(b)
        await reached(a, b)
        _, count, _ = stub(a, b)
        relay = circuits(r)
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                held = relay.held_bytes() + r.p2pt.channel(a.peer_id).buffered_amount
                most = max(most, held)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        try:
            replies = [m async for m in count(StringValue(value="100"), timeout=30)]  # type: ignore[operator]
        finally:
            watcher.cancel()
        assert len(replies) == 100  # 300 kB at 160 kB/s: throttled, none lost
        assert 0 < most <= MIN_WINDOW + MAX_SEALED
        assert relay.stats.closed_over_budget == 0


async def test_an_end_past_the_window_has_its_circuit_closed_not_held() -> None:
    limits = RelayLimits(window=MIN_WINDOW, circuit_rate=MAX_SEALED)  # frames wait at the relay
    async with split_pair(relay_options={"relay_limits": limits}) as (r, a, b, _):
        await reached(a, b)
        ((_, end),) = circuits(a)._ends.items()
        closed = asyncio.get_running_loop().create_future()
        b.p2pt.on("peerclose", lambda peer: closed.done() or closed.set_result(None))
        # A sender that ignores its credit: sealed-looking frames straight onto its leg.
        for _ in range(2 * MIN_WINDOW // MAX_SEALED + 2):
            a.send(
                r.peer_id,
                Envelope(Kind.CIRCUIT, end.cid, payload=b"\0" * MAX_SEALED, has_payload=True),
                binary=True,
                connection=end.connection,
            )
        await until(lambda: circuits(r).relayed_circuits == 0, (b.p2pt, "peerclose"), timeout=10)
        assert circuits(r).stats.closed_over_budget == 1
        assert circuits(r).held_bytes() == 0
        await asyncio.wait_for(closed, 10)  # the other end was told


async def test_a_direct_connection_takes_over_without_losing_a_call() -> None:
    async with split_pair() as (r, a, b, walls):
        serve(b)
        circuits(a).direct_retry = circuits(b).direct_retry = 0.3
        await reached(a, b)
        assert circuits(a).circuits() == {b.peer_id: [r.peer_id]}
        _, count, _ = stub(a, b)
        call = count(StringValue(value="400"), timeout=30)  # type: ignore[operator]
        first = await anext(aiter(call))
        walls.wall.open()
        await until(
            lambda: any(not v.startswith("relay:") for v in a.p2pt.peers[b.peer_id].origins),
            (a.p2pt, "connectionopen"),
            timeout=15,
        )
        rest = [m async for m in call]
        assert first.value.startswith("0:") and len(rest) == 399  # the call on the circuit
        say, _, _ = stub(a, b)
        assert (await say(StringValue(value="new"), timeout=10)).value.startswith("new")  # type: ignore[operator]
        await poll(lambda: circuits(a).circuits() == {} and circuits(r).relayed_circuits == 0)
        assert a.peers[b.peer_id].via == (f"signalled:{r.peer_id}",) or all(
            not v.startswith("relay:") for v in a.p2pt.peers[b.peer_id].origins
        )


async def test_p2prpc_peers_shows_a_peer_reached_through_a_relay(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with split_pair() as (r, _, b, walls):
        walls.wall.block(place(2), place(3))
        lister = Watched(place(3))
        tracker = r.p2pt.announce_urls[0]
        swarm = Swarm(
            [tracker],
            "p2prpc-circuit-test",
            {
                "ice_servers": [],
                "host_addresses": [lister.host_address],
                "transport": lister,
                "ice_timeout": 2.0,
            },
        )
        assert await list_peers(swarm, 15.0) == 0
    lines = {line["peer"]: line for line in map(json.loads, capsys.readouterr().out.splitlines())}
    assert lines[b.peer_id]["via"] == [f"relay:{r.peer_id}"]
    assert lines[r.peer_id]["via"] == [tracker]


async def test_crossing_circuits_end_as_one_path_and_no_call_is_lost() -> None:
    async with split_pair(a_options=ROOMY, b_options=ROOMY, auto=False) as (r, a, b, _):
        serve(a)
        serve(b)
        await know_each_other(a, b)
        say_ab, _, _ = stub(a, b)
        say_ba, _, _ = stub(b, a)
        # Calls that wait for the peer, made before any path exists.
        waiting = [
            asyncio.ensure_future(say(StringValue(value=text), timeout=20, wait_for_ready=True))  # type: ignore[operator]
            for say, text in ((say_ab, "ab"), (say_ba, "ba"))
        ]
        # Each end opens a circuit to the other at once: the two connects cross at the relay.
        opened = await asyncio.gather(
            circuits(a).open(b.peer_id, via=r.peer_id), circuits(b).open(a.peer_id, via=r.peer_id)
        )
        assert opened == [True, True]  # each opener is told it has a path
        await reached(a, b)
        replies = await asyncio.gather(*waiting)
        assert [reply.value.split(" / ")[0] for reply in replies] == ["ab", "ba"]
        # One circuit stands, the same at both ends and at the relay.
        relay = f"relay:{r.peer_id}"
        assert a.peers[b.peer_id].via == (relay,)
        assert b.peers[a.peer_id].via == (relay,)
        assert circuits(a).circuits() == {b.peer_id: [r.peer_id]}
        assert circuits(b).circuits() == {a.peer_id: [r.peer_id]}
        assert circuits(r).relayed_circuits == 1
        assert (await say_ab(StringValue(value="after"), timeout=10)).value.startswith("after")  # type: ignore[operator]
        assert (await say_ba(StringValue(value="after"), timeout=10)).value.startswith("after")  # type: ignore[operator]


async def test_crossing_circuits_where_the_relay_refuses_one_still_end_as_one() -> None:
    # A relay that carries one circuit takes whichever connect comes first and refuses the
    # other: the end that keeps its own must not have refused the one that stands.
    limits = RelayLimits(max_circuits=1)
    async with split_pair(
        relay_options={"relay_limits": limits}, a_options=ROOMY, b_options=ROOMY, auto=False
    ) as (r, a, b, _):
        serve(a)
        serve(b)
        await know_each_other(a, b)
        low, high = sorted((a, b), key=lambda node: node.peer_id)
        # The higher id's connect first: the relay refuses the lower id's, whose own would
        # otherwise stand.
        opened = await asyncio.gather(
            circuits(high).open(low.peer_id, via=r.peer_id),
            circuits(low).open(high.peer_id, via=r.peer_id),
        )
        assert opened == [True, True]
        await reached(a, b, timeout=5)  # at once, not after a retry
        assert circuits(r).relayed_circuits == 1
        assert a.peers[b.peer_id].via == (f"relay:{r.peer_id}",)
        say, _, _ = stub(low, high)
        assert (await say(StringValue(value="one"), timeout=10)).value.startswith("one")  # type: ignore[operator]


class _InTheMiddle:
    """A relay's circuit code that runs one key exchange with each end and reads (and could
    rewrite) everything: it answers A with its own key and connects B with another."""

    def __init__(self, relay: Circuits) -> None:
        self.relay = relay
        self.read: list[str | bytes] = []
        self._keys: dict[int, tuple[Ephemeral, Ephemeral, bytes, str, str]] = {}
        self._ciphers: dict[int, tuple[CircuitCipher, CircuitCipher]] = {}
        on_request, on_control, forward = (
            relay._on_relay_request,
            relay._relay_control,
            relay._forward,
        )

        def request(peer_id: str, cid: int, connection: int, control: Control) -> None:
            to_b, to_a = Ephemeral(), Ephemeral()
            assert control.key is not None and control.peer is not None
            on_request(peer_id, cid, connection, replace(control, key=to_b.public))
            found = relay._relayed.get((peer_id, cid))
            if found is not None:
                self._keys[id(found[0])] = (to_b, to_a, control.key, peer_id, control.peer)

        def control(found: Any, message: Control, seq: int) -> None:
            relayed = found[0]
            if message.op is Op.ACCEPT and id(relayed) in self._keys and message.key is not None:
                to_b, to_a, key_a, a_id, b_id = self._keys.pop(id(relayed))
                ids = {"initiator_id": bytes.fromhex(a_id), "responder_id": bytes.fromhex(b_id)}
                with_b = to_b.cipher(message.key, initiator=True, **ids)
                with_a = to_a.cipher(key_a, initiator=False, **ids)
                self._ciphers[id(relayed)] = (with_a, with_b)
                message = replace(message, key=to_a.public)
            on_control(found, message, seq)

        def data(found: Any, sealed: bytes, seq: int) -> None:
            relayed, source, _ = found
            with_a, with_b = self._ciphers[id(relayed)]
            opened, onward = (with_a, with_b) if source is relayed.a else (with_b, with_a)
            plain = opened.open(sealed)
            self.read.append(plain)
            forward(found, onward.seal(plain), seq)

        relay._on_relay_request = request  # type: ignore[method-assign]
        relay._relay_control = control  # type: ignore[method-assign]
        relay._forward = data  # type: ignore[method-assign]

    def saw(self, text: str) -> bool:
        return any(text.encode() in (m if isinstance(m, bytes) else m.encode()) for m in self.read)


@pytest.mark.parametrize("identities", [False, True], ids=["open-swarm", "identities"])
async def test_a_relay_running_two_key_exchanges_fails_the_identity_handshake(
    identities: bool,
) -> None:
    keys: dict[str, dict[str, Any]] = {"a_options": dict(ROOMY), "b_options": dict(ROOMY)}
    if identities:
        keys = {
            "a_options": {**ROOMY, "identity": Identity.generate()},
            "b_options": {**ROOMY, "identity": Identity.generate()},
        }
    async with split_pair(**keys, auto=False) as (r, a, b, _):
        serve(b)
        middle = _InTheMiddle(circuits(r))
        await poll(
            lambda: (
                b.peer_id in a.known_peers
                and a.p2pt.accepts_offer_from(b.peer_id)
                and b.p2pt.accepts_offer_from(a.peer_id)
            ),
            timeout=15,
        )
        if identities:
            known = a.known_peers[b.peer_id].public_key
            assert known == keys["b_options"]["identity"].public_key
        opened = await circuits(a).open(b.peer_id, via=r.peer_id)
        assert middle.read  # the relay opened what the ends sent: it is in the middle
        if not identities:
            # Nothing proves who the ends are: the relay in the middle reads a call.
            assert opened is True
            say, _, _ = stub(a, b)
            assert (await say(StringValue(value="hi"), timeout=10)).value.endswith(SECRET)  # type: ignore[operator]
            assert middle.saw(SECRET)
            return
        # Each end's proof is bound to the keys it saw, which are the relay's: neither verifies.
        assert opened is False
        assert b.peer_id not in a.peers and a.peer_id not in b.peers
        # The circuit ends at both ends and at the relay.
        await poll(lambda: circuits(r).relayed_circuits == 0 and circuits(b).circuits() == {})
        assert circuits(a).circuits() == {}
        assert a.peer_id not in b.peers
        assert not middle.saw(SERVICE)  # no hello (naming b's services) went through


def _told(caplog: pytest.LogCaptureFixture, node: Node, reason: str) -> bool:
    """Whether ``node``'s circuit layer logged that a circuit of its own ended for ``reason``
    (what the relay told it)."""
    return any(
        r.getMessage().startswith("circuit to ") and reason in r.getMessage()
        for r in caplog.records
        if r.name == "p2prpc.circuit"
    )


async def test_the_per_peer_circuit_cap_alone_refuses_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p2prpc.circuit")
    limits = RelayLimits(max_circuits_per_peer=1)  # and 16 in all
    async with split_pair(relay_options={"relay_limits": limits}) as (r, a, b, _):
        await reached(a, b)
        assert circuits(r).relayed_circuits == 1 < limits.max_circuits
        refused = circuits(r).stats.refused
        assert await circuits(a).open(b.peer_id, via=r.peer_id) is False
        assert circuits(r).stats.refused == refused + 1
        assert circuits(r).relayed_circuits == 1
        assert _told(caplog, a, "the relay carries its most circuits for one peer (1)")
        say, _, _ = stub(a, b)
        serve(b)
        assert (await say(StringValue(value="still"), timeout=10)).value.startswith("still")  # type: ignore[operator]


async def test_the_connect_rate_alone_refuses_a_peer_asking_too_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p2prpc.circuit")
    # Two circuits at once from one peer, then none for a very long time: only the rate bites
    # (the ends take several connections from each other, beside their direct attempts).
    limits = RelayLimits(connect_rate=0.001, connect_burst=2, max_circuits_per_peer=16)
    async with split_pair(
        relay_options={"relay_limits": limits}, a_options=ROOMY, b_options=ROOMY, auto=False
    ) as (r, a, b, _):
        await poll(lambda: b.peer_id in a.known_peers and a.peer_id in b.known_peers)
        assert await circuits(a).open(b.peer_id, via=r.peer_id) is True
        assert await circuits(a).open(b.peer_id, via=r.peer_id) is True
        assert await circuits(a).open(b.peer_id, via=r.peer_id) is False
        assert _told(caplog, a, "too many circuits asked for: try again later")
        assert circuits(r).relayed_circuits == 2
        # The rate is each asking peer's own: b's first is carried.
        assert await circuits(b).open(a.peer_id, via=r.peer_id) is True
        assert circuits(r).relayed_circuits == 3


async def test_the_total_rate_alone_bounds_what_a_relay_forwards() -> None:
    rate = 128 * 1024
    limits = RelayLimits(circuit_rate=64 * 2**20, total_rate=rate)  # each circuit: unbounded
    async with split_pair(relay_options={"relay_limits": limits}) as (r, a, b, _):
        serve(b)
        await reached(a, b)
        _, count, _ = stub(a, b)
        relay = circuits(r)
        loop = asyncio.get_running_loop()
        before, start = relay.stats.forwarded_bytes, loop.time()
        replies = [m async for m in count(StringValue(value="100"), timeout=30)]  # type: ignore[operator]
        elapsed = loop.time() - start
        forwarded = relay.stats.forwarded_bytes - before
        assert len(replies) == 100 and forwarded > 300_000  # none lost
        # At most the bucket's one second of burst, then the rate: ~1.4 s at the least.
        assert forwarded <= rate * (elapsed + 1) + MAX_SEALED


async def test_a_call_waiting_for_a_service_only_a_relayed_peer_serves_gets_there() -> None:
    async with split_pair() as (r, a, b, _):
        serve(b)  # only b serves it, and a cannot reach b directly
        say = a.unary_unary(SAY, StringValue.SerializeToString, StringValue.FromString)
        reply = await say(StringValue(value="waited"), timeout=25, wait_for_ready=True)
        assert reply.value == f"waited / {SECRET}"
        assert a.peers[b.peer_id].via == (f"relay:{r.peer_id}",)
        assert SERVICE not in a.peers[r.peer_id].services


def _raw(a: Node, relay: str, cid: int, connection: int, **fields: Any) -> None:
    """Send a circuit frame of a's making, whatever its circuit code would send."""
    a.send(relay, Envelope(Kind.CIRCUIT, cid, **fields), binary=True, connection=connection)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"seq": MAX_WINDOW, "body": {"circuit": "credit"}}, "a credit for more than was sent"),
        ({"payload": b"\0" * (MAX_SEALED + 1), "has_payload": True}, "a frame over"),
        ({"body": {"circuit": "accept", "key": "?"}}, "a malformed circuit frame"),
        ({"body": {"circuit": "teleport"}}, "a malformed circuit frame"),
    ],
    ids=["credit-overflow", "oversized", "bad-key", "unknown-op"],
)
async def test_a_hostile_end_s_frame_closes_its_circuit_and_both_ends_are_told(
    frame: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p2prpc.circuit")
    async with split_pair(auto=False, a_options=ROOMY, b_options=ROOMY) as (r, a, b, _):
        await poll(lambda: b.peer_id in a.known_peers and a.peer_id in b.known_peers)
        assert await circuits(a).open(b.peer_id, via=r.peer_id) is True
        ((_, end),) = circuits(a)._ends.items()
        _raw(a, r.peer_id, 0x7FFF_0001, end.connection, payload=b"x" * 40, has_payload=True)
        _raw(a, r.peer_id, end.cid, end.connection, **frame)
        await until(
            lambda: circuits(r).relayed_circuits == 0 and a.peer_id not in b.peers,
            (b.p2pt, "peerclose"),
            timeout=10,
        )
        assert circuits(r).held_bytes() == 0
        assert _told(caplog, b, reason)  # the other end was told why
        assert r.peer_id in a.peers and r.peer_id in b.peers  # the relay's own connections stand
