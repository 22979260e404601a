"""A reply refused on its way in fails the ``send`` waiting for it at once, with the refusal,
instead of leaving it to wait out its timeout (a P2PT peer is told nothing at this layer: the
``peerwarning`` and the failed send are the whole report). Over real WebRTC on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest

from p2prpc import P2PT
from p2prpc.errors import FrameError, MessageTooBig, RemoteProtocolError
from p2prpc.testing import swarm
from p2prpc.wire.frames import MessageExpired

pytestmark = pytest.mark.asyncio


def raw(p2pt: P2PT, to: P2PT, *frames: str) -> None:
    """Send data-channel texts as they are (a peer that writes its own frames)."""
    p2pt.send_raw(p2pt.peers[to.peer_id], list(frames))


def frame(msg_id: int, msg: str, c: int = 0, *, last: bool = True, o: bool = False) -> str:
    body = (
        {"id": msg_id, "msg": msg, "c": c}
        | ({"o": 1} if o else {})
        | ({"last": True} if last else {})
    )
    return "^" + json.dumps(body)


REPLIES = {
    "too long": lambda msg_id: [frame(msg_id, "x" * 5000)],
    "not JSON though marked so": lambda msg_id: [frame(msg_id, "{nope", o=True)],
    "chunked, bad JSON inside": lambda msg_id: [
        frame(msg_id, '{"a": ', last=False, o=True),
        frame(msg_id, "nope}", 1, o=True),
    ],
    "chunk out of order": lambda msg_id: [frame(msg_id, "a", last=False), frame(msg_id, "b", 2)],
    "frame not JSON": lambda msg_id: [f'^{{"id":{msg_id},"msg":"cut short'],
    "msg not a string": lambda msg_id: [f'^{{"id":{msg_id},"msg":5,"c":0,"last":true}}'],
}
ERRORS = {
    "too long": MessageTooBig,
    "not JSON though marked so": FrameError,
    "chunked, bad JSON inside": FrameError,
    "chunk out of order": FrameError,
    "frame not JSON": FrameError,
    "msg not a string": FrameError,
}


@pytest.mark.parametrize("case", REPLIES.keys())
async def test_a_refused_reply_fails_its_send_at_once(case: str) -> None:
    async with swarm(2, max_message_length=1000) as s:
        a, b = s.peers
        asked: asyncio.Queue[int] = asyncio.Queue()
        b.on("msg", lambda peer, msg: asked.put_nowait(peer.message_id))
        reply = a.send(a.peers[b.peer_id], "question", timeout=30)
        msg_id = await asyncio.wait_for(asked.get(), 10)
        assert msg_id == reply.id
        raw(b, a, *REPLIES[case](msg_id))
        with pytest.raises(ERRORS[case]) as caught:
            async with asyncio.timeout(5):  # not the 30 s of its timeout
                await reply
        assert caught.value.message_id == msg_id


async def test_an_unfinished_reply_that_expires_fails_its_send() -> None:
    async with swarm(2, max_message_age=0.3) as s:
        a, b = s.peers
        asked: asyncio.Queue[int] = asyncio.Queue()
        b.on("msg", lambda peer, msg: asked.put_nowait(peer.message_id))
        reply = a.send(a.peers[b.peer_id], "question", timeout=30)
        msg_id = await asyncio.wait_for(asked.get(), 10)
        raw(b, a, frame(msg_id, "the start of a reply", last=False))
        with pytest.raises(MessageExpired):
            async with asyncio.timeout(5):
                await reply


async def test_a_refused_message_on_another_id_leaves_the_send_waiting() -> None:
    async with swarm(2) as s:
        a, b = s.peers
        b.on("msg", lambda peer, msg: peer.respond("answer") if msg == "question" else None)
        warned: asyncio.Queue[Exception] = asyncio.Queue()
        a.on("peerwarning", lambda peer, error: warned.put_nowait(error))
        reply = a.send(a.peers[b.peer_id], "question", timeout=30)
        raw(b, a, '^{"id":1,"msg":5,"c":0}')
        error = await asyncio.wait_for(warned.get(), 10)
        assert isinstance(error, RemoteProtocolError) and error.message_id == 1
        _, answer = await asyncio.wait_for(reply, 10)
        assert answer == "answer"
