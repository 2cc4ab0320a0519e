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
from collections.abc import Callable, Hashable
from typing import Any

from ..core.protocol import TAG
from .adapters import is_view, view_of

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
        self._descriptions: dict[Hashable, dict[str, Any]] = {}
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
        # Values of one shape share a description: describing each of thousands is wasted work.
        shape = _shape(view)
        description = None if shape is None else self._descriptions.get(shape)
        if description is None:
            description = self.describe(view, handle)
            if shape is not None and len(self._descriptions) < 256:
                self._descriptions[shape] = description
        return {
            TAG: "handle",
            "id": handle,
            "class": type(view).__qualname__,
            "description": {**description, "path": handle},
        }


_PLAIN = (bool, int, float, complex, str, bytes, type(None))


def _code(function: Any) -> Hashable:
    """What a function's signature and doc come from: closures of one ``def`` share it."""
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    return code, function.__doc__, repr(function.__defaults__), repr(function.__kwdefaults__)


def _shape(view: Any) -> Hashable | None:
    """What ``view``'s description depends on, or None when only describing it tells.

    Values of one class are not described alike: a plain object shows its own
    attributes, and a view (a QCoDeS parameter, a channel list) its own doc,
    methods, items and facts (a unit, settable or not). Another object held in
    an attribute (a child) has a description line of its own: never shared.
    """
    cls = type(view)
    head: tuple[Any, ...] = (cls,)
    if is_view(view):
        # Each view has a class of its own: what it holds is what tells them apart.
        properties = tuple(
            (name, raw.__doc__, raw.fset is None)
            for name, raw in vars(cls).items()
            if isinstance(raw, property)
        )
        items = view._redisrpc_items
        head = (
            type(view._redisrpc_target),
            cls.__qualname__,
            cls.__doc__,
            properties,
            None if items is None else len(items),
            repr(view._redisrpc_info),
            _code(view._redisrpc_callable),
        )
    own = getattr(view, "__dict__", None)
    parts: list[Any] = []
    for name, value in (own if isinstance(own, dict) else {}).items():
        if name.startswith("_"):
            continue  # never exposed (a view's own state is in head)
        if isinstance(value, _PLAIN):
            parts.append((name, type(value)))
            continue
        code = _code(value) if callable(value) else None
        if code is None:
            return None  # a child, a container, a callable object: describe this value
        parts.append((name, code))
    return (*head, tuple(parts))
