"""A malicious WebTorrent tracker for tests: it puts its own WebRTC peers between every two peers.

For each pair of peers of a swarm it takes one offer of the newer peer, answers it with its own
connection, and sends the older peer its own offer in the newer peer's name; once both
connections open it relays every data-channel message between them, recording each one and
passing it through ``rewrite``. Everything else (other offers, answers to them) it keeps to
itself. This is P2PT issue #9: the signalling server as a man in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve

from p2prpc.swarm.connection import Connection
from p2prpc.transport import RTCOptions
from p2prpc.wire.tracker import (
    Announce,
    AnnounceReply,
    Answer,
    AnswerRelay,
    OfferRelay,
    encode_server_message,
    parse_client_message,
)

Rewrite = Callable[[str, str | bytes], str | bytes]

_OPTIONS = RTCOptions(ice_servers=[], host_addresses=["127.0.0.1"])


@dataclass
class _Relay:
    """Two connections of the tracker's own, one to each victim, and what waits to cross."""

    channels: dict[str, Connection] = field(default_factory=dict)  # "a" (answered), "b" (offered)
    waiting: dict[str, list[str | bytes]] = field(default_factory=lambda: {"a": [], "b": []})


class MitmTracker:
    """``async with MitmTracker() as tracker``: ``tracker.url`` to announce to.

    ``info_hashes``: every info_hash announced. ``sdps``: every SDP the peers sent (offers and
    answers, as received). ``unusable``: SDPs its WebRTC stack could not use (sealed ones).
    ``relayed``: (direction, message) for every data-channel message it passed between peers.
    """

    def __init__(self, rewrite: Rewrite | None = None) -> None:
        self.rewrite: Rewrite = rewrite or (lambda direction, data: data)
        self.info_hashes: set[bytes] = set()
        self.sdps: list[str] = []
        self.unusable: list[Exception] = []
        self.relayed: list[tuple[str, str | bytes]] = []
        self.opened = asyncio.Event()
        self._sockets: dict[bytes, ServerConnection] = {}
        self._pairs: set[frozenset[bytes]] = set()
        self._pending: dict[bytes, tuple[_Relay, Connection]] = {}  # our offer id → relay
        self._relays: list[_Relay] = []
        self._spares: list[Connection] = []  # made for their SDP only
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> MitmTracker:
        self._server = await serve(self._serve, "127.0.0.1", 0, compression=None)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        channels = [c for r in self._relays for c in r.channels.values()]
        channels += [c for _, c in self._pending.values()] + self._spares
        await asyncio.gather(*(c.wait_closed() for c in channels))
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            async for data in ws:
                message = parse_client_message(data)
                if isinstance(message, Announce):
                    await self._on_announce(ws, message)
                elif isinstance(message, Answer):
                    self._on_answer(message)

    async def _on_announce(self, ws: ServerConnection, announce: Announce) -> None:
        self.info_hashes.add(announce.info_hash)
        newcomer = announce.peer_id
        self._sockets[newcomer] = ws
        reply = AnnounceReply(announce.info_hash, interval=120, complete=0, incomplete=0)
        await ws.send(encode_server_message(reply))
        for other in list(self._sockets):
            pair = frozenset((newcomer, other))
            if other == newcomer or pair in self._pairs or not announce.offers:
                continue
            self._pairs.add(pair)
            self._spawn(self._intercept(announce, other))

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _intercept(self, announce: Announce, victim: bytes) -> None:
        """Answer the newcomer's first offer ourselves; offer to ``victim`` in its name."""
        offer = announce.offers[0]
        self.sdps.append(offer.sdp)
        relay = _Relay()
        self._relays.append(relay)
        answered = Connection(_OPTIONS, initiator=False)
        try:
            answer_sdp = await answered.accept_offer(offer.sdp)
        except Exception as e:  # a sealed offer (libwebrtc cannot read it; aiortc answers blind)
            self.unusable.append(e)
            answered.close()
            # Answer all the same, with a plain SDP of its own (which the victim must refuse).
            stand_in = Connection(_OPTIONS, initiator=True)
            self._spares.append(stand_in)
            answer_sdp = await stand_in.create_offer()
        else:
            self._wire(relay, "a", answered)
        reply = AnswerRelay(announce.info_hash, victim, offer.offer_id, answer_sdp)
        await self._sockets[announce.peer_id].send(encode_server_message(reply))
        ours = Connection(_OPTIONS, initiator=True)
        ours.peer_id = victim.hex()
        ours_sdp = await ours.create_offer()
        offer_id = bytes.fromhex(ours.name)
        self._pending[offer_id] = (relay, ours)
        fake = OfferRelay(announce.info_hash, announce.peer_id, offer_id, ours_sdp)
        await self._sockets[victim].send(encode_server_message(fake))

    def _on_answer(self, answer: Answer) -> None:
        self.sdps.append(answer.sdp)
        entry = self._pending.pop(answer.offer_id, None)
        if entry is None:
            return
        relay, ours = entry
        self._wire(relay, "b", ours)

        async def accept() -> None:
            try:
                await ours.accept_answer(answer.sdp)
            except Exception as e:
                self.unusable.append(e)
                ours.close()

        self._spawn(accept())

    def _wire(self, relay: _Relay, side: str, channel: Connection) -> None:
        other = "b" if side == "a" else "a"
        relay.channels[side] = channel
        direction = f"{side}->{other}"

        def on_message(data: str | bytes) -> None:
            self.relayed.append((direction, data))
            data = self.rewrite(direction, data)
            target = relay.channels.get(other)
            if target is not None and target.is_open:
                target.send([data])
            else:
                relay.waiting[other].append(data)

        def on_open() -> None:
            waiting, relay.waiting[side] = relay.waiting[side], []
            if waiting:
                channel.send(waiting)
            if all(c.is_open for c in relay.channels.values()) and len(relay.channels) == 2:
                self.opened.set()

        channel.on_message = on_message
        channel.on_open = on_open
