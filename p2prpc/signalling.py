"""What offers and answers look like on the signalling path, in one place.

A signalling path (a tracker connection, or neighbours relaying through the mesh) carries offers
and answers between peers. In an open swarm they travel as plain SDP, as P2PT sends them. In a
secret swarm they are sealed (:func:`p2prpc.wire.secret.seal`): the path can neither read nor
alter them, and whatever does not open is dropped and counted, never answered. Relayed through
the mesh between peers with identities, they are sealed to the recipient's own key instead
(:mod:`p2prpc.wire.sealbox`), so that no other member, the relays included, can open them either.
"""

from __future__ import annotations

from collections.abc import Collection

from .wire.sealbox import SealKey, SealKeyPair, is_sealed_to, open_from, seal_to
from .wire.secret import SealError, SwarmKeys, open_sealed, seal


class Signalling:
    """Seals and opens the SDP of one swarm (``keys`` ``None``: an open swarm, SDP as it is).

    ``refused`` counts offers and answers that did not open.
    """

    def __init__(self, info_hash: bytes, peer_id: bytes, keys: SwarmKeys | None) -> None:
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.keys = keys
        self.refused = 0

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
        )

    def open_offer(
        self, from_id: bytes, offer_id: bytes, text: str, *, addressed: bool = False
    ) -> str:
        """The SDP of an offer from ``from_id``; :class:`~p2prpc.wire.secret.SealError` (counted)
        when it does not open. ``addressed``: it was sealed for us (a relayed offer)."""
        if self.keys is None:
            return text
        try:
            return open_sealed(
                self.keys.seal_key,
                "offer",
                text,
                info_hash=self.info_hash,
                from_id=from_id,
                to_id=self.peer_id if addressed else None,
                offer_id=offer_id,
            )
        except Exception:
            self.refused += 1
            raise

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
        )

    def open_answer(self, from_id: bytes, offer_id: bytes, text: str) -> str:
        """The SDP of ``from_id``'s answer to our offer ``offer_id`` (as :meth:`open_offer`)."""
        if self.keys is None:
            return text
        try:
            return open_sealed(
                self.keys.seal_key,
                "answer",
                text,
                info_hash=self.info_hash,
                from_id=from_id,
                to_id=self.peer_id,
                offer_id=offer_id,
            )
        except Exception:
            self.refused += 1
            raise

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
        )

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
            sdp, sender = open_from(
                self.own_key,
                self.keys.seal_key,
                "offer",
                text,
                info_hash=self.info_hash,
                from_id=from_id,
                to_id=self.peer_id,
                offer_id=offer_id,
            )
            if senders is not None and sender.identity not in senders:
                raise SealError("an offer sealed by another identity than its sender's")
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
            if self.own_key is None or self.keys is None:
                raise SealError("an answer sealed to a key we do not have")
            sdp, sender = open_from(
                self.own_key,
                self.keys.seal_key,
                "answer",
                text,
                info_hash=self.info_hash,
                from_id=from_id,
                to_id=self.peer_id,
                offer_id=offer_id,
            )
            if sender != sealed_to:
                raise SealError("an answer from another key than the one our offer was sealed to")
        except Exception:
            self.refused += 1
            raise
        return sdp
