"""`make demo`: the embedded tracker, a serving peer and a calling peer, as three processes.

Everything stays on loopback: the tracker listens on 127.0.0.1 and the peers' WebRTC candidates are
pinned to 127.0.0.1 with no STUN server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "generated"), str(ROOT)])}
    tracker = subprocess.Popen(
        [sys.executable, "-m", "p2prpc", "--log-level", "warning", "tracker", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        assert tracker.stdout is not None
        url = tracker.stdout.readline().strip()
        print(f"[tracker] listening at {url}", flush=True)
        server = subprocess.Popen(
            [sys.executable, str(HERE / "server.py"), "--tracker", url], env=env
        )
        client = subprocess.run(
            [sys.executable, str(HERE / "client.py"), "--tracker", url], env=env, timeout=120
        )
        print(f"[demo] client exited with {client.returncode}", flush=True)
        return client.returncode
    finally:
        for process in (server, tracker):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
