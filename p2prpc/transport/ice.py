"""ICE servers as users give them: URLs with credentials, ``RTCIceServer`` objects, providers.

One form everywhere (``P2PT``/``Node``'s ``ice_servers``, the command line's ``--ice-server``,
the environment's ``P2PRPC_ICE_SERVERS``): a STUN or TURN URL as RFC 7064 and RFC 7065 write it,
with the credentials of a TURN server before its host, as libdatachannel takes them::

    stun:stun.example.org            stun:[2001:db8::1]:3478
    turn:alice:s3cret@turn.example.org:3478?transport=tcp
    turns:alice:s3cret@turn.example.org          (TURN over TLS, port 5349)

The username and credential are percent-decoded (a ``:`` in a username is ``%3A``, an ``@`` is
``%40``, a comma or space in a list is ``%2C`` or ``%20``). :func:`parse_ice_url` reads one URL
strictly and raises :class:`~p2prpc.errors.InvalidIceServer` naming the part that is wrong; the
message never shows the credentials (:func:`redact`).

Credentials that expire: an entry of ``ice_servers`` may be a *provider*, a function (plain or
async) called before each connection attempt (each offer made, each offer answered) that returns
the servers to use then: an ``RTCIceServer``, a URL, or a list of them. :class:`TurnRestCredentials`
is one for the TURN REST API that coturn (``use-auth-secret``) and eturnal implement: from a
secret shared with the TURN server, a username ``EXPIRY:USER`` and its HMAC-SHA1 as password,
valid until ``EXPIRY`` (Unix time). A provider that raises, returns something that is no ICE
server, or (async) takes more than ``timeout`` seconds fails that attempt with
:class:`~p2prpc.errors.IceServersUnavailable` (logged as a warning once until one succeeds
again); the next attempt asks it again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import ipaddress
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeAlias

from aiortc import RTCIceServer

from ..errors import IceServersUnavailable, InvalidIceServer

__all__ = [
    "ICE_SERVERS_ENV",
    "PROVIDER_TIMEOUT",
    "TURN_REST_TTL",
    "TURN_REST_USER",
    "TURN_SECRET_ENV",
    "IceServerLike",
    "IceServerProvider",
    "IceServers",
    "TurnRestCredentials",
    "ice_server_entries",
    "ice_servers_from_environment",
    "parse_ice_url",
    "redact",
    "split_ice_urls",
]

logger = logging.getLogger(__name__)

#: The environment variable with the ICE servers to use when none are given: URLs as
#: :func:`parse_ice_url` reads them, separated by commas or white space.
ICE_SERVERS_ENV = "P2PRPC_ICE_SERVERS"
#: The environment variable with the TURN REST API secret for the TURN URLs of
#: :data:`ICE_SERVERS_ENV` that carry no credentials (:class:`TurnRestCredentials`).
TURN_SECRET_ENV = "P2PRPC_TURN_SECRET"
#: Seconds an async provider has to return, by default.
PROVIDER_TIMEOUT = 10.0
#: Seconds TURN REST credentials are valid for, by default (a day, as coturn's documentation).
TURN_REST_TTL = 86400.0
#: The user name TURN REST credentials carry, by default.
TURN_REST_USER = "p2prpc"

#: What a provider returns: one server or URL, or a list of them.
IceServerResult: TypeAlias = RTCIceServer | str | Sequence[RTCIceServer | str]
#: A function called before each connection attempt for the servers to use then.
IceServerProvider: TypeAlias = Callable[[], IceServerResult | Awaitable[IceServerResult]]
#: An entry of ``ice_servers``: a URL, an ``RTCIceServer``, or a provider.
IceServerLike: TypeAlias = str | RTCIceServer | IceServerProvider

_SCHEMES = ("stun", "stuns", "turn", "turns")
_REG_NAME = re.compile(r"[A-Za-z0-9._~-]+")
_PORT = re.compile(r"[0-9]{1,5}")


def redact(url: str) -> str:
    """``url`` with whatever stands between its scheme and the last ``@`` before its query
    replaced by ``***``: what may be shown of a URL that carries credentials."""
    scheme, colon, rest = url.partition(":")
    if not colon:
        return "***" if "@" in url else url
    where, question, query = rest.partition("?")
    if "@" in where:
        where = "***@" + where.rpartition("@")[2]
    return f"{scheme}{colon}{where}{question}{query}"


def parse_ice_url(url: str) -> RTCIceServer:
    """One STUN or TURN URL (the module docstring shows the form) as an ``RTCIceServer``: its
    ``urls`` the URL without credentials (scheme in lower case), ``username`` and ``credential``
    those it carried, percent-decoded (``None`` without any).

    :class:`~p2prpc.errors.InvalidIceServer` (a ``ValueError``) names the part that is wrong: an
    unknown ``scheme``; a ``host`` missing, malformed, or after ``//``; a ``port`` outside 1 to
    65535; a ``query`` other than ``transport=udp`` or ``transport=tcp`` on a TURN URL (a STUN
    URL takes none); ``credentials`` on a STUN URL, or without both a username and a credential.
    A TURN URL without credentials is returned as it is (:class:`IceServers` refuses it, unless
    a provider's credentials go with it).
    """
    if not isinstance(url, str):
        raise InvalidIceServer(
            f"an ICE server URL is a string, not {type(url).__name__}", part="entry"
        )
    shown = redact(url)
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in _SCHEMES:
        raise InvalidIceServer(
            f"{shown!r} is no ICE server URL: it starts with stun:, stuns:, turn: or turns:",
            part="scheme",
        )
    turn = scheme.startswith("turn")
    if rest.startswith("//"):
        raise InvalidIceServer(
            f"{shown!r}: no '//' after {scheme}: ({scheme}:HOST[:PORT], RFC 7064/7065)",
            part="host",
        )
    where, question, query = rest.partition("?")
    transport: str | None = None
    if question:
        if not turn:
            raise InvalidIceServer(f"{shown!r}: a STUN URL takes no '?{query}'", part="query")
        name, equals, transport = query.partition("=")
        if name != "transport" or not equals or transport not in ("udp", "tcp"):
            raise InvalidIceServer(
                f"{shown!r}: the only query a TURN URL takes is ?transport=udp or ?transport=tcp",
                part="query",
            )
    username = credential = None
    if "@" in where:
        userinfo, _, where = where.rpartition("@")
        if not turn:
            raise InvalidIceServer(
                f"{shown!r}: a STUN server takes no username or credential", part="credentials"
            )
        if "@" in userinfo:
            raise InvalidIceServer(
                f"{shown!r}: an '@' in a username or credential is written %40",
                part="credentials",
            )
        user, sep, password = userinfo.partition(":")
        if not sep or not user or not password:
            raise InvalidIceServer(
                f"{shown!r}: credentials are USERNAME:CREDENTIAL@ before the host (a ':' in"
                " the username is written %3A)",
                part="credentials",
            )
        try:
            username = urllib.parse.unquote(user, errors="strict")
            credential = urllib.parse.unquote(password, errors="strict")
        except UnicodeDecodeError:
            raise InvalidIceServer(
                f"{shown!r}: the credentials' percent-escapes are no UTF-8", part="credentials"
            ) from None
    host, port = _host_port(where, shown)
    canonical = f"{scheme}:{host}{f':{port}' if port else ''}"
    if transport is not None:
        canonical += f"?transport={transport}"
    return RTCIceServer(urls=[canonical], username=username, credential=credential)


def _host_port(where: str, shown: str) -> tuple[str, str]:
    """(host, port) of ``HOST[:PORT]`` (an IPv6 host in brackets); ``port`` may be empty."""
    if where.startswith("["):
        literal, bracket, after = where[1:].partition("]")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise InvalidIceServer(
                f"{shown!r}: {literal!r} is no IPv6 address", part="host"
            ) from None
        if not bracket or (after and not after.startswith(":")):
            raise InvalidIceServer(f"{shown!r}: an IPv6 host is [ADDRESS][:PORT]", part="host")
        host, port = f"[{literal}]", after[1:] if after else ""
        has_port = bool(after)
    else:
        host, has_colon, port = where.partition(":")
        has_port = bool(has_colon)
        if not host or not _REG_NAME.fullmatch(host):
            raise InvalidIceServer(f"{shown!r}: {host!r} is no host name or address", part="host")
    if has_port and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        raise InvalidIceServer(f"{shown!r}: {port!r} is no port (1 to 65535)", part="port")
    return host, port


def split_ice_urls(text: str) -> list[str]:
    """The URLs of a list separated by commas or white space (as :data:`ICE_SERVERS_ENV`)."""
    return [url for url in re.split(r"[,\s]+", text) if url]


def _check_server(server: RTCIceServer) -> RTCIceServer:
    """``server`` if it can be used: every URL well formed without credentials in it, and a
    username and credential (strings) when it is a TURN server."""
    urls = [server.urls] if isinstance(server.urls, str) else server.urls
    if not urls:
        raise InvalidIceServer("an RTCIceServer without URLs", part="entry")
    for url in urls:
        parsed = parse_ice_url(url)
        if parsed.username is not None:
            raise InvalidIceServer(
                f"{redact(url)!r}: an RTCIceServer's credentials go in its username and"
                " credential, not its URLs",
                part="credentials",
            )
        if url.lower().startswith("turn") and not (
            isinstance(server.username, str)
            and server.username
            and isinstance(server.credential, str)
            and server.credential
        ):
            raise InvalidIceServer(
                f"{url!r}: a TURN server needs a username and a credential"
                " (turn:USERNAME:CREDENTIAL@HOST, or a provider such as TurnRestCredentials)",
                part="credentials",
            )
    return server


def _as_servers(value: object) -> list[RTCIceServer]:
    """A static entry or a provider's result as checked ``RTCIceServer`` objects."""
    if isinstance(value, str):
        return [_check_server(parse_ice_url(value))]
    if isinstance(value, RTCIceServer):
        return [_check_server(value)]
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [server for item in value for server in _as_servers(item)]
    raise InvalidIceServer(
        f"an ICE server is a URL, an RTCIceServer or a provider, not {type(value).__name__}",
        part="entry",
    )


class TurnRestCredentials:
    """A provider of TURN credentials from a secret shared with the TURN server: the TURN REST
    API (draft-uberti-behave-turn-rest), as coturn checks them with ``use-auth-secret`` and
    ``static-auth-secret=SECRET``, and eturnal with its ``secret``.

    Each call returns an ``RTCIceServer`` for ``urls`` (TURN URLs without credentials, as
    :func:`parse_ice_url` reads them) with the username ``EXPIRY:USER``, ``EXPIRY`` the Unix
    time ``ttl`` seconds from now (an integer), and the credential the base64 of
    HMAC-SHA1(``secret``, username). Called before each connection attempt, so credentials are
    always fresh. ``secret``: as the server has it (text is UTF-8 encoded). ``user``: any name
    without ``:`` (what the server logs). ``clock``: the Unix time (``time.time``).
    :class:`~p2prpc.errors.InvalidIceServer` for a URL that is not a TURN URL, or one with
    credentials of its own; ``ValueError`` for an empty secret or a ``user`` with ``:``.
    Its ``repr`` never shows the secret.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        secret: str | bytes,
        *,
        user: str = TURN_REST_USER,
        ttl: float = TURN_REST_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.urls: list[str] = []
        for url in [urls] if isinstance(urls, str) else urls:
            parsed = parse_ice_url(url)
            if not url.lower().startswith("turn"):
                raise InvalidIceServer(
                    f"{url!r}: TURN REST credentials are for turn: and turns: URLs",
                    part="scheme",
                )
            if parsed.username is not None:
                raise InvalidIceServer(
                    f"{redact(url)!r}: TURN REST credentials replace those in the URL: give it"
                    " without them",
                    part="credentials",
                )
            assert not isinstance(parsed.urls, str)
            self.urls.extend(parsed.urls)
        if not self.urls:
            raise InvalidIceServer("TurnRestCredentials needs a TURN URL", part="entry")
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ValueError("the TURN REST secret is empty")
        if ":" in user:
            raise ValueError(f"a TURN REST user name has no ':' (the separator): {user!r}")
        self._key = key
        self.user = user
        self.ttl = ttl
        self.clock = clock

    def credentials(self) -> tuple[str, str]:
        """(username, credential) valid for ``ttl`` seconds from now."""
        username = f"{int(self.clock() + self.ttl)}:{self.user}"
        digest = hmac.new(self._key, username.encode(), hashlib.sha1).digest()
        return username, base64.b64encode(digest).decode("ascii")

    def __call__(self) -> RTCIceServer:
        username, credential = self.credentials()
        return RTCIceServer(urls=list(self.urls), username=username, credential=credential)

    def __repr__(self) -> str:
        return f"TurnRestCredentials({self.urls!r}, user={self.user!r}, ttl={self.ttl!r})"


def ice_server_entries(
    urls: Sequence[str],
    *,
    turn_secret: str | bytes | None = None,
    turn_user: str = TURN_REST_USER,
    turn_ttl: float = TURN_REST_TTL,
) -> list[IceServerLike]:
    """``ice_servers`` entries for ``urls`` (as :func:`parse_ice_url` reads them): each URL as
    it is, except TURN URLs without credentials, which take :class:`TurnRestCredentials` from
    ``turn_secret`` (one provider for all of them). :class:`~p2prpc.errors.InvalidIceServer`
    for a malformed URL, or a TURN URL without credentials and no ``turn_secret``."""
    entries: list[IceServerLike] = []
    rest: list[str] = []
    for url in urls:
        parsed = parse_ice_url(url)
        if url.lower().startswith("turn") and parsed.username is None:
            if turn_secret is None:
                raise InvalidIceServer(
                    f"{url!r}: a TURN server needs a username and a credential"
                    " (turn:USERNAME:CREDENTIAL@HOST), or a TURN REST secret",
                    part="credentials",
                )
            rest.append(url)
        else:
            entries.append(url)
    if rest:
        assert turn_secret is not None
        entries.append(TurnRestCredentials(rest, turn_secret, user=turn_user, ttl=turn_ttl))
    return entries


def ice_servers_from_environment(
    environ: Mapping[str, str] | None = None,
) -> list[IceServerLike] | None:
    """The ``ice_servers`` :data:`ICE_SERVERS_ENV` names (with :data:`TURN_SECRET_ENV`'s TURN
    REST secret for its TURN URLs without credentials: :func:`ice_server_entries`); ``None``
    when it is unset or blank. :class:`~p2prpc.errors.InvalidIceServer` naming the variable for
    a URL it refuses."""
    env = os.environ if environ is None else environ
    urls = split_ice_urls(env.get(ICE_SERVERS_ENV, ""))
    if not urls:
        return None
    try:
        return ice_server_entries(urls, turn_secret=env.get(TURN_SECRET_ENV) or None)
    except InvalidIceServer as e:
        raise InvalidIceServer(f"{ICE_SERVERS_ENV}: {e}", part=e.part) from None


def _provider_name(provider: object) -> str:
    if isinstance(provider, TurnRestCredentials):
        return repr(provider)
    return getattr(provider, "__qualname__", None) or type(provider).__qualname__


class IceServers:
    """The ICE servers of a peer: static ones, checked here, and providers asked for theirs
    before each connection attempt (see the module docstring).

    ``servers``: ``None`` for P2PT's default STUN servers, else a list of URLs, ``RTCIceServer``
    objects and providers. ``timeout``: seconds an async provider has to return (a plain
    function is not interrupted). :class:`~p2prpc.errors.InvalidIceServer` for a static entry
    that cannot be used; ``TypeError`` for one string instead of a list.
    """

    def __init__(
        self,
        servers: Sequence[IceServerLike] | None,
        *,
        timeout: float = PROVIDER_TIMEOUT,
    ) -> None:
        if isinstance(servers, str):
            raise TypeError(f"ice_servers is a list of ICE servers, not one string: [{servers!r}]")
        if isinstance(servers, RTCIceServer):
            raise TypeError("ice_servers is a list of ICE servers, not one RTCIceServer")
        self.timeout = timeout
        self._entries: list[RTCIceServer | IceServerProvider] | None = None
        if servers is not None:
            self._entries = []
            for entry in servers:
                if isinstance(entry, str | RTCIceServer):
                    self._entries.extend(_as_servers(entry))
                elif callable(entry):
                    self._entries.append(entry)
                else:
                    _as_servers(entry)  # raises, naming what it is
        self._failing: str | None = None  # the failure last logged, until one succeeds

    @property
    def dynamic(self) -> bool:
        """Whether a provider is among them (each connection attempt then asks it)."""
        return self._entries is not None and any(
            not isinstance(entry, RTCIceServer) for entry in self._entries
        )

    @property
    def relaying(self) -> bool:
        """Whether a connection attempt may allocate on a TURN server: a ``turn:`` or
        ``turns:`` URL is among the static servers, or a provider is (it may return one). Each
        offer and each answer then costs an allocation on that server, counted against its
        operator's quota."""
        if self._entries is None:
            return False  # P2PT's defaults: STUN servers only
        for entry in self._entries:
            if not isinstance(entry, RTCIceServer):
                return True
            urls = [entry.urls] if isinstance(entry.urls, str) else entry.urls
            if any(url.lower().startswith(("turn:", "turns:")) for url in urls):
                return True
        return False

    @property
    def static(self) -> list[RTCIceServer] | None:
        """The servers given as they are (``None``: P2PT's defaults), providers left out."""
        if self._entries is None:
            return None
        return [entry for entry in self._entries if isinstance(entry, RTCIceServer)]

    async def resolve(self) -> list[RTCIceServer] | None:
        """The servers for one connection attempt: the static ones and what each provider
        returns now, in the order given. :class:`~p2prpc.errors.IceServersUnavailable` when a
        provider raises, returns something that is no ICE server (an empty list is none), or
        takes more than ``timeout`` seconds."""
        if self._entries is None:
            return None
        resolved: list[RTCIceServer] = []
        provider: object = None
        try:
            async with asyncio.timeout(self.timeout):
                for entry in self._entries:
                    if isinstance(entry, RTCIceServer):
                        resolved.append(entry)
                        continue
                    provider = entry
                    value = entry()
                    if inspect.isawaitable(value):
                        value = await value
                    resolved.extend(_as_servers(value))
        except TimeoutError:
            self._failed(
                IceServersUnavailable(
                    f"ICE server provider {_provider_name(provider)} did not return within"
                    f" {self.timeout:g} s"
                )
            )
        except Exception as e:
            error = IceServersUnavailable(
                f"ICE server provider {_provider_name(provider)} failed: {type(e).__name__}: {e}"
            )
            error.__cause__ = e
            self._failed(error)
        self._failing = None
        return resolved

    def _failed(self, error: IceServersUnavailable) -> None:
        text = str(error)
        if text != self._failing:
            self._failing = text
            logger.warning("%s: no connection is attempted until it works", text)
        raise error
