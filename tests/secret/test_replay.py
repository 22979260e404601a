"""Sealed signalling played back: each offer and answer opens once, within its time window."""

from __future__ import annotations

import pytest

from p2prpc.signalling import Signalling
from p2prpc.wire.secret import (
    SEAL_CLOCK_SKEW,
    SEAL_MAX_AGE,
    ReplayedSeal,
    SealError,
    StaleSeal,
    derive_keys,
)

KEYS = derive_keys("a long shared secret", "closed-app")
A, B, C = b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20
OFFER, OTHER = b"\x0f" * 20, b"\x0e" * 20
T0 = 1_700_000_000.0
SDP = "v=0\r\n"


class Clock:
    """Seconds since the Unix epoch, as the test sets them."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pair(clock: Clock, **kw: int) -> tuple[Signalling, Signalling]:
    """A sealing for peer A and one for peer B of the same swarm, on ``clock``."""
    a = Signalling(KEYS.info_hash, A, KEYS, clock=clock, **kw)  # type: ignore[arg-type]
    b = Signalling(KEYS.info_hash, B, KEYS, clock=clock, **kw)  # type: ignore[arg-type]
    return a, b


def test_an_offer_or_an_answer_opens_once_and_its_copies_are_refused_and_counted() -> None:
    clock = Clock()
    a, b = pair(clock)
    offer = a.seal_offer(OFFER, SDP)
    assert b.open_offer(A, OFFER, offer) == SDP
    for _ in range(3):
        with pytest.raises(ReplayedSeal):
            b.open_offer(A, OFFER, offer)
    assert b.refused == 3 and b.opened == 1
    answer = b.seal_answer(A, OFFER, SDP)
    assert a.open_answer(B, OFFER, answer) == SDP  # an answer to the offer: another kind
    with pytest.raises(ReplayedSeal):
        a.open_answer(B, OFFER, answer)
    assert a.refused == 1
    assert issubclass(ReplayedSeal, SealError)
    # Another member, which never opened it, opens it once too: the tracker picks one member
    # for an offer, and a copy to each other member is what the caps in P2PT share out.
    c = Signalling(KEYS.info_hash, C, KEYS, clock=clock)
    assert c.open_offer(A, OFFER, offer) == SDP
    with pytest.raises(ReplayedSeal):
        c.open_offer(A, OFFER, offer)


def test_what_does_not_open_is_not_remembered_and_cannot_shut_out_the_genuine_one() -> None:
    clock = Clock()
    a, b = pair(clock)
    genuine = a.seal_offer(OFFER, SDP)
    forged = Signalling(KEYS.info_hash, A, derive_keys("guess", "closed-app"), clock=clock)
    for text in (forged.seal_offer(OFFER, SDP), SDP, genuine[:-2] + "AA"):
        with pytest.raises(SealError) as refused:
            b.open_offer(A, OFFER, text)
        assert not isinstance(refused.value, ReplayedSeal)
    assert b.opened == 0 and b.refused == 3
    assert b.open_offer(A, OFFER, genuine) == SDP
    assert b.open_offer(A, OTHER, a.seal_offer(OTHER, SDP)) == SDP  # another offer id


def test_a_copy_is_refused_for_as_long_as_it_could_still_open() -> None:
    clock = Clock()
    a, b = pair(clock)
    clock.now = T0 + SEAL_CLOCK_SKEW  # a's clock is as far ahead as b allows
    ahead = a.seal_offer(OFFER, SDP)
    clock.now = T0
    assert b.open_offer(A, OFFER, ahead) == SDP
    clock.now = T0 + SEAL_CLOCK_SKEW + SEAL_MAX_AGE - 0.5  # it would still open: a copy
    with pytest.raises(ReplayedSeal):
        b.open_offer(A, OFFER, ahead)
    clock.now += 1  # now too old to open at all, and forgotten
    with pytest.raises(StaleSeal):
        b.open_offer(A, OFFER, ahead)
    assert b.opened == 0 and b.refused == 2


def test_past_max_opened_the_oldest_is_forgotten() -> None:
    clock = Clock()
    a, b = pair(clock, max_opened=3)
    offers = {bytes([n]) * 20: a.seal_offer(bytes([n]) * 20, SDP) for n in range(4)}
    for offer_id, text in offers.items():
        clock.now += 1
        assert b.open_offer(A, offer_id, text) == SDP
    assert b.opened == 3
    first, *rest = offers
    assert b.open_offer(A, first, offers[first]) == SDP  # forgotten: it opens again
    for offer_id in rest[1:]:
        with pytest.raises(ReplayedSeal):
            b.open_offer(A, offer_id, offers[offer_id])


def test_an_open_swarm_keeps_nothing() -> None:
    plain = Signalling(b"\x01" * 20, A, None)
    for _ in range(2):
        assert plain.open_offer(B, OFFER, "v=0 plain") == "v=0 plain"
    assert plain.opened == 0 and plain.refused == 0


def test_limits_are_checked() -> None:
    for kw in ({"max_age": 0}, {"max_skew": -1}, {"max_opened": 0}):
        with pytest.raises(ValueError):
            Signalling(b"\x01" * 20, A, KEYS, **kw)  # type: ignore[arg-type]
