"""The P2PT data-channel frame codec: messages to ``^``-prefixed JSON chunks and back.

P2PT 1.6.2 sends every message as one or more data-channel texts ``'^' + JSON.stringify(data)``
where ``data`` is ``{id, msg, o?, c, last?}`` (in that key order): ``msg`` is at most 16000
JavaScript string units of the message text, ``c`` numbers the chunks from 0, ``last: true`` marks
the final one, and ``o: 1`` says that the joined text is the JSON of a non-string value. This module
produces those texts as JavaScript would (byte for byte for a string message; for other values the
JSON text parses to what JavaScript would have sent), and turns received texts back into messages
through a :class:`Reassembler` that, unlike P2PT, keys partial messages by peer and id and bounds
what a peer can make it hold.

It is pure: no asyncio, no sockets, no clock (callers pass ``now``), so it can be fuzzed freely.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias, cast

from p2prpc.errors import (
    FrameError,
    InvalidMessage,
    MessageTooBig,
    ParsedTooBig,
    RemoteProtocolError,
    TooLargeForPeer,
    TooManyPending,
)

from . import jsjson
from .held import estimate_held, parse_refusal
from .jsjson import js_length

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "MAX_PARSED_SIZE",
    "MAX_PEER_BYTES",
    "MAX_TOTAL_BYTES",
    "MESSAGE_PREFIX",
    "Frame",
    "JSONValue",
    "Message",
    "MessageExpired",
    "Reassembler",
    "decode_frame",
    "encode_frame",
    "encode_message",
    "held_size",
    "js_length",
    "new_message_id",
]

MAX_MESSAGE_LENGTH: int = 16000
"""Most JavaScript string units (UTF-16 code units) of message text P2PT puts in one frame."""

MESSAGE_PREFIX: str = "^"
"""The character that marks a data-channel text as a P2PT frame."""

_MAX_REFUSED = 4096

MAX_PEER_BYTES: int = 64 * 2**20
"""Default bytes of unfinished message text one peer can make a :class:`Reassembler` hold."""

MAX_TOTAL_BYTES: int = 256 * 2**20
"""Default bytes of unfinished message text all peers together can make it hold."""

MAX_PARSED_SIZE: int = 64 * 2**20
"""Default bytes the parsed value of one incoming JSON message may hold (estimated before it is
parsed: :func:`p2prpc.wire.held.estimate_held`)."""

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
"""A value that travels as a P2PT message: a string as is, anything else as its JSON text."""


# --- frames ------------------------------------------------------------------------------------


def new_message_id() -> int:
    """Return a fresh message id as P2PT picks one: uniformly random in 100000..199999."""
    return random.randrange(100000, 200000)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded P2PT frame: chunk ``c`` of the text of message ``id``.

    ``msg`` is the chunk text exactly as sent; a JavaScript sender may have cut a surrogate pair in
    two, so it can end or begin with a lone surrogate. ``last`` marks the final chunk and ``o`` says
    that the joined text is JSON, both as JavaScript truthiness of the received values.
    """

    id: int
    msg: str
    c: int
    last: bool
    o: bool


def encode_frame(frame: Frame) -> str:
    """Return the data-channel text of ``frame`` exactly as P2PT writes it.

    Keys come in P2PT's order ``id, msg, o, c, last``; ``o`` and ``last`` appear only when set.
    """
    parts = ['^{"id":', int.__repr__(frame.id), ',"msg":', jsjson.quote(frame.msg)]
    if frame.o:
        parts.append(',"o":1')
    parts += [',"c":', int.__repr__(frame.c)]
    if frame.last:
        parts.append(',"last":true')
    parts.append("}")
    return "".join(parts)


def _split(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` UTF-16 units, never inside a surrogate pair.

    P2PT cuts blindly every 16000 units; keeping pairs whole (so a piece may be one unit short)
    costs a JavaScript receiver nothing and keeps every frame valid UTF-8. Always returns at least
    one piece, so the empty text is sent as one empty chunk.
    """
    if text.isascii():
        return [text[start : start + limit] for start in range(0, len(text), limit)] or [""]
    units = text.encode("utf-16-le", "surrogatepass")  # two bytes a unit, high byte second
    total = len(units) // 2
    pieces: list[str] = []
    start = 0
    while start < total:
        end = min(start + limit, total)
        opens_pair = 0xD8 <= units[2 * end - 1] <= 0xDB  # high byte of the unit before the cut
        if end < total and opens_pair and 0xDC <= units[2 * end + 1] <= 0xDF:
            end -= 1  # never cut between the halves of a surrogate pair
        pieces.append(units[2 * start : 2 * end].decode("utf-16-le", "surrogatepass"))
        start = end
    return pieces


def encode_message(
    message: JSONValue,
    msg_id: int,
    *,
    chunk_length: int = MAX_MESSAGE_LENGTH,
    max_frame_bytes: int | None = None,
) -> list[str]:
    """Return the frame texts that send ``message`` under id ``msg_id``, in sending order.

    A ``str`` travels as it is; any other JSON value travels as its JSON text with ``"o": 1``
    (P2PT does this for JavaScript objects, and its receivers parse any text marked ``o``).
    ``chunk_length`` is the most UTF-16 units of text per frame (P2PT sends 16000 and accepts
    chunks of any size). Unlike P2PT, a surrogate pair is never cut in two, so a chunk may hold
    one unit less, and every frame is valid UTF-8.

    ``max_frame_bytes``: the most bytes one frame may take as UTF-8 (the receiving data
    channel's max-message-size): a chunk whose frame would take more is cut shorter (a unit
    takes up to 6 bytes of JSON text). Raises :class:`~p2prpc.errors.TooLargeForPeer` when
    frames that small cannot carry a character.

    Unlike P2PT, which sends nothing at all for ``""`` (and then waits forever for a reply), the
    empty string is sent as one empty final chunk, which P2PT receives as ``""``.

    Raises :class:`~p2prpc.errors.InvalidMessage` when ``message`` is not a JSON value (another
    type, NaN or Infinity, a non-str key, a cycle).
    """
    if isinstance(msg_id, bool) or not isinstance(msg_id, int):
        raise TypeError(f"msg_id must be an int, not {type(msg_id).__name__}")
    if chunk_length < 2:
        raise ValueError("chunk_length must be at least 2 to hold a surrogate pair")
    is_text = isinstance(message, str)
    text = cast(str, message) if is_text else jsjson.stringify(message, InvalidMessage)
    pieces = _split(text, chunk_length)
    if max_frame_bytes is not None:
        # The frame around an empty chunk, with room for a chunk index of 10 digits.
        around = len(encode_frame(Frame(msg_id, "", 10**9, True, True)).encode()) - 2
        if around + 2 + 6 * min(chunk_length, js_length(text)) > max_frame_bytes:
            pieces = [part for piece in pieces for part in _fit(piece, max_frame_bytes - around)]
    last = len(pieces) - 1
    return [
        encode_frame(Frame(id=msg_id, msg=piece, c=index, last=index == last, o=not is_text))
        for index, piece in enumerate(pieces)
    ]


def _fit(piece: str, budget: int) -> list[str]:
    """``piece`` cut so that each part takes at most ``budget`` bytes as a JSON string in UTF-8
    (its quotes included), never inside a surrogate pair."""
    size = len(jsjson.quote(piece).encode())
    if size <= budget:
        return [piece]
    units = js_length(piece)
    if units <= 2:  # one character (or a surrogate pair) that does not fit alone
        raise TooLargeForPeer(
            f"a P2PT frame holding one character takes {size} bytes more than the "
            f"{budget} a frame may spend on text here",
            size=size,
            limit=budget,
        )
    cut = min(units - 1, max(2, units * budget // size))  # in proportion, then again if need be
    return [part for half in _split(piece, cut) for part in _fit(half, budget)]


def _parse_json(text: str, what: str, start: int = 0) -> Any:
    """Parse ``text[start:]`` as strict JSON (as ``JSON.parse`` would), raising only FrameError."""
    try:
        return jsjson.parse(text, start)
    except RecursionError:
        raise FrameError(f"{what} is nested too deeply to parse") from None
    except ValueError as exc:
        raise FrameError(f"{what} is not valid JSON: {exc}") from None


def _shorten(text: str | bytes, limit: int = 60) -> str:
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")


def _describe(value: object) -> str:
    """Name a received JSON value for an error message without repr-ing a huge or deep one."""
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)[:60]
    if isinstance(value, str):
        return _shorten(value)
    return type(value).__name__


# The id of a frame as P2PT writes it (``id`` first), read even when the rest is not JSON.
_LEADING_ID = re.compile(r'\^\{\s*"id"\s*:\s*(-?[0-9]{1,16})\s*[,}]')


def decode_frame(data: str | bytes) -> Frame | None:
    """Decode one received data-channel message.

    Returns ``None`` when the text does not start with ``^``: it is not a P2PT frame (P2PT only
    emits such data as a ``data`` event). Bytes are read as UTF-8. Raises
    :class:`~p2prpc.errors.FrameError`, and nothing else, when a ``^`` text is not a JSON
    object with an int ``id``, a str ``msg`` and an int ``c >= 0`` (``last`` and ``o`` are
    optional and read by JavaScript truthiness; other keys are ignored). The error names the
    frame's message id (``error.message_id``) whenever one can be read: from the object, or,
    when the text is not JSON, from its start as P2PT writes it (``^{"id":<int>,``), so that
    whoever waits on that id can be told.
    """
    try:
        return _decode_frame(data)
    except FrameError as error:
        if error.message_id is None:
            head = data[:64]
            text = head if isinstance(head, str) else bytes(head).decode("utf-8", "replace")
            found = _LEADING_ID.match(text)
            if found is not None:
                error.message_id = int(found.group(1))
        raise


def _decode_frame(data: str | bytes) -> Frame | None:
    if isinstance(data, str):
        if not data.startswith(MESSAGE_PREFIX):
            return None
        text = data  # read from 1 on: no copy of a frame's text
    else:
        if not data.startswith(b"^"):
            return None
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"frame is not valid UTF-8: {exc}") from None
    refusal = _frame_refusal(text, 1)
    if refusal is not None:
        raise FrameError(refusal)
    obj = _parse_json(text, "frame", 1)
    if not isinstance(obj, dict):
        raise FrameError(f"frame is not a JSON object: {_shorten(data)}")
    msg_id = obj.get("id")
    msg = obj.get("msg")
    index = obj.get("c")
    if isinstance(msg_id, bool) or not isinstance(msg_id, int):
        raise FrameError(f"frame id must be an integer, got {_describe(msg_id)}")
    if not isinstance(msg, str):
        _refuse(msg_id, f"frame msg must be a string, got {type(msg).__name__}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        _refuse(msg_id, f"frame c must be an integer >= 0, got {_describe(index)}")
    return Frame(
        id=msg_id,
        msg=msg,
        c=index,
        last=jsjson.truthy(obj.get("last")),
        o=jsjson.truthy(obj.get("o")),
    )


# The start of a frame as P2PT writes it, up to the quote that opens its ``msg`` string.
_FRAME_HEAD = re.compile(
    r'[ \t\n\r]*\{[ \t\n\r]*"id"[ \t\n\r]*:[ \t\n\r]*-?[0-9]+[ \t\n\r]*,'
    r'[ \t\n\r]*"msg"[ \t\n\r]*:[ \t\n\r]*"'
)


def _frame_refusal(text: str, start: int) -> str | None:
    """Why a frame's text must not be parsed, or ``None``.

    A frame's ``msg`` is one string, which holds what it takes (the message's own budgets count
    it); everything else in the frame is a few small keys, held to a bounded parse
    (:func:`~p2prpc.wire.held.parse_refusal`). When the frame starts as P2PT writes it
    (``{"id":<int>,"msg":"``), the ``msg`` string is skipped with the JSON scanner and the rest
    measured; a frame in any other key order is measured whole.
    """
    head = _FRAME_HEAD.match(text, start)
    if head is None:
        return parse_refusal(text[start:], "frame")
    try:
        _, end = jsjson.DECODER.raw_decode(text, head.end() - 1)  # the msg string alone
    except ValueError:
        return None  # not JSON: the parser says why
    return parse_refusal(text[start : head.end()] + '"' + text[end:], "frame (besides its msg)")


def _refuse(msg_id: int, reason: str) -> NoReturn:
    error = FrameError(reason)
    error.message_id = msg_id
    raise error


# --- reassembly --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A complete received message: the ``str`` sent, or the parsed JSON value if ``o`` was set."""

    id: int
    value: JSONValue


class MessageExpired(RemoteProtocolError):
    """A peer left a message unfinished for longer than ``max_message_age``; it was dropped."""


def held_size(chunk: str) -> int:
    """The bytes a received chunk of text takes in memory (``sys.getsizeof``).

    A Python ``str`` stores 1, 2 or 4 bytes a character, by its widest character, plus a small
    header: that, not the text's length, is what a peer makes us hold.
    """
    return sys.getsizeof(chunk)


class _Partial:
    """The chunks received so far of one unfinished message."""

    __slots__ = ("chunks", "held", "length", "next_c", "started")

    def __init__(self, first: str, length: int, held: int, started: float) -> None:
        self.chunks = [first]
        self.length = length
        self.held = held
        self.next_c = 1
        self.started = started


class _Key:
    """The unfinished messages of one key (peer) and the bytes they hold."""

    __slots__ = ("held", "partials")

    def __init__(self) -> None:
        self.partials: dict[int, _Partial] = {}
        self.held = 0


class Reassembler:
    """Reassembles chunked messages keyed by (key, id) where key identifies the peer (any hashable).

    Feed it every decoded frame of every peer with :meth:`feed`; it returns the :class:`Message`
    when a final chunk completes one. A data channel is ordered, so a message's chunks must come
    as ``c = 0, 1, 2, ...``; messages of different peers, and different ids of one peer, may
    interleave freely. P2PT keys its buffer by id alone and never bounds it; here these caps bound
    what peers can make this object hold:

    - ``max_message_length``: the most UTF-16 units one message may total
      (:class:`~p2prpc.errors.MessageTooBig` beyond it);
    - ``max_pending``: the most unfinished messages one key may have at once
      (:class:`~p2prpc.errors.TooManyPending` for one more);
    - ``max_peer_bytes`` (default 64 MiB) and ``max_total_bytes`` (default 256 MiB): the bytes of
      unfinished text one key, and all keys together, may hold; a chunk that would pass either
      budget is refused with :class:`~p2prpc.errors.TooManyPending` and its message dropped.
      Bytes are counted as the received chunks take them in memory (:func:`held_size`: 1, 2 or
      4 bytes a character, by the chunk's widest one, plus about 50 bytes a chunk);
    - ``max_age``: :meth:`expire` drops unfinished messages started more than this many seconds
      before the ``now`` it is given (the caller owns the clock and calls it periodically);
    - ``max_parsed_size`` (default 64 MiB): the bytes the parsed value of one message marked as
      JSON may hold. Parsing can multiply a text by 24 (``[{},{},...]``), so the text is
      measured first (:func:`~p2prpc.wire.held.estimate_held`, never below what the value will
      hold, in a few C-speed passes) and a message over the budget is refused with
      :class:`~p2prpc.errors.ParsedTooBig` without being parsed.

    Memory: unfinished text never exceeds ``max_peer_bytes`` for one key nor ``max_total_bytes``
    in all (:attr:`held_bytes`); while a message completes, its joined text exists once more
    (up to 4 bytes a UTF-16 unit of ``max_message_length``) and its parsed value holds at most
    ``max_parsed_size``.

    Every error leaves the reassembler usable and holding nothing of the message that failed.
    """

    def __init__(
        self,
        *,
        max_message_length: int = 16 * 2**20,
        max_pending: int = 64,
        max_age: float = 60.0,
        max_peer_bytes: int = MAX_PEER_BYTES,
        max_total_bytes: int = MAX_TOTAL_BYTES,
        max_parsed_size: int = MAX_PARSED_SIZE,
    ) -> None:
        if (
            max_message_length < 0
            or max_pending < 0
            or not max_age >= 0
            or max_peer_bytes < 0
            or max_total_bytes < 0
            or max_parsed_size < 0
        ):
            raise ValueError(
                "max_message_length, max_pending, max_age, max_peer_bytes, max_total_bytes and "
                "max_parsed_size must not be negative"
            )
        self.max_parsed_size = max_parsed_size
        self._max_message_length = max_message_length
        self._max_pending = max_pending
        self._max_age = max_age
        self.max_peer_bytes = max_peer_bytes
        self.max_total_bytes = max_total_bytes
        self._partials: dict[Hashable, _Key] = {}
        self._pending = 0
        self._pending_length = 0
        self._held = 0
        # Messages refused part-way, whose later chunks are dropped quietly (oldest forgotten).
        self._refused: OrderedDict[tuple[Hashable, int], None] = OrderedDict()

    @property
    def pending(self) -> int:
        """How many unfinished messages are held, over all keys."""
        return self._pending

    @property
    def pending_length(self) -> int:
        """How many UTF-16 units of unfinished message text are held, over all keys."""
        return self._pending_length

    @property
    def held_bytes(self) -> int:
        """How many bytes of unfinished message text are held, over all keys."""
        return self._held

    def held_bytes_of(self, key: Hashable) -> int:
        """How many bytes of unfinished message text ``key`` holds."""
        entry = self._partials.get(key)
        return 0 if entry is None else entry.held

    def feed(self, key: Hashable, frame: Frame, now: float) -> Message | None:
        """Take one frame received from ``key``; return the message it completes, if any.

        A ``c == 0`` frame starts a message, replacing a stale unfinished one with the same id.
        Raises :class:`~p2prpc.errors.FrameError` for a chunk out of order (dropping that message)
        or a final text marked ``o`` that is not JSON, :class:`~p2prpc.errors.MessageTooBig` and
        :class:`~p2prpc.errors.TooManyPending` when a cap or a byte budget is passed
        (:class:`~p2prpc.errors.ParsedTooBig` when the text would hold too much parsed); each error
        names the message (``error.message_id``). The later chunks of a message refused this way
        are dropped without a word (one error a message, not one a chunk).
        """
        try:
            return self._feed(key, frame, now)
        except RemoteProtocolError as error:
            error.message_id = frame.id
            if not frame.last:
                self._refused[(key, frame.id)] = None
                while len(self._refused) > _MAX_REFUSED:
                    self._refused.popitem(last=False)
            raise

    def _feed(self, key: Hashable, frame: Frame, now: float) -> Message | None:
        if frame.c != 0 and (key, frame.id) in self._refused:
            if frame.last:
                del self._refused[(key, frame.id)]
            return None
        length = js_length(frame.msg)
        entry = self._partials.get(key)
        partial = entry.partials.get(frame.id) if entry is not None else None
        if frame.c == 0:
            self._refused.pop((key, frame.id), None)
            if partial is not None:
                self._drop(key, frame.id)
                entry = self._partials.get(key)
            if length > self._max_message_length:
                raise MessageTooBig(
                    f"message {frame.id} is longer than {self._max_message_length} units"
                )
            if frame.last:
                return self._complete(frame.id, [frame.msg], frame.o)
            held = len(entry.partials) if entry is not None else 0
            if held >= self._max_pending:
                raise TooManyPending(
                    f"{held} unfinished messages from this peer already (the cap); "
                    f"message {frame.id} dropped"
                )
            size = held_size(frame.msg)
            self._check_budget(entry, size, frame.id)
            if entry is None:
                entry = self._partials[key] = _Key()
            entry.partials[frame.id] = _Partial(frame.msg, length, size, now)
            entry.held += size
            self._held += size
            self._pending += 1
            self._pending_length += length
            return None
        if partial is None or entry is None:
            raise FrameError(f"chunk {frame.c} of message {frame.id}, which is not in progress")
        if frame.c != partial.next_c:
            self._drop(key, frame.id)
            raise FrameError(
                f"chunk {frame.c} of message {frame.id} where chunk {partial.next_c} was due; "
                "message dropped"
            )
        if partial.length + length > self._max_message_length:
            self._drop(key, frame.id)
            raise MessageTooBig(
                f"message {frame.id} is longer than {self._max_message_length} units; dropped"
            )
        if frame.last:  # the chunk is joined at once, never held
            self._drop(key, frame.id)
            partial.chunks.append(frame.msg)
            return self._complete(frame.id, partial.chunks, frame.o)
        size = held_size(frame.msg)
        try:
            self._check_budget(entry, size, frame.id)
        except TooManyPending:
            self._drop(key, frame.id)
            raise
        partial.chunks.append(frame.msg)
        partial.length += length
        partial.held += size
        partial.next_c += 1
        entry.held += size
        self._held += size
        self._pending_length += length
        return None

    def _check_budget(self, entry: _Key | None, size: int, msg_id: int) -> None:
        held = entry.held if entry is not None else 0
        if held + size > self.max_peer_bytes:
            raise TooManyPending(
                f"unfinished messages from this peer would hold more than {self.max_peer_bytes} "
                f"bytes; message {msg_id} dropped"
            )
        if self._held + size > self.max_total_bytes:
            raise TooManyPending(
                f"unfinished messages from all peers would hold more than {self.max_total_bytes} "
                f"bytes; message {msg_id} dropped"
            )

    def expire(self, now: float) -> int:
        """Drop the unfinished messages started more than ``max_age`` before ``now``.

        Returns how many were dropped.
        """
        return len(self.expired(now))

    def expired(self, now: float) -> list[tuple[Hashable, int]]:
        """Drop the unfinished messages started more than ``max_age`` before ``now``.

        Returns the (key, message id) of each one dropped, so that the caller can tell its peer.
        """
        stale = [
            (key, msg_id)
            for key, entry in self._partials.items()
            for msg_id, partial in entry.partials.items()
            if now - partial.started > self._max_age
        ]
        for key, msg_id in stale:
            self._drop(key, msg_id)
        return stale

    def discard(self, key: Hashable) -> int:
        """Drop every unfinished message of ``key`` (its peer went away); return how many."""
        entry = self._partials.pop(key, None)
        if entry is None:
            return 0
        partials = entry.partials
        self._pending -= len(partials)
        self._pending_length -= sum(partial.length for partial in partials.values())
        self._held -= entry.held
        return len(partials)

    def _drop(self, key: Hashable, msg_id: int) -> None:
        entry = self._partials[key]
        partial = entry.partials.pop(msg_id)
        entry.held -= partial.held
        if not entry.partials:
            del self._partials[key]
        self._pending -= 1
        self._pending_length -= partial.length
        self._held -= partial.held

    def _complete(self, msg_id: int, chunks: list[str], is_json: bool) -> Message:
        text = "".join(chunks)
        if not text.isascii() and jsjson.SURROGATE.search(text):
            text = jsjson.rejoin_surrogates(text)  # a JavaScript sender may have cut a pair in two
        if not is_json:
            return Message(id=msg_id, value=text)
        estimate = estimate_held(text, self.max_parsed_size)
        if estimate > self.max_parsed_size:
            raise ParsedTooBig(
                f"message {msg_id} would hold about {estimate} bytes parsed, over the "
                f"{self.max_parsed_size} a message may; dropped unparsed",
                estimate=estimate,
                budget=self.max_parsed_size,
            )
        value = cast(JSONValue, _parse_json(text, f"message {msg_id} (marked as JSON)"))
        return Message(id=msg_id, value=value)
