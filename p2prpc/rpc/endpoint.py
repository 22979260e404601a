"""The RPC layer of one node: the calls in progress, both ways, and which servers are busy.

The node hands this layer every call envelope (``call``, ``msg``, ``end``, ``cancel``,
``reply_window`` for the calls it serves; ``headers``, ``reply``, ``status``, ``msg_window`` for
the calls it makes) and tells it when a peer goes away. Calls are keyed by (peer id, call id),
the P2PT message id they travel on, and each belongs to the connection it was made on: what
arrives for it on another connection is not its, it is answered on that connection only, and it
ends when that connection closes, whatever other connections the peer keeps.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..errors import MessageTooBig, RemoteProtocolError, TooManyPending
from ..mux import Life
from ..wire.envelope import Envelope, Kind
from ..wire.frames import new_message_id
from ..wire.status import Status, StatusCode
from .deadline import Deadlines

if TYPE_CHECKING:
    from ..mux import Mux
    from .serving import Server

logger = logging.getLogger(__name__)

#: Seconds a server whose call ran out of time is passed over while another serves.
SLOW_SERVER_PENALTY = 10.0

_SERVER_KINDS = (Kind.CALL, Kind.MSG, Kind.END, Kind.CANCEL, Kind.REPLY_WINDOW)
_CLIENT_KINDS = (Kind.HEADERS, Kind.REPLY, Kind.STATUS, Kind.MSG_WINDOW)
_WINDOW_KINDS = (Kind.REPLY_WINDOW, Kind.MSG_WINDOW)


class CallSide(Protocol):
    """One side of a call in progress, fed by the endpoint."""

    #: The number of the connection the call was made on (``None`` while nothing was sent).
    connection: int | None

    def on_envelope(self, envelope: Envelope) -> None: ...

    def on_peer_lost(self) -> None: ...

    def abandon(self) -> None:
        """The node is stopping: end now."""

    def refuse(self, status: Status) -> None:
        """A message of this call could not be read: end with ``status``, telling the peer."""


class ClientSide(CallSide, Protocol):
    """A call this node makes, fed by the endpoint."""

    def on_suspect(self) -> None:
        """Its connection answers nothing (keepalive made it suspect): move elsewhere if the
        call may, else wait for the peer to speak again (up to the node's keepalive grace)."""


class Endpoint:
    """A node's calls in progress; made by :func:`endpoint_of`."""

    def __init__(self, node: Mux) -> None:
        self.node = node
        self._client: dict[tuple[str, int], ClientSide] = {}
        self._server: dict[tuple[str, int], CallSide] = {}
        self._in_flight: dict[str, int] = {}
        self._served_from: dict[str, int] = {}  # peer id → calls from it served now
        self._timed_out: dict[str, float] = {}  # peer id → when a call to it last ran out of time
        self._idle = asyncio.Event()
        self._idle.set()
        self._served_idle = asyncio.Event()  # no call is being served
        self._served_idle.set()
        #: What this node serves, and how (:class:`~p2prpc.rpc.Server`; ``None``: nothing).
        self.server: Server | None = None
        #: The deadlines of the calls made and served here, on one timer.
        self.deadlines = Deadlines()
        node.register(self, _SERVER_KINDS + _CLIENT_KINDS)
        node.on("connectionsuspect", self._on_suspect)

    # -- the node's Layer ---------------------------------------------------------------------

    def on_envelope(self, peer_id: str, envelope: Envelope, connection: int) -> None:
        key = (peer_id, envelope.call_id)
        if envelope.kind is Kind.CALL:
            self._on_call(peer_id, envelope, connection)
            return
        # What comes for no call in progress on that connection is dropped: a window update
        # too, as HTTP/2 ignores a WINDOW_UPDATE on a closed stream (the call may just have ended).
        side = (self._server if envelope.kind in _SERVER_KINDS else self._client).get(key)
        if side is not None and side.connection == connection:
            side.on_envelope(envelope)

    def calls_on(self, peer_id: str, connection: int) -> int:
        """How many calls to or from ``peer_id`` are in progress on connection ``connection``."""
        return sum(
            1
            for table in (self._client, self._server)
            for key, side in table.items()
            if key[0] == peer_id and side.connection == connection
        )

    def calls_with(self, peer_id: str) -> int:
        """How many calls to or from ``peer_id`` are in progress, on any of its connections."""
        return sum(
            1 for table in (self._client, self._server) for key in table if key[0] == peer_id
        )

    def on_connection_lost(self, peer_id: str, connection: int) -> None:
        self.end_calls_on(peer_id, connection)

    def end_calls_on(self, peer_id: str, connection: int) -> None:
        """End the calls to or from ``peer_id`` on ``connection``, as its closing does."""
        for table in (self._client, self._server):
            for key, side in list(table.items()):
                if key[0] == peer_id and side.connection == connection:
                    side.on_peer_lost()

    def _on_suspect(self, peer_id: str, connection: int) -> None:
        for key, side in list(self._client.items()):
            if key[0] == peer_id and side.connection == connection:
                try:
                    side.on_suspect()
                except Exception:
                    logger.exception(
                        "a call to %s failed on its connection turning suspect", peer_id
                    )

    def on_peer_lost(self, peer_id: str) -> None:
        for table in (self._client, self._server):
            for key in [k for k in table if k[0] == peer_id]:
                side = table.get(key)
                if side is not None:
                    side.on_peer_lost()
        self._in_flight.pop(peer_id, None)
        self._served_from.pop(peer_id, None)
        self._timed_out.pop(peer_id, None)

    def on_refused(
        self,
        peer_id: str,
        kind: Kind | None,
        call_id: int,
        error: RemoteProtocolError,
        *,
        binary: bool | None = None,
    ) -> None:
        """A call message that cannot be read ends its call at once, on both sides, as gRPC ends
        a call whose message is over the receiver's limit: RESOURCE_EXHAUSTED for a size cap,
        INVALID_ARGUMENT (a request) or INTERNAL (a reply) for malformed input. ``kind`` is
        ``None`` when only the message id is known (a P2PT message refused while reassembled, a
        binary frame of an unknown kind): then the call on that id is found in either table, and
        an unknown id is answered as a refused request, so that a peer whose call could not
        even be read (a plain P2PT app among them) hears of it at once. ``binary``: the form
        of the answer (``False`` for what came in the JSON form)."""
        too_big = isinstance(error, MessageTooBig | TooManyPending)
        key = (peer_id, call_id)
        client = self._client.get(key)
        what = "window update" if kind in _WINDOW_KINDS else None
        if kind in _CLIENT_KINDS or (kind is None and client is not None):
            if client is not None:
                code = StatusCode.RESOURCE_EXHAUSTED if too_big else StatusCode.INTERNAL
                client.refuse(Status(code, f"{what or 'reply'} refused: {error}"))
            return
        code = StatusCode.RESOURCE_EXHAUSTED if too_big else StatusCode.INVALID_ARGUMENT
        status = Status(code, f"{what or 'request'} refused: {error}")
        server = self._server.get(key)
        if server is not None:
            server.refuse(status)
        else:
            self.node.reply_status(peer_id, call_id, status, binary=binary)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def close(self) -> None:
        for side in [*self._client.values(), *self._server.values()]:
            side.abandon()
        self._client.clear()
        self._server.clear()
        self._in_flight.clear()
        self._served_from.clear()
        self._timed_out.clear()
        self._idle.set()
        self._served_idle.set()
        if self.server is not None:
            self.server.node_closed()

    # -- the server's life --------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """Whether calls are being served now."""
        return bool(self._server)

    async def wait_served(self) -> None:
        """Return once no call is being served."""
        await self._served_idle.wait()

    def abandon_served(self) -> list[asyncio.Task[None]]:
        """End every call being served now (UNAVAILABLE, the method cancelled); returns the
        tasks of their methods."""
        tasks = []
        for side in list(self._server.values()):
            task = getattr(side, "task", None)
            if task is not None and not task.done():
                tasks.append(task)
            side.abandon()
        return tasks

    # -- serving ------------------------------------------------------------------------------

    def _on_call(self, peer_id: str, envelope: Envelope, connection: int) -> None:
        from .server import ServerCall, kept, queued_size  # the server side builds on this module

        method = envelope.method or ""
        node = self.node
        server = self.server
        form = False if envelope.json else None  # answer in the form the call came in
        if server is None:
            node.reply_status(
                peer_id,
                envelope.call_id,
                Status(StatusCode.UNIMPLEMENTED, f"unknown service: {method}"),
                binary=form,
                connection=connection,
            )
            return
        if server.stopping:
            node.reply_status(
                peer_id,
                envelope.call_id,
                Status(StatusCode.UNAVAILABLE, "the server is shutting down"),
                binary=form,
                connection=connection,
            )
            return
        try:
            handler = server.method_handler(method, envelope.metadata)
        except Exception:  # a user's generic handler raised: the call is answered, not lost
            logger.exception("finding the handler of %s failed", method)
            node.reply_status(
                peer_id,
                envelope.call_id,
                Status(StatusCode.UNKNOWN, f"finding the handler of {method} failed"),
                binary=form,
                connection=connection,
            )
            return
        if handler is None:
            service = method.split("/")[1]
            what = "service" if service not in server.services else "method"
            unknown = Status(StatusCode.UNIMPLEMENTED, f"unknown {what}: {method}")
            if not server.interceptors:
                node.reply_status(
                    peer_id, envelope.call_id, unknown, binary=form, connection=connection
                )
                return
            # As grpc.aio's, the interceptors see it (one may refuse it otherwise, or serve it).
            from .server import UnknownMethod

            handler = UnknownMethod(unknown)
        if (peer_id, envelope.call_id) in self._server:
            return  # a repeated call id: the call in progress goes on
        limit = server.maximum_concurrent_rpcs
        if (limit is not None and len(self._server) >= limit) or self._served_from.get(
            peer_id, 0
        ) >= node.max_calls_per_peer:
            node.reply_status(
                peer_id,
                envelope.call_id,
                Status(StatusCode.RESOURCE_EXHAUSTED, "too many calls in progress"),
                binary=form,
                connection=connection,
            )
            return
        envelope = kept(envelope, handler, node.max_message_size)
        size = queued_size(envelope)
        if not node.queued.take(peer_id, size):
            node.reply_status(
                peer_id,
                envelope.call_id,
                Status(StatusCode.RESOURCE_EXHAUSTED, self.over_budget()),
                binary=form,
                connection=connection,
            )
            return
        self._served_from[peer_id] = self._served_from.get(peer_id, 0) + 1
        call = ServerCall(self, peer_id, envelope, handler, connection, size)
        self._server[(peer_id, envelope.call_id)] = call
        self._idle.clear()
        self._served_idle.clear()
        call.start()

    def over_budget(self) -> str:
        """Why a message was refused by the node's budget of unread messages (the details of the
        RESOURCE_EXHAUSTED status that ends its call)."""
        budget = self.node.queued
        return (
            f"unread messages from this peer would hold more than {budget.per_key} bytes, or "
            f"from all peers more than {budget.total}"
        )

    def server_call_ended(self, peer_id: str, call_id: int) -> None:
        if self._server.pop((peer_id, call_id), None) is not None:
            left = self._served_from.get(peer_id, 1) - 1
            if left > 0:
                self._served_from[peer_id] = left
            else:
                self._served_from.pop(peer_id, None)
        if not self._server:
            self._served_idle.set()
        self._check_idle()

    # -- calling ------------------------------------------------------------------------------

    def open_client_call(self, peer_id: str, side: ClientSide) -> int:
        """Register a call to ``peer_id``; returns its call id."""
        call_id = new_message_id()
        while (peer_id, call_id) in self._client:
            call_id = new_message_id()
        self._client[(peer_id, call_id)] = side
        self._in_flight[peer_id] = self._in_flight.get(peer_id, 0) + 1
        self._idle.clear()
        return call_id

    def client_call_ended(self, peer_id: str, call_id: int) -> None:
        if self._client.pop((peer_id, call_id), None) is not None:
            left = self._in_flight.get(peer_id, 1) - 1
            if left > 0:
                self._in_flight[peer_id] = left
            else:
                self._in_flight.pop(peer_id, None)
        self._check_idle()

    def note_timeout(self, peer_id: str) -> None:
        """A call to ``peer_id`` ran out of time: prefer other servers for a while. Notes older
        than the penalty say nothing any more and are dropped, so the table holds only the
        servers that timed out in the last ``SLOW_SERVER_PENALTY`` seconds."""
        now = time.monotonic()
        for stale in [
            pid for pid, when in self._timed_out.items() if when <= now - SLOW_SERVER_PENALTY
        ]:
            del self._timed_out[stale]
        self._timed_out[peer_id] = now

    def pick_server(
        self,
        service: str,
        exclude: frozenset[str] = frozenset(),
        allowed: Callable[[str], bool] | None = None,
    ) -> str | None:
        """A server of ``service``, by what this node knows of each: those that answer before
        those leaving a ping unanswered (:meth:`~p2prpc.mux.Mux.life`, as after it died without
        a word; each candidate quiet for a moment is pinged, so that what is known stays recent
        while calls are made), then those whose calls did not run out of time in the last
        ``SLOW_SERVER_PENALTY`` seconds, then those heard from lately before quiet ones, then
        the fewest calls in flight from here (ties: random). Suspect servers are never picked (see
        :meth:`~p2prpc.mux.Mux.servers_of`); servers in ``exclude`` (already tried) only when
        there is no other. ``allowed``: only servers it accepts, ever."""
        servers = self.node.servers_of(service)
        if allowed is not None:
            servers = [pid for pid in servers if allowed(pid)]
        candidates = [pid for pid in servers if pid not in exclude] or servers
        if not candidates:
            return None
        if len(candidates) == 1:
            self.node.life(candidates[0], probe=True)  # what the call finds there stays known
            return candidates[0]
        random.shuffle(candidates)
        recent = time.monotonic() - SLOW_SERVER_PENALTY
        lives = {pid: self.node.life(pid, probe=True) for pid in candidates}
        return min(
            candidates,
            key=lambda pid: (
                lives[pid] >= Life.UNANSWERED,
                self._timed_out.get(pid, 0.0) > recent,
                lives[pid],
                self._in_flight.get(pid, 0),
            ),
        )

    def _check_idle(self) -> None:
        if not self._client and not self._server:
            self._idle.set()


def endpoint_of(node: Mux) -> Endpoint:
    """The RPC layer of ``node`` (made on first use)."""
    return node.layer("rpc", Endpoint)
