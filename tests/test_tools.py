"""The command line's helpers that need no swarm."""

from __future__ import annotations

import pytest

from p2prpc.node import Node
from p2prpc.rpc import StatusCode
from p2prpc.tools import ToolError, find_peer, read_json_values


def test_json_values_one_after_another() -> None:
    text = '{"a": 1}\n{"b": [1,\n 2]}  3 "x"\n\n'
    assert list(read_json_values(text)) == [{"a": 1}, {"b": [1, 2]}, 3, "x"]
    assert list(read_json_values("  \n")) == []
    with pytest.raises(ValueError):
        list(read_json_values('{"a": 1} {oops'))


@pytest.mark.asyncio
@pytest.mark.parametrize("prefix", ["", "xyz", "7B866DEG", "0" * 41])
async def test_a_peer_prefix_must_be_hex(prefix: str) -> None:
    node = Node([], "tools-test", reflection=False, health=False)
    with pytest.raises(ToolError) as info:
        await find_peer(node, prefix, 0.1)
    assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert repr(prefix) in str(info.value)
    await node.close()
