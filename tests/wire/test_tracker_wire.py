"""The WebTorrent tracker codec: exact bytes, round trips, tolerance, and garbage in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2prpc.errors import InvalidTrackerMessage, TrackerProtocolError, TrackerRequestError
from p2prpc.wire.tracker import (
    Announce,
    AnnounceReply,
    Answer,
    AnswerRelay,
    ClientMessage,
    FailureReply,
    OfferPayload,
    OfferRelay,
    Scrape,
    ScrapeFile,
    ScrapeReply,
    ServerMessage,
    binary_to_str,
    encode_client_message,
    encode_server_message,
    info_hash_of,
    new_peer_id,
    parse_client_message,
    parse_server_message,
    str_to_binary,
)

# Ids chosen to exercise JSON.stringify's escaping: control characters, quote, backslash, DEL and
# the upper half of latin-1 (written raw).
IH = bytes(range(20))
IH_JSON = (
    r'"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r'
    r'\u000e\u000f\u0010\u0011\u0012\u0013"'
)
PEER = b'-PY0001-"\\\x7f\x80\xffabcdefg'
PEER_JSON = '"-PY0001-\\"\\\\\x7f\x80\xffabcdefg"'
OTHER = b"B" * 20
OFFER_ID = b"\xaa" * 20
OFFER_ID_JSON = '"' + "\xaa" * 20 + '"'
SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"
SDP_JSON = r'"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"'


# -- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "digest"),
    [
        # What P2PT's hash(identifier) gives (uint8-util: SHA-1 of the UTF-8 bytes).
        ("myApp", "f09fd667785a6ff44bd958473692dc5db29b8dfe"),
        ("héllo ☃ 😀", "a36431196ce8ed709939b7cf3a288727182e1f39"),
        ("a\ud800b", "c3693aea616c886c93746deab3d42921ca20f04e"),  # lone surrogate -> U+FFFD
    ],
)
def test_info_hash_of_matches_p2pt(identifier: str, digest: str) -> None:
    assert info_hash_of(identifier).hex() == digest


def test_new_peer_id_is_20_random_bytes() -> None:
    ids = {new_peer_id() for _ in range(8)}
    assert len(ids) == 8
    assert all(len(i) == 20 for i in ids)


def test_binary_strings_round_trip() -> None:
    data = bytes(range(236, 256))
    assert binary_to_str(data) == "".join(map(chr, range(236, 256)))
    assert str_to_binary(binary_to_str(data), "peer_id") == data


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "expected a string"),
        (12, "expected a string"),
        (["x" * 20], "expected a string"),
        ("x" * 19, "expected 20 characters, got 19"),
        ("x" * 21, "expected 20 characters, got 21"),
        ("x" * 19 + "\u0100", "above U+00FF"),
        ("x" * 19 + "😀", "above U+00FF"),
    ],
)
def test_str_to_binary_names_the_field(value: object, fragment: str) -> None:
    with pytest.raises(TrackerProtocolError, match="to_peer_id") as info:
        str_to_binary(value, "to_peer_id")
    assert fragment in str(info.value)


# -- exact bytes --------------------------------------------------------------------------------


def test_announce_as_the_javascript_client_starts() -> None:
    # Captured from bittorrent-tracker 11.2.3: client.start({numwant: 0}) with left 0.
    m = Announce(IH, PEER, numwant=0, left=0, event="started")
    assert encode_client_message(m) == (
        '{"numwant":0,"uploaded":0,"downloaded":0,"left":0,"event":"started",'
        f'"action":"announce","info_hash":{IH_JSON},"peer_id":{PEER_JSON},"offers":[]}}'
    )


def test_announce_as_p2pt_sends_it() -> None:
    m = Announce(IH, PEER, numwant=1, offers=(OfferPayload(OFFER_ID, SDP),), trackerid="t1")
    assert encode_client_message(m) == (
        '{"numwant":1,"uploaded":0,"downloaded":0,"action":"announce",'
        f'"info_hash":{IH_JSON},"peer_id":{PEER_JSON},"trackerid":"t1",'
        f'"offers":[{{"offer":{{"type":"offer","sdp":{SDP_JSON}}},"offer_id":{OFFER_ID_JSON}}}]}}'
    )


@pytest.mark.parametrize("event", ["stopped", "completed"])
def test_leaving_announces_carry_no_offers(event: str) -> None:
    text = encode_client_message(Announce(IH, PEER, event=event))
    assert text == (
        f'{{"numwant":50,"uploaded":0,"downloaded":0,"event":"{event}",'
        f'"action":"announce","info_hash":{IH_JSON},"peer_id":{PEER_JSON}}}'
    )
    with pytest.raises(InvalidTrackerMessage, match="no offers"):
        encode_client_message(Announce(IH, PEER, event=event, offers=(OfferPayload(IH, SDP),)))


def test_answer_exact() -> None:
    m = Answer(IH, PEER, OTHER, OFFER_ID, SDP)
    assert encode_client_message(m) == (
        f'{{"action":"announce","info_hash":{IH_JSON},"peer_id":{PEER_JSON},'
        f'"to_peer_id":"{"B" * 20}","answer":{{"type":"answer","sdp":{SDP_JSON}}},'
        f'"offer_id":{OFFER_ID_JSON}}}'
    )


def test_scrape_exact() -> None:
    assert encode_client_message(Scrape(())) == '{"action":"scrape"}'
    assert encode_client_message(Scrape((IH,))) == f'{{"action":"scrape","info_hash":{IH_JSON}}}'
    assert encode_client_message(Scrape((IH, OTHER))) == (
        f'{{"action":"scrape","info_hash":[{IH_JSON},"{"B" * 20}"]}}'
    )


def test_server_messages_exact() -> None:
    # Key order as bittorrent-tracker's server builds its objects.
    assert encode_server_message(AnnounceReply(IH, 120, 1, 2)) == (
        f'{{"complete":1,"incomplete":2,"action":"announce","interval":120,"info_hash":{IH_JSON}}}'
    )
    assert encode_server_message(OfferRelay(IH, PEER, OFFER_ID, SDP)) == (
        f'{{"action":"announce","offer":{{"type":"offer","sdp":{SDP_JSON}}},'
        f'"offer_id":{OFFER_ID_JSON},"peer_id":{PEER_JSON},"info_hash":{IH_JSON}}}'
    )
    assert encode_server_message(AnswerRelay(IH, PEER, OFFER_ID, SDP)) == (
        f'{{"action":"announce","answer":{{"type":"answer","sdp":{SDP_JSON}}},'
        f'"offer_id":{OFFER_ID_JSON},"peer_id":{PEER_JSON},"info_hash":{IH_JSON}}}'
    )
    assert encode_server_message(ScrapeReply({IH: ScrapeFile(1, 2, 1)}, 600)) == (
        f'{{"action":"scrape","files":{{{IH_JSON}:{{"complete":1,"incomplete":2,"downloaded":1}}}},'
        '"flags":{"min_request_interval":600}}'
    )
    assert encode_server_message(FailureReply("swarm is full", IH)) == (
        f'{{"action":"announce","failure reason":"swarm is full","info_hash":{IH_JSON}}}'
    )
    assert encode_server_message(FailureReply("invalid action", action="")) == (
        '{"failure reason":"invalid action"}'
    )


def test_lone_surrogates_are_escaped_like_json_stringify() -> None:
    text = encode_server_message(FailureReply("bad \ud800 here"))
    assert "\\ud800" in text
    text.encode("utf-8")  # sendable in a text frame
    assert parse_server_message(text) == [FailureReply("bad \ud800 here")]


@pytest.mark.parametrize(
    "message",
    [
        Announce(IH[:19], PEER),
        Announce(IH, PEER, numwant=-1),
        Announce(IH, PEER, event="bogus"),
        Announce(IH, PEER, offers=(OfferPayload(b"short", SDP),)),
        Answer(IH, PEER, OTHER, OFFER_ID, 42),  # type: ignore[arg-type]
        Scrape(("x" * 20,)),  # type: ignore[arg-type]
        "not a message",
    ],
)
def test_encode_client_refuses_what_the_protocol_cannot_carry(message: Any) -> None:
    with pytest.raises(InvalidTrackerMessage):
        encode_client_message(message)


@pytest.mark.parametrize(
    "message",
    [
        AnnounceReply(IH, interval=0),
        AnnounceReply(IH, complete=-1),
        AnnounceReply(IH, warning=""),
        FailureReply(""),
        FailureReply("x", action="connect"),
        ScrapeReply({IH: ScrapeFile(0, 0, 0)}, min_request_interval=0),
        OfferRelay(IH, PEER[:5], OFFER_ID, SDP),
        "not a message",
    ],
)
def test_encode_server_refuses_what_a_client_cannot_read(message: Any) -> None:
    with pytest.raises(InvalidTrackerMessage):
        encode_server_message(message)


# -- parsing: the tracker's side ----------------------------------------------------------------


def _req(**fields: Any) -> str:
    base: dict[str, Any] = {
        "action": "announce",
        "info_hash": binary_to_str(IH),
        "peer_id": binary_to_str(PEER),
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not _DROP})


_DROP = object()


def test_parse_announce_tolerates_what_bittorrent_tracker_tolerates() -> None:
    m = parse_client_message(_req(left=None, event="", numwant=5.0, uploaded=3, offers=None))
    assert m == Announce(IH, PEER, numwant=5, uploaded=3, left=None, event=None)
    # No numwant, uploaded or downloaded at all: defaults.
    assert parse_client_message(_req()) == Announce(IH, PEER)
    # A binary frame is read as UTF-8.
    assert parse_client_message(_req(event="paused").encode()) == Announce(IH, PEER, event="paused")


def test_a_truthy_answer_makes_an_answer() -> None:
    answer = {"type": "answer", "sdp": SDP}
    oid = binary_to_str(OFFER_ID)
    to = binary_to_str(OTHER)
    m = parse_client_message(_req(answer=answer, to_peer_id=to, offer_id=oid, trackerid="t"))
    assert m == Answer(IH, PEER, OTHER, OFFER_ID, SDP, "t")
    # A falsy answer is ignored, as in JavaScript: this is an announce.
    assert isinstance(parse_client_message(_req(answer="", to_peer_id=0)), Announce)


def test_parse_scrape_forms() -> None:
    ih, other = binary_to_str(IH), binary_to_str(OTHER)
    assert parse_client_message('{"action":"scrape"}') == Scrape(())
    assert parse_client_message('{"action":"scrape","info_hash":null}') == Scrape(())
    assert parse_client_message(json.dumps({"action": "scrape", "info_hash": ih})) == Scrape((IH,))
    both = json.dumps({"action": "scrape", "info_hash": [ih, other]})
    assert parse_client_message(both) == Scrape((IH, OTHER))


@pytest.mark.parametrize(
    ("data", "fragment", "action", "has_info_hash"),
    [
        ("", "not JSON", "announce", False),
        ("{", "not JSON", "announce", False),
        ("[1]", "not a JSON object", "announce", False),
        (b"\xff\xfe", "not UTF-8", "announce", False),
        ('{"action":"announce","info_hash":NaN}', "not JSON", "announce", False),
        ("[" * 100_000, "bytes parsed", "announce", False),  # measured, never parsed
        ("[" * 500 + "]" * 499, "not JSON", "announce", False),
        ('{"junk":[' + "[]," * 30_000 + "0]}", "bytes parsed", "announce", False),
        ('{"action":"connect"}', "invalid action", "announce", False),
        ('{"action":"announce"}', "invalid info_hash", "announce", False),
        ('{"action":"announce","info_hash":"' + "x" * 19 + '"}', "info_hash", "announce", False),
        (_req(peer_id="\u0100" * 20), "invalid peer_id", "announce", True),
        (_req(event="finished"), "invalid event", "announce", True),
        (_req(numwant=-1), "invalid numwant", "announce", True),
        (_req(numwant=1.5), "invalid numwant", "announce", True),
        (_req(numwant=True), "invalid numwant", "announce", True),
        (_req(left="10"), "invalid left", "announce", True),
        (_req(offers={}), "invalid offers", "announce", True),
        (_req(offers=[1]), "invalid offers[0]", "announce", True),
        (_req(offers=[{"offer": {"type": "offer", "sdp": SDP}}]), "offers[0].offer_id", "", True),
        (_req(offers=[{"offer": "sdp", "offer_id": "o" * 20}]), "offers[0].offer", "", True),
        (
            _req(offers=[{"offer": {"type": "answer", "sdp": SDP}, "offer_id": "o" * 20}]),
            "type must be 'offer'",
            "announce",
            True,
        ),
        (
            _req(offers=[{"offer": {"type": "offer", "sdp": SDP}, "offer_id": "o" * 20}] * 11),
            "too many offers: 11 (at most 10)",
            "announce",
            True,
        ),
        (_req(answer={"type": "answer", "sdp": SDP}), "to_peer_id", "announce", True),
        (
            _req(answer={"type": "answer", "sdp": SDP}, to_peer_id="t" * 20),
            "`offer_id` (required with `answer`)",
            "announce",
            True,
        ),
        (
            _req(answer={"type": "answer"}, to_peer_id="t" * 20, offer_id="o" * 20),
            "sdp must be",
            "announce",
            True,
        ),
        (_req(trackerid=7), "invalid trackerid", "announce", True),
        ('{"action":"scrape","info_hash":7}', "invalid info_hash", "scrape", False),
        ('{"action":"scrape","info_hash":["' + "x" * 21 + '"]}', "info_hash[0]", "scrape", False),
    ],
)
def test_parse_client_refuses_with_a_reason_and_an_address(
    data: str | bytes, fragment: str, action: str, has_info_hash: bool
) -> None:
    with pytest.raises(TrackerRequestError) as info:
        parse_client_message(data)
    assert fragment in info.value.reason
    assert info.value.action == (action or "announce")
    assert info.value.info_hash == (IH if has_info_hash else None)


def test_max_offers_is_a_parameter() -> None:
    offer = {"offer": {"type": "offer", "sdp": SDP}, "offer_id": "o" * 20}
    with pytest.raises(TrackerRequestError, match="at most 2"):
        parse_client_message(_req(offers=[offer] * 3), max_offers=2)
    m = parse_client_message(_req(offers=[offer] * 2), max_offers=2)
    assert isinstance(m, Announce)
    assert len(m.offers) == 2


# -- parsing: the client's side -----------------------------------------------------------------


def _resp(**fields: Any) -> str:
    base: dict[str, Any] = {"action": "announce", "info_hash": binary_to_str(IH)}
    base.update(fields)
    return json.dumps(base)


def test_parse_reply_tolerates_min_interval_and_zero_interval() -> None:
    assert parse_server_message(_resp(complete=0, incomplete=1, interval=120)) == [
        AnnounceReply(IH, 120, 0, 1)
    ]
    assert parse_server_message(_resp(**{"min interval": 30})) == [AnnounceReply(IH, interval=30)]
    # interval 0 is falsy in JavaScript: `min interval` is used instead.
    assert parse_server_message(_resp(interval=0, **{"min interval": 30})) == [
        AnnounceReply(IH, interval=30)
    ]
    assert parse_server_message(_resp(interval=1.5)) == [AnnounceReply(IH, interval=2)]
    # Nothing to act on.
    assert parse_server_message(_resp()) == []
    assert parse_server_message(_resp(incomplete=3)) == []


def test_one_message_carrying_everything_comes_out_in_the_clients_order() -> None:
    oid, pid = binary_to_str(OFFER_ID), binary_to_str(PEER)
    data = _resp(
        answer={"type": "answer", "sdp": "a"},
        offer={"type": "offer", "sdp": "o"},
        offer_id=oid,
        peer_id=pid,
        complete=1,
        **{"warning message": "careful", "tracker id": "tid"},
    )
    assert parse_server_message(data) == [
        AnnounceReply(IH, None, 1, None, "careful", "tid"),
        OfferRelay(IH, PEER, OFFER_ID, "o"),
        AnswerRelay(IH, PEER, OFFER_ID, "a"),
    ]


def test_a_failure_comes_alone() -> None:
    data = _resp(complete=1, offer={"type": "offer", "sdp": "o"}, **{"failure reason": "no"})
    assert parse_server_message(data) == [FailureReply("no", IH)]
    # bittorrent-tracker's refusal of a request it could not parse has no action.
    assert parse_server_message('{"failure reason":"invalid action"}') == [
        FailureReply("invalid action", None, "")
    ]
    # Its refusal of a scrape echoes a garbled info_hash: still a refusal, of no swarm.
    garbled = json.dumps({"action": "scrape", "failure reason": "x", "info_hash": "\u0100"})
    assert parse_server_message(garbled) == [FailureReply("x", None, "scrape")]


def test_an_offer_without_a_peer_id_is_ignored_as_javascript_does() -> None:
    data = _resp(offer={"type": "offer", "sdp": "o"}, offer_id=binary_to_str(OFFER_ID))
    assert parse_server_message(data) == []


def test_parse_scrape_reply() -> None:
    data = json.dumps(
        {
            "action": "scrape",
            "files": {binary_to_str(IH): {"complete": 2, "incomplete": 1}},
            "flags": {"min_request_interval": 600},
        }
    )
    assert parse_server_message(data) == [ScrapeReply({IH: ScrapeFile(2, 1, 0)}, 600)]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("nope", "not JSON"),
        ("null", "not a JSON object"),
        (b"\x80", "not UTF-8"),
        ('{"action":"announce","complete":Infinity}', "not JSON"),
        ("{}", "invalid action"),
        ('{"action":"connect"}', "invalid action"),
        ('{"failure reason":null}', "invalid action"),
        ('{"failure reason":""}', "invalid failure reason"),
        (_resp(**{"failure reason": 5}), "invalid failure reason"),
        ('{"action":"announce","complete":1}', "invalid info_hash"),
        (_resp(info_hash="x" * 19, complete=1), "invalid info_hash"),
        (_resp(complete=-1), "invalid complete"),
        (_resp(complete="1"), "invalid complete"),
        (_resp(complete=1, incomplete=0.5), "invalid incomplete"),
        (_resp(interval=-5), "invalid interval"),
        (_resp(interval="60"), "invalid interval"),
        (_resp(interval=True), "invalid interval"),
        (_resp(**{"warning message": ["x"]}), "invalid warning message"),
        (_resp(**{"tracker id": 3}), "invalid tracker id"),
        (_resp(peer_id="p" * 20, offer={"type": "offer", "sdp": "o"}), "invalid offer_id"),
        (_resp(peer_id="p" * 19, offer={"type": "offer", "sdp": "o"}), "invalid peer_id"),
        (_resp(peer_id="p" * 20, offer="v=0", offer_id="o" * 20), "invalid offer"),
        (_resp(peer_id="p" * 20, offer={"sdp": "o"}, offer_id="o" * 20), "type must be"),
        (_resp(peer_id="p" * 20, answer={"type": "answer"}, offer_id="o" * 20), "sdp must"),
        ('{"action":"scrape"}', "no files"),
        ('{"action":"scrape","files":{}}', "no files"),
        ('{"action":"scrape","files":[]}', "files is"),
        ('{"action":"scrape","files":{"abc":{"complete":1,"incomplete":1}}}', "files key"),
        (json.dumps({"action": "scrape", "files": {"f" * 20: 3}}), "invalid scrape entry"),
        (json.dumps({"action": "scrape", "files": {"f" * 20: {}}}), "required"),
    ],
)
def test_parse_server_refuses_what_the_client_cannot_use(data: str | bytes, fragment: str) -> None:
    with pytest.raises(TrackerProtocolError) as info:
        parse_server_message(data)
    assert fragment in str(info.value)


# -- round trips --------------------------------------------------------------------------------

ids = st.binary(min_size=20, max_size=20)
texts = st.text(min_size=1, max_size=40)
counts = st.integers(min_value=0, max_value=2**53)
sdps = st.text(min_size=1, max_size=200)
offers = st.builds(OfferPayload, ids, sdps)


@st.composite
def announces(draw: st.DrawFn) -> Announce:
    event = draw(st.sampled_from([None, "started", "stopped", "completed", "update", "paused"]))
    leaving = event in ("stopped", "completed")
    return Announce(
        info_hash=draw(ids),
        peer_id=draw(ids),
        numwant=draw(counts),
        uploaded=draw(counts),
        downloaded=draw(counts),
        left=draw(st.none() | st.integers(min_value=-(2**40), max_value=2**53)),
        event=event,
        offers=() if leaving else tuple(draw(st.lists(offers, max_size=10))),
        trackerid=draw(st.none() | st.text(max_size=20)),
    )


client_messages: st.SearchStrategy[ClientMessage] = st.one_of(
    announces(),
    st.builds(Answer, ids, ids, ids, ids, sdps, st.none() | st.text(max_size=20)),
    st.builds(Scrape, st.lists(ids, max_size=5).map(tuple)),
)


@st.composite
def announce_replies(draw: st.DrawFn) -> AnnounceReply:
    reply = AnnounceReply(
        info_hash=draw(ids),
        interval=draw(st.none() | st.integers(1, 10**6)),
        complete=draw(st.none() | counts),
        incomplete=draw(st.none() | counts),
        warning=draw(st.none() | texts),
        tracker_id=draw(st.none() | texts),
    )
    # A reply with nothing a client acts on reads back as nothing at all.
    if all(v is None for v in (reply.interval, reply.complete, reply.warning, reply.tracker_id)):
        return AnnounceReply(reply.info_hash, interval=120, incomplete=reply.incomplete)
    return reply


server_messages: st.SearchStrategy[ServerMessage] = st.one_of(
    announce_replies(),
    st.builds(OfferRelay, ids, ids, ids, sdps),
    st.builds(AnswerRelay, ids, ids, ids, sdps),
    st.builds(
        ScrapeReply,
        st.dictionaries(ids, st.builds(ScrapeFile, counts, counts, counts), min_size=1, max_size=5),
        st.none() | st.integers(1, 10**6),
    ),
    st.builds(FailureReply, texts, st.none() | ids, st.sampled_from(["announce", "scrape", ""])),
)


@given(client_messages)
def test_client_messages_round_trip(m: ClientMessage) -> None:
    text = encode_client_message(m)
    assert parse_client_message(text) == m
    assert parse_client_message(text.encode("utf-8")) == m


@given(server_messages)
def test_server_messages_round_trip(m: ServerMessage) -> None:
    text = encode_server_message(m)
    assert parse_server_message(text) == [m]
    assert parse_server_message(text.encode("utf-8")) == [m]


# -- garbage ------------------------------------------------------------------------------------

# Strings that look like ids but are not quite: 19 or 21 characters, or a character above U+00FF.
near_ids = st.one_of(
    st.text(st.characters(max_codepoint=0xFF), min_size=19, max_size=21),
    st.text(min_size=20, max_size=20),
    ids.map(binary_to_str),
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    near_ids,
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = [
    "action",
    "info_hash",
    "peer_id",
    "to_peer_id",
    "offer_id",
    "numwant",
    "uploaded",
    "downloaded",
    "left",
    "event",
    "offers",
    "offer",
    "answer",
    "trackerid",
    "interval",
    "min interval",
    "complete",
    "incomplete",
    "warning message",
    "failure reason",
    "tracker id",
    "files",
    "flags",
    "type",
    "sdp",
]
field_values = st.one_of(
    json_values,
    st.sampled_from(["announce", "scrape", "offer", "answer", "started", "stopped", ""]),
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["offer", "answer", 1]),
            "sdp": st.text(max_size=5) | st.none(),
            "offer": json_values,
            "offer_id": near_ids,
            "complete": json_values,
            "incomplete": json_values,
        },
    ),
    st.lists(
        st.fixed_dictionaries(
            {}, optional={"offer": json_values, "offer_id": near_ids | json_values}
        ),
        max_size=3,
    ),
    st.dictionaries(near_ids, st.dictionaries(st.sampled_from(KEYS), json_values), max_size=2),
)
jsonish = st.dictionaries(st.sampled_from(KEYS), field_values, max_size=8)


def _only_protocol_errors_client(data: str | bytes) -> None:
    try:
        m = parse_client_message(data)
    except TrackerRequestError:
        return
    # What the tracker accepted it can relay and read back.
    if isinstance(m, Announce):
        for o in m.offers:
            relay = OfferRelay(m.info_hash, m.peer_id, o.offer_id, o.sdp)
            assert parse_server_message(encode_server_message(relay)) == [relay]
    elif isinstance(m, Answer):
        relay2 = AnswerRelay(m.info_hash, m.peer_id, m.offer_id, m.sdp)
        assert parse_server_message(encode_server_message(relay2)) == [relay2]


def _only_protocol_errors_server(data: str | bytes) -> None:
    try:
        messages = parse_server_message(data)
    except TrackerProtocolError:
        return
    for m in messages:  # each thing read is a well-formed message in its own right
        assert parse_server_message(encode_server_message(m)) == [m]


@given(st.text())
def test_garbage_text(data: str) -> None:
    _only_protocol_errors_client(data)
    _only_protocol_errors_server(data)


@given(st.binary())
def test_garbage_bytes(data: bytes) -> None:
    _only_protocol_errors_client(data)
    _only_protocol_errors_server(data)


@given(jsonish, st.booleans())
def test_garbage_json_objects(obj: dict[str, Any], ascii_only: bool) -> None:
    text = json.dumps(obj, ensure_ascii=ascii_only)
    _only_protocol_errors_client(text)
    _only_protocol_errors_server(text)


@st.composite
def mutated_messages(draw: st.DrawFn) -> str:
    """A valid message with a few fields, at any depth, replaced by garbage or removed."""
    message = draw(st.one_of(client_messages, server_messages))
    encode: Any = (
        encode_client_message if isinstance(message, ClientMessage) else encode_server_message
    )
    obj = json.loads(encode(message))
    for _ in range(draw(st.integers(1, 3))):
        target = obj
        while True:  # walk down to some object inside the message
            children = [v for v in target.values() if isinstance(v, dict)]
            children += [
                x for v in target.values() if isinstance(v, list) for x in v if isinstance(x, dict)
            ]
            if not children or not draw(st.booleans()):
                break
            target = draw(st.sampled_from(children))
        key = draw(st.sampled_from(sorted(target) + KEYS))
        if key in target and draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(field_values)
    return json.dumps(obj, ensure_ascii=draw(st.booleans()))


@settings(max_examples=300)
@given(mutated_messages())
def test_mutated_messages(text: str) -> None:
    _only_protocol_errors_client(text)
    _only_protocol_errors_server(text)


@given(json_values)
def test_garbage_json_values(value: object) -> None:
    text = json.dumps(value)
    _only_protocol_errors_client(text)
    _only_protocol_errors_server(text)
