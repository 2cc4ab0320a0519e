"""Handles: values JSON cannot hold come back as remote objects, never as an error after the work.

When a call returns a value with no JSON form (an ophyd ``MoveStatus``, a
file, a framework object), the server keeps it in a :class:`Handles` table
and sends a tagged handle instead::

    {"__redisrpc__": "handle", "id": "@5f0c...", "class": "MoveStatus",
     "description": {... the value's own __describe__ ...}}

The client turns it into a proxy of its own (``status.wait()``,
``status.done``); its calls travel as paths under the handle
(``"@5f0c....wait"``). A handle lives until the caller drops its proxy (the
client sends ``__release__``), or until it was unused for ``ttl`` seconds, or
until ``max_count`` newer handles pushed it out, so a caller that vanished
cannot make the server's memory grow. Nothing is ever pickled.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..core.protocol import TAG
from .adapters import view_of

__all__ = ["DEFAULT_HANDLE_TTL", "DEFAULT_MAX_HANDLES", "Handles"]

DEFAULT_MAX_HANDLES = 1000
"""The most handles a server keeps; the least recently used goes first."""
DEFAULT_HANDLE_TTL = 600.0
"""Seconds a handle nobody used lives before the server drops it."""


class Handles:
    """The server's table of values handed out by reference; thread-safe.

    ``describe`` makes a value's description (the dispatcher's exposure rule).
    """

    def __init__(
        self,
        describe: Callable[[Any, str], dict[str, Any]],
        *,
        max_count: int = DEFAULT_MAX_HANDLES,
        ttl: float = DEFAULT_HANDLE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.describe = describe
        self.max_count = max_count
        self.ttl = ttl
        self.clock = clock
        self._table: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._descriptions: dict[type, dict[str, Any]] = {}
        self.expired = 0
        """How many handles were dropped unreleased (timed out or pushed out)."""

    def __len__(self) -> int:
        return len(self._table)

    def add(self, value: Any) -> str:
        """Keep ``value`` (served as is: pass a view); return its id (``@`` and 32 hex digits)."""
        handle = "@" + secrets.token_hex(16)
        now = self.clock()
        with self._lock:
            self._sweep(now)
            while len(self._table) >= self.max_count:
                self._table.popitem(last=False)
                self.expired += 1
            self._table[handle] = (value, now)
        return handle

    def _sweep(self, now: float) -> None:
        """Drop handles unused for longer than ttl (oldest first; stops at the first fresh one)."""
        while self._table:
            handle, (_, used) = next(iter(self._table.items()))
            if now - used <= self.ttl:
                return
            del self._table[handle]
            self.expired += 1

    def get(self, handle: str) -> Any:
        """The value behind ``handle`` (marked as used); KeyError if released or expired."""
        now = self.clock()
        with self._lock:
            self._sweep(now)
            value, _ = self._table[handle]
            self._table[handle] = (value, now)
            self._table.move_to_end(handle)
        return value

    def release(self, handles: list[Any]) -> int:
        """Forget these handles; return how many were still held."""
        with self._lock:
            return sum(
                1
                for handle in handles
                if isinstance(handle, str) and self._table.pop(handle, None) is not None
            )

    def tag(self, value: Any) -> dict[str, Any]:
        """Keep ``value`` and return the tagged handle that travels in its place."""
        view = view_of(value, cache=False)
        handle = self.add(view)
        # Values of one type share a description: describing each of thousands is wasted work.
        kind = type(value)
        description = self._descriptions.get(kind)
        if description is None:
            description = self.describe(view, handle)
            if len(self._descriptions) < 256:
                self._descriptions[kind] = description
        return {
            TAG: "handle",
            "id": handle,
            "class": type(view).__qualname__,
            "description": {**description, "path": handle},
        }
