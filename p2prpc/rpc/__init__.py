"""Typed RPC over P2PT: what generated stubs and servicers are made of.

Stubs call through a :class:`~p2prpc.node.Node` (any peer serving the service) or
``node.to(peer_id)``; servicers are added to a node with the generated ``add_…_to_node``.
"""

from .base import (
    NO_RETRY,
    Cardinality,
    Channel,
    ClientCallDetails,
    ClientInterceptor,
    Handler,
    HandlerCallDetails,
    RetryPolicy,
    ServerInterceptor,
    ServicerContext,
    ServiceRegistrar,
    unimplemented,
    unimplemented_stream,
)
from .client import (
    AttemptError,
    StreamStreamCall,
    StreamStreamMethod,
    StreamUnaryMethod,
    UnaryStreamCall,
    UnaryStreamMethod,
    UnaryUnaryMethod,
)
from .status import RpcError, StatusCode

__all__ = [
    "NO_RETRY",
    "AttemptError",
    "Cardinality",
    "Channel",
    "ClientCallDetails",
    "ClientInterceptor",
    "Handler",
    "HandlerCallDetails",
    "RetryPolicy",
    "RpcError",
    "ServerInterceptor",
    "ServiceRegistrar",
    "ServicerContext",
    "StatusCode",
    "StreamStreamCall",
    "StreamStreamMethod",
    "StreamUnaryMethod",
    "UnaryStreamCall",
    "UnaryStreamMethod",
    "UnaryUnaryMethod",
    "unimplemented",
    "unimplemented_stream",
]
