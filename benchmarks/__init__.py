"""Benchmarks: redisrpc against a Redis PING, a naive RPUSH/BLPOP RPC, Pyro5 and RPyC.

Run ``python -m benchmarks`` (``--quick`` for a tiny run, ``--help`` for the
options). It starts its own redis-server on a free port when ``redis-server``
is installed (else it uses ``REDIS_URL``), runs every server in its own
process, and prints one Markdown table whose ratios compare figures measured
in the same run.
"""

from __future__ import annotations

__all__: list[str] = []
