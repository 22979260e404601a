"""The UDP sockets under the data channels: the buffers workers ask for, the datagrams lost.

aiortc's SCTP sends bursts of datagrams; what a receiving socket has no buffer left for, the kernel
drops and SCTP only resends after its retransmission timeout. Two counts of it:

- :func:`socket_drops`: the ``drops`` of a process's own open sockets (``/proc/PID/net/udp``),
  which the orchestrator reads from every worker before it closes: the row's own losses;
- :func:`counters`: the network namespace's ``RcvbufErrors`` (``/proc/net/snmp``), read around
  each phase, which also counts whatever else runs on the machine meanwhile.

The Python workers size their sockets as the run says (``--udp-buffer-size``), p2prpc's nodes
through ``udp_buffer_size`` and the raw aiortc baseline with the same helper, so that both stand
on the same sockets.
"""

from __future__ import annotations

import os

from p2prpc.transport import UDP_BUFFER_SIZE

ENV = "P2PRPC_BENCH_UDP_BUFFER_SIZE"
"""How the orchestrator tells its workers the buffer size: bytes, ``0`` for aioice's own."""

COUNTERS = ("RcvbufErrors", "SndbufErrors", "InErrors")
"""The counters of ``/proc/net/snmp``'s ``Udp:`` lines a row reports."""


def buffer_size() -> int | None:
    """The receive and send buffer this worker asks for its UDP sockets (None: aioice's own)."""
    value = os.environ.get(ENV)
    if value is None:
        return UDP_BUFFER_SIZE
    size = int(value)
    return size if size > 0 else None


def counters() -> dict[str, int] | None:
    """This network namespace's UDP error counters, IPv4 and IPv6 summed (None without ``/proc``).

    ``RcvbufErrors``: datagrams dropped for want of receive buffer; ``SndbufErrors``: sends refused
    for want of send buffer; ``InErrors``: every datagram dropped on the way in (these included).
    """
    found = dict.fromkeys(COUNTERS, 0)
    try:
        with open("/proc/net/snmp") as snmp:
            udp = [line.split() for line in snmp if line.startswith("Udp:")]
    except OSError:
        return None
    if len(udp) < 2:
        return None
    names, values = udp[0], udp[1]
    for name in COUNTERS:
        if name in names:
            found[name] += int(values[names.index(name)])
    try:
        with open("/proc/net/snmp6") as snmp6:
            for line in snmp6:
                name, _, value = line.partition(" ")
                if name.removeprefix("Udp6") in COUNTERS and name.startswith("Udp6"):
                    found[name.removeprefix("Udp6")] += int(value)
    except OSError:
        pass  # no IPv6
    return found


def delta(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int] | None:
    """How much each counter grew (None when either reading is missing)."""
    if before is None or after is None:
        return None
    return {name: after[name] - before.get(name, 0) for name in after}


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    folder = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(folder)
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"{folder}/{fd}")
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    return inodes


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def socket_drops(pid: int) -> dict[str, int] | None:
    """Datagrams dropped so far on the way in to each open UDP socket (by inode) of process
    ``pid`` and its children (a worker may run under py-spy); None where ``/proc`` cannot tell.

    A closed socket's count goes with it: :class:`DropWatch` reads these again and again.
    """
    drops: dict[str, int] = {}
    found = False
    for process in [pid, *_children(pid)]:
        inodes = _socket_inodes(process)
        for name in ("udp", "udp6"):
            try:
                with open(f"/proc/{process}/net/{name}") as table:
                    lines = table.readlines()[1:]
            except OSError:
                continue
            found = True
            for line in lines:
                fields = line.split()  # ... inode ref pointer drops
                if len(fields) >= 13 and fields[9] in inodes:
                    drops[fields[9]] = int(fields[12])
    return drops if found else None


class DropWatch:
    """The datagrams a process's UDP sockets dropped, those since closed included.

    ``poll()`` (the orchestrator calls it every second while the process lives, and once more
    before closing it) keeps each socket's latest count; a socket that dropped datagrams within a
    second of closing may be missed by that much.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[str, int] = {}
        self.known = False

    def poll(self) -> None:
        drops = socket_drops(self.pid)
        if drops is not None:
            self.known = True
            self.seen.update(drops)

    @property
    def total(self) -> int | None:
        return sum(self.seen.values()) if self.known else None
