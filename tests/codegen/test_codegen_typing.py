"""Generated modules under ``mypy --strict``: they check clean, good uses pass, misuses fail.

``usage/good_usage.py`` calls every kind of stub method and implements servicers as users would;
``usage/bad_*.py`` hold misuses, each marked on its line with the error mypy must report there:
``# E: [error-code] text the message contains``. One mypy run checks all of them together with the
modules generated from ``protos/`` and from ``tests/codegen/protos/``.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from codegen_support import GENERATED, ROOT

try:
    from p2prpc import rpc
except ImportError:  # pragma: no cover - while the runtime is being written
    rpc = None

pytestmark = [
    pytest.mark.skipif(rpc is None, reason="the p2prpc.rpc runtime is not importable"),
    # On one pytest-xdist worker: each worker running these would run the one mypy (7 s) again.
    pytest.mark.xdist_group("mypy"),
]

USAGE = Path(__file__).resolve().parent / "usage"
MARKER = re.compile(r"#\s*E:\s*\[(?P<code>[a-z-]+)\]\s*(?P<text>.*?)\s*$")
ERROR = re.compile(
    r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<message>.*?)\s+\[(?P<code>[a-z-]+)\]$"
)


@dataclass(frozen=True)
class Expected:
    file: str
    line: int
    code: str
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def markers() -> list[Expected]:
    found: list[Expected] = []
    for path in sorted(USAGE.glob("bad_*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = MARKER.search(line)
            if match:
                found.append(Expected(path.name, number, match["code"], match["text"]))
    return found


@dataclass(frozen=True)
class MypyReport:
    errors: dict[Path, list[tuple[int, str, str]]]
    """Errors by file: (line, message, code)."""
    output: str

    def in_file(self, path: Path) -> list[tuple[int, str, str]]:
        return self.errors.get(path.resolve(), [])


@pytest.fixture(scope="session")
def mypy_report(cases_out: Path, tmp_path_factory: pytest.TempPathFactory) -> MypyReport:
    from mypy import api

    config = tmp_path_factory.mktemp("mypy") / "mypy.ini"
    config.write_text(
        "[mypy]\n"
        "strict = True\n"
        "python_version = 3.11\n"
        "explicit_package_bases = True\n"
        f"mypy_path = {GENERATED},{cases_out}\n"
        f"cache_dir = {ROOT / '.mypy_cache' / 'codegen-tests'}\n",
        encoding="utf-8",
    )
    files = [
        *sorted(GENERATED.rglob("*_p2prpc.py")),
        *sorted(cases_out.rglob("*_p2prpc.py")),
        *sorted(USAGE.glob("*.py")),
    ]
    # p2prpc itself is found from the project root, as in `make lint`.
    with contextlib.chdir(ROOT):
        stdout, stderr, _ = api.run(["--config-file", str(config), *map(str, files)])
    errors: dict[Path, list[tuple[int, str, str]]] = {}
    for line in stdout.splitlines():
        match = ERROR.match(line)
        if match:
            path = (ROOT / match["path"]).resolve()
            errors.setdefault(path, []).append(
                (int(match["line"]), match["message"], match["code"])
            )
    assert "error: " in stdout or "Success" in stdout, stdout + stderr
    return MypyReport(errors, stdout + stderr)


def test_generated_modules_pass_mypy_strict(mypy_report: MypyReport, cases_out: Path) -> None:
    generated = [*GENERATED.rglob("*_p2prpc.py"), *cases_out.rglob("*_p2prpc.py")]
    assert len(generated) == 11
    problems = {str(path): mypy_report.in_file(path) for path in generated}
    assert {path: found for path, found in problems.items() if found} == {}, mypy_report.output


def test_good_usage_passes_mypy_strict(mypy_report: MypyReport) -> None:
    assert mypy_report.in_file(USAGE / "good_usage.py") == [], mypy_report.output


@pytest.mark.parametrize("expected", markers(), ids=str)
def test_misuse_is_rejected(mypy_report: MypyReport, expected: Expected) -> None:
    found = [
        (message, code)
        for line, message, code in mypy_report.in_file(USAGE / expected.file)
        if line == expected.line
    ]
    assert any(code == expected.code and expected.text in message for message, code in found), (
        f"{expected}: expected [{expected.code}] {expected.text!r}, mypy said {found}"
    )


def test_misuses_are_the_only_errors(mypy_report: MypyReport) -> None:
    expected = {(e.file, e.line) for e in markers()}
    for path in sorted(USAGE.glob("bad_*.py")):
        unexpected = [e for e in mypy_report.in_file(path) if (path.name, e[0]) not in expected]
        assert unexpected == [], f"{path.name}: unexpected errors {unexpected}"
