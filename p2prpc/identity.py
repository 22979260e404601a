"""A peer's identity: an Ed25519 key pair, kept in a file only its owner can read."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import KeyFileExists

__all__ = ["Identity"]

_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_EXISTS: Final = "exists; not overwritten"
#: What link() fails with where a file system has no hard links.
_NO_HARD_LINKS: Final = frozenset(
    code for code in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS) if code
)


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

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the private key to ``path`` (unencrypted PKCS#8 PEM), mode 0600, atomically.

        The key is written to a new file in the same directory (created exclusively, mode 0600,
        never through a symbolic link), flushed to disk, and only then put at ``path`` (a hard
        link, or a rename with ``overwrite``), so ``path`` holds either the whole key or what it
        held before, never part of one. (On a file system without hard links a new ``path`` is
        created exclusively and written in place.)
        Raises :class:`~p2prpc.errors.KeyFileExists`, writing nothing, when ``path`` exists and
        ``overwrite`` is false, and when ``path`` is a symbolic link (dangling or not) or
        anything else that is not a regular file, whatever ``overwrite`` says: the key is
        never written where a link points. With ``overwrite`` an existing regular file is
        replaced (its directory entry; other hard links to it keep the old content). Any other
        ``OSError`` (no such directory, no permission) propagates, and nothing is left behind.
        """
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(path, pem, overwrite=overwrite)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"<Identity {self.public_key.hex()[:16]}…>"


def _write_private(path: str | os.PathLike[str], data: bytes, *, overwrite: bool) -> None:
    """Put ``data`` at ``path`` in a file of mode 0600, never through a symbolic link, as
    :meth:`Identity.save` describes."""
    target = os.fspath(path)
    _refuse_existing(target, overwrite)
    directory, name = os.path.split(target)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    _write_new(temporary, data)  # on failure it leaves nothing, and never touches what it found
    try:
        if overwrite:
            _refuse_existing(target, overwrite)
            # rename() replaces the directory entry itself: a link planted since the check above
            # is replaced, not followed.
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)  # fails when anything is at target, a link included
            except FileExistsError:
                raise KeyFileExists(target, _EXISTS, replaceable=True) from None
            except OSError as e:
                if e.errno not in _NO_HARD_LINKS:
                    raise
                _write_new(target, data)  # a file system without hard links: not atomic
        _sync_directory(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _write_new(path: str, data: bytes) -> None:
    """Create ``path`` (it must not exist, and is not followed if it is a link), mode 0600,
    and write ``data`` to disk."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    except FileExistsError:
        raise KeyFileExists(path, _EXISTS, replaceable=False) from None
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def _sync_directory(directory: str) -> None:
    """Make the new directory entry durable, where directories can be opened (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory or ".", os.O_RDONLY | _CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _refuse_existing(target: str, overwrite: bool) -> None:
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        reason = "is a symbolic link; a key is never written through one (remove the link)"
        raise KeyFileExists(target, reason, replaceable=False)
    if not stat.S_ISREG(mode):
        raise KeyFileExists(target, "exists and is not a regular file", replaceable=False)
    if not overwrite:
        raise KeyFileExists(target, _EXISTS, replaceable=True)
