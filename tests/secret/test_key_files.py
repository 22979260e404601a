"""Private key files: ``p2prpc keygen FILE`` and ``Identity.save``. A key is written only where
it was asked for, never through a symbolic link planted there, never over a file unless asked,
mode 0600, and whole or not at all."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2prpc import Identity, KeyFileExists
from p2prpc.cli import main

VICTIM = b"what the link points at, which must stay as it is\n"


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A file someone wants overwritten with a private key, readable by others (0644)."""
    path = tmp_path / "elsewhere" / "authorized_keys"
    path.parent.mkdir()
    path.write_bytes(VICTIM)
    path.chmod(0o644)
    yield path
    assert path.read_bytes() == VICTIM
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_keygen_writes_a_private_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.key"
    assert main(["keygen", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    printed = capsys.readouterr().out.strip()
    assert bytes.fromhex(printed) == Identity.load(path).public_key
    assert entries(tmp_path) == {"node.key"}  # no temporary file left


def test_keygen_public_prints_an_existing_files_key_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.key"
    assert main(["keygen", str(path)]) == 0
    made = capsys.readouterr().out.strip()
    before = path.read_bytes()
    assert main(["keygen", "--public", str(path)]) == 0
    assert capsys.readouterr().out.strip() == made
    assert path.read_bytes() == before and entries(tmp_path) == {"node.key"}
    (tmp_path / "junk.key").write_text("not a key")
    for missing in ("junk.key", "absent.key"):
        assert main(["keygen", "--public", str(tmp_path / missing)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and "cannot read a key" in err
    assert not (tmp_path / "absent.key").exists()


def test_keygen_refuses_an_existing_file_and_leaves_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.key"
    assert main(["keygen", str(path)]) == 0
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["keygen", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no public key printed for a key that was not written
    assert "exists; not overwritten (--force replaces it)" in err
    assert path.read_bytes() == before
    assert entries(tmp_path) == {"node.key"}


def test_keygen_force_replaces_a_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.key"
    path.write_text("an old key")
    path.chmod(0o644)
    assert main(["keygen", "--force", str(path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert bytes.fromhex(printed) == Identity.load(path).public_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert entries(tmp_path) == {"node.key"}


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_keygen_never_writes_through_a_planted_symbolic_link(
    tmp_path: Path, victim: Path, force: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "node.key"
    link.symlink_to(victim)
    assert main(["keygen", *force, str(link)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "is a symbolic link" in err and "--force" not in err
    assert link.is_symlink() and link.readlink() == victim
    assert entries(tmp_path) == {"node.key", "elsewhere"}


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_keygen_never_creates_the_target_of_a_dangling_link(
    tmp_path: Path, force: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A link to where the attacker wants to read the key from later (a file it can read once
    created, or a directory it owns)."""
    link, target = tmp_path / "node.key", tmp_path / "readable-by-the-attacker.pem"
    link.symlink_to(target)
    assert main(["keygen", *force, str(link)]) == 1
    assert "is a symbolic link" in capsys.readouterr().err
    assert not target.exists() and link.is_symlink()


@pytest.mark.parametrize("overwrite", [False, True])
def test_save_refuses_a_dangling_link_and_creates_nothing_where_it_points(
    tmp_path: Path, overwrite: bool
) -> None:
    link, target = tmp_path / "node.key", tmp_path / "planted-target"
    link.symlink_to(target)
    with pytest.raises(KeyFileExists, match="symbolic link") as caught:
        Identity.generate().save(link, overwrite=overwrite)
    assert caught.value.filename == str(link) and not caught.value.replaceable
    assert isinstance(caught.value, FileExistsError)
    assert not target.exists() and link.is_symlink()
    assert entries(tmp_path) == {"node.key"}


def test_save_refuses_a_directory_even_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "node.key").mkdir()
    with pytest.raises(KeyFileExists, match="not a regular file"):
        Identity.generate().save(tmp_path / "node.key", overwrite=True)
    assert (tmp_path / "node.key").is_dir()
    assert entries(tmp_path) == {"node.key"}


def test_save_refuses_an_existing_file_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first, second = Identity.generate(), Identity.generate()
    first.save(path)
    with pytest.raises(KeyFileExists, match="exists") as caught:
        second.save(path)
    assert caught.value.replaceable
    assert Identity.load(path).public_key == first.public_key
    second.save(path, overwrite=True)
    assert Identity.load(path).public_key == second.public_key


def test_a_key_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        Identity.generate().save(tmp_path / "node.key")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_write_leaves_no_partial_file_and_the_old_one_whole(
    tmp_path: Path, existing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fails after the key's bytes were handed to it (fsync): the path holds what it
    held before (nothing, or the old key), and no temporary file is left."""
    path = tmp_path / "node.key"
    old = Identity.generate()
    if existing:
        old.save(path)

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        Identity.generate().save(path, overwrite=existing)
    monkeypatch.undo()
    if existing:
        assert Identity.load(path).public_key == old.public_key
        assert entries(tmp_path) == {"node.key"}
    else:
        assert entries(tmp_path) == set()


def test_keygen_into_a_missing_directory_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", str(tmp_path / "nowhere" / "node.key")]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert entries(tmp_path) == set()


def _swap_temporary_for(directory: Path, planted: Path) -> None:
    """What someone who can write to ``directory`` does while a key is written: move the
    directory the key is written in aside and put one of theirs at its name, holding a link to a
    key of theirs under the key's name."""
    (private,) = (p for p in directory.glob(".node.key.*") if p.is_dir())
    private.rename(directory / "moved-aside")
    private.mkdir(mode=0o700)
    (private / "key").symlink_to(planted)


def test_a_swapped_temporary_file_never_ends_up_at_the_key_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reproduced by a hostile review: in a directory others can write to, swapping the
    temporary file for a link between writing and naming it left the attacker's key at the path
    while keygen printed another. The file written is linked by its descriptor, and what ends up
    at the path is checked."""
    theirs = tmp_path / "theirs.pem"
    Identity.generate().save(theirs)
    real_link = os.link

    def link_after_a_swap(src: Any, dst: Any, **kwargs: Any) -> None:
        _swap_temporary_for(tmp_path, theirs)
        real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", link_after_a_swap)
    path = tmp_path / "node.key"
    assert main(["keygen", str(path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Identity.load(path).public_key.hex() == printed  # the key written, not theirs


def test_a_swap_before_a_rename_changes_nothing_of_what_takes_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --force the new key takes the path by rename: a swap just before it makes no
    difference either (with the same review's --force race, 14 of 20 runs left theirs)."""
    path = tmp_path / "node.key"
    assert main(["keygen", str(path)]) == 0
    theirs = tmp_path / "theirs.pem"
    Identity.generate().save(theirs)
    real_replace = os.replace

    def replace_after_a_swap(src: Any, dst: Any, **kwargs: Any) -> None:
        _swap_temporary_for(tmp_path, theirs)
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace_after_a_swap)
    capsys.readouterr()
    assert main(["keygen", "--force", str(path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert not path.is_symlink() and Identity.load(path).public_key.hex() == printed
