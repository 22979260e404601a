"""What the libwebrtc transport reads of libwebrtc's candidate events, on its own: server URLs
compared whatever their spelling, and when a link's candidates are all in though libwebrtc still
asks the servers from the loopback interface, or waits out a server that does not answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

pytest.importorskip("webrtc.aiortc", reason="the libwebrtc transport needs wrtc (p2prpc[native])")

from p2prpc.transport.wrtc import _end_candidates, _Gathering, _server_key


def test_server_urls_are_compared_whatever_their_spelling() -> None:
    assert _server_key("stun:10.0.0.1") == ("stun", "10.0.0.1", 3478, "udp")
    assert _server_key("turn:user:pw@Example.org:3479?transport=TCP") == (
        "turn",
        "example.org",
        3479,
        "tcp",
    )
    assert _server_key("turns:[2001:db8::1]") == ("turns", "2001:db8::1", 5349, "tcp")
    assert _server_key("turn:h:3478") == _server_key("turn:h?transport=udp")
    for nothing in ("http://h", "stun:", "stun:h:port"):
        assert _server_key(nothing) is None


def test_end_of_candidates_closes_each_media_section_once() -> None:
    sdp = "v=0\r\nm=application 9\r\na=candidate:1\r\nm=application 9\r\na=end-of-candidates\r\n"
    ended = _end_candidates(sdp)
    assert ended.count("a=end-of-candidates") == 2
    assert ended.endswith("a=end-of-candidates\r\n")
    setup_last = _end_candidates("v=0\r\nm=application 9\r\na=candidate:1\r\na=setup:actpass\r\n")
    assert setup_last.endswith("a=candidate:1\r\na=end-of-candidates\r\na=setup:actpass\r\n")
    assert _end_candidates(ended) == ended
    assert _end_candidates("v=0\r\n") == "v=0\r\n"  # no media section: nothing to end


@dataclass
class Candidate:
    candidate: str
    type: str
    address: str
    port: int
    protocol: str = "udp"
    url: str | None = None


@dataclass
class CandidateEvent:
    candidate: Candidate | None


@dataclass
class ErrorEvent:
    url: str
    address: str
    port: int | None
    error_code: int = 701  # no answer


def host(network: int, address: str, port: int) -> CandidateEvent:
    line = f"candidate:1 1 udp 1 {address} {port} typ host network-id {network}"
    return CandidateEvent(Candidate(line, "host", address, port))


def gathered(network: int, kind: str, url: str) -> CandidateEvent:
    line = f"candidate:2 1 udp 1 10.9.9.9 4000 typ {kind} network-id {network}"
    return CandidateEvent(Candidate(line, kind, "10.9.9.9", 4000, url=url))


@pytest.mark.asyncio
async def test_gathering_is_in_once_every_network_but_loopback_heard_from_every_server() -> None:
    gathering = _Gathering(
        ["stun:10.0.0.1:3478", "turn:u:p@10.0.0.2:3478?transport=udp"], timeout=60
    )
    gathering.on_candidate(host(1, "192.168.1.2", 5000))
    gathering.on_candidate(host(2, "127.0.0.1", 5001))  # loopback: never waited for
    gathering.on_candidate(host(3, "10.1.0.2", 5002))
    gathering.on_candidate(host(4, "fd00::2", 5003))  # no server of its family: none expected
    gathering.on_candidate(gathered(1, "srflx", "stun:10.0.0.1:3478"))
    gathering.on_candidate(gathered(3, "srflx", "stun:10.0.0.1:3478"))
    gathering.on_error(ErrorEvent("turn:10.0.0.2:3478?transport=udp", "192.168.1.x", 5000))
    assert not gathering.done.is_set()  # network 3 has nothing from the TURN server yet
    gathering.on_error(ErrorEvent("turn:10.0.0.2:3478?transport=udp", "127.0.0.x", 5001))
    assert not gathering.done.is_set()  # loopback's refusal stands for no other network
    gathering.on_candidate(gathered(3, "relay", "turn:10.0.0.2:3478?transport=udp"))
    assert gathering.done.is_set()


@pytest.mark.asyncio
async def test_gathering_is_in_when_libwebrtc_says_it_is_complete() -> None:
    gathering = _Gathering(["stun:s:3478"], timeout=60)
    gathering.on_candidate(host(1, "192.168.1.2", 5000))
    assert not gathering.done.is_set()  # its server-reflexive candidate never came
    gathering.on_candidate(CandidateEvent(None))
    assert gathering.done.is_set()


@pytest.mark.asyncio
async def test_a_server_on_loopback_is_waited_for_from_loopback_only() -> None:
    """From ``lo`` an answer comes only from a server on loopback, and from a server on
    loopback only to ``lo`` (libwebrtc may ask it from elsewhere too)."""
    local = "turn:u:p@127.0.0.1:3478?transport=udp"
    gathering = _Gathering([local, "stun:10.0.0.1:3478"], timeout=60)
    gathering.on_candidate(host(1, "192.168.1.2", 5000))
    gathering.on_candidate(host(3, "127.0.0.1", 5001))
    gathering.on_candidate(gathered(1, "srflx", "stun:10.0.0.1:3478"))
    assert not gathering.done.is_set()  # lo has not heard from the server on loopback
    gathering.on_error(ErrorEvent("turn:127.0.0.1:3478?transport=udp", "127.0.0.x", 5001, 401))
    assert gathering.done.is_set() and gathering.settled
    assert gathering.unanswered() == []


@pytest.mark.asyncio
async def test_under_the_relay_policy_every_turn_server_is_waited_for_once() -> None:
    """No host candidates, so no networks: each TURN URL's first relayed candidate or error
    (any network's) is what is waited for; STUN servers are not asked."""
    first, second = "turn:u:p@10.0.0.2:3478?transport=udp", "turn:u:p@10.0.0.3:3478?transport=tcp"
    gathering = _Gathering(["stun:10.0.0.1:3478", first, second], relay=True, timeout=60)
    gathering.on_candidate(gathered(1, "relay", "turn:10.0.0.2:3478?transport=udp"))
    assert not gathering.done.is_set()
    gathering.on_error(ErrorEvent("turn:10.0.0.3:3478?transport=tcp", "127.0.0.x", None))
    assert not gathering.done.is_set()  # no answer from loopback: none comes there
    gathering.on_error(ErrorEvent("turn:10.0.0.3:3478?transport=tcp", "192.168.1.x", 5000, 401))
    assert gathering.done.is_set() and gathering.settled
    gathering.close()


@pytest.mark.asyncio
async def test_servers_silent_for_the_timeout_after_the_first_answer_are_left_out() -> None:
    dead = "turn:u:p@10.0.0.9:3479?transport=udp"
    gathering = _Gathering([dead, "turn:u:p@10.0.0.2:3478"], relay=True, timeout=0.01)
    assert gathering._timer is None  # nothing answered: no clock runs (wrtc's 5 s does)
    gathering.on_candidate(gathered(1, "relay", "turn:10.0.0.2:3478?transport=udp"))
    await asyncio.wait_for(gathering.done.wait(), timeout=10)
    assert not gathering.settled
    assert gathering.unanswered() == ["turn:10.0.0.9:3479?transport=udp"]


@pytest.mark.asyncio
async def test_under_the_relay_policy_each_network_that_reaches_a_server_is_waited_for() -> None:
    """A relayed candidate on each network of the machine that reaches the server (counted by
    network id, as no host candidate names the networks), or an error from it."""
    url = "turn:u:p@10.0.0.2:3478?transport=udp"
    addresses = ["192.168.1.2", "10.1.0.2", "fd00::2", "127.0.0.1"]  # two reach it
    gathering = _Gathering([url], relay=True, addresses=addresses, timeout=60)
    gathering.on_candidate(gathered(1, "relay", "turn:10.0.0.2:3478?transport=udp"))
    gathering.on_candidate(gathered(1, "relay", "turn:10.0.0.2:3478?transport=udp"))
    assert not gathering.done.is_set()  # one network of two
    gathering.on_candidate(gathered(5, "relay", "turn:10.0.0.2:3478?transport=udp"))
    assert gathering.done.is_set() and gathering.settled
    gathering.close()


@pytest.mark.asyncio
async def test_a_network_that_reaches_no_server_heard_first_does_not_end_the_wait() -> None:
    """libwebrtc's loopback host candidates often come first: the others are on their way."""
    gathering = _Gathering(["stun:10.0.0.1:3478"], timeout=60)
    gathering.on_candidate(host(3, "127.0.0.1", 5001))
    gathering.on_candidate(host(2, "fd00::2", 5003))  # no server of its family
    assert not gathering.done.is_set()
    gathering.on_candidate(host(1, "192.168.1.2", 5000))
    assert not gathering.done.is_set()
    gathering.on_candidate(gathered(1, "srflx", "stun:10.0.0.1:3478"))
    assert gathering.done.is_set() and gathering.settled
