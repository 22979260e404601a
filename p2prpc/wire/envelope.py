"""The RPC and pub/sub envelope carried inside P2PT messages, in its JSON and binary forms.

Pure codecs: no asyncio, no sockets. ``docs/PROTOCOL.md`` is the specification; this module is its
reference implementation. Payloads are opaque here: a JSON value (proto3 JSON) in the JSON form,
bytes (serialized protobuf) in the binary form; the RPC layer converts messages.

JSON form (a P2PT message whose value is a JSON object; the key that names the kind is in bold):

- **call** ``{"call": "/pkg.Service/Method", "msg"?: payload, "timeout"?: seconds,
  "metadata"?: {str: str}}`` opens a call on this P2PT message id;
- **msg** ``{"msg": payload, "seq": n}`` a request-stream message (the call's own ``msg`` is seq 0);
- **end** ``{"end": true, "seq": n}`` the client is done sending (n = messages sent);
- **cancel** ``{"cancel": true}`` the client gives up on the call;
- **reply** ``{"reply": payload, "seq": n}`` a response message, optionally with the final status;
- **status** ``{"status": {"code": int, "details"?: str}, "trailers"?: {...}, "seq"?: n}`` ends it;
- **headers** ``{"headers": {...}}`` the server's initial metadata, when it sends it before a reply;
- **ping**/**pong** ``{"ping": true}``, ``{"pong": true}`` keepalive between p2prpc peers;
- **reply_window** ``{"reply_window": n}`` the client has read n more bytes of the call's replies;
- **msg_window** ``{"msg_window": n}`` the server has read n more bytes of the call's requests
  (flow control, between peers whose hello says ``window``; ``p2prpc.wire.window`` counts);
- **hello** ``{"hello": {...}}`` what a p2prpc node is and serves (not tied to a call);
- **pex**/**signal** ``{"pex": {...}}``, ``{"signal": {...}}`` peer exchange and relayed
  signalling between p2prpc peers (``p2prpc.wire.mesh`` reads the objects).

Binary form (one data-channel message, never starting with ``^``): a 13-byte header, then an
optional JSON header, then payload bytes::

    0      1      2      3..6        7..10     11..12
    magic  kind   flags  call id u32 seq u32   json header length u16   json header   payload

A payload longer than one data-channel message is split over frames flagged ``MORE``; the JSON
header travels on the first frame only.
"""

from __future__ import annotations

import base64
import binascii
import enum
import math
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import (
    LocalProtocolError,
    MessageTooBig,
    RemoteProtocolError,
    TooLargeForPeer,
    TooManyPending,
)
from . import jsjson
from . import metadata as md
from .held import parse_refusal
from .status import Metadatum, Status, StatusCode, code_from_number, code_number

MAGIC = 0xB7
_HEADER = struct.Struct(">BBBIIH")
HEADER_SIZE = _HEADER.size
#: What one binary frame may carry (aiortc peers accept 64 KiB data-channel messages).
BINARY_FRAME_SIZE = 64 * 1024
MAX_CALL_ID = 2**32 - 1
_MAX_REFUSED = 4096


class EnvelopeError(RemoteProtocolError):
    """An envelope (JSON or binary) is malformed.

    ``frame_kind``: when a batch holds a frame that cannot be read but whose header can, that
    frame's kind byte (and ``message_id`` its call id), so that its call can be answered."""

    frame_kind: int | None = None


class Kind(enum.IntEnum):
    CALL = 1
    MSG = 2
    END = 3
    CANCEL = 4
    REPLY = 5
    STATUS = 6
    HELLO = 7
    PUBLISH = 8
    HEADERS = 9
    PING = 10
    PONG = 11
    PEX = 12  # peer exchange (``p2prpc.wire.mesh``); JSON form only
    SIGNAL = 13  # an offer, answer or refusal relayed through the mesh; JSON form only
    REPLY_WINDOW = 15  # the client opens the window of its call's replies by ``seq`` bytes
    MSG_WINDOW = 16  # the server opens the window of the call's requests by ``seq`` bytes
    WANT = 20
    HAVE = 21
    CIRCUIT = 22  # a relayed connection's control or data (``wire.circuit``); binary form only


_KIND_OF: dict[int, Kind] = {}


class Flags(enum.IntFlag):
    NONE = 0
    PAYLOAD = 1  # a payload follows the headers
    MORE = 2  # the payload continues in the next frame
    FINAL = 4  # a REPLY that also ends the call (its status is in the JSON header)
    COMPRESSED = 8  # the payload is compressed with the call's encoding
    COMPACT = 16  # the header is in the compact layout (between peers whose hello says so)


_KIND_OF.update((kind.value, kind) for kind in Kind)
_ALL_FLAGS = sum(Flags)
# The flags as plain ints, for the per-frame paths (IntFlag operations cost a call each).
_PAYLOAD, _MORE, _FINAL = int(Flags.PAYLOAD), int(Flags.MORE), int(Flags.FINAL)
_COMPRESSED, _COMPACT = int(Flags.COMPRESSED), int(Flags.COMPACT)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One envelope message. ``payload`` is a JSON value (JSON form) or bytes (binary form).
    A window update (``REPLY_WINDOW``, ``MSG_WINDOW``) carries its increment in ``seq``."""

    kind: Kind
    call_id: int
    seq: int = 0
    method: str | None = None
    timeout: float | None = None
    metadata: tuple[Metadatum, ...] = ()  # CALL: the call's metadata; HEADERS: initial metadata
    payload: Any = None
    has_payload: bool = False
    status: Status | None = None
    hello: Mapping[str, Any] | None = None
    topic: str | None = None  # PUBLISH: the topic
    origin: str | None = None  # PUBLISH: the publisher's peer id (hex)
    hops: int = 0  # PUBLISH: how many more times it may be relayed
    relayed_to: tuple[str, ...] = ()  # PUBLISH: peers the previous hop also sent it to
    publisher: bytes | None = None  # PUBLISH: the publisher's Ed25519 public key, when signed
    signature: bytes | None = None  # PUBLISH: its signature (``wire.secret.publication_bytes``)
    seqs: tuple[int, ...] = ()  # WANT: the numbers of the topic messages asked for again
    encoding: str | None = None  # CALL: the compression its payloads may use (binary form only)
    compressed: bool = False  # the payload is compressed with the call's encoding
    json: bool = False  # it came in the JSON form (a call is answered in the form it came in)
    body: Mapping[str, Any] | None = None  # PEX, SIGNAL: the object (read by ``wire.mesh``);
    # CIRCUIT: its JSON header (read by ``wire.circuit``; ``None`` for a data frame)


# -- JSON form ----------------------------------------------------------------------------------

_KINDS_BY_KEY = (
    ("hello", Kind.HELLO),
    ("pub", Kind.PUBLISH),
    ("want", Kind.WANT),
    ("have", Kind.HAVE),
    ("call", Kind.CALL),
    ("cancel", Kind.CANCEL),
    ("status", Kind.STATUS),
    ("headers", Kind.HEADERS),
    ("ping", Kind.PING),
    ("pong", Kind.PONG),
    ("reply_window", Kind.REPLY_WINDOW),
    ("msg_window", Kind.MSG_WINDOW),
    ("pex", Kind.PEX),
    ("signal", Kind.SIGNAL),
    ("reply", Kind.REPLY),
    ("end", Kind.END),
    ("msg", Kind.MSG),
)


def is_envelope(value: object) -> bool:
    """Whether a P2PT message value is an envelope (a JSON object with a kind key)."""
    return isinstance(value, dict) and any(key in value for key, _ in _KINDS_BY_KEY)


def json_kind(value: object) -> Kind | None:
    """The kind a JSON-form envelope says it is (by its keys), even when it is malformed."""
    if not isinstance(value, dict):
        return None
    return next((k for key, k in _KINDS_BY_KEY if key in value), None)


def to_json(env: Envelope) -> dict[str, Any]:
    """The JSON form of an envelope (its P2PT message value; the call id is the P2PT id)."""
    out: dict[str, Any] = {}
    if env.kind is Kind.HELLO:
        out["hello"] = dict(env.hello or {})
    elif env.kind is Kind.CALL:
        out["call"] = env.method
        if env.has_payload:
            out["msg"] = env.payload
        if env.timeout is not None:
            out["timeout"] = env.timeout
        if env.metadata:
            out["metadata"] = md.to_json(env.metadata)
    elif env.kind is Kind.HEADERS:
        out["headers"] = md.to_json(env.metadata)
    elif env.kind is Kind.PING:
        out["ping"] = True
    elif env.kind is Kind.PONG:
        out["pong"] = True
    elif env.kind is Kind.REPLY_WINDOW:
        out["reply_window"] = env.seq
    elif env.kind is Kind.MSG_WINDOW:
        out["msg_window"] = env.seq
    elif env.kind is Kind.PEX:
        out["pex"] = dict(env.body or {})
    elif env.kind is Kind.SIGNAL:
        out["signal"] = dict(env.body or {})
    elif env.kind is Kind.MSG:
        out["msg"] = env.payload
        out["seq"] = env.seq
    elif env.kind is Kind.END:
        out["end"] = True
        out["seq"] = env.seq
    elif env.kind is Kind.CANCEL:
        out["cancel"] = True
    elif env.kind is Kind.REPLY:
        out["reply"] = env.payload
        out["seq"] = env.seq
        if env.status is not None:
            out.update(_status_json(env.status))
    elif env.kind is Kind.STATUS:
        assert env.status is not None
        out.update(_status_json(env.status))
        out["seq"] = env.seq
    elif env.kind is Kind.WANT:
        out.update(_want_header(env))
    elif env.kind is Kind.HAVE:
        out.update(_have_header(env))
        out["seq"] = env.seq
    elif env.kind is Kind.PUBLISH:
        out.update(_publish_header(env))
        out["msg"] = env.payload
        out["seq"] = env.seq
    return out


#: The most message numbers one ``want`` may ask for.
MAX_WANTED = 64


def _want_header(env: Envelope) -> dict[str, Any]:
    header: dict[str, Any] = {"want": env.topic, "from": env.origin, "seqs": list(env.seqs)}
    if env.publisher is not None:
        header["key"] = base64.b64encode(env.publisher).decode("ascii")
    return header


def _want(header: Mapping[str, Any], call_id: int) -> Envelope:
    """A ``want``: a subscriber asks a neighbour for topic messages it missed."""
    topic, origin, publisher = _stream_of(header, "want")
    seqs = header.get("seqs")
    if (
        not isinstance(seqs, list)
        or not 0 < len(seqs) <= MAX_WANTED
        or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_CALL_ID for n in seqs
        )
    ):
        raise EnvelopeError(f"seqs must list 1 to {MAX_WANTED} message numbers")
    return Envelope(
        Kind.WANT, call_id, topic=topic, origin=origin, seqs=tuple(seqs), publisher=publisher
    )


def _have_header(env: Envelope) -> dict[str, Any]:
    header: dict[str, Any] = {"have": env.topic, "from": env.origin}
    if env.publisher is not None:
        header["key"] = base64.b64encode(env.publisher).decode("ascii")
    return header


def _have(header: Mapping[str, Any], call_id: int, seq: int) -> Envelope:
    """A ``have``: a neighbour says the latest message of a publisher's stream it holds is
    number ``seq`` (the one it can send again), so that a node that missed it asks for it."""
    topic, origin, publisher = _stream_of(header, "have")
    return Envelope(Kind.HAVE, call_id, seq, topic=topic, origin=origin, publisher=publisher)


def _stream_of(header: Mapping[str, Any], key: str) -> tuple[str, str, bytes | None]:
    """The stream a ``want`` or ``have`` names: (topic, publisher's peer id, its key or None)."""
    topic = header.get(key)
    if not isinstance(topic, str) or not 0 < len(topic) <= 256:
        raise EnvelopeError(f"{key} must name a topic (1 to 256 characters)")
    origin = header.get("from")
    if not _is_peer_id(origin):
        raise EnvelopeError(f"{key} names the publisher's peer id (from)")
    key_text = header.get("key")
    publisher = None
    if key_text is not None:
        try:
            if not isinstance(key_text, str) or len(key_text) > 100:
                raise ValueError("not a string of base64")
            publisher = base64.b64decode(key_text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise EnvelopeError(f"key must be base64: {e}") from None
        if len(publisher) != 32:
            raise EnvelopeError("key is a 32-byte Ed25519 public key")
    assert isinstance(origin, str)
    return topic, origin, publisher


def _publish_header(env: Envelope) -> dict[str, Any]:
    header: dict[str, Any] = {"pub": env.topic, "from": env.origin, "hops": env.hops}
    if env.relayed_to:
        header["to"] = list(env.relayed_to)
    if env.publisher is not None and env.signature is not None:
        header["key"] = base64.b64encode(env.publisher).decode("ascii")
        header["sig"] = base64.b64encode(env.signature).decode("ascii")
    return header


def _signed_by(header: Mapping[str, Any]) -> tuple[bytes | None, bytes | None]:
    """(public key, signature) of a signed publish; both or neither."""
    key, sig = header.get("key"), header.get("sig")
    if key is None and sig is None:
        return None, None
    try:
        if not isinstance(key, str) or not isinstance(sig, str) or len(key) + len(sig) > 200:
            raise ValueError("not strings of base64")
        publisher = base64.b64decode(key, validate=True)
        signature = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError) as e:
        raise EnvelopeError(f"key and sig must be base64: {e}") from None
    if len(publisher) != 32 or len(signature) != 64:
        raise EnvelopeError("key is 32 bytes and sig 64 (Ed25519)")
    return publisher, signature


def _status_json(status: Status) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code_number(status.code)}
    if status.details:
        body["details"] = status.details
    out: dict[str, Any] = {"status": body}
    if status.trailers:
        out["trailers"] = md.to_json(status.trailers)
    return out


def from_json(value: object, call_id: int) -> Envelope:
    """Read the JSON form; :class:`EnvelopeError` names what is wrong."""
    return replace(_from_json(value, call_id), json=True)


def _from_json(value: object, call_id: int) -> Envelope:
    if not isinstance(value, dict):
        raise EnvelopeError("an envelope is a JSON object")
    kind = json_kind(value)
    if kind is None:
        raise EnvelopeError("not an envelope: no call, msg, end, cancel, reply, status or hello")
    seq = _seq(value.get("seq", 0))
    if kind is Kind.HELLO:
        hello = value["hello"]
        if not isinstance(hello, dict):
            raise EnvelopeError("hello must be an object")
        return Envelope(Kind.HELLO, call_id, hello=hello)
    if kind is Kind.CALL:
        method = value["call"]
        if not isinstance(method, str) or not _valid_method(method):
            raise EnvelopeError(f"call must name /package.Service/Method, not {method!r:.80}")
        return Envelope(
            Kind.CALL,
            call_id,
            method=method,
            timeout=_timeout(value.get("timeout")),
            metadata=_metadata(value.get("metadata"), "metadata"),
            payload=value.get("msg"),
            has_payload="msg" in value,
        )
    if kind in (Kind.CANCEL, Kind.PING, Kind.PONG):
        return Envelope(kind, call_id)
    if kind is Kind.REPLY_WINDOW or kind is Kind.MSG_WINDOW:
        key = "reply_window" if kind is Kind.REPLY_WINDOW else "msg_window"
        return Envelope(kind, call_id, _increment(value[key]))
    if kind in (Kind.PEX, Kind.SIGNAL):
        body = value["pex" if kind is Kind.PEX else "signal"]
        if not isinstance(body, dict):
            raise EnvelopeError(f"{kind.name.lower()} must be an object")
        return Envelope(kind, call_id, body=body)
    if kind is Kind.HEADERS:
        return Envelope(Kind.HEADERS, call_id, metadata=_metadata(value["headers"], "headers"))
    if kind is Kind.WANT:
        return _want(value, call_id)
    if kind is Kind.HAVE:
        return _have(value, call_id, seq)
    if kind is Kind.PUBLISH:
        if "msg" not in value:
            raise EnvelopeError("a publish carries its message in msg")
        return _publish(value, call_id, seq if "seq" in value else None, value["msg"])
    if kind is Kind.STATUS:
        status = _status(value["status"], value.get("trailers"))
        if "reply" in value:
            return Envelope(
                Kind.REPLY, call_id, seq, payload=value["reply"], has_payload=True, status=status
            )
        return Envelope(Kind.STATUS, call_id, seq, status=status)
    if kind is Kind.REPLY:
        return Envelope(Kind.REPLY, call_id, seq, payload=value["reply"], has_payload=True)
    if kind is Kind.END:
        return Envelope(Kind.END, call_id, seq)
    return Envelope(Kind.MSG, call_id, seq, payload=value["msg"], has_payload=True)


def _publish(header: Mapping[str, Any], call_id: int, seq: int | None, payload: Any) -> Envelope:
    topic = header.get("pub")
    if not isinstance(topic, str) or not 0 < len(topic) <= 256:
        raise EnvelopeError("pub must name a topic (1 to 256 characters)")
    origin = header.get("from")
    if origin is not None and not _is_peer_id(origin):
        raise EnvelopeError("from must be a peer id (40 hex characters)")
    hops = header.get("hops", 0)
    if not isinstance(hops, int) or isinstance(hops, bool) or not 0 <= hops <= 255:
        raise EnvelopeError("hops must be an integer from 0 to 255")
    relayed = header.get("to", [])
    if not isinstance(relayed, list) or len(relayed) > 256 or not all(map(_is_peer_id, relayed)):
        raise EnvelopeError("to must list peer ids")
    publisher, signature = _signed_by(header)
    if publisher is not None and (origin is None or seq is None):
        raise EnvelopeError("a signed publish names its publisher's peer id (from) and its seq")
    return Envelope(
        Kind.PUBLISH,
        call_id,
        # A publisher that numbers nothing (a plain P2PT app) is numbered by whoever receives it.
        seq if seq is not None else -1,
        payload=payload,
        has_payload=True,
        topic=topic,
        origin=origin,
        hops=hops,
        relayed_to=tuple(relayed),
        publisher=publisher,
        signature=signature,
    )


def _encoding(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 32:
        raise EnvelopeError("encoding must name a compression (1 to 32 characters)")
    return value


_PEER_ID = re.compile(r"[0-9a-f]{40}")


def _is_peer_id(value: object) -> bool:
    return isinstance(value, str) and _PEER_ID.fullmatch(value) is not None


def _valid_method(method: str) -> bool:
    if method in _VALID_METHODS:
        return True
    parts = method.split("/")
    valid = len(parts) == 3 and parts[0] == "" and all(parts[1:]) and len(method) <= 1024
    if valid:
        if len(_VALID_METHODS) >= _MAX_CACHED:
            _VALID_METHODS.clear()
        _VALID_METHODS.add(method)
    return valid


#: The largest window increment (and window) a window update may carry: HTTP/2's, 2^31 - 1.
MAX_WINDOW = 2**31 - 1


def _increment(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_WINDOW:
        raise EnvelopeError(f"a window increment is an integer from 1 to {MAX_WINDOW} bytes")
    return value


def _seq(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_CALL_ID:
        raise EnvelopeError(f"seq must be an integer from 0 to {MAX_CALL_ID}")
    return value


#: Longer timeouts read as this many seconds (about 31.7 years): such a deadline is no deadline, and
#: the number given may not even fit in a float (a JSON integer can have any length).
MAX_TIMEOUT = 1e9


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EnvelopeError("timeout must be a number of seconds")
    # Compare before converting: float() of a 400-digit integer raises OverflowError.
    if isinstance(value, float) and not math.isfinite(value):
        raise EnvelopeError("timeout must be a finite number of seconds")
    if value < 0:
        raise EnvelopeError("timeout must not be negative")
    return float(value) if value < MAX_TIMEOUT else MAX_TIMEOUT


def _metadata(value: object, what: str) -> tuple[Metadatum, ...]:
    try:
        return md.from_json(value, what)
    except md.MetadataError as e:
        raise EnvelopeError(str(e)) from e


def _status(value: object, trailers: object) -> Status:
    if type(value) is Status:  # read from a compact header without trailers (no JSON holds one)
        return value
    if not isinstance(value, dict):
        raise EnvelopeError("status must be an object")
    number = value.get("code")
    if not isinstance(number, int) or isinstance(number, bool):
        raise EnvelopeError("status code must be a gRPC status code (0-16)")
    try:
        code = code_from_number(number)
    except ValueError as e:
        raise EnvelopeError(str(e)) from e
    details = value.get("details", "")
    if not isinstance(details, str):
        raise EnvelopeError("status details must be a string")
    return Status(code, details, _metadata(trailers, "trailers"))


# -- binary form --------------------------------------------------------------------------------


def is_binary_envelope(data: object) -> bool:
    return isinstance(data, bytes | bytearray | memoryview) and len(data) > 0 and data[0] == MAGIC


#: The kind byte of a batch: several binary frames in one data-channel message. Not a
#: :class:`Kind`: a batch is never an envelope of its own, and frames inside it are never batches.
BATCH_KIND = 14
_BATCH_HEAD = bytes((MAGIC, BATCH_KIND, 0))
_BATCH_LENGTH = struct.Struct(">I")
#: A sender packs at most this many bytes of frames into one batch (each frame ≤ half of it).
BATCH_SIZE = 16 * 1024
#: The bytes a batch adds for each frame it packs (its length), and at most as many for the whole
#: (its 3-byte head).
BATCH_OVERHEAD = _BATCH_LENGTH.size
#: A receiver refuses a longer batch: no sender packs one (16 KiB of frames of at least a header
#: each, and their lengths, take at most 3 + 16 KiB + 4 × 1260 bytes).
MAX_BATCH_LENGTH = 2 * BATCH_SIZE


def is_batch(data: bytes) -> bool:
    """Whether a binary data-channel message is a batch (read it with :func:`iter_batch`)."""
    return len(data) > 1 and data[0] == MAGIC and data[1] == BATCH_KIND


def pack_batch(frames: Sequence[bytes]) -> bytes:
    """One data-channel message carrying binary ``frames`` in order (``docs/PROTOCOL.md`` §4):
    ``b7 0e 00``, then each frame as a u32 big-endian length and its bytes."""
    parts = [_BATCH_HEAD]
    for frame in frames:
        parts.append(_BATCH_LENGTH.pack(len(frame)))
        parts.append(frame)
    return b"".join(parts)


def iter_batch(data: bytes) -> Iterator[bytes]:
    """The frames of a batch, in order. Raises :class:`EnvelopeError` where it stops being a
    well-formed batch (after yielding the frames before that point): one over
    :data:`MAX_BATCH_LENGTH`, a length past its end, a frame shorter than a frame header, a frame
    that is not a binary envelope, or a batch inside it."""
    if not is_batch(data) or len(data) < 4 or data[2] != 0:
        raise EnvelopeError("not a batch of binary envelopes")
    if len(data) > MAX_BATCH_LENGTH:
        raise EnvelopeError(f"a batch of {len(data)} bytes, over {MAX_BATCH_LENGTH}")
    at, end = 3, len(data)
    while at < end:
        if end - at < 4:
            raise EnvelopeError("a batch ends inside a frame length")
        (length,) = _BATCH_LENGTH.unpack_from(data, at)
        at += 4
        if length < HEADER_SIZE or length > end - at:
            raise _batch_fault(
                data[at : at + min(length, end - at)],
                f"a batch holds a frame of {length} bytes where {end - at} remain",
            )
        frame = data[at : at + length]
        if frame[0] != MAGIC or is_batch(frame):
            raise EnvelopeError("a batch holds something that is not one binary envelope")
        at += length
        yield frame


def _batch_fault(frame: bytes, reason: str) -> EnvelopeError:
    """The error for a frame of a batch that cannot be read, naming its kind and call id when
    its first 7 bytes are there (a frame cut short, or shorter than a frame header)."""
    error = EnvelopeError(reason)
    if len(frame) >= 7 and frame[0] == MAGIC and frame[1] != BATCH_KIND:
        error.frame_kind = frame[1]
        error.message_id = int.from_bytes(frame[3:7])
    return error


def _json_header(env: Envelope) -> dict[str, Any]:
    header: dict[str, Any] = {}
    if env.kind is Kind.CALL:
        header["call"] = env.method
        if env.timeout is not None:
            header["timeout"] = env.timeout
        if env.metadata:
            header["metadata"] = md.to_json(env.metadata)
        if env.encoding is not None:
            header["encoding"] = env.encoding
    elif env.kind is Kind.HELLO:
        header["hello"] = dict(env.hello or {})
    elif env.kind is Kind.HEADERS:
        header["headers"] = md.to_json(env.metadata)
    elif env.kind is Kind.PUBLISH:
        header.update(_publish_header(env))
    elif env.kind is Kind.WANT:
        header.update(_want_header(env))
    elif env.kind is Kind.HAVE:
        header.update(_have_header(env))
    elif env.kind is Kind.CIRCUIT and env.body:
        header.update(env.body)
    if env.status is not None:
        header.update(_status_json(env.status))
    return header


_COMPACT_LENGTH = struct.Struct(">H")
_COMPACT_TIMEOUT = struct.Struct(">d")
_COMPACT_STATUS = struct.Struct(">BH")
#: The compact header of an OK status without details or trailers, the commonest of all, and
#: its ``Status``; a call's timeout when it has none.
_OK_HEADER = _COMPACT_STATUS.pack(0, 0)
_OK = Status(StatusCode.OK)
_NO_TIMEOUT = _COMPACT_TIMEOUT.pack(math.nan)
#: The compact headers' method fields: by method name (to send; the start of its compact header)
#: and by those bytes (read and checked), as a method is called again and again. Each is
#: emptied when it reaches ``_MAX_CACHED`` entries, so that what a peer sends bounds it.
_METHOD_PREFIXES: dict[str, bytes] = {}
_METHODS_READ: dict[bytes, str] = {}
_VALID_METHODS: set[str] = set()  # method names found valid (:func:`_valid_method`)
_MAX_CACHED = 256
_COMPACT_PUBLISH = struct.Struct(">BBH")  # hops, how many peers it also went to, topic length
#: The key under which a compact publish header's fields, read and checked, reach ``_build``
#: (not a string: no JSON header can hold it).
_PUBLISHED = object()


def _compact_publish(env: Envelope) -> bytes | None:
    """The compact header of a publish: hops (u8), how many peers it also went to (u8), topic
    length (u16), the topic (UTF-8), the publisher's peer id (20 bytes), each peer it also went
    to (20 bytes each), then, when signed, the Ed25519 public key (32) and signature (64).
    None when the message has no publisher's peer id, or a topic UTF-8 cannot encode (a lone
    surrogate, which JSON reads and writes as an escape): it keeps the JSON header."""
    origin = env.origin
    topic = _utf8(env.topic or "")
    if topic is None or origin is None or not _is_peer_id(origin) or len(env.relayed_to) > 255:
        return None
    if not 0 < len(topic) <= 0xFFFF or not 0 <= env.hops <= 255:
        return None
    signed = env.publisher is not None and env.signature is not None
    parts = [
        _COMPACT_PUBLISH.pack(env.hops, len(env.relayed_to), len(topic)),
        topic,
        bytes.fromhex(origin),
        *map(bytes.fromhex, env.relayed_to),
    ]
    if signed:
        assert env.publisher is not None and env.signature is not None
        parts += (env.publisher, env.signature)
    return b"".join(parts)


def _parse_compact_publish(raw: bytes) -> dict[Any, Any]:
    """A compact publish header, read and checked (:func:`_compact_publish`)."""
    hops, count, length = _COMPACT_PUBLISH.unpack_from(raw)
    at = 4 + length
    topic = raw[4:at].decode()
    if not 0 < len(topic) <= 256 or len(raw) < at + 20 * (1 + count):
        raise EnvelopeError("a compact publish header is cut short or names no topic")
    origin = raw[at : at + 20].hex()
    at += 20
    relayed = tuple(raw[i : i + 20].hex() for i in range(at, at + 20 * count, 20))
    at += 20 * count
    rest = len(raw) - at
    if rest not in (0, 96):
        raise EnvelopeError("a compact publish header ends with neither nothing nor a signature")
    publisher = raw[at : at + 32] if rest else None
    signature = raw[at + 32 :] if rest else None
    return {_PUBLISHED: (topic, origin, hops, relayed, publisher, signature)}


def _compact_header(env: Envelope) -> bytes | None:
    """The compact header of a call or a status (None for other kinds, which keep JSON).

    A call: method length (u16), the method (UTF-8), the timeout (f64 seconds, NaN for none),
    then a JSON object with ``metadata`` and ``encoding`` when either is set. A status, or a final
    reply: code (u8), details length (u16), the details (UTF-8), then ``{"trailers": ...}`` in
    JSON when there are trailers.

    None too when the method or the details hold what UTF-8 cannot encode (a lone surrogate,
    from the application or echoed from a peer whose JSON carried it as an escape): such an
    envelope keeps the JSON header, whose escapes carry it, so that it is still sent.
    """
    if env.kind is Kind.CALL:
        name = env.method or ""
        prefix = _METHOD_PREFIXES.get(name)
        if prefix is None:
            method = _utf8(name)
            if method is None:
                return None
            if len(method) > 0xFFFF:
                raise LocalProtocolError("a method name over 64 KiB")
            prefix = _COMPACT_LENGTH.pack(len(method)) + method
            if len(_METHOD_PREFIXES) >= _MAX_CACHED:
                _METHOD_PREFIXES.clear()
            _METHOD_PREFIXES[name] = prefix
        if not env.metadata and env.encoding is None:
            if env.timeout is None:
                return prefix + _NO_TIMEOUT
            return prefix + _COMPACT_TIMEOUT.pack(env.timeout)
        rest: dict[str, Any] = {}
        if env.metadata:
            rest["metadata"] = md.to_json(env.metadata)
        if env.encoding is not None:
            rest["encoding"] = env.encoding
        timeout = math.nan if env.timeout is None else env.timeout
        return (
            prefix
            + _COMPACT_TIMEOUT.pack(timeout)
            + (jsjson.COMPACT.encode(rest).encode() if rest else b"")
        )
    if env.status is not None and env.kind in (Kind.STATUS, Kind.REPLY):
        status = env.status
        if status.code is StatusCode.OK and not status.details and not status.trailers:
            return _OK_HEADER
        details = _utf8(env.status.details)
        if details is None:
            return None
        if len(details) > 0xFFFF:
            raise LocalProtocolError("status details over 64 KiB")
        trailers = (
            jsjson.COMPACT.encode({"trailers": md.to_json(env.status.trailers)})
            if env.status.trailers
            else ""
        )
        return (
            _COMPACT_STATUS.pack(code_number(env.status.code), len(details))
            + details
            + trailers.encode()
        )
    return None


def _utf8(text: str) -> bytes | None:
    """``text`` in UTF-8, or None when it holds a lone surrogate (UTF-8 has none)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


def _parse_compact(kind: Kind, raw: bytes) -> dict[Any, Any]:
    """A compact header as the JSON header it stands for (:func:`_compact_header`), or, for a
    publish, its fields already read (:func:`_compact_publish`)."""
    try:
        if kind is Kind.PUBLISH:
            return _parse_compact_publish(raw)
        if kind is Kind.CALL:
            (length,) = _COMPACT_LENGTH.unpack_from(raw)
            end = 2 + length
            name = raw[2:end]
            method = _METHODS_READ.get(name)
            if method is None:
                method = name.decode()
                if _valid_method(method):  # only those (checked again when built, as any)
                    if len(_METHODS_READ) >= _MAX_CACHED:
                        _METHODS_READ.clear()
                    _METHODS_READ[name] = method
            (timeout,) = _COMPACT_TIMEOUT.unpack_from(raw, end)
            header = _parse_header(memoryview(raw)[end + 8 :]) if len(raw) > end + 8 else {}
            header["call"] = method
            if timeout == timeout:  # not NaN
                header["timeout"] = timeout
            return header
        if kind in (Kind.STATUS, Kind.REPLY):
            if raw == _OK_HEADER:
                return {"status": _OK}
            code, length = _COMPACT_STATUS.unpack_from(raw)
            end = 3 + length
            details = raw[3:end].decode()
            if len(details.encode()) != length:
                raise EnvelopeError("compact status details are cut short")
            header = _parse_header(memoryview(raw)[end:]) if len(raw) > end else {}
            header["status"] = {"code": code, "details": details}
            return header
    except (struct.error, UnicodeDecodeError) as e:
        raise EnvelopeError(f"bad compact header: {e}") from e
    raise EnvelopeError(f"a {kind.name} envelope has no compact header")


def to_binary(
    env: Envelope,
    *,
    frame_size: int = BINARY_FRAME_SIZE,
    max_frame_size: int | None = None,
    compact: bool = False,
    compact_publish: bool = False,
) -> list[bytes]:
    """The binary form: one or more data-channel messages (payload must be bytes or None).
    ``compact``: the peer reads compact call and status headers (its hello says ``"compact":
    true``); ``compact_publish``: compact publish headers (``"compact_publish": true``).

    ``frame_size``: the bytes each frame takes at most, unless the first needs more for its
    header: then it takes that header and as much payload as ``frame_size`` leaves a frame
    after its 13-byte frame header, within ``max_frame_size`` (the largest data-channel message
    the peer takes; by default ``frame_size``). Raises
    :class:`~p2prpc.errors.TooLargeForPeer` when the header does not fit in ``max_frame_size``
    (smaller than :data:`BINARY_FRAME_SIZE`), and :class:`~p2prpc.errors.LocalProtocolError`
    when it does not fit in a frame of :data:`BINARY_FRAME_SIZE`."""
    if not 0 <= env.call_id <= MAX_CALL_ID:
        raise LocalProtocolError(f"call id {env.call_id} does not fit in 32 bits")
    if env.kind is Kind.PUBLISH:
        header_bytes = _compact_publish(env) if compact_publish else None
    else:
        header_bytes = _compact_header(env) if compact else None
    is_compact = header_bytes is not None
    if header_bytes is None:
        header = _json_header(env)
        header_bytes = jsjson.COMPACT.encode(header).encode() if header else b""

    if len(header_bytes) > 0xFFFF:
        raise LocalProtocolError("call header (method and metadata) exceeds 64 KiB")
    payload = env.payload if env.has_payload else b""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise LocalProtocolError("a binary envelope's payload must be bytes")
    flags = _PAYLOAD if env.has_payload else 0
    if is_compact:
        flags |= _COMPACT
    if env.kind is Kind.REPLY and env.status is not None:
        flags |= _FINAL
    if env.compressed:
        flags |= _COMPRESSED
    if frame_size <= HEADER_SIZE:
        raise TooLargeForPeer(
            f"frames of {frame_size} bytes carry nothing past their {HEADER_SIZE}-byte header",
            size=HEADER_SIZE + 1,
            limit=frame_size,
        )
    head = HEADER_SIZE + len(header_bytes)
    if head + len(payload) <= frame_size:  # one frame: the commonest by far
        return [
            _HEADER.pack(MAGIC, env.kind, flags, env.call_id, env.seq, len(header_bytes))
            + header_bytes
            + payload
        ]
    view = memoryview(payload)
    first_room = frame_size - head
    if first_room < 0 or (first_room == 0 and view):
        largest = min(BINARY_FRAME_SIZE, max_frame_size or frame_size)
        if head > largest:
            if largest < BINARY_FRAME_SIZE:
                raise TooLargeForPeer(
                    f"a {env.kind.name} frame header of {head} bytes, where the peer takes "
                    f"data-channel messages of at most {largest}",
                    size=head,
                    limit=largest,
                )
            raise LocalProtocolError("call header does not fit in one frame")
        first_room = min(frame_size - HEADER_SIZE, largest - head)
    frames = []
    more = _MORE if len(view) > first_room else 0
    frames.append(
        _HEADER.pack(MAGIC, env.kind, flags | more, env.call_id, env.seq, len(header_bytes))
        + header_bytes
        + view[:first_room]
    )
    offset = first_room
    room = frame_size - HEADER_SIZE
    while offset < len(view):
        more = _MORE if len(view) - offset > room else 0
        frames.append(
            _HEADER.pack(MAGIC, env.kind, flags | more, env.call_id, env.seq, 0)
            + view[offset : offset + room]
        )
        offset += room
    return frames


@dataclass(slots=True)
class _Partial:
    # kind, flags, call id, seq, and the header as it came: read (and checked) on the first
    # frame, kept as its bytes until the last (parsed, it could hold 20 times as much)
    first: tuple[int, int, int, int, bytes]
    chunks: list[bytes]
    size: int
    started: float


class BinaryReader:
    """Reads binary frames from one or more peers, reassembling payloads split over frames.

    Caps: ``max_message_size`` bytes per payload (:class:`MessageTooBig`), ``max_pending``
    unfinished payloads per key (:class:`TooManyPending`), and ``max_age`` seconds an unfinished
    payload may wait for its end: :meth:`expire` drops older ones (and :meth:`feed` runs it when
    a second has passed since it last did). One key holds at most ``max_pending ×
    max_message_size`` payload bytes (:meth:`held_bytes`), each for at most ``max_age`` seconds.

    ``clock`` gives the time in seconds (any monotonic clock); ``feed(..., now=...)`` and
    ``expire(now)`` take it from the caller instead.
    """

    def __init__(
        self,
        *,
        max_message_size: int = 4 * 2**20,
        max_pending: int = 16,
        max_age: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_message_size = max_message_size
        self.max_pending = max_pending
        self.max_age = max_age
        self._clock = clock
        self._partial: dict[Hashable, dict[tuple[int, int, int], _Partial]] = {}
        self._held = 0
        self._last_expiry: float | None = None
        # Payloads refused part-way, whose later frames are dropped quietly (oldest forgotten).
        self._refused: OrderedDict[tuple[Hashable, tuple[int, int, int]], None] = OrderedDict()

    @property
    def pending(self) -> int:
        """How many unfinished payloads are held, over all keys."""
        return sum(len(partials) for partials in self._partial.values())

    def held_bytes(self, key: Hashable | None = None) -> int:
        """Payload bytes held in unfinished payloads: of ``key``, or of all keys."""
        if key is None:
            return self._held
        return sum(p.size for p in self._partial.get(key, {}).values())

    def feed(self, key: Hashable, data: bytes, now: float | None = None) -> Envelope | None:
        """Take one frame; return the envelope when it is complete.

        Raises only :class:`~p2prpc.errors.RemoteProtocolError` subclasses, for any input, and
        one a payload: the later frames of a payload refused part-way are dropped quietly.
        """
        try:
            return self._feed(key, data, now)
        except RemoteProtocolError:
            if len(data) >= HEADER_SIZE and data[2] & _MORE:
                _, kind_byte, _, call_id, seq, _ = _HEADER.unpack_from(data)
                self._refused[(key, (kind_byte, call_id, seq))] = None
                while len(self._refused) > _MAX_REFUSED:
                    self._refused.popitem(last=False)
            raise

    def _feed(self, key: Hashable, data: bytes, now: float | None) -> Envelope | None:
        if now is None:
            now = self._clock()
        if self._last_expiry is None or now - self._last_expiry >= 1.0:
            self._last_expiry = now
            self.expire(now)
        if type(data) is not bytes:
            data = bytes(data)
        if len(data) < HEADER_SIZE or data[0] != MAGIC:
            raise EnvelopeError("not a binary envelope frame")
        _, kind_byte, flag_byte, call_id, seq, header_length = _HEADER.unpack_from(data)
        kind = _KIND_OF.get(kind_byte)
        if kind is None:
            raise EnvelopeError(f"unknown kind or flags: kind {kind_byte}")
        if flag_byte & ~_ALL_FLAGS:
            raise EnvelopeError(
                f"unknown kind or flags: {flag_byte} has flags this reader does not know"
            )
        flags = flag_byte
        body_start = HEADER_SIZE + header_length
        if body_start > len(data):
            raise EnvelopeError("binary frame shorter than its header")
        partials = self._partial.get(key)
        slot = (kind_byte, call_id, seq)
        if self._refused and (key, slot) in self._refused:
            if not flags & _MORE:
                del self._refused[(key, slot)]
            return None
        if partials is None:
            partials = {}
            partial = None
        else:
            partial = partials.get(slot)
        if partial is None:
            header = _read_header(kind, flags, data, body_start)
            chunk = data[body_start:]
            if not flags & _MORE:
                self._check_size(len(chunk))
                return _build(kind, flags, call_id, seq, header, chunk)
            if len(partials) >= self.max_pending:
                raise TooManyPending(f"more than {self.max_pending} unfinished binary payloads")
            self._check_size(len(chunk))
            self._partial[key] = partials
            raw = data[HEADER_SIZE:body_start]
            partials[slot] = _Partial((kind, flags, call_id, seq, raw), [chunk], len(chunk), now)
            self._held += len(chunk)
            return None
        if header_length:
            self._drop(key, slot)
            raise EnvelopeError("a continuation frame carries a header")
        chunk = data[body_start:]
        if partial.size + len(chunk) > self.max_message_size:
            self._drop(key, slot)
            self._check_size(partial.size + len(chunk))
        if flags & _MORE:
            partial.chunks.append(chunk)
            partial.size += len(chunk)
            self._held += len(chunk)
            return None
        self._drop(key, slot)
        k, first_flags, cid, sq, raw = partial.first
        header = _read_header(Kind(k), first_flags, raw, 0)  # read once already: it reads
        payload = b"".join([*partial.chunks, chunk])
        return _build(Kind(k), first_flags, cid, sq, header, payload)

    def expire(self, now: float | None = None) -> int:
        """Drop the unfinished payloads started more than ``max_age`` seconds before ``now``.

        Returns how many were dropped.
        """
        if now is None:
            now = self._clock()
        stale = [
            (key, slot)
            for key, partials in self._partial.items()
            for slot, partial in partials.items()
            if now - partial.started > self.max_age
        ]
        for key, slot in stale:
            self._drop(key, slot)
        return len(stale)

    def discard(self, key: Hashable) -> None:
        """Forget every unfinished payload of one peer."""
        partials = self._partial.pop(key, None)
        if partials is not None:
            self._held -= sum(p.size for p in partials.values())

    def _check_size(self, size: int) -> None:
        if size > self.max_message_size:
            raise MessageTooBig(f"binary payload over {self.max_message_size} bytes")

    def _drop(self, key: Hashable, slot: tuple[int, int, int]) -> None:
        partials = self._partial.get(key)
        if partials is not None:
            partial = partials.pop(slot, None)
            if partial is not None:
                self._held -= partial.size
            if not partials:
                del self._partial[key]


def _read_header(kind: Kind, flags: int, data: bytes, end: int) -> dict[Any, Any]:
    """The header of a first frame, ``data[HEADER_SIZE:end]`` (``end`` 0: ``data`` is the
    header itself), compact or JSON."""
    raw = data[HEADER_SIZE:end] if end else data
    if flags & _COMPACT:
        return _parse_compact(kind, raw)
    if raw:
        return _parse_header(memoryview(raw))
    return {}


def _parse_header(raw: bytes | memoryview) -> dict[str, Any]:
    """A JSON header, refused unparsed when it would hold more than a header may
    (:func:`~p2prpc.wire.held.parse_refusal`: nothing legitimate comes near it)."""
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError as e:
        raise EnvelopeError(f"binary envelope header is not JSON: {e}") from e
    refusal = parse_refusal(text, "a binary envelope header")
    if refusal is not None:
        raise EnvelopeError(refusal)
    try:
        header = jsjson.DECODER.decode(text)
    except (ValueError, RecursionError) as e:
        raise EnvelopeError(f"binary envelope header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise EnvelopeError("binary envelope header must be a JSON object")
    return header


def _build(
    kind: Kind, flags: int, call_id: int, seq: int, header: dict[Any, Any], payload: bytes
) -> Envelope:
    has_payload = bool(flags & _PAYLOAD)
    compressed = bool(flags & _COMPRESSED)
    if kind is Kind.REPLY or kind is Kind.MSG:  # the commonest: checked first
        if not has_payload:
            raise EnvelopeError(f"{kind.name.lower()} frame without a payload")
        return Envelope(
            kind,
            call_id,
            seq,
            payload=payload,
            has_payload=True,
            status=(
                _status(header.get("status"), header.get("trailers")) if flags & _FINAL else None
            ),
            compressed=compressed,
        )
    status = (
        _status(header.get("status"), header.get("trailers"))
        if kind is Kind.STATUS or flags & _FINAL
        else None
    )
    if kind is Kind.STATUS and status is None:
        raise EnvelopeError("status frame without a status")
    if kind is Kind.CALL:
        method = header.get("call")
        if not isinstance(method, str) or not _valid_method(method):
            raise EnvelopeError("binary call must name /package.Service/Method")
        metadata = header.get("metadata")
        encoding = header.get("encoding")
        return Envelope(
            Kind.CALL,
            call_id,
            seq,
            method=method,
            timeout=_timeout(header.get("timeout")),
            metadata=() if metadata is None else _metadata(metadata, "metadata"),
            payload=payload if has_payload else None,
            has_payload=has_payload,
            encoding=None if encoding is None else _encoding(encoding),
            compressed=compressed,
        )
    if kind is Kind.HELLO:
        hello = header.get("hello")
        if not isinstance(hello, dict):
            raise EnvelopeError("hello must be an object")
        return Envelope(Kind.HELLO, call_id, hello=hello)
    if kind is Kind.HEADERS:
        return Envelope(Kind.HEADERS, call_id, metadata=_metadata(header.get("headers"), "headers"))
    if kind is Kind.WANT:
        return _want(header, call_id)
    if kind is Kind.HAVE:
        return _have(header, call_id, seq)
    if kind is Kind.PUBLISH:
        if not has_payload:
            raise EnvelopeError("publish frame without a payload")
        published = header.get(_PUBLISHED)
        if published is None:
            return _publish(header, call_id, seq, payload)
        topic, origin, hops, relayed, publisher, signature = published
        return Envelope(
            Kind.PUBLISH,
            call_id,
            seq,
            payload=payload,
            has_payload=True,
            topic=topic,
            origin=origin,
            hops=hops,
            relayed_to=relayed,
            publisher=publisher,
            signature=signature,
        )
    if kind is Kind.CIRCUIT:
        return Envelope(
            Kind.CIRCUIT,
            call_id,
            seq,
            payload=payload if has_payload else None,
            has_payload=has_payload,
            body=header or None,
        )
    if kind is Kind.REPLY_WINDOW or kind is Kind.MSG_WINDOW:
        if has_payload or header:
            raise EnvelopeError(f"a {kind.name.lower()} frame carries no header and no payload")
        return Envelope(kind, call_id, _increment(seq))
    if kind in (Kind.MSG, Kind.REPLY) and not has_payload:
        raise EnvelopeError(f"{kind.name.lower()} frame without a payload")
    return Envelope(
        kind,
        call_id,
        seq,
        payload=payload if has_payload else None,
        has_payload=has_payload,
        status=status,
        compressed=compressed,
    )
