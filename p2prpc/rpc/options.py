"""A channel's options as grpc.aio takes them: ``(key, value)`` pairs, and the service config.

Pure: no I/O. :func:`parse_options` reads the pairs a ``grpc.aio.insecure_channel(target,
options=[...])`` call passes, and :class:`ServiceConfig` the ``grpc.service_config`` JSON (gRPC's
``methodConfig`` with gRFC A6's ``retryPolicy``, and ``retryThrottling``), validated as gRPC
validates it and refused with gRPC's own words (``errors validating service config: [field:...
error:...]``), but at once, where gRPC makes the channel and then fails each of its calls
INVALID_ARGUMENT.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidChannelOption, InvalidServiceConfig
from ..wire.status import StatusCode
from .base import RetryPolicy, encoding_of

logger = logging.getLogger(__name__)

__all__ = [
    "APPLIED",
    "IGNORED",
    "ChannelOptions",
    "MethodConfig",
    "RetryThrottling",
    "ServiceConfig",
    "parse_options",
]

#: The most attempts a service config's retry policy makes: larger values are clamped, as gRPC
#: clamps them.
MAX_ATTEMPTS = 5

#: What gRPC core's JSON reader takes as a duration's seconds at most (10,000 years).
_MAX_SECONDS = 315_576_000_000

#: The ranges of the integer types gRPC core reads a service config's numbers into: int32
#: (``maxAttempts``), uint32 (``maxRequestMessageBytes``, ``maxResponseMessageBytes``, and a
#: ``tokenRatio``'s whole part) and uint64 (``maxTokens``); a channel option's integer is a C int.
_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT64 = (0, 2**64 - 1)

#: A protobuf JSON duration, in ASCII digits only (``\d`` would take any script's digits).
_DURATION = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,9}))?s")

#: An integer as ``absl::SimpleAtoi`` reads one, which gRPC core reads JSON numbers and strings
#: with: ASCII whitespace around, a sign, ASCII digits.
_INTEGER_TEXT = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)[ \t\n\v\f\r]*")


@dataclass(frozen=True)
class MethodConfig:
    """One ``methodConfig`` entry: ``timeout`` in seconds (the most a call may take; a call's own
    shorter timeout stands), ``wait_for_ready`` (a call's own choice stands), ``retry_policy``
    (gRFC A6; ``None``: the channel's), and the largest messages in bytes each way
    (``maxRequestMessageBytes``, ``maxResponseMessageBytes``; ``None``: the channel's)."""

    timeout: float | None = None
    wait_for_ready: bool | None = None
    retry_policy: RetryPolicy | None = None
    max_request_message_bytes: int | None = None
    max_response_message_bytes: int | None = None


@dataclass(frozen=True)
class RetryThrottling:
    """gRFC A6's ``retryThrottling``: the channel holds ``max_tokens`` tokens; a failed attempt
    (a status among its policy's retryable codes) takes 1, a call that succeeds gives back
    ``token_ratio``, and while ``max_tokens / 2`` or fewer remain no call is retried."""

    max_tokens: float
    token_ratio: float


@dataclass(frozen=True)
class ServiceConfig:
    """A parsed ``grpc.service_config``: method configs by ``(service, method)`` (``method`` empty:
    every method of the service; both empty: every method), and retry throttling."""

    methods: Mapping[tuple[str, str], MethodConfig] = field(default_factory=dict)
    retry_throttling: RetryThrottling | None = None

    @classmethod
    def parse(cls, text: str | bytes) -> ServiceConfig:
        """The service config a JSON text holds; :class:`~p2prpc.errors.InvalidServiceConfig`
        (a ``ValueError``) naming each field gRPC would refuse. Fields gRPC does not read are
        ignored, as gRPC ignores them (``loadBalancingConfig``, ``hedgingPolicy``, ...)."""
        try:
            document = json.loads(text, parse_int=_json_integer)
        except (ValueError, RecursionError) as e:
            raise InvalidServiceConfig(f"JSON parsing failed: {e}") from None
        errors: list[str] = []
        config = _read_config(document, errors)
        if errors:
            raise InvalidServiceConfig(
                "errors validating service config: [" + "; ".join(errors) + "]"
            )
        return config

    def lookup(self, method: str) -> MethodConfig | None:
        """The config of ``/pkg.Service/Method``: its own entry, else its service's, else the
        default (the most specific name wins, as in gRPC); ``None`` when none applies."""
        parts = method.split("/")
        service, name = (parts[1], parts[2]) if len(parts) == 3 and not parts[0] else (method, "")
        for key in ((service, name), (service, ""), ("", "")):
            found = self.methods.get(key)
            if found is not None:
                return found
        return None


def _read_config(document: Any, errors: list[str]) -> ServiceConfig:
    if not isinstance(document, dict):
        errors.append("field: error:is not an object")
        return ServiceConfig()
    methods: dict[tuple[str, str], MethodConfig] = {}
    entries = document.get("methodConfig", [])
    if not isinstance(entries, list):
        errors.append("field:methodConfig error:is not an array")
        entries = []
    for i, entry in enumerate(entries):
        where = f"methodConfig[{i}]"
        if not isinstance(entry, dict):
            errors.append(f"field:{where} error:is not an object")
            continue
        config = _read_method(entry, where, errors)
        names = entry.get("name", [])
        if not isinstance(names, list):
            errors.append(f"field:{where}.name error:is not an array")
            continue
        for j, name in enumerate(names):
            at = f"{where}.name[{j}]"
            key = _read_name(name, at, errors)
            if key is None:
                continue
            if key in methods:
                errors.append(
                    f"field:{at} error:multiple method configs for path /{key[0]}/{key[1]}"
                )
                continue
            methods[key] = config
    throttling = None
    if "retryThrottling" in document:
        throttling = _read_throttling(document["retryThrottling"], errors)
    return ServiceConfig(methods, throttling)


def _read_name(name: Any, at: str, errors: list[str]) -> tuple[str, str] | None:
    if not isinstance(name, dict):
        errors.append(f"field:{at} error:is not an object")
        return None
    service, method = name.get("service", ""), name.get("method", "")
    for key, value in (("service", service), ("method", method)):
        if not isinstance(value, str):
            errors.append(f"field:{at}.{key} error:is not a string")
            return None
    if not service and method:
        errors.append(f"field:{at} error:method name populated without service name")
        return None
    return service, method


def _read_method(entry: dict[str, Any], where: str, errors: list[str]) -> MethodConfig:
    timeout = None
    if "timeout" in entry:
        timeout = _duration(entry["timeout"], f"{where}.timeout", errors)
    wait_for_ready = entry.get("waitForReady")
    if wait_for_ready is not None and not isinstance(wait_for_ready, bool):
        errors.append(f"field:{where}.waitForReady error:is not a boolean")
        wait_for_ready = None
    sizes: list[int | None] = []
    for key in ("maxRequestMessageBytes", "maxResponseMessageBytes"):
        value = entry.get(key)
        if value is not None:
            value = _count(value, f"{where}.{key}", errors, _UINT32)
        sizes.append(value)
    policy = None
    if "retryPolicy" in entry:
        policy = _read_retry_policy(entry["retryPolicy"], f"{where}.retryPolicy", errors)
    return MethodConfig(timeout, wait_for_ready, policy, sizes[0], sizes[1])


def _read_retry_policy(policy: Any, where: str, errors: list[str]) -> RetryPolicy | None:
    if not isinstance(policy, dict):
        errors.append(f"field:{where} error:is not an object")
        return None
    before = len(errors)
    attempts = policy.get("maxAttempts")
    if attempts is None:
        errors.append(f"field:{where}.maxAttempts error:field not present")
    elif (
        attempts := _count(attempts, f"{where}.maxAttempts", errors, _INT32)
    ) is not None and attempts < 2:
        errors.append(f"field:{where}.maxAttempts error:must be at least 2")
    backoffs: list[float | None] = []
    for key in ("initialBackoff", "maxBackoff"):
        if key not in policy:
            errors.append(f"field:{where}.{key} error:field not present")
            backoffs.append(None)
            continue
        value = _duration(policy[key], f"{where}.{key}", errors)
        if value is not None and value <= 0:
            errors.append(f"field:{where}.{key} error:must be greater than 0")
        backoffs.append(value)
    multiplier = policy.get("backoffMultiplier")
    if multiplier is None:
        errors.append(f"field:{where}.backoffMultiplier error:field not present")
    elif (multiplier := _real(multiplier, f"{where}.backoffMultiplier", errors)) is not None and (
        multiplier <= 0
    ):
        errors.append(f"field:{where}.backoffMultiplier error:must be greater than 0")
    codes = _read_codes(policy.get("retryableStatusCodes"), f"{where}.retryableStatusCodes", errors)
    if len(errors) > before:
        return None
    assert isinstance(attempts, int) and backoffs[0] is not None and backoffs[1] is not None
    assert isinstance(multiplier, float)
    return RetryPolicy(
        max_attempts=min(attempts, MAX_ATTEMPTS),
        initial_backoff=backoffs[0],
        max_backoff=backoffs[1],
        backoff_multiplier=multiplier,
        retryable_status_codes=codes,
    )


def _read_codes(codes: Any, where: str, errors: list[str]) -> frozenset[StatusCode]:
    if codes is None:
        errors.append(f"field:{where} error:field not present")
        return frozenset()
    if not isinstance(codes, list):
        errors.append(f"field:{where} error:is not an array")
        return frozenset()
    found = set()
    for k, name in enumerate(codes):
        if not isinstance(name, str):
            errors.append(f"field:{where}[{k}] error:is not a string")
        elif name not in StatusCode.__members__ or name == "OK":
            errors.append(f"field:{where}[{k}] error:failed to parse status code")
        else:
            found.add(StatusCode.__members__[name])
    if not found:
        errors.append(f"field:{where} error:must be non-empty")
    return frozenset(found)


def _read_throttling(throttling: Any, errors: list[str]) -> RetryThrottling | None:
    where = "retryThrottling"
    if not isinstance(throttling, dict):
        errors.append(f"field:{where} error:is not an object")
        return None
    before = len(errors)
    tokens = ratio = None
    if "maxTokens" not in throttling:
        errors.append(f"field:{where}.maxTokens error:field not present")
    elif (
        tokens := _count(throttling["maxTokens"], f"{where}.maxTokens", errors, _UINT64)
    ) is not None and tokens <= 0:
        errors.append(f"field:{where}.maxTokens error:must be greater than 0")
    if "tokenRatio" not in throttling:
        errors.append(f"field:{where}.tokenRatio error:field not present")
    elif (ratio := _token_ratio(throttling["tokenRatio"], f"{where}.tokenRatio", errors)) == 0:
        errors.append(f"field:{where}.tokenRatio error:must be greater than 0")
    if len(errors) > before or tokens is None or ratio is None:
        return None
    return RetryThrottling(float(min(tokens, 1000)), ratio)


class _LongInteger:
    """A JSON integer of more digits than any number gRPC reads holds, kept as its text (never
    converted: ``int()`` refuses past 4,300 digits, and converting is quadratic before that)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _json_integer(text: str) -> int | _LongInteger:
    return int(text) if len(text) <= 400 else _LongInteger(text)


def _count(value: Any, where: str, errors: list[str], bounds: tuple[int, int]) -> int | None:
    """An integer field, as gRPC core reads one: a JSON number or string (proto3 JSON writes
    64-bit numbers as strings) of ASCII digits within the field's type's ``bounds``; anything
    else (a fraction, another script's digits, past the type) is refused, naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | _LongInteger):
        errors.append(f"field:{where} error:is not a number")
        return None
    number = None if isinstance(value, _LongInteger) else _integer(value)
    if number is None or not bounds[0] <= number <= bounds[1]:
        errors.append(f"field:{where} error:failed to parse number")
        return None
    return number


def _integer(value: int | float | str) -> int | None:
    """``value`` as an integer if it writes one (``absl::SimpleAtoi``'s text), else ``None``;
    never more than 20 significant digits are converted (no 64-bit type holds more)."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):  # a JSON number with a fraction or an exponent
        return None
    matched = _INTEGER_TEXT.fullmatch(value)
    if matched is None:
        return None
    sign, digits = matched.groups()
    digits = digits.lstrip("0") or "0"
    if len(digits) > 20:
        return None
    return -int(digits) if sign == "-" else int(digits)


def _real(value: Any, where: str, errors: list[str]) -> float | None:
    """A floating-point field: a finite JSON number (NaN, infinities and integers past a double's
    range refused, naming the field)."""
    if isinstance(value, bool) or not isinstance(value, int | float | _LongInteger):
        errors.append(f"field:{where} error:is not a number")
        return None
    try:
        number = math.inf if isinstance(value, _LongInteger) else float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        errors.append(f"field:{where} error:failed to parse number")
        return None
    return number


def _token_ratio(value: Any, where: str, errors: list[str]) -> float | None:
    """``tokenRatio`` as gRPC core keeps it: a JSON number, to three decimal places (its whole
    part a uint32)."""
    number = _real(value, where, errors)
    if number is None:
        return None
    if not _UINT32[0] <= number < _UINT32[1] + 1:
        errors.append(f"field:{where} error:failed to parse number")
        return None
    return math.floor(round(number * 1000, 6)) / 1000


def _duration(value: Any, where: str, errors: list[str]) -> float | None:
    """A protobuf JSON duration (``"1.5s"``) in seconds."""
    if not isinstance(value, str):
        errors.append(f"field:{where} error:is not a string")
        return None
    if not value.endswith("s"):
        errors.append(f"field:{where} error:Not a duration (no s suffix)")
        return None
    matched = _DURATION.fullmatch(value)
    if matched is None:
        errors.append(f"field:{where} error:Not a duration")
        return None
    sign, seconds, fraction = matched.groups()
    seconds = seconds.lstrip("0") or "0"
    if sign or len(seconds) > len(str(_MAX_SECONDS)) or int(seconds) > _MAX_SECONDS:
        errors.append(f"field:{where} error:seconds must be in the range [0, {_MAX_SECONDS}]")
        return None
    return int(seconds) + (int(fraction.ljust(9, "0")) / 1e9 if fraction else 0.0)


# -- channel options ------------------------------------------------------------------------------

#: The grpc channel options a channel applies.
APPLIED = frozenset(
    {
        "grpc.service_config",
        "grpc.enable_retries",
        "grpc.max_receive_message_length",
        "grpc.max_message_length",
        "grpc.max_send_message_length",
        "grpc.per_rpc_retry_buffer_size",
        "grpc.default_compression_algorithm",
        "grpc.keepalive_time_ms",
        "grpc.keepalive_timeout_ms",
    }
)

#: The grpc channel options a channel accepts and ignores: each is about a target address, a
#: resolver, a load balancer, TLS or an HTTP/2 connection of the channel's own, none of which a
#: channel over a swarm has (its connections are the node's, and so is their keepalive).
IGNORED = frozenset(
    {
        "grpc.primary_user_agent",
        "grpc.secondary_user_agent",
        "grpc.default_authority",
        "grpc.ssl_target_name_override",
        "grpc.lb_policy_name",
        "grpc.enable_http_proxy",
        "grpc.http_proxy",
        "grpc.service_config_disable_resolution",
        "grpc.enable_channelz",
        "grpc.use_local_subchannel_pool",
        "grpc.initial_reconnect_backoff_ms",
        "grpc.min_reconnect_backoff_ms",
        "grpc.max_reconnect_backoff_ms",
        "grpc.dns_enable_srv_queries",
        "grpc.dns_min_time_between_resolutions_ms",
        "grpc.client_idle_timeout_ms",
        "grpc.keepalive_permit_without_calls",
        "grpc.http2.max_pings_without_data",
        "grpc.http2.min_time_between_pings_ms",
        "grpc.http2.bdp_probe",
        "grpc.http2.lookahead_bytes",
        "grpc.http2.write_buffer_size",
        "grpc.http2.max_frame_size",
        "grpc.optimization_target",
    }
)


@dataclass(frozen=True)
class ChannelOptions:
    """What a channel's grpc options ask for (``None``: not given). Sizes in bytes (``-1``,
    gRPC's "no limit", is read as ``None``), keepalive in seconds."""

    service_config: ServiceConfig | None = None
    enable_retries: bool = True
    max_receive_message_length: int | None = None
    max_send_message_length: int | None = None
    per_rpc_retry_buffer_size: int | None = None
    default_compression: str | None = None
    keepalive_time: float | None = None
    keepalive_timeout: float | None = None


def parse_options(options: Iterable[tuple[str, Any]]) -> ChannelOptions:
    """Read grpc channel options: the :data:`APPLIED` keys, and the :data:`IGNORED` ones (taken,
    no effect); any other key is ignored as gRPC ignores it, with a warning logged;
    :class:`~p2prpc.errors.InvalidChannelOption` (a ``ValueError``) for a value of the wrong type
    of a key it applies, or an invalid service config
    (:class:`~p2prpc.errors.InvalidServiceConfig`)."""
    read: dict[str, Any] = {}
    for item in options:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise InvalidChannelOption(f"channel options are (key, value) pairs, not {item!r:.60}")
        key, value = item
        if key in IGNORED:
            continue
        if key not in APPLIED:
            # gRPC ignores a channel argument it does not know; so does p2prpc, but says so, so
            # that a misspelt key is seen.
            logger.warning(
                "channel option %r is not one p2prpc knows, and has no effect: a channel over a "
                "swarm applies %s",
                key,
                ", ".join(sorted(APPLIED)),
            )
            continue
        read[key] = value
    service_config = None
    if "grpc.service_config" in read:
        text = read["grpc.service_config"]
        if not isinstance(text, str | bytes):
            raise InvalidChannelOption("grpc.service_config is a JSON text")
        service_config = ServiceConfig.parse(text)
    receive = (
        "grpc.max_receive_message_length"
        if "grpc.max_receive_message_length" in read
        else "grpc.max_message_length"
    )
    compression = None
    if "grpc.default_compression_algorithm" in read:
        algorithm = read["grpc.default_compression_algorithm"]
        if isinstance(algorithm, int) and not isinstance(algorithm, bool):
            try:
                algorithm = _COMPRESSIONS[algorithm]
            except KeyError:
                raise InvalidChannelOption(
                    f"grpc.default_compression_algorithm {algorithm} is not a grpc.Compression"
                ) from None
        try:
            compression = encoding_of(algorithm)
        except (TypeError, ValueError) as e:
            raise InvalidChannelOption(f"grpc.default_compression_algorithm: {e}") from None
    return ChannelOptions(
        service_config=service_config,
        enable_retries=bool(_option_integer(read, "grpc.enable_retries", 1)),
        max_receive_message_length=_size(read, receive),
        max_send_message_length=_size(read, "grpc.max_send_message_length"),
        per_rpc_retry_buffer_size=_size(read, "grpc.per_rpc_retry_buffer_size"),
        default_compression=compression,
        keepalive_time=_milliseconds(read, "grpc.keepalive_time_ms"),
        keepalive_timeout=_milliseconds(read, "grpc.keepalive_timeout_ms"),
    )


def _compressions() -> dict[int, Any]:
    import grpc

    return {member.value: member for member in grpc.Compression}


_COMPRESSIONS = _compressions()


def _is_c_int(value: Any) -> bool:
    """Whether ``value`` is an integer a channel argument holds (a C int, as grpcio passes it)."""
    return (
        isinstance(value, int) and not isinstance(value, bool) and _INT32[0] <= value <= _INT32[1]
    )


def _option_integer(read: Mapping[str, Any], key: str, default: int) -> int:
    value = read.get(key, default)
    if not _is_c_int(value):
        raise InvalidChannelOption(f"{key} is an integer (a C int), not {value!r:.60}")
    assert isinstance(value, int)
    return value


def _size(read: Mapping[str, Any], key: str) -> int | None:
    if key not in read:
        return None
    value = read[key]
    if not _is_c_int(value) or value < -1:
        raise InvalidChannelOption(
            f"{key} is a number of bytes up to 2**31 - 1 (or -1: no limit), not {value!r:.60}"
        )
    return None if value == -1 else int(value)


def _milliseconds(read: Mapping[str, Any], key: str) -> float | None:
    if key not in read:
        return None
    value = read[key]
    if not _is_c_int(value) or value <= 0:
        raise InvalidChannelOption(
            f"{key} is a positive number of milliseconds up to 2**31 - 1, not {value!r:.60}"
        )
    return int(value) / 1000
