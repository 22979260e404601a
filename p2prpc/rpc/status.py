"""gRPC status codes and the error that carries one, where ``p2prpc.rpc`` users look for them.

``StatusCode`` is grpcio's own :class:`grpc.StatusCode` (numbers on the wire:
:mod:`p2prpc.wire.status`); ``RpcError`` lives with every other error in :mod:`p2prpc.errors`.
"""

from ..errors import RpcError
from ..wire.status import StatusCode

__all__ = ["RpcError", "StatusCode"]
