"""The emulated long path holds what it says: its delay each way and its loss, between its ends."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from . import A, B, LongPath, unavailable_reason

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"no long path here: {unavailable_reason()}"
)


def udp(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Room for every datagram a test sends before it reads: the default (208 KiB) holds 256 small
    # ones, and the loss test's 300 less fewer than 44 dropped would overflow it.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((address, 0))
    sock.settimeout(2.0)
    return sock


def round_trips(a: socket.socket, b: socket.socket, count: int) -> list[float]:
    """Seconds each of ``count`` datagrams took from ``a`` to ``b`` and back."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        a.sendto(i.to_bytes(4), b.getsockname())
        data, sender = b.recvfrom(64)
        b.sendto(data, sender)
        assert a.recvfrom(64)[0] == data
        times.append(time.perf_counter() - start)
    return times


def test_packets_between_the_ends_take_the_delay_each_way_and_nothing_else_does() -> None:
    with LongPath(0.02) as path, path.inside():
        with udp(A) as a, udp(B) as b:
            slow = round_trips(a, b, 10)
        with udp("127.0.0.1") as c, udp("127.0.0.1") as d:
            fast = round_trips(c, d, 10)
        assert min(slow) >= 0.04
        assert sorted(slow)[5] < 0.06  # the program holds each packet its delay, not more
        assert max(fast) < 0.02
        assert path.counters() == {"delay A>B": 10, "delay B>A": 10}


def test_loss_drops_about_its_share_of_packets_each_way_silently() -> None:
    with LongPath(0.0, loss=0.2) as path, path.inside(), udp(A) as a, udp(B) as b:
        for i in range(300):
            a.sendto(i.to_bytes(4), b.getsockname())  # a drop is never an error for the sender
        b.settimeout(0.5)
        got = 0
        try:
            while True:
                b.recvfrom(64)
                got += 1
        except TimeoutError:
            pass
        dropped = path.counters()["drop A>B"]
        assert got + dropped == 300
        assert 20 <= dropped <= 110  # 60 expected; far outside this once in a billion runs


def test_a_cut_path_carries_nothing_until_it_is_restored() -> None:
    with LongPath(0.0) as path, path.inside(), udp(A) as a, udp(B) as b:
        path.cut()
        a.sendto(b"lost", b.getsockname())
        b.settimeout(0.3)
        with pytest.raises(TimeoutError):
            b.recvfrom(64)
        path.restore()
        a.sendto(b"found", b.getsockname())
        assert b.recvfrom(64)[0] == b"found"


def test_closing_removes_the_namespace_and_the_delay_program() -> None:
    path = LongPath(0.01).open()
    delay = path._delay
    assert delay is not None and delay.poll() is None
    path.close()
    assert delay.poll() is not None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert path.name not in listed
