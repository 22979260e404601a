"""Where protobuf names live in Python: modules, import aliases, message classes.

Generated code imports message classes the way protoc's Python generator and gRPC's plugin do:
``foo/bar-baz.proto`` is the module ``foo.bar_baz_pb2``, imported under the alias
``foo_dot_bar__baz__pb2`` (every ``_`` doubled, every ``.`` spelled ``_dot_``). That spelling is
one-to-one, so two modules never share an alias, and every alias ends in ``__pb2``, which no other
name a generated module defines does.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.descriptor_pb2 import DescriptorProto, FileDescriptorProto

from p2prpc.codegen.source import ImportStatement
from p2prpc.errors import CodegenError as CodegenError  # every error lives in p2prpc.errors


def module_name(proto_path: str) -> str:
    """The module protoc writes for ``proto_path``: ``foo/bar-baz.proto`` is ``foo.bar_baz_pb2``."""
    return f"{_stem(proto_path).replace('/', '.')}_pb2"


def output_path(proto_path: str) -> str:
    """The file the plugin writes for ``proto_path``, beside protoc's ``..._pb2.py``.

    ``foo/bar-baz.proto`` gives ``foo/bar_baz_p2prpc.py``.
    """
    return f"{_stem(proto_path)}_p2prpc.py"


def module_alias(module: str) -> str:
    """The name a generated module imports ``module`` as (see the module docstring)."""
    return module.replace("_", "__").replace(".", "_dot_")


def python_name(name: str) -> str:
    """A proto identifier as a Python attribute: a Python keyword gets a trailing underscore.

    Proto allows ``rpc None(...)`` or ``rpc class(...)``, which cannot be attribute names; PEP 8's
    trailing underscore keeps them readable. The wire name is unchanged.
    """
    return f"{name}_" if keyword.iskeyword(name) else name


def _stem(proto_path: str) -> str:
    for suffix in (".protodevel", ".proto"):
        if proto_path.endswith(suffix):
            proto_path = proto_path[: -len(suffix)]
            break
    return proto_path.replace("-", "_")


def module_import(module: str) -> ImportStatement:
    """The statement that imports a message module under its alias, as protoc's plugins do."""
    package, _, base = module.rpartition(".")
    if package:
        return ImportStatement(package, base, module_alias(module))
    return ImportStatement(module, None, module_alias(module))


@dataclass(frozen=True)
class MessageClass:
    """A message type's class: ``module`` holds it at the attribute path ``path``."""

    full_name: str
    module: str
    path: tuple[str, ...]

    @property
    def expression(self) -> str:
        """How a generated module names the class, through the module's import alias."""
        return ".".join((module_alias(self.module), *self.path))


class SymbolTable:
    """Every message type of a ``CodeGeneratorRequest``, by fully qualified name.

    protoc sends the files to generate together with all the files they import, so every type a
    method names is here, whichever file or package defines it.
    """

    def __init__(self, files: Iterable[FileDescriptorProto]) -> None:
        self._messages: dict[str, MessageClass] = {}
        for file in files:
            prefix = f".{file.package}" if file.package else ""
            module = module_name(file.name)
            self._add(file.message_type, prefix, module, ())

    def _add(
        self,
        messages: Iterable[DescriptorProto],
        prefix: str,
        module: str,
        path: tuple[str, ...],
    ) -> None:
        for message in messages:
            full_name = f"{prefix}.{message.name}"
            inner = (*path, message.name)
            self._messages[full_name] = MessageClass(full_name.lstrip("."), module, inner)
            self._add(message.nested_type, full_name, module, inner)

    def message(self, type_name: str) -> MessageClass:
        """The class of the message named ``type_name`` (fully qualified, as ``.pkg.Msg``).

        Raises :class:`CodegenError` when the type is unknown or its Python name cannot be
        written: protoc's own Python output names a message called ``None`` in a way typed code
        cannot use, and a module path that is not made of identifiers cannot be imported.
        """
        try:
            message = self._messages[type_name]
        except KeyError:
            raise CodegenError(f"unknown message type {type_name}") from None
        for part in (*message.module.split("."), *message.path):
            if not part.isidentifier() or keyword.iskeyword(part):
                raise CodegenError(
                    f"message type {message.full_name} would be the Python name "
                    f"{message.module}.{'.'.join(message.path)}, where {part!r} is not a "
                    "valid identifier"
                )
        return message
