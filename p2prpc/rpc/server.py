"""The server side of a call: run the servicer's method under the call's deadline, stream the
replies back, end with exactly one status.

Life of a server call::

    open ──(client: end)──▶ half-closed ──(method returns or raises)──▶ closed: status sent
      │                                                                   ▲
      ├──(deadline passes)──▶ the method is cancelled, DEADLINE_EXCEEDED ─┤
      ├──(node stops)──▶ the method is cancelled, UNAVAILABLE ────────────┘
      └──(client: cancel, or the peer went away)──▶ cancelled: the method is cancelled, no status

Every way a method can end is answered: a reply and OK, the status it set or aborted with, an
``RpcError`` it raised, DEADLINE_EXCEEDED, UNKNOWN for any other exception (logged with its
traceback), and CANCELLED when it raises ``asyncio.CancelledError`` itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import grpc
import grpc.aio

from ..errors import LocalProtocolError, PeerClosed, RpcError, SendQueueFull, TooLargeForPeer
from ..wire import metadata as md
from ..wire.compression import CODECS
from ..wire.envelope import Envelope, Kind
from ..wire.held import ENVELOPE_OVERHEAD
from ..wire.payload import SerializerCodec, decode, keep, kept_size
from ..wire.status import Metadatum, Status, StatusCode, unsendable
from .base import Cardinality, Handler, HandlerCallDetails, pack, unpack
from .deadline import Deadline
from .flow import ReadWindow, SendWindow

if TYPE_CHECKING:
    from .endpoint import Endpoint

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Request-stream messages a server call holds before its method reads them (or, when the node's
#: window holds more messages of 512 bytes, that many and two), and their bytes in units of the
#: node's ``max_message_size``; past either the call ends RESOURCE_EXHAUSTED and the client is
#: told at once. A client that honours the call's window (:mod:`p2prpc.rpc.flow`) never passes
#: either. Their bytes count against the node's ``max_queued_bytes_per_peer`` and
#: ``max_queued_bytes`` too (:func:`queued_size`).
MAX_QUEUED_REQUESTS = 1024
MAX_QUEUED_REQUEST_MESSAGES_SIZE = 4

MetadataLike = grpc.aio.Metadata | Iterable[Metadatum] | Mapping[str, Any]

_PUBLIC_KEY_PROPERTY = "x-p2prpc-public-key"


class UnknownMethod(Handler[Any, Any]):
    """What a call to a method this server does not serve runs while its interceptors see it
    (as grpc.aio's see every call): unless one of them serves or refuses it, it ends with
    ``status`` (UNIMPLEMENTED). Its requests stay bytes until a handler reads them."""

    def __init__(self, status: Status) -> None:
        async def unimplemented(requests: Any, context: Any) -> None:
            raise RpcError(status.code, status.details)

        raw = SerializerCodec(None, None)
        super().__init__(
            unimplemented, Cardinality.STREAM_STREAM, object, object, codecs=(raw, raw)
        )
        object.__setattr__(self, "status", status)

    status: Status


def kept(envelope: Envelope, handler: Handler[Any, Any], max_size: int) -> Envelope:
    """A received call message as it waits to be read: a JSON-form request decoded at once into
    the method's request message (or the status its decoding gave, answered when it is read),
    so that what waits holds about what was sent, not the parsed JSON; bytes as they came."""
    if not envelope.json or not envelope.has_payload:
        return envelope
    return replace(envelope, payload=keep(envelope.payload, handler.request_codec, max_size))


def queued_size(envelope: Envelope) -> int:
    """The bytes a received call message holds while it waits to be read: its payload as kept
    (:func:`kept`; :func:`~p2prpc.wire.payload.kept_size`) and the envelope around it."""
    payload = kept_size(envelope.payload) if envelope.has_payload else 0
    return payload + ENVELOPE_OVERHEAD


class _State(enum.Enum):
    OPEN = "open"
    HALF_CLOSED = "half-closed"
    CANCELLED = "cancelled"
    CLOSED = "closed"


class _EndOfRequests:
    pass


_END = _EndOfRequests()
_DONE = object()  # what a reply iterator run off the loop gives when it has no more


class ServicerContext(grpc.aio.ServicerContext):  # type: ignore[type-arg]
    """What a servicer method gets besides its request: a ``grpc.aio.ServicerContext``, with
    its methods: metadata both ways, the deadline, the status to end with, cancellation,
    compression, and ``read``/``write`` for the request and reply streams."""

    def __init__(self, call: ServerCall) -> None:
        self._call = call
        self._invocation: grpc.aio.Metadata | None = None  # made when first asked for
        self._trailers: tuple[Metadatum, ...] = ()
        self._code = StatusCode.OK
        self._details = ""
        self._headers_sent = False
        self._callbacks: list[Callable[[ServicerContext], None]] = []
        #: The encoding replies are compressed with (``None``: the call's own).
        self._compression: str | None = call.server_compression
        self._skip_compression = False

    def peer(self) -> str:
        """The calling peer's id (40 hex characters)."""
        return self._call.peer_id

    def method(self) -> str:
        """The method called, ``/package.Service/Method``."""
        return self._call.method

    def peer_identities(self) -> list[bytes] | None:
        """``[public_key]`` (32 raw bytes) when the calling peer proved an Ed25519 identity on
        the connection this call came on, ``None`` otherwise (as grpc answers for an
        unauthenticated peer)."""
        key = self._call.public_key
        return [key] if key is not None else None

    def peer_identity_key(self) -> str | None:
        """The name of the auth context property that holds the peer's identity."""
        return _PUBLIC_KEY_PROPERTY if self.peer_identities() is not None else None

    def auth_context(self) -> dict[str, list[bytes]]:
        """What authenticated the peer, as grpc's ``auth_context()``: the transport security
        type, and the peer's public key when it proved one."""
        node = self._call.node
        security = b"p2prpc-secret" if node.p2pt.secret_mode else b"p2prpc-dtls"
        context: dict[str, list[bytes]] = {"transport_security_type": [security]}
        identities = self.peer_identities()
        if identities is not None:
            context["transport_security_type"] = [b"p2prpc-ed25519"]
            context[_PUBLIC_KEY_PROPERTY] = identities
        return context

    def invocation_metadata(self) -> grpc.aio.Metadata:
        """The metadata the client sent, as (key, value) pairs (``-bin`` values are bytes)."""
        if self._invocation is None:
            self._invocation = grpc.aio.Metadata(*self._call.metadata)
        return self._invocation

    async def send_initial_metadata(self, initial_metadata: MetadataLike) -> None:
        """Send the client its initial metadata now, before any reply (at most once; raises
        ``asyncio.InvalidStateError`` after a reply or a second time, and
        :class:`~p2prpc.errors.InvalidMetadata` for keys or values gRPC does not allow)."""
        entries = md.normalize(initial_metadata)
        if self._headers_sent or self._call.replied:
            raise asyncio.InvalidStateError("initial metadata was sent already")
        self._headers_sent = True
        self._call.send(Envelope(Kind.HEADERS, self._call.call_id, metadata=entries))

    def set_trailing_metadata(self, trailing_metadata: MetadataLike) -> None:
        """The metadata to send with the status (replaces what was set before)."""
        self._trailers = md.normalize(trailing_metadata)

    def trailing_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata(*self._trailers)

    def set_code(self, code: StatusCode) -> None:
        """The status to end the call with when the method returns (a non-OK code sends no
        reply)."""
        self._code = code

    def code(self) -> StatusCode:
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details

    def time_remaining(self) -> float | None:  # type: ignore[override]
        """Seconds left before the deadline, or ``None`` when the call has none."""
        return self._call.deadline.remaining()

    def cancelled(self) -> bool:
        """Whether the call was cancelled (by the client, the peer going away, or a stop)."""
        return self._call.state is _State.CANCELLED

    def done(self) -> bool:
        """Whether the call has ended."""
        return self._call.state in (_State.CANCELLED, _State.CLOSED)

    def add_done_callback(self, callback: Callable[[ServicerContext], None]) -> None:
        """Call ``callback(context)`` when the call ends (at once if it has)."""
        if self.done():
            callback(self)
        else:
            self._callbacks.append(callback)

    async def abort(
        self,
        code: StatusCode,
        details: str = "",
        trailing_metadata: MetadataLike = (),
    ) -> NoReturn:
        """End the call now with ``code`` (never OK) and ``details``; never returns. For rich
        errors put a ``google.rpc.Status`` under ``grpc-status-details-bin`` in
        ``trailing_metadata`` (as ``grpc_status.rpc_status.to_status`` gives it), or use
        :meth:`abort_with_status`."""
        self._abort(code, details, trailing_metadata)

    def _abort(self, code: StatusCode, details: str, trailing_metadata: MetadataLike) -> NoReturn:
        if code is StatusCode.OK:
            raise ValueError("abort needs a status code other than OK")
        entries = md.normalize(trailing_metadata)
        if entries:
            self._trailers = entries
        raise RpcError(code, details, self._trailers)

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        """End the call now with a ``grpc.Status`` (its ``code``, ``details`` and
        ``trailing_metadata``), as ``grpc_status.rpc_status.to_status(rich_status)`` makes one:
        the client reads the rich status back with ``rpc_status.from_call(error)``."""
        self._abort(status.code, status.details, status.trailing_metadata or ())

    def set_compression(self, compression: grpc.Compression | str) -> None:
        """Compress the replies from now on with ``compression`` (a ``grpc.Compression``):
        ``NoCompression`` sends them uncompressed; an encoding is used when the call named the
        same one (a p2prpc call has one encoding both ways, and its peer said it reads it), else
        replies go uncompressed, as gRPC sends them when the client does not accept the
        server's choice. ``ValueError`` for something that is not a compression."""
        from .serving import compression_name  # the server's module builds on this one

        name = compression_name(compression)
        self._compression = name

    def disable_next_message_compression(self) -> None:
        """Send the next reply uncompressed, whatever the call's compression."""
        self._skip_compression = True

    async def read(self) -> Any:
        """The next request of a request stream, or ``grpc.aio.EOF`` once the client has ended
        it (and for a single-request method, whose request the method was given), as grpc.aio's
        ``read()``; for methods that take the requests from the context rather than the
        iterator. ``RpcError`` when the stream cannot be read (a request that does not parse,
        or the call ended)."""
        return await self._call.read()

    async def write(self, message: Any) -> None:
        """Send one reply of a reply stream, as grpc.aio's ``write()``; for an ``async def``
        method that streams its replies through the context rather than by yielding. Waits
        while the client's window is shut. ``asyncio.InvalidStateError`` for a method of a
        single reply (it returns its reply)."""
        await self._call.write(message)

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("a done callback of %s raised", self._call.method)


class SyncServicerContext:
    """The context a plain ``def`` method gets (grpc.aio's for methods it runs on its
    ``migration_thread_pool``): the :class:`ServicerContext`'s methods, with ``abort``,
    ``abort_with_status``, ``send_initial_metadata``, ``read`` and ``write`` blocking in the
    method's thread until the event loop has done them. Called on the event loop itself (a
    ``def`` that returns a coroutine), they return what the async context's return, to await."""

    def __init__(self, context: ServicerContext, loop: asyncio.AbstractEventLoop) -> None:
        self._context = context
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _run(self, coroutine: Awaitable[T]) -> Any:
        if self._on_loop():
            return coroutine
        return asyncio.run_coroutine_threadsafe(_awaited(coroutine), self._loop).result()

    def abort(
        self, code: StatusCode, details: str = "", trailing_metadata: MetadataLike = ()
    ) -> Any:
        """End the call now with ``code`` and ``details`` (raises, as grpc's ``abort``)."""
        if self._on_loop():
            return self._context.abort(code, details, trailing_metadata)
        self._context._abort(code, details, trailing_metadata)

    def abort_with_status(self, status: grpc.Status) -> Any:
        """End the call now with a ``grpc.Status`` (raises)."""
        if self._on_loop():
            return self._context.abort_with_status(status)
        self._context._abort(status.code, status.details, status.trailing_metadata or ())

    def send_initial_metadata(self, initial_metadata: MetadataLike) -> Any:
        return self._run(self._context.send_initial_metadata(initial_metadata))

    def read(self) -> Any:
        return self._run(self._context.read())

    def write(self, message: Any) -> Any:
        return self._run(self._context.write(message))

    def is_active(self) -> bool:
        """Whether the call is still going on (grpc's ``ServicerContext.is_active``)."""
        return not self._context.done()

    def add_callback(self, callback: Callable[[], object]) -> bool:
        """Call ``callback()`` when the call ends (grpc's; ``True``: registered)."""

        def done(_: ServicerContext) -> None:
            callback()

        self._context.add_done_callback(done)
        return True


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _is_async(func: Callable[..., Any]) -> bool:
    """Whether grpc.aio runs ``func`` on the event loop (else on the thread pool)."""
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


class ServerCall:
    """One incoming call in progress."""

    def __init__(
        self,
        endpoint: Endpoint,
        peer_id: str,
        envelope: Envelope,
        handler: Handler[Any, Any],
        connection: int,
        first_size: int = 0,
    ) -> None:
        """``first_size``: bytes of ``envelope`` (:func:`queued_size`) already taken from the
        node's ``queued`` budget for this peer; the call gives them back once it has read the
        request or ended."""
        self.endpoint = endpoint
        self.node = endpoint.node
        self.peer_id = peer_id
        #: The connection the call came on: it is answered there, and ends when that closes.
        self.connection: int | None = connection
        #: The key proven on that connection when the call came (``None``: none).
        self.public_key = self.node.connection_identity(peer_id, connection)
        self.call_id = envelope.call_id
        self.method = envelope.method or ""
        self.handler = handler
        self.metadata = envelope.metadata  # the call's own: what the method is invoked with
        # The call's single request until it is decoded (then only the decoded request is kept).
        self._first: Envelope | None = envelope if envelope.has_payload else None
        self.state = _State.OPEN
        self.replied = False
        self.task: asyncio.Task[None] | None = None
        self.encoding = envelope.encoding
        self.deadline = Deadline.after(envelope.timeout)
        self._deadline_passed = False  # it cancelled the method (see _run)
        self._client_streams = handler.cardinality.client_streams
        # A single request rides in the call: only a request stream needs a queue. Each request
        # waits with its bytes (as the budgets count them) and its cost against the window.
        self._requests: (
            asyncio.Queue[tuple[Envelope, int, int] | _EndOfRequests | RpcError] | None
        ) = asyncio.Queue() if self._client_streams else None
        self._next_seq = 1 if envelope.has_payload else 0
        self._reply_seq = 0
        # Bytes of requests waiting to be read: all of them are taken from the node's budget
        # (``node.queued``) and given back as they are read, or when the call ends.
        self._queued_bytes = first_size
        self._first_size = first_size
        self.tag = ("server", self.call_id)  # what withdraws this call's unsent frames
        # Answered in the form it came in: a JSON-form call (a P2PT app) gets JSON back.
        self.binary = self.node.is_binary(peer_id) and not envelope.json
        server = endpoint.server
        #: What serves the call: the method's handler once interceptors have had their say.
        self.served = handler
        self.server_compression = server.compression if server is not None else None
        self.context = ServicerContext(self)
        #: The client's window for the replies, and the grants of this call's own for requests.
        self.window = SendWindow(self.node.peer_window(peer_id))
        self.reads = ReadWindow(self, Kind.MSG_WINDOW, binary=self.binary)
        if self._requests is not None and envelope.has_payload:
            # It rode in the call, which no window counts.
            self._requests.put_nowait((envelope, first_size, 0))
            self._first_size = 0  # it waits in the queue, read as any other request
            self._first = None
        if self._requests is None:
            self.state = _State.HALF_CLOSED

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.node.track_task(self.task)

    # -- from the endpoint --------------------------------------------------------------------

    def on_envelope(self, envelope: Envelope) -> None:
        if envelope.kind is Kind.CANCEL:
            self._cancel()
            return
        if envelope.kind is Kind.REPLY_WINDOW:
            if self.state not in (_State.CANCELLED, _State.CLOSED):
                self.window.grant(envelope.seq)  # FlowControlError: refused, the call ends
            return
        if self.state is not _State.OPEN:
            return
        assert self._requests is not None  # open: a request stream
        if envelope.seq != self._next_seq:
            self.refuse(
                Status(StatusCode.INTERNAL, f"request stream out of order at {envelope.seq}")
            )
        elif envelope.kind is Kind.END:
            self.state = _State.HALF_CLOSED
            self._requests.put_nowait(_END)
        else:
            cost = self.reads.cost(envelope)  # as it came: a JSON payload by its text
            envelope = kept(envelope, self.handler, self.node.max_message_size)
            size = queued_size(envelope)
            budget = MAX_QUEUED_REQUEST_MESSAGES_SIZE * self.node.max_message_size
            most = max(MAX_QUEUED_REQUESTS, self.node.window // ENVELOPE_OVERHEAD + 2)
            if self._requests.qsize() >= most:
                self.refuse(
                    Status(
                        StatusCode.RESOURCE_EXHAUSTED,
                        f"too many unread request messages (at most {most})",
                    )
                )
                return
            if self._queued_bytes + size > budget:
                self.refuse(
                    Status(
                        StatusCode.RESOURCE_EXHAUSTED,
                        f"unread request messages would hold more than {budget} bytes",
                    )
                )
                return
            if not self.node.queued.take(self.peer_id, size):
                self.refuse(Status(StatusCode.RESOURCE_EXHAUSTED, self.endpoint.over_budget()))
                return
            self._next_seq += 1
            self._queued_bytes += size
            self._requests.put_nowait((envelope, size, cost))

    def on_peer_lost(self) -> None:
        self._cancel()

    def abandon(self) -> None:
        """The node is stopping: tell the client, cancel the method."""
        if self.state in (_State.CANCELLED, _State.CLOSED):
            return
        self.refuse(
            Status(StatusCode.UNAVAILABLE, "the server is shutting down")
        )  # the method sees a cancelled call, as after grpc.aio's stop(grace)

    def refuse(self, status: Status) -> None:
        """A request could not be read: answer ``status`` now and cancel the method."""
        if self.state in (_State.CANCELLED, _State.CLOSED):
            return
        self.node.withdraw(self.peer_id, self.tag)
        self._send_final(self._status_envelope(status), tag=None)
        self._cancel()

    def _cancel(self) -> None:
        if self.state in (_State.CANCELLED, _State.CLOSED):
            return
        self.state = _State.CANCELLED
        self.node.withdraw(self.peer_id, self.tag)
        self._ended()
        if self.task is not None:
            self.task.cancel()

    # -- running the method -------------------------------------------------------------------

    async def _run(self) -> None:
        if self.encoding is not None and self.encoding not in CODECS:
            # As gRPC answers a grpc-encoding it does not know.
            self._end_with(Status(StatusCode.UNIMPLEMENTED, f"unknown encoding {self.encoding!r}"))
            return
        if self.deadline.expired():  # a timeout of 0: over before it starts, as in gRPC
            self._end_with(Status(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"))
            return
        at = self.deadline.at
        deadlines = self.endpoint.deadlines
        # The deadline cancels the method's task (as asyncio.timeout() would, on the endpoint's
        # one timer): ``expired`` says it did, once the method is over.
        watch = None if at is None else deadlines.add(at, self._on_deadline)
        expired = False
        fatal: BaseException | None = None
        try:
            try:
                final = await self._serve()
            finally:
                if watch is not None:
                    deadlines.cancel(watch)
                    expired = self._deadline_cancelled()
        except RpcError as e:
            final = self._status_envelope(
                Status(
                    e.code(), e.details(), tuple(e.trailing_metadata()) or self.context._trailers
                )
            )
        except TimeoutError:
            if expired:
                final = self._status_envelope(
                    Status(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
                )
            else:
                final = self._unexpected(TimeoutError("the method raised TimeoutError"))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.state in (_State.CANCELLED, _State.CLOSED) or (task and task.cancelling()):
                raise  # cancelled from outside: the client, the peer, or the node stopping
            if expired:  # the deadline's own cancellation
                final = self._status_envelope(
                    Status(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
                )
            else:
                final = self._status_envelope(
                    Status(StatusCode.CANCELLED, f"{self.method} raised CancelledError")
                )
        except PeerClosed:
            self._cancel()
            return
        except TooLargeForPeer as e:  # a reply the client's connection does not take
            final = self._status_envelope(too_large(e))
        except Exception as e:
            final = self._unexpected(e)
        except BaseException as e:  # GeneratorExit, KeyboardInterrupt...: answered, then raised
            final = self._unexpected(e)
            if isinstance(e, KeyboardInterrupt | SystemExit):
                fatal = e
        if self.state in (_State.CANCELLED, _State.CLOSED):
            return
        try:
            if not self._send_now(final):
                await self._send_waiting(final)
        except PeerClosed:
            self._cancel()
            return
        except TooLargeForPeer as e:  # a single reply the client's connection does not take
            self._end_with(too_large(e))
        except LocalProtocolError as e:  # a status too large for its header (details, trailers)
            logger.error("%s: its status cannot be sent: %s", self.method, e)
            self._end_with(unsendable(e))
        else:
            self._finish(None)
        if fatal is not None:
            raise fatal

    def _on_deadline(self) -> None:
        """The call's deadline has come while its method runs: cancel the method."""
        task = self.task
        if task is not None and not task.done() and not self._deadline_passed:
            self._deadline_passed = True
            task.cancel()

    def _deadline_cancelled(self) -> bool:
        """Whether the deadline cancelled the method (that cancellation is taken back from its
        task, as asyncio.timeout() does, so only cancellations from outside remain)."""
        if not self._deadline_passed:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    async def _send_waiting(self, envelope: Envelope) -> None:
        """Send, waiting while the send queue to the peer is full (backpressure)."""
        while True:
            try:
                self.node.send(
                    self.peer_id,
                    envelope,
                    binary=self.binary,
                    tag=self.tag,
                    connection=self.connection,
                )
                return
            except SendQueueFull:
                await self.node.drain(self.peer_id, self.connection)

    def _send_now(self, envelope: Envelope) -> bool:
        """Send if the send queue to the peer takes it; whether it did."""
        try:
            self.node.send(
                self.peer_id, envelope, binary=self.binary, tag=self.tag, connection=self.connection
            )
        except SendQueueFull:
            return False
        return True

    def _unexpected(self, error: BaseException) -> Envelope:
        """The status of a method that raised ``error``: UNKNOWN, or the code the method set
        before it raised (with its details, if it set any), as gRPC answers; a grpcio-tools
        servicer's method left unimplemented sets UNIMPLEMENTED, then raises
        ``NotImplementedError``."""
        context = self.context
        what = f"unexpected {type(error).__name__}: {error}"[:1000]
        if context.code() is StatusCode.OK:
            logger.error("%s raised an unexpected error", self.method, exc_info=error)
            return self._status_envelope(Status(StatusCode.UNKNOWN, what))
        logger.debug("%s set %s, then raised", self.method, context.code(), exc_info=error)
        return self._status_envelope(
            Status(context.code(), context.details() or what, context._trailers)
        )

    def _status_envelope(self, status: Status) -> Envelope:
        return Envelope(Kind.STATUS, self.call_id, self._reply_seq, status=status)

    def _end_with(self, status: Status) -> None:
        self._finish(self._status_envelope(status))

    def _finish(self, final: Envelope | None) -> None:
        """Send the envelope that ends the call (unless it was sent) and forget the call."""
        if self.state in (_State.CANCELLED, _State.CLOSED):
            return
        self.state = _State.CLOSED
        if final is not None:
            self._send_final(final, tag=self.tag)
        self._ended()

    def _send_final(self, final: Envelope, tag: Any) -> None:
        """Send the envelope that ends the call, best effort (a peer gone or whose send queue is
        full gets nothing); one that cannot be encoded is replaced by an INTERNAL status."""
        with contextlib.suppress(PeerClosed, SendQueueFull, LocalProtocolError):
            try:
                self.node.send(
                    self.peer_id, final, binary=self.binary, tag=tag, connection=self.connection
                )
            except LocalProtocolError as e:
                logger.error("%s: its status cannot be sent: %s", self.method, e)
                self.node.send(
                    self.peer_id,
                    self._status_envelope(unsendable(e)),
                    binary=self.binary,
                    tag=tag,
                    connection=self.connection,
                )

    def _release(self, size: int) -> None:
        """Give back ``size`` bytes of requests that are not held any more."""
        self._queued_bytes -= size
        self.node.queued.give_back(self.peer_id, size)

    def _drop_first(self) -> None:
        """The call's first request has been read: keep only its header, not its payload."""
        self._first = None
        self._release(self._first_size)
        self._first_size = 0

    def _ended(self) -> None:
        self.window.close()  # a method waiting to send a reply wakes (and is cancelled)
        self.reads.close()
        # What waits unread is given back at once: nothing reads it any more.
        self._release(self._queued_bytes)
        self._first_size = 0
        if self._requests is not None:
            while not self._requests.empty():
                self._requests.get_nowait()
            # A reader still waiting (a method run on the thread pool, whose wait the call's
            # cancellation does not reach) is woken.
            self._requests.put_nowait(RpcError(StatusCode.CANCELLED, "the call has ended"))
        self._first = None
        self.endpoint.server_call_ended(self.peer_id, self.call_id)
        self.context._run_callbacks()

    def send(self, envelope: Envelope) -> None:
        try:
            self.node.send(
                self.peer_id, envelope, binary=self.binary, tag=self.tag, connection=self.connection
            )
        except PeerClosed:
            self._cancel()
            raise

    async def _serve(self) -> Envelope:
        """Run the method, as grpc.aio runs it (see :class:`~p2prpc.rpc.Handler`); return the
        envelope that ends the call."""
        server = self.endpoint.server
        if server is not None and server.interceptors:
            self.served = await self._intercept()
        handler = self.served
        context = self.context
        shape = handler.cardinality
        func = handler.func
        on_loop = _is_async(func)
        if shape.client_streams:
            requests = self._request_stream(handler)
            argument: Any = requests if on_loop else self._blocking(requests)
        elif self._requests is None:  # the request rode in the call
            argument = self._first_request(handler)
        else:
            argument = await self._single_request(handler)
        if shape.server_streams:
            await self._stream_replies(func, argument)
            return self._status_envelope(self._final_status())
        if on_loop:
            reply = await func(argument, context)
        else:
            reply = await self._in_thread(func, argument, self._sync_context())
            if inspect.isawaitable(reply):  # a ``def`` that hands back a coroutine
                reply = await reply
        if context.code() is not StatusCode.OK:
            return self._status_envelope(self._final_status())
        return self._reply(handler, reply, 0, Status(StatusCode.OK, "", context._trailers))

    async def _stream_replies(self, func: Callable[..., Any], argument: Any) -> None:
        """Send the replies of a reply stream: those an async generator yields, a generator
        yields (taken from it off the loop), or an ``async def`` writes (``context.write``)."""
        if inspect.isasyncgenfunction(func):
            replies: Any = func(argument, self.context)
        elif inspect.iscoroutinefunction(func):
            replies = await func(argument, self.context)  # it wrote its replies
        elif inspect.isgeneratorfunction(func):
            replies = func(argument, self._sync_context())
        else:  # a ``def`` returning what streams the replies: an async iterator, or an iterable
            replies = func(argument, self.context)
            if inspect.isawaitable(replies):
                replies = await replies
        if replies is None:
            return
        if not hasattr(replies, "__aiter__"):
            replies = self._off_loop(iter(replies))
        try:
            async for reply in replies:
                await self.write(reply)
        finally:
            # However the call ends (cancelled, deadline, peer lost), the method's generator
            # is closed now, so that its ``finally`` frees what it holds for the call.
            close = getattr(replies, "aclose", None)
            if close is not None:
                await close()

    async def write(self, reply: Any) -> None:
        """Send one reply of a reply stream (waiting while the client's window is shut and the
        send queue is full)."""
        handler = self.served
        if not handler.cardinality.server_streams:
            raise asyncio.InvalidStateError(f"{self.method} returns its single reply")
        if self.state in (_State.CANCELLED, _State.CLOSED):
            raise asyncio.InvalidStateError("the call has ended")
        envelope = self._reply(handler, reply, self._reply_seq)
        if self.window.limited:  # the method waits while the client's window is shut
            await self.window.wait()
            if self.state in (_State.CANCELLED, _State.CLOSED):
                raise asyncio.CancelledError
            self.window.spend(envelope.payload)
        await self._send_waiting(envelope)
        self._reply_seq += 1
        await self.node.drain(self.peer_id, self.connection)

    async def read(self) -> Any:
        """The next request of the stream, or ``grpc.aio.EOF`` after the last."""
        if self._requests is None:
            return grpc.aio.EOF
        request = await self._next_request(self.served)
        return grpc.aio.EOF if request is None else request

    def _sync_context(self) -> SyncServicerContext:
        return SyncServicerContext(self.context, asyncio.get_running_loop())

    async def _in_thread(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on the server's thread pool (grpc.aio's ``migration_thread_pool``),
        within the calling peer's share of its threads
        (:class:`~p2prpc.rpc.serving.ThreadShares`)."""
        server = self.endpoint.server
        assert server is not None  # a call is served only by a server
        return await server.threads.run(self.peer_id, func, *args)

    async def _off_loop(self, replies: Iterator[Any]) -> AsyncIterator[Any]:
        """The items of a blocking iterator, each taken from it on the thread pool (within the
        peer's share). However the call ends, a generator is then closed (its ``finally`` runs)
        on the pool too, within the share, once a ``next()`` still running has returned."""
        server = self.endpoint.server
        assert server is not None  # a call is served only by a server
        running: list[concurrent.futures.Future[Any]] = []
        try:
            while True:
                reply = await server.threads.run(
                    self.peer_id, next, replies, _DONE, submitted=running.append
                )
                running.clear()
                if reply is _DONE:
                    return
                yield reply
        finally:
            close = getattr(replies, "close", None)
            if close is not None:
                pending = running[0] if running else None
                # Not the node's task: a node that stops does not cancel it, so the generator
                # is closed once its ``next()`` returns, even then.
                task = asyncio.get_running_loop().create_task(self._close(close, pending))
                _closing.add(task)
                task.add_done_callback(_closing.discard)

    async def _close(
        self, close: Callable[[], Any], pending: concurrent.futures.Future[Any] | None
    ) -> None:
        """Close a method's generator on the pool within the peer's share, after ``pending``
        (a ``next()`` still running when the call ended) has returned."""
        server = self.endpoint.server
        assert server is not None
        try:
            if pending is not None and not pending.done():
                try:
                    await asyncio.shield(asyncio.wrap_future(pending))
                except asyncio.CancelledError:
                    if not pending.cancelled():
                        raise  # this close was cancelled (the node stops)
                except Exception:
                    pass  # the generator's own error: its call has ended already
            try:
                await server.threads.run(self.peer_id, close)
            except RuntimeError:  # the node has stopped: its pool takes nothing more
                await asyncio.get_running_loop().run_in_executor(None, close)
        except Exception:
            logger.exception("closing the reply generator of %s failed", self.method)

    def _blocking(self, requests: AsyncIterator[Any]) -> Iterator[Any]:
        """The request stream as a blocking iterator, for a method run on the thread pool; it
        raises the call's error when the call ends while it waits."""
        loop = asyncio.get_running_loop()

        def iterate() -> Iterator[Any]:
            while True:
                item = asyncio.run_coroutine_threadsafe(_next_or(requests), loop).result()
                if item is _DONE:
                    return
                yield item

        return iterate()

    def _reply(
        self, handler: Handler[Any, Any], reply: object, seq: int, status: Status | None = None
    ) -> Envelope:
        """A reply envelope (with the final ``status`` for a single reply); INTERNAL for a reply
        of the wrong type, RESOURCE_EXHAUSTED past the size limit."""
        self._check_reply(reply, handler)
        try:
            payload, compressed = pack(  # within this node's limit and the client's (its hello's)
                handler.reply_codec,
                reply,
                self.binary,
                self._reply_encoding(),
                self.node.message_limit(self.peer_id),
            )
        except RpcError:
            raise
        except Exception as e:  # a serializer of grpc's form failed on what the method gave
            raise RpcError(
                StatusCode.INTERNAL, f"{self.method}: the reply cannot be serialized: {e}"[:1000]
            ) from e
        self.replied = True
        return Envelope(
            Kind.REPLY,
            self.call_id,
            seq,
            payload=payload,
            has_payload=True,
            compressed=compressed,
            status=status,
        )

    def _reply_encoding(self) -> str | None:
        """The encoding of the next reply: the call's, unless the method chose otherwise."""
        context = self.context
        if context._skip_compression:
            context._skip_compression = False
            return None
        chosen = context._compression
        if chosen is None or chosen == self.encoding:
            return self.encoding
        return None

    def _check_reply(self, reply: object, handler: Handler[Any, Any]) -> None:
        if isinstance(handler.reply_codec, SerializerCodec):
            return  # its serializer decides what it takes
        if not isinstance(reply, handler.reply_type):
            raise RpcError(
                StatusCode.INTERNAL,
                f"{self.method} returned {type(reply).__name__}, not {handler.reply_type.__name__}",
            )

    def _final_status(self) -> Status:
        context = self.context
        return Status(context.code(), context.details(), context._trailers)

    async def _intercept(self) -> Handler[Any, Any]:
        server = self.endpoint.server
        interceptors = server.interceptors if server is not None else ()
        if not interceptors:
            return self.handler
        from .serving import intercept  # the server's module builds on this one

        identities = self.context.peer_identities()
        details = HandlerCallDetails(
            self.method,
            self.metadata,
            self.peer_id,
            tuple(identities) if identities is not None else None,
        )

        async def terminal(asked: HandlerCallDetails) -> Handler[Any, Any] | None:
            if asked.method == self.method or server is None:
                return None if isinstance(self.handler, UnknownMethod) else self.handler
            return server.method_handler(asked.method, asked.invocation_metadata)

        handler = await intercept(interceptors, details, terminal)
        if handler is None:
            if isinstance(self.handler, UnknownMethod):
                raise RpcError(self.handler.status.code, self.handler.status.details)
            raise RpcError(StatusCode.UNIMPLEMENTED, f"method not found: {self.method}")
        return handler

    async def _next_request(self, handler: Handler[Any, Any]) -> Any | None:
        assert self._requests is not None
        item = await self._requests.get()
        if isinstance(item, _EndOfRequests):
            self._requests.put_nowait(item)  # stays at the end
            return None
        if isinstance(item, RpcError):
            raise item
        envelope, size, cost = item
        self._release(size)
        self.reads.read(cost)  # the method has it: the client may send that much more
        return self._unpack(handler, envelope)

    def _unpack(self, handler: Handler[Any, Any], envelope: Envelope) -> Any:
        node = self.node
        return unpack(
            handler.request_codec,
            envelope,
            self.encoding,
            node.max_message_size,
            max_ratio=node.max_decompression_ratio,
            decoded=lambda size: node.settle_work(self.peer_id, envelope, size),
        )

    async def _single_request(self, handler: Handler[Any, Any]) -> Any:
        if self._requests is not None:  # a handler of another shape, from an interceptor
            request = await self._next_request(handler)
            if request is None:
                request = decode(handler.request_codec, b"", self.node.max_message_size)
            return request
        return self._first_request(handler)

    def _first_request(self, handler: Handler[Any, Any]) -> Any:
        """The request that rode in the call, decoded."""
        if self._first is not None:
            try:
                request = self._unpack(handler, self._first)
            finally:
                self._drop_first()  # the decoded request is all the call keeps of it
        else:
            request = None
        # A call without its message asks with the default one, as proto3 reads a missing field.
        if request is None:
            request = decode(handler.request_codec, b"", self.node.max_message_size)
        return request

    async def _request_stream(self, handler: Handler[Any, Any]) -> AsyncIterator[Any]:
        while True:
            request = await self._next_request(handler)
            if request is None:
                return
            yield request


async def _next_or(requests: AsyncIterator[Any]) -> Any:
    """The next request, or ``_DONE`` after the last."""
    return await anext(requests, _DONE)


#: Generators being closed after their calls ended (held here until closed: see _off_loop).
_closing: set[asyncio.Task[None]] = set()


def too_large(error: TooLargeForPeer) -> Status:
    """How a call ends whose reply the client's connection does not take."""
    return Status(StatusCode.RESOURCE_EXHAUSTED, f"the reply cannot be sent: {error}"[:1000])
