"""redisrpc: call remote Python objects through Redis, with introspection for IPython and Jupyter.

::

    import redis, redisrpc
    server = redisrpc.Server(redis.Redis(), "calc", Calculator())   # in one process
    server.run()

    calc = redisrpc.Client(redis.Redis(), "calc")                   # in another
    calc.add(5)
"""

from __future__ import annotations

from importlib import import_module as _import_module
from importlib.util import find_spec as _find_spec

from ._version import __version__
from .client.aio import AsyncClient
from .client.discovery import InstanceInfo, ServiceInfo, discover
from .client.lock import Lock, lock, lock_info, lock_info_async
from .client.running import cancel, running
from .client.sync import (
    DEFAULT_TIMEOUT,
    Client,
    description,
    refresh,
    with_progress,
    with_timeout,
)
from .client.watch import Watch, watch
from .core.protocol import PROTOCOL_VERSION
from .embedded import EmbeddedRedis, ensure_redis
from .errors import (
    CallCancelledError,
    CommandError,
    EncodingError,
    LockedError,
    MessageTooLargeError,
    ProtocolError,
    RedisConnectionError,
    RedisRPCError,
    RemoteException,
    RemoteTraceback,
    ServerGoneError,
    ServiceConflictError,
    TimeoutException,
    TransportError,
    UnknownServiceError,
)
from .server.calls import cancelled, progress
from .server.exposure import expose, writable
from .server.loop import Server

RedisRPCClient = Client
"""The classic name of :class:`Client`."""
RedisRPCServer = Server
"""The classic name of :class:`Server`."""

__all__ = [
    "DEFAULT_TIMEOUT",
    "PROTOCOL_VERSION",
    "AsyncClient",
    "CallCancelledError",
    "Client",
    "CommandError",
    "EmbeddedRedis",
    "EncodingError",
    "InstanceInfo",
    "Lock",
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
    "ServiceConflictError",
    "ServiceInfo",
    "TimeoutException",
    "TransportError",
    "UnknownServiceError",
    "Watch",
    "__version__",
    "cancel",
    "cancelled",
    "description",
    "discover",
    "ensure_redis",
    "expose",
    "lock",
    "lock_info",
    "lock_info_async",
    "progress",
    "refresh",
    "running",
    "watch",
    "with_progress",
    "with_timeout",
    "writable",
]

# The notebook widget needs ipywidgets, an optional extra: import it on first use,
# and list it in __all__ only where it can be imported.
_LAZY = {"Explorer": "notebook.explorer", "explore": "notebook.explorer"}
if _find_spec("ipywidgets") is not None:
    __all__ += ["Explorer", "explore"]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'redisrpc' has no attribute {name!r}")
    try:
        value = getattr(_import_module(f".{module}", __name__), name)
    except ImportError as exc:
        raise ImportError(
            f"redisrpc.{name} needs ipywidgets: pip install 'redisrpc[notebook]' ({exc})"
        ) from exc
    globals()[name] = value
    return value
