"""The code for one ``service``: a client stub, a servicer base and the function that serves it.

For ``service Greeter`` in ``package helloworld`` a module gets:

- ``GreeterStub(channel)``, whose attribute per method is a typed method object of the runtime
  (``p2prpc.rpc.UnaryUnaryMethod[HelloRequest, HelloReply]``, ...) bound to the route
  ``/helloworld.Greeter/SayHello``; calling it makes the call.
- ``GreeterServicer``, a base class to override: each method answers UNIMPLEMENTED until it is,
  and ``__mapping__()`` maps every route to a :class:`p2prpc.rpc.Handler` (function, cardinality,
  message types), so dispatch is a dictionary lookup.
- ``add_GreeterServicer_to_node(servicer, node)``, which registers that mapping.

The stub and the handlers carry ``idempotent=True`` for a method declared with
``option idempotency_level = IDEMPOTENT`` or ``NO_SIDE_EFFECTS``: the runtime may retry those.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor_pb2 import MethodDescriptorProto, MethodOptions

from p2prpc.codegen.scope import FileScope
from p2prpc.codegen.source import Source
from p2prpc.codegen.symbols import CodegenError, python_name

_SERVICE_FIELD = 6  # FileDescriptorProto.service
_METHOD_FIELD = 2  # ServiceDescriptorProto.method

_IDEMPOTENT_LEVELS = frozenset({MethodOptions.NO_SIDE_EFFECTS, MethodOptions.IDEMPOTENT})


@dataclass(frozen=True)
class Method:
    """One ``rpc`` of a service, with the Python names its code uses."""

    name: str
    """The Python attribute (the proto name, with ``_`` appended if it is a Python keyword)."""
    route: str
    """``/package.Service/Method``, what a call names on the wire."""
    cardinality: str
    """The :class:`p2prpc.rpc.Cardinality` member: ``UNARY_UNARY``, ``STREAM_UNARY``, ..."""
    client_streaming: bool
    server_streaming: bool
    request: str
    """The expression for the request message class."""
    reply: str
    """The expression for the reply message class."""
    idempotent: bool
    doc: str
    """The method's leading comments in the ``.proto`` file."""


@dataclass(frozen=True)
class Service:
    """One ``service`` of the file."""

    name: str
    """The service's proto name: the generated classes are ``<name>Stub`` and ``<name>Servicer``."""
    full_name: str
    """``package.Service`` (or just ``Service`` without a package), as a node announces it."""
    methods: tuple[Method, ...]
    doc: str

    @property
    def stub(self) -> str:
        return f"{self.name}Stub"

    @property
    def servicer(self) -> str:
        return f"{self.name}Servicer"

    @property
    def add_function(self) -> str:
        return f"add_{self.servicer}_to_node"


def services(scope: FileScope) -> list[Service]:
    """The services of the scope's file, with their message classes resolved."""
    package = scope.file.package
    found: list[Service] = []
    for index, service in enumerate(scope.file.service):
        full_name = f"{package}.{service.name}" if package else service.name
        methods = tuple(
            _method(scope, full_name, method, (_SERVICE_FIELD, index, _METHOD_FIELD, number))
            for number, method in enumerate(service.method)
        )
        names = [method.name for method in methods]
        for name in names:
            if names.count(name) > 1:
                raise CodegenError(f"service {full_name} has two methods named {name} in Python")
        doc = scope.comments((_SERVICE_FIELD, index))
        found.append(Service(service.name, full_name, methods, doc))
    return found


def _method(
    scope: FileScope, service: str, method: MethodDescriptorProto, path: tuple[int, ...]
) -> Method:
    name = python_name(method.name)
    if name.startswith("__") and name.endswith("__"):
        raise CodegenError(f"method {service}.{method.name}: a dunder name is reserved in Python")
    shape = ("STREAM" if method.client_streaming else "UNARY") + "_"
    shape += "STREAM" if method.server_streaming else "UNARY"
    return Method(
        name=name,
        route=f"/{service}/{method.name}",
        cardinality=shape,
        client_streaming=method.client_streaming,
        server_streaming=method.server_streaming,
        request=scope.message(method.input_type),
        reply=scope.message(method.output_type),
        idempotent=method.options.idempotency_level in _IDEMPOTENT_LEVELS,
        doc=scope.comments(path),
    )


def render_services(scope: FileScope) -> list[Source]:
    """``SERVICES``, then per service its stub, its servicer base and its ``add_..._to_node``."""
    found = services(scope)
    if not found:
        return []
    blocks = [render_services_constant(found)]
    for service in found:
        blocks.append(render_stub(scope, service))
        blocks.append(render_servicer(scope, service))
        blocks.append(render_add_function(scope, service))
    return blocks


def render_services_constant(found: list[Service]) -> Source:
    """``SERVICES``: the full names of the module's services, as a node announces them."""
    source = Source()
    names = [_string(service.full_name) for service in found]
    flat = f"SERVICES = ({', '.join(names)}{',' if len(names) == 1 else ''})"
    if source.fits(flat):
        source.line(flat)
    else:
        source.exploded("SERVICES = (", names, ")")
    return source


def render_stub(scope: FileScope, service: Service) -> Source:
    """``class <Service>Stub``: one typed, callable method object per ``rpc``."""
    source = Source()
    source.line(f"class {service.stub}:")
    with source.indent():
        _class_docstring(source, service.doc)
        source.line(f"def __init__(self, channel: {scope.runtime('ChannelLike')}) -> None:")
        with source.indent():
            for method in service.methods:
                kind = scope.runtime(_method_class(method))
                arguments = ["channel", _string(method.route), method.request, method.reply]
                if method.idempotent:
                    arguments.append("idempotent=True")
                # self.Name: Kind[Request, Reply] = Kind(channel, route, Request, Reply), exploded.
                source.line(f"self.{method.name}: {kind}[")
                with source.indent():
                    source.line(f"{method.request},")
                    source.line(f"{method.reply},")
                source.exploded(f"] = {kind}(", arguments, ")")
                source.docstring(_stub_method_doc(method))
            if not service.methods:
                source.line("pass")
    return source


def render_servicer(scope: FileScope, service: Service) -> Source:
    """``class <Service>Servicer``: a method to override per ``rpc``, and ``__mapping__()``."""
    source = Source()
    source.line(f"class {service.servicer}:")
    with source.indent():
        _class_docstring(source, service.doc)
        for method in service.methods:
            # A streaming reply is a plain method returning an async iterator, so that an override
            # may be an async generator (``async def`` with ``yield``), which has the same type.
            head = "def" if method.server_streaming else "async def"
            source.line(f"{head} {method.name}(")
            with source.indent():
                source.line("self,")
                if method.client_streaming:
                    stream = scope.typing("AsyncIterator")
                    source.hugged(f"requests: {stream}[", method.request, "],")
                else:
                    source.line(f"request: {method.request},")
                source.line(f"context: {scope.runtime('ServicerContext')},")
            if method.server_streaming:
                source.hugged(f") -> {scope.typing('AsyncIterator')}[", method.reply, "]:")
            else:
                source.line(f") -> {method.reply}:")
            with source.indent():
                source.docstring(method.doc)
                route = _string(method.route)
                if method.server_streaming:
                    source.hugged(f"return {scope.runtime('unimplemented_stream')}(", route, ")")
                else:
                    source.hugged(f"raise {scope.runtime('unimplemented')}(", route, ")")
            source.line()
        handler = f"{scope.runtime('Handler')}[{scope.typing('Any')}, {scope.typing('Any')}]"
        source.line(f"def __mapping__(self) -> dict[str, {handler}]:")
        with source.indent():
            source.docstring(
                f"Each route of {service.full_name} with its handler, for a node to serve."
            )
            if not service.methods:
                source.line("return {}")
            else:
                source.line("return {")
                with source.indent():
                    for method in service.methods:
                        cardinality = f"{scope.runtime('Cardinality')}.{method.cardinality}"
                        arguments = [
                            f"self.{method.name}",
                            cardinality,
                            method.request,
                            method.reply,
                        ]
                        if method.idempotent:
                            arguments.append("idempotent=True")
                        opening = f"{_string(method.route)}: {scope.runtime('Handler')}("
                        source.exploded(opening, arguments, "),")
                source.line("}")
    return source


def render_add_function(scope: FileScope, service: Service) -> Source:
    """``add_<Service>Servicer_to_node(servicer, node)``: serve the service on a node."""
    source = Source()
    registrar = scope.runtime("ServiceRegistrar")
    parameters = [f"servicer: {service.servicer}", f"node: {registrar}"]
    source.exploded(f"def {service.add_function}(", parameters, ") -> None:")
    with source.indent():
        source.docstring(f"Serve {service.full_name} on ``node`` with the methods of ``servicer``.")
        arguments = [_string(service.full_name), "servicer.__mapping__()"]
        call = f"node.add_service({', '.join(arguments)})"
        if source.fits(call):
            source.line(call)
        else:
            source.exploded("node.add_service(", arguments, ")")
    return source


def _method_class(method: Method) -> str:
    request = "Stream" if method.client_streaming else "Unary"
    reply = "Stream" if method.server_streaming else "Unary"
    return f"{request}{reply}Method"


_CALLS = {
    "UNARY_UNARY": ("UnaryUnaryCall", "await it for the {reply}"),
    "UNARY_STREAM": ("UnaryStreamCall", "iterate it for each {reply}"),
    "STREAM_UNARY": ("StreamUnaryCall", "write requests (or pass an iterable), await the {reply}"),
    "STREAM_STREAM": ("StreamStreamCall", "write requests (or pass an iterable), iterate replies"),
}


def _stub_method_doc(method: Method) -> str:
    """What a stub method returns and raises, after the ``.proto``'s own comment."""
    call, use = _CALLS[method.cardinality]
    reply = method.reply.rsplit(".", 1)[-1]
    retried = "retried on another server" if method.idempotent else "never run twice"
    summary = (
        f"Returns a p2prpc.rpc.{call} at once ({use.format(reply=reply)}); timeout= is in "
        f"seconds, retries included ({retried}). Fails with RpcError: UNAVAILABLE (no server, "
        "or it went away), DEADLINE_EXCEEDED, CANCELLED, or the status the server ended with."
    )
    return f"{method.doc.strip()}\n\n{summary}" if method.doc.strip() else summary


def _class_docstring(source: Source, doc: str) -> None:
    """The class's docstring if the ``.proto`` has comments for it, then the blank line after."""
    if source.docstring(doc):
        source.line()


def _string(text: str) -> str:
    """``text`` as a double-quoted literal (proto names never need escaping)."""
    return f'"{text}"'
