"""The client side: method objects that stubs are made of, and the calls they start.

A call picks a peer that serves the method's service (the one with the fewest calls in flight from
here), waits for one when asked to (``wait_for_ready``), and is retried by tenacity under the node's
:class:`~p2prpc.rpc.base.RetryPolicy`: on another server when one fails, never running a call twice
unless its method is idempotent. ``timeout`` is the whole call's deadline, retries included; it
travels with the call so the server stops too.

Life of one attempt::

    picking ──▶ sent ──▶ (replies) ──▶ done (status)
       │          ├──▶ cancelled (cancel or deadline: the server is told)
       │          └──▶ peer lost (UNAVAILABLE; may have run on the server)
       └──▶ no server (UNAVAILABLE; did not run)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic

from google.protobuf.message import Message
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from ..errors import PeerClosed
from ..wire.compression import CODECS, IDENTITY
from ..wire.envelope import Envelope, Kind, Status
from .base import (
    NO_RETRY,
    Cardinality,
    Channel,
    ClientCallDetails,
    Rep,
    Req,
    RetryPolicy,
    decode_payload,
    pack_payload,
    unpack_payload,
)
from .status import RpcError, StatusCode

if TYPE_CHECKING:
    from ..node import Node

#: Replies a call holds before the caller reads them; a server that sends more is cut off.
MAX_QUEUED_REPLIES = 4096


class AttemptError(RpcError):
    """A failed attempt; ``may_have_run`` tells whether the server may have run the call."""

    def __init__(self, code: StatusCode, details: str, *, may_have_run: bool) -> None:
        super().__init__(code, details)
        self.may_have_run = may_have_run


class _AttemptState(enum.Enum):
    SENT = "sent"
    DONE = "done"
    CANCELLED = "cancelled"


class _Attempt:
    """One attempt of a call, to one peer; the node feeds it replies and the status."""

    def __init__(
        self,
        node: Node,
        peer_id: str,
        method: str,
        reply_type: type[Message],
        deadline: float | None,
        compression: str | None = None,
    ) -> None:
        self.node = node
        self.peer_id = peer_id
        # Compress only in the binary form, with an encoding the peer said it reads.
        info = node.peers.get(peer_id)
        self.encoding = (
            compression
            if compression not in (None, IDENTITY)
            and info is not None
            and self.binary
            and compression in info.encodings
            else None
        )
        self.method = method
        self.reply_type = reply_type
        self.deadline = deadline
        self.call_id = node.new_call_id(peer_id)
        self.state = _AttemptState.SENT
        self.replies: asyncio.Queue[Message | None] = asyncio.Queue()
        self.status: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
        self.replied = False
        self._next_seq = 0
        self._request_seq = 0

    def start(self, metadata: Mapping[str, str], request: Message | None) -> None:
        """Send the call (with its request, for single-request methods); UNAVAILABLE (it did not
        run) when the peer is gone already."""
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        payload, compressed = (
            pack_payload(request, self.binary, self.encoding, self.node.max_message_size)
            if request is not None
            else (None, False)
        )
        envelope = Envelope(
            Kind.CALL,
            self.call_id,
            method=self.method,
            timeout=timeout,
            metadata=metadata,
            payload=payload,
            has_payload=request is not None,
            encoding=self.encoding,
            compressed=compressed,
        )
        self.node.open_client_call(self.peer_id, self.call_id, self)
        try:
            self.node.send(self.peer_id, envelope)
        except PeerClosed as e:
            self._finish(Status(StatusCode.UNAVAILABLE, str(e)))
            raise AttemptError(StatusCode.UNAVAILABLE, str(e), may_have_run=False) from e
        if request is not None:
            self._request_seq = 1

    @property
    def binary(self) -> bool:
        return self.node.is_binary(self.peer_id)

    async def write(self, request: Message) -> None:
        """Send one request-stream message (waits while the data channel is full)."""
        if self.state is not _AttemptState.SENT:
            raise self._error()
        payload, compressed = pack_payload(
            request, self.binary, self.encoding, self.node.max_message_size
        )
        self._send(
            Envelope(
                Kind.MSG,
                self.call_id,
                self._request_seq,
                payload=payload,
                has_payload=True,
                compressed=compressed,
            )
        )
        self._request_seq += 1
        await self.node.drain(self.peer_id)

    def done_writing(self) -> None:
        if self.state is _AttemptState.SENT:
            self._send(Envelope(Kind.END, self.call_id, self._request_seq))

    def _send(self, envelope: Envelope) -> None:
        try:
            self.node.send(self.peer_id, envelope)
        except PeerClosed:
            self.on_peer_lost()
            raise self._error() from None

    # -- from the node ------------------------------------------------------------------------

    def on_envelope(self, envelope: Envelope) -> None:
        if self.state is not _AttemptState.SENT:
            return
        if envelope.kind is Kind.REPLY:
            if envelope.seq != self._next_seq:
                self._finish(
                    Status(StatusCode.INTERNAL, f"reply stream out of order at {envelope.seq}")
                )
                return
            self._next_seq += 1
            try:
                reply = decode_payload(
                    unpack_payload(envelope, self.encoding, self.node.max_message_size),
                    self.reply_type,
                    self.node.max_message_size,
                )
            except RpcError as e:
                code = e.code if e.code is StatusCode.RESOURCE_EXHAUSTED else StatusCode.INTERNAL
                self._cancel_remote()
                self._finish(Status(code, f"bad reply: {e.details}"))
                return
            if self.replies.qsize() >= MAX_QUEUED_REPLIES:
                self._cancel_remote()
                self._finish(Status(StatusCode.RESOURCE_EXHAUSTED, "too many unread replies"))
                return
            self.replied = True
            self.replies.put_nowait(reply)
            if envelope.status is not None:
                self._finish(envelope.status)
        elif envelope.kind is Kind.STATUS and envelope.status is not None:
            self._finish(envelope.status)

    def on_peer_lost(self) -> None:
        self._finish(Status(StatusCode.UNAVAILABLE, f"peer {self.peer_id} went away"))

    def _finish(self, status: Status) -> None:
        if self.state is not _AttemptState.SENT:
            return
        self.state = _AttemptState.DONE
        self.node.close_client_call(self.peer_id, self.call_id)
        self.status.set_result(status)
        self.replies.put_nowait(None)

    def cancel(self, details: str = "cancelled by the caller") -> None:
        """Give up: tell the server, end the call with CANCELLED."""
        if self.state is not _AttemptState.SENT:
            return
        self._cancel_remote()
        self._finish(Status(StatusCode.CANCELLED, details))
        self.state = _AttemptState.CANCELLED

    def _cancel_remote(self) -> None:
        with contextlib.suppress(PeerClosed):
            self.node.send(self.peer_id, Envelope(Kind.CANCEL, self.call_id))

    # -- reading ------------------------------------------------------------------------------

    async def read(self) -> Message | None:
        """The next reply, or ``None`` at the end (then :meth:`check_status` says how it ended)."""
        if not self.replies.empty():  # a stream read as fast as it comes: no waiting to arm
            return self.replies.get_nowait()
        try:
            async with asyncio.timeout(self._remaining()):
                return await self.replies.get()
        except TimeoutError:
            self.cancel("deadline exceeded")
            raise RpcError(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded") from None
        except asyncio.CancelledError:
            self.cancel()
            raise

    def _remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def _error(self) -> RpcError:
        status = self.status.result() if self.status.done() else Status(StatusCode.UNAVAILABLE)
        return _status_error(status, may_have_run=True)

    def check_status(self) -> None:
        """Raise the call's error unless it ended OK."""
        status = self.status.result()
        if status.code != StatusCode.OK:
            raise _status_error(status, may_have_run=True)


def _status_error(status: Status, *, may_have_run: bool) -> RpcError:
    code = StatusCode(status.code)
    if code is StatusCode.UNAVAILABLE:
        error: RpcError = AttemptError(code, status.details, may_have_run=may_have_run)
    else:
        error = RpcError(code, status.details)
    error.trailing_metadata = dict(status.trailers)
    return error


# -- shared by every shape ------------------------------------------------------------------------


class _MethodBase(Generic[Req, Rep]):
    cardinality: Cardinality

    def __init__(
        self,
        channel: Channel,
        name: str,
        request_type: type[Req],
        reply_type: type[Rep],
        *,
        idempotent: bool = False,
    ) -> None:
        self.channel = channel
        self.name = name
        self.request_type = request_type
        self.reply_type = reply_type
        self.idempotent = idempotent
        self.service = name.split("/")[1]

    @property
    def node(self) -> Node:
        return self.channel.rpc_node

    def _details(
        self,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        wait_for_ready: bool | None,
        compression: str | None,
    ) -> ClientCallDetails:
        if compression is not None and compression not in CODECS and compression != IDENTITY:
            raise ValueError(f"unknown compression {compression!r}: one of {sorted(CODECS)}")
        return ClientCallDetails(
            self.name, timeout, dict(metadata or {}), wait_for_ready, compression
        )

    async def _intercepted(
        self, details: ClientCallDetails, call: Callable[[ClientCallDetails], Awaitable[Any]]
    ) -> Any:
        interceptors = list(self.node.client_interceptors)

        async def proceed(index: int, d: ClientCallDetails) -> Any:
            if index == len(interceptors):
                return await call(d)
            return await interceptors[index].intercept_call(d, lambda nd: proceed(index + 1, nd))

        return await proceed(0, details)

    async def _attempts(
        self,
        details: ClientCallDetails,
        run: Callable[[_Attempt], Awaitable[Any]],
        *,
        retry: bool = True,
    ) -> Any:
        """Run ``run`` on attempts to servers, retried under the node's policy."""
        deadline = None if details.timeout is None else time.monotonic() + details.timeout
        policy: RetryPolicy = (self.node.retry_policy or RetryPolicy()) if retry else NO_RETRY
        tried: set[str] = set()

        def retryable(error: BaseException) -> bool:
            return (
                isinstance(error, RpcError)
                and error.code in policy.retryable_status_codes
                and (self.idempotent or not getattr(error, "may_have_run", True))
            )

        async def attempt_once() -> Any:
            peer_id = await self._pick(details, deadline, frozenset(tried))
            tried.add(peer_id)
            compression = details.compression or self.node.compression
            attempt = _Attempt(
                self.node, peer_id, self.name, self.reply_type, deadline, compression
            )
            return await run(attempt)

        # Most calls succeed at once: the first attempt runs without the retry machinery, which
        # takes over from its failure (tenacity then decides, waits and tries again).
        try:
            return await attempt_once()
        except RpcError as error:
            if policy.max_attempts == 1 or not retryable(error):
                raise
            first_failure: RpcError | None = error

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts) | _StopAtDeadline(deadline),
            wait=wait_random_exponential(
                multiplier=policy.initial_backoff,
                max=policy.max_backoff,
                exp_base=policy.backoff_multiplier,
            ),
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        async for attempt_state in retrying:
            with attempt_state:
                if first_failure is not None:  # attempt 1, as it happened
                    failure, first_failure = first_failure, None
                    raise failure
                return await attempt_once()
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _pick(
        self, details: ClientCallDetails, deadline: float | None, tried: frozenset[str]
    ) -> str:
        node = self.node
        fixed = self.channel.rpc_peer
        wait = details.wait_for_ready if details.wait_for_ready is not None else node.wait_for_ready
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if fixed is not None:
            if fixed in node.p2pt.peers:
                return fixed
            raise AttemptError(
                StatusCode.UNAVAILABLE, f"peer {fixed} is not connected", may_have_run=False
            )
        peer_id = node.pick_server(self.service, tried)
        if peer_id is not None:
            return peer_id
        if wait:
            try:
                return await node.wait_for_server(self.service, tried, remaining)
            except TimeoutError:
                raise RpcError(
                    StatusCode.DEADLINE_EXCEEDED, f"no peer serving {self.service} in time"
                ) from None
        raise AttemptError(
            StatusCode.UNAVAILABLE, f"no connected peer serves {self.service}", may_have_run=False
        )

    async def _single_reply(self, attempt: _Attempt) -> Rep:
        reply = await attempt.read()
        if reply is None:
            attempt.check_status()
            raise RpcError(StatusCode.INTERNAL, f"{self.name} ended OK without a reply")
        if await attempt.read() is not None:  # the status comes with the reply, or right after
            attempt.cancel("more than one reply")
            raise RpcError(StatusCode.INTERNAL, f"{self.name} sent more than one reply")
        attempt.check_status()
        assert isinstance(reply, self.reply_type)
        return reply


class _StopAtDeadline(stop_base):
    """Stop retrying once the call's deadline has passed."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


# -- the four shapes ------------------------------------------------------------------------------


class UnaryUnaryMethod(_MethodBase[Req, Rep]):
    """A unary method of a stub: ``reply = await stub.Method(request, timeout=...)``."""

    cardinality = Cardinality.UNARY_UNARY

    async def __call__(
        self,
        request: Req,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        wait_for_ready: bool | None = None,
        compression: str | None = None,
    ) -> Rep:
        async def call(details: ClientCallDetails) -> Rep:
            async def run(attempt: _Attempt) -> Rep:
                attempt.start(details.metadata, request)
                return await self._single_reply(attempt)

            result: Rep = await self._attempts(details, run)
            return result

        _check_type(request, self.request_type, self.name)
        result: Rep = await self._intercepted(
            self._details(timeout, metadata, wait_for_ready, compression), call
        )
        return result


class StreamUnaryMethod(_MethodBase[Req, Rep]):
    """A client-streaming method: ``reply = await stub.Method(requests)``."""

    cardinality = Cardinality.STREAM_UNARY

    async def __call__(
        self,
        requests: AsyncIterable[Req] | Iterable[Req],
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        wait_for_ready: bool | None = None,
        compression: str | None = None,
    ) -> Rep:
        async def call(details: ClientCallDetails) -> Rep:
            async def run(attempt: _Attempt) -> Rep:
                attempt.start(details.metadata, None)
                pump = asyncio.get_running_loop().create_task(
                    _pump(attempt, requests, self.request_type, self.name)
                )
                try:
                    return await self._single_reply(attempt)
                finally:
                    if not pump.done():
                        pump.cancel()
                    await asyncio.gather(pump, return_exceptions=True)

            result: Rep = await self._attempts(details, run, retry=False)
            return result

        result: Rep = await self._intercepted(
            self._details(timeout, metadata, wait_for_ready, compression), call
        )
        return result


class _StreamingCall(Generic[Req, Rep]):
    """A call whose replies are a stream: iterate it; ``cancel()`` it; read its status after."""

    def __init__(
        self,
        method: _MethodBase[Req, Rep],
        details: ClientCallDetails,
        first: Req | None,
        requests: AsyncIterable[Req] | Iterable[Req] | None,
    ) -> None:
        self._method = method
        self._details = details
        self._first = first
        self._requests = requests
        self._attempt: _Attempt | None = None
        self._starting: asyncio.Task[_Attempt] | None = None
        self._pump: asyncio.Task[None] | None = None

    async def _started(self) -> _Attempt:
        if self._attempt is not None:
            return self._attempt
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> _Attempt:
        method = self._method

        async def call(details: ClientCallDetails) -> _StreamingCall[Req, Rep]:
            async def run(attempt: _Attempt) -> _Attempt:
                attempt.start(details.metadata, self._first)
                return attempt

            self._attempt = await method._attempts(details, run)
            if self._requests is not None:
                self._pump = asyncio.get_running_loop().create_task(
                    _pump(self._attempt, self._requests, method.request_type, method.name)
                )
                self._method.node.track_task(self._pump)
            return self

        await method._intercepted(self._details, call)
        assert self._attempt is not None
        return self._attempt

    def __aiter__(self) -> AsyncIterator[Rep]:
        return self

    async def __anext__(self) -> Rep:
        attempt = await self._started()
        reply = await attempt.read()
        if reply is None:
            attempt.check_status()
            raise StopAsyncIteration
        return reply  # type: ignore[return-value]  # decoded as the method's reply type

    async def read(self) -> Rep | None:
        """The next reply, or ``None`` when the stream ended OK."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return None

    def cancel(self) -> bool:
        """Cancel the call; the server is told. Returns False when it had ended already."""
        if self._attempt is not None and self._attempt.state is _AttemptState.SENT:
            self._attempt.cancel()
            if self._pump is not None:
                self._pump.cancel()
            return True
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            return True
        return False

    async def code(self) -> StatusCode:
        attempt = await self._started()
        return StatusCode((await attempt.status).code)

    async def details(self) -> str:
        attempt = await self._started()
        return (await attempt.status).details

    async def trailing_metadata(self) -> Mapping[str, str]:
        attempt = await self._started()
        return (await attempt.status).trailers


class UnaryStreamCall(_StreamingCall[Req, Rep]):
    """A server-streaming call: ``async for reply in stub.Method(request): ...``."""


class StreamStreamCall(_StreamingCall[Req, Rep]):
    """A bidirectional call: iterate replies; ``write`` requests and ``done_writing`` (unless the
    call was given a request iterable)."""

    async def write(self, request: Req) -> None:
        _check_type(request, self._method.request_type, self._method.name)
        attempt = await self._started()
        await attempt.write(request)

    async def done_writing(self) -> None:
        attempt = await self._started()
        attempt.done_writing()


class UnaryStreamMethod(_MethodBase[Req, Rep]):
    """A server-streaming method: ``async for reply in stub.Method(request): ...``."""

    cardinality = Cardinality.UNARY_STREAM

    def __call__(
        self,
        request: Req,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        wait_for_ready: bool | None = None,
        compression: str | None = None,
    ) -> UnaryStreamCall[Req, Rep]:
        _check_type(request, self.request_type, self.name)
        return UnaryStreamCall(
            self, self._details(timeout, metadata, wait_for_ready, compression), request, None
        )


class StreamStreamMethod(_MethodBase[Req, Rep]):
    """A bidirectional-streaming method: ``call = stub.Method(requests)``, then iterate ``call``."""

    cardinality = Cardinality.STREAM_STREAM

    def __call__(
        self,
        requests: AsyncIterable[Req] | Iterable[Req] | None = None,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        wait_for_ready: bool | None = None,
        compression: str | None = None,
    ) -> StreamStreamCall[Req, Rep]:
        return StreamStreamCall(
            self, self._details(timeout, metadata, wait_for_ready, compression), None, requests
        )


async def _pump(
    attempt: _Attempt,
    requests: AsyncIterable[Any] | Iterable[Any],
    request_type: type[Message],
    method: str,
) -> None:
    """Send a request iterable as the call's request stream, then half-close."""
    try:
        if isinstance(requests, AsyncIterable):
            async for request in requests:
                _check_type(request, request_type, method)
                await attempt.write(request)
        else:
            for request in requests:
                _check_type(request, request_type, method)
                await attempt.write(request)
        attempt.done_writing()
    except RpcError:
        pass  # the call has ended; its reader sees the status
    except Exception as e:
        # The caller's iterator failed: the call cannot go on.
        attempt.cancel(f"request iterator raised {type(e).__name__}: {e}")


def _check_type(message: object, expected: type[Message], method: str) -> None:
    if not isinstance(message, expected):
        raise TypeError(
            f"{method} takes {expected.__name__} messages, not {type(message).__name__}"
        )
