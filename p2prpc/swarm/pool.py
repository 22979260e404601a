"""One offer pool: every offer and answer, whichever signalling path carries it, lives once here.

A *signalling path* carries offers and answers between peers: a tracker connection (which picks
who receives an offer) or a neighbour relaying through the mesh (which knows). Both hand this pool
what they receive and carry what it returns, so the life of an offer is written once:

- **make**: a new connection and its offer, sealed as the path needs (for any member through a
  tracker, bound to its recipient when the path knows it, to the recipient's own key between
  identities); it waits for an answer at most the path's ``timeout``, then is closed
  (``expire``), unless the path retires or abandons it first;
- **answer**: a remote's offer is opened first (so a copy played back is refused as one whatever
  our load), then the owner's caps decide, then a connection answers it and must open within the
  path's answer timeout;
- **accept**: an answer is opened and taken for the offer it names, once; one that does not open
  leaves the offer waiting for a genuine one;
- every connection goes to the owner (the swarm) with the time it has to open.

ICE servers: when a provider is among them (:class:`~p2prpc.transport.ice.IceServers`), it is
asked before each connection is made, ours (for an offer) or one answering an offer (after the
offer opened and the caps took it); when it fails, :class:`~p2prpc.errors.IceServersUnavailable`
is raised and nothing is made.

Bounds: at most ``max_offers`` offers addressed to a peer wait at once (each holds a peer
connection and its sockets); offers a tracker carries are bounded by their path
(:meth:`OfferPool.retire`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from ..errors import PeerClosed, RemoteProtocolError
from ..transport import RTCOptions, Transport
from ..transport.ice import IceServers
from ..wire.sealbox import SealKey
from ..wire.secret import SealError
from .connection import Connection, ConnectionState
from .sealing import Signalling

logger = logging.getLogger(__name__)

__all__ = ["Offer", "OfferPool", "PoolOwner", "RelayPath", "SignallingPath", "UnusableSDP"]


class UnusableSDP(RemoteProtocolError):
    """An offer or answer that opened but that the transport cannot use (a malformed SDP)."""


class SignallingPath(Protocol):
    """A way offers and answers travel between peers: what the pool needs to know of it.

    Two implementations: a tracker connection (:class:`~p2prpc.tracker.client.TrackerClient`,
    which picks who receives an offer) and a neighbour relaying through the mesh
    (:class:`RelayPath`, which names its recipient).
    """

    @property
    def origin(self) -> str:
        """What connections made through it are labelled with (``Peer.origins``): a tracker's
        announce URL, or ``relay:<peer id>``."""
        ...

    @property
    def offer_timeout(self) -> float:
        """Seconds our offer through it waits for an answer."""
        ...

    @property
    def connect_timeout(self) -> float:
        """Seconds a connection whose answer we took through it has to open."""
        ...

    @property
    def answer_timeout(self) -> float:
        """Seconds a connection we answered through it has to open."""
        ...


@dataclass(frozen=True)
class RelayPath:
    """Signalling relayed through a neighbour (the mesh): ``origin`` is ``relay:<its id>``."""

    origin: str
    offer_timeout: float
    connect_timeout: float
    answer_timeout: float


class PoolOwner(Protocol):
    """What the pool needs of the swarm it serves (P2PT)."""

    def accepts_offer_from(self, peer_id: str, extra: bool = False) -> bool:
        """Whether to answer an offer from ``peer_id`` (asked once it opened)."""
        ...

    def accepts_answer_from(self, peer_id: str, extra: bool = False) -> bool:
        """Whether to take ``peer_id``'s answer to one of our offers."""
        ...

    def adopt(
        self, connection: Connection, connect_timeout: float, offer_id: bytes | None = None
    ) -> None:
        """Take over a connection to ``connection.peer_id`` that must open within
        ``connect_timeout`` seconds; ``offer_id``: the offer it comes from, when that offer was
        addressed to the peer (``offerfailed`` if it ends before it counts)."""
        ...

    def offer_failed(self, peer_id: str, offer_id: bytes) -> None:
        """An offer addressed to ``peer_id`` ended without connecting."""
        ...

    def closing(self, connection: Connection) -> None:
        """``connection`` was closed: its sockets are released in the background."""
        ...


@dataclass(eq=False)
class Offer:
    """One of our offers, waiting for its answer."""

    connection: Connection
    origin: str  # the path: a tracker's announce URL, or ``relay:<peer id>``
    to: str | None  # the peer it is addressed to (hex id); ``None``: a tracker picks
    connect_timeout: float  # seconds its connection has to open once an answer is taken
    timer: asyncio.TimerHandle | None = None
    sealed_to: SealKey | None = None  # the recipient's key it was sealed to, if any


class OfferPool:
    """Every offer of ours that waits for an answer, and the answering of others' offers."""

    def __init__(
        self,
        owner: PoolOwner,
        signalling: Signalling,
        options: RTCOptions,
        *,
        transport: Transport | None = None,
        max_offers: int = 16,
        ice: IceServers | None = None,
    ) -> None:
        self.owner = owner
        self.signalling = signalling
        self.options = options
        self.ice = ice
        self.transport = transport
        self.max_offers = max_offers
        self._offers: dict[bytes, Offer] = {}  # by offer id, oldest first
        self._closed = False

    # -- our offers ---------------------------------------------------------------------------

    async def _attempt_options(self) -> RTCOptions:
        """The options of one connection attempt: with what the ICE server providers return
        now, if any (:class:`~p2prpc.errors.IceServersUnavailable` when one fails)."""
        ice = self.ice
        if ice is None or not ice.dynamic:
            return self.options
        return dataclasses.replace(self.options, ice_servers=await ice.resolve())

    def waiting(self, offer_id: bytes) -> Offer | None:
        """Our offer ``offer_id``, if it still waits for an answer."""
        return self._offers.get(offer_id)

    def count(self, origin: str) -> int:
        """How many of our offers through ``origin`` wait for an answer."""
        return sum(1 for offer in self._offers.values() if offer.origin == origin)

    async def make(
        self,
        path: SignallingPath,
        *,
        to: str | None = None,
        extra: bool = False,
        seal_to: SealKey | None = None,
        expect_key: bytes | None = None,
    ) -> tuple[bytes, str] | None:
        """A new offer for ``path`` to carry (to peer ``to``, when the path names recipients):
        ``(offer_id, text)``, the text sealed as the path needs (see the module docstring), or
        ``None`` when it cannot be made: more than ``max_offers`` addressed offers would wait,
        it was abandoned while its candidates were gathered, or ``seal_to`` is unusable. It waits
        ``path.offer_timeout`` seconds for an answer.
        ``extra``: its connection may go past the owner's ``max_peers``; ``expect_key``: the key
        the peer is said to hold (by default the identity of ``seal_to``), which its connection
        must prove. :class:`~p2prpc.errors.IceServersUnavailable` when an ICE server provider
        fails (nothing is made)."""
        if self._closed or (to is not None and self._addressed() >= self.max_offers):
            return None
        options = await self._attempt_options()
        if self._closed or (to is not None and self._addressed() >= self.max_offers):
            return None  # closed, or filled, while the provider was asked
        connection = Connection(options, initiator=True, transport=self.transport)
        connection.origin = path.origin
        connection.extra = extra
        connection.expected_key = (
            expect_key if expect_key is not None or seal_to is None else seal_to.identity
        )
        offer_id = bytes.fromhex(connection.name)
        offer = Offer(connection, path.origin, to, path.connect_timeout)
        if to is not None:
            connection.on_close = lambda: self.owner.offer_failed(to, offer_id)
        offer.timer = asyncio.get_running_loop().call_later(
            path.offer_timeout, self.abandon, offer_id
        )
        self._offers[offer_id] = offer
        try:
            sdp = await connection.create_offer()
        except PeerClosed:  # abandoned or retired while its candidates were gathered
            self.abandon(offer_id)
            return None
        if self._offers.get(offer_id) is not offer:  # abandoned or retired meanwhile
            return None
        signalling = self.signalling
        if to is None:
            return offer_id, signalling.seal_offer(offer_id, sdp)
        if seal_to is None or signalling.own_key is None:
            return offer_id, signalling.seal_offer(offer_id, sdp, bytes.fromhex(to))
        try:
            text = signalling.seal_offer_to(offer_id, sdp, bytes.fromhex(to), seal_to)
        except SealError as e:
            logger.warning("cannot seal an offer to %s: %s", to[:8], e)
            self.abandon(offer_id)
            return None
        offer.sealed_to = seal_to
        return offer_id, text

    def _addressed(self) -> int:
        return sum(1 for offer in self._offers.values() if offer.to is not None)

    def abandon(self, offer_id: bytes) -> None:
        """Close our offer ``offer_id``: no answer will reach it (or it expired)."""
        offer = self._offers.pop(offer_id, None)
        if offer is not None:
            if offer.timer is not None:
                offer.timer.cancel()
            offer.connection.close()
            self.owner.closing(offer.connection)

    def retire(self, origin: str, keep: int) -> None:
        """Close the oldest of ``origin``'s offers until at most ``keep`` remain."""
        mine = [offer_id for offer_id, offer in self._offers.items() if offer.origin == origin]
        for offer_id in mine[: max(len(mine) - max(keep, 0), 0)]:
            self.abandon(offer_id)

    async def accept(self, from_id: str, offer_id: bytes, text: str) -> bool:
        """Take ``from_id``'s answer to our offer ``offer_id``; whether its connection is now
        being made.

        False when no such offer waits (for that peer, when it was addressed), the owner's
        caps refuse the peer (the offer is then closed), or the connection closed while the
        answer was applied. :class:`SealError` (counted) when the
        answer does not open: the offer keeps waiting for a genuine one. :class:`UnusableSDP`
        when the transport cannot use it (the connection is closed).
        """
        offer = self._offers.get(offer_id)
        if offer is None or offer.to not in (None, from_id):
            return False
        sdp = self.signalling.open_relayed_answer(
            bytes.fromhex(from_id), offer_id, text, sealed_to=offer.sealed_to
        )
        if self._offers.get(offer_id) is not offer:  # taken meanwhile (it cannot, but be sure)
            return False
        del self._offers[offer_id]
        if offer.timer is not None:
            offer.timer.cancel()
        connection = offer.connection
        connection.peer_id = from_id
        if not self.owner.accepts_answer_from(from_id, connection.extra):
            logger.debug("answer from %s not taken: the caps refuse it", from_id[:8])
            connection.close()
            return False
        self.owner.adopt(
            connection, offer.connect_timeout, offer_id if offer.to is not None else None
        )
        try:
            await connection.accept_answer(sdp)
        except PeerClosed:  # closed while it was applied (libwebrtc: the peer may refuse the
            return False  # connection as it opens, before this resumes): no fault of the SDP
        except Exception as e:  # the transport's own errors on an SDP it cannot use
            connection.close()
            raise UnusableSDP(f"unusable answer from {from_id[:8]}: {e!r}") from None
        return True

    # -- others' offers -----------------------------------------------------------------------

    async def answer(
        self,
        path: SignallingPath,
        from_id: str,
        offer_id: bytes,
        text: str,
        *,
        addressed: bool = False,
        extra: bool = False,
        senders: Collection[bytes] | None = None,
        expect_key: bytes | None = None,
    ) -> tuple[str, Connection] | None:
        """Answer ``from_id``'s offer that ``path`` carried: ``(answer text, connection)``, or
        ``None`` when the owner's caps refuse it or the connection closed while it was made.

        The offer is opened first (:class:`SealError`, counted, when it does not: forged, too
        old, opened already); ``addressed``: it names us as its recipient (a relayed offer),
        ``senders``: the keys its sender may prove (see
        :meth:`~p2prpc.swarm.sealing.Signalling.open_relayed_offer`). The connection must open
        within ``path.answer_timeout`` seconds, and prove ``expect_key`` (the key the path says
        the sender holds) when given, or the key of the record the offer was sealed with.
        :class:`UnusableSDP` when the transport cannot use it;
        :class:`~p2prpc.errors.IceServersUnavailable` when an ICE server provider fails (it is
        asked once the offer opened and the caps took it; nothing is answered).
        """
        if self._closed:
            return None
        signalling = self.signalling
        sender: SealKey | None = None
        if addressed:
            sdp, sender = signalling.open_relayed_offer(
                bytes.fromhex(from_id), offer_id, text, senders=senders
            )
        else:
            sdp = signalling.open_offer(bytes.fromhex(from_id), offer_id, text)
        if not self.owner.accepts_offer_from(from_id, extra):
            return None
        options = self.options
        if self.ice is not None and self.ice.dynamic:
            options = await self._attempt_options()
            # The caps again: other connections may have taken the slots meanwhile.
            if self._closed or not self.owner.accepts_offer_from(from_id, extra):
                return None
        connection = Connection(options, initiator=False, transport=self.transport)
        connection.peer_id = from_id
        connection.origin = path.origin
        connection.extra = extra
        connection.expected_key = expect_key or (sender.identity if sender is not None else None)
        self.owner.adopt(connection, path.answer_timeout)
        try:
            answer = await connection.accept_offer(sdp)
        except PeerClosed:  # closed while it was made (a full slot, the swarm leaving)
            return None
        except Exception as e:  # the transport's own errors on an SDP it cannot use
            connection.close()
            raise UnusableSDP(f"unusable offer from {from_id[:8]}: {e!r}") from None
        if connection.state is ConnectionState.CLOSED:
            return None
        if sender is None:
            return signalling.seal_answer(bytes.fromhex(from_id), offer_id, answer), connection
        try:
            sealed = signalling.seal_answer_to(bytes.fromhex(from_id), offer_id, answer, sender)
        except SealError:  # its key is a low-order point: nothing can be sealed to it
            connection.close()
            raise
        return sealed, connection

    # -- life ---------------------------------------------------------------------------------

    def connections(self) -> list[Connection]:
        """The connections of the offers that still wait."""
        return [offer.connection for offer in self._offers.values()]

    def close(self, origin: str | None = None) -> list[Connection]:
        """Close every offer that waits (``origin``: only that path's); returns their
        connections, to wait for their sockets."""
        if origin is None:
            self._closed = True
        closed = []
        for offer_id, offer in list(self._offers.items()):
            if origin is None or offer.origin == origin:
                closed.append(offer.connection)
                self.abandon(offer_id)
        return closed
