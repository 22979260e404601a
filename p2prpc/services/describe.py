"""What a caller without the ``.proto`` learns from a peer's reflection service: the descriptors
of its services, methods and messages, as a descriptor pool, message classes and ``.proto`` text.

``p2prpc describe`` prints the text; ``p2prpc call``, ``pub`` and ``sub`` use the message classes to
check and read JSON (proto3 JSON, strictly: unknown fields and enum names are errors).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message_factory,
    text_format,
)
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

from .. import options_pb2  # noqa: F401 - registers p2prpc's options, so describe shows them
from ..errors import RpcError
from ..rpc.channel import ChannelLike
from ..rpc.client import StreamStreamMethod
from ..wire.status import Metadatum, StatusCode
from .reflection import V1, V1ALPHA

__all__ = ["Reflected", "check_json", "proto_text", "reflect"]

Symbol = Descriptor | EnumDescriptor | ServiceDescriptor | MethodDescriptor


class Reflected:
    """The files a peer's reflection service sent, in a pool of their own."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto] = ()) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        self._protos: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        #: The leading comments the files' ``source_code_info`` holds, by the full name of what
        #: they describe (an enum value's under its enum's name: ``pkg.Enum.VALUE``).
        self.comments: dict[str, str] = {}
        self.add(files)

    def add(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        """Add files to the pool, each after the files it imports."""
        for proto in files:
            if proto.name not in self._protos:
                self._protos[proto.name] = proto
                self.comments.update(_comments_by_name(proto))
        added: set[str] = set()

        def add_one(name: str, path: tuple[str, ...]) -> None:
            if name in added or name in path:
                return
            proto = self._protos.get(name)
            if proto is None:
                return  # not sent: the pool says what is missing when it is used
            for dependency in proto.dependency:
                add_one(dependency, (*path, name))
            try:
                self.pool.FindFileByName(name)
            except KeyError:
                self.pool.Add(proto)
            added.add(name)

        for name in list(self._protos):
            add_one(name, ())

    def find(self, symbol: str) -> Symbol | None:
        """The service, method, message or enum named ``symbol`` (a leading dot is allowed)."""
        symbol = symbol.lstrip(".")
        finders = (
            self.pool.FindServiceByName,
            self.pool.FindMessageTypeByName,
            self.pool.FindEnumTypeByName,
            self.pool.FindMethodByName,
        )
        for finder in finders:
            try:
                found: Symbol = finder(symbol)
                return found
            except KeyError:
                continue
        return None

    def message_class(self, full_name: str) -> type[Message]:
        """The message class of a message type in the pool (``KeyError`` when absent)."""
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))

    def services(self) -> list[ServiceDescriptor]:
        found: list[ServiceDescriptor] = []
        for name in sorted(self._protos):
            try:
                file = self.pool.FindFileByName(name)
            except KeyError:
                continue
            found.extend(file.services_by_name.values())
        return sorted(found, key=lambda s: s.full_name)


async def reflect(
    channel: ChannelLike,
    symbols: Sequence[str],
    *,
    timeout: float | None,
    list_services: bool = False,
    metadata: Sequence[Metadatum] = (),
) -> tuple[Reflected, list[str]]:
    """Ask a peer's reflection service for the files defining ``symbols`` (and, with
    ``list_services``, for every service and their files): the files, and the services listed.
    ``metadata`` goes with each request (what an authenticating server interceptor asks of
    every call, reflection's included). Tries ``grpc.reflection.v1``, then ``v1alpha``; raises
    :class:`RpcError` (UNIMPLEMENTED for a peer without reflection; the server's status, such as
    UNAUTHENTICATED, for a refused call)."""
    error: RpcError | None = None
    for messages in (V1, V1ALPHA):
        method: StreamStreamMethod[Any, Any] = StreamStreamMethod(
            channel,
            messages.method,
            messages.ServerReflectionRequest,
            messages.ServerReflectionResponse,
            idempotent=True,
        )
        Request: Any = messages.ServerReflectionRequest
        try:
            reflected = Reflected()
            services: list[str] = []
            if list_services:
                listing = method([Request(list_services="")], timeout=timeout, metadata=metadata)
                [listed] = [r async for r in listing]
                services = [s.name for s in listed.list_services_response.service]
                symbols = [*symbols, *services]
            requests = [Request(file_containing_symbol=s.lstrip(".")) for s in symbols]
            if requests:
                async for response in method(requests, timeout=timeout, metadata=metadata):
                    reflected.add(
                        descriptor_pb2.FileDescriptorProto.FromString(b)
                        for b in response.file_descriptor_response.file_descriptor_proto
                    )
            return reflected, services
        except RpcError as e:
            if e.code() is not StatusCode.UNIMPLEMENTED:
                raise
            error = e
    assert error is not None
    raise error


def _comments_by_name(proto: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    """The leading comments of ``proto``'s elements by full name (paths as in
    ``descriptor.proto``: 4 messages, 5 enums, 6 services; in a message 2 fields, 3 nested
    messages, 4 enums, 8 oneofs; 2 an enum's values, a service's methods)."""
    by_path = {
        tuple(location.path): location.leading_comments
        for location in proto.source_code_info.location
        if location.leading_comments
    }
    if not by_path:
        return {}
    found: dict[str, str] = {}
    prefix = f"{proto.package}." if proto.package else ""

    def note(path: tuple[int, ...], name: str) -> None:
        if path in by_path:
            found[name] = by_path[path]

    def enum(e: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], name: str) -> None:
        note(path, name)
        for v, value in enumerate(e.value):
            note((*path, 2, v), f"{name}.{value.name}")

    def message(m: descriptor_pb2.DescriptorProto, path: tuple[int, ...], name: str) -> None:
        note(path, name)
        for f, field_proto in enumerate(m.field):
            note((*path, 2, f), f"{name}.{field_proto.name}")
        for n, nested in enumerate(m.nested_type):
            message(nested, (*path, 3, n), f"{name}.{nested.name}")
        for e, enum_proto in enumerate(m.enum_type):
            enum(enum_proto, (*path, 4, e), f"{name}.{enum_proto.name}")
        for o, oneof in enumerate(m.oneof_decl):
            note((*path, 8, o), f"{name}.{oneof.name}")

    for i, m in enumerate(proto.message_type):
        message(m, (4, i), prefix + m.name)
    for i, e in enumerate(proto.enum_type):
        enum(e, (5, i), prefix + e.name)
    for i, service in enumerate(proto.service):
        note((6, i), prefix + service.name)
        for j, method in enumerate(service.method):
            note((6, i, 2, j), f"{prefix}{service.name}.{method.name}")
    return found


def check_json(message_type: type[Message], value: Any, *, allow_unknown: bool) -> Message:
    """``value`` (a JSON value) read as a ``message_type``: ``RpcError`` INVALID_ARGUMENT for what
    is not one (unknown fields and enum names too, unless ``allow_unknown``)."""
    message = message_type()
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=allow_unknown)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as e:
        what = message_type.DESCRIPTOR.full_name
        reason = " ".join(str(e).split())
        raise RpcError(StatusCode.INVALID_ARGUMENT, f"not a {what}: {reason}") from None
    return message


# -- .proto text ----------------------------------------------------------------------------------

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}


def _type_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    return field.type_name or _SCALARS[field.type]


def _comment_lines(comments: Mapping[str, str], name: str, indent: str) -> list[str]:
    """The comment lines written above the element ``name`` (none when it has no comment)."""
    text = comments.get(name, "")
    return [f"{indent}//{line}".rstrip() for line in text.rstrip("\n").split("\n")] if text else []


def _option_lines(options: Message, indent: str) -> list[str]:
    """Custom options set on an element (``option (p2prpc.topic) = {name: "chat"};``), for the
    extensions this process knows (p2prpc's own are always known)."""
    lines: list[str] = []
    for field_descriptor, value in options.ListFields():
        if not field_descriptor.is_extension:
            continue
        if isinstance(value, Message):
            shown = "{" + text_format.MessageToString(value, as_one_line=True) + "}"
        else:
            shown = json.dumps(value) if isinstance(value, str) else str(value).lower()
        lines.append(f"{indent}option ({field_descriptor.full_name}) = {shown};")
    return lines


def _message_lines(
    proto: descriptor_pb2.DescriptorProto,
    indent: str,
    full_name: str,
    comments: Mapping[str, str],
) -> list[str]:
    maps = {n.name: n for n in proto.nested_type if n.options.map_entry}
    lines = [*_comment_lines(comments, full_name, indent), f"{indent}message {proto.name} {{"]
    inner = indent + "  "
    lines.extend(_option_lines(proto.options, inner))
    oneofs: dict[int, list[descriptor_pb2.FieldDescriptorProto]] = {}
    for field in proto.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            oneofs.setdefault(field.oneof_index, []).append(field)
    shown_oneofs: set[int] = set()
    for field in proto.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            index = field.oneof_index
            if index in shown_oneofs:
                continue
            shown_oneofs.add(index)
            oneof = proto.oneof_decl[index].name
            lines.extend(_comment_lines(comments, f"{full_name}.{oneof}", inner))
            lines.append(f"{inner}oneof {oneof} {{")
            for f in oneofs[index]:
                lines.extend(_comment_lines(comments, f"{full_name}.{f.name}", inner + "  "))
                lines.append(f"{inner}  {_type_name(f)} {f.name} = {f.number};")
            lines.append(f"{inner}}}")
            continue
        entry = maps.get(field.type_name.rsplit(".", 1)[-1]) if field.type_name else None
        if entry is not None and field.label == field.LABEL_REPEATED:
            key, value = entry.field[0], entry.field[1]
            kind = f"map<{_type_name(key)}, {_type_name(value)}>"
        elif field.label == field.LABEL_REPEATED:
            kind = f"repeated {_type_name(field)}"
        elif field.proto3_optional or field.label == field.LABEL_REQUIRED:
            label = "optional" if field.proto3_optional else "required"
            kind = f"{label} {_type_name(field)}"
        else:
            kind = _type_name(field)
        lines.extend(_comment_lines(comments, f"{full_name}.{field.name}", inner))
        lines.append(f"{inner}{kind} {field.name} = {field.number};")
    for nested in proto.nested_type:
        if not nested.options.map_entry:
            lines.extend(_message_lines(nested, inner, f"{full_name}.{nested.name}", comments))
    for enum in proto.enum_type:
        lines.extend(_enum_lines(enum, inner, f"{full_name}.{enum.name}", comments))
    lines.append(f"{indent}}}")
    return lines


def _enum_lines(
    proto: descriptor_pb2.EnumDescriptorProto,
    indent: str,
    full_name: str,
    comments: Mapping[str, str],
) -> list[str]:
    lines = [*_comment_lines(comments, full_name, indent), f"{indent}enum {proto.name} {{"]
    for v in proto.value:
        lines.extend(_comment_lines(comments, f"{full_name}.{v.name}", indent + "  "))
        lines.append(f"{indent}  {v.name} = {v.number};")
    lines.append(f"{indent}}}")
    return lines


def _method_lines(
    proto: descriptor_pb2.MethodDescriptorProto,
    indent: str,
    full_name: str,
    comments: Mapping[str, str],
) -> list[str]:
    request = ("stream " if proto.client_streaming else "") + proto.input_type
    reply = ("stream " if proto.server_streaming else "") + proto.output_type
    level = proto.options.idempotency_level
    head = f"{indent}rpc {proto.name}({request}) returns ({reply})"
    if level:
        line = (
            f"{head} {{ option idempotency_level = {proto.options.IdempotencyLevel.Name(level)}; }}"
        )
    else:
        line = head + ";"
    return [*_comment_lines(comments, full_name, indent), line]


def proto_text(symbol: Symbol, comments: Mapping[str, str] | None = None) -> str:
    """``symbol`` as ``.proto`` text, after a comment line saying what it is and where from;
    with the ``.proto``'s own comments (``comments``: :attr:`Reflected.comments`) above what
    they describe, and custom options such as a topic's (``option (p2prpc.topic) = ...``)."""
    comments = comments or {}
    name = symbol.full_name
    if isinstance(symbol, ServiceDescriptor):
        service = descriptor_pb2.ServiceDescriptorProto()
        symbol.CopyToProto(service)
        body = [*_comment_lines(comments, name, ""), f"service {service.name} {{"]
        for m in service.method:
            body.extend(_method_lines(m, "  ", f"{name}.{m.name}", comments))
        body.append("}")
        what = "a service"
    elif isinstance(symbol, MethodDescriptor):
        method = descriptor_pb2.MethodDescriptorProto()
        symbol.CopyToProto(method)
        body = _method_lines(method, "", name, comments)
        what = "a method"
    elif isinstance(symbol, EnumDescriptor):
        enum = descriptor_pb2.EnumDescriptorProto()
        symbol.CopyToProto(enum)
        body = _enum_lines(enum, "", name, comments)
        what = "an enum"
    else:
        message = descriptor_pb2.DescriptorProto()
        symbol.CopyToProto(message)
        body = _message_lines(message, "", name, comments)
        what = "a message"
    file = symbol.containing_service.file if isinstance(symbol, MethodDescriptor) else symbol.file
    return "\n".join([f"// {symbol.full_name} is {what} (from {file.name})", *body])
