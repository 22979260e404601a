"""Session-wide test setup.

Interop tests (marked `interop`) need the test network namespace (`interop.netns`): when any is
selected, this process moves into a fresh namespace right after collection, before any test,
event loop or helper thread exists, and removes it when the session ends. Where that is
impossible (not root, no `ip`), those tests are skipped with the reason.

Transports: the tests of every folder and file named in `PER_TRANSPORT` make connections, and run
once on each transport (ids end in `[aiortc]` / `[libwebrtc]`): a module-scoped autouse fixture
sets `P2PRPC_TRANSPORT` for the module's tests, its fixtures and the processes they start.
`--transport NAME` keeps one. A test about one transport's own machinery is marked
`@pytest.mark.transport_only("aiortc", reason=...)`: on the other it is skipped with the reason.
Tests that measure time, CPU or memory against a budget (`SERIAL`) are marked `serial`: `make
test` runs them after the others, one at a time, as the others run in parallel (pytest-xdist);
one of them marked `load_independent` (it measures only what other tests' load cannot change)
runs with the others.
libwebrtc (the `native` extra) gathers loopback candidates in this run (`WRTC_ALLOW_LOOPBACK`); its
tests skip with the reason where `wrtc` is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from p2prpc.transport import TRANSPORT_ENV

TRANSPORTS = ("aiortc", "libwebrtc")

#: Folders and files (relative to tests/) whose tests make connections: they run on each transport.
PER_TRANSPORT = (
    "circuit/",
    "costs/",
    "fuzz/test_node_inputs.py",
    "grpcaio/",
    "interop/",
    "lab/",
    "mesh/",
    "p2pt/",
    "pubsub/",
    "rpc/",
    "secret/",
    "services/",
    "soak/",
    "swarm/",
    "test_cli",
    "test_examples.py",
    "test_progress.py",
    "test_tools.py",
    "tracker/test_legitimate_messages.py",
)

#: Tests that measure time, CPU or memory against a budget: `make test` runs them after the rest,
#: one at a time (`-m serial`), so that no other test's load is counted against them.
SERIAL = (
    "costs/",
    "fuzz/test_decoder_costs.py",
    "lab/test_lab.py",
    "rpc/test_work_budget.py",
    "wire/test_held.py",
)

#: Tests that build network namespaces with routers, coturn or the delay program: under
#: pytest-xdist they run one after another on one worker (`--dist loadgroup`), as they fail
#: their timings when several labs run at once on two cores.
LABS = (
    "lab/",
    "rpc/test_long_path.py",
    "test_cli_ice.py",
    "transport/test_turn_rest.py",
    "transport/test_wrtc_turn.py",
)

_TESTS = Path(__file__).parent

_NETNS = pytest.StashKey[ModuleType]()

# libwebrtc gathers loopback candidates only if allowed before its first connection in the
# process; this run has tests pinned to loopback and tests over the namespace's interfaces in any
# order, so it allows them from the start (p2prpc.transport.wrtc).
os.environ.setdefault("WRTC_ALLOW_LOOPBACK", "1")


def _netns() -> ModuleType:
    # This file is the module `conftest` when tests/ is not a package and `tests.conftest` when it
    # is; the helper module follows suit.
    return importlib.import_module(
        f"{__package__}.interop.netns" if __package__ else "interop.netns"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    interop = [item for item in session.items if item.get_closest_marker("interop")]
    if not interop or session.config.option.collectonly:
        return
    netns = _netns()
    reason = netns.unavailable_reason()
    if reason is not None:
        for item in interop:
            item.add_marker(
                pytest.mark.skip(reason=f"interop tests need their own network: {reason}")
            )
        return
    netns.enter()
    session.config.stash[_NETNS] = netns


def pytest_sessionfinish(session: pytest.Session) -> None:
    netns = session.config.stash.get(_NETNS, None)
    if netns is not None:
        netns.leave()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--transport",
        action="append",
        choices=TRANSPORTS,
        help="run the connection-making tests on this transport only (repeatable; default: both)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "transport_only(name, reason): the test is about one transport's own machinery",
    )
    config.addinivalue_line(
        "markers", "serial: measures time, CPU or memory: run alone (`-m serial`), not in parallel"
    )
    config.addinivalue_line(
        "markers",
        "load_independent(reason): in a folder of serial tests, measures only what the load of"
        " tests running beside it cannot change: it runs in parallel with them",
    )


def _relative(path: Path) -> str:
    try:
        return path.relative_to(_TESTS).as_posix()
    except ValueError:
        return ""


def _per_transport(path: Path) -> bool:
    return _relative(path).startswith(PER_TRANSPORT)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = _relative(item.path)
        if relative.startswith(SERIAL) and item.get_closest_marker("load_independent") is None:
            item.add_marker(pytest.mark.serial)
        if relative.startswith(LABS):
            item.add_marker(pytest.mark.xdist_group("labs"))
        # A parameter marked transport_only (the function's own mark is read when parametrizing).
        only = item.get_closest_marker("transport_only")
        callspec = getattr(item, "callspec", None)
        transport = callspec.params.get("default_transport") if callspec is not None else None
        if only is not None and transport is not None and transport != only.args[0]:
            item.add_marker(
                pytest.mark.skip(reason=f"about {only.args[0]}: {only.kwargs['reason']}")
            )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "default_transport" not in metafunc.fixturenames:
        return
    if not _per_transport(metafunc.definition.path):
        return
    wanted = metafunc.config.getoption("transport") or TRANSPORTS
    only = metafunc.definition.get_closest_marker("transport_only")
    native = importlib.util.find_spec("webrtc") is not None
    params = []
    for name in TRANSPORTS:
        if name not in wanted:
            continue
        marks = []
        if only is not None and name != only.args[0]:
            marks.append(pytest.mark.skip(reason=f"about {only.args[0]}: {only.kwargs['reason']}"))
        elif name == "libwebrtc" and not native:
            marks.append(pytest.mark.skip(reason="libwebrtc needs wrtc (p2prpc[native])"))
        params.append(pytest.param(name, marks=marks, id=name))
    metafunc.parametrize("default_transport", params, indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def default_transport(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The transport this module's connections are made on (``None``: it makes none)."""
    name: str | None = getattr(request, "param", None)
    if name is None:
        yield None
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TRANSPORT_ENV, name)
        yield name


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Reports without lone surrogates (tests about unencodable text fail with them in their
    output, which pytest-xdist cannot send from its worker)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        if _printable(text) != text:
            report.longrepr = _printable(text)
    report.sections = [(title, _printable(content)) for title, content in report.sections]
