"""Why a tracker could not be reached is said, never an empty reason: a ``wss://`` URL at a
tracker without TLS is reset with no message, and the call that found no peer says so."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from p2prpc.errors import RpcError
from p2prpc.rpc import NO_RETRY, Channel, RetryPolicy, StatusCode, UnaryUnaryMethod
from p2prpc.testing import LOOPBACK, loopback_node
from p2prpc.tracker.client import describe_error
from p2prpc.tracker.server import TrackerServer
from p2prpc.transport import Link, RTCOptions


def test_an_error_without_text_is_named_by_its_kind_with_a_hint_for_wss() -> None:
    assert describe_error(ConnectionResetError(), "ws://t:1") == "ConnectionResetError"
    assert describe_error(ConnectionResetError(), "wss://t:1") == (
        "ConnectionResetError (the tracker may not speak TLS: is it ws://?)"
    )
    assert describe_error(OSError(111, "Connect call failed"), "ws://t:1") == (
        "[Errno 111] Connect call failed"
    )


@pytest.mark.asyncio
async def test_a_wss_url_at_a_plain_tracker_fails_calls_saying_why() -> None:
    async with TrackerServer(LOOPBACK, 0) as tracker:
        url = tracker.url.replace("ws://", "wss://")
        node = loopback_node([url], "wss-at-ws")
        try:
            await node.start()
            channel = Channel(node, retry_policy=RetryPolicy(max_attempts=1))
            async with asyncio.timeout(20):
                while (state := channel.get_state()) is not (
                    grpc.ChannelConnectivity.TRANSIENT_FAILURE
                ):
                    await channel.wait_for_state_change(state)
            say = UnaryUnaryMethod(channel, "/a.B/C", StringValue, StringValue)
            with pytest.raises(RpcError) as caught:
                await say(StringValue(), timeout=10)
            assert caught.value.code() is StatusCode.UNAVAILABLE
            assert f"tracker {url} unreachable: " in caught.value.details()
            assert "may not speak TLS" in caught.value.details()
        finally:
            await node.close()


class PassOn(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


@pytest.mark.parametrize("intercepted", [False, True], ids=["plain", "intercepted"])
@pytest.mark.asyncio
async def test_a_call_that_waited_for_a_server_until_its_deadline_says_why_none_came(
    intercepted: bool,
) -> None:
    """With ``wait_for_ready`` a call waits past the failure; at its deadline its details say
    what it waited for and why nothing came, not a bare "Deadline Exceeded" (through
    interceptors too)."""
    async with TrackerServer(LOOPBACK, 0) as tracker:
        url = tracker.url.replace("ws://", "wss://")
        node = loopback_node([url], "wss-at-ws")
        try:
            await node.start()
            interceptors = [PassOn()] if intercepted else []
            channel = Channel(node, wait_for_ready=True, interceptors=interceptors)
            async with asyncio.timeout(20):
                while (state := channel.get_state()) is not (
                    grpc.ChannelConnectivity.TRANSIENT_FAILURE
                ):
                    await channel.wait_for_state_change(state)
            say = UnaryUnaryMethod(channel, "/a.B/C", StringValue, StringValue)
            with pytest.raises(RpcError) as caught:
                await say(StringValue(), timeout=0.5)
            assert caught.value.code() is StatusCode.DEADLINE_EXCEEDED
            details = caught.value.details()
            assert details.startswith("Deadline Exceeded: no connected peer serves a.B: ")
            assert f"tracker {url} unreachable: " in details
        finally:
            await node.close()


class Refusing:
    """A transport that refuses this swarm's options, as libwebrtc refuses a loopback pin once
    the process made a connection without loopback candidates."""

    name = "refusing"

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> Link:
        raise RuntimeError("this transport refuses these options")


@pytest.mark.asyncio
async def test_an_offer_the_transport_refuses_fails_the_tracker_saying_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Offers are made in the background: what stops them is the tracker's failure, in the log
    and in calls' details, not a tracker that "has not answered yet"."""
    async with TrackerServer(LOOPBACK, 0) as tracker:
        other = loopback_node([tracker.url], "refused-links")
        node = loopback_node(
            [tracker.url], "refused-links", transport=Refusing(), connect_timeout=60
        )
        try:
            await other.start()
            await asyncio.wait_for(tracker.wait_for(lambda stats: stats.peers >= 1), 10)
            channel = Channel(node, retry_policy=NO_RETRY)
            say = UnaryUnaryMethod(channel, "/a.B/C", StringValue, StringValue)
            with pytest.raises(RpcError) as caught:
                async with asyncio.timeout(30):  # not connect_timeout: at once
                    await say(StringValue())
            assert caught.value.code() is StatusCode.UNAVAILABLE
            assert (
                f"tracker {tracker.url}: cannot make an offer: "
                "RuntimeError('this transport refuses these options')"
            ) in caught.value.details()
        finally:
            await node.close()
            await other.close()
    logged = [r for r in caplog.records if "cannot make" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING and logged[0].exc_info
