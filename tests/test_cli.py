"""The ``p2prpc`` command line, run as a real process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from p2prpc.cli import COMMANDS, build_parser, main
from p2prpc.wire.secret import check_secret
from p2prpc.wire.tracker import (
    Announce,
    AnnounceReply,
    encode_client_message,
    parse_server_message,
)

TIMEOUT = 30.0


@pytest_asyncio.fixture
async def tracker_process() -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``python -m p2prpc tracker --port 0``, and the announce URL it printed first."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p2prpc",
        "tracker",
        "--port",
        "0",
        "--interval",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            url = (await proc.stdout.readline()).decode().strip()
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def announce_once(url: str) -> AnnounceReply:
    async with connect(url) as ws:
        await ws.send(encode_client_message(Announce(b"i" * 20, b"p" * 20)))
        async with asyncio.timeout(TIMEOUT):
            [reply] = parse_server_message(await ws.recv())
    assert isinstance(reply, AnnounceReply)
    return reply


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_tracker_prints_its_url_serves_and_exits_cleanly(
    tracker_process: tuple[asyncio.subprocess.Process, str], sig: signal.Signals
) -> None:
    proc, url = tracker_process
    assert url.startswith("ws://127.0.0.1:")
    assert int(url.rsplit(":", 1)[1]) > 0

    assert await announce_once(url) == AnnounceReply(b"i" * 20, 60, 0, 1)

    proc.send_signal(sig)
    async with asyncio.timeout(TIMEOUT):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out == b""  # nothing after the URL: stdout stays machine-readable
    assert "tracker listening on " + url in err.decode()


@pytest.mark.asyncio
async def test_a_tracker_on_every_address_says_which_urls_reach_it() -> None:
    """``ws://0.0.0.0:PORT`` reaches nothing: the tracker names this machine's addresses."""
    import aioice.ice

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p2prpc",
        "tracker",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(TIMEOUT):
            url = (await proc.stdout.readline()).decode().strip()
            port = url.rsplit(":", 1)[1]
            said = ""
            while "listening on every address" not in said:
                said = (await proc.stderr.readline()).decode()
    finally:
        proc.terminate()
        await proc.communicate()
    assert url.startswith("ws://0.0.0.0:")
    addresses = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert all(f"ws://{address}:{port}" in said for address in addresses), said


@pytest.mark.asyncio
async def test_tracker_fails_cleanly_when_the_port_is_taken(
    tracker_process: tuple[asyncio.subprocess.Process, str],
) -> None:
    _, url = tracker_process
    port = url.rsplit(":", 1)[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p2prpc",
        "tracker",
        "--port",
        port,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT):
        out, err = await proc.communicate()
    assert proc.returncode == 1
    assert out == b""
    assert "cannot listen" in err.decode()


def test_tracker_options_and_defaults() -> None:
    args = build_parser().parse_args(["tracker"])
    assert (args.host, args.port, args.interval, args.peer_timeout) == (
        "127.0.0.1",
        8000,
        120.0,
        None,
    )
    args = build_parser().parse_args(
        ["tracker", "--port", "0", "--max-offers", "3", "--max-peers-per-swarm", "9"]
    )
    assert (args.port, args.max_offers, args.max_peers_per_swarm) == (0, 3, 9)
    assert (args.idle_timeout, args.hello_timeout, args.max_connections_per_ip) == (None, 30, None)
    args = build_parser().parse_args(
        [
            *("tracker", "--idle-timeout", "60", "--hello-timeout", "5"),
            *("--max-connections", "500", "--max-connections-per-ip", "20"),
            *("--max-swarms-per-source", "40"),
        ]
    )
    assert (args.idle_timeout, args.hello_timeout, args.max_connections) == (60, 5, 500)
    assert (args.max_connections_per_ip, args.max_swarms_per_source) == (20, 40)
    assert [c.name for c in COMMANDS] == [
        "tracker",
        "gen",
        "list",
        "describe",
        "call",
        "peers",
        "health",
        "pub",
        "sub",
        "demo",
        "keygen",
        "secret",
    ]


def test_secret_prints_one_line_a_closed_swarm_accepts() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "p2prpc", "secret"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    made = done.stdout.removesuffix("\n")
    assert "\n" not in made and done.stderr == ""
    assert check_secret(made) == made.encode() and len(made) == 43


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["tracker", "--port", "70000"],
        ["tracker", "--interval", "0"],
        ["tracker", "--max-swarms", "-1"],
    ],
)
def test_bad_arguments_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: p2prpc" in capsys.readouterr().err
