"""Flow control's pure parts: the window update envelopes in both forms, what a message costs,
what a writer may send and when a reader grants."""

from __future__ import annotations

import struct

import pytest

from p2prpc.wire.envelope import (
    MAGIC,
    MAX_WINDOW,
    BinaryReader,
    Envelope,
    EnvelopeError,
    Kind,
    from_json,
    to_binary,
    to_json,
)
from p2prpc.wire.held import ENVELOPE_OVERHEAD
from p2prpc.wire.payload import JSONText
from p2prpc.wire.window import Credit, FlowControlError, Grants, message_cost, payload_cost

WINDOWS = [(Kind.REPLY_WINDOW, "reply_window"), (Kind.MSG_WINDOW, "msg_window")]


@pytest.mark.parametrize(("kind", "key"), WINDOWS)
@pytest.mark.parametrize("increment", [1, 131072, MAX_WINDOW])
def test_a_window_update_round_trips_in_both_forms(kind: Kind, key: str, increment: int) -> None:
    envelope = Envelope(kind, 123456, increment)
    assert to_json(envelope) == {key: increment}
    assert from_json({key: increment}, 123456).seq == increment
    assert from_json({key: increment}, 123456).kind is kind
    (frame,) = to_binary(envelope)
    assert len(frame) == 13  # the frame header alone: the increment rides in the seq field
    read = BinaryReader().feed("p", frame)
    assert read is not None and (read.kind, read.call_id, read.seq) == (kind, 123456, increment)


@pytest.mark.parametrize(("kind", "key"), WINDOWS)
@pytest.mark.parametrize("value", [0, -1, MAX_WINDOW + 1, 2**64, 1.5, "8", True, None, [1]])
def test_a_json_window_update_of_no_increment_is_refused(
    kind: Kind, key: str, value: object
) -> None:
    with pytest.raises(EnvelopeError, match="window increment"):
        from_json({key: value}, 1)


@pytest.mark.parametrize("kind", [Kind.REPLY_WINDOW, Kind.MSG_WINDOW])
@pytest.mark.parametrize(
    ("flags", "seq", "rest"),
    [
        (0, 0, b""),  # no increment
        (0, MAX_WINDOW + 1, b""),  # past the largest window
        (1, 8, b"x"),  # a payload
        (0, 8, b'{"a":1}'),  # a header
    ],
    ids=["zero", "too-large", "payload", "header"],
)
def test_a_binary_window_update_that_is_not_one_is_refused(
    kind: Kind, flags: int, seq: int, rest: bytes
) -> None:
    header = rest if rest.startswith(b"{") else b""
    frame = struct.pack(">BBBIIH", MAGIC, kind, flags, 7, seq, len(header)) + rest
    with pytest.raises(EnvelopeError) as caught:
        BinaryReader().feed("p", frame)
    assert "window" in str(caught.value)


def test_a_message_costs_512_and_its_payload_as_carried() -> None:
    assert message_cost(b"x" * 1000) == 1000 + ENVELOPE_OVERHEAD
    assert message_cost(None, False) == ENVELOPE_OVERHEAD
    value = {"name": "é", "n": [1, 2.5, None], "s": "\ud800"}  # a lone surrogate survives too
    text = '{"name":"é","n":[1,2.5,null],"s":"\ud800"}'
    assert payload_cost(value) == len(text.encode("utf-8", "surrogatepass"))
    assert payload_cost(JSONText(value)) == payload_cost(value)  # kept text counts the same


def test_a_writer_sends_while_its_credit_is_positive() -> None:
    credit = Credit(1000)
    assert credit.open
    credit.spend(900)
    assert credit.open  # 100 left: the next message goes, whatever its size
    credit.spend(5000)
    assert not credit.open
    credit.grant(4000)
    assert not credit.open  # -900: still shut
    credit.grant(1900)
    assert credit.open and credit.credit == 1000


def test_a_grant_past_the_window_is_a_flow_control_error() -> None:
    credit = Credit(1000)
    credit.spend(600)
    with pytest.raises(FlowControlError):
        credit.grant(601)  # more than was ever sent
    assert credit.credit == 400  # unchanged
    credit.grant(600)
    unlimited = Credit(None)
    unlimited.spend(10**9)
    unlimited.grant(10**9)
    assert unlimited.open


def test_a_reader_grants_in_batches_of_half_the_window() -> None:
    grants = Grants(1000)
    assert [grants.read(100) for _ in range(4)] == [0, 0, 0, 0]
    assert grants.read(100) == 500  # half the window read: all of it granted at once
    assert grants.read(2000) == 2000  # a message larger than the window: granted when read
    grants.read(300)
    grants.kept(400)  # a grant that could not be sent counts again
    assert grants.take() == 700 and grants.take() == 0


def test_a_writer_honouring_the_grants_never_has_more_than_a_window_and_a_message_unread() -> None:
    """Writer and reader run against each other with messages of every size: what the reader
    holds unread never passes the window plus one message, and the writer is never stuck
    while the reader has read everything it holds."""
    import random

    rng = random.Random(1)
    window, largest = 10_000, 7_000
    credit, grants = Credit(window), Grants(window)
    unread: list[int] = []
    sent = read = 0
    for _ in range(20_000):
        if credit.open and rng.random() < 0.6:
            cost = rng.choice([ENVELOPE_OVERHEAD, 600, 3000, largest])
            credit.spend(cost)
            unread.append(cost)
            sent += 1
            assert sum(unread) <= window + largest
        elif unread:
            grant = grants.read(unread.pop(0))
            read += 1
            if grant:
                credit.grant(grant)
        else:
            assert credit.open  # all read: the writer may go on
    assert sent > 1000 and read > 1000
