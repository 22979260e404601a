"""The ``.proto`` file's comments, kept in its module for the reflection service.

protoc's ``_pb2.py`` modules carry no ``SourceCodeInfo``, so a served file descriptor would lose
the comments that say what each service, method, message and field is for. The module registers
them (leading comments by ``SourceCodeInfo`` path, dotted: ``"4.0.2.1"``) with
:func:`p2prpc.services.reflection.add_source_comments` when it is imported, and reflection then
serves them as the file's ``source_code_info``, which ``p2prpc describe`` (and grpcurl) show.
"""

from __future__ import annotations

import re

from p2prpc.codegen.scope import FileScope
from p2prpc.codegen.source import LINE_LENGTH, Source, string_literal

REFLECTION = "p2prpc.services.reflection"
"""Where the comments are registered: ``p2prpc.services.reflection.add_source_comments``."""


def render_comments(scope: FileScope) -> list[Source]:
    """The statement registering the file's comments, or none when it has none."""
    # Only what describes an element: a message, enum or service, and what lies in them.
    comments = [(path, text) for path, text in scope.all_comments() if path[0] in (4, 5, 6)]
    if not comments:
        return []
    block = Source()
    block.line(f"{scope.runtime('add_source_comments', REFLECTION)}(")
    with block.indent():
        block.line(f"{string_literal(scope.file.name)},")
        block.line("{")
        with block.indent():
            for path, text in comments:
                key = _path(path)
                if block.fits(f"{key}: {_text(text)},"):
                    block.line(f"{key}: {_text(text)},")
                    continue
                # As the formatter leaves a string too long for one line: parenthesized
                # pieces, one a line, that concatenate to the comment exactly.
                block.line(f"{key}: (")
                with block.indent():
                    width = LINE_LENGTH - len(block.prefix)
                    for piece in _pieces(text, width):
                        block.line(_text(piece))
                block.line("),")
        block.line("},")
    block.line(")")
    return [block]


def _pieces(text: str, width: int) -> list[str]:
    """``text`` cut after its line ends, and at spaces where a line's literal would be wider than
    ``width``; the pieces concatenate to ``text``. A word wider than ``width`` stays whole."""
    pieces: list[str] = []
    for line in text.splitlines(keepends=True):
        current = ""
        for token in re.findall(r"\S*\s*", line):
            if current and len(_text(current + token)) > width:
                pieces.append(current)
                current = ""
            current += token
        if current:
            pieces.append(current)
    return pieces


def _path(path: tuple[int, ...]) -> str:
    """A path as its dotted text, ``"4.0.2.1"`` (a string key stays on one line when
    formatted)."""
    return string_literal(".".join(map(str, path)))


def _text(text: str) -> str:
    """A comment as a string literal, its line ends written ``\\n``."""
    return string_literal(text).replace("\\x0a", "\\n")
