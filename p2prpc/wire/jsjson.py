"""JSON as JavaScript reads and writes it: ``JSON.parse``, ``JSON.stringify``, truthiness, lengths.

P2PT frames, tracker messages and the JSON form of the envelope all travel as JavaScript JSON, so
the three codecs share these. Pure functions: no I/O, no state.

- :data:`DECODER` is ``JSON.parse``: strict JSON, ``NaN`` and ``Infinity`` refused (Python's
  decoder takes them, JavaScript's does not); :func:`parse` reads a whole text with it.
- :func:`quote` and :func:`stringify` are ``JSON.stringify`` of a string and of a value: compact,
  non-ASCII as is, lone surrogates escaped (ES2019), any nesting depth, cycles reported.
- :func:`truthy` is ``if (value)`` for a parsed value (an empty array or object is truthy).
- :func:`js_length` is ``text.length`` (UTF-16 code units); :func:`type_name` names a parsed
  value's JavaScript type for error messages.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn, cast

SURROGATE = re.compile("[\ud800-\udfff]")
"""One surrogate code point (paired or lone), as Python holds text read with ``surrogatepass``."""


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")  # Python reads NaN and Infinity; JavaScript not


# Built once: json.dumps and json.loads with any option build a new encoder or decoder per call.
DECODER = json.JSONDecoder(parse_constant=_reject_constant)
"""``JSON.parse``'s grammar: ``DECODER.decode(text)``, raising ``ValueError`` (or
``RecursionError`` past Python's nesting limit) on anything JavaScript would refuse."""

COMPACT = json.JSONEncoder(separators=(",", ":"))
"""A compact ASCII encoder for headers whose text is ours (no spaces, non-ASCII escaped)."""

_QUOTE = json.JSONEncoder(ensure_ascii=False)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_END = object()


def _skip_space(text: str, start: int) -> int:
    found = _WHITESPACE.match(text, start)
    return start if found is None else found.end()


def parse(text: str, start: int = 0) -> Any:
    """``JSON.parse(text.slice(start))``: strict JSON, surrounding whitespace allowed.

    Raises ``ValueError`` (``json.JSONDecodeError`` or a refused constant) for text JavaScript
    would refuse, and ``RecursionError`` for nesting deeper than Python's recursion limit.
    """
    value, end = DECODER.raw_decode(text, _skip_space(text, start))
    if _skip_space(text, end) != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def truthy(value: object) -> bool:
    """Return whether JavaScript's ``if (value)`` takes the branch for a parsed JSON value."""
    if isinstance(value, list | dict):
        return True  # unlike Python, an empty array or object is truthy
    if isinstance(value, float):
        return value == value and value != 0
    return bool(value)


def type_name(value: object) -> str:
    """A parsed JSON value's type as a phrase for error messages ("an object", "a number")."""
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def js_length(text: str) -> int:
    """Return ``text.length`` as JavaScript counts it: UTF-16 code units.

    A character beyond the Basic Multilingual Plane counts 2; a lone surrogate counts 1.
    """
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def rejoin_surrogates(text: str) -> str:
    """Turn each adjacent high+low surrogate pair of code points into its astral character.

    JavaScript sees such a pair as one character, and a chunk boundary of a JavaScript sender may
    fall between its halves, so text joined from chunks needs this before it is what was sent.
    Lone surrogates stay as they are.
    """
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_surrogates(text: str) -> str:
    """Escape each surrogate code point left in JSON ``text`` as ``\\udxxx`` (ES2019's rule)."""
    if text.isascii() or not SURROGATE.search(text):
        return text
    return SURROGATE.sub(_escape_surrogate, text)


def quote(text: str) -> str:
    """Return ``JSON.stringify(text)``: compact, non-ASCII kept, lone surrogates escaped.

    ``json.dumps(ensure_ascii=False)`` already escapes exactly what JavaScript escapes (``"``,
    ``\\``, ``\\b \\f \\n \\r \\t``, other control characters as lowercase ``\\u00xx``; DEL and
    U+2028/U+2029 unescaped) except lone surrogates, which it would pass through raw and which
    could then not be sent as UTF-8.
    """
    if text.isascii() or not SURROGATE.search(text):
        return _QUOTE.encode(text)
    quoted = _QUOTE.encode(rejoin_surrogates(text))
    return SURROGATE.sub(_escape_surrogate, quoted)


class _Level:
    """One open array or object while :func:`stringify` walks a value without recursion."""

    __slots__ = ("close", "first", "ident", "items", "keyed")

    def __init__(self, items: Any, keyed: bool, close: str, ident: int) -> None:
        self.items = items
        self.keyed = keyed
        self.close = close
        self.ident = ident
        self.first = True


def stringify(value: object, error: type[Exception] = ValueError) -> str:
    """Return the compact JSON text of ``value``, strings written as ``JSON.stringify`` does.

    Receivers parse this text, so only its meaning must match JavaScript's, and where Python can
    keep more it does:

    - floats are written as ``repr`` writes them (``1.0``, ``1e+16``): the shortest digits that
      round-trip, so ``JSON.parse`` yields the very same number JavaScript would have sent, while a
      Python receiver gets a float back instead of an int;
    - integers are written exactly, even beyond 2**53 where a JavaScript receiver rounds them;
    - object keys keep the dict's order (a JavaScript object would list integer-like keys first).

    Walks with an explicit stack, so any nesting depth works and a cycle is reported instead of
    recursing forever. Raises ``error`` (a caller's typed error) for what has no JSON text:
    another type, NaN or Infinity, a non-str key, a cycle, an integer too long to write.
    """
    out: list[str] = []
    stack: list[_Level] = []
    open_containers: set[int] = set()
    item: object = value
    while True:
        if item is None:
            out.append("null")
        elif item is True:
            out.append("true")
        elif item is False:
            out.append("false")
        elif isinstance(item, str):
            out.append(quote(item))
        elif isinstance(item, int):
            try:
                out.append(int.__repr__(item))
            except ValueError as exc:  # beyond sys.get_int_max_str_digits()
                raise error(f"integer too large to write as JSON: {exc}") from None
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise error(f"{item!r} is not a JSON number (NaN and Infinity are not)")
            out.append(float.__repr__(item))
        elif isinstance(item, list | dict):
            ident = id(item)
            if ident in open_containers:
                raise error("message contains a reference cycle; it has no JSON text")
            open_containers.add(ident)
            if isinstance(item, list):
                out.append("[")
                stack.append(_Level(iter(item), False, "]", ident))
            else:
                out.append("{")
                stack.append(_Level(iter(item.items()), True, "}", ident))
        else:
            raise error(
                f"cannot send a {type(item).__name__} as a P2PT message: "
                "use str, int, float, bool, None, list or dict with str keys"
            )
        while stack:
            level = stack[-1]
            entry = next(level.items, _END)
            if entry is _END:
                out.append(level.close)
                open_containers.discard(level.ident)
                stack.pop()
                continue
            if not level.first:
                out.append(",")
            level.first = False
            if level.keyed:
                key, item = cast("tuple[object, object]", entry)
                if not isinstance(key, str):
                    raise error(f"JSON object keys must be str, not {type(key).__name__}")
                out.append(quote(key))
                out.append(":")
            else:
                item = entry
            break
        else:
            return "".join(out)
