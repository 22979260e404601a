"""One link's offer, for a test that needs a process of its own (libwebrtc's threads stay in
the network namespace they were made in): ``python -m tests.lab.gatherpeer TRANSPORT POLICY
URL USERNAME CREDENTIAL``.

It makes one offering link on ``TRANSPORT`` (``aiortc`` or ``libwebrtc``) with one TURN server
and ``ice_transport_policy`` ``POLICY``, and prints on stdout, as one JSON object, how long the
offer took (``seconds``), the types of the candidates in it (``candidates``) and what the link
says of the server (``errors``: ``[code, url, unresolved, text]`` each, ``text`` as str() of
the :class:`~p2prpc.transport.IceServerError`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiortc import RTCIceServer

from p2prpc.transport import RTCOptions, choose_transport


async def offer(transport: str, policy: str, url: str, username: str, credential: str) -> None:
    server = RTCIceServer(urls=[url], username=username, credential=credential)
    options = RTCOptions(ice_servers=[server], ice_transport_policy=policy)  # type: ignore[arg-type]
    link = choose_transport(transport).link(options, initiator=True, label="x" * 40)
    link.on_close = lambda: None
    began = time.monotonic()
    try:
        sdp = await link.create_offer()
    finally:
        await link.wait_closed()
    lines = [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]
    print(
        json.dumps(
            {
                "seconds": time.monotonic() - began,
                "candidates": [line[7] for line in lines],
                "errors": [[e.code, e.url, e.unresolved, str(e)] for e in link.ice_errors],
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(offer(*sys.argv[1:6]))
