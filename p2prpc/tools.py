"""What the command line does with a swarm, as coroutines that print JSON lines and return an exit
code: join it, list its nodes and services, describe, call, check health, publish, subscribe.

Every command joins the swarm with a node of its own that speaks the JSON form and serves nothing
(no reflection, no health). Nothing here needs the caller's ``.proto``: requests go out as proto3
JSON, which the serving peer parses, and the peer's reflection service supplies the message types
that ``call``, ``pub`` and ``sub`` use to check and read JSON strictly (unknown fields and enum
names are errors unless allowed) and that ``describe`` prints.

Exit codes are gRPC status numbers (0 for OK), as grpcurl's are: a call's own status, UNAVAILABLE
when no tracker can be reached or no peer serves what was asked, DEADLINE_EXCEEDED when time runs
out, INVALID_ARGUMENT for a request that is not the method's message type, NOT_FOUND for a symbol
or service nobody describes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from .errors import InvalidMetadata, RpcError
from .node import Node, PeerInfo
from .progress import Transfers, waiting
from .pubsub import RawTopic
from .rpc.channel import Channel
from .rpc.client import JSONMethod, UnaryUnaryMethod
from .services.describe import check_json, proto_text, reflect
from .services.health import SERVICE_NAME as HEALTH
from .services.reflection import V1, V1ALPHA
from .swarm.attempt import summarize
from .wire.status import Metadatum, StatusCode, code_number

__all__ = [
    "Swarm",
    "ToolError",
    "call_json",
    "check_health",
    "describe",
    "find_peer",
    "joined",
    "list_methods",
    "list_peers",
    "list_services",
    "publish",
    "subscribe",
]

logger = logging.getLogger(__name__)

_REFLECTION = (V1.service, V1ALPHA.service)


class ToolError(Exception):
    """What stops a command before or around its call: a status code and a message naming what
    was asked for."""

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def exit_code(self) -> int:
        return code_number(self.code)


@dataclass(frozen=True)
class Swarm:
    """Where a command joins: trackers, the identifier, the node's options."""

    trackers: Sequence[str]
    identifier: str = "p2prpc"
    options: Mapping[str, Any] = field(default_factory=dict)
    max_message_size: int = 4 * 2**20


class _Clock:
    """One time budget for a whole command (errors name the budget asked for, not what was left
    of it)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._end = time.monotonic() + timeout

    def left(self) -> float:
        return max(0.0, self._end - time.monotonic())


def _print(value: Any, out: IO[str] | None = None) -> None:
    print(json.dumps(value), file=out or sys.stdout, flush=True)


def _error(message: str) -> None:
    print(f"ERROR: {message}", file=sys.stderr, flush=True)


# -- joining ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def joined(swarm: Swarm, timeout: float) -> AsyncIterator[Node]:
    """A started node in the swarm, once a tracker has answered its announce; ``ToolError``
    UNAVAILABLE as soon as every tracker has failed to connect (naming them), or after
    ``timeout`` seconds."""
    node = Node(
        swarm.trackers,
        swarm.identifier,
        binary=False,
        reflection=False,
        health=False,
        max_message_size=swarm.max_message_size,
        **dict(swarm.options),
    )
    loop = asyncio.get_running_loop()
    reached: asyncio.Future[None] = loop.create_future()
    urls = set(swarm.trackers)
    failures: dict[str, str] = {}

    def connected(*_: object) -> None:
        if not reached.done():
            reached.set_result(None)

    def warned(error: Exception, stats: Mapping[str, int]) -> None:
        for url in urls:
            if url in str(error):
                failures.setdefault(url, str(error))
        if not reached.done() and stats.get("connected") == 0 and failures.keys() >= urls:
            reasons = "; ".join(failures[url] for url in sorted(urls))
            reached.set_exception(ToolError(StatusCode.UNAVAILABLE, reasons))

    node.p2pt.on("trackerconnect", connected)
    node.p2pt.on("trackerwarning", warned)
    _watch(node)  # from the start: a refusal may come before anything waits
    async with node:
        try:
            with waiting(f"reaching {', '.join(sorted(urls))}"):
                await asyncio.wait_for(reached, timeout)
        except TimeoutError:
            raise ToolError(
                StatusCode.UNAVAILABLE, f"no tracker answered within {timeout:g} s: {sorted(urls)}"
            ) from None
        finally:
            node.p2pt.remove_listener("trackerconnect", connected)
            node.p2pt.remove_listener("trackerwarning", warned)
        yield node


class _Watch:
    """What a command's node learns of being kept out: the peers it refused (``peerrefused``:
    their proof failed), and the peers that closed every connection before saying hello, as a
    node of a closed swarm does with a node it does not admit (it tells nothing more: a refusal
    is a closed connection). With what the trackers count, that says why no peer answers."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.greeted: set[str] = set()  # peers that said hello, ever
        self.refused: dict[str, str] = {}  # peer id: why this node refused it
        self.closed: set[str] = set()  # peers that closed before saying hello
        self.changed = asyncio.Event()
        node.on("peer", self._on_hello)
        node.on("connectionalive", self._on_change)  # a suspect server may serve again
        node.p2pt.on("peerrefused", self._on_refused)
        node.p2pt.on("peerclose", self._on_close)
        node.p2pt.on("trackerconnect", self._on_change)  # the swarm's size, counted anew
        node.p2pt.on("peerunreachable", self._on_change)  # an attempt failed: settled
        node.p2pt.on("connectivity", self._on_change)  # an attempt ended, or one began

    def _on_hello(self, info: PeerInfo) -> None:
        self.greeted.add(info.peer_id)
        self.closed.discard(info.peer_id)
        self.refused.pop(info.peer_id, None)
        self.changed.set()

    def _on_refused(self, peer_id: str | None, error: Exception) -> None:
        if peer_id is not None and peer_id not in self.greeted:
            self.refused[peer_id] = str(error)
            self.changed.set()

    def _on_close(self, peer: Any) -> None:
        if peer.id not in self.greeted:
            self.closed.add(peer.id)
        self.changed.set()

    def _on_change(self, *_: object) -> None:
        self.changed.set()

    def others(self) -> int | None:
        """How many other peers the trackers count (``None``: none has said yet)."""
        sizes = self.node.p2pt.swarm_sizes
        return max(sizes.values()) - 1 if sizes else None

    def kept_out(self) -> set[str]:
        """Peers that refused this node or that it refused, and never said hello."""
        return (self.closed | set(self.refused)) - self.greeted

    def answered(self) -> bool:
        """Whether every peer the trackers count has said hello or refused (either way)."""
        others = self.others()
        if others is None:
            return False
        node = self.node
        greeted = {pid for pid in node.p2pt.peers if node.peers.get(pid, PeerInfo(pid)).hello}
        return len(greeted | self.kept_out()) >= others

    def settled(self) -> bool:
        """Whether every peer the trackers count has said hello, refused, or been found and not
        reached (its last connection attempt failed, and no circuit is being opened to it):
        nothing more to learn by waiting."""
        others = self.others()
        if others is None:
            return False
        node = self.node
        greeted = {pid for pid in node.p2pt.peers if node.peers.get(pid, PeerInfo(pid)).hello}
        # A peer found unreachable may still come through a relay: not while a circuit is
        # being opened to it.
        relaying = {c.peer_id for c in node.p2pt.attempts() if c.relayed}
        if node.circuits is not None:
            relaying |= node.circuits.opening()
        unreachable = {u.peer_id for u in node.connectivity().unreachable} - relaying
        return len(greeted | self.kept_out() | unreachable) >= others

    def hopeless(self) -> bool:
        """Whether waiting longer cannot help: the swarm has answered, and refusals kept this
        node from some of its peers, or the trackers count no other peer (as a gRPC client fails
        at once when nothing listens at its target)."""
        if not self.answered():
            return False
        if self.kept_out():
            return True
        # Nobody there, and nothing on its way (another tracker yet to answer, a connection
        # being made): the node's connectivity says which.
        return self.others() == 0 and not self.node.connectivity().connecting

    def why(self) -> str:
        """Why no peer (or not the one wanted) answered, naming the setting to look at."""
        node = self.node
        identifier = node.p2pt.identifier
        reasons: list[str] = []
        if self.closed - self.greeted:
            ids = ", ".join(sorted(pid[:8] for pid in self.closed - self.greeted))
            identity = node.identity
            if identity is None:
                fix = "it may admit only identities it lists: --identity FILE with a key it allows"
            else:
                fix = (
                    f"it may not list this node's key {identity.public_key.hex()} among its "
                    "allowed peers (--identity)"
                )
            reasons.append(
                f"peer {ids} closed the connection before saying hello, as a node does that "
                f"does not admit this one ({fix})"
            )
        for pid, error in sorted(self.refused.items()):
            if pid not in self.greeted:
                reasons.append(f"this node refused peer {pid[:8]}: {error}")
        others = self.others()
        if not reasons and others == 0:
            if node.p2pt.secret_mode:
                reasons.append(
                    f"the trackers count no other peer in the closed swarm {identifier!r} "
                    "of this secret: a wrong --secret (or P2PRPC_SECRET) finds a swarm of its own"
                )
            else:
                reasons.append(
                    f"the trackers count no other peer in the swarm {identifier!r}: check "
                    "--identifier, and give a closed swarm its --secret (or P2PRPC_SECRET)"
                )
        # Why the attempts to connect failed, as peerunreachable and the log say it.
        unreachable = [u for u in node.connectivity().unreachable if u.peer_id not in node.peers]
        if unreachable:
            reasons.append(summarize(unreachable))
        elif not reasons and others and not node.p2pt.peers:
            attempts = node.p2pt.attempts()
            if attempts:
                ids = ", ".join(sorted({c.peer_id[:8] for c in attempts if c.peer_id}))
                reasons.append(
                    f"the trackers count {others} other peer{'s' if others > 1 else ''}, "
                    f"none connected yet (connecting to {ids}: --wait longer)"
                )
            else:
                reasons.append(
                    f"the trackers count {others} other peer{'s' if others > 1 else ''}, but "
                    "none connected (--host-address, --stun)"
                )
        return "; ".join(reasons)

    async def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds (``True``) or :meth:`hopeless` (``False``);
        ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                self.changed.clear()
                if condition():
                    return True
                if self.hopeless():
                    return False
                await self.changed.wait()


_watches: weakref.WeakKeyDictionary[Node, _Watch] = weakref.WeakKeyDictionary()


def _watch(node: Node) -> _Watch:
    """The :class:`_Watch` of ``node``, made on first use."""
    watch = _watches.get(node)
    if watch is None:
        watch = _watches[node] = _Watch(node)
    return watch


def _answered(node: Node) -> bool:
    """Whether every peer the trackers count has said hello, or refused."""
    return _watch(node).answered()


def _unavailable(node: Node, what: str) -> ToolError:
    """UNAVAILABLE for ``what`` (``no peer serving x within 5 s``), saying why when refusals or
    the trackers' count explain it."""
    why = _watch(node).why()
    return ToolError(StatusCode.UNAVAILABLE, f"{what}: {why}" if why else what)


async def _wait_for(node: Node, condition: Callable[[], bool], what: str, clock: _Clock) -> None:
    """Wait until ``condition()`` holds; ``ToolError`` UNAVAILABLE (:func:`_unavailable`,
    ``what`` naming what was waited for) when the time is up, or at once when the swarm has
    answered and refused this node."""
    try:
        if await _watch(node).wait(condition, clock.left() if clock.left() > 0 else 0.001):
            return
    except TimeoutError:
        raise _unavailable(node, f"{what} within {clock.timeout:g} s") from None
    raise _unavailable(node, what)  # refused: known before the time was up


#: Seconds beyond ``ice_timeout`` that a command waits, past its ``--wait``, for the connection
#: attempts in progress then to open or fail (their DTLS and handshake, or their report).
ATTEMPT_MARGIN = 5.0


async def settle(node: Node, wait: float, limit: float | None = None) -> None:
    """Wait until the swarm has answered (every peer the trackers count has said hello,
    refused, or been found and not reached), or ``wait`` seconds at most; then for the
    connection attempts in progress at that moment to open or fail, at most ``ice_timeout``
    + :data:`ATTEMPT_MARGIN` seconds more, so that what they found (a refused TURN credential,
    no working candidate pair) is shown rather than cut short. ``limit``: the seconds the
    whole wait may take at most (a command's ``--timeout`` left)."""
    started = time.monotonic()
    watch = _watch(node)
    with waiting("waiting for the swarm's peers"):
        try:
            await watch.wait(watch.settled, wait)
            return
        except TimeoutError:
            pass
        pending = set(node.p2pt.attempts())
        if not pending:
            return

        def concluded() -> bool:
            return watch.settled() or not pending & set(node.p2pt.attempts())

        bound = node.p2pt.rtc_options.ice_timeout + ATTEMPT_MARGIN
        if limit is not None:
            bound = min(bound, max(0.0, limit - (time.monotonic() - started)))
        with contextlib.suppress(TimeoutError):
            await watch.wait(concluded, bound)


def _require_peers(node: Node, wait: float) -> None:
    """``ToolError`` UNAVAILABLE, saying why, when no peer has said hello: a command that lists
    what peers say must not answer with silence."""
    if not any(i.hello for i in _said_hello(node)):
        within = "" if _watch(node).answered() else f" within {wait:g} s"
        raise _unavailable(node, f"no peer answered{within}")


def _said_hello(node: Node) -> list[PeerInfo]:
    return sorted(
        (i for pid, i in node.peers.items() if pid in node.p2pt.peers), key=lambda i: i.peer_id
    )


async def find_peer(node: Node, prefix: str, timeout: float | _Clock) -> str:
    """The connected peer whose id starts with ``prefix`` (a short id, as logs show them); waits
    for it up to ``timeout`` seconds. ``ToolError``: INVALID_ARGUMENT when the prefix is not hex
    or matches several peers, UNAVAILABLE when no peer matches in time."""
    clock = timeout if isinstance(timeout, _Clock) else _Clock(timeout)
    wanted = prefix.lower()
    if not wanted or len(wanted) > 40 or any(c not in "0123456789abcdef" for c in wanted):
        raise ToolError(StatusCode.INVALID_ARGUMENT, f"not a peer id or prefix of one: {prefix!r}")

    def matches() -> list[str]:
        return sorted(pid for pid in node.p2pt.peers if pid.startswith(wanted))

    try:
        with waiting(f"waiting for peer {prefix}"):
            await node.wait_until(lambda: bool(matches()), clock.left())
            # A hello tells what the peer serves; a plain P2PT peer never says one.
            with contextlib.suppress(TimeoutError):
                await node.wait_until(lambda: _all_said_hello(node, matches()), 1.0)
    except TimeoutError:
        connected = [pid[:8] for pid in sorted(node.p2pt.peers)]
        raise _unavailable(
            node,
            f"no peer {prefix} within {clock.timeout:g} s "
            f"(connected: {', '.join(connected) or 'none'})",
        ) from None
    found = matches()
    if len(found) > 1:
        raise ToolError(
            StatusCode.INVALID_ARGUMENT,
            f"peer {prefix} is ambiguous: {', '.join(pid[:12] for pid in found)}",
        )
    return found[0]


def _all_said_hello(node: Node, peer_ids: Sequence[str]) -> bool:
    return all(node.peers.get(pid, PeerInfo(pid)).hello for pid in peer_ids)


async def server_of(node: Node, service: str, peer: str | None, clock: _Clock) -> str:
    """The peer to call for ``service``: the ``peer`` asked for, or the first that serves it."""
    if peer is not None:
        return await find_peer(node, peer, clock)
    with waiting(f"waiting for a peer serving {service}"):
        await _wait_for(
            node, lambda: bool(node.servers_of(service)), f"no peer serving {service}", clock
        )
    return node.servers_of(service)[0]


# -- peers, list ----------------------------------------------------------------------------------


async def _check(
    node: Node, peer_id: str, service: str, timeout: float, metadata: Sequence[Metadatum] = ()
) -> tuple[str, float]:
    """A health check of ``service`` on one peer: its status name and the round trip in ms."""
    method = UnaryUnaryMethod(
        Channel(node, peer_id),
        f"/{HEALTH}/Check",
        health_pb2.HealthCheckRequest,
        health_pb2.HealthCheckResponse,
        idempotent=True,
    )
    start = time.perf_counter()
    request = health_pb2.HealthCheckRequest(service=service)
    reply = await method(request, timeout=timeout, metadata=metadata)
    rtt = (time.perf_counter() - start) * 1000
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status), rtt


async def list_peers(swarm: Swarm, wait: float, *, metadata: Sequence[Metadatum] = ()) -> int:
    """Join, wait until the swarm has answered (at most ``wait`` seconds), and print one JSON
    line per connected peer: what it said in its hello, the Ed25519 public key it proved on its
    connection (``public_key``, hex as ``p2prpc keygen`` prints it, ``null`` when it proved
    none: what its servicers see as ``context.peer_identities()``), how the connection was made
    (``via``: a tracker URL, or ``relay:<peer id>``), the transport this node connects with
    (``transport``: ``"aiortc"`` or ``"libwebrtc"``; a connection ``via`` a relay rides the
    relay's two connections), its health and the round-trip time of a
    health check sent with ``metadata`` (for peers serving health; a refused check shows its
    code as ``health`` and says why on stderr); then one line per peer known only through the
    exchange (``"known": true``, with the neighbours that list it); then one line per peer found
    and not reached (``"unreachable": true``): the ``stage`` its last connection attempt reached,
    its ``failure``, the ``reason`` in a sentence and the ``advice`` (``""`` when there is none;
    :class:`~p2prpc.swarm.attempt.Unreachable`)."""
    async with joined(swarm, wait) as node:
        await settle(node, wait)
        infos = _said_hello(node)
        unreachable = [u for u in node.connectivity().unreachable if u.peer_id not in node.peers]
        if not infos and not node.known_peers and not unreachable:  # nothing to print
            _require_peers(node, wait)

        async def probe(info: PeerInfo) -> dict[str, Any]:
            line: dict[str, Any] = {
                "peer": info.peer_id,
                "hello": info.hello,
                "services": sorted(info.services),
                "topics": sorted(info.topics),
                "binary": info.binary,
                "public_key": info.public_key.hex() if info.public_key is not None else None,
            }
            if isinstance(info.extra.get("topic_types"), dict):
                line["topic_types"] = info.extra["topic_types"]
            line["via"] = list(info.via)
            line["transport"] = node.p2pt.transport.name
            if HEALTH in info.services:
                try:
                    line["health"], rtt = await _check(node, info.peer_id, "", 5.0, metadata)
                    line["rtt_ms"] = round(rtt, 2)
                except RpcError as e:
                    line["health"] = e.code().name
                    _error(f"{info.peer_id[:8]}: health check: {e.code().name}: {e.details()}")
            return line

        for line in await asyncio.gather(*(probe(i) for i in infos)):
            _print(line)
        # Peers beyond the neighbours, as the exchange told of them (p2prpc nodes only).
        for known in sorted(node.known_peers.values(), key=lambda k: k.peer_id):
            if known.peer_id in node.peers:
                continue
            _print(
                {
                    "peer": known.peer_id,
                    "known": True,
                    "services": sorted(known.services),
                    "topics": sorted(known.topics),
                    "via": sorted(known.via),
                }
            )
        for gone in unreachable:
            _print(
                {
                    "peer": gone.peer_id,
                    "unreachable": True,
                    "stage": gone.stage.value,
                    "failure": gone.failure.value,
                    "reason": gone.reason,
                    "advice": gone.advice,
                }
            )
    return 0


async def list_services(swarm: Swarm, wait: float) -> int:
    """Join, wait until the swarm has answered, and print one JSON line per service served in
    it: its name and how many peers serve it."""
    async with joined(swarm, wait) as node:
        await settle(node, wait)
        _require_peers(node, wait)
        counts: dict[str, int] = {}
        for info in _said_hello(node):
            for service in info.services:
                counts[service] = counts.get(service, 0) + 1
        for service in sorted(counts):
            _print({"service": service, "peers": counts[service]})
    return 0


async def list_methods(
    swarm: Swarm,
    service: str,
    *,
    peer: str | None,
    timeout: float,
    metadata: Sequence[Metadatum] = (),
) -> int:
    """Print one JSON line per method of ``service`` (as grpcurl's ``list SERVICE``): its
    ``/pkg.Service/Method`` name, request and reply types, and which sides stream; from the
    reflection of the peer asked for, or of one serving ``service``, asked with ``metadata``.
    NOT_FOUND when that peer does not describe the service; a refused reflection call's status
    (UNAUTHENTICATED, ...) as it is."""
    clock = _Clock(timeout)
    service = service.lstrip(".")
    async with joined(swarm, clock.left()) as node:
        peer_id = await server_of(node, service, peer, clock)
        reflected, _ = await reflect(
            Channel(node, peer_id), [service], timeout=clock.left(), metadata=metadata
        )
        found = reflected.find(service)
        if not isinstance(found, ServiceDescriptor):
            raise ToolError(StatusCode.NOT_FOUND, f"service not described: {service}")
        for method in found.methods:
            _print(
                {
                    "method": f"/{service}/{method.name}",
                    "request": method.input_type.full_name,
                    "reply": method.output_type.full_name,
                    "client_streaming": method.client_streaming,
                    "server_streaming": method.server_streaming,
                }
            )
    return 0


# -- describe -------------------------------------------------------------------------------------


async def describe(
    swarm: Swarm,
    symbol: str | None,
    *,
    peer: str | None,
    timeout: float,
    metadata: Sequence[Metadatum] = (),
) -> int:
    """Print ``symbol`` (a service, method, message or enum) as ``.proto`` text, from the
    reflection service of a peer that knows it; without a symbol, every service of one peer.
    ``metadata`` goes with the reflection calls. NOT_FOUND when the peers asked do not know the
    symbol; when one refused to answer (UNAUTHENTICATED, ...), its status instead."""
    clock = _Clock(timeout)
    symbol = (symbol or "").lstrip(".").replace("/", ".")
    async with joined(swarm, clock.left()) as node:
        if peer is not None:
            candidates = [await find_peer(node, peer, clock)]
        else:
            await settle(node, min(clock.left(), 5.0), clock.left())
            candidates = _reflecting(node, symbol)
            if not candidates:
                with waiting("waiting for a peer serving reflection"):
                    await _wait_for(
                        node,
                        lambda: bool(_reflecting(node, symbol)),
                        f"no peer serving {V1.service}",
                        clock,
                    )
                candidates = _reflecting(node, symbol)
        if not symbol:
            reflected, _ = await reflect(
                Channel(node, candidates[0]),
                [],
                timeout=clock.left(),
                list_services=True,
                metadata=metadata,
            )
            texts = (proto_text(s, reflected.comments) for s in reflected.services())
            print("\n\n".join(texts), flush=True)
            return 0
        refused: RpcError | None = None
        for peer_id in candidates:
            try:
                reflected, _ = await reflect(
                    Channel(node, peer_id), [symbol], timeout=clock.left(), metadata=metadata
                )
            except RpcError as e:
                logger.info("reflection of %s failed: %s", peer_id[:8], e.details())
                refused = refused or e
                continue
            found = reflected.find(symbol)
            if found is not None:
                print(proto_text(found, reflected.comments), flush=True)
                return 0
    if refused is not None:
        # Not "not found": a peer that might know it would not say (the real cause).
        raise refused
    raise ToolError(StatusCode.NOT_FOUND, f"symbol not found: {symbol}")


def _reflecting(node: Node, symbol: str) -> list[str]:
    """Peers serving reflection, those that serve a service named like ``symbol`` first."""
    found = [i for i in _said_hello(node) if set(_REFLECTION) & i.services]
    return [
        i.peer_id
        for i in sorted(
            found, key=lambda i: not any(symbol.startswith(s) for s in i.services - {*_REFLECTION})
        )
    ]


# -- call -----------------------------------------------------------------------------------------


def _metadata_lines(title: str, metadata: Iterable[tuple[str, str | bytes]]) -> None:
    print(title, file=sys.stderr)
    for key, value in metadata:
        shown = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        print(f"{key}: {shown}", file=sys.stderr)
    sys.stderr.flush()


async def _method_types(
    channel: Channel, method: str, timeout: float, metadata: Sequence[Metadatum] = ()
) -> tuple[type[Message], type[Message]] | None:
    """The request and reply message types of ``/pkg.Service/Method``, from the peer's
    reflection asked with the call's ``metadata`` (``None`` when the peer has no reflection or
    does not describe the method)."""
    _, service, name = method.split("/")
    try:
        reflected, _ = await reflect(channel, [service], timeout=timeout, metadata=metadata)
    except RpcError as e:
        if e.code() is not StatusCode.UNIMPLEMENTED:
            raise
        logger.warning("cannot check the request: peer %s has no reflection", channel.peer)
        return None
    found = reflected.find(f"{service}.{name}")
    if not isinstance(found, MethodDescriptor):
        return None  # the server answers UNIMPLEMENTED
    return (
        reflected.message_class(found.input_type.full_name),
        reflected.message_class(found.output_type.full_name),
    )


async def call_json(
    swarm: Swarm,
    method: str,
    requests: Sequence[Any],
    *,
    timeout: float,
    peer: str | None = None,
    metadata: Sequence[Metadatum] = (),
    strict: bool = True,
    allow_unknown_fields: bool = False,
    show_metadata: bool = False,
) -> int:
    """Call ``method`` with JSON requests; print each reply as a JSON line; return the status
    code's number (0 for OK). Everything, finding a server included, within ``timeout`` seconds.

    ``strict``: check each request against the method's request type from the peer's reflection
    first (INVALID_ARGUMENT for unknown fields or enum names, unless ``allow_unknown_fields``).
    ``show_metadata``: print the response headers and trailers to stderr, as grpcurl's ``-v``.
    """
    clock = _Clock(timeout)
    if method.count("/") != 2 or not method.startswith("/"):
        raise ToolError(StatusCode.INVALID_ARGUMENT, f"not a method: {method!r}")
    service = method.split("/")[1]
    async with joined(swarm, clock.left()) as node:
        peer_id = await server_of(node, service, peer, clock)
        channel = Channel(node, peer_id, wait_for_ready=True)
        types = await _method_types(channel, method, clock.left(), metadata)
        if types is not None and strict:
            for request in requests:
                check_json(types[0], request, allow_unknown=allow_unknown_fields)
        call = JSONMethod(channel, method)(requests, timeout=clock.left(), metadata=metadata)
        error: RpcError | None = None
        with Transfers.shown(node, "reply"):
            try:
                async for reply in call:
                    _check_size(reply, types[1] if types else None, swarm.max_message_size)
                    _print(reply)
            except InvalidMetadata as e:
                raise ToolError(StatusCode.INVALID_ARGUMENT, str(e)) from None
            except RpcError as e:
                error = e
                call.cancel()
        if show_metadata:
            _metadata_lines("Response headers received:", await call.initial_metadata())
            _metadata_lines("Response trailers received:", await call.trailing_metadata())
        if error is not None:
            _error(f"{error.code().name}: {error.details()}")
            return code_number(error.code())
    return 0


def _check_size(reply: Any, reply_type: type[Message] | None, max_size: int) -> None:
    """RESOURCE_EXHAUSTED for a reply over ``max_size`` bytes: its serialized size when its type
    is known, else the length of its JSON text (the JSON form carries no protobuf bytes)."""
    if reply_type is not None:
        size = check_json(reply_type, reply, allow_unknown=True).ByteSize()
    else:
        size = len(json.dumps(reply).encode())
    if size > max_size:
        raise RpcError(
            StatusCode.RESOURCE_EXHAUSTED,
            f"a reply of {size} bytes exceeds the limit of {max_size} (--max-message-size)",
        )


# -- health ---------------------------------------------------------------------------------------


async def check_health(
    swarm: Swarm,
    service: str,
    *,
    peer: str | None,
    timeout: float,
    metadata: Sequence[Metadatum] = (),
) -> int:
    """Check ``service`` (``""``: the node as a whole) on the peer asked for, or on every peer
    that serves health (and ``service``), sending ``metadata``; one JSON line each. 0 when all
    are SERVING, NOT_FOUND for a service a peer does not know, a refused check's own status
    (UNAUTHENTICATED, ...), UNAVAILABLE otherwise."""
    clock = _Clock(timeout)
    async with joined(swarm, clock.left()) as node:
        if peer is not None:
            targets = [await find_peer(node, peer, clock)]
        else:

            def serving() -> list[str]:
                return [
                    i.peer_id
                    for i in _said_hello(node)
                    if HEALTH in i.services and (not service or service in i.services)
                ]

            await settle(node, min(clock.left(), 5.0), clock.left())
            if not serving() and service and _answered(node) and not _watch(node).kept_out():
                # Every peer of the swarm has said what it serves: nobody serves this one.
                raise ToolError(
                    StatusCode.NOT_FOUND,
                    f"no peer of the swarm serves {service} "
                    f"({len(_said_hello(node))} peers answered)",
                )
            if not serving():
                await server_of(node, service or HEALTH, None, clock)
            targets = serving()
        worst = StatusCode.OK
        for peer_id in targets:
            try:
                status, rtt = await _check(node, peer_id, service, clock.left(), metadata)
            except RpcError as e:
                _print({"peer": peer_id, "service": service, "error": e.code().name})
                _error(f"{peer_id[:8]}: {e.code().name}: {e.details()}")
                worst = e.code() if worst is StatusCode.OK else worst
                continue
            _print({"peer": peer_id, "service": service, "status": status, "rtt_ms": round(rtt, 2)})
            if status != "SERVING" and worst is StatusCode.OK:
                worst = StatusCode.UNAVAILABLE
        return code_number(worst)


# -- topics ---------------------------------------------------------------------------------------


def _announced_type(node: Node, topic: str) -> tuple[str, str] | None:
    """(peer id, message type) of a peer that says in its hello which type ``topic`` carries."""
    for info in _said_hello(node):
        types = info.extra.get("topic_types")
        if isinstance(types, dict) and isinstance(types.get(topic), str):
            return info.peer_id, types[topic]
    return None


async def _topic_type(
    node: Node, topic: str, timeout: float, metadata: Sequence[Metadatum] = ()
) -> type[Message] | None:
    """The message type of ``topic``, by the reflection of a peer that announces it (asked with
    ``metadata``)."""
    announced = _announced_type(node, topic)
    if announced is None:
        return None
    peer_id, type_name = announced
    try:
        reflected, _ = await reflect(
            Channel(node, peer_id), [type_name], timeout=timeout, metadata=metadata
        )
        return reflected.message_class(type_name)
    except (RpcError, KeyError) as e:
        logger.warning("cannot learn the type of topic %s (%s): %s", topic, type_name, e)
        return None


async def publish(
    swarm: Swarm,
    topic: str,
    value: Any,
    *,
    timeout: float,
    allow_unknown_fields: bool = False,
    metadata: Sequence[Metadatum] = (),
) -> int:
    """Publish one JSON value to ``topic`` once a peer subscribes to it (or relays); checked
    against the topic's message type when a peer announces it (its reflection asked with
    ``metadata``). Prints ``{"topic", "sent_to"}``."""
    clock = _Clock(timeout)
    async with joined(swarm, clock.left()) as node:
        await settle(node, min(clock.left(), 5.0), clock.left())

        def wanted() -> bool:
            return any(topic in i.topics or i.extra.get("relay") is True for i in _said_hello(node))

        with waiting(f"waiting for a subscriber of {topic}"):
            await _wait_for(node, wanted, f"no peer subscribes to {topic}", clock)
        message_type = await _topic_type(node, topic, clock.left(), metadata)
        if message_type is not None:
            message = check_json(message_type, value, allow_unknown=allow_unknown_fields)
            value = json_format.MessageToDict(message)
        sent = await RawTopic(node, topic).publish(value)
        for peer_id in list(node.p2pt.peers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(node.drain(peer_id), clock.left())
        _print({"topic": topic, "sent_to": sent})
    return 0


async def subscribe(
    swarm: Swarm,
    topic: str,
    *,
    count: int | None,
    timeout: float | None,
    verbose: bool = False,
    allow_unknown_fields: bool = True,
    metadata: Sequence[Metadatum] = (),
) -> int:
    """Print the messages of ``topic`` as JSON lines (with ``verbose``: ``{"from", "seq",
    "msg"}``), read by the topic's message type when a peer announces it (its reflection asked
    with ``metadata``). Stops after ``count``
    messages (DEADLINE_EXCEEDED when ``timeout`` passes first), or runs until interrupted."""
    clock = _Clock(timeout if timeout is not None else float("inf"))
    async with joined(swarm, clock.left()) as node:
        message_type: type[Message] | None = None
        looked_up = False
        seen = 0
        try:
            async with asyncio.timeout(timeout), RawTopic(node, topic).subscribe() as messages:
                async for received in messages:
                    if not looked_up and _announced_type(node, topic) is not None:
                        looked_up = True
                        message_type = await _topic_type(
                            node, topic, min(clock.left(), 10.0), metadata
                        )
                    value = received.message
                    if message_type is not None:
                        try:
                            if isinstance(value, bytes):
                                parsed = message_type.FromString(value)
                            else:
                                parsed = check_json(
                                    message_type, value, allow_unknown=allow_unknown_fields
                                )
                            value = json_format.MessageToDict(parsed)
                        except (RpcError, ValueError) as e:
                            logger.warning("a message on %s is not its type: %s", topic, e)
                            continue
                    elif isinstance(value, bytes):
                        value = {"bytes": base64.b64encode(value).decode()}
                    if verbose:
                        value = {"from": received.sender, "seq": received.seq, "msg": value}
                    _print(value)
                    seen += 1
                    if count is not None and seen >= count:
                        return 0
        except TimeoutError:
            if count is None:
                return 0
            _error(f"DEADLINE_EXCEEDED: {seen} of {count} messages on {topic} in {timeout:g} s")
            return code_number(StatusCode.DEADLINE_EXCEEDED)
    return 0


def read_json_values(text: str) -> Iterator[Any]:
    """The JSON values in ``text``, one after another (JSON lines, or values pretty-printed over
    several lines); ``ValueError`` for what is not JSON."""
    decoder = json.JSONDecoder()
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index == len(text):
            return
        value, index = decoder.raw_decode(text, index)
        yield value
