"""The client side: one call primitive, the four call shapes over it, and the stubs' methods.

Invoking a stub method returns a call object at once, already running, as grpc.aio does
(``UnaryUnaryCall``, ``UnaryStreamCall``, ``StreamUnaryCall``, ``StreamStreamCall``): awaitable
for its reply or iterable for its replies, with ``code()``, ``details()``, ``initial_metadata()``,
``trailing_metadata()``, ``cancel()``, ``cancelled()``, ``done()``, ``time_remaining()`` and
``add_done_callback()``. Underneath, each call is one :class:`_Call`:

- it owns the call's :class:`~p2prpc.rpc.deadline.Deadline` (``timeout`` seconds, retries
  included; it travels with every attempt so the server stops too);
- it makes attempts: each picks a peer serving the service (one that answers, with the fewest
  calls in flight from here), and a failed attempt is retried by tenacity under the channel's
  :class:`~p2prpc.rpc.base.RetryPolicy`, on another server, never running a call twice unless
  its method is idempotent or it never left this node, and never once its replies have begun
  (gRFC A6);
- the attempt it keeps (commits to) feeds the replies, the metadata and the final status.

A channel's interceptors wrap this from outside (:mod:`p2prpc.rpc.interceptors`): the call a stub
returns then runs the interceptors, and each ``proceed`` makes one call of this kind.

Life of one attempt::

    sent ──▶ (headers, replies) ──▶ done (status)
      ├──▶ cancelled (cancel or deadline: the server is told)
      ├──▶ suspect (keepalive): moved to another server if idempotent or never sent, else waits
      └──▶ peer lost (UNAVAILABLE; may have run on the server, unless it never left this node)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from ..errors import LocalProtocolError, PeerClosed, RpcError, SendQueueFull, TooLargeForPeer
from ..wire import metadata as md
from ..wire.compression import IDENTITY
from ..wire.envelope import Envelope, Kind
from ..wire.held import ENVELOPE_OVERHEAD, held_size
from ..wire.payload import Codec, JSONCodec, JSONText, MessageCodec, SerializerCodec
from ..wire.status import Metadatum, Status, StatusCode
from .base import (
    Cardinality,
    CompressionLike,
    RetryPolicy,
    encoding_of,
    pack,
    service_of,
    unpack,
)
from .channel import Channel, ChannelLike, NoServer, as_channel
from .deadline import Deadline
from .flow import ReadWindow, SendWindow
from .options import MethodConfig

if TYPE_CHECKING:
    from grpc.aio import _EOF  # the type of grpc.aio.EOF, as grpc's type stubs name it

    from .endpoint import Endpoint

logger = logging.getLogger(__name__)

Req = TypeVar("Req")
Rep = TypeVar("Rep")

#: Replies a call holds before the caller reads them (or, when the node's window holds more
#: messages of 512 bytes, that many and two), and their bytes in units of the node's
#: ``max_message_size``; a server that sends more is cut off (RESOURCE_EXHAUSTED). A server that
#: honours the call's window (:mod:`p2prpc.rpc.flow`) never passes either. While the call is in
#: progress their bytes count against the node's ``max_queued_bytes_per_peer`` and
#: ``max_queued_bytes`` too.
MAX_QUEUED_REPLIES = 4096
MAX_QUEUED_REPLY_MESSAGES_SIZE = 4

_DEFAULT_POLICY = RetryPolicy()

#: What ``read()`` returns at the end of a reply stream: grpc.aio's own ``EOF``.
EOF = grpc.aio.EOF

_CANCELLED_DETAILS = "Locally cancelled by application!"  # grpc.aio's words
_FINISHED_DETAILS = "RPC already finished."
#: The details of a call that ended because its node stopped (``Mux.stop``).
NODE_STOPPING = "the node is stopping"
_HALF_CLOSED_DETAILS = 'RPC is half closed after calling "done_writing".'

MetadataLike = grpc.aio.Metadata | Iterable[tuple[str, str | bytes]] | Mapping[str, Any]


class _Failed(Exception):
    """An attempt failed; ``may_have_run`` says whether the server may have run the call."""

    def __init__(self, status: Status, *, may_have_run: bool) -> None:
        super().__init__(status.details)
        self.status = status
        self.may_have_run = may_have_run


_NOT_YET = object()  # no reply yet, and the attempt goes on


class _AttemptState(enum.Enum):
    SENT = "sent"
    DONE = "done"


class _Attempt:
    """One attempt of a call, to one peer; the endpoint feeds it what the server sends."""

    def __init__(self, call: _Call[Any, Any], peer_id: str, endpoint: Endpoint) -> None:
        self.call = call
        self.peer_id = peer_id
        self.endpoint = endpoint
        node = endpoint.node
        self.node = node
        self.binary = node.is_binary(peer_id)
        # Compress only in the binary form, with an encoding the peer said it reads.
        compression = call.compression
        info = node.peers.get(peer_id)
        self.encoding = (
            compression
            if compression not in (None, IDENTITY)
            and self.binary
            and info is not None
            and compression in info.encodings
            else None
        )
        self.state = _AttemptState.SENT
        # (reply, bytes it holds, what it counts against the window)
        self.replies: deque[tuple[Any, int, int]] = deque()
        self.queued_bytes = 0
        self._charged = 0  # of them, taken from the node's budget (given back when it ends)
        self.readable = asyncio.Event()  # a reply, or the end
        self.progress = asyncio.Event()  # headers, a reply, or the end
        self.status: Status | None = None
        self.ended = asyncio.Event()
        self.headers: tuple[Metadatum, ...] | None = None
        self.replied = False
        self._next_seq = 0
        self._request_seq = 0
        self.call_id = endpoint.open_client_call(peer_id, self)
        self.tag = ("client", self.call_id)  # what withdraws this call's unsent frames
        #: The connection the call went on: it is continued there only, and ends with it.
        self.connection: int | None = None
        #: The server's window for the requests, and the grants of this call's own for replies.
        self.window = SendWindow(node.peer_window(peer_id))
        self.reads = ReadWindow(self, Kind.REPLY_WINDOW, binary=self.binary)
        #: The call never left this node: it ended while its frames still waited in the send
        #: queue (taken back), so the server cannot have run it.
        self.never_sent = False

    # -- sending ------------------------------------------------------------------------------

    def start(self, metadata: tuple[Metadatum, ...], first: Any, has_first: bool) -> None:
        """Send the call, with its first request when it rides in the call; ``_Failed`` (it did
        not run) when the peer is gone already."""
        call = self.call
        try:
            payload, compressed = (
                pack(call.request_codec, first, self.binary, self.encoding, self.send_limit)
                if has_first
                else (None, False)
            )
        except RpcError as e:  # a request over the size: nothing was sent, the attempt is over
            self._finish(Status(e.code(), e.details()))
            raise
        envelope = Envelope(
            Kind.CALL,
            self.call_id,
            method=call.method,
            timeout=call.deadline.remaining(),
            metadata=metadata,
            payload=payload,
            has_payload=has_first,
            encoding=self.encoding,
            compressed=compressed,
        )
        try:
            self.connection = self.node.send(self.peer_id, envelope, tag=self.tag)
        except PeerClosed as e:
            self._finish(Status(StatusCode.UNAVAILABLE, str(e)))
            raise _Failed(Status(StatusCode.UNAVAILABLE, str(e)), may_have_run=False) from e
        except SendQueueFull as e:  # the peer reads slower than we send: refuse, hold nothing
            status = Status(StatusCode.RESOURCE_EXHAUSTED, f"send queue to the peer is full: {e}")
            self._finish(status)
            raise _Failed(status, may_have_run=False) from e
        except TooLargeForPeer as e:  # over what the peer announced it takes
            status = Status(StatusCode.RESOURCE_EXHAUSTED, f"the call cannot be sent: {e}")
            self._finish(status)
            raise _Failed(status, may_have_run=False) from e
        except LocalProtocolError as e:  # a call the wire cannot carry (a header over 64 KiB)
            status = Status(StatusCode.INTERNAL, f"the call cannot be sent: {e}")
            self._finish(status)
            raise _Failed(status, may_have_run=False) from e
        self._request_seq = 1 if has_first else 0
        self.node.probe(self.peer_id, self.connection)

    @property
    def max_size(self) -> int:
        """This node's limit on messages, and the peer's (its hello's)."""
        return self.node.message_limit(self.peer_id)

    @property
    def send_limit(self) -> int:
        """The largest request to send: :attr:`max_size`, and the channel's limit."""
        limit = self.call._send_limit
        return self.max_size if limit is None else min(limit, self.max_size)

    @property
    def receive_limit(self) -> int:
        """The largest reply to take: :attr:`max_size`, and the channel's limit."""
        limit = self.call._receive_limit
        return self.max_size if limit is None else min(limit, self.max_size)

    async def write(self, request: Any) -> bool:
        """Send one request-stream message (waits while the server's window for the call is
        shut, and while the data channel is full; never past the attempt's end); whether it was
        sent (not when the attempt ended first)."""
        payload, compressed = pack(
            self.call.request_codec, request, self.binary, self.encoding, self.send_limit
        )
        if self.window.limited:
            await self.window.wait()
            if self.state is not _AttemptState.SENT:
                return False  # ended meanwhile: its reader sees the status
            self.window.spend(payload)
        sent = await self._send(
            Envelope(
                Kind.MSG,
                self.call_id,
                self._request_seq,
                payload=payload,
                has_payload=True,
                compressed=compressed,
            )
        )
        if sent:
            self._request_seq += 1
        return sent

    async def done_writing(self) -> bool:
        return await self._send(Envelope(Kind.END, self.call_id, self._request_seq))

    async def _send(self, envelope: Envelope) -> bool:
        """Send, waiting while the send queue to the peer is full (backpressure); whether it
        was sent. The wait ends as soon as the attempt does, however it ends. RESOURCE_EXHAUSTED
        (the call ends) for a message the peer's connection does not take."""
        try:
            while self.state is _AttemptState.SENT:  # once ended, its reader sees the status
                try:
                    self.node.send(self.peer_id, envelope, tag=self.tag, connection=self.connection)
                    return True
                except SendQueueFull:
                    await self._room_or_end()
        except PeerClosed:
            self.on_peer_lost()
        except TooLargeForPeer as e:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, f"the request cannot be sent: {e}") from e
        return False

    async def _room_or_end(self) -> None:
        """Wait until the send queue to the peer drains or this attempt ends, whichever is
        first: a writer is never left waiting on a call that is over. ``PeerClosed`` when the
        connection closes meanwhile."""
        drained = asyncio.ensure_future(self.node.drain(self.peer_id, self.connection))
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait((drained, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not drained.done():
                drained.cancel()
        error = drained.exception() if drained.done() and not drained.cancelled() else None
        if error is not None:
            raise error  # PeerClosed

    def cancel(self, status: Status) -> None:
        """Give up: tell the server, end with ``status``."""
        if self.state is not _AttemptState.SENT:
            return
        self.node.withdraw(self.peer_id, self.tag)  # what was not sent yet never will be
        with contextlib.suppress(PeerClosed, SendQueueFull):
            self.node.send(
                self.peer_id, Envelope(Kind.CANCEL, self.call_id), connection=self.connection
            )
        self._finish(status)

    # -- from the endpoint --------------------------------------------------------------------

    def on_envelope(self, envelope: Envelope) -> None:
        if self.state is not _AttemptState.SENT:
            return
        kind = envelope.kind
        if kind is Kind.MSG_WINDOW:
            self.window.grant(envelope.seq)  # FlowControlError: refused, the call ends
            return
        if kind is Kind.HEADERS:
            if self.headers is None and not self.replied:
                self.headers = envelope.metadata
                self.progress.set()
                self.call._attempt_headers(self)
            return
        if kind is Kind.REPLY:
            if self.replied and not self.call._server_streams:
                self.cancel(Status(StatusCode.INTERNAL, f"{self.call.method}: more than one reply"))
                return
            if envelope.seq != self._next_seq:
                self.cancel(
                    Status(StatusCode.INTERNAL, f"reply stream out of order at {envelope.seq}")
                )
                return
            self._next_seq += 1
            cost = self.reads.cost(envelope)  # as it came: a JSON payload by its text
            try:
                reply = unpack(
                    self.call.reply_codec,
                    envelope,
                    self.encoding,
                    self.receive_limit,
                    max_ratio=self.node.max_decompression_ratio,
                    decoded=(
                        (lambda size: self.node.settle_work(self.peer_id, envelope, size))
                        if envelope.compressed
                        else None
                    ),
                )
            except RpcError as e:
                code = e.code()
                if code is not StatusCode.RESOURCE_EXHAUSTED:
                    code = StatusCode.INTERNAL
                self.cancel(Status(code, f"bad reply: {e.details()}"))
                return
            if envelope.json:
                # What waits is the decoded message, or for a caller of raw JSON compact text
                # (parsed again when read): about what was sent, not the parsed JSON.
                if isinstance(reply, Message):
                    size = reply.ByteSize() + ENVELOPE_OVERHEAD
                elif isinstance(self.call.reply_codec, JSONCodec):
                    reply = JSONText(reply)
                    size = reply.size() + ENVELOPE_OVERHEAD
                else:  # another codec's value: counted as the JSON it came from
                    size = held_size(envelope.payload) + ENVELOPE_OVERHEAD
            else:
                size = held_size(envelope.payload) + ENVELOPE_OVERHEAD
            budget = MAX_QUEUED_REPLY_MESSAGES_SIZE * self.max_size
            most = max(MAX_QUEUED_REPLIES, self.node.window // ENVELOPE_OVERHEAD + 2)
            if len(self.replies) >= most:
                detail = f"too many unread replies (at most {most})"
                self.cancel(Status(StatusCode.RESOURCE_EXHAUSTED, detail))
                return
            if self.queued_bytes + size > budget:
                detail = f"unread replies would hold more than {budget} bytes"
                self.cancel(Status(StatusCode.RESOURCE_EXHAUSTED, detail))
                return
            if not self.node.queued.take(self.peer_id, size):
                self.cancel(Status(StatusCode.RESOURCE_EXHAUSTED, self.endpoint.over_budget()))
                return
            self._charged += size
            first = not self.replied
            self.replied = True
            self.replies.append((reply, size, cost))
            self.queued_bytes += size
            self.readable.set()
            self.progress.set()
            if first:
                self.call._attempt_headers(self)
        if envelope.status is not None:
            self._finish(envelope.status)

    def on_peer_lost(self) -> None:
        self._finish(Status(StatusCode.UNAVAILABLE, f"peer {self.peer_id} went away"))

    def on_suspect(self) -> None:
        if self.state is _AttemptState.SENT:
            self.call._attempt_suspect(self)

    def refuse(self, status: Status) -> None:
        """A reply could not be read: tell the server to stop, end with ``status``."""
        self.cancel(status)

    def abandon(self) -> None:
        self._finish(Status(StatusCode.UNAVAILABLE, NODE_STOPPING))

    def _finish(self, status: Status) -> None:
        if self.state is not _AttemptState.SENT:
            return
        if status.ok and not self.replied and not self.call._server_streams:
            status = Status(StatusCode.INTERNAL, f"{self.call.method} ended OK without a reply")
        self.state = _AttemptState.DONE
        self.status = status
        self.call._count_attempt(status)
        self.window.close()  # a writer waiting for the server's window wakes
        self.reads.close()
        # The peer adds nothing more: what it sent is the caller's now, bounded by this call's
        # own caps, and no longer counts against what peers may make this node hold.
        self.node.queued.give_back(self.peer_id, self._charged)
        self._charged = 0
        if status.code is not StatusCode.OK and self.node.withdraw(self.peer_id, self.tag):
            # Before any reply (window updates follow replies), only the call's own frames
            # carry its tag unless it streams requests: the last of them had not left, so the
            # server never had the call. (What it decides is read only for attempts that had
            # no reply.)
            self.never_sent = self.never_sent or not self.call._client_streams
        self.endpoint.client_call_ended(self.peer_id, self.call_id)
        self.readable.set()
        self.progress.set()
        self.ended.set()
        self.call._attempt_ended(self)

    # -- reading ------------------------------------------------------------------------------

    async def next_reply(self) -> Any:
        """The next reply, or ``EOF`` once the attempt has ended (its ``status`` says how)."""
        while not self.replies:
            if self.state is _AttemptState.DONE:
                return EOF
            self.readable.clear()
            await self.readable.wait()
        return self._take_reply()

    def reply_now(self) -> Any:
        """What :meth:`next_reply` would return without waiting, or ``_NOT_YET``."""
        if self.replies:
            return self._take_reply()
        return EOF if self.state is _AttemptState.DONE else _NOT_YET

    def _take_reply(self) -> Any:
        reply, size, cost = self.replies.popleft()
        self.queued_bytes -= size
        if self._charged:
            self._charged -= size
            self.node.queued.give_back(self.peer_id, size)
        self.reads.read(cost)  # the caller has it: the server may send that much more
        return reply.value() if isinstance(reply, JSONText) else reply


class _Call(Generic[Req, Rep]):
    """One invocation of a method: made when the method is invoked, running from then on.

    The four public call classes are this primitive seen through one shape each.
    """

    def __init__(
        self,
        method: _MethodBase[Req, Rep],
        request: Any,
        has_request: bool,
        requests: AsyncIterable[Req] | Iterable[Req] | None,
        timeout: float | None,
        metadata: MetadataLike | None,
        wait_for_ready: bool | None,
        compression: CompressionLike,
    ) -> None:
        encoding = encoding_of(compression)
        self._loop = asyncio.get_running_loop()
        self._method = method
        channel = method.channel
        self._channel = channel
        self.method = method.name
        self.request_codec = method.request_codec
        self.reply_codec = method.reply_codec
        self._metadata = md.normalize(metadata)
        # The channel's service config for the method: the most the call may take, whether it
        # waits for a server unless it says, and how it is retried.
        plan = method.plan()
        config = plan.config
        if config is not None and config.timeout is not None:
            timeout = config.timeout if timeout is None else min(timeout, config.timeout)
        self.deadline = Deadline.after(timeout)
        if wait_for_ready is None:
            wait_for_ready = config.wait_for_ready if config is not None else None
        self._wait_for_ready = (
            wait_for_ready if wait_for_ready is not None else channel.wait_for_ready
        )
        self._policy = plan.policy
        self._rerun = plan.rerun
        self._send_limit, self._receive_limit = plan.send_limit, plan.receive_limit
        self.compression = encoding or channel.compression
        self._request = request
        self._has_request = has_request
        self._requests = requests
        self._attempt: _Attempt | None = None
        self._committed: asyncio.Future[_Attempt] = self._loop.create_future()
        # Those awaiting the call for the attempt it keeps (see _eager_reply).
        self._committed_waiters: list[asyncio.Future[None]] = []
        self._status: asyncio.Future[Status] = self._loop.create_future()
        self._headers: asyncio.Future[tuple[Metadatum, ...]] = self._loop.create_future()
        self._previous_attempts = 0
        self._tried: set[str] = set()
        self._locally_cancelled = False
        self._deadline_passed = False
        self._done_writing = False
        self._pump: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._public: Any = self
        shape = method.cardinality
        self._client_streams = shape.client_streams
        self._server_streams = shape.server_streams
        self._buffer: list[Any] | None = None
        if self._client_streams:
            # An attempt sent (writes may go), or the call over; one writer at a time; and,
            # while the call may still be retried, the requests written so far, sent again to
            # each new attempt (gRFC A6) until they pass the channel's retry_buffer_size.
            self._sent = asyncio.Event()
            self._write_lock = asyncio.Lock()
            self._buffered = 0
            self._overflow = asyncio.Event()
        at = self.deadline.at
        self._timer = None if at is None else channel.endpoint.deadlines.add(at, self._on_deadline)
        self._task: asyncio.Task[Any] | None = None
        # Most calls need no task: with a server at hand, the call is sent right here and what
        # the server sends settles it; a task takes over only to wait for a server, to retry,
        # or to run request streams. (A channel's interceptors wrap calls of this class from
        # outside: p2prpc.rpc.interceptors.)
        self._eager = not self._client_streams and self._start_now()
        if not self._eager:
            self._task = self._loop.create_task(self._run())
            self._task.add_done_callback(self._task_done)
            channel.node.track_task(self._task)

    def _start_now(self) -> bool:
        """Send the first attempt now if a server can take it; whether it was sent."""
        peer_id = self._channel.pick_now(self._method.service, frozenset())
        if peer_id is None:
            return False
        attempt = _Attempt(self, peer_id, self._channel.endpoint)
        try:
            attempt.start(self._metadata, self._request, self._has_request)
        except (_Failed, RpcError):
            # Gone or full already, or a request that cannot be sent: the task's attempts
            # decide, and a failure comes out of ``await call``, as grpc.aio's does.
            return False
        self._attempt = attempt
        self._tried = {peer_id}
        return True

    # -- running ------------------------------------------------------------------------------

    async def _run(self, first: _Failed | None = None) -> Any:
        try:
            return await self._invoke(first)
        except RpcError as error:
            self._end(
                Status(error.code(), error.details(), tuple(error.trailing_metadata())),
                raised=error,
            )
            raise self._final_error() from None
        except asyncio.CancelledError:
            if self._deadline_passed:
                self._end(Status(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
                raise self._final_error() from None
            if self._end_if_stopping():
                raise self._final_error() from None
            self._cancel_locally()
            raise
        except BaseException as error:  # a codec's or a request iterator's bug: the call ends
            self._end(Status(StatusCode.UNKNOWN, f"{type(error).__name__}: {error}"[:1000]))
            raise

    async def _invoke(self, first: _Failed | None = None) -> Any:
        """Attempts, retried under the channel's policy, until one is committed; then the reply
        (single-reply shapes) or this call (streaming replies). ``first``: how an attempt made
        before the task failed."""
        policy = self._policy
        tried: set[str] = self._tried
        if self._client_streams and policy.max_attempts > 1 and self._rerun:
            self._buffer = []  # once sent, only an idempotent call may be tried again
        if self._requests is not None and self._pump is None:
            self._pump = self._loop.create_task(self._pump_requests(self._requests))
            self._channel.node.track_task(self._pump)
        attempt = await self._attempt_with_retries(policy, tried, first)
        self._buffer = None  # kept: never tried again
        if not self._committed.done():
            self._commit(attempt)
        if attempt.status is not None:  # it ended before it was kept
            self._end(attempt.status)
        if self._server_streams:
            return self._public
        return await self._single_reply(attempt)

    def _retryable(self, policy: RetryPolicy, error: BaseException) -> bool:
        return (
            isinstance(error, _Failed)
            and error.status.code in policy.retryable_status_codes
            and (self._rerun or not error.may_have_run)
            and not self._status.done()
            and self._channel.allows_retry()
        )

    async def _attempt_with_retries(
        self, policy: RetryPolicy, tried: set[str], first: _Failed | None = None
    ) -> _Attempt:
        def retryable(error: BaseException) -> bool:
            return self._retryable(policy, error)

        # Most calls succeed at once: the first attempt runs without the retry machinery, which
        # takes over from its failure (tenacity then decides, waits and tries again).
        if first is None:
            try:
                return await self._one_attempt(tried)
            except _Failed as failure:
                first = failure
        if policy.max_attempts == 1 or not retryable(first):
            raise self._as_error(first) from None

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts) | _StopAtDeadline(self.deadline),
            wait=wait_random_exponential(
                multiplier=policy.initial_backoff,
                max=policy.max_backoff,
                exp_base=policy.backoff_multiplier,
            ),
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        try:
            async for state in retrying:
                with state:
                    if first is not None:  # attempt 1, as it happened
                        earlier, first = first, None
                        raise earlier
                    self._previous_attempts += 1
                    return await self._one_attempt(tried)
        except _Failed as failure:
            raise self._as_error(failure) from None
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _one_attempt(self, tried: set[str]) -> _Attempt:
        """Pick a peer, send the call (and a request stream what was written so far), and wait
        until this attempt is the one to keep: at the first sign of the server (initial
        metadata, a reply, or an OK status), or at once for a request stream that cannot be
        tried again (or no longer, past the retry buffer); ``_Failed`` otherwise."""
        channel = self._channel
        wait = self._wait_for_ready
        service = self._method.service
        peer_id = channel.pick_now(service, frozenset(tried))
        if peer_id is None:
            try:
                peer_id = await channel.pick(service, frozenset(tried), wait, self.deadline)
            except NoServer as e:
                raise _Failed(Status(e.code, e.details), may_have_run=False) from None
        if self._status.done():  # ended meanwhile (a request that could not be sent): no more
            raise _Failed(self._status.result(), may_have_run=False)
        tried.add(peer_id)
        attempt = _Attempt(self, peer_id, channel.endpoint)
        metadata = self._metadata
        if self._previous_attempts:
            metadata = (*metadata, ("grpc-previous-rpc-attempts", str(self._previous_attempts)))
        if self._client_streams:
            async with self._write_lock:  # no request is written meanwhile
                self._attempt = attempt
                attempt.start(metadata, self._request, self._has_request)
                self._sent.set()
                await self._replay(attempt)
            if self._buffer is None:  # it cannot be tried again: kept at once
                return attempt
            await self._decided(attempt)
        else:
            self._attempt = attempt
            attempt.start(metadata, self._request, self._has_request)
            await attempt.progress.wait()
        if attempt.ended.is_set() and not attempt.replied:
            assert attempt.status is not None
            if attempt.status.code is not StatusCode.OK:
                raise _Failed(attempt.status, may_have_run=not attempt.never_sent)
        return attempt

    async def _eager_reply(self) -> Rep:
        """The reply of a call sent without a task (or of the task that took over)."""
        committed = self._committed
        if not committed.done():
            # Wait as a shield would (cancelling the waiter leaves the call's future alone),
            # woken as the attempt is kept rather than one turn of the loop later.
            waiter = self._loop.create_future()
            self._committed_waiters.append(waiter)
            await waiter
        if committed.exception() is not None:
            if self._task is not None:
                return await self._task  # type: ignore[no-any-return]
            self._raise_for_status()
            raise committed.exception()  # type: ignore[misc]  # the call's RpcError
        if self._task is not None:
            return await self._task  # type: ignore[no-any-return]
        return await self._single_reply(committed.result())

    def _commit(self, attempt: _Attempt) -> None:
        """Keep ``attempt`` (the call's replies and status are its); wake who waits for it."""
        self._committed.set_result(attempt)
        self._wake_committed()

    def _wake_committed(self) -> None:
        waiters, self._committed_waiters = self._committed_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _single_reply(self, attempt: _Attempt) -> Rep:
        reply = attempt.reply_now()
        if reply is _NOT_YET:
            reply = await attempt.next_reply()
        if reply is EOF:
            self._raise_for_status()
            raise RpcError(StatusCode.INTERNAL, f"{self.method} ended OK without a reply")
        after = attempt.reply_now()
        if after is _NOT_YET:
            after = await attempt.next_reply()
        if after is not EOF:  # the status comes with the reply, or after
            attempt.cancel(Status(StatusCode.INTERNAL, f"{self.method} sent more than one reply"))
        self._raise_for_status()
        return reply  # type: ignore[no-any-return]  # decoded by the reply codec

    async def _pump_requests(self, requests: AsyncIterable[Req] | Iterable[Req]) -> None:
        """Send a request iterable as the call's request stream, then half-close. It is read
        once the call has been sent (never for a call that ended before)."""
        await self._sent.wait()
        if self._status.done():
            return
        try:
            if isinstance(requests, AsyncIterable):
                async for request in requests:
                    self._check_request(request)
                    if not await self._send_request(request):
                        return
            else:
                for request in requests:
                    self._check_request(request)
                    if not await self._send_request(request):
                        return
            await self._half_close()
        except RpcError:  # a request that cannot be sent: it ended the call
            return
        except Exception as e:  # the caller's iterator failed: the call cannot go on
            logger.debug("the request iterator of %s raised", self.method, exc_info=True)
            self._end(
                Status(StatusCode.CANCELLED, f"request iterator raised {type(e).__name__}: {e}")
            )

    async def _send_request(self, request: Any) -> bool:
        """Send one request on the call's attempt (and keep it for the next attempt while the
        call may be tried again); False when the call ended first. A request that cannot be
        sent (over ``max_message_size``) ends the call and raises its ``RpcError``."""
        if not self._sent.is_set():
            await self._sent.wait()
        async with self._write_lock:
            attempt = self._attempt
            if self._status.done() or attempt is None:
                return False
            self._keep(request)
            try:
                sent = await attempt.write(request)
            except RpcError as e:
                self._end(Status(e.code(), e.details()))
                raise
        return sent or not self._status.done()  # a failed attempt: the next one sends it

    async def _half_close(self) -> None:
        """Tell the server no more requests follow (each later attempt is told too)."""
        self._done_writing = True
        if not self._sent.is_set():
            await self._sent.wait()
        async with self._write_lock:
            if not self._status.done() and self._attempt is not None:
                await self._attempt.done_writing()

    def _keep(self, request: Any) -> None:
        """Keep a request for the attempts to come, if the call may be tried again; past the
        channel's ``retry_buffer_size`` bytes (as held) the call keeps its attempt instead."""
        buffer = self._buffer
        if buffer is None:
            return
        size = request.ByteSize() if isinstance(request, Message) else held_size(request)
        self._buffered += size + ENVELOPE_OVERHEAD
        if self._buffered > self._channel.retry_buffer_size:
            self._buffer = None
            self._overflow.set()
        else:
            buffer.append(request)

    async def _replay(self, attempt: _Attempt) -> None:
        """Send a new attempt what the caller wrote before it (and its half-close)."""
        for request in self._buffer or ():
            if not await attempt.write(request):
                return
        if self._done_writing:
            await attempt.done_writing()

    async def _decided(self, attempt: _Attempt) -> None:
        """Wait until a request stream's attempt is decided: the server's first sign (or its
        end), or a request stream too long to keep for another attempt."""
        signs = (
            asyncio.ensure_future(attempt.progress.wait()),
            asyncio.ensure_future(self._overflow.wait()),
        )
        try:
            await asyncio.wait(signs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for sign in signs:
                sign.cancel()

    def _check_request(self, request: object) -> None:
        self._method.check_request(request)

    # -- from the attempts --------------------------------------------------------------------

    def _attempt_headers(self, attempt: _Attempt) -> None:
        if attempt is not self._attempt:
            return
        if self._eager and self._task is None and not self._committed.done():
            self._commit(attempt)  # the server has answered: keep this attempt
        if not self._headers.done():
            self._headers.set_result(attempt.headers or ())

    def _attempt_ended(self, attempt: _Attempt) -> None:
        if attempt is not self._attempt:
            return
        assert attempt.status is not None
        if not self._committed.done():
            if not self._eager or self._task is not None:
                return  # a failed attempt that may be retried; the retry loop decides
            status = attempt.status
            policy = self._policy
            failure = _Failed(status, may_have_run=not attempt.never_sent)
            if status.code is not StatusCode.OK and not attempt.replied:
                if policy.max_attempts > 1 and self._retryable(policy, failure):
                    self._task = self._loop.create_task(self._run(failure))
                    self._task.add_done_callback(self._task_done)
                    self._channel.node.track_task(self._task)
                    return
            else:
                self._commit(attempt)
        self._end(attempt.status)

    def _count_attempt(self, status: Status) -> None:
        """Retry throttling counts each attempt that failed with a retryable code, and each
        that succeeded (gRFC A6)."""
        if status.ok:
            self._channel.record_attempt(failed=False)
        elif status.code in self._policy.retryable_status_codes:
            self._channel.record_attempt(failed=True)

    def _attempt_suspect(self, attempt: _Attempt) -> None:
        """The connection ``attempt`` went on answers nothing (keepalive made it suspect). Before
        any reply commits it, the attempt moves to another server at once when it may (the
        retry policy allows another attempt, another server can take it now): an idempotent
        call, or one that never left this node (its frames still queued: taken back, so the
        server cannot have run it). Anything else waits for the peer to speak again, up to the
        node's ``keepalive_grace``."""
        if attempt is not self._attempt or self._committed.done() or self._status.done():
            return
        policy = self._policy
        if (
            self._previous_attempts + 1 >= policy.max_attempts
            or StatusCode.UNAVAILABLE not in policy.retryable_status_codes
            or self.deadline.expired()
        ):
            return
        other = self._channel.pick_now(self._method.service, frozenset(self._tried))
        if other is None or other == attempt.peer_id:
            return
        status = Status(StatusCode.UNAVAILABLE, f"peer {attempt.peer_id} answers nothing")
        if self._rerun:
            attempt.cancel(status)  # the server is told, should it come back
        elif attempt.node.withdraw(attempt.peer_id, attempt.tag):
            attempt.never_sent = True
            attempt._finish(status)

    def _end(self, status: Status, raised: RpcError | None = None) -> None:
        """The call is over: settle its status, metadata and callbacks (once)."""
        if self._status.done():
            return
        if self._previous_attempts:
            status = Status(
                status.code,
                status.details,
                (*status.trailers, ("grpc-previous-rpc-attempts", str(self._previous_attempts))),
            )
        self._status.set_result(status)
        if not self._headers.done():
            self._headers.set_result(())
        if not self._committed.done():
            self._committed.set_exception(self._final_error())
            self._committed.exception()  # retrieved: readers that never come are fine
            self._wake_committed()
        if self._timer is not None:
            self._channel.endpoint.deadlines.cancel(self._timer)
        if self._client_streams:
            self._buffer = None
            self._sent.set()  # writers waiting for an attempt: the call is over
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        if self._attempt is not None:
            self._attempt.cancel(status)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self._public)
            except Exception:
                logger.exception("a done callback of %s raised", self.method)

    def _on_deadline(self) -> None:
        if self._status.done():
            return
        self._deadline_passed = True
        status = self._deadline_status(waiting=self._attempt is None)
        if self._attempt is not None:
            if self._attempt.state is _AttemptState.SENT:
                self._attempt.endpoint.note_timeout(self._attempt.peer_id)
            self._attempt.cancel(status)
        self._end(status)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _deadline_status(self, waiting: bool) -> Status:
        """DEADLINE_EXCEEDED, as gRPC words it; when the call was still ``waiting`` for a
        server, why none came (:meth:`~p2prpc.rpc.Channel.why_no_server`)."""
        details = "Deadline Exceeded"
        if waiting:
            details += f": {self._channel.why_no_server(self._method.service)}"
        return Status(StatusCode.DEADLINE_EXCEEDED, details)

    def _end_if_stopping(self) -> bool:
        """Whether the call ended because its node is stopping (ending it now, UNAVAILABLE, as
        ``Mux.stop`` says, if it had not ended): the stop cancels the task that runs the call,
        before it ran or while it ran."""
        if not self._status.done() and self._channel.node.stopping:
            self._end(Status(StatusCode.UNAVAILABLE, NODE_STOPPING))
        return (
            not self._locally_cancelled
            and self._status.done()
            and self._status.result().details == NODE_STOPPING
        )

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """The call's task ended: a task cancelled before it ran ends the call here (its readers
        wait on the call's status, not on the task); its error is retrieved (readers get it
        from the call itself: ``read()``, ``code()``), so a stream nobody awaits logs nothing."""
        if task.cancelled():
            if not self._end_if_stopping():
                self._cancel_locally()
        else:
            task.exception()

    def _task_cancelled(self) -> bool:
        """Whether awaiting the call's task raised ``CancelledError`` because the call ended
        (its node stopping, its deadline passing) and cancelled the task before it ran, rather
        than by a cancellation of the call's or its awaiter's own: then the call's status is
        what the awaiter gets."""
        task = self._task
        if task is None or not task.cancelled():
            return False
        self._end_if_stopping()
        return self._status.done() and not self._locally_cancelled

    def _await_reply(self) -> Generator[Any, None, Any]:
        """The reply of a single-reply call, or its error (``CancelledError`` after
        ``cancel()``, or when the awaiter itself is cancelled)."""
        try:
            if self._task is None:
                return (yield from self._eager_reply().__await__())
            return (yield from self._task.__await__())
        except asyncio.CancelledError:
            if not self._task_cancelled():
                self.cancel()
                raise
        if self._status.result().code is not StatusCode.OK:
            raise self._final_error()
        # It ended OK as its node stopped, which cancelled the task before it handed the reply
        # over: the reply came before the status, and is read here.
        return (yield from self._single_reply(self._committed.result()).__await__())

    def _cancel_locally(self) -> bool:
        if self._status.done():
            return False
        self._locally_cancelled = True
        self._end(Status(StatusCode.CANCELLED, _CANCELLED_DETAILS))
        return True

    def _as_error(self, failure: _Failed) -> RpcError:
        self._end(failure.status)
        return self._final_error()

    def _final_error(self) -> RpcError:
        status = self._status.result()
        return RpcError(
            status.code,
            status.details,
            status.trailers,
            initial_metadata=self._headers.result() if self._headers.done() else (),
        )

    def _raise_for_status(self) -> None:
        if self._locally_cancelled:
            raise asyncio.CancelledError()
        status = self._status.result()
        if status.code is not StatusCode.OK:
            raise self._final_error()

    # -- the public call API ------------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the call (the server is told); False when it had ended already."""
        if not self._cancel_locally():
            return False
        if self._task is not None and not self._task.done():
            self._task.cancel()
        return True

    def cancelled(self) -> bool:
        return self._status.done() and self._status.result().code is StatusCode.CANCELLED

    def done(self) -> bool:
        return self._status.done()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._status.done():
            callback(self._public)
        else:
            self._callbacks.append(callback)

    def time_remaining(self) -> float | None:
        return self.deadline.remaining()

    async def initial_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata(*await asyncio.shield(self._headers))

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata(*(await asyncio.shield(self._status)).trailers)

    async def code(self) -> StatusCode:
        return (await asyncio.shield(self._status)).code

    async def details(self) -> str:
        return (await asyncio.shield(self._status)).details

    async def debug_error_string(self) -> str:
        status = await asyncio.shield(self._status)
        return f"p2prpc: {status.code.name}: {status.details}"

    async def wait_for_connection(self) -> None:
        """Return once the call has reached a server (a call that streams requests: once it is
        sent to one, as its server may say nothing before they end), or ended; then raise its
        error."""
        if self._client_streams:
            await self._sent.wait()
        else:
            waiting: list[asyncio.Future[Any]] = [self._committed, self._status]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if self._status.done():
            self._raise_for_status()

    # streaming replies

    async def read(self) -> Rep | _EOF:
        """The next reply, or :data:`EOF` when the stream ended OK; the call's ``RpcError``
        otherwise (``asyncio.CancelledError`` after ``cancel()``). Typed as grpc.aio's: the
        reply type or ``grpc.aio.EOF`` (``isinstance(reply, Reply)`` tells them apart)."""
        if self._status.done() and (self._attempt is None or not self._attempt.replies):
            self._raise_for_status()
            return EOF
        try:
            attempt = await asyncio.shield(self._committed)
        except RpcError:
            self._raise_for_status()
            raise
        try:
            reply: Rep | _EOF = await attempt.next_reply()  # decoded by the reply codec
        except asyncio.CancelledError:
            self.cancel()
            raise
        if reply is EOF:
            await asyncio.shield(self._status)
            self._raise_for_status()
        return reply

    async def _iterate(self) -> AsyncIterator[Any]:
        while (reply := await self.read()) is not EOF:
            yield reply

    # streaming requests

    async def write(self, request: Req) -> None:
        """Send one request; ``asyncio.InvalidStateError`` once the call has ended or after
        ``done_writing()``, and the call's ``RpcError`` when it failed before the request left."""
        self._method.check_request(request)
        if self._status.done():
            raise asyncio.InvalidStateError(_FINISHED_DETAILS)
        if self._done_writing:
            raise asyncio.InvalidStateError(_HALF_CLOSED_DETAILS)
        try:
            # A request that cannot be sent ends the call and raises, as from an iterator.
            sent = await self._send_request(request)
        except asyncio.CancelledError:  # as grpc.aio's: the writer was cancelled, so is the call
            self.cancel()
            raise
        if not sent:  # the call ended before the request left: say how
            self._raise_for_status()

    async def done_writing(self) -> None:
        """Tell the server no more requests follow (no-op once the call has ended)."""
        if self._status.done() or self._done_writing:
            return
        try:
            await self._half_close()
        except asyncio.CancelledError:
            self.cancel()
            raise


class _StopAtDeadline(stop_base):
    """Stop retrying once the call's deadline has passed."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.deadline.expired()


# -- the four shapes ------------------------------------------------------------------------------


class UnaryUnaryCall(_Call[Req, Rep]):
    """A unary call (grpc.aio's ``UnaryUnaryCall``): ``reply = await call``.

    Awaiting it returns the reply, raises :class:`~p2prpc.errors.RpcError` with the call's status
    (UNAVAILABLE: no server, or it went away; DEADLINE_EXCEEDED: ``timeout`` passed; any code the
    server ended with), or ``asyncio.CancelledError`` after ``cancel()``.
    """

    def __await__(self) -> Generator[Any, None, Rep]:
        reply: Rep = yield from self._await_reply()  # the reply codec's type
        return reply


class StreamUnaryCall(_Call[Req, Rep]):
    """A client-streaming call (grpc.aio's ``StreamUnaryCall``): ``write()`` requests and
    ``done_writing()`` (or give the method a request iterable), then ``reply = await call``."""

    def __await__(self) -> Generator[Any, None, Rep]:
        reply: Rep = yield from self._await_reply()  # the reply codec's type
        return reply


class UnaryStreamCall(_Call[Req, Rep]):
    """A server-streaming call (grpc.aio's ``UnaryStreamCall``): ``async for reply in call`` or
    ``await call.read()`` until :data:`EOF`. Replies that arrive before they are read wait in
    the call (up to ``MAX_QUEUED_REPLIES``)."""

    def __aiter__(self) -> AsyncIterator[Rep]:
        return self._iterate()


class StreamStreamCall(_Call[Req, Rep]):
    """A bidirectional call (grpc.aio's ``StreamStreamCall``): ``write()`` and
    ``done_writing()`` (unless the method was given a request iterable), and iterate the replies
    or ``read()`` them until :data:`EOF`."""

    def __aiter__(self) -> AsyncIterator[Rep]:
        return self._iterate()


# Code written for grpc.aio (an interceptor telling a call from a reply) asks grpc.aio's classes.
grpc.aio.UnaryUnaryCall.register(UnaryUnaryCall)
grpc.aio.UnaryStreamCall.register(UnaryStreamCall)
grpc.aio.StreamUnaryCall.register(StreamUnaryCall)
grpc.aio.StreamStreamCall.register(StreamStreamCall)

C = TypeVar("C", bound=_Call[Any, Any])


class _Plan(NamedTuple):
    """What a channel's settings say of the calls of one method (see :meth:`_MethodBase.plan`)."""

    name: str
    idempotent: bool
    config: MethodConfig | None
    policy: RetryPolicy
    rerun: bool
    send_limit: int | None
    receive_limit: int | None


class _MethodBase(Generic[Req, Rep]):
    """What the stubs are made of: one method of a service, bound to a channel."""

    cardinality: Cardinality

    def __init__(
        self,
        channel: ChannelLike,
        name: str,
        request_type: type[Req],
        reply_type: type[Rep],
        *,
        idempotent: bool = False,
        request_codec: Codec[Req] | None = None,
        reply_codec: Codec[Rep] | None = None,
    ) -> None:
        self.channel: Channel = as_channel(channel)
        self.name = name
        self.service = service_of(name)
        self.request_type = request_type
        self.reply_type = reply_type
        self.idempotent = idempotent
        self.request_codec: Codec[Any] = request_codec or MessageCodec(request_type)  # type: ignore[type-var]
        self.reply_codec: Codec[Any] = reply_codec or MessageCodec(reply_type)  # type: ignore[type-var]
        self._plan: _Plan | None = None

    def plan(self) -> _Plan:
        """The channel's service config entry, retry policy and message limits for calls of
        this method, looked up once: a channel's settings never change (a method renamed or
        made idempotent since looks them up again)."""
        plan = self._plan
        if plan is None or plan.name != self.name or plan.idempotent != self.idempotent:
            channel, name = self.channel, self.name
            policy, rerun = channel.retry_of(name, self.idempotent)
            send_limit, receive_limit = channel.message_limits(name)
            plan = self._plan = _Plan(
                name,
                self.idempotent,
                channel.method_config(name),
                policy or _DEFAULT_POLICY,
                rerun,
                send_limit,
                receive_limit,
            )
        return plan

    def check_request(self, request: object) -> None:
        """``TypeError`` for a request that is not the method's message type."""
        if isinstance(self.request_codec, MessageCodec) and not isinstance(
            request, self.request_type
        ):
            raise TypeError(
                f"{self.name} takes {self.request_type.__name__} messages, "
                f"not {type(request).__name__}"
            )

    def _start(
        self,
        kind: type[C],
        request: Any,
        has_request: bool,
        requests: Any,
        timeout: float | None,
        metadata: MetadataLike | None,
        wait_for_ready: bool | None,
        compression: str | None,
    ) -> C:
        self.channel.check_open()  # grpc.aio.UsageError on a closed channel, at once
        if has_request:
            self.check_request(request)
        call: C
        if self.channel.interceptors:
            from .interceptors import intercepted  # it wraps the call classes of this module

            call = intercepted(kind)(
                self, request, has_request, requests, timeout, metadata, wait_for_ready, compression
            )
        else:
            call = self._direct(
                kind, request, has_request, requests, timeout, metadata, wait_for_ready, compression
            )
        self.channel.register(call)  # closing the channel ends it
        return call

    def _direct(
        self,
        kind: type[C],
        request: Any,
        has_request: bool,
        requests: Any,
        timeout: float | None,
        metadata: MetadataLike | None,
        wait_for_ready: bool | None,
        compression: CompressionLike,
    ) -> C:
        """The call itself, not wrapped by the channel's interceptors."""
        call = kind(
            self, request, has_request, requests, timeout, metadata, wait_for_ready, compression
        )
        call._public = call
        return call


_CALL_DOC = """

        ``timeout``: seconds for the whole call, retries included (``None``: no deadline); it
        travels with the call so the server stops too. ``metadata``: (key, value) pairs, keys
        lower-case, ``bytes`` values under keys ending in ``-bin``. ``wait_for_ready``: wait for a
        serving peer instead of failing UNAVAILABLE at once. ``compression``: ``"gzip"``,
        ``"deflate"``, ``"zstd"``, a ``grpc.Compression`` member (``NoCompression``: none,
        whatever the channel's) or ``None`` (the channel's). ``credentials``: a
        ``grpc.CallCredentials`` is refused as grpc.aio refuses one on a channel without TLS
        (``grpc.aio.UsageError``, "Call credentials are only valid on secure channels"): a
        p2prpc channel has no TLS channel credentials to carry them (a closed swarm's secret
        and identities take their place; send a token as metadata). The call starts now,
        inside the running loop. Raises ``TypeError`` for a request of another type and
        :class:`~p2prpc.errors.InvalidMetadata` for metadata gRPC does not allow."""


def _no_call_credentials(credentials: grpc.CallCredentials | None) -> None:
    """As grpc.aio on a channel without TLS: call credentials are refused as the call is made."""
    if credentials is not None:
        raise grpc.aio.UsageError("Call credentials are only valid on secure channels")


def _requests_of(requests: Any, request_iterator: Any) -> Any:
    if request_iterator is not None:
        if requests is not None:
            raise TypeError("give the requests once: requests or request_iterator")
        return request_iterator
    return requests


def grpc_codecs(
    request_serializer: Callable[[Any], bytes] | None,
    response_deserializer: Callable[[bytes], Any] | None,
) -> tuple[Codec[Any], Codec[Any]]:
    """``(request_codec, reply_codec)`` of a method made from grpcio's serializer pair: see
    :class:`~p2prpc.wire.payload.SerializerCodec`."""
    return (
        SerializerCodec(request_serializer, None),
        SerializerCodec(None, response_deserializer),
    )


class UnaryUnaryMethod(_MethodBase[Req, Rep]):
    """A unary method of a stub: ``reply = await stub.Method(request, timeout=...)``."""

    cardinality = Cardinality.UNARY_UNARY

    def __call__(
        self,
        request: Req,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: CompressionLike = None,
    ) -> UnaryUnaryCall[Req, Rep]:
        _no_call_credentials(credentials)
        encoding = encoding_of(compression)
        return self._start(
            UnaryUnaryCall, request, True, None, timeout, metadata, wait_for_ready, encoding
        )

    __call__.__doc__ = (
        "Start a unary call; returns its :class:`UnaryUnaryCall`, awaitable for the reply."
        + _CALL_DOC
    )


class UnaryStreamMethod(_MethodBase[Req, Rep]):
    """A server-streaming method: ``async for reply in stub.Method(request): ...``."""

    cardinality = Cardinality.UNARY_STREAM

    def __call__(
        self,
        request: Req,
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: CompressionLike = None,
    ) -> UnaryStreamCall[Req, Rep]:
        _no_call_credentials(credentials)
        encoding = encoding_of(compression)
        return self._start(
            UnaryStreamCall, request, True, None, timeout, metadata, wait_for_ready, encoding
        )

    __call__.__doc__ = (
        "Start a server-streaming call; returns its :class:`UnaryStreamCall`, iterable for the "
        "replies." + _CALL_DOC
    )


class StreamUnaryMethod(_MethodBase[Req, Rep]):
    """A client-streaming method: ``reply = await stub.Method(requests)``, or ``call =
    stub.Method()``, ``await call.write(r)``…, ``await call.done_writing()``, ``await call``.
    Its arguments may be given by position in grpc.aio's order (``requests``, ``timeout``,
    ``metadata``, ``credentials``, ``wait_for_ready``, ``compression``), and the requests by
    grpc.aio's name too (``request_iterator=``)."""

    cardinality = Cardinality.STREAM_UNARY

    def __call__(
        self,
        requests: AsyncIterable[Req] | Iterable[Req] | None = None,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: CompressionLike = None,
        *,
        request_iterator: AsyncIterable[Req] | Iterable[Req] | None = None,
    ) -> StreamUnaryCall[Req, Rep]:
        _no_call_credentials(credentials)
        encoding = encoding_of(compression)
        requests = _requests_of(requests, request_iterator)
        return self._start(
            StreamUnaryCall, None, False, requests, timeout, metadata, wait_for_ready, encoding
        )

    __call__.__doc__ = (
        "Start a client-streaming call; returns its :class:`StreamUnaryCall`, awaitable for "
        "the reply." + _CALL_DOC
    )


class StreamStreamMethod(_MethodBase[Req, Rep]):
    """A bidirectional-streaming method: ``call = stub.Method(requests)`` (or write to it), then
    iterate ``call``. Its arguments may be given as grpc.aio's are (see
    :class:`StreamUnaryMethod`)."""

    cardinality = Cardinality.STREAM_STREAM

    def __call__(
        self,
        requests: AsyncIterable[Req] | Iterable[Req] | None = None,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: CompressionLike = None,
        *,
        request_iterator: AsyncIterable[Req] | Iterable[Req] | None = None,
    ) -> StreamStreamCall[Req, Rep]:
        _no_call_credentials(credentials)
        encoding = encoding_of(compression)
        requests = _requests_of(requests, request_iterator)
        return self._start(
            StreamStreamCall, None, False, requests, timeout, metadata, wait_for_ready, encoding
        )

    __call__.__doc__ = (
        "Start a bidirectional call; returns its :class:`StreamStreamCall`." + _CALL_DOC
    )


# They are grpc.aio's multicallables in all but their base classes (what grpcio-tools' stubs
# get from a channel's unary_unary(), ...).
grpc.aio.UnaryUnaryMultiCallable.register(UnaryUnaryMethod)
grpc.aio.UnaryStreamMultiCallable.register(UnaryStreamMethod)
grpc.aio.StreamUnaryMultiCallable.register(StreamUnaryMethod)
grpc.aio.StreamStreamMultiCallable.register(StreamStreamMethod)


class JSONMethod(_MethodBase[Any, Any]):
    """A method called without its ``.proto``: requests and replies are proto3 JSON values, which
    the serving peer parses (the command line's ``p2prpc call``). The first request rides in the
    call and the rest follow, so one shape serves every method: iterate the call for the replies.
    It needs a node that speaks the JSON form (``Node(binary=False)``)."""

    cardinality = Cardinality.STREAM_STREAM

    def __init__(self, channel: ChannelLike, name: str) -> None:
        codec = JSONCodec()
        super().__init__(channel, name, object, object, request_codec=codec, reply_codec=codec)

    def __call__(
        self,
        requests: Iterable[Any],
        *,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
        wait_for_ready: bool | None = None,
    ) -> StreamStreamCall[Any, Any]:
        items = list(requests) or [{}]
        return self._start(
            StreamStreamCall,
            items[0],
            True,
            items[1:],
            timeout,
            metadata,
            wait_for_ready,
            None,
        )
