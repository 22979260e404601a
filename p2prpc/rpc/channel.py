"""What a stub calls through: a node, the settings of its calls, and how a server is picked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Union

from ..errors import RpcError
from ..mux import IdentityTarget, Mux, PeerTarget
from ..wire.status import StatusCode
from .base import ClientInterceptor, RetryPolicy, check_encoding
from .deadline import Deadline
from .endpoint import Endpoint, endpoint_of

if TYPE_CHECKING:
    from typing import TypeAlias


#: Bytes of requests a request-streaming call keeps for another attempt (gRPC's default).
RETRY_BUFFER_SIZE = 256 * 1024


class NoServer(Exception):
    """No peer to send an attempt to (the attempt never ran anywhere)."""

    def __init__(self, code: StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Channel:
    """The RPC settings of the calls made through a node, as a gRPC channel holds them.

    ``Channel(node)`` calls any peer serving the method's service that is not suspect (keepalive):
    first those that answer (a ping unanswered for a moment, as after it died without a word,
    ranks a peer last), then the fewest calls in flight from here, ties at random. ``peer``: one
    peer only (``channel.to(peer_id)``), by its id or a unique prefix of it.
    ``retry_policy``: when failed calls are tried again (gRFC A6; ``None``: the default
    :class:`RetryPolicy`, three attempts on UNAVAILABLE). ``interceptors``: what wraps every call.
    ``compression``: ``"deflate"``, ``"zstd"`` or ``None``. ``wait_for_ready``: whether calls wait
    for a serving peer (within their timeout) instead of failing UNAVAILABLE at once.
    ``allowed_servers``: Ed25519 public keys; calls go only to peers that proved one of them on
    their connection (``node.to_identity(key)`` is a shorthand), and fail UNAVAILABLE when none
    serves. ``retry_buffer_size``: bytes (as held in memory, each request counted with 512 for
    its envelope) of the requests a call that streams them keeps, so that another attempt can be
    sent them, until the server answers; past that the call keeps its attempt and is not retried
    (gRPC's per-call retry buffer; 256 KiB). Only idempotent methods keep any.

    A stub takes a ``Channel``, a :class:`~p2prpc.node.Node` (its default channel) or
    ``node.to(peer_id)``.
    """

    node: Mux
    peer: str | None = None
    retry_policy: RetryPolicy | None = None
    interceptors: Sequence[ClientInterceptor] = ()
    compression: str | None = None
    wait_for_ready: bool = False
    allowed_servers: Sequence[bytes] | None = None
    retry_buffer_size: int = RETRY_BUFFER_SIZE

    def __post_init__(self) -> None:
        check_encoding(self.compression)
        if self.retry_buffer_size < 0:
            raise ValueError("retry_buffer_size must be a number of bytes ≥ 0")
        object.__setattr__(self, "interceptors", tuple(self.interceptors))
        if self.allowed_servers is not None:
            object.__setattr__(self, "allowed_servers", frozenset(self.allowed_servers))

    def _resolve(self, wanted: str) -> str | None:
        """The connected peer ``wanted`` names: its id, or a prefix of exactly one connected
        peer's id (as logs show ids: ``7b866dec``)."""
        if self.node.p2pt.is_connected(wanted):
            return wanted
        found = [pid for pid in self.node.peers if pid.startswith(wanted)]
        if len(found) == 1 and self.node.p2pt.is_connected(found[0]):
            return found[0]
        return None

    def _allowed(self, peer_id: str) -> bool:
        allowed = self.allowed_servers
        return allowed is None or self.node.peer_identity(peer_id) in allowed

    def to(self, peer_id: str) -> Channel:
        """The same settings, every call to ``peer_id``."""
        return replace(self, peer=peer_id)

    @property
    def endpoint(self) -> Endpoint:
        return endpoint_of(self.node)

    def pick_now(self, service: str, tried: frozenset[str]) -> str | None:
        """The peer for the next attempt if one can take it now (no waiting), else ``None``."""
        if self.peer is not None:
            fixed = self._resolve(self.peer)
            return fixed if fixed is not None and self._allowed(fixed) else None
        if self.allowed_servers is None:
            return self.endpoint.pick_server(service, tried)
        return self.endpoint.pick_server(service, tried, self._allowed)

    async def pick(
        self, service: str, tried: frozenset[str], wait_for_ready: bool, deadline: Deadline
    ) -> str:
        """The peer for the next attempt: ``NoServer`` (UNAVAILABLE) when there is none, and
        DEADLINE_EXCEEDED when ``wait_for_ready`` waited until the deadline."""
        node = self.node
        endpoint = self.endpoint
        if self.peer is not None:
            wanted = self.peer

            def found() -> str | None:
                fixed = self._resolve(wanted)
                return fixed if fixed is not None and self._allowed(fixed) else None

            missing = f"peer {wanted} is not connected"
        else:

            def found() -> str | None:
                if self.allowed_servers is None:
                    return endpoint.pick_server(service, tried)
                return endpoint.pick_server(service, tried, self._allowed)

            missing = f"no connected peer serves {service}"
            if self.allowed_servers is not None:
                missing += " with an allowed identity"
        peer_id = found()
        if peer_id is None and self.peer is None and not node.stopping:
            # No neighbour serves it: the mesh may know a peer that does, and connect to it.
            await node.reach_service(service, deadline.remaining(), self.allowed_servers)
            peer_id = found()
        if peer_id is not None:
            return peer_id
        if node.stopping:
            raise NoServer(StatusCode.UNAVAILABLE, "the node is stopping")
        if not wait_for_ready:
            raise NoServer(StatusCode.UNAVAILABLE, missing)
        try:
            await node.wait_until(lambda: found() is not None, deadline.remaining())
        except TimeoutError:
            raise RpcError(StatusCode.DEADLINE_EXCEEDED, f"{missing} within the deadline") from None
        peer_id = found()
        assert peer_id is not None
        return peer_id


ChannelLike: TypeAlias = Union[Channel, Mux, PeerTarget, IdentityTarget]  # noqa: UP007


def as_channel(target: ChannelLike) -> Channel:
    """The channel a stub calls through."""
    if isinstance(target, Channel):
        return target
    if isinstance(target, PeerTarget):
        return Channel(target.node, target.peer_id)
    if isinstance(target, IdentityTarget):
        return Channel(target.node, allowed_servers=target.public_keys)
    if isinstance(target, Mux):
        return Channel(target)
    raise TypeError(
        f"a stub takes a p2prpc Channel, Node or node.to(peer), not {type(target).__name__}"
    )
