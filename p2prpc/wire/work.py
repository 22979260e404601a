"""What a peer's envelopes make a node do, in bytes of work, and the budget that paces it. Pure:
no asyncio; times are seconds on any monotonic clock, given by the caller.

One unit of work is one byte read or decoded. An envelope costs the bytes it arrived as (its
payload and headers), plus the bytes its payload is parsed from: its decompressed size when it is
compressed (at most :func:`~p2prpc.wire.compression.inflate_limit` of it, charged before the
work and settled once the real size is known), else the payload itself. A signature checked on a
peer's behalf costs :data:`VERIFY_COST` bytes, about what parsing that many bytes of protobuf
costs in the time one Ed25519 verification takes (60 µs); opening a sealed offer or answer
relayed by a neighbour costs :data:`OPEN_COST`.

:class:`WorkBudget` is a token bucket per peer that may go into debt: an envelope is handled at
once while its peer's bucket holds any tokens, and what it costs is taken even when that leaves the
bucket below zero; the peer's next envelopes wait until the debt is paid back at ``rate`` bytes a
second. A peer that keeps a node busy is slowed to that rate; the others are not.
"""

from __future__ import annotations

from collections.abc import Hashable

from .compression import inflate_limit
from .envelope import Envelope, Kind
from .payload import held_size

#: Bytes of work one Ed25519 signature check is counted as.
VERIFY_COST = 64 * 1024

#: Bytes of work opening one sealed offer or answer is counted as (an X25519 exchange, 52 µs,
#: then HKDF and AEAD).
OPEN_COST = 128 * 1024

#: Bytes of work an envelope costs besides its payload (reading its headers, routing it).
ENVELOPE_COST = 256

#: A JSON payload is parsed in Python (``json_format.ParseDict``: about 11 ns a byte held, where
#: protobuf bytes parse in 1.3 ns): it is charged this many bytes per byte held.
JSON_PARSE_FACTOR = 8


def envelope_work(envelope: Envelope, max_size: int, max_ratio: float) -> int:
    """The most work ``envelope`` can make its receiver do, in bytes (``max_size``: the largest
    payload it decodes; ``max_ratio``: the most a compressed payload may inflate)."""
    payload = envelope.payload
    if payload is None:
        work = 0
    elif isinstance(payload, bytes | bytearray | memoryview):
        size = len(payload)
        work = size + (inflate_limit(size, max_size, max_ratio) if envelope.compressed else size)
    else:
        work = (1 + JSON_PARSE_FACTOR) * held_size(payload)
    if envelope.kind is Kind.PUBLISH and envelope.signature is not None:
        work += VERIFY_COST
    return ENVELOPE_COST + work


def settled_work(envelope: Envelope, decoded: int, max_size: int, max_ratio: float) -> int:
    """What to take back (a negative charge) once a compressed payload charged by
    :func:`envelope_work` turned out to decompress to ``decoded`` bytes."""
    if not envelope.compressed or not isinstance(envelope.payload, bytes | bytearray | memoryview):
        return 0
    return decoded - inflate_limit(len(envelope.payload), max_size, max_ratio)


class WorkBudget:
    """A token bucket per key (a peer) that may go into debt: ``rate`` bytes of work a second,
    at most ``burst`` saved. Holds two numbers per key; :meth:`discard` forgets a key."""

    def __init__(self, rate: float, burst: float) -> None:
        if not rate > 0 or not burst > 0:
            raise ValueError("work_rate and work_burst must be positive")
        self.rate = float(rate)
        self.burst = float(burst)
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def tokens(self, key: Hashable, now: float) -> float:
        """The tokens ``key`` holds at ``now`` (negative: its debt)."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - last) * self.rate)

    def ready(self, key: Hashable, now: float) -> bool:
        """Whether ``key`` may start more work (it holds tokens)."""
        return self.tokens(key, now) > 0

    def spend(self, key: Hashable, work: float, now: float) -> bool:
        """Take ``work`` bytes from ``key`` if it holds tokens (it may go into debt by them);
        whether it did. One lookup: the path every envelope takes."""
        burst = self.burst
        bucket = self._buckets.get(key)
        if bucket is None:
            tokens = burst
        else:
            tokens = bucket[0] + (now - bucket[1]) * self.rate if now > bucket[1] else bucket[0]
            if tokens > burst:
                tokens = burst
        if tokens <= 0:
            return False
        self._buckets[key] = (tokens - work, now)
        return True

    def charge(self, key: Hashable, work: float, now: float) -> None:
        """Take ``work`` bytes from ``key`` (a negative amount gives them back)."""
        self._buckets[key] = (min(self.burst, self.tokens(key, now) - work), now)

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` holds tokens again (0 when it does)."""
        tokens = self.tokens(key, now)
        return 0.0 if tokens > 0 else (-tokens / self.rate) + 1e-4

    def discard(self, key: Hashable) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
