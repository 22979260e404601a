"""What a stub calls through: a node, the settings of its calls, and how a server is picked."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar, Union, cast

import grpc
import grpc.aio

from ..errors import InvalidChannelOption, RpcError
from ..mux import Mux
from ..swarm.attempt import summarize
from ..swarm.connectivity import SwarmConnectivity
from ..wire.status import StatusCode
from .base import (
    AnyClientInterceptor,
    CompressionLike,
    RetryPolicy,
    check_client_interceptor,
    encoding_of,
)
from .deadline import Deadline
from .endpoint import Endpoint, endpoint_of
from .options import ChannelOptions, MethodConfig, RetryThrottling, parse_options

if TYPE_CHECKING:
    from typing import TypeAlias

    from .client import (
        StreamStreamMethod,
        StreamUnaryMethod,
        UnaryStreamMethod,
        UnaryUnaryMethod,
        _MethodBase,
    )

    M = TypeVar("M", bound=_MethodBase[Any, Any])


#: Bytes of requests a request-streaming call keeps for another attempt (gRPC's default).
RETRY_BUFFER_SIZE = 256 * 1024


_CLOSED = "Channel is closed."  # grpc.aio's words


class _Life:
    """What a channel and the channels made from it with :meth:`Channel.to` share: whether it
    is closed, the calls in flight through it, and who watches its state."""

    def __init__(self) -> None:
        self.closed = False
        self.calls: weakref.WeakSet[Any] = weakref.WeakSet()
        self.watchers: set[asyncio.Event] = set()
        self.starting: asyncio.Task[None] | None = None

    def changed(self) -> None:
        for event in self.watchers:
            event.set()


class NoServer(Exception):
    """No peer to send an attempt to (the attempt never ran anywhere)."""

    def __init__(self, code: StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Throttle:
    """gRFC A6's retry throttling for one channel (:class:`~p2prpc.rpc.options.RetryThrottling`)."""

    def __init__(self, config: RetryThrottling) -> None:
        self.config = config
        self.tokens = config.max_tokens

    def allows_retry(self) -> bool:
        return self.tokens > self.config.max_tokens / 2

    def record(self, failed: bool) -> None:
        if failed:
            self.tokens = max(0.0, self.tokens - 1)
        else:
            self.tokens = min(self.config.max_tokens, self.tokens + self.config.token_ratio)


class GrpcChannelMethods:
    """grpc.aio.Channel's four multicallable factories, so that grpcio-tools' generated
    ``XStub(channel)`` works: a :class:`Channel` has them, and so do a
    :class:`~p2prpc.node.Node` (its default channel) and ``node.to(peer_id)``.

    ``unary_unary(method, request_serializer=None, response_deserializer=None,
    _registered_method=False)`` (and ``unary_stream``, ``stream_unary``, ``stream_stream``) returns
    p2prpc's own method object for ``method`` (``/pkg.Service/Method``), called as grpc.aio's
    multicallables are (``request`` or ``request_iterator``, ``timeout``, ``metadata``,
    ``credentials``, ``wait_for_ready``, ``compression``) and returning p2prpc's call objects
    (:class:`~p2prpc.rpc.UnaryUnaryCall`, ...). ``request_serializer`` and
    ``response_deserializer`` make messages bytes and back, as in grpcio (``None``: bytes as they
    are); in the JSON form (``Node(binary=False)``, plain P2PT peers) a protobuf request travels
    as proto3 JSON and a reply is read as the deserializer's message type (``Msg.FromString``).
    ``_registered_method`` is accepted and changes nothing. A method of such a stub is not known
    to be idempotent: it is retried only when it cannot have run, unless a service config's
    ``retryPolicy`` names it (see :class:`Channel`).
    """

    def unary_unary(
        self,
        method: str | bytes,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> UnaryUnaryMethod[Any, Any]:
        from .client import UnaryUnaryMethod

        return self._method(UnaryUnaryMethod, method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str | bytes,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> UnaryStreamMethod[Any, Any]:
        from .client import UnaryStreamMethod

        return self._method(UnaryStreamMethod, method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str | bytes,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> StreamUnaryMethod[Any, Any]:
        from .client import StreamUnaryMethod

        return self._method(StreamUnaryMethod, method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str | bytes,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> StreamStreamMethod[Any, Any]:
        from .client import StreamStreamMethod

        return self._method(StreamStreamMethod, method, request_serializer, response_deserializer)

    def _method(
        self,
        kind: type[M],
        method: str | bytes,
        request_serializer: Callable[[Any], bytes] | None,
        response_deserializer: Callable[[bytes], Any] | None,
    ) -> M:
        """A method object of ``kind`` for ``method``, its payloads made by grpcio's serializer
        pair, calling through this (a channel, a node or a peer target)."""
        from .client import grpc_codecs  # the call machinery builds on this module

        requests, replies = grpc_codecs(request_serializer, response_deserializer)
        name = method.decode() if isinstance(method, bytes) else method
        channel = as_channel(cast(ChannelLike, self))
        return kind(channel, name, object, object, request_codec=requests, reply_codec=replies)


# A grpc.aio.Channel (isinstance holds, as grpc.aio's type hints expect); its stub methods give
# p2prpc's method objects, registered as grpc.aio's multicallables, which the type stubs cannot
# say: hence the ignore.
@dataclass(frozen=True)
class Channel(GrpcChannelMethods, grpc.aio.Channel):  # type: ignore[misc]
    """The RPC settings of the calls made through a node, as a gRPC channel holds them.

    ``Channel(node)`` calls any peer serving the method's service that is not suspect (keepalive):
    first those that answer (a ping unanswered for a moment, as after it died without a word,
    ranks a peer last), then the fewest calls in flight from here, ties at random. ``peer``: one
    peer only (``channel.to(peer_id)``), by its id or a unique prefix of it.
    ``retry_policy``: when failed calls are tried again (gRFC A6; ``None``: the default
    :class:`RetryPolicy`, three attempts on UNAVAILABLE). ``interceptors``: what wraps the calls,
    outermost first: grpc.aio's interceptor classes (each used for the call shapes it implements)
    and p2prpc's ``intercept_call`` form, mixed as wanted; ``ValueError`` for anything else.
    ``compression``: ``"gzip"``, ``"deflate"``, ``"zstd"``, a ``grpc.Compression`` member or
    ``None``. ``wait_for_ready``: whether calls wait for a serving peer (within their timeout)
    instead of failing UNAVAILABLE at once.
    ``allowed_servers``: Ed25519 public keys; calls go only to peers that proved one of them on
    their connection (``node.to_identity(key)`` is a shorthand), and fail UNAVAILABLE when none
    serves. ``retry_buffer_size``: bytes (as held in memory, each request counted with 512 for
    its envelope) of the requests a call that streams them keeps, so that another attempt can be
    sent them, until the server answers; past that the call keeps its attempt and is not retried
    (gRPC's per-call retry buffer; 256 KiB). Only idempotent methods keep any.

    ``options``: grpc channel options, ``(key, value)`` pairs as ``grpc.aio.insecure_channel``
    takes them. Applied: ``grpc.service_config`` (JSON; its ``methodConfig`` entries apply per
    method as in gRPC, the most specific ``name`` winning: ``timeout``, the most a call takes,
    its own shorter timeout standing; ``waitForReady``, unless the call chooses; ``retryPolicy``
    (gRFC A6: ``maxAttempts``, clamped to 5, ``initialBackoff``, ``maxBackoff``,
    ``backoffMultiplier``, ``retryableStatusCodes``), which replaces ``retry_policy`` for the
    methods it names, and retries them as gRPC does even once they may have run (the config
    declares them safe to run again); ``maxRequestMessageBytes``, ``maxResponseMessageBytes``;
    and ``retryThrottling``), ``grpc.enable_retries`` (0: no call is retried),
    ``grpc.max_receive_message_length`` (or its old name ``grpc.max_message_length``) and
    ``grpc.max_send_message_length`` (bytes, ``-1``: no limit; never past the node's
    ``max_message_size`` nor what the peer takes: a reply or request over it ends the call
    RESOURCE_EXHAUSTED), ``grpc.per_rpc_retry_buffer_size`` (``retry_buffer_size``, unless that is
    given), ``grpc.default_compression_algorithm`` (a ``grpc.Compression``; ``compression`` wins).
    Keepalive is the node's (``Node(keepalive_interval=..., keepalive_timeout=...)``), as the
    connections are: ``grpc.keepalive_time_ms`` and ``grpc.keepalive_timeout_ms`` are taken when
    the node already keeps them (it pings at least that often, and gives up on a ping at least
    that soon), and refused otherwise. Accepted and ignored (a target address, a resolver, a load
    balancer, TLS or an HTTP/2 connection of the channel's own, which a channel over a swarm does
    not have): ``grpc.primary_user_agent``, ``grpc.secondary_user_agent``,
    ``grpc.default_authority``, ``grpc.ssl_target_name_override``, ``grpc.lb_policy_name``,
    ``grpc.enable_http_proxy``, ``grpc.http_proxy``, ``grpc.service_config_disable_resolution``,
    ``grpc.enable_channelz``, ``grpc.use_local_subchannel_pool``, the reconnect backoffs
    (``grpc.initial_reconnect_backoff_ms``, ``grpc.min_...``, ``grpc.max_...``), the DNS options,
    ``grpc.client_idle_timeout_ms``, ``grpc.keepalive_permit_without_calls`` (the node pings
    without calls), ``grpc.http2.*`` (max_pings_without_data, min_time_between_pings_ms,
    bdp_probe, lookahead_bytes, write_buffer_size, max_frame_size) and
    ``grpc.optimization_target`` (:data:`p2prpc.rpc.options.IGNORED`). Any other key is ignored,
    as gRPC ignores a channel argument it does not know, and a warning names it (a misspelt key
    shows in the log). A value of the wrong type or out of range (an integer option is a C int, as
    grpcio passes it; a service config's numbers are read as gRPC core reads them: ASCII digits,
    within their field's type, finite) or an invalid service config raises
    :class:`~p2prpc.errors.InvalidChannelOption` (a ``ValueError``; for the service config
    :class:`~p2prpc.errors.InvalidServiceConfig`, in gRPC's words) here, where gRPC makes the
    channel and fails each of its calls INVALID_ARGUMENT.

    A stub takes a ``Channel``, a :class:`~p2prpc.node.Node` (its default channel) or
    ``node.to(peer_id)``; so do grpcio-tools' generated stubs (:class:`GrpcChannelMethods`).

    Connectivity, as ``grpc.aio.Channel``'s (:meth:`get_state`, :meth:`wait_for_state_change`,
    :meth:`channel_ready`), means for a swarm: IDLE, the node is not started; CONNECTING, it is
    still finding and connecting to peers (a tracker has not answered yet, a tracker counts
    peers not connected yet, a connection is in progress to a peer whose last attempt did not
    fail, a connected peer has not said hello yet: each for the node's ``connect_timeout``
    seconds, 20, from when it began); READY, a peer this channel may call (any, the one of
    :meth:`to`, one of ``allowed_servers``) is connected, has said hello and is not suspect;
    TRANSIENT_FAILURE, none is and nothing is in progress (every tracker unreachable or
    refusing, the bound passed, no other peer in the swarm); SHUTDOWN, the channel is closed or
    the node stopping. As grpc.aio's, a call that finds no serving peer waits (within its
    timeout, and for at most ``connect_timeout``) while the channel is CONNECTING, and fails
    UNAVAILABLE at once otherwise, its details saying why (``wait_for_ready``: it waits
    anyway). A call on an IDLE channel starts the node, as one on an IDLE gRPC channel connects
    it. :meth:`close` (or ``async with``) ends the calls made through it; calls made after fail
    ``grpc.aio.UsageError``, as on a closed grpc.aio channel.
    """

    node: Mux
    peer: str | None = None
    retry_policy: RetryPolicy | None = None
    interceptors: Sequence[AnyClientInterceptor] = ()
    compression: CompressionLike = None
    wait_for_ready: bool = False
    allowed_servers: Sequence[bytes] | None = None
    retry_buffer_size: int = RETRY_BUFFER_SIZE
    options: Sequence[tuple[str, Any]] = ()
    _settings: ChannelOptions = field(init=False, repr=False, compare=False)
    _throttle: _Throttle | None = field(init=False, repr=False, compare=False)

    _life: _Life = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_life", _Life())
        if not isinstance(self.node, Mux):
            hint = (
                " (for one peer: Channel(node, peer=peer_id) or channel.to(peer_id))"
                if isinstance(self.node, PeerTarget | IdentityTarget)
                else ""
            )
            raise TypeError(f"a Channel is made on a Node, not {type(self.node).__name__}{hint}")
        settings = parse_options(self.options)
        object.__setattr__(self, "options", tuple(tuple(item) for item in self.options))
        object.__setattr__(self, "_settings", settings)
        compression = self.compression
        if compression is None:
            compression = settings.default_compression
        object.__setattr__(self, "compression", encoding_of(compression))
        if (
            settings.per_rpc_retry_buffer_size is not None
            and self.retry_buffer_size == RETRY_BUFFER_SIZE
        ):
            object.__setattr__(self, "retry_buffer_size", settings.per_rpc_retry_buffer_size)
        if self.retry_buffer_size < 0:
            raise ValueError("retry_buffer_size must be a number of bytes ≥ 0")
        self._check_keepalive(settings)
        config = settings.service_config
        throttling = config.retry_throttling if config is not None else None
        object.__setattr__(self, "_throttle", _Throttle(throttling) if throttling else None)
        object.__setattr__(self, "interceptors", tuple(self.interceptors))
        for interceptor in self.interceptors:
            check_client_interceptor(interceptor)
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
        """The same settings, every call to ``peer_id`` (closed when this channel is)."""
        made = replace(self, peer=peer_id)
        object.__setattr__(made, "_life", self._life)
        return made

    def _check_keepalive(self, settings: ChannelOptions) -> None:
        node = self.node
        interval = node.keepalive_interval
        for asked, kept, key, keyword in (
            (settings.keepalive_time, interval, "grpc.keepalive_time_ms", "keepalive_interval"),
            (
                settings.keepalive_timeout,
                node.keepalive_timeout if interval is not None else None,
                "grpc.keepalive_timeout_ms",
                "keepalive_timeout",
            ),
        ):
            if asked is None or (kept is not None and kept <= asked):
                continue
            now = "off" if kept is None else f"{kept:g} s"
            raise InvalidChannelOption(
                f"{key}: keepalive is the node's, for all its channels and topics, and this "
                f"node's {keyword} is {now}, not {asked:g} s or less: set it on the node "
                f"(Node({keyword}=...))"
            )

    def method_config(self, method: str) -> MethodConfig | None:
        """The service config's entry for ``method`` (``/pkg.Service/Method``), if any."""
        config = self._settings.service_config
        return config.lookup(method) if config is not None else None

    def retry_of(self, method: str, idempotent: bool) -> tuple[RetryPolicy | None, bool]:
        """``(policy, rerun)`` for a call of ``method``: the service config's retry policy for
        it, else ``retry_policy`` (``None``: the default), and whether a call that may have run
        may be tried again (its method is idempotent, or the service config's policy names it)."""
        if not self._settings.enable_retries:
            return RetryPolicy(max_attempts=1), idempotent
        found = self.method_config(method)
        if found is not None and found.retry_policy is not None:
            return found.retry_policy, True
        return self.retry_policy, idempotent

    def message_limits(self, method: str) -> tuple[int | None, int | None]:
        """The largest request and reply of ``method`` this channel sends and takes, in bytes
        (``None``: the node's and the peer's limits only)."""
        settings = self._settings
        send, receive = settings.max_send_message_length, settings.max_receive_message_length
        found = self.method_config(method)
        if found is not None:
            send = _least(send, found.max_request_message_bytes)
            receive = _least(receive, found.max_response_message_bytes)
        return send, receive

    def allows_retry(self) -> bool:
        """Whether retry throttling (the service config's ``retryThrottling``) lets a call be
        tried again now."""
        return self._throttle is None or self._throttle.allows_retry()

    def record_attempt(self, failed: bool) -> None:
        """Count an attempt's outcome for retry throttling: ``failed`` with a retryable code,
        or a call that succeeded."""
        if self._throttle is not None:
            self._throttle.record(failed)

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

    def why_no_server(self, service: str) -> str:
        """Why no peer takes a call to ``service`` now (what a call that waited for one until
        its deadline says): no peer serves it, or the one asked for is not connected, and what
        the swarm is doing or why no peer is coming."""
        if self.peer is not None:
            missing = f"peer {self.peer} is not connected"
        else:
            missing = f"no connected peer serves {service}"
            if self.allowed_servers is not None:
                missing += " with an allowed identity"
        swarm = self.node.connectivity()
        still = "; ".join(f.what for f in swarm.finding)
        if still:
            found = summarize(swarm.unreachable)
            return f"{missing} ({still})" + (f": {found}" if found else "")
        return _why(missing, swarm, service, self.peer)

    async def pick(
        self, service: str, tried: frozenset[str], wait_for_ready: bool, deadline: Deadline
    ) -> str:
        """The peer for the next attempt: ``NoServer`` (UNAVAILABLE) when there is none and the
        channel is not CONNECTING (the details say why), and DEADLINE_EXCEEDED when the call
        waited (CONNECTING, or ``wait_for_ready``) until the deadline."""
        node = self.node
        endpoint = self.endpoint
        if not node.started and not node.stopping:
            await node.start()  # IDLE: a call connects the channel, as in gRPC
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
        if wait_for_ready:
            try:
                await node.wait_until(lambda: found() is not None, deadline.remaining())
            except TimeoutError:
                swarm = node.connectivity()
                why = swarm.reason or "; ".join(f.what for f in swarm.finding)
                raise RpcError(
                    StatusCode.DEADLINE_EXCEEDED,
                    f"{missing} within the deadline" + (f": {why}" if why else ""),
                ) from None
        else:
            # grpc.aio: a call waits while its channel is CONNECTING, fails fast otherwise.
            # Each thing in progress counts for connect_timeout, and so does the call's wait:
            # things that begin one after another do not hold it longer.
            swarm = node.connectivity()
            if swarm.connecting:
                remaining = deadline.remaining()
                bound = node.connect_timeout
                try:
                    await self._wait(
                        lambda: (
                            found() is not None
                            or node.stopping
                            or not node.connectivity().connecting
                        ),
                        bound if remaining is None else min(remaining, bound),
                    )
                except TimeoutError:
                    swarm = node.connectivity()
                    still = "; ".join(f.what for f in swarm.finding)
                    if remaining is not None and remaining <= bound:
                        raise RpcError(
                            StatusCode.DEADLINE_EXCEEDED,
                            f"{missing} within the deadline" + (f" ({still})" if still else ""),
                        ) from None
                    unreached = summarize(swarm.unreachable)
                    raise NoServer(
                        StatusCode.UNAVAILABLE,
                        f"{missing} within the connect timeout ({bound:g} s)"
                        + (f" ({still})" if still else "")
                        + (f": {unreached}" if unreached else ""),
                    ) from None
                if node.stopping:
                    raise NoServer(StatusCode.UNAVAILABLE, "the node is stopping")
                swarm = node.connectivity()
            peer_id = found()
            if peer_id is None:
                raise NoServer(StatusCode.UNAVAILABLE, _why(missing, swarm, service, self.peer))
        peer_id = found()
        assert peer_id is not None
        return peer_id

    # -- connectivity, as grpc.aio.Channel's --------------------------------------------------

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """The channel's connectivity state (see the class docstring for what each means for
        a swarm). ``try_to_connect``: start the node if it is IDLE (as grpc.aio's, the state
        returned is still IDLE; it moves on once the node has started)."""
        state = self._state()
        if state is grpc.ChannelConnectivity.IDLE and try_to_connect:
            self._start_node()
        return state

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        """Return once the state is no longer ``last_observed_state`` (closing the channel
        meanwhile is a change, to SHUTDOWN). ``grpc.aio.UsageError`` on a channel closed
        already (or whose node stopped, when SHUTDOWN was observed: it never changes again),
        as grpc.aio's."""
        if self._life.closed:
            raise grpc.aio.UsageError(_CLOSED)
        if last_observed_state is grpc.ChannelConnectivity.SHUTDOWN is self._state():
            raise grpc.aio.UsageError("the node is stopped: the channel is shut down")
        await self._wait(lambda: self._state() is not last_observed_state)

    async def channel_ready(self) -> None:
        """Return once the channel is READY (starting the node if it is IDLE), as grpc.aio's;
        ``grpc.aio.UsageError`` once it is closed."""
        state = self.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            await self.wait_for_state_change(state)
            state = self.get_state(try_to_connect=True)

    async def close(self, grace: float | None = None) -> None:
        """Close the channel, as ``grpc.aio.Channel.close``: calls made through it (and through
        channels made from it with :meth:`to`) after this fail ``grpc.aio.UsageError`` at
        once; calls in flight get ``grace`` seconds (``None``: none) to end, then are cancelled
        (their code is CANCELLED; awaiting one raises ``asyncio.CancelledError``). The node is
        not stopped: other channels go on. Idempotent."""
        life = self._life
        if life.closed:
            return
        if grace is not None and grace < 0:
            raise ValueError(f"grace must be non-negative, got {grace}.")
        life.closed = True
        life.changed()
        calls = list(life.calls)
        if grace:
            waits = [asyncio.ensure_future(call.code()) for call in calls if not call.done()]
            if waits:
                _, late = await asyncio.wait(waits, timeout=grace)
                for wait in late:
                    wait.cancel()
        for call in calls:
            call.cancel()
        life.calls.clear()

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(None)

    def check_open(self) -> None:
        """``grpc.aio.UsageError`` if the channel is closed (a call is about to be made)."""
        if self._life.closed:
            raise grpc.aio.UsageError(_CLOSED)

    def register(self, call: Any) -> None:
        """A call made through this channel: :meth:`close` ends it if it is still in flight."""
        life = self._life
        life.calls.add(call)
        call.add_done_callback(life.calls.discard)

    def _state(self) -> grpc.ChannelConnectivity:
        node = self.node
        if self._life.closed or node.stopping:
            return grpc.ChannelConnectivity.SHUTDOWN
        if not node.started:
            return grpc.ChannelConnectivity.IDLE
        if self._ready():
            return grpc.ChannelConnectivity.READY
        if node.connectivity().connecting:
            return grpc.ChannelConnectivity.CONNECTING
        return grpc.ChannelConnectivity.TRANSIENT_FAILURE

    def _ready(self) -> bool:
        """Whether a peer this channel may call is connected, said hello, and is not suspect."""
        node = self.node
        if self.peer is not None:
            fixed = self._resolve(self.peer)
            candidates = [fixed] if fixed is not None else []
        else:
            candidates = list(node.peers)
        for peer_id in candidates:
            info = node.peers.get(peer_id)
            if (
                info is not None
                and info.hello
                and node.p2pt.is_connected(peer_id)
                and self._allowed(peer_id)
                and not node.is_suspect(peer_id)
            ):
                return True
        return False

    def _start_node(self) -> None:
        life = self._life
        if life.starting is None or life.starting.done():
            life.starting = asyncio.get_running_loop().create_task(self.node.start())
            life.starting.add_done_callback(lambda _: life.changed())

    async def _wait(self, condition: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until ``condition()`` holds, checked now and whenever the node's connectivity
        may have changed (a tracker, a connection, a hello, a suspect peer, the node stopping,
        this channel closing, a connecting thing passing the bound); ``TimeoutError`` after
        ``timeout`` seconds."""
        node = self.node
        changed = asyncio.Event()
        life = self._life

        def poke(*_: object) -> None:
            changed.set()

        own = ("peer", "peerclose", "connectionsuspect", "connectionalive", "stopping")
        swarm = ("connectivity", "peerconnect", "destroy")
        for event in own:
            node.on(event, poke)
        for event in swarm:
            node.p2pt.on(event, poke)
        life.watchers.add(changed)
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    changed.clear()
                    at = node.connectivity().changes_at
                    if timer is not None:
                        timer.cancel()
                        timer = None
                    if at is not None:  # a connecting thing passes the bound then
                        timer = loop.call_later(max(at - time.monotonic(), 0) + 0.001, poke)
                    await changed.wait()
        finally:
            if timer is not None:
                timer.cancel()
            life.watchers.discard(changed)
            for event in own:
                node.remove_listener(event, poke)
            for event in swarm:
                node.p2pt.remove_listener(event, poke)


def _why(missing: str, swarm: SwarmConnectivity, service: str, peer: str | None) -> str:
    """The details of an UNAVAILABLE call that found no peer: what was missing, and why no
    peer is coming (the trackers unreachable or refusing, the bound passed)."""
    if swarm.reason:
        return f"{missing}: {swarm.reason}"
    if peer is None and missing == f"no connected peer serves {service}":
        return f"no peer in the swarm serves {service}"
    return missing


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True)
class PeerTarget(GrpcChannelMethods):
    """A node and one of its peers: ``node.to(peer_id)``, for stubs whose calls all go there
    (p2prpc's and grpcio-tools' alike: it has grpc.aio.Channel's ``unary_unary``, ...)."""

    node: Mux
    peer_id: str


@dataclass(frozen=True)
class IdentityTarget(GrpcChannelMethods):
    """A node and public keys: ``node.to_identity(key)``, for stubs whose calls go only to
    peers that proved one of these keys (p2prpc's and grpcio-tools' alike)."""

    node: Mux
    public_keys: tuple[bytes, ...]


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
