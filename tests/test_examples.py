"""The examples run as a user runs them: separate processes on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def example_env() -> dict[str, str]:
    """This environment as it is now (the module's transport, which its fixture sets in it),
    with the generated code and the repository importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "generated"), str(ROOT)])}


def test_demo_shows_every_call_shape_a_deadline_an_error_and_a_topic() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        env=example_env(),
        timeout=100,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SayHello -> 'Hello, p2prpc!'" in out
    assert "Bonjour, peer!" in out
    assert "RecordRoute -> 3 points, 2 features" in out
    assert (
        "RouteChat -> earlier notes at the same place: ['first note', 'first note', 'second note']"
        in out
    )
    assert "then DEADLINE_EXCEEDED" in out
    assert "INVALID_ARGUMENT: latitude 1000000000 is off the map" in out
    assert "[server] chat: client joined" in out
    assert "[server] chat: <client> hello, everyone" in out
    assert "<server> welcome, client!" in out
    assert "[server] stopped" in out


def test_p2pt_example_conversation() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "p2pt_hello.py")],
        capture_output=True,
        text=True,
        env=example_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name in ("alice", "bob"):
        assert f"[{name}] got response: Hello !" in result.stdout
        assert f"[{name}] got response2: Bye !" in result.stdout
