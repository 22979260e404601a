"""Python source text, written so that it is already in the shape ``ruff format`` gives it.

The plugin emits code that must pass ``ruff check`` and ``ruff format --check`` as it is, without
running a formatter. Rather than predicting where the formatter would break a long line, every
construct with several parts is written exploded, one part per line with a trailing comma: the
formatter keeps that shape whatever the length of the names (its "magic trailing comma"), and every
method of every service then reads the same. A construct with one part in brackets is written flat
when it fits and otherwise split as the formatter splits it (:meth:`Source.hugged`); a line that
still overflows, because a name is longer than the page allows, gets ``# noqa: E501``.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

LINE_LENGTH = 100
"""The longest line the emitted code may have (the project's ruff ``line-length``)."""

INDENT = "    "


class Source:
    """Lines of Python source built top to bottom, with an indentation level."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._depth = 0

    @property
    def prefix(self) -> str:
        """The indentation the next line gets."""
        return INDENT * self._depth

    def fits(self, text: str) -> bool:
        """Whether ``text`` fits on one line at the current indentation."""
        return len(self.prefix) + len(text) <= LINE_LENGTH

    def line(self, text: str = "") -> None:
        """Append one line of code at the current indentation (blank when ``text`` is empty).

        A line too long for the page that is more than one word (ruff lets a lone long word
        overflow) is one the formatter cannot break either, as ``"/a.long.Route": Handler(`` or
        ``request: a_long_alias__pb2.ALongMessage,``: it gets ``# noqa: E501``.
        """
        self._lines.append(_allow_overlong(self.prefix + text) if text else "")

    def verbatim(self, lines: Iterable[str]) -> None:
        """Append lines as they are (already indented and checked)."""
        self._lines.extend(lines)

    @contextmanager
    def indent(self) -> Iterator[None]:
        """Indent the lines appended inside the ``with`` block by one more level."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def exploded(self, opening: str, items: Sequence[str], closing: str) -> None:
        """Append ``opening``, then each item on its own deeper line with a comma, then ``closing``.

        ``opening`` ends with the bracket that ``closing`` starts with the match of, as in
        ``exploded("f(", ["a", "b"], ")")``.
        """
        self.line(opening)
        with self.indent():
            for item in items:
                self.line(item + ",")
        self.line(closing)

    def hugged(self, opening: str, item: str, closing: str) -> None:
        """Append ``opening + item + closing`` on one line if it fits, else as the formatter
        splits brackets around a single item: ``opening``, the item on a deeper line, ``closing``.
        """
        if self.fits(opening + item + closing):
            self.line(opening + item + closing)
            return
        self.line(opening)
        with self.indent():
            self.line(item)
        self.line(closing)

    def docstring(self, text: str) -> bool:
        """Append ``text`` as a docstring at the current indentation; nothing if it is blank.

        Returns whether there was a docstring to append.
        """
        lines = docstring_lines(text, len(self.prefix))
        self.verbatim(self.prefix + line if line else "" for line in lines)
        return bool(lines)

    def append_top_level(self, blocks: Iterable[Source]) -> None:
        """Append module-level blocks, each after the blank lines the formatter puts before it.

        A class or a function gets two blank lines before and after it, any other statement one.
        """
        after_definition = False
        for block in blocks:
            definition = block._lines[0].startswith(("class ", "def ", "async def ", "@"))
            self.line()
            if definition or after_definition:
                self.line()
            self.verbatim(block._lines)
            after_definition = definition

    def text(self) -> str:
        """The source text, ending with exactly one newline."""
        return "\n".join(self._lines).rstrip("\n") + "\n"


def _allow_overlong(line: str) -> str:
    """``line``, with ``# noqa: E501`` if it is too long for the page and more than one word."""
    if len(line) > LINE_LENGTH and len(line.split()) > 1:
        return f"{line}  # noqa: E501"
    return line


@dataclass(frozen=True)
class ImportStatement:
    """``import module [as alias]``, or ``from module import name [as alias]`` given ``name``."""

    module: str
    name: str | None = None
    alias: str | None = None

    def lines(self) -> list[str]:
        """The statement as source: one line, or wrapped in parentheses as ruff's isort wraps a
        ``from`` import too long for the page."""
        target = self.module if self.name is None else self.name
        imported = target if self.alias is None else f"{target} as {self.alias}"
        if self.name is None:
            return [_allow_overlong(f"import {imported}")]
        line = f"from {self.module} import {imported}"
        if len(line) <= LINE_LENGTH:
            return [line]
        return [f"from {self.module} import (", _allow_overlong(f"{INDENT}{imported},"), ")"]


def import_lines(sections: Iterable[Iterable[ImportStatement]]) -> list[str]:
    """The import block: each non-empty section sorted as ruff's isort does, blank lines between.

    Within a section, ``import`` statements come before ``from`` statements; modules compare
    case-insensitively with digits as numbers (``v2`` before ``v10``), and the names of one module
    classes first (capitalized), then the rest.
    """
    block: list[str] = []
    for section in sections:
        statements = sorted(set(section), key=_import_key)
        if statements and block:
            block.append("")
        for statement in statements:
            block.extend(statement.lines())
    return block


def _import_key(statement: ImportStatement) -> tuple[object, ...]:
    name = statement.name or ""
    return (
        statement.name is not None,
        _natural(statement.module),
        statement.module,
        not name[:1].isupper(),
        _natural(name),
        name,
        statement.alias or "",
    )


def _natural(text: str) -> tuple[tuple[int, int], ...]:
    """A sort key comparing ``text`` case-insensitively, each run of digits by its value."""
    key: list[tuple[int, int]] = []
    for run in re.finditer(r"\d+|\D", text.lower()):
        piece = run.group()
        key.append((ord("0"), int(piece)) if piece.isdigit() else (ord(piece), 0))
    return tuple(key)


def docstring_lines(text: str, indent: int) -> list[str]:
    """Turn free text (a ``.proto`` comment) into the lines of a docstring, unindented.

    The text is laid out as ``ruff format`` lays out docstrings (first line stripped, the others
    dedented together, trailing spaces and blank edges dropped), and lines too long for the page
    are wrapped at spaces. It is escaped so that any comment makes a valid, lint-clean literal
    whose value is the comment: backslashes are doubled, quotes are escaped where they would end
    the literal or touch its delimiters, and characters outside printable ASCII are written as
    escape sequences (ruff flags look-alike Unicode letters and punctuation; the docstring's value
    keeps them).
    """
    lines = [line.rstrip() for line in text.expandtabs().splitlines()]
    while lines and not lines[0].strip():
        del lines[0]
    while lines and not lines[-1]:
        del lines[-1]
    if not lines:
        return []
    lines = [lines[0].lstrip(), *textwrap.dedent("\n".join(lines[1:])).splitlines()]
    # One column spare on every line for a quote escaped at the start or the end.
    width = LINE_LENGTH - indent - len('"""') - 1
    wrapped = [piece for line in lines for piece in _wrap(line, width)]
    last = len(wrapped) - 1
    escaped = [_escape(line, first=i == 0, last=i == last) for i, line in enumerate(wrapped)]
    if len(escaped) == 1 and indent + len(escaped[0]) + 2 * len('"""') <= LINE_LENGTH:
        return [f'"""{escaped[0]}"""']
    return [f'"""{escaped[0]}', *escaped[1:], '"""']


def _wrap(line: str, width: int) -> list[str]:
    """Split ``line`` at spaces into pieces that fit ``width`` once escaped, keeping its indent.

    A word longer than the width stays whole on its own line (ruff accepts a line that is one
    long word).
    """
    if len(_escape(line)) <= width:
        return [line]
    body = line.lstrip(" ")
    lead = line[: len(line) - len(body)]
    pieces: list[str] = []
    current = ""
    for word in body.split():
        candidate = f"{current} {word}" if current else word
        if current and len(lead) + len(_escape(candidate)) > width:
            pieces.append(lead + current)
            candidate = word
        current = candidate
    pieces.append(lead + current)
    return pieces


def string_literal(text: str) -> str:
    """``text`` as a Python string literal in the shape ``ruff format`` gives it.

    Double quotes, unless the text holds more double quotes than single ones (then single quotes,
    as the formatter prefers whatever needs fewer escapes); backslashes, the quote and characters
    outside printable ASCII are escaped as in docstrings.
    """
    quote = "'" if text.count('"') > text.count("'") else '"'
    out = [quote]
    for char in text:
        out.append("\\" + char if char in ("\\", quote) else _escape_char(char))
    out.append(quote)
    return "".join(out)


_QUOTE_RUN = re.compile(r'"{3,}')


def _escape(text: str, *, first: bool = False, last: bool = False) -> str:
    """Write ``text`` as the inside of a triple-quoted literal (see :func:`docstring_lines`)."""
    quoted = {i for run in _QUOTE_RUN.finditer(text) for i in range(*run.span())}
    if first and text.startswith('"'):
        quoted.add(0)
    if last and text.endswith('"'):
        quoted.add(len(text) - 1)
    out: list[str] = []
    for i, char in enumerate(text):
        out.append("\\" + char if char == "\\" or i in quoted else _escape_char(char))
    return "".join(out)


def _escape_char(char: str) -> str:
    """``char`` as it is if it is printable ASCII, else as an escape sequence."""
    if " " <= char <= "~":
        return char
    if ord(char) <= 0xFF:
        return f"\\x{ord(char):02x}"
    if ord(char) <= 0xFFFF:
        return f"\\u{ord(char):04x}"
    return f"\\U{ord(char):08x}"
