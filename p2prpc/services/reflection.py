"""The standard reflection service, ``grpc.reflection.v1.ServerReflection`` (and its older name
``grpc.reflection.v1alpha.ServerReflection``), served over p2prpc's own RPC.

It answers what grpcurl asks a gRPC server: the services a node serves, and the file descriptors
that define a symbol (a service, method, message, enum or extension) or that have a file name,
each with its transitive dependencies. The files come from the servicers' message types
(``Handler.request_type.DESCRIPTOR.file`` and the file that declares the service), and from the
message types of the node's typed topics, so that ``p2prpc describe`` and ``p2prpc sub`` work
without the ``.proto``. A file's ``source_code_info`` (its comments) is served when its module from
``p2prpc gen`` registered them (:func:`add_source_comments`): protoc's ``_pb2`` modules drop it.

grpcio-reflection ships the generated messages of the v1alpha protocol only; the v1 messages are
the same fields under another package, so they are built here from v1alpha's descriptor with the
package renamed (:data:`V1`), not copied from a ``.proto`` file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.message import Message
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2

from ..rpc.base import Cardinality, Handler
from ..rpc.server import ServicerContext
from ..rpc.serving import server_of
from ..wire.status import StatusCode

if TYPE_CHECKING:
    from ..mux import Mux

__all__ = [
    "SERVICE_NAMES",
    "V1",
    "V1ALPHA",
    "Messages",
    "add_source_comments",
    "reflection_handlers",
    "served_files",
]


@dataclass(frozen=True)
class Messages:
    """The message classes of one version of the reflection protocol."""

    package: str
    ServerReflectionRequest: type[Message]
    ServerReflectionResponse: type[Message]

    @property
    def service(self) -> str:
        return f"{self.package}.ServerReflection"

    @property
    def method(self) -> str:
        return f"/{self.service}/ServerReflectionInfo"


def _v1_messages() -> Messages:
    old, new = "grpc.reflection.v1alpha", "grpc.reflection.v1"
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = new
    for message_proto in proto.message_type:
        for field in message_proto.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(f".{old}.", f".{new}.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{old}.", f".{new}.")
            method.output_type = method.output_type.replace(f".{old}.", f".{new}.")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)

    def message(name: str) -> type[Message]:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{new}.{name}"))

    return Messages(new, message("ServerReflectionRequest"), message("ServerReflectionResponse"))


#: grpc.reflection.v1, what grpcurl asks first.
V1 = _v1_messages()
#: grpc.reflection.v1alpha, grpcio-reflection's generated messages.
V1ALPHA = Messages(
    "grpc.reflection.v1alpha",
    v1alpha_pb2.ServerReflectionRequest,
    v1alpha_pb2.ServerReflectionResponse,
)
#: The services this module adds to a node.
SERVICE_NAMES = (V1.service, V1ALPHA.service)


_comments: dict[str, dict[tuple[int, ...], str]] = {}


def add_source_comments(file_name: str, comments: Mapping[str, str]) -> None:
    """Keep the leading comments of ``file_name``'s elements (by ``SourceCodeInfo`` path as in
    ``descriptor.proto``, dotted: ``"4.0"`` its first message, ``"4.0.2.1"`` that message's
    second field), to serve as the file's ``source_code_info``: protoc's ``_pb2`` modules drop
    it. The modules ``p2prpc gen`` writes call this when imported. ``ValueError`` for a path
    that is not dotted integers."""
    _comments[file_name] = {
        tuple(int(part) for part in path.split(".")): text for path, text in comments.items()
    }


def _source_code_info(file_name: str) -> descriptor_pb2.SourceCodeInfo | None:
    comments = _comments.get(file_name)
    if not comments:
        return None
    info = descriptor_pb2.SourceCodeInfo()
    for path, text in sorted(comments.items()):
        # The span is unknown here (a location has one; line and columns 0 say nothing).
        info.location.add(path=path, span=[0, 0, 0], leading_comments=text)
    return info


def _message_types(handler: object) -> list[type[Any]]:
    types = [getattr(handler, "request_type", None), getattr(handler, "reply_type", None)]
    return [
        t for t in types if t is not None and isinstance(getattr(t, "DESCRIPTOR", None), Descriptor)
    ]


def served_files(node: Mux) -> dict[str, FileDescriptor]:
    """The files that describe what ``node`` serves and publishes, with their dependencies, by
    file name."""
    roots: list[FileDescriptor] = []
    server = server_of(node)
    for service in sorted(server.services):
        pools = []
        for handler in server.service_handlers(service).values():
            for message_type in _message_types(handler):
                roots.append(message_type.DESCRIPTOR.file)
                pools.append(message_type.DESCRIPTOR.file.pool)
        for pool in [descriptor_pool.Default(), *pools]:
            try:
                roots.append(pool.FindServiceByName(service).file)
                break
            except KeyError:
                continue
    roots.extend(t.DESCRIPTOR.file for t in _topic_types(node))
    files: dict[str, FileDescriptor] = {}
    todo = list(reversed(roots))
    while todo:
        file = todo.pop()
        if file.name not in files:
            files[file.name] = file
            todo.extend(file.dependencies)
    return files


def _topic_types(node: Mux) -> list[Any]:
    router = node.get_layer("pubsub")
    types = getattr(router, "types", None)
    return list(types.values()) if isinstance(types, dict) else []


def _symbols(files: Iterable[FileDescriptor]) -> dict[str, FileDescriptor]:
    """Every symbol a file defines (packages' messages, nested ones, enums, services, methods,
    extensions), by full name."""
    found: dict[str, FileDescriptor] = {}

    def message(d: Descriptor, file: FileDescriptor) -> None:
        found[d.full_name] = file
        for nested in d.nested_types:
            message(nested, file)
        for enum in d.enum_types:
            found[enum.full_name] = file
        for extension in d.extensions:
            found[extension.full_name] = file

    for file in files:
        for d in file.message_types_by_name.values():
            message(d, file)
        for enum in file.enum_types_by_name.values():
            found[enum.full_name] = file
        for extension in file.extensions_by_name.values():
            found[extension.full_name] = file
        for service in file.services_by_name.values():
            found[service.full_name] = file
            for method in service.methods:
                found[method.full_name] = file
    return found


def _with_dependencies(file: FileDescriptor) -> list[bytes]:
    """The file first, then every file it depends on, transitively, each once."""
    out: list[bytes] = []
    seen: set[str] = set()
    todo = [file]
    while todo:
        f = todo.pop(0)
        if f.name in seen:
            continue
        seen.add(f.name)
        proto = descriptor_pb2.FileDescriptorProto()
        f.CopyToProto(proto)
        info = _source_code_info(f.name)
        if info is not None:
            proto.source_code_info.CopyFrom(info)
        out.append(proto.SerializeToString())
        todo.extend(f.dependencies)
    return out


def _extensions_of(files: Iterable[FileDescriptor], containing_type: str) -> list[Any]:
    extensions: list[Any] = []
    for file in files:
        extensions.extend(file.extensions_by_name.values())
        todo = list(file.message_types_by_name.values())
        while todo:
            d = todo.pop()
            extensions.extend(d.extensions)
            todo.extend(d.nested_types)
    return [e for e in extensions if e.containing_type.full_name == containing_type]


def answer(node: Mux, messages: Messages, request: Any) -> Message:
    """The response to one reflection request, from what ``node`` serves now."""
    response: Any = messages.ServerReflectionResponse(
        valid_host=request.host, original_request=request
    )
    files = served_files(node)
    asked = request.WhichOneof("message_request")

    def not_found(what: str) -> Message:
        response.error_response.error_code = StatusCode.NOT_FOUND.value[0]
        response.error_response.error_message = what
        return response  # type: ignore[no-any-return]

    if asked == "list_services":
        for name in sorted(server_of(node).services):
            response.list_services_response.service.add(name=name)
    elif asked == "file_by_filename":
        file = files.get(request.file_by_filename)
        if file is None:
            return not_found(f"file not found: {request.file_by_filename}")
        response.file_descriptor_response.file_descriptor_proto.extend(_with_dependencies(file))
    elif asked == "file_containing_symbol":
        file = _symbols(files.values()).get(request.file_containing_symbol)
        if file is None:
            return not_found(f"symbol not found: {request.file_containing_symbol}")
        response.file_descriptor_response.file_descriptor_proto.extend(_with_dependencies(file))
    elif asked == "file_containing_extension":
        wanted = request.file_containing_extension
        for extension in _extensions_of(files.values(), wanted.containing_type):
            if extension.number == wanted.extension_number:
                protos = _with_dependencies(extension.file)
                response.file_descriptor_response.file_descriptor_proto.extend(protos)
                return response  # type: ignore[no-any-return]
        return not_found(f"extension not found: {wanted.containing_type} {wanted.extension_number}")
    elif asked == "all_extension_numbers_of_type":
        name = request.all_extension_numbers_of_type
        if name not in _symbols(files.values()):
            return not_found(f"type not found: {name}")
        numbers = sorted(e.number for e in _extensions_of(files.values(), name))
        response.all_extension_numbers_response.base_type_name = name
        response.all_extension_numbers_response.extension_number.extend(numbers)
    else:
        response.error_response.error_code = StatusCode.INVALID_ARGUMENT.value[0]
        response.error_response.error_message = "the request asks nothing"
    return response  # type: ignore[no-any-return]


def reflection_handlers(node: Mux, messages: Messages) -> dict[str, Handler[Any, Any]]:
    """The handlers of one version of the reflection service, for ``node.add_service``."""

    async def info(requests: AsyncIterator[Any], context: ServicerContext) -> AsyncIterator[Any]:
        async for request in requests:
            yield answer(node, messages, request)

    return {
        messages.method: Handler(
            info,
            Cardinality.STREAM_STREAM,
            messages.ServerReflectionRequest,
            messages.ServerReflectionResponse,
            idempotent=True,
        )
    }
