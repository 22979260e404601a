"""A peer's identity: an Ed25519 key pair, kept in a file only its owner can read."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["Identity"]


class Identity:
    """An Ed25519 key pair: ``Identity.generate()``, ``Identity.load(path)``, ``save(path)``.

    ``public_key`` is the 32 raw bytes other peers know this one by (``allowed_peers``,
    ``context.peer_identities()``, ``topic.subscribe(publishers=...)``). The private key is
    saved as unencrypted PKCS#8 PEM, in a file of mode 0600: guard it as an SSH key.
    """

    __slots__ = ("_private", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Read a key written by :meth:`save` (or ``p2prpc keygen``, or ``openssl genpkey -algorithm
        ed25519``)."""
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} holds no Ed25519 private key")
        return cls(key)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the private key to ``path``, readable and writable by the owner only (0600).

        The file is created 0600 (an existing one is set to 0600 before it is written).
        """
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
        finally:
            os.close(fd)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"<Identity {self.public_key.hex()[:16]}…>"
