"""The ICE restart message and key (docs/PROTOCOL.md section 9), sans I/O."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2prpc.wire.restart import (
    MAX_SDP,
    PREFIX,
    RestartError,
    RestartKind,
    RestartState,
    decode,
    decode_key,
    encode,
    encode_key,
    is_restart,
    mac_key,
)

OFFERER, ANSWERER = b"\x01" * 20, b"\x02" * 20
FP_OFFERER, FP_ANSWERER = b"\x0a" * 32, b"\x0b" * 32
CONNECTION = bytes(range(20))
SDP = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n"


def pair() -> tuple[RestartState, RestartState]:
    """The two ends of one connection, keys exchanged."""
    offerer, answerer = RestartState(initiator=True), RestartState(initiator=False)
    offerer.set_remote_key(answerer.local_key)
    answerer.set_remote_key(offerer.local_key)
    return offerer, answerer


def offer(offerer: RestartState, sdp: str = SDP) -> str:
    return offerer.seal(
        RestartKind.OFFER,
        sender=OFFERER,
        receiver=ANSWERER,
        fingerprints=(FP_OFFERER, FP_ANSWERER),
        connection_id=CONNECTION,
        sdp=sdp,
    )


def take(answerer: RestartState, text: str, *, sender: bytes = OFFERER) -> str:
    return answerer.open(
        decode(text),
        sender=sender,
        receiver=ANSWERER,
        fingerprints=(FP_ANSWERER, FP_OFFERER),
        connection_id=CONNECTION,
    )


def test_the_layout_is_as_the_protocol_writes_it() -> None:
    key = mac_key(b"\x11" * 32, b"\x22" * 32)
    assert (
        key == hashlib.sha256(b"p2prpc-restart-key-v1\x00" + b"\x11" * 32 + b"\x22" * 32).digest()
    )
    text = encode(
        key,
        RestartKind.ANSWER,
        sender=ANSWERER,
        receiver=OFFERER,
        fingerprints=(FP_ANSWERER, FP_OFFERER),
        connection_id=CONNECTION,
        counter=7,
        sdp=SDP,
    )
    assert text.startswith(PREFIX) and is_restart(text) and "=" not in text
    body = text[len(PREFIX) :]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert raw[0] == 2 and raw[1:21] == CONNECTION and raw[21:29] == (7).to_bytes(8, "big")
    transcript = (b"p2prpc-restart-v1\x00\x02" + ANSWERER + OFFERER + FP_ANSWERER + FP_OFFERER
                  + CONNECTION + (7).to_bytes(8, "big") + SDP.encode())  # fmt: skip
    assert raw[29:61] == hmac.digest(key, transcript, "sha256")
    assert raw[61:] == SDP.encode()
    message = decode(text)
    assert (message.kind, message.connection_id, message.counter, message.sdp) == (
        RestartKind.ANSWER,
        CONNECTION,
        7,
        SDP,
    )


def test_an_offer_opens_once_at_the_other_end_and_its_answer_at_the_offerer() -> None:
    offerer, answerer = pair()
    assert take(answerer, offer(offerer)) == SDP
    answer = answerer.seal(
        RestartKind.ANSWER,
        sender=ANSWERER,
        receiver=OFFERER,
        fingerprints=(FP_ANSWERER, FP_OFFERER),
        connection_id=CONNECTION,
        sdp="answer",
    )
    opened = offerer.open(
        decode(answer),
        sender=ANSWERER,
        receiver=OFFERER,
        fingerprints=(FP_OFFERER, FP_ANSWERER),
        connection_id=CONNECTION,
    )
    assert opened == "answer"


def test_a_replayed_message_is_refused_and_a_later_one_still_opens() -> None:
    offerer, answerer = pair()
    first = offer(offerer)
    second = offer(offerer)
    assert take(answerer, second) == SDP
    for played_back in (second, first):  # the same one, and an older one
        with pytest.raises(RestartError, match="played back"):
            take(answerer, played_back)
    assert take(answerer, offer(offerer, "third")) == "third"


def test_a_forged_altered_misdirected_or_reflected_message_is_refused() -> None:
    offerer, answerer = pair()
    stranger = RestartState(initiator=True)
    stranger.set_remote_key(answerer.local_key)  # knows one key, not the other
    with pytest.raises(RestartError, match="MAC"):
        take(answerer, offer(stranger))
    genuine = decode(offer(offerer))
    altered = type(genuine)(genuine.kind, genuine.connection_id, genuine.counter, genuine.mac,
                            genuine.sdp + "a=candidate:evil\r\n")  # fmt: skip
    with pytest.raises(RestartError, match="MAC"):
        answerer.open(altered, sender=OFFERER, receiver=ANSWERER,
                      fingerprints=(FP_ANSWERER, FP_OFFERER), connection_id=CONNECTION)  # fmt: skip
    text = offer(offerer)
    with pytest.raises(RestartError, match="MAC"):  # claimed by a third peer
        take(answerer, text, sender=b"\x03" * 20)
    with pytest.raises(RestartError, match="MAC"):  # for another connection
        answerer.open(decode(text), sender=OFFERER, receiver=ANSWERER,
                      fingerprints=(FP_ANSWERER, FP_OFFERER), connection_id=bytes(20))  # fmt: skip
    other = b"\x0c" * 32
    with pytest.raises(RestartError, match="MAC"):  # other DTLS fingerprints (another link)
        answerer.open(decode(text), sender=OFFERER, receiver=ANSWERER,
                      fingerprints=(FP_ANSWERER, other), connection_id=CONNECTION)  # fmt: skip
    with pytest.raises(RestartError, match="MAC"):  # reflected to its sender
        offerer.open(decode(text), sender=ANSWERER, receiver=OFFERER,
                     fingerprints=(FP_OFFERER, FP_ANSWERER), connection_id=CONNECTION)  # fmt: skip
    assert answerer.received == 0  # nothing refused moved the counter
    assert take(answerer, text) == SDP


def test_only_the_offerer_offers_and_only_the_answerer_answers() -> None:
    offerer, answerer = pair()
    answer_from_offerer = offerer.seal(RestartKind.ANSWER, sender=OFFERER, receiver=ANSWERER,
                                       fingerprints=(FP_OFFERER, FP_ANSWERER),
                                       connection_id=CONNECTION, sdp=SDP)  # fmt: skip
    with pytest.raises(RestartError, match="answer to the connection's answerer"):
        take(answerer, answer_from_offerer)


def test_no_message_opens_before_the_peer_gave_its_key_and_keys_never_change() -> None:
    lone = RestartState(initiator=False)
    assert not lone.armed
    offerer, _ = pair()
    with pytest.raises(RestartError, match="no restart key"):
        take(lone, offer(offerer))
    lone.set_remote_key(b"\x05" * 32)
    with pytest.raises(RestartError, match="changed"):
        lone.set_remote_key(b"\x06" * 32)


def b64u(raw: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "text",
    [
        "v=0\r\n",  # plain SDP
        PREFIX + "!!!",
        PREFIX + "AAAA=",  # padded
        b64u(b"\x01" * 60),  # too short
        b64u(b"\x03" + b"\x00" * 60),  # unknown kind
        b64u(b"\x01" + b"\x00" * 60),  # counter 0
        b64u(b"\x01" + b"\x00" * 27 + b"\x01" + b"\x00" * 32 + b"\xff"),  # SDP not UTF-8
        PREFIX + "A" * ((MAX_SDP + 61) * 4 // 3 + 8),  # too long
    ],
    ids=["plain", "not-base64", "padded", "short", "kind", "counter-0", "not-utf8", "long"],
)
def test_malformed_messages_are_refused(text: str) -> None:
    with pytest.raises(RestartError):
        decode(text)


@given(st.text(max_size=200))
def test_any_text_decodes_or_raises_restart_error(text: str) -> None:
    with contextlib.suppress(RestartError):
        decode(PREFIX + text)


def test_keys_travel_as_canonical_base64() -> None:
    key = bytes(range(32))
    assert decode_key(encode_key(key)) == key
    text = encode_key(key)
    uncanonical = text[:42] + "B="  # the bits past the 32 bytes are not zero
    for bad in (None, True, 3, "", text[:-1], text[:-1] + "A", uncanonical):
        with pytest.raises(RestartError):
            decode_key(bad)
    with pytest.raises(ValueError):
        encode_key(b"short")
