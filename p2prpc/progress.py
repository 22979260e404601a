"""Progress of long work: large messages arriving from peers, and waits on the swarm.

``watch_transfers(node, callback)`` calls ``callback(TransferProgress)`` as each large message
(``min_bytes`` and more, 1 MiB by default) arrives chunk by chunk, as Trystero's progress
callbacks do: which peer, which message (its P2PT message id, the same as the call id of the RPC
it belongs to), the bytes received so far, and whether it is complete. Neither framing says how
long a message will be, so there is no total: a progress bar shows bytes and rate.

For the command line, :func:`waiting` shows a spinner and :meth:`Transfers.shown` a progress bar on
stderr, when stderr is a terminal (and nothing otherwise, so logs and pipes stay clean).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .node import Node
    from .p2pt import Peer

__all__ = ["TransferProgress", "Transfers", "waiting", "watch_transfers"]

#: Messages at least this long (bytes received) are reported.
DEFAULT_MIN_BYTES = 2**20

_BINARY_MAGIC = 0xB7
_MORE = 2
_P2PT_ID = re.compile(rb'^\^\{"id":\s*(\d+)')
_P2PT_LAST = re.compile(rb'"last":\s*true\}\s*$')


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """How far one incoming message has come."""

    peer_id: str
    message_id: int
    received: int  # bytes of frames received so far
    done: bool


class Transfers:
    """Counts the frames of each incoming message; reports those past ``min_bytes``."""

    def __init__(
        self,
        node: Node,
        callback: Callable[[TransferProgress], None],
        min_bytes: int = DEFAULT_MIN_BYTES,
    ) -> None:
        self.node = node
        self.callback = callback
        self.min_bytes = min_bytes
        self._received: dict[tuple[str, int], int] = {}
        node.p2pt.on("data", self._on_data)

    def close(self) -> None:
        """Stop watching."""
        self.node.p2pt.remove_listener("data", self._on_data)
        self._received.clear()

    def _on_data(self, peer: Peer, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        if raw[:1] == bytes([_BINARY_MAGIC]) and len(raw) >= 7:
            message_id = int.from_bytes(raw[3:7])
            last = not raw[2] & _MORE
        else:
            found = _P2PT_ID.match(raw)
            if found is None:
                return
            message_id = int(found.group(1))
            last = _P2PT_LAST.search(raw[-32:]) is not None
        key = (peer.id, message_id)
        received = self._received.get(key, 0) + len(raw)
        if last:
            self._received.pop(key, None)
        else:
            self._received[key] = received
        if received >= self.min_bytes:
            self.callback(TransferProgress(peer.id, message_id, received, last))

    @classmethod
    @contextlib.contextmanager
    def shown(cls, node: Node, label: str, min_bytes: int = DEFAULT_MIN_BYTES) -> Iterator[None]:
        """A progress bar on stderr for each large message arriving meanwhile (when stderr is a
        terminal)."""
        from rich.console import Console
        from rich.progress import (
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        if not console.is_terminal:
            yield
            return
        tasks: dict[tuple[str, int], Any] = {}
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        ) as bar:

            def update(p: TransferProgress) -> None:
                key = (p.peer_id, p.message_id)
                if key not in tasks:
                    tasks[key] = bar.add_task(f"{label} from {p.peer_id[:8]}", total=None)
                bar.update(tasks[key], completed=p.received)
                if p.done:
                    bar.remove_task(tasks.pop(key))

            transfers = cls(node, update, min_bytes)
            try:
                yield
            finally:
                transfers.close()


def watch_transfers(
    node: Node, callback: Callable[[TransferProgress], None], min_bytes: int = DEFAULT_MIN_BYTES
) -> Transfers:
    """Call ``callback`` as large messages arrive at ``node``; ``.close()`` the result to stop."""
    return Transfers(node, callback, min_bytes)


@contextlib.contextmanager
def waiting(what: str) -> Iterator[None]:
    """A spinner on stderr saying what is awaited (when stderr is a terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    with console.status(what + "…"):
        yield
