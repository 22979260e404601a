"""What a process holds, read from /proc: open file descriptors, threads (native ones included:
libwebrtc's are not Python threads) and resident memory."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

from p2prpc.transport import Link, RTCOptions, Transport

MiB = 2**20


@dataclass(frozen=True)
class Usage:
    fds: int
    threads: int
    rss: int  # bytes

    @classmethod
    def now(cls) -> Usage:
        gc.collect()  # what is garbage is not held
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return cls(len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task")), rss)

    def __str__(self) -> str:
        return f"fds={self.fds} threads={self.threads} rss={self.rss / MiB:.1f}MiB"


class CountingTransport:
    """A transport as it is (aiortc's or libwebrtc's), counting the links it makes."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.name = transport.name
        self.links = 0

    def link(self, options: RTCOptions, *, initiator: bool, label: str) -> Link:
        self.links += 1
        return self.transport.link(options, initiator=initiator, label=label)
