"""What a server exposes and how it describes it: the one exposure rule.

One rule decides what is callable, for calls and for ``__describe__`` alike
(:func:`exposed_members`):

* a name is a plain identifier that does not start with ``_``;
* if the server was given ``expose=[...]``, only those names;
* else, if the class marks any member with :func:`expose`, only marked members;
* else every public method, property, plain data attribute and child object;
* then a server's ``deny_tags`` drop members tagged with any of them, and its
  ``readonly=True`` mode keeps only methods marked ``@expose(readonly=True)``
  and makes every property and attribute read-only.

Plain data attributes are read-only remotely unless the class names them in
:func:`writable`: a public constant such as ``MAX_MM`` is never writable by
default. A public attribute holding an object (a channel, a submodule, or a
list of them) is a *child*: it is navigable by dotted path (see
:mod:`redisrpc.server.paths`) and described on its own. An object counts as a
child when an adapter serves it (:mod:`redisrpc.server.adapters`) or when it
is an instance of a class from outside the standard library and the
infrastructure packages in :data:`NOT_CHILDREN` (connections, arrays, ...).

The description is plain JSON (see PROTOCOL.md);
:mod:`redisrpc.client.signature` turns it back into signatures on the client.
"""

from __future__ import annotations

import inspect
import logging
import math
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from .._version import __version__
from ..core.protocol import PROTOCOL_VERSION, is_valid_name
from .adapters import adapter_for, is_view, refresh, view_of

__all__ = [
    "NOT_CHILDREN",
    "Member",
    "describe",
    "expose",
    "exposed_members",
    "is_child",
    "items_of",
    "writable",
]

log = logging.getLogger("redisrpc.introspect")

_MARK = "_redisrpc_expose"
_WRITABLE = "_redisrpc_writable"
NOT_CHILDREN = frozenset(
    {
        "builtins", "numpy", "pandas", "xarray", "scipy", "redis", "redisrpc", "serial",
        "pyvisa", "usb", "zmq", "h5py", "matplotlib", "IPython", "ipywidgets", "sqlalchemy",
        "requests", "httpx", "aiohttp", "paramiko", "psycopg", "psycopg2", "pymongo",
    }
)  # fmt: skip
"""Top-level packages whose objects are never children by default (with the standard library):
connections and data containers, whose public methods must not become remote calls."""
_DATA_TYPES = (bool, int, float, str, bytes, list, tuple, dict, type(None))
F = TypeVar("F")


@overload
def expose(member: F) -> F: ...
@overload
def expose(
    *, readonly: bool = ..., tags: Collection[str] = ..., on_cancel: str | None = ...
) -> Callable[[F], F]: ...


def expose(
    member: Any = None,
    *,
    readonly: bool = False,
    tags: Collection[str] = (),
    on_cancel: str | None = None,
) -> Any:
    """Mark a method or property as callable remotely.

    Once any member of a class is marked, only marked members are exposed.
    ``readonly=True`` on a property refuses remote writes; ``tags`` (e.g.
    ``{"admin"}``) travel in the description for clients and servers to act on.
    ``on_cancel="halt"`` names a method the server calls, from another thread,
    when this method's caller cancels it (Ctrl-C, a timeout): a stage's
    ``stop()`` stops a move even if the move never checks
    :func:`redisrpc.cancelled`. A mark with only ``on_cancel`` exposes nothing
    by itself: the other members stay served as before.
    Use it bare (``@expose``) or with options (``@expose(tags={"admin"})``);
    put it above ``@property``.
    """
    if on_cancel is not None and not is_valid_name(on_cancel):
        raise ValueError(f"on_cancel must name a method of the object, not {on_cancel!r}")
    selects = member is not None or readonly or bool(tags) or on_cancel is None
    mark = {"readonly": readonly, "tags": sorted(tags), "on_cancel": on_cancel, "selects": selects}

    def apply(target: Any) -> Any:
        holder = target.fget if isinstance(target, property) else target
        holder = getattr(holder, "__func__", holder)  # staticmethod / classmethod
        setattr(holder, _MARK, mark)
        return target

    return apply if member is None else apply(member)


def writable(*names: str) -> Callable[[type[F]], type[F]]:
    """Class decorator: let remote callers assign these plain data attributes.

    Plain data attributes are read-only remotely by default (a class constant
    such as ``MAX_MM`` must not be raised by any client)::

        @redisrpc.writable("gain", "offset")
        class Amplifier:
            MAX_GAIN = 100     # read-only remotely
            gain = 1.0         # writable remotely
    """
    for name in names:
        if not is_valid_name(name) or name.startswith("_"):
            raise ValueError(f"{name!r} is not a public attribute name")

    def apply(cls: type[F]) -> type[F]:
        inherited = frozenset(getattr(cls, _WRITABLE, ()))
        setattr(cls, _WRITABLE, inherited | frozenset(names))
        return cls

    return apply


def is_child(value: Any) -> bool:
    """Tell whether ``value`` is an object a dotted path may step into (see the module doc)."""
    if is_view(value) or adapter_for(value) is not None:
        return True
    if isinstance(value, (list, tuple)):
        return bool(value) and len(value) <= 10_000 and all(is_child(v) for v in value[:100])
    if (
        isinstance(value, (*_DATA_TYPES, type))
        or inspect.ismodule(value)
        or callable(value)
        or hasattr(type(value), "__get__")
    ):
        return False
    top = type(value).__module__.split(".", 1)[0]
    return top not in NOT_CHILDREN and top not in sys.stdlib_module_names


def items_of(obj: Any) -> list[Any] | None:
    """The children of ``obj`` reachable by index (``"channels.0"``), or None."""
    if is_view(obj):
        items = obj._redisrpc_items
        return None if items is None else list(items)
    if isinstance(obj, (list, tuple)) and is_child(obj):
        return list(obj)
    return None


def _mark_of(raw: Any) -> dict[str, Any] | None:
    holder = raw.fget if isinstance(raw, property) else raw
    holder = getattr(holder, "__func__", holder)
    mark = getattr(holder, _MARK, None)
    return mark if isinstance(mark, dict) else None


@dataclass(slots=True)
class Member:
    """One exposed name: a method, a property, or a plain data attribute."""

    name: str
    kind: str  # "method" | "property" | "attribute" | "object" (a child)
    readonly: bool = False
    tags: list[str] = field(default_factory=list)
    on_cancel: str | None = None
    """A method of the object to call when this method's caller cancels it."""


def _classify(obj: Any, name: str) -> Member | None:
    try:
        raw = inspect.getattr_static(obj, name)
    except AttributeError:
        return None
    mark = _mark_of(raw) or {}
    readonly = bool(mark.get("readonly", False))
    tags = list(mark.get("tags", []))
    on_cancel = mark.get("on_cancel") if isinstance(mark.get("on_cancel"), str) else None
    if isinstance(raw, property):
        return Member(name, "property", readonly or raw.fset is None, tags)
    if isinstance(raw, (staticmethod, classmethod)):
        return Member(name, "method", readonly, tags, on_cancel)
    if isinstance(raw, type) or inspect.ismodule(raw):
        return None  # classes and modules are namespaces, not operations
    if is_view(raw) or adapter_for(raw) is not None:
        return Member(name, "object", True, tags)  # before callable: a parameter is both
    if callable(raw):
        return Member(name, "method", readonly, tags, on_cancel)
    if hasattr(type(raw), "__get__"):
        return None  # other descriptors (slots, cached_property) run code on read: not exposed
    if isinstance(raw, (list, tuple)) and is_child(raw):
        return Member(name, "object", True, tags)  # a list of channels
    if isinstance(raw, _DATA_TYPES):
        # Read-only unless the class says otherwise: constants (MAX_MM) stay safe.
        settable = name in getattr(type(obj), _WRITABLE, ())
        return Member(name, "attribute", readonly or not settable, tags)
    if is_child(raw):
        return Member(name, "object", True, tags)
    return None


def exposed_members(
    obj: Any,
    *,
    allow: Collection[str] | None = None,
    readonly: bool = False,
    deny_tags: Collection[str] = (),
) -> dict[str, Member]:
    """Return the members of ``obj`` that remote callers may use, by name.

    Nothing here reads a property: classification is static. ``readonly`` and
    ``deny_tags`` are the server options of the same names (see the module
    docstring).
    """
    if isinstance(obj, (list, tuple)):
        return {}  # a list of children: its items, by index, and nothing of list's own
    refresh(obj)  # a view whose target grew members (QCoDeS's add_parameter) shows them
    names = sorted(allow) if allow is not None else dir(obj)
    members: dict[str, Member] = {}
    for name in names:
        if not is_valid_name(name) or name.startswith("_"):
            continue
        member = _classify(obj, name)
        if member is not None:
            members[name] = member
    if allow is None and any(
        (_mark_of(inspect.getattr_static(obj, name, None)) or {}).get("selects", False)
        for name in members
    ):
        members = {
            name: m
            for name, m in members.items()
            if _mark_of(inspect.getattr_static(obj, name, None)) is not None
        }
    if deny_tags:
        members = {name: m for name, m in members.items() if not set(m.tags) & set(deny_tags)}
    if readonly:
        members = {
            name: Member(m.name, m.kind, True, m.tags, m.on_cancel)
            for name, m in members.items()
            if m.kind != "method" or m.readonly
        }
    return members


# -- describing ---------------------------------------------------------------


def _annotation_text(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def _json_default(value: Any) -> tuple[bool, Any]:
    """Return (True, value) when a default can travel as JSON, else (False, None)."""
    if value is None or isinstance(value, (bool, int, str)):
        return True, value
    if isinstance(value, float) and math.isfinite(value):
        return True, value
    if isinstance(value, (list, tuple)) and all(_json_default(v)[0] for v in value):
        return True, [_json_default(v)[1] for v in value]
    return False, None


def _describe_params(func: Any) -> tuple[list[dict[str, Any]], str | None, bool]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        # Some builtins have no signature; say so rather than invent one.
        return (
            [
                {"name": "args", "kind": "VAR_POSITIONAL"},
                {"name": "kwargs", "kind": "VAR_KEYWORD"},
            ],
            None,
            False,
        )
    params = []
    for p in sig.parameters.values():
        entry: dict[str, Any] = {"name": p.name, "kind": p.kind.name}
        if p.default is not inspect.Parameter.empty:
            ok, value = _json_default(p.default)
            if ok:
                entry["default"] = value
            entry["default_repr"] = repr(p.default)[:200]
        annotation = _annotation_text(p.annotation)
        if annotation is not None:
            entry["annotation"] = annotation
        params.append(entry)
    return params, _annotation_text(sig.return_annotation), True


def _describe_member(obj: Any, member: Member) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": member.name}
    if member.tags:
        entry["tags"] = member.tags
    if member.kind == "object":
        return _describe_child(entry, getattr(obj, member.name))
    if member.kind == "method":
        func = getattr(obj, member.name)
        params, returns, known = _describe_params(func)
        entry.update(doc=inspect.getdoc(func) or "", params=params)
        if returns is not None:
            entry["returns"] = returns
        if not known:
            entry["signature_known"] = False
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            entry["stream"] = True  # its result arrives item by item
        if member.on_cancel:
            entry["on_cancel"] = member.on_cancel
        if member.readonly:
            entry["readonly"] = True  # changes nothing: it may be watched (redisrpc.watch)
        return entry
    raw = inspect.getattr_static(obj, member.name)
    entry["readonly"] = member.readonly
    entry["kind"] = member.kind
    if member.kind == "property":
        entry["doc"] = inspect.getdoc(raw) or ""
        annotation = _annotation_text(
            inspect.signature(raw.fget).return_annotation if raw.fget else inspect.Parameter.empty
        )
        if annotation is not None:
            entry["annotation"] = annotation
    else:
        entry["doc"] = ""
        entry["annotation"] = type(raw).__name__
    return entry


def _summary(doc: str) -> str:
    return doc.strip().split("\n\n", 1)[0][:500]


def _describe_child(entry: dict[str, Any], value: Any) -> dict[str, Any]:
    """A child's line in its parent's description: enough for Tab and ``?`` at the parent."""
    view = view_of(value)
    entry["class"] = type(view).__qualname__
    entry["doc"] = _summary(inspect.getdoc(view) or "")
    items = items_of(view)
    if items is not None:
        entry["items"] = len(items)
    if is_view(view) and view._redisrpc_callable is not None:
        entry["callable"] = True
    info = view._redisrpc_info if is_view(view) else None
    if info:
        entry["info"] = info
    return entry


def _describe_self(obj: Any) -> dict[str, Any]:
    """What a child's own description adds: its items, its call, its facts."""
    facts: dict[str, Any] = {}
    items = items_of(obj)
    if items is not None:
        facts["items"] = len(items)
    if is_view(obj):
        if obj._redisrpc_callable is not None:
            params, returns, known = _describe_params(obj._redisrpc_callable)
            call: dict[str, Any] = {"params": params, "doc": inspect.getdoc(obj) or ""}
            if returns is not None:
                call["returns"] = returns
            if not known:
                call["signature_known"] = False
            facts["call"] = call
        if obj._redisrpc_info:
            facts["info"] = obj._redisrpc_info
    return facts


def describe(
    obj: Any, members: dict[str, Member], *, name: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build the ``__describe__`` payload for ``obj``.

    A member that fails to describe is listed with an ``error`` text instead of
    breaking the whole description.
    """
    methods: list[dict[str, Any]] = []
    properties: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    for member in members.values():
        try:
            entry = _describe_member(obj, member)
        except Exception as exc:
            log.warning("cannot describe %s.%s: %r", name, member.name, exc)
            entry = {"name": member.name, "doc": "", "error": f"{type(exc).__name__}: {exc}"}
            if member.kind == "method":
                entry.update(params=[], signature_known=False)
            elif member.kind != "object":
                entry.update(readonly=True, kind=member.kind)
        if member.kind == "object":
            objects.append(entry)
        else:
            (methods if member.kind == "method" else properties).append(entry)
    cls = type(obj)
    description: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "library": f"redisrpc {__version__}",
        "name": name,
        "class": cls.__qualname__,
        "module": cls.__module__,
        "doc": inspect.getdoc(obj) or "",
        "methods": methods,
        "properties": properties,
    }
    if objects:
        description["objects"] = objects
    description.update(_describe_self(obj))
    if extra:
        description.update(extra)
    return description
