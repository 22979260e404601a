"""The standard services every node serves unless told not to (``Node(reflection=False,
health=False)``): ``grpc.reflection.v1.ServerReflection`` (and ``v1alpha``) and
``grpc.health.v1.Health``, over p2prpc's own RPC, so that they work peer to peer.

``health_of(node).set(service, NOT_SERVING)`` changes what the health service answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..rpc.serving import server_of
from .health import NOT_SERVING, SERVICE_UNKNOWN, SERVING, UNKNOWN, Health, health_of

if TYPE_CHECKING:
    from ..mux import Mux

__all__ = [
    "NOT_SERVING",
    "SERVICE_UNKNOWN",
    "SERVING",
    "UNKNOWN",
    "Health",
    "health_of",
    "serve_standard_services",
]


def serve_standard_services(node: Mux, *, reflection: bool, health: bool) -> None:
    """Add the reflection and health services to ``node``."""
    if health:
        from .health import SERVICE_NAME, health_handlers

        server_of(node).add_service(SERVICE_NAME, health_handlers(node))
    if reflection:
        from .reflection import V1, V1ALPHA, reflection_handlers

        for messages in (V1, V1ALPHA):
            server_of(node).add_service(messages.service, reflection_handlers(node, messages))
