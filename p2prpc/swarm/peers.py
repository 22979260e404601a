"""The peer table and its caps, in one place: who is connected, over which connections, and
whether one more connection may be made or taken.

A :class:`RemotePeer` is the set of its connections that all proved one key (or none; see
:func:`~p2prpc.swarm.handshake.admit`). :class:`PeerTable` holds them and the connections still
connecting, and answers every cap question the signalling paths and the pool ask: how many
channels a peer may have, how many may connect at once and how they are shared, how many peers
(``max_peers``, plus ``max_extra_peers`` to reach a service), and how many offers an announce
should carry.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from .connection import Connection

logger = logging.getLogger(__name__)

__all__ = ["CHANNEL_SETTLE_TIME", "PeerTable", "RemotePeer", "surplus_channel"]

#: Seconds after it opened during which a channel may be closed as one too many for its peer.
#: A channel opens at both ends within a round trip; older ones carry traffic and are kept.
CHANNEL_SETTLE_TIME = 5.0


class RemotePeer:
    """Everything known about one remote peer: its connections by label, the key they proved,
    and the replies awaited from it (futures of P2PT's ``send``)."""

    __slots__ = ("channels", "id", "numbered", "public_key", "waiting")

    def __init__(self, peer_id: str) -> None:
        self.id = peer_id
        self.public_key: bytes | None = None  # proven by its handshake on its connections
        self.channels: dict[str, Connection] = {}
        #: The same connections by their number (:attr:`Connection.connection`); see :meth:`add`.
        self.numbered: dict[int, Connection] = {}
        self.waiting: dict[int, asyncio.Future[Any]] = {}

    def usable(self, channel: Connection) -> bool:
        """Whether ``channel`` is open and speaks for this peer: it proved the peer's key, or
        the peer has none. (A connection that has yet to prove the key another connection
        proved under this id carries nothing either way until it does.)"""
        return channel.is_open and channel.public_key == self.public_key

    def open_channel(self, preferred: str | None = None) -> Connection | None:
        """A usable channel to this peer: ``preferred`` (a label) if it is, else the newest
        direct one, else the newest circuit through a relay.

        The newest, because the peer surely holds it: it took part in making it last, while an
        older one may be dead at its end unbeknown to us (it gave us up, and what it said on
        the way out was lost) until our keepalive finds out. Direct first: a circuit costs a
        relay's bandwidth and is kept only while no direct path exists."""
        if preferred is not None:
            channel = self.channels.get(preferred)
            if channel is not None and self.usable(channel):
                return channel
        relayed = None
        for channel in reversed(self.channels.values()):
            if self.usable(channel):
                if not channel.relayed:
                    return channel
                relayed = relayed or channel
        return relayed

    def by_connection(self, connection: int) -> Connection | None:
        """The usable channel numbered ``connection`` (:attr:`Connection.connection`), if any."""
        channel = self.numbered.get(connection)
        if channel is not None and channel.is_open and channel.public_key == self.public_key:
            return channel
        return None

    def add(self, channel: Connection) -> None:
        """Count ``channel`` as one of this peer's connections."""
        self.channels[channel.name] = channel
        self.numbered[channel.connection] = channel

    def remove(self, channel: Connection) -> None:
        """Forget ``channel`` (one of this peer's connections)."""
        del self.channels[channel.name]
        self.numbered.pop(channel.connection, None)


def surplus_channel(remote: RemotePeer, opened: Connection) -> Connection:
    """Which channel to close when ``opened`` would take ``remote`` past the cap.

    Both ends must close the same one, or when offers cross each would close a different one
    and the peer could lose every channel: of the channels opened in the last
    :data:`CHANNEL_SETTLE_TIME` seconds (``opened`` among them), the one with the greatest label,
    which both ends know alike (the offer id).
    """
    assert opened.opened_at is not None
    young = [
        channel
        for channel in remote.channels.values()
        if channel.opened_at is not None
        and opened.opened_at - channel.opened_at < CHANNEL_SETTLE_TIME
    ]
    return max([*young, opened], key=lambda channel: channel.name)


class PeerTable:
    """The connected peers, the connections still connecting, and every cap on them.

    Caps (see :class:`~p2prpc.p2pt.P2PT` for their defaults): ``max_channels_per_peer`` open or
    connecting to one peer; ``max_connecting`` connecting in all, of which a backup channel (to a
    peer with one open) may take half and one peer ``max_connecting_per_peer``; ``max_peers``
    connected peers (``None``: no bound), plus ``max_extra_peers`` for connections made to reach
    a service; ``min_peers``, below which a peer is hungry; ``answer_grace`` seconds after which
    a connection we answered may give its slot to a new peer's.
    """

    def __init__(
        self,
        *,
        max_channels_per_peer: int,
        max_connecting: int,
        max_connecting_per_peer: int,
        max_peers: int | None,
        min_peers: int | None,
        max_extra_peers: int,
        answer_grace: float,
    ) -> None:
        if max_channels_per_peer < 1 or max_connecting < 1 or max_connecting_per_peer < 1:
            raise ValueError(
                "max_channels_per_peer, max_connecting and max_connecting_per_peer must be at "
                "least 1"
            )
        if max_peers is not None and max_peers < 1:
            raise ValueError("max_peers must be at least 1")
        self.max_channels_per_peer = max_channels_per_peer
        self.max_connecting = max_connecting
        self.max_connecting_per_peer = max_connecting_per_peer
        self.max_peers = max_peers
        self.min_peers = min_peers if min_peers is not None else (max_peers or 0) // 2
        self.max_extra_peers = max_extra_peers
        self.answer_grace = answer_grace
        self.remotes: dict[str, RemotePeer] = {}
        self.connecting: set[Connection] = set()

    # -- degree -------------------------------------------------------------------------------

    def degree(self) -> int:
        """How many peers are connected (those with a channel that counted)."""
        return sum(1 for r in self.remotes.values() if r.channels)

    def peer_limit(self, extra: bool) -> float:
        """How many peers may be connected (``extra``: for a connection made to reach a
        service)."""
        if self.max_peers is None:
            return math.inf
        return self.max_peers + (self.max_extra_peers if extra else 0)

    def offers_wanted(self, most: int) -> int:
        """How many offers the next announce should carry (at most ``most``)."""
        if self.max_peers is None:
            return most
        return max(0, min(most, self.max_peers - self.degree()))

    def hungry(self, swarm_sizes: Mapping[str, int]) -> bool:
        """Below ``min_peers`` while the trackers (``swarm_sizes``, by announce URL) know of
        more peers: announce again soon."""
        if self.max_peers is None:
            return False
        known = max(swarm_sizes.values(), default=0) - 1
        return self.degree() < min(self.min_peers, known)

    # -- connecting ---------------------------------------------------------------------------

    def accepts_offer_from(self, peer_id: str, extra: bool = False) -> bool:
        """Whether to answer an offer (one that opened) from ``peer_id``: its channels open or
        connecting are below ``max_channels_per_peer`` and those connecting below
        ``max_connecting_per_peer``; a new peer is within :meth:`peer_limit`; and a slot is
        free among ``max_connecting``.

        A backup channel (to a peer with one open) may take only half of the slots. A new peer
        that finds them all taken takes the place of the connection we answered that has been
        connecting longest, if for ``answer_grace`` seconds or more (:meth:`make_room`).
        """
        remote = self.remotes.get(peer_id)
        open_count = len(remote.channels) if remote is not None else 0
        connecting = sum(1 for c in self.connecting if c.peer_id == peer_id)
        if (
            open_count + connecting >= self.max_channels_per_peer
            or connecting >= self.max_connecting_per_peer
        ):
            return False
        free = len(self.connecting) < self.max_connecting
        if open_count > 0:  # a backup channel
            return free and self._backups_connecting() < max(self.max_connecting // 2, 1)
        if self.degree() >= self.peer_limit(extra):
            return False
        return free or self._stalest() is not None

    def accepts_answer_from(self, peer_id: str, extra: bool = False) -> bool:
        """Whether to take ``peer_id``'s answer to one of our offers: its open channels are below
        ``max_channels_per_peer``, and a new peer is within :meth:`peer_limit`.

        Channels still connecting do not count here: when offers cross (each peer answering the
        other's), both would refuse and neither channel would open; the one too many is closed
        when it opens instead (:func:`surplus_channel`).
        """
        remote = self.remotes.get(peer_id)
        open_count = len(remote.channels) if remote is not None else 0
        if open_count >= self.max_channels_per_peer:
            return False
        return open_count > 0 or self.degree() < self.peer_limit(extra)

    def _backups_connecting(self) -> int:
        """How many channels are connecting to peers with a channel open already."""
        remotes = self.remotes
        return sum(
            1
            for c in self.connecting
            if (remote := remotes.get(c.peer_id or "")) is not None and remote.channels
        )

    def _stalest(self) -> Connection | None:
        """The connection we answered that has been connecting longest, if for ``answer_grace``
        seconds or more: the one a new peer's offer takes the place of when no slot is free."""
        deadline = time.monotonic() - self.answer_grace
        stale = [c for c in self.connecting if not c.initiator and c.created_at <= deadline]
        return min(stale, key=lambda c: c.created_at, default=None)

    def make_room(self, channel: Connection) -> None:
        """Before ``channel`` (one we answer) takes a connecting slot: when none is free, close
        the stalest (:meth:`_stalest`). Only offers that opened come here, so nothing a third
        party recorded comes twice; what it plays back once to each member is what these slots
        are shared against (docs/SECURITY.md)."""
        if channel.initiator or len(self.connecting) < self.max_connecting:
            return
        stalest = self._stalest()
        if stalest is not None:
            logger.debug("no connecting slot free: closing %s, the stalest", stalest.peer_id)
            stalest.close()
