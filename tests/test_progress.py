"""Progress callbacks for large messages between real nodes."""

from __future__ import annotations

import pytest
from google.protobuf.wrappers_pb2 import BytesValue

from p2prpc.progress import TransferProgress, watch_transfers
from p2prpc.rpc import Cardinality, Handler, ServicerContext, UnaryUnaryMethod
from p2prpc.testing import mesh

pytestmark = pytest.mark.asyncio

SIZE = 3 * 2**20


async def big(request: BytesValue, context: ServicerContext) -> BytesValue:
    return BytesValue(value=b"x" * SIZE)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
async def test_a_large_reply_is_reported_as_it_arrives(binary: bool) -> None:
    async with mesh(2, "progress-test", binary=binary, max_message_size=8 * 2**20) as m:
        server, client = m.nodes
        server.add_service(
            "test.Big",
            {"/test.Big/Get": Handler(big, Cardinality.UNARY_UNARY, BytesValue, BytesValue)},
        )
        await client.wait_for_server("test.Big", 10)
        seen: list[TransferProgress] = []
        small: list[TransferProgress] = []
        transfers = watch_transfers(client, seen.append)
        watch_transfers(server, small.append)  # requests are small: nothing to report
        get = UnaryUnaryMethod(client, "/test.Big/Get", BytesValue, BytesValue)
        reply = await get(BytesValue(value=b"?"), timeout=60)
        assert len(reply.value) == SIZE
        transfers.close()
        assert small == []
        assert len(seen) > 2  # reported chunk by chunk
        assert {p.peer_id for p in seen} == {server.peer_id}
        assert len({p.message_id for p in seen}) == 1
        received = [p.received for p in seen]
        assert received == sorted(received) and received[0] >= 2**20
        assert [p.done for p in seen] == [False] * (len(seen) - 1) + [True]
        assert seen[-1].received >= SIZE
