"""The client: proxies built from ``__describe__``, sync and asyncio, and the advisory lock."""

from __future__ import annotations

from .aio import AsyncClient
from .lock import Lock, lock, lock_info, lock_info_async
from .sync import DEFAULT_TIMEOUT, Client, description, refresh, with_progress, with_timeout
from .watch import Watch, watch

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "Client",
    "Lock",
    "Watch",
    "description",
    "lock",
    "lock_info",
    "lock_info_async",
    "refresh",
    "watch",
    "with_progress",
    "with_timeout",
]
