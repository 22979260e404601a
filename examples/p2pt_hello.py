"""P2PT's own example, in Python, over the embedded tracker on loopback.

Two peers find each other through the tracker. Each greets every peer it meets with "Hi"; whoever
receives "Hi" answers "Hello !", the greeter answers that with "Bye", and the conversation ends with
"Bye !" — four messages riding one message id through the send/respond chain.
"""

from __future__ import annotations

import asyncio
import sys

from p2prpc import P2PT, Peer
from p2prpc.testing import loopback_p2pt
from p2prpc.tracker.server import TrackerServer
from p2prpc.wire.frames import JSONValue


def make_peer(name: str, announce_urls: list[str], done: asyncio.Event) -> P2PT:
    """A peer that runs P2PT's example conversation with every peer it meets."""
    p2pt = loopback_p2pt(announce_urls, "myApp")

    async def on_peerconnect(peer: Peer) -> None:
        print(f"[{name}] connected to {peer.id[:8]}")
        peer, msg = await p2pt.send(peer, "Hi")
        print(f"[{name}] got response: {msg}")
        peer, msg = await peer.respond("Bye")
        print(f"[{name}] got response2: {msg}")
        done.set()

    async def on_msg(peer: Peer, msg: JSONValue) -> None:
        print(f"[{name}] got message from {peer.id[:8]}: {msg}")
        if msg == "Hi":
            peer, msg = await peer.respond("Hello !")
            print(f"[{name}] got message from {peer.id[:8]}: {msg}")
            peer.respond("Bye !")  # the last word: nobody answers it, so it is not awaited

    p2pt.on("peerconnect", on_peerconnect)
    p2pt.on("msg", on_msg)
    p2pt.on("trackerconnect", lambda tracker, stats: print(f"[{name}] tracker connected {stats}"))
    return p2pt


async def main() -> int:
    async with TrackerServer("127.0.0.1", 0) as tracker:
        print(f"embedded tracker at {tracker.url}")
        done = [asyncio.Event(), asyncio.Event()]
        peers = [
            make_peer(n, [tracker.url], d) for n, d in zip(("alice", "bob"), done, strict=True)
        ]
        try:
            for p2pt in peers:
                await p2pt.start()
            await asyncio.wait_for(asyncio.gather(*(d.wait() for d in done)), 30)
        finally:
            for p2pt in peers:
                await p2pt.destroy()
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
