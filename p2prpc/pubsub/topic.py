"""Typed topics: ``await topic.publish(msg)`` and ``async for received in topic.subscribe()``."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from ..errors import RpcError
from ..wire.envelope import Envelope
from ..wire.held import ENVELOPE_OVERHEAD
from ..wire.payload import Decoded, JSONText, MessageCodec
from .router import Payload, message_size, router_of

if TYPE_CHECKING:
    from ..mux import Mux

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
T = TypeVar("T")

#: Default bytes of messages a subscription holds for its reader (:func:`message_size` each).
MAX_BYTES = 16 * 2**20


@dataclass(frozen=True, slots=True)
class Received(Generic[T]):
    """One message of a topic, with who published it (``sender``, a peer id) and its number.

    ``publisher``: the publisher's Ed25519 public key when the message was signed with it (and
    the signature verified), else ``None``.
    """

    message: T
    sender: str
    seq: int
    topic: str
    publisher: bytes | None = None


class Subscription(AsyncIterator[Received[T]]):
    """The messages of one topic for one reader, in a bounded queue.

    A reader slower than the publishers loses the oldest messages past ``maxsize`` messages or
    ``max_bytes`` bytes (each message counted as it waits: bytes as they came, JSON decoded into
    the topic's message or, for a raw topic, as compact JSON text parsed when it is read, and its
    envelope; one message larger than ``max_bytes`` still waits,
    alone); ``dropped`` counts them and ``held_bytes`` says what waits. Nobody else waits for a
    slow reader. Messages that never arrived and were given up on (after the router's
    ``reorder_timeout``) are reported: ``lost`` counts them and ``gaps`` holds the latest ranges
    as ``(sender, first seq, last seq)``. So every message is delivered in order or reported.
    Iterate it, and ``close()`` it (or use it as an async context manager) to unsubscribe.
    """

    def __init__(
        self,
        topic: _TopicBase[T],
        maxsize: int,
        publishers: Iterable[bytes] | None = None,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.topic = topic
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self.publishers = frozenset(publishers) if publishers is not None else None
        self.dropped = 0
        self.lost = 0
        self.gaps: deque[tuple[str, int, int]] = deque(maxlen=256)
        self._queue: deque[tuple[Received[T], int]] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        router_of(topic.node).add_sink(topic.name, self)

    def deliver(self, envelope: Envelope) -> None:
        """Queue a message for the reader (the router calls this)."""
        if self.publishers is not None and envelope.publisher not in self.publishers:
            return
        value = self.topic._decode(envelope.payload)
        if value is None:
            router_of(self.topic.node).stats.bad_payloads += 1
            return
        assert envelope.origin is not None
        # A raw reader's JSON waits as compact text, parsed when it is read.
        size = (
            value.size() + ENVELOPE_OVERHEAD
            if isinstance(value, JSONText)
            else message_size(envelope)
        )
        while self._queue and (
            len(self._queue) >= self.maxsize or self.held_bytes + size > self.max_bytes
        ):
            self.held_bytes -= self._queue.popleft()[1]
            self.dropped += 1
        received = Received(
            value, envelope.origin, envelope.seq, self.topic.name, envelope.publisher
        )
        self._queue.append((received, size))
        self.held_bytes += size
        self._ready.set()

    def lost_messages(
        self, sender: str, first: int, last: int, publisher: bytes | None = None
    ) -> None:
        """Messages ``first`` to ``last`` of ``sender`` were given up on (the router calls this);
        a subscription that takes only some publishers hears only of theirs."""
        if self.publishers is not None and publisher not in self.publishers:
            return
        self.lost += last - first + 1
        self.gaps.append((sender, first, last))

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> Received[T]:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        received, size = self._queue.popleft()
        self.held_bytes -= size
        if isinstance(received.message, JSONText):
            return replace(received, message=received.message.value())
        return received

    def pending(self) -> int:
        """Messages waiting to be read."""
        return len(self._queue)

    def close(self) -> None:
        """Unsubscribe; iteration ends once what is queued has been read."""
        if not self._closed:
            router_of(self.topic.node).remove_sink(self.topic.name, self)
            self.end()

    def end(self) -> None:
        """No more messages will come (unsubscribed, or the node closed)."""
        self._closed = True
        self._ready.set()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class _TopicBase(abc.ABC, Generic[T]):
    def __init__(self, node: Mux, name: str) -> None:
        if not 0 < len(name) <= 256:
            raise ValueError("a topic name has 1 to 256 characters")
        self.node = node
        self.name = name

    def subscribe(
        self,
        maxsize: int = 1024,
        *,
        publishers: Iterable[bytes] | None = None,
        max_bytes: int = MAX_BYTES,
    ) -> Subscription[T]:
        """Start receiving this topic's messages (the node tells its peers it subscribes).

        Messages not read yet wait, at most ``maxsize`` of them and ``max_bytes`` bytes (16 MiB)
        as they are held in memory; past either, the oldest are dropped
        (``Subscription.dropped``). ``publishers``: Ed25519 public keys; only messages signed
        by one of them are delivered.
        """
        return Subscription(self, maxsize, publishers, max_bytes)

    @abc.abstractmethod
    def _decode(self, payload: Any) -> T | None:
        """A received payload as this topic's messages, or None when it is not one."""

    @property
    def stats(self) -> Any:
        """The node's pub/sub counters (published, delivered, duplicates, relayed, ...)."""
        return router_of(self.node).stats


class Topic(_TopicBase[M]):
    """A topic whose messages are of one protobuf type (generated code makes these)."""

    def __init__(self, node: Mux, name: str, message_type: type[M]) -> None:
        super().__init__(node, name)
        self.message_type = message_type
        self._codec = MessageCodec(message_type)
        router_of(node).register_type(name, message_type)

    async def publish(self, message: M) -> int:
        """Publish to the swarm; returns how many neighbours it was sent to directly."""
        if not isinstance(message, self.message_type):
            raise TypeError(
                f"topic {self.name} carries {self.message_type.__name__}, "
                f"not {type(message).__name__}"
            )
        return await router_of(self.node).publish(self.name, Payload.of(message))

    def _decode(self, payload: Any) -> M | None:
        try:
            return self._codec.decode(payload, self.node.max_message_size)
        except RpcError as e:
            what = self.message_type.__name__
            logger.warning("topic %s: a message that is not a %s: %s", self.name, what, e)
            return None


class RawTopic(_TopicBase[Any]):
    """A topic known only at run time: JSON values in, JSON values out.

    Messages that arrive in the binary form (from typed publishers to binary-capable nodes) come
    out as ``bytes``: without the type, they cannot be read.
    """

    async def publish(self, value: Any) -> int:
        """Publish a JSON value; returns how many neighbours it was sent to directly."""
        return await router_of(self.node).publish(self.name, Payload(json=value))

    def _decode(self, payload: Any) -> Any:
        """Bytes as they are; JSON as compact text (the subscription parses it when read)."""
        if isinstance(payload, bytearray | memoryview):
            return bytes(payload)
        if isinstance(payload, Decoded):  # a typed topic's too: its message as proto3 JSON
            return JSONText(json_format.MessageToDict(payload.result()))
        if not isinstance(payload, bytes | JSONText):
            return JSONText(payload)
        return payload
