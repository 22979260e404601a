"""What received data holds in memory, measured after parsing or bounded before it. Pure: no I/O.

A JSON text of ``n`` characters parses into Python objects that can take 24 times as much
(``[{},{},...]``: a 64-byte dict and an 8-byte slot for every 3 characters). Budgets that count
the text would let a peer make a node hold far more than they say, so every receive-side budget
counts what is held instead:

- :func:`held_size` measures a parsed value (or bytes) as CPython holds it;
- :func:`estimate_held` bounds, before parsing, what :func:`held_size` of the parsed value will
  be, with a handful of C-speed passes over the text, so that a message too large parsed is
  refused without ever being parsed;
- :func:`parse_refusal` holds a JSON text whose size nothing legitimate needs to pass (a binary
  envelope's header, a tracker message, a P2PT frame's keys) to :data:`PARSE_FACTOR` bytes a
  character plus :data:`PARSE_ALLOWANCE`, so that parsing it costs about what was received;
- :class:`ByteBudget` counts held bytes per peer and over all peers, and says no before a
  take would pass either cap.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Hashable
from gc import get_referents
from itertools import chain, compress
from typing import cast

__all__ = [
    "ENVELOPE_OVERHEAD",
    "PARSE_ALLOWANCE",
    "PARSE_FACTOR",
    "ByteBudget",
    "estimate_held",
    "held_size",
    "parse_refusal",
]

#: Bytes an envelope waiting in a queue or buffer takes besides its payload (the envelope object,
#: its slot in the queue, the strings it names): what a small message costs at least.
ENVELOPE_OVERHEAD = 512

# The most CPython (3.11 to 3.13, 64-bit) takes for each kind of object parsed from JSON, as the
# estimate counts them: a dict of n entries (sys.getsizeof: 184 for 1 to 5 entries, 64 + about 38
# a entry beyond), a list of n items (json builds them by appending, so up to 1/8 spare slots), a
# string's header (49 for ASCII, up to 80 for a string of wide characters), any other scalar (an
# int is 28 plus 4 bytes a 9 digits, a float 24: the digits are in the text, counted once more).
_DICT, _EMPTY_DICT, _ENTRY = 184, 64, 40
_LIST, _EMPTY_LIST, _ITEM = 104, 56, 9
_STRING = 80
_SCALAR = 32

# An escape that may make a character beyond U+00FF (``\\u00xx`` makes one of 1 byte).
_WIDENING_ESCAPE = re.compile(r"\\u(?!00)")


def held_size(payload: object) -> int:
    """Bytes a payload takes in memory: its length for bytes; for a JSON value, what CPython
    holds for each of its objects (``sys.getsizeof``: dicts and lists with their tables, strings
    with their header at 1, 2 or 4 bytes a character, numbers), summed without recursion.

    Objects a parse shares (the empty string, small ints, repeated keys) are counted each time
    they appear, so this is at least what the value holds. A value of plain dicts and lists
    (what a parse makes) is walked a level at a time with C-level passes (the keys and values
    of the level's dicts, ``gc.get_referents`` of its lists), 1.2 to 1.8 times as fast as an
    object at a time: a peer's value is measured before its work is charged, so this is work
    no budget paces. A level holding anything else (subclasses of dict or list, which code may
    pass) is walked an object at a time from there."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return len(payload)
    getsizeof = sys.getsizeof
    total, level = 0, [payload]
    while level:
        kinds = list(map(type, level))
        if not _PLAIN.issuperset(kinds):
            return total + _walked(level)
        total += sum(map(getsizeof, level))
        values: list[object] = []
        if dict in kinds:
            dicts = cast(list[dict[object, object]], list(compress(level, map(_IS_DICT, kinds))))
            values = list(chain.from_iterable(map(dict.keys, dicts)))
            values += chain.from_iterable(map(dict.values, dicts))
        lists = list(compress(level, map(_IS_LIST, kinds)))
        level = values + get_referents(*lists) if lists else values
    return total


def _walked(items: list[object]) -> int:
    """:func:`held_size` of ``items``, an object at a time (any dict or list subclass)."""
    getsizeof = sys.getsizeof
    total, stack = 0, items
    while stack:
        item = stack.pop()
        total += getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return total


#: The types a JSON parse makes: their referents are what the level walk counts.
_PLAIN = frozenset({dict, list, str, int, float, bool, type(None)})
_IS_DICT = {dict}.__contains__
_IS_LIST = {list}.__contains__


def estimate_held(text: str, within: int | None = None) -> int:
    """At least :func:`held_size` of what ``text`` parses to as JSON, computed without parsing.

    Counts characters that open values (``{ [ " , :``) with ``str.count`` (a few passes in C over
    the text, about a millisecond a megabyte) and charges each the most its object can take:

    - every ``{`` a dict (184 bytes; ``{}`` 64), every ``:`` a dict entry (40);
    - every ``[`` a list (104; ``[]`` 56), every ``[`` or ``,`` a list item (9);
    - every two ``"`` a string header (80), and the text's characters once more, as wide as the
      text's widest (1, 2 or 4 bytes; 4 when it has ``\\u`` escapes beyond ``\\u00ff``, which may
      widen a string);
    - every other value a ``,``, ``:`` or the start can introduce a scalar (32).

    This first count takes characters inside strings as if they opened values too (an SDP full of
    ``:`` is overestimated about 70 times). When it passes ``within`` (the caller's limit), the
    text is counted again with its strings' contents set aside (the escapes that hide a quote are
    removed, the text is cut at its quotes), so that what strings say never counts as structure:
    for any text of up to about 32 KiB, and for a longer one whose strings average 114
    characters or more (for shorter strings, what they say can make the first count at most about
    3 times what they hold). Malformed text gets a number too (the parser refuses
    it after). Always an upper bound.
    """
    length = len(text)
    if length == 0:
        return 0
    width = _width(text)
    count = text.count
    quotes = count('"')
    estimate = _estimate(
        width * length,
        quotes,
        count("{"),
        count("["),
        count("{}"),
        count("[]"),
        count(","),
        count(":"),
    )
    if within is None or estimate <= within or not quotes:
        return estimate
    refined = _estimate_outside_strings(text, width * length)
    return estimate if refined < 0 else min(estimate, refined)


#: Bytes the second count may hold besides a text's size: cutting a text at its quotes makes a
#: piece (57 bytes at most, its characters besides) of each string and of what lies between them.
_CUT_ALLOWANCE = 32 * 1024
_PIECE = 57


def _estimate_outside_strings(text: str, characters: int) -> int:
    """:func:`estimate_held`'s second count: structure only where no string is open, or ``-1``
    when the text has too many strings for it.

    The escapes that may hide a quote (``\\\\`` first, then ``\\"``) are removed from a copy,
    which is cut at its quotes; what lies outside strings (every other piece) is counted, each
    string kept as ``""``. Runs only while the pieces hold at most the text's size or
    :data:`_CUT_ALLOWANCE`, whichever is more (a text of long strings, or a small one), so that
    it holds and costs about what the first count does."""
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    quotes = text.count('"')
    if quotes * _PIECE > max(len(text), _CUT_ALLOWANCE):
        return -1
    pieces = text.split('"')[0::2]  # the strings' pieces are freed at once
    outside = '""'.join(pieces)
    del pieces
    count = outside.count
    return _estimate(
        characters,
        quotes,
        count("{"),
        count("["),
        count("{}"),
        count("[]"),
        count(","),
        count(":"),
    )


def _width(text: str) -> int:
    """Bytes a character of ``text``'s strings may take once parsed (1, 2 or 4)."""
    if "\\u" in text and _WIDENING_ESCAPE.search(text):
        return 4  # an escape beyond \\u00ff may make any character, and widens its string
    if text.isascii():
        return 1
    widest = ord(max(text))
    return 1 if widest < 0x100 else 2 if widest < 0x10000 else 4


def _estimate(
    characters: int,
    quotes: int,
    objects: int,
    arrays: int,
    empty_objects: int,
    empty_arrays: int,
    commas: int,
    colons: int,
) -> int:
    """The most the values these counts can open hold, besides ``characters`` bytes of text."""
    strings = (quotes + 1) // 2
    scalars = max(0, 1 + commas + colons - strings - empty_objects - empty_arrays)
    return (
        _DICT * (objects - empty_objects)
        + _EMPTY_DICT * empty_objects
        + _ENTRY * colons
        + _LIST * (arrays - empty_arrays)
        + _EMPTY_LIST * empty_arrays
        + _ITEM * max(0, arrays + commas - empty_arrays)
        + _STRING * strings
        + characters
        + _SCALAR * scalars
    )


#: Bytes a character that a JSON text which is not a whole P2PT message may hold parsed, besides
#: :data:`PARSE_ALLOWANCE` (:func:`parse_refusal`). With the text itself (1 byte a character when it
#: is ASCII), its parse then holds at most about 4 times what was received.
PARSE_FACTOR = 3

#: Bytes any such text may hold parsed whatever its size: what small texts full of small objects
#: need (256 metadata entries of one-letter keys and empty values hold about 57 KiB parsed).
PARSE_ALLOWANCE = 64 * 1024


def parse_refusal(text: str, what: str) -> str | None:
    """Why ``text`` must not be parsed, or ``None`` when it may be.

    For the JSON texts whose legitimate forms are small objects (a binary envelope's header, a
    tracker message, the keys of a P2PT frame besides its ``msg``): their parse may hold at most
    :data:`PARSE_FACTOR` bytes a character of ``text`` plus :data:`PARSE_ALLOWANCE`, as
    :func:`estimate_held` bounds it before parsing. ``what`` names the text in the reason; the
    caller raises its own typed error with it.
    """
    bound = PARSE_FACTOR * len(text) + PARSE_ALLOWANCE
    estimate = estimate_held(text, bound)
    if estimate <= bound:
        return None
    return (
        f"{what} of {len(text)} characters would hold about {estimate} bytes parsed, over the "
        f"{bound} such a text may ({PARSE_FACTOR} a character and {PARSE_ALLOWANCE}); not parsed"
    )


class ByteBudget:
    """Bytes held for each key (a peer) and over all keys, capped at ``per_key`` and ``total``.

    :meth:`take` charges bytes before they are held, or refuses (returns ``False``, charging
    nothing) when either cap would be passed; :meth:`give_back` returns them once they are not
    held any more. Whoever takes must give back exactly what it took, on every path.
    """

    __slots__ = ("_held", "_total", "per_key", "total")

    def __init__(self, per_key: int, total: int) -> None:
        if per_key < 0 or total < 0:
            raise ValueError("byte budgets must not be negative")
        self.per_key = per_key
        self.total = total
        self._held: dict[Hashable, int] = {}
        self._total = 0

    def held(self, key: Hashable | None = None) -> int:
        """Bytes held for ``key``, or over all keys."""
        return self._total if key is None else self._held.get(key, 0)

    def take(self, key: Hashable, size: int) -> bool:
        """Charge ``size`` bytes to ``key``; ``False`` (nothing charged) past either cap."""
        held = self._held.get(key, 0)
        if held + size > self.per_key or self._total + size > self.total:
            return False
        self._held[key] = held + size
        self._total += size
        return True

    def give_back(self, key: Hashable, size: int) -> None:
        """Return ``size`` bytes taken for ``key``."""
        if not size:
            return
        left = self._held.get(key, 0) - size
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)
        self._total -= size
