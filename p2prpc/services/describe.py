"""What a caller without the ``.proto`` learns from a peer's reflection service: the descriptors
of its services, methods and messages, as a descriptor pool, message classes and ``.proto`` text.

``p2prpc describe`` prints the text; ``p2prpc call``, ``pub`` and ``sub`` use the message classes to
check and read JSON (proto3 JSON, strictly: unknown fields and enum names are errors).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

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
        self.add(files)

    def add(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        """Add files to the pool, each after the files it imports."""
        for proto in files:
            self._protos.setdefault(proto.name, proto)
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


def _message_lines(proto: descriptor_pb2.DescriptorProto, indent: str) -> list[str]:
    maps = {n.name: n for n in proto.nested_type if n.options.map_entry}
    lines = [f"{indent}message {proto.name} {{"]
    inner = indent + "  "
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
            lines.append(f"{inner}oneof {proto.oneof_decl[index].name} {{")
            lines.extend(f"{inner}  {_type_name(f)} {f.name} = {f.number};" for f in oneofs[index])
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
        lines.append(f"{inner}{kind} {field.name} = {field.number};")
    for nested in proto.nested_type:
        if not nested.options.map_entry:
            lines.extend(_message_lines(nested, inner))
    for enum in proto.enum_type:
        lines.extend(_enum_lines(enum, inner))
    lines.append(f"{indent}}}")
    return lines


def _enum_lines(proto: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    lines = [f"{indent}enum {proto.name} {{"]
    lines.extend(f"{indent}  {v.name} = {v.number};" for v in proto.value)
    lines.append(f"{indent}}}")
    return lines


def _method_line(proto: descriptor_pb2.MethodDescriptorProto, indent: str) -> str:
    request = ("stream " if proto.client_streaming else "") + proto.input_type
    reply = ("stream " if proto.server_streaming else "") + proto.output_type
    level = proto.options.idempotency_level
    head = f"{indent}rpc {proto.name}({request}) returns ({reply})"
    if level:
        return (
            f"{head} {{ option idempotency_level = {proto.options.IdempotencyLevel.Name(level)}; }}"
        )
    return head + ";"


def proto_text(symbol: Symbol) -> str:
    """``symbol`` as ``.proto`` text, after a comment line saying what it is and where from."""
    if isinstance(symbol, ServiceDescriptor):
        service = descriptor_pb2.ServiceDescriptorProto()
        symbol.CopyToProto(service)
        body = [f"service {service.name} {{"]
        body.extend(_method_line(m, "  ") for m in service.method)
        body.append("}")
        what = "a service"
    elif isinstance(symbol, MethodDescriptor):
        method = descriptor_pb2.MethodDescriptorProto()
        symbol.CopyToProto(method)
        body = [_method_line(method, "")]
        what = "a method"
    elif isinstance(symbol, EnumDescriptor):
        enum = descriptor_pb2.EnumDescriptorProto()
        symbol.CopyToProto(enum)
        body = _enum_lines(enum, "")
        what = "an enum"
    else:
        message = descriptor_pb2.DescriptorProto()
        symbol.CopyToProto(message)
        body = _message_lines(message, "")
        what = "a message"
    file = symbol.containing_service.file if isinstance(symbol, MethodDescriptor) else symbol.file
    return "\n".join([f"// {symbol.full_name} is {what} (from {file.name})", *body])
