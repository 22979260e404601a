"""What an envelope costs its receiver in work, and the per-peer budget that paces it (pure)."""

from __future__ import annotations

import pytest

from p2prpc.wire.compression import RATIO_ALLOWANCE, inflate_limit
from p2prpc.wire.envelope import Envelope, Kind
from p2prpc.wire.payload import held_size
from p2prpc.wire.work import (
    ENVELOPE_COST,
    JSON_PARSE_FACTOR,
    VERIFY_COST,
    WorkBudget,
    envelope_work,
    settled_work,
)

MAX = 4 * 2**20


def call(payload: object, *, compressed: bool = False) -> Envelope:
    return Envelope(
        Kind.CALL, 1, method="/a.B/C", payload=payload, has_payload=True, compressed=compressed
    )


def test_a_payload_costs_what_it_is_read_as_and_parsed_from() -> None:
    assert envelope_work(Envelope(Kind.END, 1), MAX, 64) == ENVELOPE_COST
    assert envelope_work(call(b"x" * 1000), MAX, 64) == ENVELOPE_COST + 2000
    json_value = {"name": "x" * 100}
    expected = ENVELOPE_COST + (1 + JSON_PARSE_FACTOR) * held_size(json_value)
    assert envelope_work(call(json_value), MAX, 64) == expected


def test_a_compressed_payload_costs_the_most_it_may_inflate_to_until_settled() -> None:
    envelope = call(b"z" * 100, compressed=True)
    most = inflate_limit(100, MAX, 64)
    assert most == 64 * 100 + RATIO_ALLOWANCE
    assert envelope_work(envelope, MAX, 64) == ENVELOPE_COST + 100 + most
    assert settled_work(envelope, 500, MAX, 64) == 500 - most  # given back
    assert settled_work(call(b"z" * 100), 500, MAX, 64) == 0  # nothing was guessed
    huge = call(b"z" * 2**20, compressed=True)
    assert envelope_work(huge, MAX, 64) == ENVELOPE_COST + 2**20 + MAX  # the size cap holds


def test_a_signed_topic_message_costs_a_signature_check() -> None:
    signed = Envelope(Kind.PUBLISH, 0, topic="t", payload=b"", signature=b"s" * 64)
    assert envelope_work(signed, MAX, 64) == ENVELOPE_COST + VERIFY_COST


def test_the_budget_goes_into_debt_and_is_paid_back_at_its_rate() -> None:
    budget = WorkBudget(rate=1000, burst=500)
    assert budget.ready("p", 0.0) and budget.tokens("p", 0.0) == 500
    budget.charge("p", 2500, 0.0)  # one envelope may cost more than the burst
    assert not budget.ready("p", 0.0)
    assert budget.wait("p", 0.0) == pytest.approx(2.0, abs=1e-3)
    assert not budget.ready("p", 1.9)
    assert budget.ready("p", 2.01)
    assert budget.tokens("p", 100.0) == 500  # never more than the burst
    assert budget.ready("q", 0.0)  # another peer is not slowed
    budget.charge("p", -10_000, 100.0)  # given back: still at most the burst
    assert budget.tokens("p", 100.0) == 500
    budget.discard("p")
    assert len(budget) == 0


def test_a_budget_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError):
        WorkBudget(0, 100)
    with pytest.raises(ValueError):
        WorkBudget(100, 0)
