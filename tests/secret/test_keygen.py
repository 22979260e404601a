"""``p2prpc keygen FILE``: a private key only its owner can read, and its public key printed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from p2prpc import Identity
from p2prpc.cli import main


def test_keygen_writes_a_private_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.key"
    assert main(["keygen", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    printed = capsys.readouterr().out.strip()
    assert bytes.fromhex(printed) == Identity.load(path).public_key
    assert main(["keygen", str(path)]) == 1  # never overwrites a key
    assert bytes.fromhex(printed) == Identity.load(path).public_key
