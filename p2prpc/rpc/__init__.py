"""Typed RPC over P2PT, shaped like grpc.aio: what generated stubs and servicers are made of.

Stubs call through a :class:`Channel` (``Channel(node, retry_policy=..., interceptors=...)``), a
:class:`~p2prpc.node.Node` (its default channel: any peer serving the service) or
``node.to(peer_id)``; invoking a stub method returns a call object (:class:`UnaryUnaryCall`, …).
grpcio-tools' generated stubs take the same (grpc.aio.Channel's ``unary_unary``, …:
:class:`GrpcChannelMethods`), with grpc's channel options (``Channel(node, options=[...])``).
Servicers are added to a node with the generated ``add_…Servicer_to_node``, or grpcio-tools'
``add_…Servicer_to_server(servicer, node)``: a node's :class:`Server` (``node.server``) has
grpc.aio's ``Server`` methods.
"""

from .base import (
    NO_RETRY,
    Cardinality,
    ClientCallDetails,
    ClientInterceptor,
    Handler,
    HandlerCallDetails,
    RetryPolicy,
    ServerInterceptor,
    ServiceRegistrar,
    unimplemented,
    unimplemented_stream,
)
from .channel import (
    Channel,
    ChannelLike,
    GrpcChannelMethods,
    IdentityTarget,
    PeerTarget,
    as_channel,
)
from .client import (
    EOF,
    JSONMethod,
    StreamStreamCall,
    StreamStreamMethod,
    StreamUnaryCall,
    StreamUnaryMethod,
    UnaryStreamCall,
    UnaryStreamMethod,
    UnaryUnaryCall,
    UnaryUnaryMethod,
)
from .deadline import Deadline
from .server import ServicerContext, SyncServicerContext
from .serving import GrpcHandlerCallDetails, Server
from .status import RpcError, StatusCode

__all__ = [
    "EOF",
    "NO_RETRY",
    "Cardinality",
    "Channel",
    "ChannelLike",
    "ClientCallDetails",
    "ClientInterceptor",
    "Deadline",
    "GrpcChannelMethods",
    "GrpcHandlerCallDetails",
    "Handler",
    "HandlerCallDetails",
    "IdentityTarget",
    "JSONMethod",
    "PeerTarget",
    "RetryPolicy",
    "RpcError",
    "Server",
    "ServerInterceptor",
    "ServiceRegistrar",
    "ServicerContext",
    "StatusCode",
    "StreamStreamCall",
    "StreamStreamMethod",
    "StreamUnaryCall",
    "StreamUnaryMethod",
    "SyncServicerContext",
    "UnaryStreamCall",
    "UnaryStreamMethod",
    "UnaryUnaryCall",
    "UnaryUnaryMethod",
    "as_channel",
    "unimplemented",
    "unimplemented_stream",
]
