"""A neighbour's pex makes a node start connections through it; one that lists fresh peer ids
and drops them again cannot make the node build offer after offer (each a peer connection)."""

from __future__ import annotations

from typing import Any

import pytest

from p2prpc.mesh import mesh_of
from p2prpc.testing import loopback_p2pt, mesh, until
from p2prpc.wire.frames import new_message_id

pytestmark = pytest.mark.asyncio

HELLO = {"v": 1, "binary": False, "mesh": 1, "relay": True}


async def test_a_neighbour_dropping_the_peers_it_listed_pauses_offers_through_it() -> None:
    async with mesh(1) as m:
        node = m.nodes[0]
        layer = mesh_of(node)
        assert layer is not None
        attacker = loopback_p2pt([m.tracker.url], "p2prpc")
        offers: list[Any] = []
        attacker.on("msg", lambda peer, msg: offers.append(msg) if "signal" in msg else None)
        try:
            await attacker.start()
            await until(
                lambda: node.peer_id in attacker.peers, (attacker, "peerconnect"), timeout=30
            )
            peer = attacker.peers[node.peer_id]
            attacker.post(peer, {"hello": HELLO}, new_message_id())
            await until(lambda: attacker.peer_id in node.peers, (node, "peer"))

            def pex(round_: int) -> None:
                ids = [f"{round_:02x}{i:038x}" for i in range(4)]
                attacker.post(
                    peer, {"pex": {"peers": [{"id": pid} for pid in ids]}}, new_message_id()
                )

            pex(1)
            await until(lambda: len(offers) == 4, (attacker, "msg"))  # one offer a listed peer
            for round_ in range(2, 5):  # each drops the last round's peers and lists new ones
                pex(round_)
            await until(lambda: layer.stats.pex_received == 4, (node.p2pt, "msg"))
            assert not layer._attempts  # the dropped ones ended, and none started through it
            assert layer.stats.offers_sent == 4
        finally:
            await attacker.destroy()
