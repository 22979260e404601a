"""The compact publish header carries what the JSON header carries, or the JSON header goes."""

from __future__ import annotations

from p2prpc.wire.envelope import BinaryReader, Envelope, Kind, to_binary

ORIGIN = "ab" * 20


def read_back(envelope: Envelope, compact_publish: bool) -> Envelope | None:
    reader = BinaryReader()
    result = None
    for frame in to_binary(envelope, compact_publish=compact_publish):
        result = reader.feed("p", frame, now=0.0)
    return result


def test_a_topic_utf8_cannot_encode_is_sent_as_the_json_header_sends_it() -> None:
    # JSON reads "\ud800" in a topic (a lone surrogate escape), so a hostile peer can publish to
    # such a topic and a relay passes it on. The JSON header writes it (as an escape); the compact
    # header's topic.encode() raised UnicodeEncodeError out of to_binary instead, so a relay to a
    # compact_publish peer (any peer whose hello says relay: true gets every topic) failed in the
    # middle of _send_on, and the message was delivered neither to the rest nor locally.
    envelope = Envelope(
        Kind.PUBLISH, 7, 3, payload=b"x", has_payload=True, topic="t\ud800", origin=ORIGIN, hops=1
    )
    plain = read_back(envelope, compact_publish=False)
    assert plain is not None and plain.topic == "t\ud800"
    compact = read_back(envelope, compact_publish=True)
    assert compact == plain
