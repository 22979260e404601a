"""Keepalive is one of a node's layers: registered for pings and pongs, its settings the node's.

How it behaves on real connections is in test_keepalive.py, test_outage.py and test_churn.py.
"""

from __future__ import annotations

import pytest

from p2prpc.errors import RemoteProtocolError
from p2prpc.keepalive import Keepalive
from p2prpc.mux import Mux
from p2prpc.wire.envelope import Envelope, Kind


class _Other:
    """A layer that would take pings for itself."""

    def on_envelope(self, peer_id: str, envelope: Envelope, connection: int) -> None: ...
    def on_connection_lost(self, peer_id: str, connection: int) -> None: ...
    def on_peer_lost(self, peer_id: str) -> None: ...
    def on_refused(
        self,
        peer_id: str,
        kind: Kind | None,
        call_id: int,
        error: RemoteProtocolError,
        *,
        binary: bool | None = None,
    ) -> None: ...
    async def wait_idle(self) -> None: ...
    def close(self) -> None: ...


def test_keepalive_is_the_layer_of_pings_and_pongs_with_the_nodes_settings() -> None:
    node = Mux([], "app", keepalive_interval=2.0, keepalive_timeout=5.0, keepalive_grace=0)
    keepalive = node.get_layer("keepalive")
    assert isinstance(keepalive, Keepalive)
    assert (keepalive.interval, keepalive.timeout, keepalive.grace) == (2.0, 5.0, 0)
    assert (node.keepalive_interval, node.keepalive_timeout, node.keepalive_grace) == (2.0, 5.0, 0)
    for kind in (Kind.PING, Kind.PONG):
        with pytest.raises(ValueError, match="handled already"):
            node.register(_Other(), [kind])


def test_keepalive_off_knows_nothing_and_bad_settings_are_refused() -> None:
    node = Mux([], "app", keepalive_interval=None)
    assert node.keepalive_interval is None
    assert node.silence("0" * 40) is None
    assert not node.is_suspect("0" * 40)
    with pytest.raises(ValueError, match="keepalive_interval"):
        Mux([], "app", keepalive_timeout=0)


def test_the_timeout_and_grace_stay_settable_on_the_node() -> None:
    node = Mux([], "app", keepalive_timeout=3.5, keepalive_grace=15)
    node.keepalive_timeout = 2.0
    node.keepalive_grace = 0
    assert (node.keepalive_timeout, node.keepalive_grace) == (2.0, 0)
    assert (node.get_layer("keepalive").timeout, node.get_layer("keepalive").grace) == (2.0, 0)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="keepalive_timeout"):
        node.keepalive_timeout = 0
    with pytest.raises(ValueError, match="keepalive_grace"):
        node.keepalive_grace = -1
