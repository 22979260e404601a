"""Misuses of generated topic handles that mypy --strict must reject, each at its ``# E:`` line."""

from __future__ import annotations

import chat_p2prpc
import chat_pb2

import p2prpc.node
import p2prpc.rpc


async def misuse(node: p2prpc.node.Node, channel: p2prpc.rpc.Channel) -> None:
    room = chat_p2prpc.ChatMessageTopic(node)
    await room.publish(chat_pb2.Presence())  # E: [arg-type] "Presence"; expected "ChatMessage"
    await room.publish("hello")  # E: [arg-type] "str"; expected "ChatMessage"
    room.publish(chat_pb2.ChatMessage())  # E: [unused-coroutine]
    async for received in room.subscribe():
        print(received.message.online)  # E: [attr-defined] "ChatMessage" has no attribute "online"
        sender: bytes = received.sender  # E: [assignment] "str"
        print(sender)
    presence: chat_p2prpc.PresenceTopic = room  # E: [assignment] "ChatMessageTopic"
    chat_p2prpc.PresenceTopic(channel)  # E: [arg-type] expected "Node"
    print(presence)
