"""WebTorrent tracker messages, as bittorrent-tracker 11 speaks them over a WebSocket.

Every message is one JSON object in a text frame. ``info_hash``, ``peer_id``, ``to_peer_id`` and
``offer_id`` are 20-byte binary strings written one character per byte (latin-1), which is how
JavaScript keeps binary in strings; here they are :class:`bytes`.

Client to tracker:

- announce: ``{numwant, uploaded, downloaded, left?, event?, action:"announce", info_hash,
  peer_id, trackerid?, offers?:[{offer:{type:"offer", sdp}, offer_id}]}``
- answer: ``{action:"announce", info_hash, peer_id, to_peer_id, answer:{type:"answer", sdp},
  offer_id, trackerid?}``
- scrape: ``{action:"scrape", info_hash?}`` with one binary string, a list of them, or none (all)

Tracker to client, all with ``action:"announce"`` unless noted:

- the reply to an announce: ``{complete, incomplete, action, interval, info_hash}``
- a relayed offer: ``{action, offer, offer_id, peer_id:<offerer>, info_hash}``
- a relayed answer: ``{action, answer, offer_id, peer_id:<answerer>, info_hash}``
- a scrape reply: ``{action:"scrape", files:{<info_hash>:{complete, incomplete, downloaded}},
  flags:{min_request_interval}}``
- a refusal: ``{action, "failure reason", info_hash?}``

The encoders write exactly the bytes bittorrent-tracker writes (same keys, same order, JavaScript's
``JSON.stringify`` escaping), so a JavaScript peer or tracker cannot tell the difference. The
parsers accept what bittorrent-tracker's client and server accept and raise
:class:`~p2prpc.errors.TrackerProtocolError` (never a ``KeyError``, ``ValueError`` or
``RecursionError``) on anything they could not use.

This module does no I/O: it is the sans-I/O core of the tracker client and the embedded tracker.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from ..errors import InvalidTrackerMessage, TrackerProtocolError, TrackerRequestError
from . import jsjson
from .held import parse_refusal

__all__ = [
    "EVENTS",
    "ID_LENGTH",
    "Announce",
    "AnnounceReply",
    "Answer",
    "AnswerRelay",
    "ClientMessage",
    "FailureReply",
    "OfferPayload",
    "OfferRelay",
    "Scrape",
    "ScrapeFile",
    "ScrapeReply",
    "ServerMessage",
    "binary_to_str",
    "encode_client_message",
    "encode_server_message",
    "info_hash_of",
    "new_peer_id",
    "parse_client_message",
    "parse_server_message",
    "str_to_binary",
]

#: Length in bytes of an info_hash, a peer_id and an offer_id.
ID_LENGTH: Final = 20

#: The announce events bittorrent-tracker's server knows ("empty" and no event mean "update").
EVENTS: Final = frozenset({"started", "stopped", "completed", "update", "paused", "empty"})

#: Events with which bittorrent-tracker's client sends no offers (the peer is leaving or done).
_NO_OFFER_EVENTS: Final = frozenset({"stopped", "completed"})


# -- ids ----------------------------------------------------------------------------------------


def info_hash_of(identifier: str) -> bytes:
    """The 20-byte info_hash of a P2PT identifier: SHA-1 of its UTF-8 encoding.

    Lone surrogates become U+FFFD first, as JavaScript's ``TextEncoder`` does, so that any Python
    string hashes to what the same JavaScript string would.
    """
    text = identifier.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return hashlib.sha1(text.encode("utf-8")).digest()


def new_peer_id() -> bytes:
    """A fresh random 20-byte peer id, as P2PT makes one per instance."""
    return os.urandom(ID_LENGTH)


def binary_to_str(b: bytes) -> str:
    """Bytes as a JavaScript binary string: one character (U+0000..U+00FF) per byte."""
    return b.decode("latin-1")


def str_to_binary(s: object, field: str) -> bytes:
    """A 20-byte id from its binary-string form; :class:`TrackerProtocolError` naming ``field``.

    Accepts exactly what bittorrent-tracker can use: a string of 20 characters, each at most
    U+00FF (the JavaScript code checks only the length and would garble wider characters).
    """
    if not isinstance(s, str):
        raise TrackerProtocolError(f"invalid {field}: expected a string, got {_kind(s)}")
    if len(s) != ID_LENGTH:
        raise TrackerProtocolError(
            f"invalid {field}: expected {ID_LENGTH} characters, got {len(s)}"
        )
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        raise TrackerProtocolError(
            f"invalid {field}: a binary string has no characters above U+00FF"
        ) from None


# -- messages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferPayload:
    """One WebRTC offer inside an announce: the SDP (all candidates, no trickle) and its id."""

    offer_id: bytes
    sdp: str


@dataclass(frozen=True, slots=True)
class Announce:
    """A peer joins or stays in a swarm and offers connections to some of its peers.

    ``left == 0`` (or ``event == "completed"``) makes the peer a seeder in the tracker's counts;
    P2PT sends neither, so its peers count as leechers. ``numwant`` bounds how many of the
    ``offers`` the tracker relays; bittorrent-tracker's client sends ``min(numwant, 5)`` here
    together with that many offers, so callers wanting identical bytes do the same.
    """

    info_hash: bytes
    peer_id: bytes
    numwant: int = 50
    uploaded: int = 0
    downloaded: int = 0
    left: int | None = None
    event: str | None = None
    offers: tuple[OfferPayload, ...] = ()
    trackerid: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A peer answers the offer ``offer_id`` that ``to_peer_id`` made through the tracker."""

    info_hash: bytes
    peer_id: bytes
    to_peer_id: bytes
    offer_id: bytes
    sdp: str
    trackerid: str | None = None


@dataclass(frozen=True, slots=True)
class Scrape:
    """Ask for the seeder and leecher counts of some swarms; no info_hashes means all of them."""

    info_hashes: tuple[bytes, ...]


ClientMessage = Announce | Answer | Scrape


@dataclass(frozen=True, slots=True)
class AnnounceReply:
    """The tracker's answer to an announce: when to announce again and the swarm's counts.

    Every field but ``info_hash`` is optional on the wire; a client acts on each one present
    (``interval`` re-arms its announce timer, ``complete`` is an ``update`` event).
    """

    info_hash: bytes
    interval: int | None = None
    complete: int | None = None
    incomplete: int | None = None
    warning: str | None = None
    tracker_id: str | None = None


@dataclass(frozen=True, slots=True)
class OfferRelay:
    """An offer from another peer of the swarm; ``peer_id`` is the offerer's."""

    info_hash: bytes
    peer_id: bytes
    offer_id: bytes
    sdp: str


@dataclass(frozen=True, slots=True)
class AnswerRelay:
    """The answer to one of our offers; ``peer_id`` is the answerer's."""

    info_hash: bytes
    peer_id: bytes
    offer_id: bytes
    sdp: str


@dataclass(frozen=True, slots=True)
class ScrapeFile:
    """One swarm's counts in a scrape reply (``downloaded`` is a lower bound: the seeders)."""

    complete: int
    incomplete: int
    downloaded: int


@dataclass(frozen=True, slots=True)
class ScrapeReply:
    """Counts per info_hash; ``min_request_interval`` is the ``flags`` entry, if sent."""

    files: Mapping[bytes, ScrapeFile]
    min_request_interval: int | None = None


@dataclass(frozen=True, slots=True)
class FailureReply:
    """The tracker refused a request.

    ``action`` is the action of the refused request; ``""`` stands for a refusal without one,
    which is what bittorrent-tracker sends for a request it could not parse at all.
    """

    reason: str
    info_hash: bytes | None = None
    action: str = "announce"


ServerMessage = AnnounceReply | OfferRelay | AnswerRelay | ScrapeReply | FailureReply


# -- encoding -----------------------------------------------------------------------------------


def encode_client_message(m: ClientMessage) -> str:
    """The JSON text bittorrent-tracker's WebSocket client sends for ``m``.

    Raises :class:`~p2prpc.errors.InvalidTrackerMessage` for a message the protocol cannot carry
    (an id that is not 20 bytes, an unknown event, offers with ``stopped`` or ``completed``).
    """
    obj: dict[str, Any]
    if isinstance(m, Announce):
        obj = {
            "numwant": _check_count(m.numwant, "numwant"),
            "uploaded": _check_count(m.uploaded, "uploaded"),
            "downloaded": _check_count(m.downloaded, "downloaded"),
        }
        if m.left is not None:
            obj["left"] = _check_int(m.left, "left")
        if m.event is not None:
            if m.event not in EVENTS:
                raise InvalidTrackerMessage(f"unknown announce event {m.event!r}")
            obj["event"] = m.event
        obj["action"] = "announce"
        obj["info_hash"] = _id_out(m.info_hash, "info_hash")
        obj["peer_id"] = _id_out(m.peer_id, "peer_id")
        if m.trackerid is not None:
            obj["trackerid"] = _check_str(m.trackerid, "trackerid")
        if m.event in _NO_OFFER_EVENTS:
            if m.offers:
                raise InvalidTrackerMessage(f"an announce with event {m.event!r} has no offers")
        else:
            obj["offers"] = [
                {
                    "offer": {"type": "offer", "sdp": _check_str(o.sdp, "sdp")},
                    "offer_id": _id_out(o.offer_id, "offer_id"),
                }
                for o in m.offers
            ]
    elif isinstance(m, Answer):
        obj = {
            "action": "announce",
            "info_hash": _id_out(m.info_hash, "info_hash"),
            "peer_id": _id_out(m.peer_id, "peer_id"),
            "to_peer_id": _id_out(m.to_peer_id, "to_peer_id"),
            "answer": {"type": "answer", "sdp": _check_str(m.sdp, "sdp")},
            "offer_id": _id_out(m.offer_id, "offer_id"),
        }
        if m.trackerid is not None:
            obj["trackerid"] = _check_str(m.trackerid, "trackerid")
    elif isinstance(m, Scrape):
        obj = {"action": "scrape"}
        hashes = [_id_out(h, "info_hash") for h in m.info_hashes]
        if len(hashes) == 1:
            obj["info_hash"] = hashes[0]
        elif hashes:
            obj["info_hash"] = hashes
    else:
        raise InvalidTrackerMessage(f"not a client message: {_kind(m)}")
    return _dumps(obj)


def encode_server_message(m: ServerMessage) -> str:
    """The JSON text bittorrent-tracker's server sends for ``m``.

    Raises :class:`~p2prpc.errors.InvalidTrackerMessage` for what a client could not read back
    (an id that is not 20 bytes, a non-positive interval, an empty failure reason, …).
    """
    obj: dict[str, Any]
    if isinstance(m, AnnounceReply):
        obj = {}
        if m.complete is not None:
            obj["complete"] = _check_count(m.complete, "complete")
        if m.incomplete is not None:
            obj["incomplete"] = _check_count(m.incomplete, "incomplete")
        obj["action"] = "announce"
        if m.interval is not None:
            obj["interval"] = _check_positive(m.interval, "interval")
        obj["info_hash"] = _id_out(m.info_hash, "info_hash")
        if m.warning is not None:
            obj["warning message"] = _check_nonempty(m.warning, "warning")
        if m.tracker_id is not None:
            obj["tracker id"] = _check_nonempty(m.tracker_id, "tracker_id")
    elif isinstance(m, OfferRelay | AnswerRelay):
        kind = "offer" if isinstance(m, OfferRelay) else "answer"
        obj = {
            "action": "announce",
            kind: {"type": kind, "sdp": _check_str(m.sdp, "sdp")},
            "offer_id": _id_out(m.offer_id, "offer_id"),
            "peer_id": _id_out(m.peer_id, "peer_id"),
            "info_hash": _id_out(m.info_hash, "info_hash"),
        }
    elif isinstance(m, ScrapeReply):
        files = {
            _id_out(h, "info_hash"): {
                "complete": _check_count(f.complete, "complete"),
                "incomplete": _check_count(f.incomplete, "incomplete"),
                "downloaded": _check_count(f.downloaded, "downloaded"),
            }
            for h, f in m.files.items()
        }
        obj = {"action": "scrape", "files": files}
        if m.min_request_interval is not None:
            interval = _check_positive(m.min_request_interval, "min_request_interval")
            obj["flags"] = {"min_request_interval": interval}
    elif isinstance(m, FailureReply):
        obj = {}
        if m.action:
            if m.action not in ("announce", "scrape"):
                raise InvalidTrackerMessage(f"unknown action {m.action!r}")
            obj["action"] = m.action
        obj["failure reason"] = _check_nonempty(m.reason, "reason")
        if m.info_hash is not None:
            obj["info_hash"] = _id_out(m.info_hash, "info_hash")
    else:
        raise InvalidTrackerMessage(f"not a server message: {_kind(m)}")
    return _dumps(obj)


def _dumps(obj: dict[str, Any]) -> str:
    # JSON.stringify: no spaces, non-ASCII as is, lone surrogates escaped (ES2019).
    return jsjson.stringify(obj, InvalidTrackerMessage)


def _id_out(value: object, field: str) -> str:
    if not isinstance(value, bytes) or len(value) != ID_LENGTH:
        raise InvalidTrackerMessage(f"{field} must be {ID_LENGTH} bytes, got {_describe(value)}")
    return binary_to_str(value)


def _check_int(value: object, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidTrackerMessage(f"{field} must be an int, got {_kind(value)}")
    return value


def _check_count(value: object, field: str) -> int:
    number = _check_int(value, field)
    if number < 0:
        raise InvalidTrackerMessage(f"{field} must not be negative, got {number}")
    return number


def _check_positive(value: object, field: str) -> int:
    number = _check_int(value, field)
    if number <= 0:
        raise InvalidTrackerMessage(f"{field} must be positive, got {number}")
    return number


def _check_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidTrackerMessage(f"{field} must be a str, got {_kind(value)}")
    return value


def _check_nonempty(value: object, field: str) -> str:
    text = _check_str(value, field)
    if not text:
        raise InvalidTrackerMessage(f"{field} must not be empty")
    return text


# -- parsing: the tracker's side ----------------------------------------------------------------


class _Request:
    """What is known so far about a request being parsed, to address a refusal to it."""

    __slots__ = ("action", "info_hash")

    def __init__(self) -> None:
        self.action = "announce"
        self.info_hash: bytes | None = None

    def fail(self, reason: str) -> NoReturn:
        raise TrackerRequestError(reason, action=self.action, info_hash=self.info_hash)

    def id(self, obj: Mapping[str, Any], key: str, what: str | None = None) -> bytes:
        try:
            return str_to_binary(obj.get(key), what or key)
        except TrackerProtocolError as e:
            self.fail(str(e))


def parse_client_message(data: str | bytes, *, max_offers: int = 10) -> ClientMessage:
    """Read a request a tracker received, as bittorrent-tracker's server would.

    Raises :class:`~p2prpc.errors.TrackerRequestError` (a :class:`TrackerProtocolError`) with a
    reason fit for the ``failure reason`` reply, and with the action and info_hash to address that
    reply to when the request got that far. An announce carrying more than ``max_offers`` offers
    is refused as a whole rather than truncated, so the peer learns about the cap.

    An announce whose ``answer`` is truthy (JavaScript's notion) is an :class:`Answer`; its other
    announce fields are ignored, as bittorrent-tracker ignores them. ``left: null`` (JavaScript's
    ``JSON.stringify(Infinity)``) reads as no ``left``; an empty ``event`` as no event.
    """
    request = _Request()
    try:
        obj = _load(data)
    except TrackerProtocolError as e:
        request.fail(str(e))
    action = obj.get("action")
    if action == "announce":
        return _parse_announce(obj, request, max_offers)
    if action == "scrape":
        request.action = "scrape"
        return _parse_scrape(obj, request)
    request.fail(f"invalid action in WS request: {_short(action)}")


def _parse_announce(obj: dict[str, Any], request: _Request, max_offers: int) -> ClientMessage:
    info_hash = request.id(obj, "info_hash")
    request.info_hash = info_hash
    peer_id = request.id(obj, "peer_id")
    trackerid = _opt_str(obj, "trackerid", request)
    if jsjson.truthy(obj.get("answer")):
        to_peer_id = request.id(obj, "to_peer_id", "`to_peer_id` (required with `answer`)")
        offer_id = request.id(obj, "offer_id", "`offer_id` (required with `answer`)")
        sdp = _description(obj["answer"], "answer", request)
        return Answer(info_hash, peer_id, to_peer_id, offer_id, sdp, trackerid)

    event = obj.get("event")
    if event is None or event == "":
        event = None
    elif not isinstance(event, str) or event not in EVENTS:
        request.fail(f"invalid event: {_short(event)}")

    raw_offers = obj.get("offers")
    offers: list[OfferPayload] = []
    if raw_offers is not None:
        if not isinstance(raw_offers, list):
            request.fail(f"invalid offers: expected a list, got {_kind(raw_offers)}")
        if len(raw_offers) > max_offers:
            request.fail(f"too many offers: {len(raw_offers)} (at most {max_offers})")
        for i, entry in enumerate(raw_offers):
            if not isinstance(entry, dict):
                request.fail(f"invalid offers[{i}]: expected an object, got {_kind(entry)}")
            offer_id = request.id(entry, "offer_id", f"offers[{i}].offer_id")
            sdp = _description(entry.get("offer"), f"offers[{i}].offer", request, "offer")
            offers.append(OfferPayload(offer_id, sdp))

    numwant = _opt_int(obj, "numwant", request, minimum=0)
    return Announce(
        info_hash=info_hash,
        peer_id=peer_id,
        numwant=50 if numwant is None else numwant,
        uploaded=_opt_int(obj, "uploaded", request, minimum=0) or 0,
        downloaded=_opt_int(obj, "downloaded", request, minimum=0) or 0,
        left=_opt_int(obj, "left", request),
        event=event,
        offers=tuple(offers),
        trackerid=trackerid,
    )


def _parse_scrape(obj: dict[str, Any], request: _Request) -> Scrape:
    raw = obj.get("info_hash")
    if raw is None:
        return Scrape(())
    if isinstance(raw, str):
        info_hash = request.id(obj, "info_hash")
        request.info_hash = info_hash
        return Scrape((info_hash,))
    if not isinstance(raw, list):
        request.fail(f"invalid info_hash: expected a string or a list, got {_kind(raw)}")
    hashes = []
    for i, item in enumerate(raw):
        try:
            hashes.append(str_to_binary(item, f"info_hash[{i}]"))
        except TrackerProtocolError as e:
            request.fail(str(e))
    return Scrape(tuple(hashes))


def _description(value: object, field: str, request: _Request, kind: str = "answer") -> str:
    """The SDP of a ``{type, sdp}`` session description of the given kind."""
    if not isinstance(value, dict):
        request.fail(f"invalid {field}: expected an object, got {_kind(value)}")
    if value.get("type") != kind:
        request.fail(f"invalid {field}: type must be {kind!r}, got {_short(value.get('type'))}")
    sdp = value.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        request.fail(f"invalid {field}: sdp must be a non-empty string")
    return sdp


def _opt_int(
    obj: Mapping[str, Any], key: str, request: _Request, *, minimum: int | None = None
) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    number = _as_int(value)
    if number is None or (minimum is not None and number < minimum):
        expected = "an integer" if minimum is None else f"an integer >= {minimum}"
        request.fail(f"invalid {key}: expected {expected}, got {_short(value)}")
    return number


def _opt_str(obj: Mapping[str, Any], key: str, request: _Request) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    request.fail(f"invalid {key}: expected a string, got {_kind(value)}")


# -- parsing: the client's side -----------------------------------------------------------------


def parse_server_message(data: str | bytes) -> list[ServerMessage]:
    """Read a message from a tracker, as bittorrent-tracker's WebSocket client would.

    One message can carry several things; they come back in the order the JavaScript client acts
    on them. A ``failure reason`` comes alone (the client stops there). Otherwise: an
    :class:`AnnounceReply` if any of ``warning message``, ``interval`` (or ``min interval``),
    ``tracker id`` or ``complete`` is present, then an :class:`OfferRelay`, then an
    :class:`AnswerRelay`. A message with none of these gives an empty list. Scrape replies give one
    :class:`ScrapeReply`. A refusal without an action (bittorrent-tracker's answer to a request it
    could not parse) gives a :class:`FailureReply` with ``action == ""``.

    The caller filters by ``info_hash`` (a socket may carry several swarms) and ignores relays
    whose ``peer_id`` is its own, as the JavaScript client does. Anything else the JavaScript
    client could not use raises :class:`~p2prpc.errors.TrackerProtocolError`.
    """
    obj = _load(data)
    action = obj.get("action")
    if action in ("announce", "scrape") or (action is None and "failure reason" in obj):
        failure = obj.get("failure reason")
        if jsjson.truthy(failure) or (action is None and failure is not None):
            if not isinstance(failure, str) or not failure:
                raise TrackerProtocolError(f"invalid failure reason: {_short(failure)}")
            return [FailureReply(failure, _lenient_id(obj.get("info_hash")), action or "")]
    if action == "announce":
        return _parse_announce_response(obj)
    if action == "scrape":
        return [_parse_scrape_response(obj)]
    raise TrackerProtocolError(f"invalid action in WS response: {_short(action)}")


def _parse_announce_response(obj: dict[str, Any]) -> list[ServerMessage]:
    info_hash = str_to_binary(obj.get("info_hash"), "info_hash")
    out: list[ServerMessage] = []

    warning = obj.get("warning message")
    warning = _text(warning, "warning message") if jsjson.truthy(warning) else None
    interval_value = obj.get("interval")
    if not jsjson.truthy(interval_value):
        interval_value = obj.get("min interval")
    interval = None
    if jsjson.truthy(interval_value):
        if (
            not isinstance(interval_value, int | float)
            or isinstance(interval_value, bool)
            or not 0 < interval_value < math.inf
        ):
            raise TrackerProtocolError(f"invalid interval: {_short(interval_value)}")
        interval = math.ceil(interval_value)
    tracker_id = obj.get("tracker id")
    tracker_id = _text(tracker_id, "tracker id") if jsjson.truthy(tracker_id) else None
    complete = _count(obj, "complete")
    if complete is not None or warning or interval or tracker_id:
        incomplete = _count(obj, "incomplete")
        out.append(AnnounceReply(info_hash, interval, complete, incomplete, warning, tracker_id))

    if jsjson.truthy(obj.get("peer_id")):
        for kind in ("offer", "answer"):
            if jsjson.truthy(obj.get(kind)):
                peer_id = str_to_binary(obj["peer_id"], "peer_id")
                offer_id = str_to_binary(obj.get("offer_id"), "offer_id")
                sdp = _remote_description(obj[kind], kind)
                relay = OfferRelay if kind == "offer" else AnswerRelay
                out.append(relay(info_hash, peer_id, offer_id, sdp))
    return out


def _parse_scrape_response(obj: dict[str, Any]) -> ScrapeReply:
    files = obj.get("files")
    if files is None:
        files = {}
    if not isinstance(files, dict):
        raise TrackerProtocolError(f"invalid scrape response: files is {_kind(files)}")
    if not files:
        raise TrackerProtocolError("invalid scrape response: no files")
    parsed: dict[bytes, ScrapeFile] = {}
    for key, entry in files.items():
        info_hash = str_to_binary(key, "files key")
        if not isinstance(entry, dict):
            raise TrackerProtocolError(
                f"invalid scrape entry: expected an object, got {_kind(entry)}"
            )
        complete = _count(entry, "complete")
        incomplete = _count(entry, "incomplete")
        if complete is None or incomplete is None:
            raise TrackerProtocolError("invalid scrape entry: complete and incomplete are required")
        parsed[info_hash] = ScrapeFile(complete, incomplete, _count(entry, "downloaded") or 0)
    min_request_interval = None
    flags = obj.get("flags")
    if isinstance(flags, dict):
        value = _as_int(flags.get("min_request_interval"))
        if value is not None and value > 0:
            min_request_interval = value
    return ScrapeReply(parsed, min_request_interval)


def _remote_description(value: object, kind: str) -> str:
    if not isinstance(value, dict):
        raise TrackerProtocolError(f"invalid {kind}: expected an object, got {_kind(value)}")
    if value.get("type") != kind:
        raise TrackerProtocolError(f"invalid {kind}: type must be {kind!r}")
    sdp = value.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise TrackerProtocolError(f"invalid {kind}: sdp must be a non-empty string")
    return sdp


def _count(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    number = _as_int(value)
    if number is None or number < 0:
        raise TrackerProtocolError(f"invalid {key}: expected a count, got {_short(value)}")
    return number


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise TrackerProtocolError(f"invalid {field}: expected a string, got {_kind(value)}")
    return value


def _lenient_id(value: object) -> bytes | None:
    # A refusal is worth reading even when the id it echoes is broken (bittorrent-tracker echoes
    # a garbled one for refused scrapes): it then concerns no swarm in particular.
    try:
        return str_to_binary(value, "info_hash")
    except TrackerProtocolError:
        return None


# -- shared helpers -----------------------------------------------------------------------------


def _load(data: object) -> dict[str, Any]:
    """Decode one frame into a JSON object, with JavaScript's ``JSON.parse`` rules."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError:
            raise TrackerProtocolError("message is not UTF-8") from None
    elif isinstance(data, str):
        text = data
    else:
        raise TrackerProtocolError(f"message is not text: {_kind(data)}")
    refusal = parse_refusal(text, "message")
    if refusal is not None:  # no tracker message comes near it: offers are mostly SDP text
        raise TrackerProtocolError(refusal)
    try:
        obj = jsjson.DECODER.decode(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise TrackerProtocolError(f"message is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise TrackerProtocolError(f"message is not a JSON object: {_kind(obj)}")
    return obj


def _as_int(value: object) -> int | None:
    """An integral JSON number as an int, else None (JSON has no separate integer type)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


_kind = jsjson.type_name


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, bytes) else _kind(value)
