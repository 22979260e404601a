"""Fixtures for interop tests: JavaScript peers, trackers, and the runtimes-by-trackers matrix.

A scenario written once against `js_runtime` and `tracker_url` runs for every combination:

    @pytest.mark.interop
    @pytest.mark.asyncio
    async def test_hello(js_peers: JsPeers, js_runtime: Runtime, tracker_url: str) -> None:
        peer = await js_peers.launch(js_runtime)
        await peer.start([tracker_url], "app")
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from . import netns
from .harness import (
    RUNTIMES,
    TRACKER_KINDS,
    JsPeers,
    JsTracker,
    Runtime,
    TrackerKind,
    running_tracker,
)


def _require_test_network() -> netns.TestNetwork:
    if netns.current is None:
        pytest.fail("interop fixtures need the test network: mark the test @pytest.mark.interop")
    return netns.current


@pytest.fixture
def interop_network() -> netns.TestNetwork:
    """The namespace the session runs in (its veth addresses reach every peer in it)."""
    return _require_test_network()


@pytest_asyncio.fixture
async def js_tracker() -> AsyncIterator[JsTracker]:
    """The npm bittorrent-tracker on ws://127.0.0.1:PORT."""
    _require_test_network()
    async with JsTracker() as tracker:
        yield tracker


@pytest_asyncio.fixture
async def js_peers() -> AsyncIterator[JsPeers]:
    """Launch JavaScript peers with `await js_peers.launch("node" | "chromium")`."""
    _require_test_network()
    peers = JsPeers()
    try:
        yield peers
    finally:
        await peers.aclose()


@pytest.fixture(params=RUNTIMES)
def js_runtime(request: pytest.FixtureRequest) -> Runtime:
    """Each JavaScript runtime in turn."""
    runtime: Runtime = request.param
    return runtime


@pytest_asyncio.fixture(params=TRACKER_KINDS)
async def tracker_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The announce URL of each tracker kind in turn: bittorrent-tracker and the embedded one."""
    _require_test_network()
    kind: TrackerKind = request.param
    if kind == "embedded":
        try:
            import p2prpc.tracker.server  # noqa: F401
        except ImportError as error:
            pytest.skip(f"the embedded tracker is not importable: {error}")
    async with running_tracker(kind) as url:
        yield url
