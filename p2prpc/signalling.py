"""What offers and answers look like on the signalling path, in one place.

A signalling path (a tracker connection, or neighbours relaying through the mesh) carries offers
and answers between peers. In an open swarm they travel as plain SDP, as P2PT sends them. In a
secret swarm they are sealed (:func:`p2prpc.wire.secret.seal`): the path can neither read nor
alter them, and whatever does not open is dropped and counted, never answered.
"""

from __future__ import annotations

from .wire.secret import SwarmKeys, open_sealed, seal


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
