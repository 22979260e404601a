"""Peer exchange and relayed signalling between p2prpc peers: the messages and the rate limits.

Pure codecs: no asyncio, no sockets. ``docs/PROTOCOL.md`` section 7 is the specification. Two
envelope kinds carry these objects, in the JSON form only (``{"pex": {...}}``, ``{"signal":
{...}}``), and only to peers whose hello says ``"mesh": 1``:

- **pex** ``{"peers": [{"id": hex, "services": [...], "topics": [...], "key"?: base64,
  "seal"?: base64}]}``: the sender's neighbours that speak the mesh protocol, what each serves,
  the Ed25519 key each proved and the X25519 key it signed for signalling sealed to it
  (:class:`~p2prpc.wire.sealbox.SealKey`); the whole list each time (it replaces the previous
  one), at most :data:`MAX_LISTED` entries.
- **signal** ``{"type": "offer"|"answer"|"refuse", "from": hex, "to": hex, "offer_id": hex,
  "sdp"?: text, "hops": n, "extra"?: true}``: an offer or answer on its way from ``from`` to
  ``to`` through neighbours, or a refusal of an offer. ``sdp`` is what a tracker would carry
  (sealed in a secret swarm); ``hops`` is how many more relays may pass it on.

Every reader raises only :class:`MeshError` (a :class:`~p2prpc.errors.RemoteProtocolError`).
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from ..errors import RemoteProtocolError
from .sealbox import SealKey, SealKeyError

#: The most peers one pex lists (a node lists its mesh-speaking neighbours, at most this many).
MAX_LISTED = 64
#: The most services, and the most topics, listed for one peer; and the longest name.
MAX_NAMES = 64
MAX_NAME_LENGTH = 256
#: The most relays a signal may still pass; what a sender may ask for.
MAX_HOPS = 4
#: The longest ``sdp`` text carried (an SDP with every candidate, sealed: a few KiB).
MAX_SDP = 32 * 1024


class MeshError(RemoteProtocolError):
    """A pex or signal object is malformed."""


@dataclass(frozen=True, slots=True)
class ListedPeer:
    """One peer as a pex lists it: its id, what it serves, its proven public key (if any), and
    its seal key record as read (well formed; whether it verifies is the reader's to check)."""

    peer_id: str
    services: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    public_key: bytes | None = None
    seal_key: SealKey | None = None


class SignalType(enum.Enum):
    OFFER = "offer"
    ANSWER = "answer"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Signal:
    """An offer, answer or refusal relayed between two peers (ids as 40 hex characters)."""

    type: SignalType
    from_id: str
    to_id: str
    offer_id: str
    sdp: str | None = None
    hops: int = 0
    #: An offer for a connection past the offerer's degree bound, to reach a service.
    extra: bool = False
    #: An offer from a peer below its minimum degree: a recipient at its bound may make room.
    short: bool = False


def encode_pex(peers: Iterable[ListedPeer]) -> dict[str, Any]:
    """The pex object listing ``peers`` (the first :data:`MAX_LISTED`)."""
    listed: list[dict[str, Any]] = []
    for peer in peers:
        if len(listed) == MAX_LISTED:
            break
        entry: dict[str, Any] = {
            "id": peer.peer_id,
            "services": sorted(peer.services)[:MAX_NAMES],
            "topics": sorted(peer.topics)[:MAX_NAMES],
        }
        if peer.public_key is not None:
            entry["key"] = base64.b64encode(peer.public_key).decode("ascii")
        if peer.seal_key is not None:
            entry["seal"] = peer.seal_key.to_text()
        listed.append(entry)
    return {"peers": listed}


def decode_pex(body: Mapping[str, Any] | None) -> tuple[ListedPeer, ...]:
    """The peers a pex object lists; :class:`MeshError` for anything over the caps or malformed."""
    if not isinstance(body, Mapping):
        raise MeshError("pex must be an object")
    entries = body.get("peers")
    if not isinstance(entries, list) or len(entries) > MAX_LISTED:
        raise MeshError(f"pex lists at most {MAX_LISTED} peers")
    seen: set[str] = set()
    peers = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise MeshError("a listed peer is an object")
        peer_id = entry.get("id")
        if not is_peer_id(peer_id) or peer_id in seen:
            raise MeshError("a listed peer has a peer id (40 hex characters), once")
        seen.add(peer_id)
        peers.append(
            ListedPeer(
                peer_id,
                _names(entry.get("services", []), "services"),
                _names(entry.get("topics", []), "topics"),
                _key(entry.get("key")),
                _seal_key(entry.get("seal")),
            )
        )
    return tuple(peers)


def encode_signal(signal: Signal) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": signal.type.value,
        "from": signal.from_id,
        "to": signal.to_id,
        "offer_id": signal.offer_id,
        "hops": signal.hops,
    }
    if signal.sdp is not None:
        out["sdp"] = signal.sdp
    if signal.extra:
        out["extra"] = True
    if signal.short:
        out["short"] = True
    return out


def decode_signal(body: Mapping[str, Any] | None) -> Signal:
    """A signal object; :class:`MeshError` for anything malformed or over the caps."""
    if not isinstance(body, Mapping):
        raise MeshError("signal must be an object")
    try:
        kind = SignalType(body.get("type"))
    except ValueError:
        raise MeshError("signal type is offer, answer or refuse") from None
    from_id, to_id, offer_id = body.get("from"), body.get("to"), body.get("offer_id")
    if not (is_peer_id(from_id) and is_peer_id(to_id) and is_peer_id(offer_id)):
        raise MeshError("from, to and offer_id are 40 hex characters")
    hops = body.get("hops")
    if not isinstance(hops, int) or isinstance(hops, bool) or not 0 <= hops <= MAX_HOPS:
        raise MeshError(f"hops is an integer from 0 to {MAX_HOPS}")
    sdp = body.get("sdp")
    if kind is SignalType.REFUSE:
        sdp = None
    elif not isinstance(sdp, str) or not 0 < len(sdp) <= MAX_SDP:
        raise MeshError(f"an offer or answer carries its sdp (at most {MAX_SDP} characters)")
    return Signal(
        kind,
        from_id,
        to_id,
        offer_id,
        sdp,
        hops,
        body.get("extra") is True,
        kind is SignalType.OFFER and body.get("short") is True,
    )


def is_peer_id(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value)
    )


def _names(value: object, what: str) -> frozenset[str]:
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        raise MeshError(f"{what} lists at most {MAX_NAMES} names")
    if not all(isinstance(v, str) and 0 < len(v) <= MAX_NAME_LENGTH for v in value):
        raise MeshError(f"{what} are names of 1 to {MAX_NAME_LENGTH} characters")
    return frozenset(value)


def _key(value: object) -> bytes | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError("not a string")
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MeshError("key is base64 of a 32-byte Ed25519 public key") from None
    if len(key) != 32:
        raise MeshError("key is base64 of a 32-byte Ed25519 public key")
    return key


def _seal_key(value: object) -> SealKey | None:
    if value is None:
        return None
    try:
        return SealKey.from_text(value)
    except SealKeyError:
        raise MeshError("seal is base64 of a 128-byte seal key record") from None


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved.

    Holds two numbers per key; :meth:`discard` forgets a key (a peer that left). Times are
    seconds on any monotonic clock, given by the caller.
    """

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        """Take a token for ``key`` if one is there."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        return allowed

    def discard(self, key: Hashable) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
