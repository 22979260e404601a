"""The bench counts datagrams its processes' sockets dropped, those closed since included."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from bench.udp import DropWatch, counters, socket_drops

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's /proc")


def flood(receiver: socket.socket, count: int = 500) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(bytes(1000), receiver.getsockname())


def test_drops_of_a_closed_socket_stay_counted() -> None:
    watch = DropWatch(os.getpid())
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a few datagrams at most
    inode = str(os.fstat(receiver.fileno()).st_ino)
    flood(receiver)
    drops = socket_drops(os.getpid())
    assert drops is not None and drops[inode] > 0
    watch.poll()
    receiver.close()
    watch.poll()
    assert watch.total is not None and watch.total >= drops[inode]


def test_namespace_counters_are_read() -> None:
    found = counters()
    assert found is not None
    assert set(found) == {"RcvbufErrors", "SndbufErrors", "InErrors"}
