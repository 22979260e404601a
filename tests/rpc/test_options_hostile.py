"""Every number a service config or a channel option holds is read as gRPC core reads it: what
gRPC would refuse (another script's digits, more digits than any type holds, past the field's
type, NaN, infinities, fractions where an integer goes) is an InvalidServiceConfig or an
InvalidChannelOption naming the field, never a stray ValueError or OverflowError (pure parsing)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from p2prpc.errors import InvalidChannelOption, InvalidServiceConfig
from p2prpc.rpc.options import ServiceConfig, parse_options


def _retry(**changes: Any) -> str:
    policy = {
        "maxAttempts": 3,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
        **changes,
    }
    return json.dumps({"methodConfig": [{"name": [{}], "retryPolicy": policy}]})


@pytest.mark.parametrize(
    "text",
    [
        _retry(maxAttempts="\u00b2"),  # str.isdigit() holds, int() refuses
        _retry(maxAttempts="9" * 5000),  # past int()'s digit limit
        _retry(maxAttempts="\u0661\u0662"),  # Arabic-Indic digits: not a JSON number
        _retry(backoffMultiplier=10**400),  # a JSON integer no float holds
        json.dumps({"methodConfig": [{"name": [{}], "maxRequestMessageBytes": "9" * 5000}]}),
        json.dumps({"retryThrottling": {"maxTokens": 10**400, "tokenRatio": 1}}),
    ],
)
def test_an_absurd_service_config_is_an_invalid_service_config(text: str) -> None:
    with pytest.raises(InvalidServiceConfig):
        ServiceConfig.parse(text)


@pytest.mark.parametrize("key", ["grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms"])
def test_an_absurd_keepalive_option_is_an_invalid_channel_option(key: str) -> None:
    with pytest.raises(InvalidChannelOption):
        parse_options([(key, 10**400)])


# -- every numeric field of a service config ------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BIG = "9" * 5000  # past int()'s 4,300 digits
#: What no integer field takes: another script's digits, past int()'s limit as text and as a JSON
#: number, past every 64-bit type, a fraction, NaN, infinities, a boolean, an object.
NOT_INTEGERS: list[Any] = [
    "\u00b2",
    "\u0661\u0662",
    "\uff11",  # a fullwidth 1
    BIG,
    int(BIG[:4000]),
    10**400,
    2**64,
    "1" + "0" * 30,
    1.5,
    "1.5",
    "1e3",
    NAN,
    INF,
    -INF,
    True,
    {},
]
#: What no duration takes.
NOT_DURATIONS = [
    "\u0661s",
    "1.\u0661s",
    "\u00b2s",
    BIG + "s",
    "1" + "0" * 30 + "s",
    "315576000001s",
]
NOT_DURATIONS += ["-1s", "1.0000000001s", "1", 1, "infs", "nans", "1e3s"]
#: What no floating-point field takes.
NOT_REALS: list[Any] = [10**400, int(BIG[:4000]), NAN, INF, -INF, "2", "\u00b2", True, {}]


def _method(**fields: Any) -> str:
    return json.dumps({"methodConfig": [{"name": [{}], **fields}]})


def _throttling(**changes: Any) -> str:
    return json.dumps({"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.5, **changes}})


def _cases() -> list[Any]:
    cases = []
    for value in NOT_INTEGERS:
        cases += [
            (_retry(maxAttempts=value), "retryPolicy.maxAttempts"),
            (_method(maxRequestMessageBytes=value), "maxRequestMessageBytes"),
            (_method(maxResponseMessageBytes=value), "maxResponseMessageBytes"),
            (_throttling(maxTokens=value), "retryThrottling.maxTokens"),
        ]
    for value in NOT_DURATIONS:
        cases += [
            (_method(timeout=value), "methodConfig[0].timeout"),
            (_retry(initialBackoff=value), "retryPolicy.initialBackoff"),
            (_retry(maxBackoff=value), "retryPolicy.maxBackoff"),
        ]
    for value in [*NOT_REALS, -1, 0]:
        cases += [
            (_retry(backoffMultiplier=value), "retryPolicy.backoffMultiplier"),
            (_throttling(tokenRatio=value), "retryThrottling.tokenRatio"),
        ]
    cases += [
        (_retry(maxAttempts=2**31), "retryPolicy.maxAttempts"),  # an int32
        (_retry(maxAttempts=-(2**31) - 1), "retryPolicy.maxAttempts"),
        (_retry(maxAttempts=-1), "retryPolicy.maxAttempts error:must be at least 2"),
        (_method(maxRequestMessageBytes=2**32), "maxRequestMessageBytes"),  # a uint32
        (_method(maxResponseMessageBytes=-1), "maxResponseMessageBytes"),
        (_method(maxResponseMessageBytes="-1"), "maxResponseMessageBytes"),
        (_throttling(maxTokens=-1), "retryThrottling.maxTokens"),
        (_throttling(maxTokens=0), "retryThrottling.maxTokens error:must be greater than 0"),
        (_throttling(tokenRatio=2.0**32), "retryThrottling.tokenRatio"),  # a uint32 whole part
        # gRPC keeps three decimal places: less than 0.001 is 0
        (_throttling(tokenRatio=0.0009), "retryThrottling.tokenRatio error:must be greater than 0"),
    ]
    return cases


@pytest.mark.parametrize(("text", "field"), _cases())
def test_every_numeric_field_refuses_what_grpc_refuses_naming_the_field(
    text: str, field: str
) -> None:
    with pytest.raises(InvalidServiceConfig) as info:
        ServiceConfig.parse(text)
    assert f"{field}" in str(info.value) and "error:" in str(info.value)
    assert "JSON parsing failed" not in str(info.value)


def test_every_numeric_field_takes_what_grpc_takes() -> None:
    """The edges stay open: strings of ASCII digits (proto3 JSON's 64-bit form, with the
    whitespace and sign absl::SimpleAtoi takes), each type's largest value, leading zeros."""
    text = json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{}],
                    "timeout": "000315576000000.000000001s",
                    "maxRequestMessageBytes": "4294967295",
                    "maxResponseMessageBytes": 2**32 - 1,
                    "retryPolicy": {
                        "maxAttempts": " +2147483647 ",
                        "initialBackoff": "0.000000001s",
                        "maxBackoff": "315576000000s",
                        "backoffMultiplier": 1e308,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
            "retryThrottling": {"maxTokens": str(2**64 - 1), "tokenRatio": 0.001},
        }
    )
    parsed = ServiceConfig.parse(text)
    found = parsed.lookup("/a.B/C")
    assert found is not None and found.retry_policy is not None
    assert found.timeout == pytest.approx(315576000000.000000001)
    assert (found.max_request_message_bytes, found.max_response_message_bytes) == (2**32 - 1,) * 2
    assert found.retry_policy.max_attempts == 5  # clamped, as gRPC clamps it
    assert found.retry_policy.backoff_multiplier == 1e308
    assert parsed.retry_throttling is not None
    assert (parsed.retry_throttling.max_tokens, parsed.retry_throttling.token_ratio) == (
        1000,
        0.001,
    )


def test_a_long_json_integer_outside_the_fields_read_is_ignored_as_grpc_ignores_it() -> None:
    text = '{"loadBalancingConfig": [{"x": {"n": %s}}], "methodConfig": []}' % ("9" * 5000)
    assert ServiceConfig.parse(text).methods == {}


# -- every numeric channel option -----------------------------------------------------------------

INTEGER_OPTIONS = [
    "grpc.enable_retries",
    "grpc.max_receive_message_length",
    "grpc.max_message_length",
    "grpc.max_send_message_length",
    "grpc.per_rpc_retry_buffer_size",
    "grpc.keepalive_time_ms",
    "grpc.keepalive_timeout_ms",
    "grpc.default_compression_algorithm",
]


@pytest.mark.parametrize(
    "value", [10**400, 2**31, -(2**31) - 1, 2**64, 1.5, NAN, INF, "5", "\u00b2", True, None]
)
@pytest.mark.parametrize("key", INTEGER_OPTIONS)
def test_every_numeric_channel_option_refuses_what_a_c_int_does_not_hold(
    key: str, value: Any
) -> None:
    """grpcio passes a channel option's integer as a C int (OverflowError past it): p2prpc
    refuses it with an InvalidChannelOption naming the key."""
    if value is None and "compression" in key:
        return  # None is no compression, as grpc.aio's compression=None
    with pytest.raises(InvalidChannelOption, match=key.replace(".", r"\.")):
        parse_options([(key, value)])


def test_every_numeric_channel_option_takes_the_largest_c_int() -> None:
    read = parse_options([(key, 2**31 - 1) for key in INTEGER_OPTIONS if "compression" not in key])
    assert read.enable_retries
    assert read.max_receive_message_length == read.max_send_message_length == 2**31 - 1
    assert read.per_rpc_retry_buffer_size == 2**31 - 1
    assert read.keepalive_time == read.keepalive_timeout == (2**31 - 1) / 1000
