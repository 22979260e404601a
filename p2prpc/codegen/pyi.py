"""protoc's ``.pyi`` stubs (``--pyi_out``), completed so that ``mypy --strict`` accepts them.

protoc writes two things strict mypy refuses, in every file that has them:

- a message field's constructor argument takes the message or a dict of its fields, written as a
  bare ``_Mapping`` ("Missing type arguments for generic type"): it becomes
  ``_Mapping[str, _Any]``, which is what protobuf accepts there (field names to values);
- a file-level extension's field number is declared ``NAME_FIELD_NUMBER: _ClassVar[int]``
  outside any class ("ClassVar can only be used for assignments in class body"): it becomes
  ``NAME_FIELD_NUMBER: int``.

Pure text in, text out; :func:`p2prpc.codegen.protoc.generate` applies it to every ``.pyi`` it
writes.
"""

from __future__ import annotations

import re

__all__ = ["complete_pyi"]

_BARE_MAPPING = re.compile(r"\b_Mapping\b(?!\s*\[)")
_MODULE_CLASSVAR = re.compile(r"^(\w+): _ClassVar\[(.*)\]$")
_ANY_IMPORT = "from typing import Any as _Any"


def complete_pyi(text: str) -> str:
    """``text`` (a ``.pyi`` protoc wrote) with its bare ``_Mapping`` given type arguments and its
    module-level ``_ClassVar`` declarations made plain; unchanged when it has neither."""
    lines = text.split("\n")
    completed: list[str] = []
    uses_any = False
    last_import = -1
    for line in lines:
        if line.startswith(("import ", "from ")):
            last_import = len(completed)
            completed.append(line)
            continue
        module_classvar = _MODULE_CLASSVAR.match(line)
        if module_classvar is not None:
            line = f"{module_classvar[1]}: {module_classvar[2]}"
        mapped = _BARE_MAPPING.sub("_Mapping[str, _Any]", line)
        uses_any = uses_any or mapped != line
        completed.append(mapped)
    if uses_any and _ANY_IMPORT not in completed:
        completed.insert(last_import + 1, _ANY_IMPORT)
    return "\n".join(completed)
