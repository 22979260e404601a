"""The ``p2prpc`` command line: ``p2prpc <command> [options]``.

Each command is a :class:`Command`: a name, a one-line help, a function adding its options to its
sub-parser and a function running it that returns the exit code. Adding a command (``gen``,
``call``, ``peers``, ``pub``, ``sub``, ``demo``) means writing those two functions and listing it
in :data:`COMMANDS`. Results go to stdout (one line of text, or JSON as grpcurl does); logs go to
stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .tracker import server as tracker_server

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

logger = logging.getLogger("p2prpc.cli")


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: ``add_arguments(parser)`` declares its options, ``run(args)`` runs it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


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
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        # The first line of stdout is the announce URL, for scripts and tests to read.
        print(server.url, flush=True)
        await stop.wait()
        logger.info("stopping")
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
        await server.close()
    return 0


# -- call, peers ----------------------------------------------------------------------------------


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
    parser.add_argument(
        "--stun",
        action="store_true",
        help="use P2PT's default STUN servers (default: host candidates only)",
    )
    parser.add_argument(
        "--host-address",
        action="append",
        metavar="ADDRESS",
        help="offer only this local address as ICE host candidate (repeatable; e.g. 127.0.0.1)",
    )


def _swarm_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {} if args.stun else {"ice_servers": []}
    if args.host_address:
        options["host_addresses"] = args.host_address
    return options


def _add_call_arguments(parser: argparse.ArgumentParser) -> None:
    _add_swarm_arguments(parser)
    parser.add_argument("method", help="package.Service/Method (a leading / is optional)")
    parser.add_argument(
        "-d",
        "--data",
        default="{}",
        help="the request as proto3 JSON; '@' reads one request per line from stdin (streams)",
    )
    parser.add_argument("--timeout", type=_positive_float, default=30.0, help="seconds (30)")
    parser.add_argument("--peer", help="call this peer (40 hex characters) instead of any server")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="KEY: VALUE",
        help="metadata to send (repeatable)",
    )


def _run_call(args: argparse.Namespace) -> int:
    from .tools import call_json

    method = args.method if args.method.startswith("/") else "/" + args.method
    try:
        if args.data == "@":
            requests = [json.loads(line) for line in sys.stdin if line.strip()]
        else:
            requests = [json.loads(args.data)]
    except json.JSONDecodeError as e:
        print(f"p2prpc call: the request is not JSON: {e}", file=sys.stderr)
        return 2
    metadata: list[tuple[str, str | bytes]] = []
    for header in args.header:
        key, sep, value = header.partition(":")
        if not sep:
            print(f"p2prpc call: a header is 'key: value', not {header!r}", file=sys.stderr)
            return 2
        # gRPC metadata keys are lower case (grpc-go's metadata.Pairs lowers them too).
        metadata.append((key.strip().lower(), value.strip()))
    return asyncio.run(
        call_json(
            args.tracker,
            args.identifier,
            method,
            requests,
            timeout=args.timeout,
            peer=args.peer,
            metadata=metadata,
            swarm_options=_swarm_options(args),
        )
    )


def _add_peers_arguments(parser: argparse.ArgumentParser) -> None:
    _add_swarm_arguments(parser)
    parser.add_argument(
        "--wait", type=_positive_float, default=5.0, help="seconds to listen for hellos (5)"
    )


def _run_peers(args: argparse.Namespace) -> int:
    from .tools import list_peers

    return asyncio.run(
        list_peers(args.tracker, args.identifier, args.wait, swarm_options=_swarm_options(args))
    )


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


def _run_keygen(args: argparse.Namespace) -> int:
    from .identity import Identity

    if os.path.exists(args.file):
        print(f"p2prpc keygen: {args.file} exists; not overwritten", file=sys.stderr)
        return 1
    identity = Identity.generate()
    identity.save(args.file)
    print(identity.public_key.hex())
    return 0


# -- the parser -----------------------------------------------------------------------------------

#: Every subcommand, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("tracker", "run a WebTorrent tracker", _add_tracker_arguments, _run_tracker),
    Command("gen", "generate messages, stubs and servicers", _add_gen_arguments, _run_gen),
    Command("call", "call a method with JSON in and JSON out", _add_call_arguments, _run_call),
    Command(
        "peers", "list the swarm's nodes and what they serve", _add_peers_arguments, _run_peers
    ),
    Command(
        "keygen",
        "write a new Ed25519 identity; print its public key",
        _add_keygen_arguments,
        _run_keygen,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``p2prpc`` with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="p2prpc",
        description="Typed RPC and pub/sub between peers over WebRTC, signalled through trackers.",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="what to log to stderr (info)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``p2prpc`` with ``argv`` (default: the process's arguments); the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


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
