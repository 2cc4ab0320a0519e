"""Views: what an adapter serves in place of a framework object.

A view is a plain object that the one exposure rule
(:mod:`redisrpc.server.exposure`) describes and calls like any other: its
methods are the framework object's bound methods it chose to show, its
properties forward reads and writes, its children (instance attributes
holding objects) are navigable by dotted path, and it may be callable (a
QCoDeS parameter: ``dmm.ch1()`` reads, ``dmm.ch1(3.0)`` sets) or indexable (a
channel list: ``"channels.0.temperature"``). Everything else the framework
object has stays hidden, so its plumbing is never reachable remotely.

::

    from redisrpc.server.adapters import make_view

    def view(motor):
        return make_view(
            motor,
            doc=motor.__doc__,
            methods={"move": motor.move, "stop": motor.stop},
            properties={"position": (lambda: motor.position, None, "Where it is, in mm.")},
            children={"encoder": motor.encoder},
            info={"units": "mm"},
        )
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

__all__ = ["PropertySpec", "View", "framework_names", "is_view", "make_view", "refresh"]

PropertySpec = tuple[Callable[[], Any], "Callable[[Any], None] | None", str]
"""A forwarded property: (getter, setter or None for read-only, docstring)."""


class View:
    """Base of every view; its own names are private, so none is ever exposed."""

    _redisrpc_view: ClassVar[bool] = True
    _redisrpc_target: Any = None
    _redisrpc_items: Sequence[Any] | None = None
    _redisrpc_info: dict[str, Any] | None = None
    _redisrpc_callable: Callable[..., Any] | None = None
    _redisrpc_live: Callable[[], Mapping[str, Any]] | None = None
    _redisrpc_live_names: frozenset[str] = frozenset()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._redisrpc_callable is None:
            raise TypeError(f"{type(self).__qualname__!r} object is not callable")
        return self._redisrpc_callable(*args, **kwargs)


def is_view(value: Any) -> bool:
    """Tell whether ``value`` is a view (made by :func:`make_view`)."""
    return isinstance(value, View)


def framework_names(cls: type, is_framework: Callable[[type], bool]) -> frozenset[str]:
    """Every name that a framework class in ``cls``'s MRO (``is_framework``) defines.

    A driver's override of one (QCoDeS's ``write_raw``, PyMeasure's ``write``) is
    the framework's plumbing reimplemented: adapters keep such names hidden.
    """
    return frozenset(name for klass in cls.__mro__ if is_framework(klass) for name in vars(klass))


def refresh(view: Any) -> None:
    """Bring a view's live members up to date with its target (see ``make_view``'s ``live``).

    Called before each scan of the view's members, so a member the target grew
    while served (a QCoDeS ``add_parameter``) is reachable and one it lost is gone.
    """
    live = view._redisrpc_live if is_view(view) else None
    if live is None:
        return
    current = dict(live())
    own = view.__dict__
    for name in view._redisrpc_live_names - current.keys():
        own.pop(name, None)
    for name, value in current.items():
        old = own.get(name)
        # A bound method is made anew at each lookup: an equal one is the same member.
        if old is not value and not (inspect.ismethod(old) and old == value):
            own[name] = value
    view._redisrpc_live_names = frozenset(current)


def _forward(name: str, spec: PropertySpec) -> property:
    getter, setter, doc = spec

    def fget(self: View) -> Any:
        return getter()

    def fset(self: View, value: Any) -> None:
        assert setter is not None
        setter(value)

    fget.__name__ = name
    return property(fget, fset if setter is not None else None, None, doc or None)


def make_view(
    target: Any,
    *,
    doc: str | None = None,
    class_name: str | None = None,
    methods: Mapping[str, Callable[..., Any]] = {},
    properties: Mapping[str, PropertySpec] = {},
    children: Mapping[str, Any] = {},
    data: Mapping[str, Any] = {},
    items: Sequence[Any] | None = None,
    call: Callable[..., Any] | None = None,
    info: Mapping[str, Any] | None = None,
    live: Callable[[], Mapping[str, Any]] | None = None,
) -> View:
    """Build the view of ``target`` that shows only the given members.

    Args:
        target: the framework object (kept for the adapter's own use).
        doc: the docstring the description carries.
        class_name: the class name shown (default: the target's).
        methods: name -> callable (usually the target's bound methods).
        properties: name -> (getter, setter or None, docstring).
        children: name -> object, navigable by dotted path (viewed in turn).
        data: name -> a JSON value, shown as a read-only attribute.
        items: the children reachable by index (``"channels.0"``).
        call: what calling the view remotely runs (the path itself is the call name).
        info: extra JSON facts for the description (unit, label, limits, ...).
        live: returns more methods and children (name -> object), asked again
            before each scan: for a target whose members change while it is
            served (a QCoDeS instrument's ``add_parameter``).
    """
    cls = type(target)
    namespace: dict[str, Any] = {
        "__module__": cls.__module__,
        "__qualname__": class_name or cls.__qualname__,
        "__doc__": doc if doc is not None else (cls.__doc__ or ""),
    }
    for name, spec in properties.items():
        namespace[name] = _forward(name, spec)
    view_cls = type((class_name or cls.__name__).rsplit(".", 1)[-1], (View,), namespace)
    view: View = view_cls()
    view._redisrpc_target = target
    view._redisrpc_items = list(items) if items is not None else None
    view._redisrpc_info = dict(info) if info else None
    view._redisrpc_callable = call
    view.__dict__.update(data)
    view.__dict__.update(methods)
    view.__dict__.update(children)
    view._redisrpc_live = live
    refresh(view)
    return view
