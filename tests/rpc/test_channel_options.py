"""grpc channel options and the service config, read as gRPC reads them (pure but for the
keepalive check, which reads an unstarted node's settings)."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from p2prpc.errors import InvalidChannelOption, InvalidServiceConfig
from p2prpc.node import Node
from p2prpc.rpc import Channel, RetryPolicy, StatusCode
from p2prpc.rpc.options import IGNORED, MethodConfig, ServiceConfig, parse_options

RETRY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "1.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "ABORTED"],
}


def config(*entries: dict[str, Any], **top: Any) -> str:
    return json.dumps({"methodConfig": list(entries), **top})


def test_the_most_specific_name_wins_whole() -> None:
    parsed = ServiceConfig.parse(
        config(
            {"name": [{}], "timeout": "0.3s"},
            {"name": [{"service": "pkg.S"}], "waitForReady": True},
            {"name": [{"service": "pkg.S", "method": "M"}], "retryPolicy": RETRY},
        )
    )
    exact = parsed.lookup("/pkg.S/M")
    assert exact == MethodConfig(
        retry_policy=RetryPolicy(
            4, 0.1, 1.5, 2.0, frozenset({StatusCode.UNAVAILABLE, StatusCode.ABORTED})
        )
    )
    # gRPC takes one entry, not a merge: the method's own entry has no timeout.
    assert exact is not None and exact.timeout is None
    assert parsed.lookup("/pkg.S/Other") == MethodConfig(wait_for_ready=True)
    assert parsed.lookup("/other.T/M") == MethodConfig(timeout=0.3)
    assert ServiceConfig.parse(config({"name": [{"service": "pkg.S"}]})).lookup("/x.Y/Z") is None


def test_durations_attempts_and_unknown_fields_as_grpc_reads_them() -> None:
    parsed = ServiceConfig.parse(
        config(
            {
                "name": [{"service": "pkg.S", "method": ""}],
                "timeout": "1.000000001s",
                "retryPolicy": {**RETRY, "maxAttempts": 9, "perAttemptRecvTimeout": "1s"},
                "hedgingPolicy": {"maxAttempts": 2},
                "maxRequestMessageBytes": "1024",
                "maxResponseMessageBytes": 2048,
            },
            loadBalancingConfig=[{"round_robin": {}}],
            retryThrottling={"maxTokens": 10, "tokenRatio": 0.5},
        )
    )
    found = parsed.lookup("/pkg.S/Any")
    assert found is not None and found.timeout == pytest.approx(1.000000001)
    assert found.retry_policy is not None and found.retry_policy.max_attempts == 5  # clamped
    assert (found.max_request_message_bytes, found.max_response_message_bytes) == (1024, 2048)
    assert parsed.retry_throttling is not None and parsed.retry_throttling.token_ratio == 0.5


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{bad", "JSON parsing failed"),
        ("[]", "field: error:is not an object"),
        (config({"name": [{}], "timeout": "abc"}), "methodConfig[0].timeout error:Not a duration"),
        (config({"name": [{}], "timeout": "-1s"}), "seconds must be in the range"),
        (config({"name": [{}], "waitForReady": "yes"}), "waitForReady error:is not a boolean"),
        (config({"name": [{"method": "M"}]}), "method name populated without service name"),
        (
            config({"name": [{"service": "x"}]}, {"name": [{"service": "x"}]}),
            "methodConfig[1].name[0] error:multiple method configs for path /x/",
        ),
        (
            config({"name": [{}], "retryPolicy": {**RETRY, "maxAttempts": 1}}),
            "retryPolicy.maxAttempts error:must be at least 2",
        ),
        (
            config({"name": [{}], "retryPolicy": {**RETRY, "retryableStatusCodes": []}}),
            "retryableStatusCodes error:must be non-empty",
        ),
        (
            config({"name": [{}], "retryPolicy": {**RETRY, "retryableStatusCodes": [14]}}),
            "retryableStatusCodes[0] error:is not a string",
        ),
        (
            config(
                {"name": [{}], "retryPolicy": {**RETRY, "retryableStatusCodes": ["unavailable"]}}
            ),
            "retryableStatusCodes[0] error:failed to parse status code",
        ),
        (
            config({"name": [{}], "retryPolicy": {**RETRY, "initialBackoff": "0s"}}),
            "initialBackoff error:must be greater than 0",
        ),
        (
            config({"name": [{}], "retryPolicy": {"maxAttempts": 2}}),
            "retryPolicy.maxBackoff error:field not present",
        ),
        (
            json.dumps({"retryThrottling": {"maxTokens": 0, "tokenRatio": 0.1}}),
            "retryThrottling.maxTokens error:must be greater than 0",
        ),
    ],
)
def test_an_invalid_service_config_is_refused_in_grpcs_words(text: str, words: str) -> None:
    with pytest.raises(InvalidServiceConfig) as info:
        parse_options([("grpc.service_config", text)])
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_options_applied_ignored_and_refused() -> None:
    read = parse_options(
        [
            ("grpc.enable_retries", 0),
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", 1000),
            ("grpc.per_rpc_retry_buffer_size", 4096),
            ("grpc.default_compression_algorithm", grpc.Compression.Gzip),
            *[(key, 1) for key in sorted(IGNORED)],
        ]
    )
    assert not read.enable_retries
    assert (read.max_receive_message_length, read.max_send_message_length) == (None, 1000)
    assert read.per_rpc_retry_buffer_size == 4096
    assert read.default_compression == "gzip"
    assert parse_options([("grpc.max_message_length", 77)]).max_receive_message_length == 77
    for bad, words in [
        (("grpc.max_receive_message_length", "4MB"), "a number of bytes"),
        (("grpc.max_send_message_length", -2), "a number of bytes"),
        (("grpc.enable_retries", "no"), "is an integer"),
        (("grpc.service_config", {"methodConfig": []}), "is a JSON text"),
        (("grpc.default_compression_algorithm", 7), "not a grpc.Compression"),
        (("grpc.keepalive_time_ms", 0), "positive number of milliseconds"),
        ("grpc.enable_retries", "(key, value) pairs"),
    ]:
        with pytest.raises(
            InvalidChannelOption, match=words.replace("(", r"\(").replace(")", r"\)")
        ):
            parse_options([bad])  # type: ignore[list-item]


def test_an_option_p2prpc_does_not_know_is_ignored_as_grpc_ignores_it_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="p2prpc.rpc.options"):
        read = parse_options([("grpc.max_reconect_backoff_ms", 1), ("my.own", "x")])
    assert read == parse_options([])
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "'grpc.max_reconect_backoff_ms' is not one p2prpc knows" in logged
    assert "'my.own'" in logged


@pytest.mark.asyncio
async def test_a_channel_takes_options_and_keepalive_only_as_its_node_keeps_it() -> None:
    node = Node(keepalive_interval=1.5, keepalive_timeout=3.5)
    quiet = Node(keepalive_interval=None)
    try:
        channel = Channel(
            node,
            options=[
                ("grpc.keepalive_time_ms", 10_000),  # the node pings more often: kept
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.primary_user_agent", "shop/1.0"),
                ("grpc.default_compression_algorithm", grpc.Compression.Deflate),
                ("grpc.per_rpc_retry_buffer_size", 1024),
            ],
        )
        assert channel.compression == "deflate"
        assert channel.retry_buffer_size == 1024
        assert Channel(node, compression=grpc.Compression.Gzip).compression == "gzip"
        assert Channel(node, compression=grpc.Compression.NoCompression).compression == "identity"
        # The channel's own keyword wins over the option, as grpc.aio's compression= does.
        assert (
            Channel(
                node,
                compression="gzip",
                options=[("grpc.default_compression_algorithm", grpc.Compression.Deflate)],
            ).compression
            == "gzip"
        )
        assert channel.to("abc").compression == "deflate"  # options survive to()
        with pytest.raises(InvalidChannelOption, match=r"Node\(keepalive_interval=\.\.\.\)"):
            Channel(node, options=[("grpc.keepalive_time_ms", 1000)])  # more often than the node
        with pytest.raises(InvalidChannelOption, match=r"Node\(keepalive_timeout=\.\.\.\)"):
            Channel(node, options=[("grpc.keepalive_timeout_ms", 1000)])
        with pytest.raises(InvalidChannelOption, match="keepalive_interval is off"):
            Channel(quiet, options=[("grpc.keepalive_time_ms", 60_000)])
        with pytest.raises(InvalidServiceConfig, match="Not a duration"):
            Channel(node, options=[("grpc.service_config", config({"name": [{}], "timeout": "1"}))])
        with pytest.raises(ValueError, match="unknown compression"):
            Channel(node, compression="brotli")
    finally:
        await node.close()
        await quiet.close()
