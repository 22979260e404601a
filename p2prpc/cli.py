"""The ``p2prpc`` command line: ``p2prpc <command> [options]``.

Each command is a :class:`Command`: a name, a one-line help, a function adding its options to its
sub-parser and a function running it that returns the exit code. Adding a command means writing
those two functions and listing it in :data:`COMMANDS`; what the swarm commands do lives in
:mod:`p2prpc.tools`. Results go to stdout (one line of text, or JSON lines as grpcurl does); logs
and progress go to stderr, so stdout stays machine-readable. Logging is quiet by default (p2prpc's
warnings only); ``-v`` says more.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from . import tools
from .errors import InvalidIceServer, KeyFileExists, RpcError, WeakSecret
from .tracker import server as tracker_server
from .transport import P2PT_ICE_SERVERS
from .transport.ice import (
    ICE_SERVERS_ENV,
    TURN_REST_TTL,
    TURN_REST_USER,
    TURN_SECRET_ENV,
    IceServerLike,
    ice_server_entries,
    split_ice_urls,
)
from .wire.secret import check_secret, new_secret

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

logger = logging.getLogger("p2prpc.cli")


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: ``add_arguments(parser)`` declares its options, ``run(args)`` runs it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    verbosity: int = 0  # what it logs without -v: 0 warnings, 1 information (the tracker's log)


# -- tracker --------------------------------------------------------------------------------------


def _add_tracker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=8000, help="port to listen on; 0 picks a free one (8000)"
    )
    parser.add_argument(
        "--interval",
        type=_positive_float,
        default=tracker_server.DEFAULT_INTERVAL,
        help="seconds between announces, told to clients (%(default)s)",
    )
    parser.add_argument(
        "--peer-timeout",
        type=_positive_float,
        default=None,
        help="drop peers silent for this many seconds (three intervals)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=None,
        help="close sockets that send no request for this many seconds (two intervals)",
    )
    parser.add_argument(
        "--hello-timeout",
        type=_positive_float,
        default=tracker_server.DEFAULT_HELLO_TIMEOUT,
        help="close sockets that send no request this long after opening (%(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive_int,
        default=tracker_server.DEFAULT_MAX_CONNECTIONS,
        help="sockets open at once, lowered to fit the file descriptor limit (%(default)s)",
    )
    parser.add_argument(
        "--max-connections-per-ip",
        type=_positive_int,
        default=None,
        help="sockets open at once from one address (1/16 of the total, at most 256)",
    )
    parser.add_argument(
        "--max-swarms-per-source",
        type=_positive_int,
        default=None,
        help="swarms the peers of one address may be in (1/16 of --max-swarms)",
    )
    caps = [
        ("--max-message-size", tracker_server.DEFAULT_MAX_MESSAGE_SIZE, "largest frame, bytes"),
        ("--max-swarms", tracker_server.DEFAULT_MAX_SWARMS, "swarms the tracker holds"),
        ("--max-peers-per-swarm", tracker_server.DEFAULT_MAX_PEERS_PER_SWARM, "peers per swarm"),
        ("--max-offers", tracker_server.DEFAULT_MAX_OFFERS, "offers in one announce"),
        (
            "--max-info-hashes-per-socket",
            tracker_server.DEFAULT_MAX_INFO_HASHES_PER_SOCKET,
            "swarms one socket may join",
        ),
        ("--max-send-queue", tracker_server.DEFAULT_MAX_SEND_QUEUE, "frames queued per socket"),
    ]
    for flag, default, what in caps:
        parser.add_argument(flag, type=_positive_int, default=default, help=f"{what} ({default})")


def _run_tracker(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve_tracker(args))
    except KeyboardInterrupt:  # where signal handlers cannot be installed (Windows)
        return 0


async def _serve_tracker(args: argparse.Namespace) -> int:
    server = tracker_server.TrackerServer(
        args.host,
        args.port,
        interval=args.interval,
        peer_timeout=args.peer_timeout,
        max_message_size=args.max_message_size,
        max_swarms=args.max_swarms,
        max_peers_per_swarm=args.max_peers_per_swarm,
        max_offers=args.max_offers,
        max_info_hashes_per_socket=args.max_info_hashes_per_socket,
        max_send_queue=args.max_send_queue,
        max_swarms_per_source=args.max_swarms_per_source,
        max_connections=args.max_connections,
        max_connections_per_ip=args.max_connections_per_ip,
        idle_timeout=args.idle_timeout,
        hello_timeout=args.hello_timeout,
    )
    try:
        await server.start()
    except OSError as e:
        logger.error("cannot listen on %s port %s: %s", args.host, args.port, e)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        # Windows event loops have no signal handlers (NotImplementedError): Ctrl-C is then a
        # KeyboardInterrupt, which ends the program as well.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        # The first line of stdout is the announce URL, for scripts and tests to read.
        print(server.url, flush=True)
        if args.host in ("0.0.0.0", "::", ""):
            port = server.url.rpartition(":")[2]
            urls = [f"ws://{address}:{port}" for address in _own_addresses()]
            logger.info(
                "listening on every address: peers announce to one of this machine's, %s",
                ", ".join(urls) or f"ws://ADDRESS:{port}",
            )
        await stop.wait()
        logger.info("stopping")
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
        await server.close()
    return 0


def _own_addresses() -> list[str]:
    """This machine's IPv4 addresses but loopback, as ICE finds them."""
    import aioice.ice

    return list(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False))


# -- the swarm commands ---------------------------------------------------------------------------


def _add_swarm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracker",
        "-t",
        action="append",
        required=True,
        metavar="URL",
        help="announce URL of a WebTorrent tracker (repeatable)",
    )
    parser.add_argument("--identifier", default="p2prpc", help="the swarm's identifier (p2prpc)")
    _add_ice_arguments(parser)
    parser.add_argument(
        "--host-address",
        action="append",
        metavar="ADDRESS",
        help="offer only this local address as ICE host candidate (repeatable; e.g. 127.0.0.1)",
    )
    parser.add_argument(
        "--max-message-size",
        type=_positive_int,
        default=4 * 2**20,
        metavar="BYTES",
        help="largest message received or sent (4 MiB, as gRPC)",
    )
    parser.add_argument(
        "--secret",
        help="the swarm's secret, to join a closed swarm (see docs/SECURITY.md; `p2prpc secret` "
        "makes one); P2PRPC_SECRET in the environment does the same without showing it in ps",
    )
    parser.add_argument(
        "--identity",
        metavar="FILE",
        help="this node's Ed25519 identity (as p2prpc keygen writes it)",
    )


def _add_ice_arguments(parser: argparse.ArgumentParser) -> None:
    """The ICE server options of every command that connects to peers."""
    parser.add_argument(
        "--ice-server",
        action="append",
        metavar="URL",
        help="a STUN or TURN server: stun:HOST[:PORT], turn:USER:PASS@HOST[:PORT][?transport=tcp]"
        " or turns:... (repeatable; percent-escape ':' and '@' in USER and PASS); "
        f"{ICE_SERVERS_ENV} in the environment lists them (commas or spaces between) when no "
        "--ice-server or --stun is given (default: host candidates only)",
    )
    parser.add_argument(
        "--stun",
        action="store_true",
        help="use P2PT's default STUN servers too (Google's and Twilio's)",
    )
    parser.add_argument(
        "--turn-secret",
        metavar="SECRET",
        help="TURN REST API secret (coturn's static-auth-secret, eturnal's secret): TURN URLs "
        "without credentials get short-lived ones made from it before each connection; "
        f"{TURN_SECRET_ENV} does the same without showing it in ps",
    )
    parser.add_argument(
        "--turn-user",
        default=TURN_REST_USER,
        metavar="NAME",
        help=f"user name in TURN REST credentials ({TURN_REST_USER})",
    )
    parser.add_argument(
        "--turn-ttl",
        type=_positive_float,
        default=TURN_REST_TTL,
        metavar="SECONDS",
        help=f"how long TURN REST credentials are valid ({TURN_REST_TTL:g})",
    )


def _ice_servers(args: argparse.Namespace) -> list[IceServerLike]:
    """The ``ice_servers`` the ICE options name (:func:`_add_ice_arguments`).
    :class:`InvalidIceServer`, saying which option or variable, for a URL it refuses."""
    urls, source = list(args.ice_server or []), "--ice-server"
    if not urls and not args.stun:
        urls, source = split_ice_urls(os.environ.get(ICE_SERVERS_ENV, "")), ICE_SERVERS_ENV
    secret = args.turn_secret if args.turn_secret is not None else os.environ.get(TURN_SECRET_ENV)
    try:
        entries = ice_server_entries(
            urls, turn_secret=secret or None, turn_user=args.turn_user, turn_ttl=args.turn_ttl
        )
    except ValueError as e:  # InvalidIceServer, or a --turn-user with ':'
        part = e.part if isinstance(e, InvalidIceServer) else "credentials"
        raise InvalidIceServer(f"{source}: {e}", part=part) from None
    return [*P2PT_ICE_SERVERS, *entries] if args.stun else entries


def _swarm(args: argparse.Namespace) -> tools.Swarm:
    options: dict[str, Any] = {"ice_servers": _ice_servers(args)}
    if args.host_address:
        options["host_addresses"] = args.host_address
    secret, source = args.secret, "--secret"
    if secret is None:
        secret, source = os.environ.get("P2PRPC_SECRET"), "P2PRPC_SECRET"
    if secret is not None:
        if any("\udc80" <= c <= "\udcff" for c in secret):
            # Bytes that are no text, as Python hands them over from argv and the environment:
            # the secret is those bytes (each would otherwise count as three).
            secret = os.fsencode(secret)
        # Checked before anything starts; an empty one is an error, never an open swarm.
        try:
            check_secret(secret)
        except WeakSecret as e:
            raise WeakSecret(f"{source}: {e}", size=e.size, bits=e.bits) from None
        options["secret"] = secret
    if args.identity:
        from .identity import Identity

        options["identity"] = Identity.load(args.identity)
    return tools.Swarm(args.tracker, args.identifier, options, args.max_message_size)


def _add_peer_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--peer",
        metavar="ID",
        help=f"{what} this peer: its id or a unique prefix of it, as logs show (7b866dec)",
    )


def _add_timeout_argument(parser: argparse.ArgumentParser, default: float = 30.0) -> None:
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=default,
        help=f"seconds for everything, finding peers included ({default:g})",
    )


def _add_header_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="KEY: VALUE",
        help="metadata to send with every call the command makes, reflection and health checks "
        "included, as a server's interceptor may require (repeatable; a -bin value in base64)",
    )


def _read_headers(command: str, headers: Sequence[str]) -> list[tuple[str, str | bytes]] | None:
    """``-H`` values as metadata; ``None`` (after saying why on stderr) for one that is not
    ``key: value``, or a ``-bin`` value that is not base64."""
    metadata: list[tuple[str, str | bytes]] = []
    for header in headers:
        key, sep, value = header.partition(":")
        if not sep:
            print(f"p2prpc {command}: a header is 'key: value', not {header!r}", file=sys.stderr)
            return None
        # gRPC metadata keys are lower case (grpc-go's metadata.Pairs lowers them too); a -bin
        # value is given in base64, as grpcurl takes it.
        name, text = key.strip().lower(), value.strip()
        if name.endswith("-bin"):
            try:
                metadata.append((name, base64.b64decode(text + "=" * (-len(text) % 4))))
            except ValueError:
                print(f"p2prpc {command}: {name} takes base64, not {text!r}", file=sys.stderr)
                return None
        else:
            metadata.append((name, text))
    return metadata


def _add_strict_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-unknown-fields",
        action="store_true",
        help="send JSON with fields or enum names the message type does not have (by default "
        "they are refused, checked against the type from the peer's reflection)",
    )


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine; SIGINT or SIGTERM ends it cleanly (exit 0), a ToolError is
    printed and its status is the exit code."""

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        interrupted = False

        def interrupt() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows: see _serve_tracker
                loop.add_signal_handler(sig, interrupt)
        try:
            return await coroutine
        except asyncio.CancelledError:
            if interrupted:
                return 0
            raise
        except tools.ToolError as e:
            print(f"ERROR: {e.code.name}: {e}", file=sys.stderr, flush=True)
            return e.exit_code
        except RpcError as e:  # a request the peer's types refuse, and the like
            print(f"ERROR: {e.code().name}: {e.details()}", file=sys.stderr, flush=True)
            return int(e.code().value[0])

    return asyncio.run(main())


def _add_call_arguments(parser: argparse.ArgumentParser) -> None:
    _add_swarm_arguments(parser)
    parser.add_argument("method", help="package.Service/Method (a leading / is optional)")
    parser.add_argument(
        "-d",
        "--data",
        default="{}",
        help="the request as proto3 JSON; '@' reads the requests from stdin and '@FILE' from a "
        "file (one JSON value, or several for a request stream: JSON lines, or values one after "
        "another), for payloads too large for the command line",
    )
    _add_timeout_argument(parser)
    _add_peer_argument(parser, "call")
    _add_header_argument(parser)
    parser.add_argument(
        "-v",
        "--verbose",
        dest="show_metadata",
        action="store_true",
        help="print the response headers and trailers to stderr, as grpcurl -v",
    )
    _add_strict_argument(parser)


def _read_requests(data: str) -> list[Any]:
    """The requests ``-d`` gives: JSON text, or '@' (stdin), or '@FILE'."""
    if data == "@":
        text = sys.stdin.read()
    elif data.startswith("@"):
        with open(data[1:], encoding="utf-8") as file:
            text = file.read()
    else:
        return [json.loads(data)]
    return list(tools.read_json_values(text))


def _run_call(args: argparse.Namespace) -> int:
    method = args.method if args.method.startswith("/") else "/" + args.method
    try:
        requests = _read_requests(args.data)
    except OSError as e:
        print(f"p2prpc call: cannot read the request: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"p2prpc call: the request is not JSON: {e}", file=sys.stderr)
        return 2
    metadata = _read_headers("call", args.header)
    if metadata is None:
        return 2
    return _run(
        tools.call_json(
            _swarm(args),
            method,
            requests,
            timeout=args.timeout,
            peer=args.peer,
            metadata=metadata,
            allow_unknown_fields=args.allow_unknown_fields,
            show_metadata=args.show_metadata,
        )
    )


def _add_wait_arguments(parser: argparse.ArgumentParser) -> None:
    _add_swarm_arguments(parser)
    parser.add_argument(
        "--wait",
        type=_positive_float,
        default=5.0,
        help="seconds to wait at most for the swarm's peers to answer (5)",
    )
    _add_header_argument(parser)


def _add_list_arguments(parser: argparse.ArgumentParser) -> None:
    _add_wait_arguments(parser)
    parser.add_argument(
        "service",
        nargs="?",
        help="list this service's methods, from the reflection of a peer serving it "
        "(default: list the services, from what the peers say in their hello)",
    )
    _add_timeout_argument(parser)
    _add_peer_argument(parser, "ask")


def _run_peers(args: argparse.Namespace) -> int:
    metadata = _read_headers("peers", args.header)
    if metadata is None:
        return 2
    return _run(tools.list_peers(_swarm(args), args.wait, metadata=metadata))


def _run_list(args: argparse.Namespace) -> int:
    metadata = _read_headers("list", args.header)
    if metadata is None:
        return 2
    if args.service is not None:
        return _run(
            tools.list_methods(
                _swarm(args),
                args.service,
                peer=args.peer,
                timeout=args.timeout,
                metadata=metadata,
            )
        )
    return _run(tools.list_services(_swarm(args), args.wait))


def _add_describe_arguments(parser: argparse.ArgumentParser) -> None:
    _add_swarm_arguments(parser)
    parser.add_argument(
        "symbol",
        nargs="?",
        help="a service, method (package.Service.Method), message or enum "
        "(default: every service of one peer)",
    )
    _add_timeout_argument(parser)
    _add_peer_argument(parser, "ask")
    _add_header_argument(parser)


def _run_describe(args: argparse.Namespace) -> int:
    metadata = _read_headers("describe", args.header)
    if metadata is None:
        return 2
    return _run(
        tools.describe(
            _swarm(args), args.symbol, peer=args.peer, timeout=args.timeout, metadata=metadata
        )
    )


def _add_health_arguments(parser: argparse.ArgumentParser) -> None:
    _add_swarm_arguments(parser)
    parser.add_argument(
        "service", nargs="?", default="", help="the service to check (default: the node itself)"
    )
    _add_timeout_argument(parser, 10.0)
    _add_peer_argument(parser, "check only")
    _add_header_argument(parser)


def _run_health(args: argparse.Namespace) -> int:
    metadata = _read_headers("health", args.header)
    if metadata is None:
        return 2
    return _run(
        tools.check_health(
            _swarm(args), args.service, peer=args.peer, timeout=args.timeout, metadata=metadata
        )
    )


def _add_pub_arguments(parser: argparse.ArgumentParser) -> None:
    _add_swarm_arguments(parser)
    parser.add_argument("topic", help="the topic's name")
    parser.add_argument(
        "message", help="the message as JSON (proto3 JSON for a typed topic); '@' reads stdin"
    )
    _add_timeout_argument(parser)
    _add_strict_argument(parser)
    _add_header_argument(parser)


def _run_pub(args: argparse.Namespace) -> int:
    metadata = _read_headers("pub", args.header)
    if metadata is None:
        return 2
    try:
        value = json.loads(sys.stdin.read() if args.message == "@" else args.message)
    except ValueError as e:
        print(f"p2prpc pub: the message is not JSON: {e}", file=sys.stderr)
        return 2
    return _run(
        tools.publish(
            _swarm(args),
            args.topic,
            value,
            timeout=args.timeout,
            allow_unknown_fields=args.allow_unknown_fields,
            metadata=metadata,
        )
    )


def _add_sub_arguments(parser: argparse.ArgumentParser) -> None:
    _add_swarm_arguments(parser)
    parser.add_argument("topic", help="the topic's name")
    parser.add_argument("-n", "--count", type=_positive_int, help="exit after this many messages")
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        help="seconds to listen (default: until interrupted); with --count, not getting them "
        "all in time exits DEADLINE_EXCEEDED (4)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="envelope",
        action="store_true",
        help='print {"from", "seq", "msg"} for each message instead of the message alone',
    )
    _add_header_argument(parser)


def _run_sub(args: argparse.Namespace) -> int:
    metadata = _read_headers("sub", args.header)
    if metadata is None:
        return 2
    return _run(
        tools.subscribe(
            _swarm(args),
            args.topic,
            count=args.count,
            timeout=args.timeout,
            verbose=args.envelope,
            metadata=metadata,
        )
    )


# -- demo -----------------------------------------------------------------------------------------


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="the tracker's address (127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=0, help="the tracker's port; 0 picks a free one (0)"
    )
    parser.add_argument(
        "--identifier", default="p2prpc-demo", help="the swarm's identifier (p2prpc-demo)"
    )
    parser.add_argument(
        "--relay",
        action="store_true",
        help="the node carries other peers' relayed connections (circuits), for peers that "
        "cannot connect directly (docs/PROTOCOL.md section 8)",
    )
    _add_ice_arguments(parser)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    options: dict[str, Any] = {"ice_servers": _ice_servers(args), "relay": args.relay}
    if args.host.startswith("127."):
        options["host_addresses"] = [args.host]

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await run_demo(args.host, args.port, args.identifier, options, stop)
        except OSError as e:
            logger.error("cannot listen on %s port %s: %s", args.host, args.port, e)
            return 1
        return 0

    return asyncio.run(main())


# -- gen ------------------------------------------------------------------------------------------


def _add_gen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("protos", nargs="+", metavar="FILE.proto", help=".proto files to compile")
    parser.add_argument(
        "-I",
        "--proto-path",
        action="append",
        metavar="DIR",
        help="import root (repeatable; default: the current directory)",
    )
    parser.add_argument("-o", "--out", default=".", help="output directory (.)")


def _run_gen(args: argparse.Namespace) -> int:
    from .codegen.protoc import generate

    return generate(args.protos, include=args.proto_path or ["."], out=args.out)


# -- keygen ---------------------------------------------------------------------------------------


def _add_keygen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="where to write the private key (mode 0600)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a key file that exists (a symbolic link at FILE is refused all the same)",
    )
    parser.add_argument(
        "--public",
        action="store_true",
        help="write nothing: print the public key of the key file FILE (hex)",
    )


def _run_keygen(args: argparse.Namespace) -> int:
    from .identity import Identity

    if args.public:
        try:
            print(Identity.load(args.file).public_key.hex())
        except (OSError, ValueError) as e:
            print(f"p2prpc keygen: cannot read a key from {args.file}: {e}", file=sys.stderr)
            return 1
        return 0
    identity = Identity.generate()
    try:
        identity.save(args.file, overwrite=args.force)
    except KeyFileExists as e:
        hint = " (--force replaces it)" if e.replaceable and not args.force else ""
        print(f"p2prpc keygen: {args.file} {e.strerror}{hint}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"p2prpc keygen: cannot write {args.file}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(identity.public_key.hex())
    return 0


# -- secret ---------------------------------------------------------------------------------------


def _add_secret_arguments(parser: argparse.ArgumentParser) -> None:
    """``p2prpc secret`` takes no options: what it prints is always 32 random bytes."""


def _run_secret(args: argparse.Namespace) -> int:
    print(new_secret())
    return 0


# -- the parser -----------------------------------------------------------------------------------

#: Every subcommand, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("tracker", "run a WebTorrent tracker", _add_tracker_arguments, _run_tracker, 1),
    Command("gen", "generate messages, stubs and servicers", _add_gen_arguments, _run_gen),
    Command(
        "list",
        "list the services in the swarm, or a service's methods",
        _add_list_arguments,
        _run_list,
    ),
    Command(
        "describe",
        "print a service, method or message as .proto",
        _add_describe_arguments,
        _run_describe,
    ),
    Command("call", "call a method with JSON in and JSON out", _add_call_arguments, _run_call),
    Command(
        "peers",
        "list the swarm's nodes, what they serve, round trips",
        _add_wait_arguments,
        _run_peers,
    ),
    Command("health", "check the health of nodes and services", _add_health_arguments, _run_health),
    Command("pub", "publish a JSON message to a topic", _add_pub_arguments, _run_pub),
    Command("sub", "print a topic's messages as JSON lines", _add_sub_arguments, _run_sub),
    Command(
        "demo", "run a tracker and a node to try these commands on", _add_demo_arguments, _run_demo
    ),
    Command(
        "keygen",
        "write a new Ed25519 identity; print its public key",
        _add_keygen_arguments,
        _run_keygen,
    ),
    Command(
        "secret",
        "print a new random swarm secret (32 bytes, base64url) for --secret or P2PRPC_SECRET",
        _add_secret_arguments,
        _run_secret,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``p2prpc`` with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="p2prpc",
        description="Typed RPC and pub/sub between peers over WebRTC, signalled through trackers.",
        epilog="Environment: P2PRPC_TRANSPORT chooses the WebRTC transport (aiortc, the default;"
        " libwebrtc, with p2prpc[native]; auto); P2PRPC_ICE_SERVERS the ICE servers where no"
        " --ice-server or --stun is given. Options such as -v go before the command.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help="log more to stderr: -v p2prpc's information, -vv everything's debugging "
        "(by default only p2prpc's warnings; the tracker logs its information)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log this level and above, from every library",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run, base_verbosity=command.verbosity)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``p2prpc`` with ``argv`` (default: the process's arguments); the exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level, args.verbosity + args.base_verbosity)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (WeakSecret, InvalidIceServer) as e:  # their messages never show the secret
        print(f"p2prpc {args.command}: {e}", file=sys.stderr)
        return 2


def _configure_logging(level: str | None, verbosity: int) -> None:
    """Quiet by default: p2prpc's warnings, and errors of the libraries below (aioice, aiortc
    and websockets log every step at INFO)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if level is not None:
        logging.getLogger().setLevel(level.upper())
        return
    ours = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    theirs = {0: logging.ERROR, 1: logging.WARNING}.get(verbosity, logging.DEBUG)
    logging.getLogger().setLevel(theirs)
    logging.getLogger("p2prpc").setLevel(ours)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value
