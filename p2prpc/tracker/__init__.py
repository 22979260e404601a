"""WebTorrent trackers: a connection to one tracker (``client``), the embedded one (``server``).

Both speak the protocol of bittorrent-tracker 11 (see :mod:`p2prpc.wire.tracker`), so either side
can be swapped for its JavaScript counterpart.
"""

from .server import ServerStats, TrackerServer

__all__ = ["ServerStats", "TrackerServer"]
