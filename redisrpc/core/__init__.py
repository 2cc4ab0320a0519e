"""The core: the wire format, the boundary to Redis and the plans both clients run.

* :mod:`~redisrpc.core.protocol` -- the JSON wire format (pure code, no I/O);
* :mod:`~redisrpc.core.transport` -- the one boundary to redis-py, with
  :mod:`~redisrpc.core.wire` and :mod:`~redisrpc.core.urls` (whose public names it
  re-exports), :mod:`~redisrpc.core.cluster` and :mod:`~redisrpc.core.aio_transport`
  (which build on it and are imported from their own modules);
* :mod:`~redisrpc.core.clock` -- the Redis clock estimate, immune to local clock steps;
* :mod:`~redisrpc.core.registry` -- the registry's layout and its plans.

Nothing here imports the client, the server or the notebook packages.
"""

from __future__ import annotations

__all__: list[str] = []
