"""What offers and answers look like on the signalling path, in one place.

A signalling path (a tracker connection, or neighbours relaying through the mesh) carries offers
and answers between peers. In an open swarm they travel as plain SDP, as P2PT sends them. In a
secret swarm they are sealed (:func:`p2prpc.wire.secret.seal`): the path can neither read nor
alter them, and whatever does not open is dropped and counted, never answered.

What a third party records cannot be played back to a member: a sealed offer or answer carries
the time it was sealed and opens only within ``max_age`` of it, and within that window each
(sender, offer id, kind) opens once; a copy is refused
(:class:`~p2prpc.wire.secret.ReplayedSeal`) and counted like any other that does not open.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .wire.secret import (
    SEAL_CLOCK_SKEW,
    SEAL_MAX_AGE,
    ReplayedSeal,
    SwarmKeys,
    open_sealed,
    seal,
)

#: The most (sender, offer id, kind) a :class:`Signalling` remembers as opened (about 135 bytes
#: each: 2.1 MiB when full); see :class:`Signalling`.
MAX_OPENED = 16384


class Signalling:
    """Seals and opens the SDP of one swarm (``keys`` ``None``: an open swarm, SDP as it is).

    ``refused`` counts offers and answers that did not open: forged, altered, sealed with another
    secret, sealed more than ``max_age`` seconds ago or more than ``max_skew`` seconds ahead of
    ``clock``, or opened already. ``clock`` gives seconds since the Unix epoch: the time sealed
    into what this seals, and the one what it opens is checked against.

    Replays: each (sender, offer id, kind) opened is remembered until a copy of it could no longer
    open (``max_age + max_skew`` seconds; 110 s by default), at most ``max_opened`` of them; past
    that the oldest is forgotten. Only what opens is remembered, and only members of the swarm
    can seal, so only genuine traffic fills it.
    """

    def __init__(
        self,
        info_hash: bytes,
        peer_id: bytes,
        keys: SwarmKeys | None,
        *,
        max_age: float = SEAL_MAX_AGE,
        max_skew: float = SEAL_CLOCK_SKEW,
        max_opened: int = MAX_OPENED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.keys = keys
        self.refused = 0
        if max_age <= 0 or max_skew < 0 or max_opened < 1:
            raise ValueError("max_age must be positive, max_skew not negative, max_opened >= 1")
        self.max_age = max_age
        self.max_skew = max_skew
        self.max_opened = max_opened
        self.clock = clock
        # kind byte ‖ sender ‖ offer id → when a copy can no longer open (clock time), oldest first
        self._opened: dict[bytes, float] = {}

    @property
    def sealed(self) -> bool:
        return self.keys is not None

    def seal_offer(self, offer_id: bytes, sdp: str, to_id: bytes | None = None) -> str:
        """The text to carry for an offer: sealed for ``to_id`` when the path knows its recipient
        (relayed through the mesh), for any member when it does not (a tracker picks)."""
        if self.keys is None:
            return sdp
        return seal(
            self.keys.seal_key,
            "offer",
            sdp,
            info_hash=self.info_hash,
            from_id=self.peer_id,
            to_id=to_id,
            offer_id=offer_id,
            created=self.clock(),
        )

    def open_offer(
        self, from_id: bytes, offer_id: bytes, text: str, *, addressed: bool = False
    ) -> str:
        """The SDP of an offer from ``from_id``; :class:`~p2prpc.wire.secret.SealError` (counted)
        when it does not open, :class:`~p2prpc.wire.secret.StaleSeal` out of its time window,
        :class:`~p2prpc.wire.secret.ReplayedSeal` when it opened already (both SealErrors).
        ``addressed``: it was sealed for us (a relayed offer)."""
        if self.keys is None:
            return text
        now = self.clock()
        try:
            key = self._unopened("offer", from_id, offer_id, now)
            sdp = open_sealed(
                self.keys.seal_key,
                "offer",
                text,
                info_hash=self.info_hash,
                from_id=from_id,
                to_id=self.peer_id if addressed else None,
                offer_id=offer_id,
                now=now,
                max_age=self.max_age,
                max_skew=self.max_skew,
            )
        except Exception:
            self.refused += 1
            raise
        self._remember(key, now)
        return sdp

    def seal_answer(self, to_id: bytes, offer_id: bytes, sdp: str) -> str:
        if self.keys is None:
            return sdp
        return seal(
            self.keys.seal_key,
            "answer",
            sdp,
            info_hash=self.info_hash,
            from_id=self.peer_id,
            to_id=to_id,
            offer_id=offer_id,
            created=self.clock(),
        )

    def open_answer(self, from_id: bytes, offer_id: bytes, text: str) -> str:
        """The SDP of ``from_id``'s answer to our offer ``offer_id`` (as :meth:`open_offer`)."""
        if self.keys is None:
            return text
        now = self.clock()
        try:
            key = self._unopened("answer", from_id, offer_id, now)
            sdp = open_sealed(
                self.keys.seal_key,
                "answer",
                text,
                info_hash=self.info_hash,
                from_id=from_id,
                to_id=self.peer_id,
                offer_id=offer_id,
                now=now,
                max_age=self.max_age,
                max_skew=self.max_skew,
            )
        except Exception:
            self.refused += 1
            raise
        self._remember(key, now)
        return sdp

    @property
    def opened(self) -> int:
        """How many openings are remembered now (to refuse their copies)."""
        return len(self._opened)

    def _unopened(self, kind: str, from_id: bytes, offer_id: bytes, now: float) -> bytes:
        """The replay key of an offer or answer about to be opened; :class:`ReplayedSeal` if it
        opened already. Forgets what can no longer open first."""
        opened = self._opened
        while opened:
            key, until = next(iter(opened.items()))
            if until > now:
                break
            del opened[key]
        key = (b"o" if kind == "offer" else b"a") + from_id + offer_id
        if key in opened:
            raise ReplayedSeal(f"sealed {kind} {offer_id.hex()[:8]} opened already: a copy")
        return key

    def _remember(self, key: bytes, now: float) -> None:
        if len(self._opened) >= self.max_opened:
            del self._opened[next(iter(self._opened))]
        self._opened[key] = now + self.max_age + self.max_skew
