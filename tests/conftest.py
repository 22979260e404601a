"""Session-wide test setup.

Interop tests (marked `interop`) need the test network namespace (`interop.netns`): when any is
selected, this process moves into a fresh namespace right after collection, before any test,
event loop or helper thread exists, and removes it when the session ends. Where that is
impossible (not root, no `ip`), those tests are skipped with the reason.

libwebrtc (the `native` extra) gathers loopback candidates in this run (`WRTC_ALLOW_LOOPBACK`).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

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
