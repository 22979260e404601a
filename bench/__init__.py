"""``make bench``: p2prpc on both its transports (aiortc and libwebrtc) measured beside raw data
channels on each, gRPC aio and JavaScript P2PT, in one run.

Every benchmark row runs its peers as separate processes (``python -m bench.worker`` for Python
peers, ``bench/js/p2pt-peer.mjs`` in node for JavaScript P2PT ones) driven by one orchestrator
(``python -m bench``) over their stdin and stdout, so that no two peers share an event loop and
the two sides of a measurement can use both cores, as they would on two machines. Python peers,
on aiortc or libwebrtc, meet on loopback with ICE pinned to 127.0.0.1; rows with a JavaScript
P2PT peer run inside a network namespace made for the run (node's libwebrtc offers no loopback
candidates).

Modules:

- ``cli``: the command line, the table, ``results.json`` and the chart.
- ``rows``: one function per benchmark row, orchestrating worker processes.
- ``procs``: the orchestrator's side of a worker process, and the trackers.
- ``worker``: the worker process: JSON-line commands in, results out.
- ``peer_rpc``, ``peer_raw``, ``peer_grpc``, ``peer_pubsub``: the commands a worker runs for
  p2prpc (and its tracker), raw data channels (aiortc, or libwebrtc by ``webrtc.aiortc``), gRPC
  aio and p2prpc topics.
- ``measure``: the unary loops p2prpc and gRPC share; each worker's CPU time (``proc.cpu``).
- ``records``, ``stamp``: realistic bulk data; the publish time and number fan-out messages carry.
- ``stats``, ``report``: summaries of repeated figures, the row model, table and chart.
- ``udp``: the socket buffers workers ask for, and the datagrams their sockets dropped.
- ``previous``: the figures of the run the README last published, for the table's side.
- ``profile``: ``--profile`` samples the workers with py-spy and ranks p2prpc's hot spots.
"""
