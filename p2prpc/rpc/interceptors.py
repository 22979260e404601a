"""Client interceptors: the call a stub returns when its channel has interceptors.

A channel's ``interceptors`` run outermost first, and may mix two forms on the same machinery:

- **grpc.aio's classes** (``grpc.aio.UnaryUnaryClientInterceptor`` and the unary-stream,
  stream-unary and stream-stream ones) run as grpc.aio runs them, for the shapes they implement
  (an object implementing several is used for each; grpc.aio's own channel uses it for the first
  only). ``intercept_unary_unary(continuation, client_call_details, request)`` (or
  ``request_iterator`` for a request stream) is given grpc.aio's ``ClientCallDetails``: ``method``
  as ``bytes``, ``timeout`` in seconds, ``metadata`` a ``grpc.aio.Metadata`` (with grpc's
  ``grpc-internal-encoding-request`` entry when the call asked for a compression), ``credentials``
  and ``wait_for_ready``. ``await continuation(details, request)`` makes the call with the details
  and request given (each time it is called) and returns the call object at once. The interceptor
  returns that call, another, or, for a single reply, the reply itself; for a reply stream an
  async iterator of replies, which is then what the caller reads.
- **p2prpc's form**, ``intercept_call(details, proceed)`` (see
  :class:`~p2prpc.rpc.base.ClientInterceptor`), one method for every shape: for a single reply
  ``proceed(details)`` awaits the call and returns the reply, or raises its ``RpcError``; for a
  reply stream it returns the started call. It returns the reply (or another), or for a reply
  stream that call or an async iterable of replies.

The call object a stub returns is of the method's shape (a
:class:`~p2prpc.rpc.client.UnaryStreamCall`, …); it runs the chain in a task of its own, and the
innermost continuation makes the call itself, as a channel without interceptors would, from the
details the interceptors left (method, metadata, timeout, ``wait_for_ready``, compression).

Requests the caller writes (``write()``, ``done_writing()``) go to the call made last, when it
was given the request iterator the interceptors were given (a write made while that call has
ended and the chain still runs waits for the next call; the end of writing reaches a call made
later; requests an earlier call took are not sent again); an interceptor that passes another
iterator (wrapping it, or reading it itself) has them through that iterator.

The call's status is the chain's: an ``RpcError`` (or grpc.aio's ``AioRpcError``) the chain
raises is the call's error (any other exception is UNKNOWN and is raised as it is); otherwise the
status of the call it returned or read from; a chain that answers without a call (a cache) ends
OK. A timeout an interceptor changes counts from when it continues; an unchanged one from when
the call was made. Cancelling the call, or its deadline, ends the chain and the calls it made
(their servers are told).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast

import grpc.aio

from ..errors import RpcError
from ..wire import metadata as md
from ..wire.status import Status, StatusCode
from .base import (
    GRPC_CLIENT_INTERCEPTORS,
    ClientCallDetails,
    CompressionLike,
    encoding_of,
    service_of,
)
from .client import (
    _CANCELLED_DETAILS,
    _FINISHED_DETAILS,
    _HALF_CLOSED_DETAILS,
    EOF,
    MetadataLike,
    StreamStreamCall,
    StreamUnaryCall,
    UnaryStreamCall,
    UnaryUnaryCall,
    _Call,
    _MethodBase,
    _no_call_credentials,
)
from .deadline import Deadline, Watch

logger = logging.getLogger(__name__)

Req = TypeVar("Req")
Rep = TypeVar("Rep")
C = TypeVar("C", bound=_Call[Any, Any])

#: The metadata entry by which grpc.aio shows its interceptors a call's compression.
ENCODING_KEY = "grpc-internal-encoding-request"


def _is_call(value: object) -> bool:
    return isinstance(value, _Call | grpc.aio.Call)


def _rpc_error(error: grpc.aio.AioRpcError) -> RpcError:
    """An ``AioRpcError`` an interceptor raised, as p2prpc's (itself an ``AioRpcError``)."""
    if isinstance(error, RpcError):
        return error
    return RpcError(
        error.code(),
        error.details() or "",
        error.trailing_metadata() or (),
        initial_metadata=error.initial_metadata() or (),
        debug_error_string=error.debug_error_string(),
    )


def _grpc_details(details: ClientCallDetails) -> grpc.aio.ClientCallDetails:
    """``details`` as grpc.aio shows them to its interceptors."""
    metadata = grpc.aio.Metadata(*details.metadata)
    encoding = encoding_of(details.compression)
    if encoding is not None:
        metadata.add(ENCODING_KEY, encoding)
    return grpc.aio.ClientCallDetails(
        cast(str, details.method.encode()),  # bytes, as grpc.aio gives it (its stubs say str)
        details.timeout,
        metadata,
        details.credentials,
        details.wait_for_ready,
    )


def _p2prpc_details(given: Any) -> ClientCallDetails:
    """The details a grpc.aio interceptor passed on (any object with their five fields)."""
    method = given.method
    kept = []
    compression: str | None = None
    for key, value in given.metadata or ():
        if key == ENCODING_KEY:
            compression = value.decode() if isinstance(value, bytes) else str(value)
        else:
            kept.append((key, value))
    return ClientCallDetails(
        method.decode() if isinstance(method, bytes) else str(method),
        given.timeout,
        md.normalize(kept),
        given.wait_for_ready,
        compression,
        given.credentials,
    )


@dataclass(frozen=True)
class _Answer:
    """A single reply an interceptor gave in place of a call."""

    value: Any


class _Writes:
    """The caller's ``write()``s as the async iterator of requests that interceptors are given
    (``request_iterator``) when the caller writes: a request waits here (one at most) until read;
    both sides stop when the call ends (``over``, its status)."""

    _END = object()

    def __init__(self, over: asyncio.Future[Any], on_read: Any) -> None:
        self._over = over
        self._on_read = on_read
        self._items: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self.read = False  # someone has read from it
        self._ended = False

    def __aiter__(self) -> _Writes:
        return self

    async def __anext__(self) -> Any:
        if not self.read:
            self.read = True
            self._on_read()
        if self._ended:
            raise StopAsyncIteration
        done, item = await self._until_over(self._items.get())
        if not done or item is self._END:
            self._ended = True
            raise StopAsyncIteration
        return item

    async def put(self, request: Any) -> bool:
        """Hand over one request; False when the call ended first."""
        done, _ = await self._until_over(self._items.put(request))
        return done

    async def end(self) -> None:
        await self._until_over(self._items.put(self._END))

    async def _until_over(self, step: Awaitable[Any]) -> tuple[bool, Any]:
        if self._over.done():
            return False, None
        task = asyncio.ensure_future(step)
        try:
            await asyncio.wait([task, self._over], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            return True, task.result()
        return False, None


class _Answered(grpc.aio.Call):
    """What a continuation returns when an interceptor inside answered with a reply rather than
    a call: a call that ended OK with that reply (grpc.aio's ``UnaryUnaryCallResponse``)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def add_done_callback(self, callback: Any) -> None:
        callback(self)

    def time_remaining(self) -> float | None:
        return None

    async def initial_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata()

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata()

    async def code(self) -> grpc.StatusCode:
        return StatusCode.OK

    async def details(self) -> str:
        return ""

    async def debug_error_string(self) -> str:
        return ""

    async def wait_for_connection(self) -> None:
        return None

    async def _reply(self) -> Any:
        return self.value

    def __await__(self) -> Generator[Any, None, Any]:
        return self._reply().__await__()


class _AnsweredUnaryUnary(_Answered, grpc.aio.UnaryUnaryCall[Any, Any]):
    pass


class _AnsweredStreamUnary(_Answered, grpc.aio.StreamUnaryCall[Any, Any]):
    async def write(self, request: Any) -> None:
        raise asyncio.InvalidStateError(_FINISHED_DETAILS)

    async def done_writing(self) -> None:
        return None


class _ReplyStream(grpc.aio.Call):
    """What a continuation returns when an interceptor inside returned an async iterable of
    replies: reads come from it, the rest from the call made last, if any (grpc.aio's
    ``UnaryStreamCallResponseIterator``)."""

    def __init__(self, call: Any, replies: AsyncIterable[Any]) -> None:
        self.call = call
        self.replies: AsyncIterator[Any] = self._follow(aiter(replies))
        # Without a call (the interceptor answered alone), this is done when its replies end
        # or it is cancelled, and tells its callbacks then.
        self._done = False
        self._cancelled = False
        self._callbacks: list[Any] = []

    async def _follow(self, replies: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for reply in replies:
                yield reply
        finally:
            self._finish()

    def _finish(self, cancelled: bool = False) -> None:
        if self._done:
            return
        self._done, self._cancelled = True, cancelled
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.replies

    async def read(self) -> Any:
        try:
            return await anext(self.replies)
        except StopAsyncIteration:
            return EOF

    def cancel(self) -> bool:
        if self.call is not None:
            return bool(self.call.cancel())
        if self._done:
            return False
        self._finish(cancelled=True)
        return True

    def cancelled(self) -> bool:
        return bool(self.call.cancelled()) if self.call is not None else self._cancelled

    def done(self) -> bool:
        return bool(self.call.done()) if self.call is not None else self._done

    def add_done_callback(self, callback: Any) -> None:
        if self.call is not None:
            self.call.add_done_callback(lambda _: callback(self))
        elif self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def time_remaining(self) -> float | None:
        return self.call.time_remaining() if self.call is not None else None

    async def initial_metadata(self) -> grpc.aio.Metadata:
        if self.call is None:
            return grpc.aio.Metadata()
        return await self.call.initial_metadata()  # type: ignore[no-any-return]

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        if self.call is None:
            return grpc.aio.Metadata()
        return await self.call.trailing_metadata()  # type: ignore[no-any-return]

    async def code(self) -> grpc.StatusCode:
        return StatusCode.OK if self.call is None else await self.call.code()

    async def details(self) -> str:
        return "" if self.call is None else str(await self.call.details())

    async def debug_error_string(self) -> str:
        return "" if self.call is None else str(await self.call.debug_error_string())

    async def wait_for_connection(self) -> None:
        if self.call is not None:
            await self.call.wait_for_connection()


class _ReplyStreamUnaryStream(_ReplyStream, grpc.aio.UnaryStreamCall[Any, Any]):
    pass


class _ReplyStreamStreamStream(_ReplyStream, grpc.aio.StreamStreamCall[Any, Any]):
    async def write(self, request: Any) -> None:
        if self.call is None:
            raise asyncio.InvalidStateError(_FINISHED_DETAILS)
        await self.call.write(request)

    async def done_writing(self) -> None:
        if self.call is not None:
            await self.call.done_writing()


def _links(interceptors: Iterable[Any], shape: Any) -> list[tuple[str | None, Any]]:
    """The interceptors that take calls of ``shape``, outermost first, each with the method of
    grpc.aio's class it is called by (``None``: p2prpc's ``intercept_call``)."""
    kind, name = GRPC_CLIENT_INTERCEPTORS[shape]
    links: list[tuple[str | None, Any]] = []
    for interceptor in interceptors:
        if not isinstance(interceptor, grpc.aio.ClientInterceptor):
            links.append((None, interceptor))
        elif isinstance(interceptor, kind):
            links.append((name, interceptor))
    return links


class _Intercepted(_Call[Req, Rep]):
    """A call that runs the channel's interceptors; the calls their continuations make do the
    work. It makes no attempt of its own: only the public face of :class:`_Call` is used."""

    #: The shape of the calls the continuations make.
    _kind: type[_Call[Any, Any]]
    #: What a continuation returns for a reply an interceptor inside gave (single reply), or
    #: for an async iterable of replies (reply stream).
    _stand_in: type[Any]

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
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._method = method
        self._channel = method.channel
        self.method = method.name
        self.request_codec = method.request_codec
        self.reply_codec = method.reply_codec
        self.details_ = ClientCallDetails(
            method.name, timeout, md.normalize(metadata), wait_for_ready, compression
        )
        config = self._channel.method_config(method.name)  # the service config's timeout
        if config is not None and config.timeout is not None:
            timeout = config.timeout if timeout is None else min(timeout, config.timeout)
        self.deadline = Deadline.after(timeout)
        self.compression = encoding or self._channel.compression
        self._request = request
        self._has_request = has_request
        self._requests = requests
        self._status = loop.create_future()
        self._headers = loop.create_future()
        self._locally_cancelled = False
        self._deadline_passed = False
        self._done_writing = False
        self._callbacks = []
        self._public = self
        shape = method.cardinality
        self._client_streams = shape.client_streams
        self._server_streams = shape.server_streams
        self._made = asyncio.Event()  # a call was made, the caller's writes read, or this ended
        # The caller's writes as the request iterator the interceptors are given, when the
        # caller gave none; the request (iterator) they are given.
        self._writes: _Writes | None = None
        self._argument: Any = request
        if self._client_streams:
            if requests is None:
                self._writes = _Writes(self._status, self._made.set)
                self._argument = self._writes
            elif has_request:  # the first request rides in the call (JSONMethod)
                self._argument = [request, *cast(Iterable[Any], requests)]
            else:
                self._argument = requests
        self._inner: _Call[Any, Any] | None = None  # the call made last
        self._calls: list[_Call[Any, Any]] = []  # every call made
        self._direct = False  # the call made last takes the caller's writes itself
        self._source: Any = None  # what reads read, or the call a single reply comes from
        self._settled = False
        self._raised: RpcError | None = None  # the chain's error, when it raised one
        self._deadlines = self._channel.endpoint.deadlines
        self._timer: Watch | None = None
        self._arm_timer()
        self._chain_task = loop.create_task(self._chain())
        self._task = self._chain_task
        self._chain_task.add_done_callback(self._settle)
        self._channel.node.track_task(self._chain_task)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._deadlines.cancel(self._timer)
        at = self.deadline.at
        self._timer = None if at is None else self._deadlines.add(at, self._on_deadline)

    # -- the chain ----------------------------------------------------------------------------

    async def _chain(self) -> Any:
        links = _links(self._channel.interceptors, self._method.cardinality)

        async def step(index: int, details: ClientCallDetails, argument: Any) -> Any:
            if index == len(links):
                return self._proceed(details, argument)
            name, interceptor = links[index]
            if name is None:

                async def proceed(given: ClientCallDetails) -> Any:
                    outcome = await step(index + 1, given, argument)
                    if self._server_streams:
                        return self._as_call(outcome)
                    if isinstance(outcome, _Answer):
                        return outcome.value
                    return await outcome

                result = await interceptor.intercept_call(details, proceed)
            else:

                async def continuation(given: Any, request: Any) -> Any:
                    return self._as_call(await step(index + 1, _p2prpc_details(given), request))

                intercept = getattr(interceptor, name)
                result = await intercept(continuation, _grpc_details(details), argument)
            return self._outcome(result)

        return await step(0, self.details_, self._argument)

    def _outcome(self, result: Any) -> Any:
        """What an interceptor returned, as the chain carries it: a call, an :class:`_Answer`
        (single reply), or an async iterable of replies (reply stream)."""
        if self._server_streams:
            if _is_call(result) or isinstance(result, AsyncIterable):
                return result
            raise RpcError(
                StatusCode.UNKNOWN,
                f"an interceptor returned {type(result).__name__}, not the call or an async "
                "iterable of its replies",
            )
        if isinstance(result, _Answered):
            return _Answer(result.value)
        return result if _is_call(result) else _Answer(result)

    def _as_call(self, outcome: Any) -> Any:
        """What a continuation returns for an outcome: a call object of the method's shape."""
        if isinstance(outcome, _Answer):
            return self._stand_in(outcome.value)
        if self._server_streams and not _is_call(outcome):
            return self._stand_in(self._inner, outcome)
        return outcome

    def _proceed(self, details: ClientCallDetails, argument: Any) -> _Call[Any, Any]:
        """Make the call with ``details`` and the request (or requests) ``argument``."""
        if self._status.done():  # an interceptor went on after the call ended
            self._raise_for_status()
            raise asyncio.InvalidStateError(_FINISHED_DETAILS)
        _no_call_credentials(details.credentials)  # as the call itself refuses them
        method = self._method
        if details.method != method.name:
            method = copy.copy(method)
            method.name = details.method
            method.service = service_of(details.method)
        if details.timeout == self.details_.timeout:
            timeout = self.deadline.remaining()  # the call's own deadline
        else:  # an interceptor's timeout, counted from now: it is the call's deadline now
            self.deadline = Deadline.after(details.timeout)
            self._arm_timer()
            timeout = details.timeout
        request, has_request, requests = self._request, self._has_request, self._requests
        if argument is not self._argument:  # an interceptor's own request (iterator)
            if self._client_streams:
                request, has_request, requests = None, False, argument
            else:
                method.check_request(argument)
                request = argument
        call = method._direct(
            self._kind,
            request,
            has_request,
            requests,
            timeout,
            details.metadata,
            details.wait_for_ready,
            details.compression,
        )
        self._inner = call
        self._calls.append(call)
        self._direct = argument is self._writes
        self._made.set()
        call.add_done_callback(self._inner_done)
        if self._direct and self._done_writing:  # the caller was done writing to an earlier one
            closing = self._loop.create_task(call.done_writing())
            self._channel.node.track_task(closing)
        return call

    def _settle(self, task: asyncio.Task[Any]) -> None:
        """The chain is over: settle the call from what it returned or raised (once; called
        again by readers that resume before this ran as the task's callback)."""
        if not task.done() or self._settled:
            return
        self._settled = True
        self._made.set()  # no call is made from now on
        if task.cancelled():
            self._end(Status(StatusCode.CANCELLED, _CANCELLED_DETAILS))
            return
        error = task.exception()
        if self._status.done():
            return  # an error is retrieved: the call's readers have its status
        if isinstance(error, grpc.aio.AioRpcError):  # p2prpc's, or grpc.aio's own
            raised = _rpc_error(error)
            self._end(
                Status(raised.code(), raised.details(), tuple(raised.trailing_metadata())),
                raised,
            )
            return
        if error is not None:  # an interceptor's bug: the call still ends
            self._end(Status(StatusCode.UNKNOWN, f"{type(error).__name__}: {error}"[:1000]))
            return
        outcome = task.result()
        inner = self._inner
        if isinstance(outcome, _Answer):
            if inner is not None and inner.done() and inner._status.result().ok:
                self._end(inner._status.result())
            else:  # answered without the call, or in place of its error
                self._end(Status(StatusCode.OK))
            return
        if isinstance(outcome, _ReplyStream):
            outcome = outcome.replies
        if _is_call(outcome):
            self._source = outcome
            self._follow(outcome)
            return
        self._source = aiter(outcome)
        if inner is not None and inner.done():
            self._end(inner._status.result())

    def _follow(self, call: Any) -> None:
        """This call ends as ``call`` (the call the chain returned) ends."""
        if isinstance(call, _Call):
            if call.done():
                self._followed_ended(call)
            else:
                call.add_done_callback(self._followed_ended)
            return
        follower = self._loop.create_task(self._await_status(call))
        self._channel.node.track_task(follower)

    def _followed_ended(self, call: _Call[Any, Any]) -> None:
        if self._status.done() or call is not self._source:
            return
        if call._locally_cancelled:  # as grpc.aio's: cancelled() is the returned call's
            self._locally_cancelled = True
        self._end(call._status.result())

    async def _await_status(self, call: Any) -> None:
        """Follow a call object p2prpc did not make (an interceptor's own)."""
        try:
            code = await call.code()
            details = await call.details()
            trailers = await call.trailing_metadata()
        except asyncio.CancelledError:
            self._end(Status(StatusCode.CANCELLED, _CANCELLED_DETAILS))
            raise
        except Exception as e:
            self._end(Status(StatusCode.UNKNOWN, f"{type(e).__name__}: {e}"[:1000]))
            return
        self._end(Status(code, details or "", tuple(trailers or ())))

    def _followed(self) -> Any:
        """The call whose status becomes this one's once the chain has returned."""
        return self._source if _is_call(self._source) else self._inner

    def _inner_done(self, call: Any) -> None:
        """A call a continuation made ended: a reply stream whose chain has returned an async
        iterable of replies ends with the call made last."""
        self._made.set()  # a write waiting for a running call looks again
        task = self._chain_task
        if self._status.done() or not task.done():
            return  # a running chain decides
        self._settle(task)
        source = self._source
        following = source is not None and not _is_call(source) and call is self._inner
        if following and not self._status.done():
            self._end(call._status.result())

    def _end(self, status: Status, raised: RpcError | None = None) -> None:
        if self._status.done():
            return
        self._raised = raised
        self._status.set_result(status)
        self._made.set()
        if self._timer is not None:
            self._deadlines.cancel(self._timer)
        if not self._chain_task.done():
            self._chain_task.cancel()
        followed = self._followed()
        calls = [*self._calls, followed] if followed is not None else self._calls
        for call in {id(c): c for c in calls}.values():
            if not call.done():  # the server is told, however this call ended
                if status.code is StatusCode.DEADLINE_EXCEEDED and isinstance(call, _Call):
                    call._on_deadline()
                else:
                    call.cancel()
        if raised is not None:
            headers: tuple[Any, ...] = tuple(raised.initial_metadata())
        elif isinstance(followed, _Call) and followed._headers.done():
            headers = followed._headers.result()
        else:
            headers = ()
        self._headers.set_result(headers)
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
        inner = self._inner  # the call the chain made: still waiting for a server?
        waiting = isinstance(inner, _Call) and inner._attempt is None and not inner.done()
        self._end(self._deadline_status(waiting))

    def _final_error(self) -> RpcError:
        return self._raised if self._raised is not None else super()._final_error()

    def _reraise(self, error: BaseException) -> NoReturn:
        """What a wait on a call this one made raised: this call's own error once it has ended
        (its cancellation or deadline ended that call), or ``error``; a waiter cancelled from
        outside cancels the call, as grpc.aio's do."""
        task = asyncio.current_task()
        if isinstance(error, asyncio.CancelledError) and task is not None and task.cancelling():
            self.cancel()
            raise error
        if self._status.done():
            self._raise_for_status()
        raise error

    async def _call_made(self) -> _Call[Any, Any] | None:
        """The call made last, once there is one; ``None`` if this call ended first."""
        while self._inner is None and not self._status.done():
            self._made.clear()
            await self._made.wait()
        return self._inner

    async def _chain_result(self) -> Any:
        task = self._chain_task
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as e:
            self._settle(task)
            self._reraise(e)
        except grpc.aio.AioRpcError:
            self._settle(task)
            self._raise_for_status()
            raise
        self._settle(task)
        return result

    # -- the public call API ------------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the call: the chain and the calls it made (their servers are told); False
        when it had ended already."""
        if self._status.done():
            return False
        self._locally_cancelled = True
        self._end(Status(StatusCode.CANCELLED, _CANCELLED_DETAILS))
        return True

    async def _reply(self) -> Rep:
        """The reply of a single-reply call: what the chain returned, or the reply of the call
        it returned."""
        outcome = await self._chain_result()
        if isinstance(outcome, _Answer):
            self._raise_for_status()
            return outcome.value  # type: ignore[no-any-return]  # the interceptors' answer
        try:
            reply = await outcome
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as e:
            self._reraise(e)
        if self._status.done():
            self._raise_for_status()
        return reply  # type: ignore[no-any-return]  # the reply codec's type

    async def initial_metadata(self) -> grpc.aio.Metadata:
        call = await self._call_made()
        if call is not None and not self._status.done():
            waiting: list[asyncio.Future[Any]] = [call._headers, self._status]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not self._status.done():
                return grpc.aio.Metadata(*call._headers.result())
        return grpc.aio.Metadata(*await asyncio.shield(self._headers))

    async def wait_for_connection(self) -> None:
        call = await self._call_made()
        if call is not None and not self._status.done():
            try:
                await call.wait_for_connection()
            except (RpcError, asyncio.CancelledError) as e:
                self._reraise(e)
        if self._status.done():
            self._raise_for_status()

    async def read(self) -> Any:
        """The next reply, from what the chain returned; :data:`EOF` at the end."""
        if self._source is None:
            await self._chain_result()
        source = self._source
        if source is None:  # the chain ended without a source: the call's error says why
            self._raise_for_status()
            return EOF
        if _is_call(source):
            try:
                reply = await source.read()
            except (grpc.aio.AioRpcError, asyncio.CancelledError) as e:
                self._reraise(e)
            if reply is EOF and self._status.done():
                self._raise_for_status()
            return reply
        try:
            return await anext(source)
        except StopAsyncIteration:  # the interceptor's stream is over, and so is the call
            self._end(Status(StatusCode.OK))
            return EOF
        except grpc.aio.AioRpcError as e:
            raised = _rpc_error(e)
            self._end(
                Status(raised.code(), raised.details(), tuple(raised.trailing_metadata())),
                raised,
            )
            self._raise_for_status()
            raise
        except asyncio.CancelledError as e:
            self._reraise(e)
        except Exception as e:
            self._end(Status(StatusCode.UNKNOWN, f"{type(e).__name__}: {e}"[:1000]))
            raise
        raise AssertionError("unreachable")

    async def _writable(self) -> Any:
        """Where the caller's next write goes, once it has somewhere to go: the call made last,
        while it runs and takes the caller's writes itself (if it ended while the chain runs,
        the next call the chain makes); else the request iterator the interceptors were given,
        once it is read; ``None`` when this call ended first."""
        writes = self._writes
        while not self._status.done():
            inner = self._inner
            if writes is None or self._direct:
                if inner is not None and (not inner.done() or self._chain_task.done()):
                    return inner
            elif writes.read:
                return writes
            self._made.clear()
            await self._made.wait()
        return None

    async def write(self, request: Req) -> None:
        """Send one request: to the call made last, or through the request iterator the
        interceptors were given (waiting until there is a call or a reader)."""
        self._method.check_request(request)
        if self._status.done():
            raise asyncio.InvalidStateError(_FINISHED_DETAILS)
        if self._done_writing:
            raise asyncio.InvalidStateError(_HALF_CLOSED_DETAILS)
        try:
            target = await self._writable()
            if target is None:
                self._raise_for_status()
                raise asyncio.InvalidStateError(_FINISHED_DETAILS)
            if not isinstance(target, _Writes):
                await target.write(request)
            elif not await target.put(request):  # the call ended first
                self._raise_for_status()
                raise asyncio.InvalidStateError(_FINISHED_DETAILS)
        except (RpcError, asyncio.CancelledError, asyncio.InvalidStateError) as e:
            self._reraise(e)

    async def done_writing(self) -> None:
        if self._status.done() or self._done_writing:
            return
        self._done_writing = True  # and a call made from now on is told at once (_proceed)
        try:
            target = await self._writable()
            if isinstance(target, _Writes):
                await target.end()
            elif target is not None:
                await target.done_writing()
        except asyncio.CancelledError as e:
            self._reraise(e)


class InterceptedUnaryUnaryCall(_Intercepted[Req, Rep], UnaryUnaryCall[Req, Rep]):
    _kind = UnaryUnaryCall
    _stand_in = _AnsweredUnaryUnary

    def __await__(self) -> Generator[Any, None, Rep]:
        return self._reply().__await__()


class InterceptedStreamUnaryCall(_Intercepted[Req, Rep], StreamUnaryCall[Req, Rep]):
    _kind = StreamUnaryCall
    _stand_in = _AnsweredStreamUnary

    def __await__(self) -> Generator[Any, None, Rep]:
        return self._reply().__await__()


class InterceptedUnaryStreamCall(_Intercepted[Req, Rep], UnaryStreamCall[Req, Rep]):
    _kind = UnaryStreamCall
    _stand_in = _ReplyStreamUnaryStream


class InterceptedStreamStreamCall(_Intercepted[Req, Rep], StreamStreamCall[Req, Rep]):
    _kind = StreamStreamCall
    _stand_in = _ReplyStreamStreamStream


_INTERCEPTED: dict[type[_Call[Any, Any]], type[_Intercepted[Any, Any]]] = {
    UnaryUnaryCall: InterceptedUnaryUnaryCall,
    StreamUnaryCall: InterceptedStreamUnaryCall,
    UnaryStreamCall: InterceptedUnaryStreamCall,
    StreamStreamCall: InterceptedStreamStreamCall,
}


def intercepted(kind: type[C]) -> type[C]:
    """The call class of shape ``kind`` that runs a channel's interceptors."""
    return cast("type[C]", _INTERCEPTED[kind])
