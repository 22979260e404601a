"""The standard health service, ``grpc.health.v1.Health``, served over p2prpc's own RPC.

``Check`` answers a service's serving status now (NOT_FOUND for a service the node does not
know), ``Watch`` streams it: the status at once, then every change. ``""`` is the node as a whole.
A service the node serves is SERVING unless the application says otherwise with
``health_of(node).set(service, NOT_SERVING)``; when ``node.stop()`` begins, every status turns
NOT_SERVING, watchers are told, and their streams end so that a graceful stop does not wait for
them (new calls are refused UNAVAILABLE from then on, as for every service).

What a watch holds is freed when its call ends, however it ends (cancelled, out of time, the peer
gone, the connection closed), and it is bounded: a service name longer than
``MAX_SERVICE_NAME_BYTES`` (UTF-8) names no service a node can have, so ``Check`` answers it
NOT_FOUND and ``Watch`` INVALID_ARGUMENT at once, keeping nothing; a peer may hold at most
``MAX_WATCHES_PER_PEER`` watches at a time, one more is refused RESOURCE_EXHAUSTED; and a watch
keeps only the latest status, not every change (as gRPC's own health server, a watcher may miss
statuses that did not last, never the one that holds now).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from grpc_health.v1 import health_pb2

from ..errors import RpcError
from ..rpc.base import Cardinality, Handler
from ..rpc.server import ServicerContext
from ..rpc.serving import server_of
from ..wire.status import StatusCode

if TYPE_CHECKING:
    from ..mux import Mux

__all__ = [
    "MAX_SERVICE_NAME_BYTES",
    "MAX_WATCHES_PER_PEER",
    "NOT_SERVING",
    "SERVICE_NAME",
    "SERVICE_UNKNOWN",
    "SERVING",
    "UNKNOWN",
    "Health",
    "health_handlers",
    "health_of",
]

ServingStatus = health_pb2.HealthCheckResponse.ServingStatus
UNKNOWN = health_pb2.HealthCheckResponse.UNKNOWN
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

SERVICE_NAME = "grpc.health.v1.Health"

#: The longest service name (in UTF-8 bytes) a node can serve, set or watch. A gRPC service's full
#: name is a protobuf package and service name, tens of bytes; a longer one is no service.
MAX_SERVICE_NAME_BYTES = 1024

#: The most ``Watch`` calls one peer may have open on a node at a time.
MAX_WATCHES_PER_PEER = 32


def _too_long(service: str) -> bool:
    return len(service) > MAX_SERVICE_NAME_BYTES or (
        len(service.encode("utf-8", "surrogatepass")) > MAX_SERVICE_NAME_BYTES
    )


class Health:
    """The serving statuses of one node's services; :func:`health_of` gives it."""

    def __init__(self, node: Mux) -> None:
        self._node = weakref.ref(node)
        self._set: dict[str, ServingStatus] = {}
        # The watches open now, by the service they watch: each an event set on a change.
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._watches_from: dict[str, int] = {}  # peer id → its watches open now
        self._shut_down = False
        node.on("stopping", self.enter_graceful_shutdown)

    def status(self, service: str = "") -> ServingStatus | None:
        """The status of ``service`` (``""``: the node), or ``None`` for one it does not know."""
        if _too_long(service):
            return None
        if self._shut_down:
            return NOT_SERVING
        if service in self._set:
            return self._set[service]
        node = self._node()
        if service == "" or (node is not None and service in server_of(node).services):
            return SERVING
        return None

    def set(self, service: str, status: ServingStatus) -> None:
        """Say how ``service`` (``""``: the whole node) is doing; watchers are told. Ignored once
        the node is stopping (everything is NOT_SERVING then). ``ValueError`` for a name longer
        than ``MAX_SERVICE_NAME_BYTES``."""
        if _too_long(service):
            raise ValueError(f"a service name is at most {MAX_SERVICE_NAME_BYTES} bytes")
        if self._shut_down:
            return
        before = self.status(service)
        self._set[service] = status
        if before != status:
            self._tell(service)

    def clear(self, service: str) -> None:
        """Forget what :meth:`set` said about ``service`` (back to the default)."""
        if service in self._set and not self._shut_down:
            del self._set[service]
            self._tell(service)

    def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING from now on; watchers are told and their streams end."""
        if self._shut_down:
            return
        self._shut_down = True
        for events in self._watchers.values():
            for event in events:
                event.set()

    def _tell(self, service: str) -> None:
        for event in self._watchers.get(service, ()):
            event.set()

    def _shown(self, service: str) -> ServingStatus:
        status = self.status(service)
        return SERVICE_UNKNOWN if status is None else status

    async def watch(self, service: str) -> AsyncGenerator[ServingStatus, None]:
        """The status of ``service`` now, then each change, until the node stops; a status that
        changed back before the watcher looked may go unseen. ``RpcError`` INVALID_ARGUMENT for
        a name longer than ``MAX_SERVICE_NAME_BYTES``. Close the iterator (or let it end) to stop
        watching: nothing of the watch stays then."""
        if _too_long(service):
            raise RpcError(
                StatusCode.INVALID_ARGUMENT,
                f"a service name is at most {MAX_SERVICE_NAME_BYTES} bytes",
            )
        changed = asyncio.Event()
        watchers = self._watchers.setdefault(service, set())
        watchers.add(changed)
        try:
            last = self._shown(service)
            yield last
            while not self._shut_down:
                await changed.wait()
                changed.clear()
                now = self._shown(service)
                if now != last:
                    last = now
                    yield now
        finally:
            watchers.discard(changed)
            if not watchers and self._watchers.get(service) is watchers:
                del self._watchers[service]

    @contextlib.contextmanager
    def _watch_of(self, peer_id: str) -> Iterator[None]:
        """Count one watch of ``peer_id`` while inside; RESOURCE_EXHAUSTED past the cap."""
        held = self._watches_from.get(peer_id, 0)
        if held >= MAX_WATCHES_PER_PEER:
            raise RpcError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"at most {MAX_WATCHES_PER_PEER} health watches per peer",
            )
        self._watches_from[peer_id] = held + 1
        try:
            yield
        finally:
            left = self._watches_from.get(peer_id, 1) - 1
            if left > 0:
                self._watches_from[peer_id] = left
            else:
                self._watches_from.pop(peer_id, None)


_HEALTH: weakref.WeakKeyDictionary[Mux, Health] = weakref.WeakKeyDictionary()


def health_of(node: Mux) -> Health:
    """The health statuses of ``node`` (made on first use)."""
    found = _HEALTH.get(node)
    if found is None:
        found = _HEALTH[node] = Health(node)
    return found


def health_handlers(node: Mux) -> dict[str, Handler[Any, Any]]:
    """The handlers of ``grpc.health.v1.Health`` for ``node``, for ``node.add_service``."""
    health = health_of(node)
    Request = health_pb2.HealthCheckRequest
    Response = health_pb2.HealthCheckResponse

    async def check(request: Any, context: ServicerContext) -> Any:
        status = health.status(request.service)
        if status is None:
            if _too_long(request.service):  # not echoed: the details would be as long
                raise RpcError(
                    StatusCode.NOT_FOUND,
                    f"unknown service: a name over {MAX_SERVICE_NAME_BYTES} bytes",
                )
            raise RpcError(StatusCode.NOT_FOUND, f"unknown service: {request.service}")
        return Response(status=status)

    async def watch(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
        with health._watch_of(context.peer()):
            async with contextlib.aclosing(health.watch(request.service)) as statuses:
                async for status in statuses:
                    yield Response(status=status)

    async def list_(request: Any, context: ServicerContext) -> Any:
        node_ = health._node()
        names = {"", *health._set, *(server_of(node_).services if node_ is not None else ())}
        reply = health_pb2.HealthListResponse()
        for name in sorted(names):
            status = health.status(name)
            if status is not None:
                reply.statuses[name].status = status
        return reply

    return {
        f"/{SERVICE_NAME}/Check": Handler(
            check, Cardinality.UNARY_UNARY, Request, Response, idempotent=True
        ),
        f"/{SERVICE_NAME}/Watch": Handler(
            watch, Cardinality.UNARY_STREAM, Request, Response, idempotent=True
        ),
        f"/{SERVICE_NAME}/List": Handler(
            list_,
            Cardinality.UNARY_UNARY,
            health_pb2.HealthListRequest,
            health_pb2.HealthListResponse,
            idempotent=True,
        ),
    }
