"""The handshake: what a peer proves on every new connection, and what it requires of the other
end (docs/PROTOCOL.md section 6.3), and the rule that makes a peer the set of its connections
that proved one key.

The frames themselves are pure layouts in :mod:`p2prpc.wire.secret`; this module binds them to a
connection (its two DTLS fingerprints and both peer ids) and to this peer's settings.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..wire.secret import AuthError, make_auth, verify_auth
from .connection import Connection

if TYPE_CHECKING:
    from ..identity import Identity


class Handshake:
    """This peer's side of the handshake.

    ``proof_key``: the swarm's HMAC key (secret mode), ``identity`` and ``id_nonce``: the key
    this peer proves and the nonce its peer id is bound with, ``allowed_peers``: the only keys
    accepted (``None``: any, or none).
    """

    def __init__(
        self,
        *,
        info_hash: bytes,
        peer_id: bytes,
        proof_key: bytes | None,
        identity: Identity | None,
        id_nonce: bytes | None,
        allowed_peers: Collection[bytes] | None,
    ) -> None:
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.proof_key = proof_key
        self.identity = identity
        self.id_nonce = id_nonce
        self.allowed_peers = allowed_peers

    @property
    def speaks(self) -> bool:
        """Whether this peer sends a handshake frame at all (without a secret, an identity or
        allowed peers the wire is exactly P2PT's)."""
        return (
            self.proof_key is not None
            or self.identity is not None
            or self.allowed_peers is not None
        )

    @property
    def gated(self) -> bool:
        """Whether every connection must prove itself before it counts (``peerconnect``): a
        secret to prove, or a list of allowed keys."""
        return self.proof_key is not None or self.allowed_peers is not None

    def _transcript(self, connection: Connection) -> dict[str, Any]:
        """What a frame on ``connection`` is bound to, both ways (``make_auth`` and
        ``verify_auth``'s shared arguments)."""
        assert connection.peer_id is not None
        local, remote = connection.fingerprints()
        return {
            "info_hash": self.info_hash,
            "local_id": self.peer_id,
            "remote_id": bytes.fromhex(connection.peer_id),
            "local_fingerprint": local,
            "remote_fingerprint": remote,
            "proof_key": self.proof_key,
        }

    def frame(self, connection: Connection) -> bytes:
        """Our handshake frame for ``connection`` (:class:`~p2prpc.errors.PeerClosed` before
        its session is set)."""
        identity = self.identity
        return make_auth(
            **self._transcript(connection),
            public_key=identity.public_key if identity is not None else None,
            id_nonce=self.id_nonce,
            sign=identity.sign if identity is not None else None,
        )

    def verify(self, connection: Connection, data: bytes) -> bytes | None:
        """The key the remote's frame proves on ``connection`` (``None``: none);
        :class:`AuthError` if it proves not what this peer requires."""
        key = verify_auth(data, **self._transcript(connection))
        if self.allowed_peers is not None and key not in self.allowed_peers:
            raise AuthError(
                "the peer proves no identity"
                if key is None
                else "the peer's identity is not allowed"
            )
        return key


class Admission(enum.Enum):
    """What becomes of a connection that proved ``key`` under a peer id (see :func:`admit`)."""

    JOIN = "join"  # one more connection of the peer (or its first)
    TAKE_OVER = "take over"  # the peer's connections proved nothing: close them, start anew
    REFUSE = "refuse"  # it proves not what the peer's connections proved


def admit(peer_key: bytes | None, connected: bool, key: bytes | None) -> tuple[Admission, str]:
    """Whether a connection that proved ``key`` (``None``: nothing) joins a peer id whose
    connections (``connected``: it has some) proved ``peer_key``, and why not.

    A peer is the set of its connections, all of which proved the same key or none. A connection
    proving no key, or another key, where one was proven is refused; one proving a key where
    only connections proving none hold the id takes the id over: the key is bound to the id
    (:func:`~p2prpc.wire.secret.bound_peer_id`), so those were not that peer.
    """
    if not connected or key == peer_key:
        return Admission.JOIN, ""
    if key is not None and peer_key is None:
        return Admission.TAKE_OVER, ""
    if key is None:
        return Admission.REFUSE, "the peer proves no key where its other connections proved one"
    return Admission.REFUSE, "the peer proves another key than on its other connections"
