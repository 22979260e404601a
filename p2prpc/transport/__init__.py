"""The seam under a connection: what p2prpc needs of a WebRTC implementation, and nothing more.

A :class:`Link` is one WebRTC peer connection with one data channel on it, as simple-peer gives
P2PT: SDP offers and answers that carry every ICE candidate (no trickle, which is what the
WebTorrent tracker protocol relays), one ordered reliable data channel, its buffered amount and
low-water event, the DTLS fingerprints the handshake binds to, and close. A :class:`Transport`
makes links from :class:`RTCOptions`. Everything above (connections, the swarm, P2PT) is written
against these two protocols; :mod:`p2prpc.transport.aiortc` implements them with aiortc (pure
Python, always installed), :mod:`p2prpc.transport.wrtc` with libwebrtc, Chrome's engine, through the
``wrtc`` package (``pip install p2prpc[native]``). :func:`choose_transport` picks one by name:
``"aiortc"``, ``"libwebrtc"``, or ``"auto"`` (libwebrtc when ``wrtc`` is installed, else aiortc);
the environment variable ``P2PRPC_TRANSPORT`` names the default, which is ``"aiortc"`` when unset.

ICE policy: ``ice_servers`` ``None`` means P2PT's defaults (the STUN servers simple-peer sets),
``[]`` host candidates only (no STUN query ever leaves the machine). ``host_addresses`` pins the
host candidates to the given addresses, for example ``["127.0.0.1"]`` so that two peers on one
machine meet over loopback. ``ice_transport_policy`` ``"relay"`` (the W3C name) offers and uses
only candidates relayed by the TURN servers among ``ice_servers``: the other peer never learns an
address of this machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from aiortc import RTCIceServer

from ..errors import PeerClosed as PeerClosed  # what a closed link raises

__all__ = [
    "GATHER_TIMEOUT",
    "HIGH_WATER_MARK",
    "ICE_RESTART_TIMEOUT",
    "ICE_TIMEOUT",
    "LOW_WATER_MARK",
    "MAX_SEND_QUEUE",
    "P2PT_ICE_SERVERS",
    "TRANSPORT_ENV",
    "UDP_BUFFER_SIZE",
    "IceServerError",
    "IceTransportPolicy",
    "Link",
    "RTCOptions",
    "Transport",
    "TransportName",
    "TransportUnavailable",
    "choose_transport",
    "default_transport",
]

#: The STUN servers simple-peer configures by default (what P2PT users on the internet get).
P2PT_ICE_SERVERS: tuple[RTCIceServer, ...] = (
    RTCIceServer(urls=["stun:stun.l.google.com:19302", "stun:global.stun.twilio.com:3478"]),
)

#: Above this many bytes waiting in the data channel, writes queue up instead (simple-peer: 64 KiB).
HIGH_WATER_MARK = 1024 * 1024
#: The queue drains again once the data channel's buffer falls to this many bytes.
LOW_WATER_MARK = 256 * 1024
#: The most bytes a connection queues above the data channel's buffer before ``send`` refuses more.
MAX_SEND_QUEUE = 16 * 2**20
#: The receive and send buffer asked for each UDP socket under a connection (the kernel clamps it).
UDP_BUFFER_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class IceServerError:
    """What a TURN server did when candidates were gathered: ``url`` (no credentials),
    ``code`` (the STUN error code the server answered: 401 refused our credentials; ``None``:
    no answer), ``text`` (what the server or the transport said), and ``unresolved``: the
    server's host name did not resolve (``code`` is then ``None``)."""

    url: str
    code: int | None
    text: str
    unresolved: bool = False

    def __str__(self) -> str:
        if self.code == 401:
            return f"TURN server {self.url} refused our credentials (401 {self.text})"
        if self.code is not None:
            return f"TURN server {self.url} refused the allocation ({self.code} {self.text})"
        if self.unresolved:
            return f"the host of TURN server {self.url} does not resolve ({self.text})"
        return f"no answer from TURN server {self.url} ({self.text})"


#: Seconds ICE checks have, from when they begin, to find a working candidate pair.
ICE_TIMEOUT = 10.0

#: Seconds a session description waits for the other STUN and TURN servers once one of them
#: gave a candidate (libwebrtc).
GATHER_TIMEOUT = 2.0

#: Seconds a connection whose ICE was lost keeps restarting it before it is closed (libwebrtc).
ICE_RESTART_TIMEOUT = 30.0


#: Which ICE candidates a connection may use (W3C ``RTCIceTransportPolicy``): ``"all"``, or
#: ``"relay"``: only those relayed by a TURN server.
IceTransportPolicy = Literal["all", "relay"]
_POLICIES: tuple[IceTransportPolicy, ...] = ("all", "relay")


@dataclass(frozen=True, slots=True)
class RTCOptions:
    """How WebRTC connections are set up.

    ``ice_servers``: ``None`` for P2PT's default STUN servers, ``[]`` for host candidates only
    (aiortc's ``RTCIceServer``: ``urls``, ``username``, ``credential``).
    ``ice_transport_policy``: ``"all"`` (the default), or ``"relay"``: gather, offer and use only
    candidates relayed by the TURN servers among ``ice_servers`` (none there: no connection is
    made). ``ValueError`` for any other value.
    ``host_addresses``: when set, the only local addresses offered as ICE host candidates.
    ``high_water_mark`` and ``low_water_mark`` (bytes): data is handed to the data channel while
    its buffer holds at most ``high_water_mark`` bytes, and queued above that until it falls to
    ``low_water_mark``. ``max_send_queue`` (bytes): the most that queue may hold.
    ``udp_buffer_size``: bytes of receive and send buffer to ask for each UDP socket, granted up to
    ``net.core.rmem_max`` / ``net.core.wmem_max``; ``None`` keeps the transport's own.
    ``ice_timeout``: seconds ICE checks have, from when they begin, to find a working candidate
    pair (10); past that the attempt fails as ICE failed, as it does at once when the
    transport's ICE fails sooner (aiortc's own checks give up only after about 60 s).
    ``gather_timeout``: seconds a session description waits, once one STUN or TURN server has
    given a candidate, for the others to give theirs or refuse (2), before it leaves without
    them; with no server answering it leaves after 5 s (``wrtc``'s own gathering timeout). A
    TURN server that has not answered by then is in :attr:`Link.ice_errors` as giving no
    answer. libwebrtc only: aiortc waits for each server at most 5 s (aioice's own).
    ``ice_restart_timeout``: seconds an open connection whose ICE was lost (disconnected or
    failed) keeps restarting it (new credentials, fresh candidates on the interfaces there are
    then, renegotiated through a signalling path) before it is closed as lost (30); 0: no
    restarts, the connection closes when ICE fails. Only transports that restart ICE
    (libwebrtc), between two ends that both say so (``docs/PROTOCOL.md`` section 9).
    """

    ice_servers: Sequence[RTCIceServer] | None = None
    host_addresses: Sequence[str] | None = None
    ice_transport_policy: IceTransportPolicy = "all"
    udp_buffer_size: int | None = UDP_BUFFER_SIZE
    ice_timeout: float = ICE_TIMEOUT
    ice_restart_timeout: float = ICE_RESTART_TIMEOUT
    gather_timeout: float = GATHER_TIMEOUT
    high_water_mark: int = HIGH_WATER_MARK
    low_water_mark: int = LOW_WATER_MARK
    max_send_queue: int = MAX_SEND_QUEUE

    def __post_init__(self) -> None:
        if self.ice_transport_policy not in _POLICIES:
            raise ValueError(
                f"ice_transport_policy must be one of {', '.join(_POLICIES)},"
                f" not {self.ice_transport_policy!r}"
            )
        if not self.gather_timeout >= 0:
            raise ValueError(f"gather_timeout is seconds (0 or more), not {self.gather_timeout!r}")
        if not self.ice_restart_timeout >= 0:
            raise ValueError(
                f"ice_restart_timeout is seconds (0 or more), not {self.ice_restart_timeout!r}"
            )

    def servers(self) -> list[RTCIceServer]:
        """The ICE servers to use (P2PT's defaults when none were given)."""
        return list(P2PT_ICE_SERVERS if self.ice_servers is None else self.ice_servers)


class Link(Protocol):
    """One WebRTC peer connection with one data channel.

    Callbacks, set by the owner before anything can happen: ``on_open()`` once the data channel
    opens, ``on_message(data)`` for each message (``str`` for text, ``bytes`` for binary),
    ``on_buffered_low()`` when the buffered amount falls to :meth:`set_low_threshold`'s value
    (``None``, the default, while nobody waits for it: it costs nothing then), ``on_close()``
    when the data channel or the connection closes or fails (at most once),
    ``on_ice_state(state)`` when ICE changes state (the W3C ``iceConnectionState`` names:
    ``"checking"``, ``"connected"``, ``"completed"``, ``"failed"``, ...).

    ICE restart (:attr:`ice_restarts`): a link that restarts ICE keeps its peer connection, DTLS
    association and data channel while ICE is lost when ``keep_on_ice_failure`` is set (else a
    failed ICE closes it), and renegotiates new ICE credentials and candidates with
    :meth:`restart_offer`, :meth:`accept_restart_offer` and :meth:`accept_restart_answer`.
    """

    keep_on_ice_failure: bool

    on_open: Callable[[], None]
    on_message: Callable[[str | bytes], None]
    on_buffered_low: Callable[[], None] | None
    on_close: Callable[[], None]
    on_ice_state: Callable[[str], None]

    @property
    def ice_errors(self) -> list[IceServerError]:
        """What the ICE servers refused or left unanswered while candidates were gathered
        (empty when the transport does not tell)."""
        ...

    @property
    def label(self) -> str:
        """The data channel's label: chosen by the offerer (P2PT: the offer id, 40 hex
        characters); empty on the answering side until the remote's channel arrives."""
        ...

    async def create_offer(self) -> str:
        """Offerer: the offer SDP, with every ICE candidate in it (:class:`PeerClosed` when the
        link was closed while its candidates were gathered; what it gathered is released)."""
        ...

    async def accept_offer(self, sdp: str) -> str:
        """Answerer: take the remote offer; the answer SDP, with every ICE candidate in it
        (:class:`PeerClosed` as for :meth:`create_offer`)."""
        ...

    async def accept_answer(self, sdp: str) -> None:
        """Offerer: take the remote answer; the data channel opens once ICE and DTLS are done."""
        ...

    @property
    def ice_restarts(self) -> bool:
        """Whether this link can restart ICE (libwebrtc: yes; aiortc: no)."""
        ...

    async def restart_offer(self) -> str:
        """Offerer of an open link: a new offer restarting ICE (new credentials, every candidate
        gathered anew in it). :class:`PeerClosed` when the link closed meanwhile;
        ``NotImplementedError`` where :attr:`ice_restarts` is false."""
        ...

    async def accept_restart_offer(self, sdp: str) -> str:
        """Answerer of an open link: take the remote restart offer; the answer SDP.
        ``ValueError`` for a description of another DTLS certificate than the link's."""
        ...

    async def accept_restart_answer(self, sdp: str) -> None:
        """Offerer: take the remote answer to :meth:`restart_offer` (``ValueError`` as for
        :meth:`accept_restart_offer`, and when no restart offer waits for an answer)."""
        ...

    def fingerprints(self) -> tuple[bytes, bytes]:
        """(local, remote) SHA-256 DTLS certificate fingerprints, 32 bytes each, as the session
        descriptions name them (the transport refuses a remote certificate that does not match).
        :class:`~p2prpc.errors.PeerClosed` before both descriptions are set."""
        ...

    @property
    def writable(self) -> bool:
        """Whether the data channel is open (a send would not fail)."""
        ...

    @property
    def buffered_amount(self) -> int:
        """Bytes handed to the data channel and not yet sent."""
        ...

    @property
    def acknowledged(self) -> int:
        """A number that changes whenever the remote peer acknowledges data sent to it (its
        transport is alive and reading), and only then; its value means nothing else."""
        ...

    def set_low_threshold(self, size: int) -> None:
        """Call ``on_buffered_low`` when the buffered amount falls to ``size`` bytes."""
        ...

    def send(self, data: str | bytes) -> None:
        """Hand one message to the data channel (never blocks; see :attr:`buffered_amount`)."""
        ...

    @property
    def max_message_size(self) -> int | None:
        """The largest data-channel message the remote takes, in bytes, as its session
        description announces it (:func:`p2prpc.wire.sdp.max_message_size`: 65536 when it names
        none; ``None``: any size, or no remote description yet). The transport refuses to send
        a larger one."""
        ...

    @property
    def round_trip(self) -> float | None:
        """The shortest round trip the transport has measured on this connection, in seconds
        (``None`` before any): the path's own, without the queueing of busy moments (which
        takes its running estimate to tens of milliseconds on a loaded loopback)."""
        ...

    @property
    def burst_size(self) -> int | None:
        """The largest data-channel message the transport puts on the wire at once, as far as
        its congestion window allows (``None``: no such bound). A larger message leaves a few
        packets per acknowledgement: on a long path it takes round trips to reach its window."""
        ...

    def selected_pair(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        """The (local, remote) address and port of the ICE candidate pair in use, if any."""
        ...

    def udp_buffers(self, size: int | None = None) -> list[tuple[int, int]]:
        """Ask for ``size``-byte receive and send buffers on this link's UDP sockets (when
        ``size`` is given); returns what each socket has, ``(SO_RCVBUF, SO_SNDBUF)`` as the
        kernel reports them (an empty list when the transport does not expose its sockets)."""
        ...

    def close(self) -> None:
        """Start closing (idempotent); ``on_close`` runs if it has not."""
        ...

    async def wait_closed(self) -> None:
        """Wait until the connection has released its sockets."""
        ...


class Transport(Protocol):
    """A WebRTC implementation: makes :class:`Link` objects.

    A transport may also have ``prepare(options)``, which raises at once what making a link
    with ``options`` would raise later (:func:`prepare` calls it when there is one): links are
    made in the background, where an error reaches no caller."""

    name: str

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> Link:
        """A new peer connection; the offerer (``initiator``) opens its data channel ``label``."""
        ...


def prepare(transport: Transport, options: RTCOptions) -> None:
    """Make ready for links with ``options`` on ``transport`` now, raising what making one would
    raise later (libwebrtc: :class:`~p2prpc.transport.wrtc.LoopbackRefused` for a loopback pin
    after the process made a connection without loopback candidates)."""
    check = getattr(transport, "prepare", None)
    if callable(check):
        check(options)


#: A transport's name, as :func:`choose_transport` and ``P2PT(transport=...)`` take it.
TransportName = Literal["aiortc", "libwebrtc", "auto"]
_NAMES: tuple[TransportName, ...] = ("aiortc", "libwebrtc", "auto")

#: The environment variable that names the default transport (``"aiortc"`` when unset).
TRANSPORT_ENV = "P2PRPC_TRANSPORT"


class TransportUnavailable(ImportError):
    """The transport asked for is not installed (libwebrtc: ``pip install p2prpc[native]``)."""


def choose_transport(name: str | None = None) -> Transport:
    """The transport called ``name``: ``"aiortc"``, ``"libwebrtc"`` or ``"auto"`` (libwebrtc when
    the ``wrtc`` package imports, else aiortc); ``None``: the one the environment variable
    ``P2PRPC_TRANSPORT`` names, ``"aiortc"`` when it is unset or empty.

    :class:`TransportUnavailable` (an ``ImportError``) for ``"libwebrtc"`` without ``wrtc``
    installed; ``ValueError`` for any other name.
    """
    if name is None:
        name = os.environ.get(TRANSPORT_ENV) or "aiortc"
    if name not in _NAMES:
        source = f" (from {TRANSPORT_ENV})" if name == os.environ.get(TRANSPORT_ENV) else ""
        raise ValueError(f"transport must be one of {', '.join(_NAMES)}, not {name!r}{source}")
    if name != "aiortc":
        try:
            from .wrtc import LIBWEBRTC  # loaded when first asked for
        except TransportUnavailable:
            if name == "libwebrtc":
                raise
        else:
            return LIBWEBRTC
    from .aiortc import AIORTC  # loaded when first needed

    return AIORTC


def default_transport() -> Transport:
    """The transport links are made with when none is given: :func:`choose_transport`'s for
    ``P2PRPC_TRANSPORT`` (aiortc when it is unset)."""
    return choose_transport()
