"""A swarm secret someone could guess is refused where it is configured: ``P2PT(...)``,
``Node(...)`` and the command line's ``--secret`` and ``P2PRPC_SECRET``; ``p2prpc secret`` makes
one that is accepted."""

from __future__ import annotations

import os

import pytest

from p2prpc import P2PT, Node, WeakSecret
from p2prpc.cli import main
from p2prpc.wire.secret import check_secret, derive_keys

#: What a hostile review found accepted while the estimate worked on UTF-8 bytes and knew only
#: runs of step 1: runs and words in other scripts, strides and interleaved runs (and the same
#: kinds long enough that the estimate, not the length, refuses them).
REVIEWED = [
    "абвгдежз",  # recovered from its info_hash in 3 s from a list of 27 alphabet runs
    "αβγδεζηθ",
    "пароль1234",
    "парольпароль",
    "一二三四五六",
    "a1b2c3d4e5f6g7h8",
    "1q2w3e4r5t6y7u8i",
    "acegikmoqsuwyACE",
    bytes(range(0, 32, 2)),
    "абвгдежзийклмноп",
    "пароль1234567890",
    "a1b2c3d4e5f6g7h8i9j0",
    bytes(range(0, 64, 4)),
    # A second review's: a keyboard walk, non-ASCII words and runs past the length minimum.
    "1q2w3e4r5t6y7u8i9o0p",
    "qwertyuiopasdfghjklzxcvbnm",
    "Москва2024!",
    "😀😁😂😃😄😅😆😇😈😉😊😋😌😍😎😏",
]
WEAK = [
    "sunshine2024",
    "s3cret",
    "",
    "Password1234567!",
    "aaaaaaaaaaaaaaaaaaaa",
    b"short bytes",
    *REVIEWED,
]
STRONG = "a strong secret 60d2b9e4f17a835c"


@pytest.mark.parametrize("secret", WEAK)
def test_p2pt_refuses_a_weak_secret(secret: str | bytes) -> None:
    with pytest.raises(WeakSecret, match="p2prpc secret"):
        P2PT([], "app", secret=secret)


@pytest.mark.parametrize("secret", WEAK)
def test_node_refuses_a_weak_secret(secret: str | bytes) -> None:
    with pytest.raises(WeakSecret, match="p2prpc secret"):
        Node([], "app", secret=secret)


@pytest.mark.parametrize("secret", WEAK)
def test_deriving_keys_refuses_a_weak_secret(secret: str | bytes) -> None:
    with pytest.raises(WeakSecret, match="p2prpc secret"):
        derive_keys(secret, "app")


def test_a_strong_secret_makes_a_closed_swarm() -> None:
    node = Node([], "app", secret=STRONG)
    assert node.p2pt.info_hash == derive_keys(STRONG, "app").info_hash
    assert node.p2pt.secret_mode


@pytest.mark.parametrize(
    ("argv", "env", "source"),
    [
        (["--secret", "sunshine2024"], None, "--secret"),
        (["--secret", ""], None, "--secret"),  # never an open swarm by mistake
        ([], "sunshine2024", "P2PRPC_SECRET"),
        ([], "", "P2PRPC_SECRET"),
        # Bytes that are no UTF-8, as a shell passes them: six bytes, not eighteen.
        (["--secret", os.fsdecode(bytes(range(0x80, 0x86)))], None, "--secret"),
        ([], os.fsdecode(bytes(range(0x80, 0x86))), "P2PRPC_SECRET"),
    ],
)
def test_the_command_line_refuses_a_weak_secret_before_joining(
    argv: list[str],
    env: str | None,
    source: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if env is None:
        monkeypatch.delenv("P2PRPC_SECRET", raising=False)
    else:
        monkeypatch.setenv("P2PRPC_SECRET", env)
    # Port 9 (discard): nothing listens, and nothing is tried, since the secret is checked first.
    assert main(["peers", "-t", "ws://127.0.0.1:9", "--wait", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"p2prpc peers: {source}: ") and "p2prpc secret" in err
    assert "sunshine2024" not in err


def test_p2prpc_secret_prints_a_fresh_secret_that_is_accepted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["secret"]) == 0
    first = capsys.readouterr().out
    assert main(["secret"]) == 0
    second = capsys.readouterr().out
    assert first.endswith("\n") and first != second
    made = first.strip()
    assert len(made) == 43 and check_secret(made) == made.encode()
    assert P2PT([], "app", secret=made).secret_mode
