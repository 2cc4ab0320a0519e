"""Framework adapters: serve QCoDeS, ophyd and PyMeasure objects, or your own framework's.

An adapter turns a framework object into a *view* (see
:mod:`redisrpc.server.adapters.base`): the members a remote caller should see,
with the framework's plumbing left out. The server asks the adapters about
every object it describes or reaches by a dotted path, so an instrument is
served unchanged, in one line::

    redisrpc.Server(r, "dmm", dmm).run()      # a QCoDeS instrument: dmm.ch1(), dmm.ch1(3.0)

The built-in adapters (``qcodes``, ``ophyd``, ``pymeasure``) need no
dependency: each one only looks at an object when its framework is already
imported. To add one for your own framework, register an object with a
``module`` (the top-level package name), ``applies(obj)`` and ``view(obj)``::

    class MyAdapter:
        module = "mylab"
        def applies(self, obj): return isinstance(obj, mylab.Motor)
        def view(self, obj): return make_view(obj, methods={"move": obj.move})

    redisrpc.server.adapters.register(MyAdapter())

Adapters registered later are asked first.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Protocol

from .base import PropertySpec, View, is_view, make_view, refresh

__all__ = [
    "Adapter",
    "PropertySpec",
    "View",
    "adapter_for",
    "is_view",
    "make_view",
    "refresh",
    "register",
    "unregister",
    "view_of",
]


class Adapter(Protocol):
    """What :func:`register` takes."""

    module: str
    """The top-level package of the objects it adapts; skipped until that package is imported."""

    def applies(self, obj: Any) -> bool:
        """Tell whether this adapter serves ``obj``."""
        ...

    def view(self, obj: Any) -> Any:
        """The view to serve in place of ``obj``."""
        ...


_adapters: list[Adapter] = []
_views: dict[int, tuple[Any, Any]] = {}
_views_lock = threading.Lock()
_MAX_VIEWS = 4096


def register(adapter: Adapter) -> Adapter:
    """Add an adapter; it is asked before the ones registered earlier. Returns it."""
    _adapters.insert(0, adapter)
    with _views_lock:
        _views.clear()
    return adapter


def unregister(adapter: Adapter) -> None:
    """Remove an adapter added with :func:`register`."""
    _adapters.remove(adapter)
    with _views_lock:
        _views.clear()


def adapter_for(obj: Any) -> Adapter | None:
    """The adapter that serves ``obj``, or None."""
    if isinstance(obj, (str, int, float, bytes, list, tuple, dict, type(None))):
        return None
    for adapter in _adapters:
        if adapter.module in sys.modules and adapter.applies(obj):
            return adapter
    return None


def view_of(obj: Any, *, cache: bool = True) -> Any:
    """What the server serves for ``obj``: its adapter's view, or ``obj`` itself.

    Views of long-lived objects (instruments, channels, parameters) are kept,
    so a path resolves to the same view every call; pass ``cache=False`` for
    short-lived values (a returned status object).
    """
    if is_view(obj):
        return obj
    adapter = adapter_for(obj)
    if adapter is None:
        return obj
    if not cache:
        return adapter.view(obj)
    with _views_lock:
        kept = _views.get(id(obj))
        if kept is not None and kept[0] is obj:
            return kept[1]
    view = adapter.view(obj)
    with _views_lock:
        if len(_views) >= _MAX_VIEWS:
            _views.clear()  # a rare reset beats an unbounded cache
        _views[id(obj)] = (obj, view)
    return view


def _register_builtins() -> None:
    from .ophyd import OphydAdapter  # noqa: PLC0415 - after the registry exists
    from .pymeasure import PymeasureAdapter  # noqa: PLC0415
    from .qcodes import QcodesAdapter  # noqa: PLC0415

    for adapter in (PymeasureAdapter(), OphydAdapter(), QcodesAdapter()):
        register(adapter)


_register_builtins()
