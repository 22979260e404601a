"""What offers and answers look like on the signalling path, in one place.

A signalling path (a tracker connection, or neighbours relaying through the mesh) carries offers
and answers between peers. In an open swarm they travel as plain SDP, as P2PT sends them. In a
secret swarm they are sealed (:func:`p2prpc.wire.secret.seal`): the path can neither read nor
alter them, and whatever does not open is dropped and counted, never answered. Relayed through
the mesh between peers with identities, they are sealed to the recipient's own key instead
(:mod:`p2prpc.wire.sealbox`), so that no other member, the relays included, can open them either.

What a third party records cannot be played back to a member: a sealed offer or answer carries
the time it was sealed and opens only within ``max_age`` of it, and within that window each
(sender, offer id, kind) opens once; a copy is refused
(:class:`~p2prpc.wire.secret.ReplayedSeal`) and counted like any other that does not open.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from ..wire.sealbox import SealKey, SealKeyPair, is_sealed_to, open_from, seal_to
from ..wire.secret import (
    SEAL_CLOCK_SKEW,
    SEAL_MAX_AGE,
    ReplayedSeal,
    SealError,
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
        return self._seal("offer", sdp, to_id, offer_id)

    def open_offer(
        self, from_id: bytes, offer_id: bytes, text: str, *, addressed: bool = False
    ) -> str:
        """The SDP of an offer from ``from_id``; :class:`~p2prpc.wire.secret.SealError` (counted)
        when it does not open, :class:`~p2prpc.wire.secret.StaleSeal` out of its time window,
        :class:`~p2prpc.wire.secret.ReplayedSeal` when it opened already (both SealErrors).
        ``addressed``: it was sealed for us (a relayed offer)."""
        return self._open("offer", from_id, offer_id, text, self.peer_id if addressed else None)

    def seal_answer(self, to_id: bytes, offer_id: bytes, sdp: str) -> str:
        """Our answer to ``to_id``'s offer ``offer_id``, sealed for it."""
        return self._seal("answer", sdp, to_id, offer_id)

    def open_answer(self, from_id: bytes, offer_id: bytes, text: str) -> str:
        """The SDP of ``from_id``'s answer to our offer ``offer_id`` (as :meth:`open_offer`)."""
        return self._open("answer", from_id, offer_id, text, self.peer_id)

    def _seal(self, kind: str, sdp: str, to_id: bytes | None, offer_id: bytes) -> str:
        if self.keys is None:
            return sdp
        return seal(
            self.keys.seal_key,
            kind,
            sdp,
            info_hash=self.info_hash,
            from_id=self.peer_id,
            to_id=to_id,
            offer_id=offer_id,
            created=self.clock(),
        )

    def _open(
        self, kind: str, from_id: bytes, offer_id: bytes, text: str, to_id: bytes | None
    ) -> str:
        """Open a swarm seal once and in its time; a refusal is counted."""
        if self.keys is None:
            return text
        now = self.clock()
        try:
            key = self._unopened(kind, from_id, offer_id, now)
            sdp = open_sealed(
                self.keys.seal_key,
                kind,
                text,
                info_hash=self.info_hash,
                from_id=from_id,
                to_id=to_id,
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

    # -- sealed to one peer's key (relayed signalling between peers with identities) ------------

    #: Our X25519 key and its signed record, when this peer has an identity in a secret swarm
    #: (set by :class:`~p2prpc.p2pt.P2PT`); ``None``: only the swarm seal.
    own_key: SealKeyPair | None = None

    def seal_offer_to(self, offer_id: bytes, sdp: str, to_id: bytes, recipient: SealKey) -> str:
        """An offer for ``to_id`` sealed to its X25519 key (``recipient``, verified for ``to_id``
        by the caller). :class:`~p2prpc.wire.secret.SealError` when that key is unusable."""
        return self._seal_to(recipient, "offer", sdp, to_id, offer_id)

    def seal_answer_to(self, to_id: bytes, offer_id: bytes, sdp: str, recipient: SealKey) -> str:
        """Our answer to ``to_id``'s offer, sealed to the key its offer was sealed with."""
        return self._seal_to(recipient, "answer", sdp, to_id, offer_id)

    def _seal_to(
        self, recipient: SealKey, kind: str, sdp: str, to_id: bytes, offer_id: bytes
    ) -> str:
        if self.keys is None or self.own_key is None:
            raise ValueError("sealing to a peer's key needs a secret and an identity")
        return seal_to(
            recipient.public,
            self.own_key,
            self.keys.seal_key,
            kind,
            sdp,
            info_hash=self.info_hash,
            from_id=self.peer_id,
            to_id=to_id,
            offer_id=offer_id,
            created=self.clock(),
        )

    def _open_from(
        self,
        kind: str,
        from_id: bytes,
        offer_id: bytes,
        text: str,
        accept: Callable[[SealKey], str | None],
    ) -> tuple[str, SealKey]:
        """Open a box sealed to our key, once and in its time, as :meth:`open_offer` does a
        swarm seal (the caller counts a refusal). ``accept(sender)`` says why the sender's record
        is refused (``None``: it is not); only what is accepted counts as opened, so a forgery
        never makes the genuine one look like a copy."""
        if self.own_key is None or self.keys is None:
            raise SealError(f"an {kind} sealed to a key we do not have")
        now = self.clock()
        key = self._unopened(kind, from_id, offer_id, now)
        opened = open_from(
            self.own_key,
            self.keys.seal_key,
            kind,
            text,
            info_hash=self.info_hash,
            from_id=from_id,
            to_id=self.peer_id,
            offer_id=offer_id,
            now=now,
            max_age=self.max_age,
            max_skew=self.max_skew,
        )
        refusal = accept(opened[1])
        if refusal is not None:
            raise SealError(refusal)
        self._remember(key, now)
        return opened

    def open_relayed_offer(
        self, from_id: bytes, offer_id: bytes, text: str, *, senders: Collection[bytes] | None
    ) -> tuple[str, SealKey | None]:
        """The SDP of an offer relayed to us, and the sender's record when it was sealed to our
        key (``None``: sealed with the swarm key, as through a tracker).

        ``senders``: the Ed25519 keys the sender may have (the one the mesh lists for it, or
        ``allowed_peers``), ``None`` when we know of none. With our own key and ``senders``, an
        offer sealed with the swarm key is refused (a relay could have opened or made it), and
        one sealed to us must come from one of ``senders``. What does not open is counted in
        :attr:`refused` and raises :class:`~p2prpc.wire.secret.SealError`.
        """
        if self.own_key is None or self.keys is None or not is_sealed_to(text):
            if self.own_key is not None and senders is not None:
                self.refused += 1
                raise SealError("an offer from a peer with an identity not sealed to our key")
            return self.open_offer(from_id, offer_id, text, addressed=True), None
        try:
            sdp, sender = self._open_from(
                "offer",
                from_id,
                offer_id,
                text,
                lambda sender: (
                    None
                    if senders is None or sender.identity in senders
                    else "an offer sealed by another identity than its sender's"
                ),
            )
        except Exception:
            self.refused += 1
            raise
        return sdp, sender

    def open_relayed_answer(
        self, from_id: bytes, offer_id: bytes, text: str, *, sealed_to: SealKey | None
    ) -> str:
        """The SDP of ``from_id``'s answer to our relayed offer ``offer_id``.

        ``sealed_to``: the record our offer was sealed to; the answer must then be sealed to our
        key by that very record's holder. ``None``: the offer was sealed with the swarm key, and
        so must the answer be (:meth:`open_answer`). Counted and raised as
        :meth:`open_relayed_offer`.
        """
        if sealed_to is None:
            return self.open_answer(from_id, offer_id, text)
        try:
            sdp, _ = self._open_from(
                "answer",
                from_id,
                offer_id,
                text,
                lambda sender: (
                    None
                    if sender == sealed_to
                    else "an answer from another key than the one our offer was sealed to"
                ),
            )
        except Exception:
            self.refused += 1
            raise
        return sdp
