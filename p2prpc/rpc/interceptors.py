"""Client interceptors: the call a stub returns when its channel has interceptors.

One interface serves the four call shapes (``intercept_call(details, proceed)``, see
:class:`~p2prpc.rpc.base.ClientInterceptor`). The call object a stub returns is of the method's
shape (a :class:`~p2prpc.rpc.client.UnaryStreamCall`, …); it runs the chain in a task of its own,
and the innermost ``proceed(details)`` makes the call itself, as a channel without interceptors
would, from the details the interceptors left (method, metadata, timeout, ``wait_for_ready``,
compression). As in grpc.aio, each ``proceed`` makes a new call:

- for a single reply (unary-unary, stream-unary) ``proceed`` awaits it and returns the reply, or
  raises its ``RpcError``; what the chain returns is what ``await call`` returns;
- for a reply stream (unary-stream, stream-stream) ``proceed`` returns the started call at once;
  the chain returns that call, or an async iterable of replies, and the caller's reads come from
  what it returned.

Requests the caller writes (``write()``, ``done_writing()``) go to the call ``proceed`` made last,
so a request stream flows while the chain waits for the reply. The call's status is the chain's:
an ``RpcError`` the chain raises is the call's error (any other exception is UNKNOWN and is raised
as it is); otherwise the status of the call it returned or read from; a chain that answers without
proceeding (a cache) ends OK. A timeout an interceptor changes counts from when it proceeds; an
unchanged one from when the call was made. Cancelling the call, or its deadline, ends the chain
and the calls it made (their servers are told).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterable, AsyncIterator, Generator, Iterable
from typing import Any, NoReturn, TypeVar, cast

import grpc.aio

from ..errors import RpcError
from ..wire import metadata as md
from ..wire.status import Status, StatusCode
from .base import ClientCallDetails, check_encoding, service_of
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
)
from .deadline import Deadline

logger = logging.getLogger(__name__)

Req = TypeVar("Req")
Rep = TypeVar("Rep")
C = TypeVar("C", bound=_Call[Any, Any])


class _Intercepted(_Call[Req, Rep]):
    """A call that runs the channel's interceptors; the calls their ``proceed`` makes do the
    work. It makes no attempt of its own: only the public face of :class:`_Call` is used."""

    #: The shape of the calls ``proceed`` makes.
    _kind: type[_Call[Any, Any]]

    def __init__(
        self,
        method: _MethodBase[Req, Rep],
        request: Any,
        has_request: bool,
        requests: AsyncIterable[Req] | Iterable[Req] | None,
        timeout: float | None,
        metadata: MetadataLike | None,
        wait_for_ready: bool | None,
        compression: str | None,
    ) -> None:
        check_encoding(compression)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._method = method
        self._channel = method.channel
        self.method = method.name
        self.request_codec = method.request_codec
        self.reply_codec = method.reply_codec
        self.deadline = Deadline.after(timeout)
        self.details_ = ClientCallDetails(
            method.name, timeout, md.normalize(metadata), wait_for_ready, compression
        )
        self.compression = compression or self._channel.compression
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
        self._inner: _Call[Any, Any] | None = None  # the call ``proceed`` made last
        self._made = asyncio.Event()  # a call was made, or this one ended
        self._source: _Call[Any, Any] | AsyncIterator[Any] | None = None  # what reads read
        self._raised: RpcError | None = None  # the chain's error, when it raised one
        self._timer: asyncio.TimerHandle | None = None
        self._arm_timer()
        self._chain_task = loop.create_task(self._chain())
        self._task = self._chain_task
        self._chain_task.add_done_callback(self._settle)
        self._channel.node.track_task(self._chain_task)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        at = self.deadline.at
        self._timer = None if at is None else self._loop.call_at(at, self._on_deadline)

    # -- the chain ----------------------------------------------------------------------------

    async def _chain(self) -> Any:
        interceptors = self._channel.interceptors

        async def proceed(index: int, details: ClientCallDetails) -> Any:
            if index == len(interceptors):
                return await self._proceed(details)
            return await interceptors[index].intercept_call(
                details, lambda d: proceed(index + 1, d)
            )

        return await proceed(0, self.details_)

    async def _proceed(self, details: ClientCallDetails) -> Any:
        """Make the call with ``details``: its reply (single reply) or the call (reply stream)."""
        if self._status.done():  # an interceptor went on after the call ended
            self._raise_for_status()
            raise asyncio.InvalidStateError(_FINISHED_DETAILS)
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
        call = method._direct(
            self._kind,
            self._request,
            self._has_request,
            self._requests,
            timeout,
            details.metadata,
            details.wait_for_ready,
            details.compression,
        )
        self._inner = call
        self._made.set()
        call.add_done_callback(self._inner_done)
        if self._server_streams:
            return call
        return await cast(Any, call)

    def _settle(self, task: asyncio.Task[Any]) -> None:
        """The chain is over: settle the call from what it returned or raised (once; called
        again by readers that resume before this ran as the task's callback)."""
        if not task.done():
            return
        if self._status.done():
            if not task.cancelled():
                task.exception()  # retrieved: the call's readers have its status
            return
        if task.cancelled():
            self._end(Status(StatusCode.CANCELLED, _CANCELLED_DETAILS))
            return
        error = task.exception()
        if isinstance(error, RpcError):
            self._end(
                Status(error.code(), error.details(), tuple(error.trailing_metadata())), error
            )
            return
        if error is not None:  # an interceptor's bug: the call still ends
            self._end(Status(StatusCode.UNKNOWN, f"{type(error).__name__}: {error}"[:1000]))
            return
        result = task.result()
        if not self._server_streams:
            inner = self._inner
            if inner is not None and inner.done() and inner._status.result().ok:
                self._end(inner._status.result())
            else:  # answered without the call, or in place of its error
                self._end(Status(StatusCode.OK))
            return
        if isinstance(result, _Call):
            self._source = result
            if result is not self._inner:
                result.add_done_callback(self._inner_done)
            if result.done():
                self._end(result._status.result())
        elif isinstance(result, AsyncIterable):
            self._source = aiter(result)
            inner = self._inner
            if inner is not None and inner.done():
                self._end(inner._status.result())
        else:
            self._end(
                Status(
                    StatusCode.UNKNOWN,
                    f"an interceptor returned {type(result).__name__}, not the call or an "
                    "async iterable of its replies",
                )
            )

    def _followed(self) -> _Call[Any, Any] | None:
        """The call whose status becomes this one's once the chain has returned."""
        return self._source if isinstance(self._source, _Call) else self._inner

    def _inner_done(self, call: Any) -> None:
        """A call made by ``proceed`` (or returned by the chain) ended: a reply stream whose
        chain has returned ends with the call it reads from."""
        task = self._chain_task
        if self._status.done() or not self._server_streams or not task.done():
            return  # a single reply ends with the chain; a running chain decides
        self._settle(task)
        followed = self._followed()
        if not self._status.done() and followed is not None and call is followed:
            self._end(followed._status.result())

    def _end(self, status: Status, raised: RpcError | None = None) -> None:
        if self._status.done():
            return
        self._raised = raised
        self._status.set_result(status)
        self._made.set()
        if self._timer is not None:
            self._timer.cancel()
        if not self._chain_task.done():
            self._chain_task.cancel()
        for call in {id(c): c for c in (self._inner, self._followed()) if c is not None}.values():
            if not call.done():  # the server is told, however this call ended
                if status.code is StatusCode.DEADLINE_EXCEEDED:
                    call._on_deadline()
                else:
                    call.cancel()
        if raised is not None:
            headers: tuple[Any, ...] = tuple(raised.initial_metadata())
        else:
            followed = self._followed()
            done = followed is not None and followed._headers.done()
            headers = followed._headers.result() if followed is not None and done else ()
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
        self._end(Status(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))

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
        """The call ``proceed`` made last, once there is one; ``None`` if this call ended
        first."""
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
        except RpcError:
            self._settle(task)
            self._raise_for_status()
            raise
        self._settle(task)
        return result

    # -- the public call API ------------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the call: the chain and the call it made (its server is told); False when
        it had ended already."""
        if self._status.done():
            return False
        self._locally_cancelled = True
        self._end(Status(StatusCode.CANCELLED, _CANCELLED_DETAILS))
        return True

    async def _reply(self) -> Rep:
        """The reply of a single-reply call: what the chain returned."""
        reply = await self._chain_result()
        self._raise_for_status()
        return reply  # type: ignore[no-any-return]  # the interceptors' answer

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
        if isinstance(source, _Call):
            try:
                reply = await source.read()
            except (RpcError, asyncio.CancelledError) as e:
                self._reraise(e)
            if reply is EOF and self._status.done():
                self._raise_for_status()
            return reply
        try:
            return await anext(source)
        except StopAsyncIteration:  # the interceptor's stream is over, and so is the call
            self._end(Status(StatusCode.OK))
            return EOF
        except RpcError as e:
            self._end(Status(e.code(), e.details(), tuple(e.trailing_metadata())), e)
            raise
        except asyncio.CancelledError as e:
            self._reraise(e)
        except Exception as e:
            self._end(Status(StatusCode.UNKNOWN, f"{type(e).__name__}: {e}"[:1000]))
            raise
        raise AssertionError("unreachable")

    async def write(self, request: Req) -> None:
        """Send one request to the call ``proceed`` made (waiting until it is made)."""
        self._method.check_request(request)
        if self._status.done():
            raise asyncio.InvalidStateError(_FINISHED_DETAILS)
        if self._done_writing:
            raise asyncio.InvalidStateError(_HALF_CLOSED_DETAILS)
        call = await self._call_made()
        if call is None:
            self._raise_for_status()
            raise asyncio.InvalidStateError(_FINISHED_DETAILS)
        try:
            await call.write(request)
        except (RpcError, asyncio.CancelledError, asyncio.InvalidStateError) as e:
            self._reraise(e)

    async def done_writing(self) -> None:
        if self._status.done() or self._done_writing:
            return
        self._done_writing = True
        call = await self._call_made()
        if call is not None:
            try:
                await call.done_writing()
            except asyncio.CancelledError as e:
                self._reraise(e)


class InterceptedUnaryUnaryCall(_Intercepted[Req, Rep], UnaryUnaryCall[Req, Rep]):
    _kind = UnaryUnaryCall

    def __await__(self) -> Generator[Any, None, Rep]:
        return self._reply().__await__()


class InterceptedStreamUnaryCall(_Intercepted[Req, Rep], StreamUnaryCall[Req, Rep]):
    _kind = StreamUnaryCall

    def __await__(self) -> Generator[Any, None, Rep]:
        return self._reply().__await__()


class InterceptedUnaryStreamCall(_Intercepted[Req, Rep], UnaryStreamCall[Req, Rep]):
    _kind = UnaryStreamCall


class InterceptedStreamStreamCall(_Intercepted[Req, Rep], StreamStreamCall[Req, Rep]):
    _kind = StreamStreamCall


_INTERCEPTED: dict[type[_Call[Any, Any]], type[_Intercepted[Any, Any]]] = {
    UnaryUnaryCall: InterceptedUnaryUnaryCall,
    StreamUnaryCall: InterceptedStreamUnaryCall,
    UnaryStreamCall: InterceptedUnaryStreamCall,
    StreamStreamCall: InterceptedStreamStreamCall,
}


def intercepted(kind: type[C]) -> type[C]:
    """The call class of shape ``kind`` that runs a channel's interceptors."""
    return cast("type[C]", _INTERCEPTED[kind])
