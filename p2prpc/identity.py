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
_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
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
        replaced (its directory entry; other hard links to it keep the old content). In a
        directory others can write to, someone could swap the temporary file for a link of
        theirs before it takes its name: the file written is linked by its open descriptor where
        the system allows (Linux), and whatever ends up at ``path`` is checked to be the file
        written; if it is not, it is removed and :class:`~p2prpc.errors.KeyFileExists` says so
        (with ``overwrite`` the old key is then gone too). Any other ``OSError`` (no such
        directory, no permission) propagates, and nothing is left behind.
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
    :meth:`Identity.save` describes.

    The file is first written in a private directory (mode 0700, ours) made beside ``path``,
    and both directories are held open: the file is given its name relative to those open
    directories, so nobody who can write to ``path``'s directory can swap what is linked, even
    by renaming or replacing the private directory meanwhile."""
    target = os.fspath(path)
    _refuse_existing(target, overwrite)
    directory, name = os.path.split(target)
    parent = os.open(directory or ".", os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        private, entry = _private_directory(parent, name)
        try:
            fd = _write_new("key", data, dir_fd=private)
            try:
                written = os.fstat(fd)
            finally:
                os.close(fd)
            if overwrite:
                _refuse_existing(target, overwrite)
                # rename() replaces the directory entry itself: a link planted since the check
                # above is replaced, not followed.
                os.replace("key", name, src_dir_fd=private, dst_dir_fd=parent)
            else:
                try:  # fails when anything is at target, a link included
                    os.link("key", name, src_dir_fd=private, dst_dir_fd=parent)
                except FileExistsError:
                    raise KeyFileExists(target, _EXISTS, replaceable=True) from None
                except OSError as e:
                    if e.errno not in _NO_HARD_LINKS:
                        raise
                    os.close(_write_new(target, data))  # no hard links here: not atomic
                    written = os.lstat(target)
            _check_written(target, written)
            _sync(parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink("key", dir_fd=private)
            os.close(private)
            with contextlib.suppress(OSError):  # by name: if it is not ours it is not empty
                os.rmdir(entry, dir_fd=parent)
    finally:
        os.close(parent)


def _private_directory(parent: int, name: str) -> tuple[int, str]:
    """A new directory beside ``name`` in ``parent`` (mode 0700), opened: its descriptor and
    its name.
    ``KeyFileExists`` when what was opened is not the directory made (someone swapped it)."""
    for _ in range(8):
        entry = f".{name}.{secrets.token_hex(8)}"
        try:
            os.mkdir(entry, 0o700, dir_fd=parent)
        except FileExistsError:
            continue
        break
    else:  # eight random names taken: not chance
        raise KeyFileExists(name, "cannot make a private directory beside it", replaceable=False)
    try:
        private = os.open(entry, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=parent)
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(entry, dir_fd=parent)
        raise
    # Only the open descriptor is used from now on: a directory someone renames ours to, or puts
    # at its name, is never written to.
    found = os.fstat(private)
    if found.st_uid != os.geteuid() or stat.S_IMODE(found.st_mode) & 0o077:
        os.close(private)
        raise KeyFileExists(name, "its private directory was swapped by someone", replaceable=False)
    return private, entry


def _check_written(target: str, written: os.stat_result) -> None:
    """Make sure ``target`` is the file written (a regular file, the same inode): in a directory
    others can write to, its temporary name could have been swapped for a link of theirs before
    it was put at ``target``. What was put there instead is removed, so that no key of theirs is
    ever loaded from ``target``."""
    found = os.lstat(target)
    if stat.S_ISREG(found.st_mode) and (found.st_dev, found.st_ino) == (
        written.st_dev,
        written.st_ino,
    ):
        return
    with contextlib.suppress(OSError):
        os.unlink(target)
    raise KeyFileExists(
        target,
        "was swapped by someone else while the key was written (keep keys in a directory only "
        "you can write to)",
        replaceable=False,
    )


def _write_new(path: str, data: bytes, *, dir_fd: int | None = None) -> int:
    """Create ``path`` (relative to ``dir_fd`` if given; it must not exist, and is not followed
    if it is a link), mode 0600, write ``data`` to disk, and return the open file (the caller
    closes it)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(path, flags, 0o600, dir_fd=dir_fd)
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
        os.unlink(path, dir_fd=dir_fd)
        raise
    return fd


def _sync(directory: int) -> None:
    """Make the new directory entry durable, where directories can be synced (best effort)."""
    with contextlib.suppress(OSError):
        os.fsync(directory)


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
