"""redisrpc: call remote Python objects through Redis, with introspection for IPython and Jupyter.

::

    import redis, redisrpc
    server = redisrpc.Server(redis.Redis(), "calc", Calculator())   # in one process
    server.run()

    calc = redisrpc.Client(redis.Redis(), "calc")                   # in another
    calc.add(5)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .client import DEFAULT_TIMEOUT, Client, description, refresh, with_timeout
from .errors import (
    EncodingError,
    LockedError,
    MessageTooLargeError,
    ProtocolError,
    RedisConnectionError,
    RedisRPCError,
    RemoteException,
    RemoteTraceback,
    ServerGoneError,
    TimeoutException,
    TransportError,
)
from .introspect import expose
from .protocol import PROTOCOL_VERSION
from .server import Server

RedisRPCClient = Client
"""The classic name of :class:`Client`."""
RedisRPCServer = Server
"""The classic name of :class:`Server`."""

__all__ = [
    "DEFAULT_TIMEOUT",
    "PROTOCOL_VERSION",
    "Client",
    "EncodingError",
    "LockedError",
    "MessageTooLargeError",
    "ProtocolError",
    "RedisConnectionError",
    "RedisRPCClient",
    "RedisRPCError",
    "RedisRPCServer",
    "RemoteException",
    "RemoteTraceback",
    "Server",
    "ServerGoneError",
    "TimeoutException",
    "TransportError",
    "__version__",
    "description",
    "expose",
    "refresh",
    "with_timeout",
]
