"""The code for the messages declared as topics: one typed handle per topic.

A message that carries the ``topic`` option of ``p2prpc/options.proto`` is the message type of a
topic, named by the option or, if the option leaves the name empty, after the message::

    message ChatMessage {
      option (p2prpc.topic) = {name: "chat"};
      ...
    }

For it a module gets ``TOPICS``, the names of its topics, and ``ChatMessageTopic(node)``: a
:class:`p2prpc.pubsub.Topic` of ``ChatMessage`` whose ``NAME`` is ``"chat"``, so that
``publish()`` takes a ``ChatMessage`` and ``subscribe()`` yields them. A nested message's handle
joins the names of its enclosing messages with ``_``: ``Outer_InnerTopic`` for ``Outer.Inner``.

Importing this module imports :mod:`p2prpc.options_pb2`, which registers the option with
protobuf, so that a request parsed afterwards holds it as an extension. Options parsed earlier hold
it as an unknown field: those are parsed again, so the option is found either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from google.protobuf.descriptor_pb2 import DescriptorProto, MessageOptions

from p2prpc import options_pb2
from p2prpc.codegen.scope import NODE, PUBSUB, FileScope
from p2prpc.codegen.source import INDENT, Source, string_literal
from p2prpc.codegen.symbols import CodegenError

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

_MESSAGE_FIELD = 4  # FileDescriptorProto.message_type
_NESTED_FIELD = 3  # DescriptorProto.nested_type

# protoc's stub types the extension as a plain field descriptor; the Extensions API wants more.
_TOPIC = cast(
    "_ExtensionFieldDescriptor[MessageOptions, options_pb2.TopicOptions]", options_pb2.topic
)

MAX_NAME_LENGTH = 256
"""The longest topic name the runtime accepts (:class:`p2prpc.pubsub.Topic`)."""


@dataclass(frozen=True)
class Topic:
    """One message of the file declared as a topic."""

    name: str
    """The topic's name on the wire."""
    message_name: str
    """The message's full name, ``package.Outer.Inner``."""
    handle: str
    """The generated class: ``Outer_InnerTopic``."""
    message: str
    """The expression for the message class."""
    doc: str
    """The message's leading comments in the ``.proto`` file."""


def topic_options(message: DescriptorProto) -> options_pb2.TopicOptions | None:
    """The ``(p2prpc.topic)`` option of ``message``, or ``None`` when it is not a topic."""
    options = message.options
    if not options.HasExtension(_TOPIC):
        # Parsed before the extension was registered, it is among the unknown fields.
        options = MessageOptions.FromString(options.SerializeToString())
        if not options.HasExtension(_TOPIC):
            return None
    return options.Extensions[_TOPIC]


def topics(scope: FileScope) -> list[Topic]:
    """The topics of the scope's file, in the order their messages are declared (outer first).

    Raises :class:`CodegenError` when two topics share a name or a handle, or a name is longer
    than the runtime allows.
    """
    package = scope.file.package
    found: list[Topic] = []
    for path, names, message in _messages(scope.file.message_type, (_MESSAGE_FIELD,), ()):
        options = topic_options(message)
        if options is None:
            continue
        message_name = ".".join((package, *names) if package else names)
        topic = Topic(
            name=options.name or message_name,
            message_name=message_name,
            handle="_".join(names) + "Topic",
            message=scope.message(f".{message_name}"),
            doc=scope.comments(path),
        )
        if len(topic.name) > MAX_NAME_LENGTH:
            raise CodegenError(
                f"topic of {message_name}: a name has at most {MAX_NAME_LENGTH} characters"
            )
        for other in found:
            if other.name == topic.name:
                raise CodegenError(
                    f"{other.message_name} and {message_name} are both topic {topic.name!r}"
                )
            if other.handle == topic.handle:
                raise CodegenError(
                    f"the topics of {other.message_name} and {message_name} would both be "
                    f"the Python class {topic.handle}"
                )
        found.append(topic)
    return found


def _messages(
    messages: Iterable[DescriptorProto], path: tuple[int, ...], names: tuple[str, ...]
) -> Iterator[tuple[tuple[int, ...], tuple[str, ...], DescriptorProto]]:
    """Every message, each followed by those nested in it, with its path in ``SourceCodeInfo``
    and its names from the outermost."""
    for index, message in enumerate(messages):
        inner_path = (*path, index)
        inner_names = (*names, message.name)
        yield inner_path, inner_names, message
        yield from _messages(message.nested_type, (*inner_path, _NESTED_FIELD), inner_names)


def render_topics(scope: FileScope) -> list[Source]:
    """``TOPICS``, then a handle class per topic."""
    found = topics(scope)
    if not found:
        return []
    return [render_topics_constant(found), *(render_handle(scope, topic) for topic in found)]


def render_topics_constant(found: list[Topic]) -> Source:
    """``TOPICS``: the names of the module's topics, as a node announces its subscriptions."""
    source = Source()
    names = [string_literal(topic.name) for topic in found]
    flat = f"TOPICS = ({', '.join(names)}{',' if len(names) == 1 else ''})"
    if source.fits(flat):
        source.line(flat)
    else:
        source.exploded("TOPICS = (", names, ")")
    return source


def render_handle(scope: FileScope, topic: Topic) -> Source:
    """``class <Message>Topic(p2prpc.pubsub.Topic[<Message>])`` with the topic's ``NAME``."""
    source = Source()
    base = scope.runtime("Topic", PUBSUB)
    if source.fits(f"class {topic.handle}({base}[{topic.message}]):"):
        source.line(f"class {topic.handle}({base}[{topic.message}]):")
    else:
        source.line(f"class {topic.handle}(")
        with source.indent():
            source.hugged(f"{base}[", topic.message, "]")
        source.line("):")
    with source.indent():
        doc = topic.doc or f'The topic "{topic.name}", of {topic.message_name} messages.'
        source.docstring(doc)
        source.line()
        _assignment(source, "NAME", string_literal(topic.name))
        source.line()
        source.line(f"def __init__(self, node: {scope.runtime('Node', NODE)}) -> None:")
        with source.indent():
            call = f"super().__init__(node, self.NAME, {topic.message})"
            if source.fits(call):
                source.line(call)
            else:
                source.exploded("super().__init__(", ["node", "self.NAME", topic.message], ")")
    return source


def _assignment(source: Source, target: str, value: str) -> None:
    """``target = value``, in parentheses on its own line if that is what makes it fit."""
    flat = f"{target} = {value}"
    if source.fits(flat) or not source.fits(INDENT + value):
        source.line(flat)
    else:
        source.hugged(f"{target} = (", value, ")")
