"""What the renderers of one generated module share: names in use, imports, comments."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.descriptor_pb2 import FileDescriptorProto

from p2prpc.codegen.source import ImportStatement
from p2prpc.codegen.symbols import SymbolTable, module_import

RUNTIME = "p2prpc.rpc"
"""The module generated code calls into, imported as itself: ``p2prpc.rpc.UnaryUnaryMethod``."""

PUBSUB = "p2prpc.pubsub"
"""The runtime of topics: ``p2prpc.pubsub.Topic``."""

NODE = "p2prpc.node"
"""Where the node a topic handle publishes through is defined: ``p2prpc.node.Node``."""


class FileScope:
    """The context in which the renderers write one ``_p2prpc.py`` module.

    Renderers ask it for the Python names they use (message classes, ``typing`` helpers), and it
    records the imports those names need, so the module imports exactly what it uses.
    """

    def __init__(self, file: FileDescriptorProto, symbols: SymbolTable) -> None:
        self.file = file
        self._symbols = symbols
        self._comments = {
            tuple(location.path): location.leading_comments
            for location in file.source_code_info.location
            if location.leading_comments
        }
        self._stdlib: set[ImportStatement] = set()
        self._messages: set[ImportStatement] = set()
        self._runtime: set[str] = set()

    def message(self, type_name: str) -> str:
        """The expression for the class of message ``type_name`` (``.pkg.Outer.Inner``)."""
        message = self._symbols.message(type_name)
        self._messages.add(module_import(message.module))
        return message.expression

    def runtime(self, name: str, module: str = RUNTIME) -> str:
        """The expression for ``name`` in a module of the p2prpc runtime (``p2prpc.rpc.<name>``
        unless another module is given), imported as itself."""
        self._runtime.add(module)
        return f"{module}.{name}"

    def typing(self, name: str) -> str:
        """The expression for a typing helper, ``Any`` or ``AsyncIterator``, imported by name."""
        module = "collections.abc" if name == "AsyncIterator" else "typing"
        self._stdlib.add(ImportStatement(module, name))
        return name

    def comments(self, path: Sequence[int]) -> str:
        """The leading comments of the element at ``path`` in ``SourceCodeInfo`` (or ``""``).

        ``path`` is as in ``descriptor.proto``: ``(6, i)`` is service ``i``, ``(6, i, 2, j)`` its
        method ``j``; ``(4, i)`` is message ``i``, ``(4, i, 3, j)`` the message nested in it.
        """
        return self._comments.get(tuple(path), "")

    def all_comments(self) -> list[tuple[tuple[int, ...], str]]:
        """Every element's leading comments, by ``SourceCodeInfo`` path, in path order."""
        return sorted(self._comments.items())

    def import_sections(self) -> list[set[ImportStatement]]:
        """The imports the names handed out need, in ruff's isort sections.

        They are the standard library, third party (protoc's modules), first party (p2prpc).
        """
        runtime = {ImportStatement(module) for module in self._runtime}
        return [self._stdlib, self._messages, runtime]
