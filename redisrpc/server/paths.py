"""Dotted member paths: reach a child's members (``"ch1.measure"``, ``"channels.0.voltage"``).

A call name, a property name and ``__describe__``'s argument may be a *path*:
segments joined by dots, at most :data:`MAX_DEPTH` of them. Each segment is

* a public identifier (no leading ``_``, so no private or dunder name ever);
* a decimal index into a list of children (``channels.0``), at most 6 digits;
* first segment only: a handle, ``@`` and 32 hex digits (see
  :mod:`redisrpc.server.handles`).

Every segment but the last must name a *child* of the object reached so far
(a member of kind ``"object"`` under the one exposure rule, or an item of a
list of children), so a path never steps into a method, a property's value
or a plain value's attributes. The last segment names a member of the object
reached, or is absent (the object itself: its description, or its call when
an adapter made it callable). Everything else is refused before anything runs.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from .adapters import view_of
from .exposure import Member, items_of

__all__ = ["MAX_DEPTH", "PathError", "Resolver", "is_path", "split_path"]

MAX_DEPTH = 8
"""The most segments a path may have (``a.b.c`` has 3)."""

_SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,199}\Z|[0-9]{1,6}\Z")
HANDLE_RE = re.compile(r"@[0-9a-f]{32}\Z")
_MAX_CACHED = 1024


class PathError(Exception):
    """A path refused before anything ran; ``type_name`` is the error type to reply with."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message


def is_path(name: str) -> bool:
    """Tell whether a call name is a path (has a dot or a handle) rather than a plain name."""
    return "." in name or name.startswith("@")


def split_path(path: str) -> list[str]:
    """Check a path's syntax and return its segments; PathError if it is not a valid path."""
    if not isinstance(path, str) or len(path) > 1000:
        raise PathError(
            "AttributeError", "a member path must be a string of at most 1000 characters"
        )
    segments = path.split(".")
    if len(segments) > MAX_DEPTH:
        raise PathError(
            "AttributeError", f"member path {path[:80]!r} is deeper than {MAX_DEPTH} segments"
        )
    for i, segment in enumerate(segments):
        if i == 0 and HANDLE_RE.match(segment):
            continue
        if not _SEGMENT.match(segment):
            shown = segment[:40]
            reason = "is private" if segment.startswith("_") else "is not a name or an index"
            raise PathError("AttributeError", f"segment {shown!r} of {path[:80]!r} {reason}")
    return segments


class Resolver:
    """Walk paths from a root object under the exposure rule; caches each object's members.

    Args:
        root: the served object (its view, when an adapter serves it).
        members_of: the exposure rule for objects below the root (the
            server's readonly and deny_tags options; ``expose=`` is the root's).
        root_members: the root's members (the dispatcher's own scan).
        handle: looks up a handle segment (``@...``) or raises PathError.
    """

    def __init__(
        self,
        members_of: Callable[[Any], dict[str, Member]],
        handle: Callable[[str], Any],
    ) -> None:
        self.members_of = members_of
        self.handle = handle
        self._members: dict[int, tuple[Any, dict[str, Member]]] = {}
        self._lock = threading.Lock()

    def members(self, obj: Any, *, rescan: bool = False, keep: bool = True) -> dict[str, Member]:
        """The exposed members of ``obj`` (cached unless ``keep`` is false; rescanned on request).

        Objects under a handle are not kept: the cache would hold them after their release.
        """
        with self._lock:
            kept = self._members.get(id(obj))
        if kept is not None and kept[0] is obj and not rescan:
            return kept[1]
        members = self.members_of(obj)
        if not keep:
            return members
        with self._lock:
            if len(self._members) >= _MAX_CACHED:
                self._members.clear()
            self._members[id(obj)] = (obj, members)
        return members

    def member(self, obj: Any, name: str, path: str) -> Member:
        """The member ``name`` of ``obj``, rescanning once (objects grow members)."""
        keep = not path.startswith("@")
        member = self.members(obj, keep=keep).get(name)
        if member is None:
            member = self.members(obj, rescan=True, keep=keep).get(name)
        if member is None:
            raise PathError(
                "AttributeError",
                f"{type(obj).__qualname__!r} object at {path[:80]!r} has no exposed member"
                f" {name!r}",
            )
        return member

    def step(self, obj: Any, segment: str, path: str) -> Any:
        """The child of ``obj`` named by ``segment`` (an index or a child member)."""
        if segment.isdigit():
            items = items_of(obj)
            if items is None:
                raise PathError(
                    "TypeError", f"{type(obj).__qualname__!r} object at {path[:80]!r} has no items"
                )
            index = int(segment)
            if index >= len(items):
                raise PathError(
                    "IndexError",
                    f"index {index} out of range at {path[:80]!r} ({len(items)} items)",
                )
            return view_of(items[index])
        member = self.member(obj, segment, path)
        if member.kind != "object":
            raise PathError(
                "AttributeError",
                f"{segment!r} in {path[:80]!r} is a {member.kind}, not an object: a path"
                " cannot step into it",
            )
        return view_of(getattr(obj, segment))

    def walk(self, root: Any, segments: list[str], path: str) -> Any:
        """The object that ``segments`` lead to from ``root`` (all of them are children)."""
        obj = root
        for i, segment in enumerate(segments):
            if i == 0 and segment.startswith("@"):
                obj = view_of(self.handle(segment), cache=False)
            else:
                obj = self.step(obj, segment, path)
        return obj

    def locate(self, root: Any, path: str) -> tuple[Any, Member | None]:
        """Resolve a call path: (owner, its member), or (object, None) for the object itself.

        ``"ch1.measure"`` gives (ch1, the member ``measure``); ``"ch1"`` alone,
        when ``ch1`` is a child, gives (ch1's view, None): calling it calls
        the object. Raises PathError for anything the rule refuses.
        """
        segments = split_path(path)
        owner = self.walk(root, segments[:-1], path)
        last = segments[-1]
        if last.isdigit() or last.startswith("@"):
            # An index, or a lone handle (then the owner is the root, and walk looks it up).
            return self.walk(owner, [last], path), None
        member = self.member(owner, last, path)
        if member.kind == "object":
            return view_of(getattr(owner, last)), None
        return owner, member
