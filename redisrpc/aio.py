"""The asyncio client's public module: ``redisrpc.aio.set_property`` and :class:`AsyncClient`.

The implementation lives in :mod:`redisrpc.client.aio`.
"""

from __future__ import annotations

from .client.aio import AsyncClient, set_property

__all__ = ["AsyncClient", "set_property"]
