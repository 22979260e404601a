"""Drive the real JavaScript P2PT from Python tests.

- `JsTracker`: the npm `bittorrent-tracker` server in node, WebSocket only, on a free port.
- `JsPeer`: one P2PT peer running `js/agent.js`, in node or in headless Chromium, remote-controlled
  over a WebSocket this module serves on 127.0.0.1. Its methods mirror P2PT's API (`start`,
  `send`, `respond`, `add_tracker`, ...) and its events arrive in order (`next_event`, `next_msg`).
- `JsPeers`: launches agents for one test and closes them all at its end.

Everything here runs inside the test network namespace (see `netns`), where the peers meet over
the veth addresses: Chromium offers no loopback candidates. Every wait has a timeout, and closing
ends every process that was started, so a broken peer fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

logger = logging.getLogger(__name__)
# What the JavaScript side printed is the first thing to read when a test fails: pytest shows
# captured records of this level with the failure, whatever the root logger's level.
logger.setLevel(logging.INFO)

JS_DIR = Path(__file__).parent / "js"
"""The npm package with P2PT, bittorrent-tracker and the agent scripts (`make npm` installs it)."""

Runtime = Literal["node", "chromium"]
RUNTIMES: tuple[Runtime, ...] = ("node", "chromium")

TrackerKind = Literal["bittorrent-tracker", "embedded"]
TRACKER_KINDS: tuple[TrackerKind, ...] = ("bittorrent-tracker", "embedded")

JsonValue = Any
"""A JSON value (None, bool, int, float, str, list, dict), as P2PT delivers messages."""

Event = dict[str, Any]
"""One event reported by an agent, e.g. {"event": "peerconnect", "peer_id": "ab12..."}."""

DEFAULT_TIMEOUT = 20.0
"""Seconds to wait for a peer, a message or a reply unless a call says otherwise."""

COMMAND_TIMEOUT = 10.0
"""Seconds an agent gets to acknowledge a command."""

LAUNCH_TIMEOUT = 20.0
"""Seconds a runtime gets to start and connect its control channel."""

CONTROL_MAX_SIZE = 64 * 2**20
"""Control frames carry whole P2PT messages (tests send megabytes), JSON-escaped."""

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-domain-reliability",
    # Otherwise host candidates hide behind mDNS names (*.local) that node's WebRTC cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)

# The only files the control server hands to the browser.
_PAGE_FILES = {
    "/agent.html": "text/html; charset=utf-8",
    "/agent.js": "text/javascript; charset=utf-8",
    "/node_modules/p2pt/dist/p2pt.iife.js": "text/javascript; charset=utf-8",
}


class AgentError(Exception):
    """An agent refused a command, reported an error, or went away."""


@dataclass(frozen=True)
class Message:
    """A message or a reply received by an agent; `handle` lets `JsPeer.respond` answer it."""

    peer_id: str
    msg: JsonValue
    handle: int


def executable(name: str, hint: str) -> str:
    """The path of a program the interop tests need, or a clear failure naming the fix."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"`{name}` is not installed: {hint}")
    return path


def _check_js_installed() -> None:
    if not (JS_DIR / "node_modules" / "p2pt").is_dir():
        raise RuntimeError(f"the JavaScript peers are not installed in {JS_DIR}: run `make npm`")


# Chromium complains at length that a container has no D-Bus; nothing here needs it.
_NOISE = ("dbus/", "/usr/bin/chromium: ")


def _tail(path: Path, limit: int = 4000) -> str:
    """The end of a process's output, without known noise."""
    try:
        lines = path.read_text(errors="replace").splitlines(keepends=True)
    except OSError:
        return ""
    return "".join(line for line in lines if not any(n in line for n in _NOISE))[-limit:]


async def _stop(process: asyncio.subprocess.Process, *, group: bool, grace: float) -> None:
    """Let a process exit by itself for `grace` seconds, then terminate it, then kill it.

    With `group`, signals go to its whole process group, and whatever is left of the group once
    the leader is gone is killed (Chromium leaves helpers such as its zygote behind).
    """

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)

    for sig in (None, signal.SIGTERM):
        if sig is not None:
            send(sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
            break
    else:
        send(signal.SIGKILL)
    if group:
        send(signal.SIGKILL)
    await process.wait()


class JsTracker:
    """The npm `bittorrent-tracker` WebTorrent tracker (`js/tracker.mjs`), WebSocket only.

    `host` is where it listens and what its `url` names; clients in the test network reach
    127.0.0.1 as well as the veth addresses.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._url: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._log: Path | None = None

    @property
    def url(self) -> str:
        """The announce URL, ws://HOST:PORT."""
        if self._url is None:
            raise RuntimeError("the tracker is not started")
        return self._url

    async def start(self, *, timeout: float = LAUNCH_TIMEOUT) -> None:
        """Start the tracker and wait until it listens."""
        _check_js_installed()
        node = executable("node", "install node 20")
        fd, name = tempfile.mkstemp(prefix="p2prpc-tracker-", suffix=".log")
        self._log = log = Path(name)
        with os.fdopen(fd, "wb") as stderr:
            # The tracker stops when its stdin closes, even if this process dies first.
            self._process = await asyncio.create_subprocess_exec(
                node,
                str(JS_DIR / "tracker.mjs"),
                self.host,
                str(self.port),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                cwd=JS_DIR,
            )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        if not line.startswith(b"ws://"):
            await self.close()
            raise RuntimeError(f"bittorrent-tracker did not start:\n{_tail(log)}")
        self._url = line.decode().strip()
        logger.info("bittorrent-tracker listening at %s", self._url)

    async def close(self) -> None:
        """Stop the tracker (its peers' sockets close with it)."""
        process, self._process = self._process, None
        if process is not None:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.close()
            await _stop(process, group=False, grace=5.0)
            await process.stdout.read()  # drained: the pipe transport can close
        log, self._log = self._log, None
        if log is not None:
            output = _tail(log)
            if output:
                logger.info("bittorrent-tracker output:\n%s", output)
            log.unlink(missing_ok=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


@contextlib.asynccontextmanager
async def running_tracker(kind: TrackerKind, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Run a tracker of the given kind for the duration of the block; yields its announce URL.

    The embedded tracker is imported only here, so that its absence costs only its own tests
    (the import error propagates: callers decide whether to skip).
    """
    if kind == "bittorrent-tracker":
        async with JsTracker(host) as tracker:
            yield tracker.url
    else:
        from p2prpc.tracker.server import TrackerServer

        server = TrackerServer(host, 0)
        await server.start()
        try:
            yield server.url
        finally:
            await server.close()


class _Inbox:
    """Events in arrival order; each is handed to the first waiter that wants it, or kept."""

    def __init__(self) -> None:
        self._backlog: list[Event] = []
        self._waiters: list[tuple[Callable[[Event], bool], asyncio.Future[Event]]] = []
        self._failure: BaseException | None = None

    def put(self, event: Event) -> None:
        for index, (wants, future) in enumerate(self._waiters):
            if not future.done() and wants(event):
                del self._waiters[index]
                future.set_result(event)
                return
        self._backlog.append(event)

    def fail(self, error: BaseException) -> None:
        """No more events will come: wake every waiter, now and later, with `error`."""
        self._failure = error
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(error)
        self._waiters.clear()

    async def get(self, wants: Callable[[Event], bool], timeout: float, what: str) -> Event:
        for index, event in enumerate(self._backlog):
            if wants(event):
                return self._backlog.pop(index)
        if self._failure is not None:
            raise self._failure
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        entry = (wants, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pending = [event.get("event") for event in self._backlog]
            raise TimeoutError(
                f"no {what} within {timeout} s (unclaimed events: {pending})"
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)


class JsPeer:
    """One JavaScript P2PT peer in node or headless Chromium, remote-controlled.

    Launch with `await JsPeer.launch("node")` (or through the `js_peers` fixture), then drive it
    like P2PT: `await peer.start([url], "app")`, `await peer.next_peerconnect()`,
    `reply = await peer.send(other_id, "Hi")`, `await peer.respond(reply.handle, "Bye")`.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.peer_id: str | None = None
        """This peer's P2PT id (40 hex characters), known once started."""
        self.events: list[Event] = []
        """Every event the agent reported, in order (for assertions and post-mortems)."""
        self.errors: list[str] = []
        """Uncaught errors the agent reported."""
        self._dir = Path(tempfile.mkdtemp(prefix=f"p2prpc-{runtime}-agent-"))
        self._log = self._dir / "agent.log"
        self._refs = itertools.count(1)
        self._results: dict[int, asyncio.Future[JsonValue]] = {}
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._inbox = _Inbox()
        self._server: Server | None = None
        self._connection: ServerConnection | None = None
        self._hello: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._process: asyncio.subprocess.Process | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<JsPeer {self.runtime} {self.peer_id or 'not started'}>"

    @classmethod
    async def launch(cls, runtime: Runtime, *, timeout: float = LAUNCH_TIMEOUT) -> JsPeer:
        """Start an agent in `runtime` and wait until its control channel is up."""
        peer = cls(runtime)
        try:
            await peer._launch(timeout)
        except BaseException:
            await peer.close()
            raise
        return peer

    async def _launch(self, timeout: float) -> None:
        _check_js_installed()
        self._server = await serve(
            self._serve_control,
            "127.0.0.1",
            0,
            process_request=self._serve_page,
            max_size=CONTROL_MAX_SIZE,
            # Agents are local and a busy one (a browser generating offers) must not be cut off.
            ping_interval=None,
        )
        port = self._server.sockets[0].getsockname()[1]
        control = f"ws://127.0.0.1:{port}/control"
        if self.runtime == "node":
            program = executable("node", "install node 20")
            args = [str(JS_DIR / "node-agent.mjs"), control]
        else:
            program = executable("chromium", "run `make apt`")
            page = f"http://127.0.0.1:{port}/agent.html?" + urllib.parse.urlencode(
                {"control": control}
            )
            args = [*CHROMIUM_FLAGS, f"--user-data-dir={self._dir / 'profile'}", page]
        with self._log.open("wb") as output:
            self._process = await asyncio.create_subprocess_exec(
                program,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                cwd=JS_DIR,
                # A browser is a process group: keep it apart so it can be ended as a whole.
                start_new_session=self.runtime == "chromium",
            )
        exited = asyncio.ensure_future(self._process.wait())
        waiting: set[asyncio.Future[Any]] = {self._hello, exited}
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exited
        if self._hello not in done:
            status = "exited" if self._process.returncode is not None else "did not connect"
            raise AgentError(f"{self.runtime} agent {status}:\n{_tail(self._log)}")
        logger.info("%s agent up: %s", self.runtime, self._hello.result().get("user_agent"))

    def _serve_page(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urllib.parse.urlsplit(request.path).path
        if path == "/control":
            return None  # go on with the WebSocket handshake
        content_type = _PAGE_FILES.get(path)
        if content_type is None:
            return connection.respond(404, "not found\n")
        body = (JS_DIR / path.lstrip("/")).read_bytes()
        headers = Headers(
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ]
        )
        return Response(200, "OK", headers, body)

    async def _serve_control(self, connection: ServerConnection) -> None:
        if self._connection is not None:
            await connection.close(1008, "this agent is already connected")
            return
        self._connection = connection
        gone = AgentError(f"the {self.runtime} agent went away")
        try:
            async for frame in connection:
                self._dispatch(json.loads(frame))
        except ConnectionClosed as closed:
            gone = AgentError(f"the {self.runtime} agent went away: {closed}")
        finally:
            self._gone(gone)

    def _dispatch(self, event: Event) -> None:
        kind = event.get("event")
        ref = event.get("ref")
        if kind == "log":
            logger.info("%s agent %s: %s", self.runtime, event.get("level"), event.get("text"))
            return
        self.events.append(event)
        if kind == "hello":
            if not self._hello.done():
                self._hello.set_result(event)
        elif kind == "result" and ref in self._results:
            self._results.pop(ref).set_result(event.get("value"))
        elif kind == "error" and ref in self._results:
            self._results.pop(ref).set_exception(AgentError(event.get("message")))
        elif kind == "error" and ref in self._replies:
            self._replies.pop(ref).set_exception(AgentError(event.get("message")))
        elif kind == "reply" and ref in self._replies:
            message = Message(event["peer_id"], event.get("msg"), event["handle"])
            self._replies.pop(ref).set_result(message)
        else:
            if kind == "error":
                logger.warning("%s agent error: %s", self.runtime, event.get("message"))
                self.errors.append(str(event.get("message")))
            self._inbox.put(event)

    def _gone(self, error: AgentError) -> None:
        for future in [*self._results.values(), *self._replies.values()]:
            if not future.done():
                future.set_exception(error)
                future.exception()  # whoever awaits it still gets the error; nobody may
        self._results.clear()
        self._replies.clear()
        self._inbox.fail(error)

    async def _command(self, cmd: str, *, timeout: float = COMMAND_TIMEOUT, **args: Any) -> Any:
        ref, _ = await self._post(cmd, expect_reply=False, **args)
        return await self._acknowledged(ref, cmd, timeout)

    async def _post(
        self, cmd: str, *, expect_reply: bool, **args: Any
    ) -> tuple[int, asyncio.Future[Message] | None]:
        """Send a command; its result (and reply, if expected) will resolve futures by `ref`."""
        if self._connection is None or self._closed:
            raise AgentError(f"the {self.runtime} agent is not connected")
        ref = next(self._refs)
        loop = asyncio.get_running_loop()
        self._results[ref] = loop.create_future()
        reply: asyncio.Future[Message] | None = None
        if expect_reply:
            reply = self._replies[ref] = loop.create_future()
        try:
            await self._connection.send(json.dumps({"cmd": cmd, "ref": ref, **args}))
        except ConnectionClosed as closed:
            raise AgentError(f"the {self.runtime} agent went away: {closed}") from None
        return ref, reply

    async def _acknowledged(self, ref: int, cmd: str, timeout: float) -> Any:
        future = self._results.get(ref)
        if future is None:
            raise AgentError(f"the {self.runtime} agent went away")
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._results.pop(ref, None)
            raise TimeoutError(
                f"{self.runtime} agent did not answer {cmd!r} in {timeout} s"
            ) from None

    # P2PT's API

    async def start(
        self, announce_urls: Sequence[str], identifier: str, *, timeout: float = COMMAND_TIMEOUT
    ) -> str:
        """`new P2PT(announce_urls, identifier)` then `start()`; returns this peer's id."""
        value = await self._command(
            "start", announce_urls=list(announce_urls), identifier=identifier, timeout=timeout
        )
        self.peer_id = str(value["peer_id"])
        return self.peer_id

    async def post(self, peer_id: str, msg: JsonValue) -> asyncio.Future[Message]:
        """`p2pt.send(peer, msg)` without waiting: returns the future of its reply."""
        ref, reply = await self._post("send", expect_reply=True, peer_id=peer_id, msg=msg)
        return await self._reply_future(ref, "send", reply)

    async def send(
        self, peer_id: str, msg: JsonValue, *, timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        """`p2pt.send(peer, msg)`: send and wait for the peer's reply."""
        reply = await self.post(peer_id, msg)
        return await self._reply(reply, timeout)

    async def respond(self, handle: int, msg: JsonValue) -> asyncio.Future[Message]:
        """`peer.respond(msg)` for the message or reply `handle` names.

        Returns once sent, with the future of the answer to this response (P2PT's respond returns a
        promise of it too); await it with `reply()` if one is expected, or ignore it.
        """
        ref, reply = await self._post("respond", expect_reply=True, handle=handle, msg=msg)
        return await self._reply_future(ref, "respond", reply)

    async def _reply_future(
        self, ref: int, cmd: str, reply: asyncio.Future[Message] | None
    ) -> asyncio.Future[Message]:
        assert reply is not None
        try:
            await self._acknowledged(ref, cmd, COMMAND_TIMEOUT)
        except BaseException:
            self._replies.pop(ref, None)
            raise
        return reply

    async def reply(
        self, pending: asyncio.Future[Message], *, timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        """Wait for the reply to a `post` or `respond`."""
        return await self._reply(pending, timeout)

    async def _reply(self, pending: asyncio.Future[Message], timeout: float) -> Message:
        try:
            return await asyncio.wait_for(asyncio.shield(pending), timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.runtime} agent got no reply in {timeout} s") from None

    async def add_tracker(self, url: str) -> None:
        """`p2pt.addTracker(url)`."""
        await self._command("add_tracker", url=url)

    async def remove_tracker(self, url: str) -> None:
        """`p2pt.removeTracker(url)`."""
        await self._command("remove_tracker", url=url)

    async def request_more_peers(self) -> None:
        """`p2pt.requestMorePeers()`: announce again to every tracker."""
        await self._command("request_more_peers")

    async def tracker_stats(self) -> dict[str, int]:
        """`p2pt.getTrackerStats()`: {"connected": n, "total": m}."""
        stats: dict[str, int] = await self._command("tracker_stats")
        return stats

    async def peers(self) -> dict[str, int]:
        """The peers P2PT knows, with how many data channels each has."""
        listing = await self._command("peers")
        return {entry["peer_id"]: entry["channels"] for entry in listing}

    async def destroy(self) -> None:
        """`p2pt.destroy()`: close every channel and tracker connection (the agent stays up)."""
        await self._command("destroy")

    # Events

    async def next_event(
        self,
        kind: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        where: Callable[[Event], bool] | None = None,
    ) -> Event:
        """The next not yet claimed event of `kind` (and matching `where`), waiting if needed.

        Kinds: peerconnect, peerclose, msg, trackerconnect, trackerwarning, error.
        """

        def wants(event: Event) -> bool:
            return event.get("event") == kind and (where is None or where(event))

        return await self._inbox.get(wants, timeout, f"{kind!r} event on the {self.runtime} agent")

    async def next_peerconnect(self, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait for the next peer to connect; returns its id."""
        return str((await self.next_event("peerconnect", timeout=timeout))["peer_id"])

    async def next_msg(
        self, *, peer_id: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        """Wait for the next message (from `peer_id`, if given) that is not a reply."""
        event = await self.next_event(
            "msg",
            timeout=timeout,
            where=None if peer_id is None else (lambda event: event["peer_id"] == peer_id),
        )
        return Message(event["peer_id"], event.get("msg"), event["handle"])

    # Lifecycle

    async def kill(self) -> None:
        """End the agent's process at once (SIGKILL), as a crash would: its P2PT says no goodbye.

        Every wait on this agent then fails with `AgentError`; `close` still cleans up.
        """
        if self._process is None:
            raise AgentError(f"the {self.runtime} agent was never launched")
        with contextlib.suppress(ProcessLookupError):
            if self.runtime == "chromium":
                os.killpg(self._process.pid, signal.SIGKILL)
            else:
                self._process.kill()
        await self._process.wait()

    async def close(self) -> None:
        """End the agent: its P2PT is destroyed, its process ends, its files are removed."""
        if self._closed:
            return
        self._closed = True
        if self._connection is not None:
            # Losing its control channel makes the agent destroy P2PT and leave: node exits and
            # the page closes itself, which ends a headless browser.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connection.close(), 5.0)
        if self._process is not None:
            await _stop(self._process, group=self.runtime == "chromium", grace=5.0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._gone(AgentError(f"the {self.runtime} agent is closed"))
        output = _tail(self._log, 20000)
        if output:
            logger.info("%s agent output:\n%s", self.runtime, output)
        shutil.rmtree(self._dir, ignore_errors=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class JsPeers:
    """Launches JavaScript peers for one test and closes them all when it ends."""

    def __init__(self) -> None:
        self._peers: list[JsPeer] = []

    async def launch(self, runtime: Runtime, *, timeout: float = LAUNCH_TIMEOUT) -> JsPeer:
        """A new agent in `runtime`, not yet started (call `start` on it)."""
        peer = await JsPeer.launch(runtime, timeout=timeout)
        self._peers.append(peer)
        return peer

    async def aclose(self) -> None:
        """Close every agent launched here, concurrently."""
        peers, self._peers = self._peers, []
        results = await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
