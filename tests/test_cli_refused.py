"""The swarm commands kept out of a closed swarm say why and exit UNAVAILABLE, instead of
printing nothing and exiting 0: no identity where the swarm admits listed keys only, a key it does
not list, no secret or a wrong one. Each names the setting to fix; waits end as soon as the
swarm's peers have refused, not at the timeout.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from helloworld_p2prpc import add_GreeterServicer_to_node
from test_cli_call import CLI_SECRET, Greeter, code, lines, p2prpc

from p2prpc.identity import Identity
from p2prpc.rpc import StatusCode
from p2prpc.testing import loopback_node
from p2prpc.tracker.server import TrackerServer

pytestmark = pytest.mark.asyncio

UNAVAILABLE = code(StatusCode.UNAVAILABLE)


class Closed:
    def __init__(self, url: str, allowed: Path, other: Path) -> None:
        self.url = url
        self.allowed = allowed  # a key file the swarm admits
        self.other = other  # one it does not

    def swarm(self, *extra: str) -> list[str]:
        return ["-t", self.url, "--identifier", "cli-closed", "--host-address", "127.0.0.1", *extra]


@pytest_asyncio.fixture
async def closed(tmp_path: Path) -> AsyncIterator[Closed]:
    allowed, other = Identity.generate(), Identity.generate()
    allowed.save(tmp_path / "allowed.key")
    other.save(tmp_path / "other.key")
    async with TrackerServer() as tracker:
        node = loopback_node(
            [tracker.url],
            "cli-closed",
            secret=CLI_SECRET,
            identity=Identity.generate(),
            allowed_peers=[allowed.public_key],
        )
        add_GreeterServicer_to_node(Greeter(), node)
        async with node:
            yield Closed(tracker.url, tmp_path / "allowed.key", tmp_path / "other.key")


COMMANDS = [
    ["list", "--wait", "50"],
    ["peers", "--wait", "50"],
    ["call", "helloworld.Greeter/SayHello", "--timeout", "50"],
    ["describe", "helloworld.Greeter", "--timeout", "50"],
    ["health", "--timeout", "50"],
    ["pub", "chat", "{}", "--timeout", "50"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
async def test_without_an_identity_the_command_says_it_was_refused(
    closed: Closed, command: list[str]
) -> None:
    started = time.monotonic()
    swarm = closed.swarm("--secret", CLI_SECRET)
    status, out, err = await p2prpc(command[0], *swarm, *command[1:])
    assert (status, out) == (UNAVAILABLE, ""), err
    assert "closed the connection before saying hello, as a node does that does not admit" in err
    assert "--identity FILE with a key it allows" in err
    assert time.monotonic() - started < 40  # when the swarm refused, not after the wait


async def test_a_key_the_swarm_does_not_list_is_named(closed: Closed) -> None:
    status, out, err = await p2prpc(
        "list", *closed.swarm("--secret", CLI_SECRET, "--identity", str(closed.other))
    )
    assert (status, out) == (UNAVAILABLE, ""), err
    other = Identity.load(closed.other).public_key.hex()
    assert f"it may not list this node's key {other} among its allowed peers (--identity)" in err


async def test_with_the_allowed_key_the_swarm_answers(closed: Closed) -> None:
    status, out, err = await p2prpc(
        "list", *closed.swarm("--secret", CLI_SECRET, "--identity", str(closed.allowed))
    )
    assert status == 0, err
    assert {"service": "helloworld.Greeter", "peers": 1} in lines(out)


@pytest.mark.parametrize(
    ("secret", "hint"),
    [
        ([], "give a closed swarm its --secret (or P2PRPC_SECRET)"),
        (["--secret", CLI_SECRET + " but wrong"], "a wrong --secret (or P2PRPC_SECRET) finds"),
    ],
    ids=["no secret", "wrong secret"],
)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
async def test_without_the_secret_the_swarm_is_empty_and_that_is_said_at_once(
    closed: Closed, secret: list[str], hint: str, command: list[str]
) -> None:
    """Every command, as soon as the trackers count no other peer (not at its 50 s timeout,
    whose failure says "within 50 s"), as a gRPC client fails when nothing listens."""
    status, out, err = await p2prpc(
        *command, *closed.swarm(*secret, "--identity", str(closed.allowed))
    )
    assert (status, out) == (UNAVAILABLE, ""), err
    assert "the trackers count no other peer" in err and hint in err
    assert "within 50 s" not in err
