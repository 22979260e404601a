"""A topic subscriber in a process of its own, which a test can freeze (SIGSTOP) and thaw.

``python subscriber_process.py TRACKER_URL TOPIC KEEPALIVE_TIMEOUT`` starts a node subscribed to
``TOPIC`` (``StringValue`` messages) and prints one JSON line for each thing that happens: first
``{"peer_id": ...}`` when it has started, then ``{"seq": n}`` for each message delivered and
``{"lost": [first, last]}`` for each range of messages reported lost. It runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402

from p2prpc.pubsub import Subscription, Topic  # noqa: E402
from p2prpc.testing import loopback_node  # noqa: E402


def say(value: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


class Reporting(Subscription[StringValue]):
    """A subscription that says each range of messages it is told were lost."""

    def lost_messages(
        self, sender: str, first: int, last: int, publisher: bytes | None = None
    ) -> None:
        super().lost_messages(sender, first, last, publisher)
        say({"lost": [first, last]})


async def main(tracker: str, topic_name: str, keepalive_timeout: float) -> None:
    node = loopback_node([tracker], keepalive_timeout=keepalive_timeout)
    subscription = Reporting(Topic(node, topic_name, StringValue), maxsize=1_000_000)
    await node.start()
    say({"peer_id": node.peer_id})
    async for received in subscription:
        say({"seq": received.seq})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
