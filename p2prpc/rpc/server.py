"""The server side of a call: run the servicer's method under the call's deadline, stream the
replies back, end with a status.

Life of a server call::

    open ──(client: end)──▶ half-closed ──(method returns)──▶ closed, status sent
      │                                                        ▲
      └──(client: cancel, peer lost)──▶ cancelled: the method is cancelled, no status is sent
      └──(deadline passes)──▶ the method is cancelled, DEADLINE_EXCEEDED sent ─┘
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from ..errors import PeerClosed
from ..wire.compression import CODECS
from ..wire.envelope import Envelope, Kind, Status
from .base import (
    Handler,
    HandlerCallDetails,
    ServicerContext,
    decode_payload,
    pack_payload,
    unpack_payload,
)
from .status import RpcError, StatusCode

if TYPE_CHECKING:
    from ..node import Node

logger = logging.getLogger(__name__)

#: Request-stream messages a server call holds before its method reads them; past that the call
#: fails with RESOURCE_EXHAUSTED (there is no flow control to slow the client down).
MAX_QUEUED_REQUESTS = 1024


class _State(enum.Enum):
    OPEN = "open"
    HALF_CLOSED = "half-closed"
    CANCELLED = "cancelled"
    CLOSED = "closed"


class _EndOfRequests:
    pass


_END = _EndOfRequests()


def start_server_call(
    node: Node, peer_id: str, envelope: Envelope, handler: Handler[Any, Any]
) -> None:
    """Start serving one incoming call (``envelope`` is its ``call``)."""
    call = ServerCall(node, peer_id, envelope, handler)
    node.open_server_call(peer_id, envelope.call_id, call)
    call.task = asyncio.get_running_loop().create_task(call.run())
    node.track_task(call.task)


class ServerCall:
    """One incoming call in progress."""

    def __init__(
        self, node: Node, peer_id: str, envelope: Envelope, handler: Handler[Any, Any]
    ) -> None:
        self.node = node
        self.peer_id = peer_id
        self.call_id = envelope.call_id
        self.method = envelope.method or ""
        self.handler = handler
        self.state = _State.OPEN
        self.task: asyncio.Task[None] | None = None
        self._first = envelope
        self.encoding = envelope.encoding
        self._requests: asyncio.Queue[Envelope | _EndOfRequests | RpcError] = asyncio.Queue()
        self._next_seq = 1 if envelope.has_payload else 0
        self._reply_seq = 0
        self._deadline = (
            time.monotonic() + envelope.timeout if envelope.timeout is not None else None
        )
        self.context = ServicerContext(
            self.method, peer_id, envelope.metadata or {}, self._deadline
        )
        if envelope.has_payload:
            self._requests.put_nowait(envelope)
        if not handler.cardinality.client_streams:
            self._requests.put_nowait(_END)
            self.state = _State.HALF_CLOSED

    # -- from the node ------------------------------------------------------------------------

    def on_envelope(self, envelope: Envelope) -> None:
        if self.state is not _State.OPEN:
            if envelope.kind is Kind.CANCEL:
                self._cancel()
            return
        if envelope.kind is Kind.CANCEL:
            self._cancel()
        elif envelope.seq != self._next_seq:
            self._fail(
                RpcError(StatusCode.INTERNAL, f"request stream out of order at {envelope.seq}")
            )
        elif envelope.kind is Kind.END:
            self.state = _State.HALF_CLOSED
            self._requests.put_nowait(_END)
        elif self._requests.qsize() >= MAX_QUEUED_REQUESTS:
            self._fail(RpcError(StatusCode.RESOURCE_EXHAUSTED, "too many unread request messages"))
        else:
            self._next_seq += 1
            self._requests.put_nowait(envelope)

    def on_peer_lost(self) -> None:
        self._cancel()

    def _cancel(self) -> None:
        if self.state in (_State.CANCELLED, _State.CLOSED):
            return
        self.state = _State.CANCELLED
        self.context._cancelled = True
        if self.task is not None:
            self.task.cancel()

    def _fail(self, error: RpcError) -> None:
        """End the request stream with an error the method sees when it reads next."""
        self.state = _State.HALF_CLOSED
        self._requests.put_nowait(error)

    # -- running the method -------------------------------------------------------------------

    async def run(self) -> None:
        if self.encoding is not None and self.encoding not in CODECS:
            # As gRPC answers a grpc-encoding it does not know.
            status = Status(StatusCode.UNIMPLEMENTED, f"unknown encoding {self.encoding!r}")
            self.node.close_server_call(self.peer_id, self.call_id)
            self.state = _State.CLOSED
            with contextlib.suppress(PeerClosed):
                self.node.send(self.peer_id, self._status(status))
            return
        try:
            async with asyncio.timeout(self.context.time_remaining()):
                final = await self._serve()
        except RpcError as e:
            trailers = {**self.context.trailing_metadata, **e.trailing_metadata}
            final = self._status(Status(e.code, e.details, trailers))
        except TimeoutError:
            final = self._status(Status(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"))
        except asyncio.CancelledError:
            if self.state is not _State.CANCELLED:
                raise  # the node is closing: nobody is left to tell
            return
        except PeerClosed:
            return
        except Exception as e:
            logger.exception("%s raised an unexpected error", self.method)
            final = self._status(Status(StatusCode.UNKNOWN, f"unexpected {type(e).__name__}: {e}"))
        finally:
            self.node.close_server_call(self.peer_id, self.call_id)
        if self.state is _State.CANCELLED:
            return
        self.state = _State.CLOSED
        with contextlib.suppress(PeerClosed):
            self.node.send(self.peer_id, final)

    def _status(self, status: Status) -> Envelope:
        return Envelope(Kind.STATUS, self.call_id, self._reply_seq, status=status)

    async def _serve(self) -> Envelope:
        """Run the method; return the envelope that ends the call."""
        handler = await self._intercept()
        context = self.context
        binary = self.node.is_binary(self.peer_id)
        shape = handler.cardinality
        if shape.client_streams:
            argument: Any = self._request_stream(handler.request_type)
        else:
            argument = await self._single_request(handler.request_type)
        if shape.server_streams:
            async for reply in handler.func(argument, context):
                if not isinstance(reply, handler.reply_type):
                    raise _wrong_type(self.method, reply, handler.reply_type)
                payload, compressed = pack_payload(
                    reply, binary, self.encoding, self.node.max_message_size
                )
                self._send(
                    Envelope(
                        Kind.REPLY,
                        self.call_id,
                        self._reply_seq,
                        payload=payload,
                        has_payload=True,
                        compressed=compressed,
                    )
                )
                self._reply_seq += 1
                await self.node.drain(self.peer_id)
            return self._status(self._final_status())
        reply = await handler.func(argument, context)
        if context.code is not StatusCode.OK:
            return self._status(self._final_status())
        if not isinstance(reply, handler.reply_type):
            raise _wrong_type(self.method, reply, handler.reply_type)
        payload, compressed = pack_payload(reply, binary, self.encoding, self.node.max_message_size)
        return Envelope(
            Kind.REPLY,
            self.call_id,
            0,
            payload=payload,
            has_payload=True,
            compressed=compressed,
            status=Status(StatusCode.OK, "", dict(context.trailing_metadata)),
        )

    def _final_status(self) -> Status:
        return Status(self.context.code, self.context.details, dict(self.context.trailing_metadata))

    async def _intercept(self) -> Handler[Any, Any]:
        details = HandlerCallDetails(self.method, self.context.metadata, self.peer_id)
        interceptors = list(self.node.server_interceptors)

        async def proceed(index: int, d: HandlerCallDetails) -> Handler[Any, Any] | None:
            if index == len(interceptors):
                return self.handler
            handler: Handler[Any, Any] | None = await interceptors[index].intercept_service(
                d, lambda nd: proceed(index + 1, nd)
            )
            return handler

        handler = await proceed(0, details)
        if handler is None:
            raise RpcError(StatusCode.UNIMPLEMENTED, f"method not found: {self.method}")
        return handler

    async def _next_request(self, request_type: type[Message]) -> Message | None:
        item = await self._requests.get()
        if isinstance(item, _EndOfRequests):
            self._requests.put_nowait(item)  # stays at the end
            return None
        if isinstance(item, RpcError):
            raise item
        return decode_payload(
            unpack_payload(item, self.encoding, self.node.max_message_size),
            request_type,
            self.node.max_message_size,
        )

    async def _single_request(self, request_type: type[Message]) -> Message:
        request = await self._next_request(request_type)
        # A call without its message asks with the default one, as proto3 reads a missing field.
        return request if request is not None else request_type()

    async def _request_stream(self, request_type: type[Message]) -> AsyncIterator[Message]:
        while True:
            request = await self._next_request(request_type)
            if request is None:
                return
            yield request

    def _send(self, envelope: Envelope) -> None:
        try:
            self.node.send(self.peer_id, envelope)
        except PeerClosed:
            self._cancel()
            raise


def _wrong_type(method: str, reply: object, expected: type[Message]) -> RpcError:
    return RpcError(
        StatusCode.INTERNAL,
        f"{method} returned {type(reply).__name__}, not {expected.__name__}",
    )
