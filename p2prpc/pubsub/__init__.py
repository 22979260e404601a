"""Typed publish/subscribe over a p2prpc swarm, relayed hop by hop so it need not be a full mesh.

``Topic(node, name, MessageType)`` publishes and subscribes typed messages (generated code makes
these from topics declared in ``.proto``); ``RawTopic(node, name)`` carries JSON values for
topics known only at run time.
"""

from .router import DEFAULT_HOPS, Payload, PubSubStats, Router, router_of
from .topic import RawTopic, Received, Subscription, Topic

__all__ = [
    "DEFAULT_HOPS",
    "Payload",
    "PubSubStats",
    "RawTopic",
    "Received",
    "Router",
    "Subscription",
    "Topic",
    "router_of",
]
