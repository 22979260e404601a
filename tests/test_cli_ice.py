"""The command line's own STUN/TURN servers: ``--ice-server`` URLs with credentials, TURN REST
credentials from ``--turn-secret`` or the environment, ``P2PRPC_ICE_SERVERS``, on every command
that connects to peers. A call goes through a real coturn (tests/lab/turn.py) to a node that
takes relayed candidates only, and no credential or secret reaches stdout or stderr, even with
everything's debugging logged (-vv)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from helloworld_p2prpc import add_GreeterServicer_to_node
from lab.turn import TurnLab, unavailable_reason
from test_cli_call import Greeter, lines

from p2prpc.cli import COMMANDS, build_parser, main
from p2prpc.node import Node
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import P2PT_ICE_SERVERS
from p2prpc.transport.ice import ICE_SERVERS_ENV, TURN_SECRET_ENV, TurnRestCredentials

ROOT = Path(__file__).resolve().parent.parent


def cli_env() -> dict[str, str]:
    """The environment of a command run now: this one's (so the module's transport, which its
    fixture sets in it), without what would change the command's swarm or ICE servers."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "P2PRPC_SECRET", ICE_SERVERS_ENV, TURN_SECRET_ENV)
    } | {"PYTHONPATH": str(ROOT)}


SECRET = "rest-secret-9f8e7d6c5b4a"
CREDENTIAL = "hunter2-not-for-logs"

#: The commands that connect to peers, and the arguments each needs besides the swarm's.
CONNECTING = {
    "list": [],
    "describe": [],
    "call": ["helloworld.Greeter/SayHello"],
    "peers": [],
    "health": [],
    "pub": ["chat", "{}"],
    "sub": ["chat"],
    "demo": [],
}


def test_every_command_that_connects_takes_the_ice_options() -> None:
    assert {c.name for c in COMMANDS} - set(CONNECTING) == {"tracker", "gen", "keygen", "secret"}
    parser = build_parser()
    for name, extra in CONNECTING.items():
        swarm = [] if name == "demo" else ["-t", "ws://127.0.0.1:1"]
        args = parser.parse_args(
            [
                name,
                *swarm,
                *("--ice-server", "stun:a", "--ice-server", "turn:b", "--stun"),
                *("--turn-secret", SECRET, "--turn-user", "alice", "--turn-ttl", "60"),
                *extra,
            ]
        )
        assert args.ice_server == ["stun:a", "turn:b"] and args.stun
        assert (args.turn_secret, args.turn_user, args.turn_ttl) == (SECRET, "alice", 60.0)


def test_the_ice_servers_the_options_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from p2prpc.cli import _ice_servers

    parser = build_parser()

    def servers(*argv: str) -> list[object]:
        return _ice_servers(parser.parse_args(["peers", "-t", "ws://h:1", *argv]))

    monkeypatch.delenv(ICE_SERVERS_ENV, raising=False)
    monkeypatch.delenv(TURN_SECRET_ENV, raising=False)
    assert servers() == []  # host candidates only, as before
    assert servers("--stun") == list(P2PT_ICE_SERVERS)
    assert servers("--stun", "--ice-server", "stun:a") == [*P2PT_ICE_SERVERS, "stun:a"]
    monkeypatch.setenv(ICE_SERVERS_ENV, "stun:e1, stun:e2")
    assert servers() == ["stun:e1", "stun:e2"]
    assert servers("--ice-server", "stun:a") == ["stun:a"]  # the flags win
    [rest] = servers("--ice-server", "turn:t?transport=tcp", "--turn-secret", SECRET)
    assert isinstance(rest, TurnRestCredentials) and rest.urls == ["turn:t?transport=tcp"]
    monkeypatch.setenv(TURN_SECRET_ENV, SECRET)
    [rest] = servers("--ice-server", "turns:t", "--turn-user", "bob")
    assert isinstance(rest, TurnRestCredentials) and rest().username.endswith(":bob")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("argv", "env", "said"),
    [
        (
            ["--ice-server", f"turn:alice:{CREDENTIAL}@h:70000"],
            {},
            "--ice-server: 'turn:***@h:70000': '70000' is no port",
        ),
        (
            ["--ice-server", f"stun:alice:{CREDENTIAL}@h"],
            {},
            "--ice-server: 'stun:***@h': a STUN server takes no username or credential",
        ),
        (["--ice-server", "turn:h"], {}, "needs a username and a credential"),
        ([], {ICE_SERVERS_ENV: f"stun:ok turn:alice:{CREDENTIAL}@h?x=1"}, ICE_SERVERS_ENV),
    ],
    ids=["port", "stun-credentials", "turn-without", "environment"],
)
def test_a_refused_ice_server_exits_2_naming_the_part_and_not_the_credential(
    argv: list[str],
    env: dict[str, str],
    said: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ICE_SERVERS_ENV, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for command in ("peers", "call"):
        extra = ["x.Y/Z"] if command == "call" else []
        assert main([command, "-t", "ws://127.0.0.1:1", *argv, *extra]) == 2
        captured = capsys.readouterr()
        assert said in captured.err and captured.out == ""
        assert CREDENTIAL not in captured.err


# -- through a real TURN server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnLab]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with TurnLab(auth_secret=SECRET) as lab:
        yield lab


@pytest_asyncio.fixture
async def relayed_node(turn: TurnLab) -> AsyncIterator[str]:
    """A tracker and a node that takes relayed candidates only (TURN REST credentials): the
    tracker's URL."""
    async with TrackerServer("127.0.0.1", 0) as tracker:
        node = Node(
            [tracker.url],
            "cli-ice",
            ice_servers=[TurnRestCredentials(turn.url(transport="tcp"), SECRET)],
            ice_transport_policy="relay",
        )
        add_GreeterServicer_to_node(Greeter(), node)
        async with node:
            yield tracker.url


@pytest.mark.asyncio
@pytest.mark.parametrize("given", ["url-credentials", "turn-secret-flag", "environment"])
async def test_a_call_through_turn_never_shows_the_credential(
    turn: TurnLab, relayed_node: str, given: str
) -> None:
    url = turn.url(transport="tcp")
    env = cli_env()
    if given == "url-credentials":
        # A static credential (coturn takes the REST one as any): ':' in the username escaped.
        username, credential = TurnRestCredentials(url, SECRET).credentials()
        secrets = [credential]
        host = url.removeprefix("turn:")
        ice = ["--ice-server", f"turn:{username.replace(':', '%3A')}:{credential}@{host}"]
    elif given == "turn-secret-flag":
        secrets = [SECRET]
        ice = ["--ice-server", url, "--turn-secret", SECRET]
    else:
        secrets = [SECRET]
        ice = []
        env |= {ICE_SERVERS_ENV: f"stun:{turn.server}, {url}", TURN_SECRET_ENV: SECRET}
    sessions = turn.log().count("session")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p2prpc",
        "-vv",  # everything's debugging, aioice's and aiortc's included
        "call",
        "-t",
        relayed_node,
        "--identifier",
        "cli-ice",
        *ice,
        "helloworld.Greeter/SayHello",
        "-d",
        '{"name": "relayed"}',
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert lines(out.decode()) == [{"message": "Hello, relayed! ()"}]
    assert turn.log().count("session") > sessions  # coturn allocated for the command too
    for secret in secrets:
        assert secret not in out.decode() and secret not in err.decode()
