"""The standard health service, ``grpc.health.v1.Health``, served over p2prpc's own RPC.

``Check`` answers a service's serving status now (NOT_FOUND for a service the node does not
know), ``Watch`` streams it: the status at once, then every change. ``""`` is the node as a whole.
A service the node serves is SERVING unless the application says otherwise with
``health_of(node).set(service, NOT_SERVING)``; when ``node.stop()`` begins, every status turns
NOT_SERVING, watchers are told, and their streams end so that a graceful stop does not wait for
them (new calls are refused UNAVAILABLE from then on, as for every service).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from grpc_health.v1 import health_pb2

from ..errors import RpcError
from ..rpc.base import Cardinality, Handler
from ..rpc.server import ServicerContext
from ..wire.status import StatusCode

if TYPE_CHECKING:
    from ..mux import Mux

__all__ = [
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

_END = object()


class Health:
    """The serving statuses of one node's services; :func:`health_of` gives it."""

    def __init__(self, node: Mux) -> None:
        self._node = weakref.ref(node)
        self._set: dict[str, ServingStatus] = {}
        self._watchers: dict[str, set[asyncio.Queue[Any]]] = {}
        self._shut_down = False
        node.on("stopping", self.enter_graceful_shutdown)

    def status(self, service: str = "") -> ServingStatus | None:
        """The status of ``service`` (``""``: the node), or ``None`` for one it does not know."""
        if self._shut_down:
            return NOT_SERVING
        if service in self._set:
            return self._set[service]
        node = self._node()
        if service == "" or (node is not None and service in node.services):
            return SERVING
        return None

    def set(self, service: str, status: ServingStatus) -> None:
        """Say how ``service`` (``""``: the whole node) is doing; watchers are told. Ignored once
        the node is stopping (everything is NOT_SERVING then)."""
        if self._shut_down:
            return
        before = self.status(service)
        self._set[service] = status
        if before != status:
            self._tell(service, status)

    def clear(self, service: str) -> None:
        """Forget what :meth:`set` said about ``service`` (back to the default)."""
        if service in self._set and not self._shut_down:
            del self._set[service]
            self._tell(service, self.status(service))

    def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING from now on; watchers are told and their streams end."""
        if self._shut_down:
            return
        self._shut_down = True
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(NOT_SERVING)
                queue.put_nowait(_END)

    def _tell(self, service: str, status: ServingStatus | None) -> None:
        for queue in self._watchers.get(service, ()):
            queue.put_nowait(SERVICE_UNKNOWN if status is None else status)

    async def watch(self, service: str) -> AsyncIterator[ServingStatus]:
        """The status of ``service`` now, then each change, until the node stops."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._watchers.setdefault(service, set()).add(queue)
        try:
            status = self.status(service)
            yield SERVICE_UNKNOWN if status is None else status
            if self._shut_down:
                return
            last = status
            while (item := await queue.get()) is not _END:
                if item != last:
                    last = item
                    yield item
        finally:
            self._watchers[service].discard(queue)


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
            raise RpcError(StatusCode.NOT_FOUND, f"unknown service: {request.service}")
        return Response(status=status)

    async def watch(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
        async for status in health.watch(request.service):
            yield Response(status=status)

    async def list_(request: Any, context: ServicerContext) -> Any:
        node_ = health._node()
        names = {"", *health._set, *(node_.services if node_ is not None else ())}
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
