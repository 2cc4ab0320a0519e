"""Proxy classes built from a ``__describe__`` payload, shared by the sync and async clients.

A proxy's class is made from the remote description: each remote method is a
real function with ``__name__``, ``__doc__`` and ``__signature__``, each
remote property a real property. ``dir()``, Tab completion, ``help()``, ``?``
and :func:`inspect.signature` read that class and never touch the network.

Hygiene rules: a proxy holds one private attribute, ``_rpc_state`` (a
:class:`ProxyState`), and its methods' names start with ``_rpc_`` (remote names
never start with ``_``, so nothing can clash); unknown and private names raise
:class:`AttributeError` locally; ``repr`` comes from the cached description.

Nested objects: a member the description lists under ``objects`` (a channel,
a submodule) is a *child proxy* sharing its parent's state (transport, lock,
timeout) with a ``path`` added; its calls travel as dotted names
(``"ch1.measure"``). A sync child fetches its own description once, on first
access, and is cached, so Tab, ``?``, ``help()`` and :func:`inspect.signature`
work at every level with no traffic per keystroke. An asyncio child starts
undescribed (any public name is a call); ``await proxy.ch1`` describes it.
Lists of children are indexable (``chan.channels[0]``), callable children are
callable (``dmm.ch1()``).
"""

from __future__ import annotations

import getpass
import inspect
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from types import CoroutineType, FunctionType
from typing import Any, TypeVar

from ..core.call import Anonymous, Call, new_call_id
from ..core.protocol import (
    DEFAULT_MAX_BLOB_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    DESCRIBE,
    GET_PROPERTY,
    OWN_ERROR_PREFIX,
    SET_PROPERTY,
    ErrorInfo,
    Reply,
    is_valid_name,
    reply_queue_prefix,
)
from ..core.registry import liveness_prefix
from ..errors import (
    CallCancelledError,
    EncodingError,
    LockedError,
    MessageTooLargeError,
    ProtocolError,
    RedisRPCError,
    RemoteException,
    TimeoutException,
    remote_exception,
)
from ..notebook.display import describe_html, describe_text, summary_line
from .handles import HandleRef, unwrap
from .output import show_output
from .progress import ProgressCallback, ProgressDisplay, Watcher, callback_events, interactive
from .signature import signature_from_params

__all__ = [
    "CALLER",
    "LockCell",
    "ProxyBase",
    "ProxyState",
    "build_proxy_class",
    "checked_timeout",
    "error_from_reply",
    "state_of",
]

_OWN_ERRORS: dict[str, type[RedisRPCError]] = {
    OWN_ERROR_PREFIX + "ProtocolError": ProtocolError,
    OWN_ERROR_PREFIX + "MessageTooLargeError": MessageTooLargeError,
    OWN_ERROR_PREFIX + "EncodingError": EncodingError,
    OWN_ERROR_PREFIX + "CallCancelledError": CallCancelledError,
}


def error_from_reply(error: ErrorInfo, service: str) -> RedisRPCError:
    """Turn an error reply into the exception to raise locally."""
    where = error.server or service
    if error.type == OWN_ERROR_PREFIX + "TimeoutException":
        return TimeoutException(f"{where}: {error.message}", started=False)
    if error.type == OWN_ERROR_PREFIX + "LockedError":
        holder = (error.details or {}).get("holder")
        return LockedError(
            f"{where} refused the call: {error.message}",
            holder=holder if isinstance(holder, dict) else None,
        )
    own = _OWN_ERRORS.get(error.type)
    if own is not None:
        return own(f"{where}: {error.message}")
    if not error.type:  # a version 1 server sends only a message
        return RemoteException(error.message, server=where)
    return remote_exception(error.type, error.message, error.traceback, where)


def checked_timeout(timeout: float) -> float:
    """Return ``timeout`` as a float, or raise ValueError unless it is positive and finite."""
    if not (timeout > 0 and timeout < float("inf")):
        raise ValueError("timeout must be a positive, finite number of seconds")
    return float(timeout)


class LockCell:
    """The advisory-lock token a proxy's calls carry; shared with its later siblings."""

    __slots__ = ("token",)

    def __init__(self) -> None:
        self.token: str | None = None


class _Derived:
    """What every call reads from a description: computed when the description changes."""

    __slots__ = ("anonymous", "binary", "description", "echoes_ids", "registry_prefix", "streams")

    def __init__(self, description: dict[str, Any] | None) -> None:
        self.description = description
        version = (description or {}).get("protocol")
        if not isinstance(version, int) or isinstance(version, bool):
            version = 1  # undescribed, or an original RedisRPC server
        self.echoes_ids: bool = version >= 2
        # Replies without the call's id: taken from a version 1 server only (it echoes none).
        self.anonymous: Anonymous = "none" if self.echoes_ids else "any"
        self.binary: bool = version >= 4
        self.registry_prefix = liveness_prefix(description)
        # The first entry of each name decides (as a lookup of the first match would).
        methods = (description or {}).get("methods")
        first: dict[Any, bool] = {}
        for entry in methods if isinstance(methods, list) else []:
            if isinstance(entry, dict):
                name = entry.get("name")
                if isinstance(name, str) and name not in first:
                    first[name] = entry.get("stream") is True
        self.streams = frozenset(name for name, stream in first.items() if stream)


@dataclass(slots=True)
class ProxyState:
    """Everything a proxy knows, in one private object (``proxy._rpc_state``).

    Proxies made by :func:`~redisrpc.with_timeout` get a copy with other
    options that shares the transport, the lock cell and the channels.
    """

    name: str
    transport: Any
    timeout: float
    description: dict[str, Any] | None = None
    max_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE
    lock: LockCell = field(default_factory=LockCell)
    channels: dict[Any, Any] = field(default_factory=dict)
    """Per-client I/O helpers, e.g. the asyncio multiplexer of each event loop."""
    limit: float | None = None
    """A hard limit on each call, in seconds; ``timeout`` measures silence."""
    progress: ProgressCallback | None = None
    """Set by :func:`~redisrpc.with_progress`; else a bar shows in interactive sessions."""
    reply_prefix: str = ""
    location: str = ""
    """Where the Redis is, for display (no secrets); read once, so display never asks."""
    path: str = ""
    """A child's dotted path (``"ch1"``, ``"channels.0"``, ``"@<handle>"``); "" at the root."""
    children: dict[Any, Any] = field(default_factory=dict)
    """Child proxies made so far, by (path, timeout); shared along the tree."""
    handle: HandleRef | None = None
    """For a handle's proxy: its release ticket (collected with the last proxy that holds it)."""
    _derived: _Derived | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.reply_prefix = self.reply_prefix or reply_queue_prefix(self.name)
        self.location = self.location or str(self.transport.location)

    def _known(self) -> _Derived:
        """What calls need from the description, worked out once per description."""
        derived = self._derived
        if derived is None or derived.description is not self.description:
            derived = self._derived = _Derived(self.description)
        return derived

    @property
    def echoes_ids(self) -> bool:
        """Whether the described server is of protocol 2 or later (its replies carry ids)."""
        return self._known().echoes_ids

    @property
    def binary(self) -> bool:
        """Whether the described server takes bytes and arrays as raw blobs (protocol 4)."""
        return self._known().binary

    def streams(self, method: str) -> bool:
        """Whether the description marks ``method`` as streaming (a generator)."""
        return method in self._known().streams

    def call(
        self,
        method: str,
        args: Any,
        kwargs: dict[str, Any],
        on_event: Callable[[str, Any], None] | None = None,
    ) -> Call:
        """The :class:`~redisrpc.core.call.Call` of one call through this proxy."""
        known = self._derived  # _known(), its usual case written out (a frame less)
        if known is None or known.description is not self.description:
            known = self._known()
        if self.path:
            # A child's calls are paths: "ch1.measure", "__getprop__('ch1.voltage')".
            if method in (GET_PROPERTY, SET_PROPERTY) and args:
                args = [f"{self.path}.{args[0]}", *list(args)[1:]]
            elif method == DESCRIBE:
                args = [self.path]
            else:
                method = f"{self.path}.{method}" if method else self.path
        # Positional, in Call's field order: keywords cost twice as much, on every call.
        return Call(
            self.name,
            method,
            args,
            kwargs,
            self.timeout,
            self.reply_prefix,
            new_call_id(),
            self.lock.token,  # lock_token
            self.max_size,
            known.registry_prefix,
            known.anonymous,
            None,  # shared_queue
            False,  # find_unknown
            self.limit,
            CALLER,
            None,  # deadline
            known.binary,
            self.max_blob_size,
            on_event,
        )

    def watcher(self, method: str) -> Watcher | None:
        """What shows one call's progress: the user's callback, a bar, or nothing."""
        if self.progress is not None:
            return _CallbackWatcher(self.progress)
        return ProgressDisplay(f"{self.name}.{method}()") if interactive() else None

    def describe_call(self) -> Call:
        """The ``__describe__`` call; against a name nothing serves, it fails fast."""
        return replace(
            self.call(DESCRIBE, (), {}),
            anonymous="errors",
            registry_prefix=None,
            find_unknown=True,
        )

    def adopt(self, reply: Reply) -> dict[str, Any] | None:
        """Take a ``__describe__`` reply as this proxy's description; return it.

        An error reply means an original RedisRPC server (no ``__describe__``):
        the proxy stays dynamic. redisrpc's own refusals are raised.
        """
        if reply.error is not None:
            if reply.error.type.startswith(OWN_ERROR_PREFIX) or self.path:
                raise error_from_reply(reply.error, self.name)
            found = None
        elif isinstance(reply.value, dict):
            found = reply.value
        else:
            raise ProtocolError(f"{self.name!r} answered __describe__ with {type(reply.value)}")
        self.description = found
        size = (found or {}).get("max_message_size")
        if isinstance(size, int) and size > 0:
            self.max_size = size
        blobs = (found or {}).get("max_blob_size")
        if isinstance(blobs, int) and blobs > 0:
            self.max_blob_size = blobs
        return found

    def value(self, reply: Reply) -> Any:
        """The value a call's reply carries, or raise the remote error it carries."""
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        extra = reply.extra
        if extra is not None and "output" in extra:
            show_output(self.name, extra["output"])
        if reply.error is not None:
            raise error_from_reply(reply.error, self.name)
        if extra is not None and extra.get("handles") is True:
            return unwrap(self, reply.value)
        return reply.value

    @property
    def label(self) -> str:
        """The service name, with the path of a child (``dmm.ch1``)."""
        return f"{self.name}.{self.path}" if self.path else self.name


class _CallbackWatcher:
    """A user's progress callback, with the display's call-and-close shape."""

    __slots__ = ("on_event",)

    def __init__(self, callback: ProgressCallback) -> None:
        self.on_event = callback_events(callback)

    def __call__(self, kind: str, value: Any) -> None:
        self.on_event(kind, value)

    def close(self) -> None:
        """Nothing to close."""


def login_name() -> str:
    """This process's user name, or ``?`` where there is none (some containers)."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "?"


def _caller() -> str:
    return f"{login_name()}@{socket.gethostname()}:{os.getpid()}"


CALLER = _caller()
"""Who this process's calls say they come from (shown while they run)."""


def state_of(proxy: Any) -> ProxyState:
    """The private state of a redisrpc proxy; TypeError for anything else."""
    state = getattr(proxy, "_rpc_state", None) if isinstance(proxy, ProxyBase) else None
    if not isinstance(state, ProxyState):
        raise TypeError(f"expected a redisrpc proxy, got {type(proxy).__qualname__}")
    return state


class ProxyBase:
    """Behaviour shared by every proxy; the clients provide ``_rpc_call`` and ``_rpc_refresh``.

    A proxy's only attribute is its :class:`ProxyState`; every other name is a
    remote member (from the class built from the description) or raises
    AttributeError locally.
    """

    __slots__ = ("_rpc_state",)
    _rpc_state: ProxyState

    def _rpc_call(self, name: str, args: Any, kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _rpc_refresh(self) -> Any:
        raise NotImplementedError

    def _rpc_adopt(self, reply: Reply) -> dict[str, Any] | None:
        """Take a ``__describe__`` reply and rebuild this proxy's class from it."""
        found = self._rpc_state.adopt(reply)
        base = _base_class(type(self))
        object.__setattr__(
            self, "__class__", base if found is None else build_proxy_class(base, found)
        )
        return found

    def _rpc_with(self: P, **options: Any) -> P:
        """A sibling proxy of the same class, sharing this one's connection, with other options."""
        twin = object.__new__(type(self))
        object.__setattr__(twin, "_rpc_state", replace(self._rpc_state, **options))
        return twin

    def _rpc_child(self, segment: str) -> Any:
        """The child proxy at ``segment`` below this one (cached; described once when sync)."""
        state = self._rpc_state
        path = f"{state.path}.{segment}" if state.path else segment
        key = (path, state.timeout)
        child = state.children.get(key)
        if child is None:
            child = object.__new__(_base_class(type(self)))
            object.__setattr__(child, "_rpc_state", replace(state, path=path, description=None))
            if not inspect.iscoroutinefunction(type(child)._rpc_refresh):
                child._rpc_refresh()
            else:
                # Undescribed until awaited (any public name is a call); indexing and
                # calling already work, from what the parent's description says.
                entry = _entry(state.description, segment)
                shape = {"class": entry.get("class"), "items": entry.get("items")}
                if entry.get("callable"):
                    shape["call"] = {"params": None}
                cls = build_proxy_class(_base_class(type(self)), shape)
                object.__setattr__(child, "__class__", cls)
            state.children[key] = child
        return child

    def _rpc_lock(self, *, ttl: float = 30.0, note: str = "", wait: float = 0.0) -> Any:
        """Same as ``redisrpc.lock(proxy, ...)``: hold the service for a sequence of calls."""
        from .lock import lock  # noqa: PLC0415 - the lock module builds on this one

        return lock(self, ttl=ttl, note=note, wait=wait)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup failed: the name is not a described member.
        if name.startswith("_"):
            raise AttributeError(name)
        state = self._rpc_state
        if state.description is not None:
            # From the built class, not the raw description, which may be malformed.
            known = sorted(n for n in dir(type(self)) if not n.startswith("_"))
            raise AttributeError(
                f"remote {state.description.get('class', 'object')} {state.name!r} has no"
                f" method or property {name!r} (known: {', '.join(known) or 'none'})"
            )
        if not is_valid_name(name):
            raise AttributeError(name)
        return _DynamicMethod(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        try:
            if isinstance(getattr(type(self), name, None), property):
                object.__setattr__(self, name, value)
                return
            if self._rpc_state.description is None and is_valid_name(name):
                self._rpc_call(SET_PROPERTY, [name, value], {})
                return
        except _CUT as exc:
            exc.__traceback__ = None  # see _settled: only the caller's frames remain
            raise
        raise AttributeError(f"remote {self._rpc_state.name!r} has no writable property {name!r}")

    def __repr__(self) -> str:
        state = self._rpc_state
        return f"<{summary_line(state.label, state.description, state.location)}>"

    def _repr_html_(self) -> str:
        """The notebook's HTML card, from the cached description (no network)."""
        state = self._rpc_state
        return describe_html(state.label, state.description, state.location)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text form: summary, docs, members (no network)."""
        state = self._rpc_state
        printer.text(describe_text(state.label, state.description, state.location))


P = TypeVar("P", bound=ProxyBase)


def _entry(description: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """The description's ``objects`` entry for ``name``, or {}."""
    objects = (description or {}).get("objects")
    for entry in objects if isinstance(objects, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return {}


def _base_class(cls: type[ProxyBase]) -> type[ProxyBase]:
    """The hand-written class under a generated proxy class."""
    return cls.__base__ if cls.__module__ == "redisrpc.remote" else cls  # type: ignore[return-value]


class _DynamicMethod:
    """A method of an undescribed remote (an original RedisRPC server): no signature known."""

    __slots__ = ("_rpc_name", "_rpc_proxy")

    def __init__(self, proxy: ProxyBase, name: str) -> None:
        self._rpc_proxy = proxy
        self._rpc_name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        try:
            return _settled(self._rpc_proxy._rpc_call(self._rpc_name, args, kwargs))
        except _CUT as exc:
            exc.__traceback__ = None  # see _settled: only the caller's frames remain
            raise

    def __repr__(self) -> str:
        service = self._rpc_proxy._rpc_state.name
        return f"<remote method {self._rpc_name!r} of {service!r} (undescribed)>"


# Where a remote error's traceback is cut. A bare ``raise`` re-raises with the
# exception's own ``__traceback__`` and adds no entry for the frame it runs in
# (Python 3.11+), so clearing the traceback before it leaves the generated
# method drops that frame and redisrpc's frames below it: the caller's line is
# the only local frame, under the remote traceback. Python 3.10 keeps the frames.


def _settled(result: Any) -> Any:
    """``result``, or for an async proxy's coroutine one that cuts a remote error's traceback."""
    if isinstance(result, CoroutineType):
        return _awaited(result)
    return result


async def _awaited(call: Coroutine[Any, Any, Any]) -> Any:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
    try:
        return await call
    except _CUT as exc:
        exc.__traceback__ = None
        raise


_CUT = (RemoteException, KeyboardInterrupt)
"""What leaves a proxy member with the library's frames cut: a remote error, and an
interrupted call (its note already says what became of the call)."""


# A generated function's code names no file: IPython's ``?`` then shows no
# library file as the definition and ``??`` shows the docstring and signature,
# not redisrpc's generic body (IPython treats "<string>" as generated code).
_GENERATED = "<string>"


def _generated(function: Any, name: str) -> None:
    function.__code__ = function.__code__.replace(co_filename=_GENERATED, co_name=name)


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _listed(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _call_error(
    name: str, sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any], why: str
) -> str:
    """Python's own wording for a call that does not fit ``sig`` (``why`` is bind's)."""
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in _POSITIONAL]
    if why == "too many positional arguments":
        required = sum(p.default is p.empty for p in positional)
        most = len(positional)
        takes = str(most) if required == most else f"from {required} to {most}"
        given = f"{len(args)} {'was' if len(args) == 1 else 'were'} given"
        return f"{name}() takes {takes} positional argument{'s' * (takes != '1')} but {given}"
    if why.startswith("missing a required argument"):
        missing = [
            p.name
            for i, p in enumerate(positional)
            if p.default is p.empty and i >= len(args) and p.name not in kwargs
        ]
        kind = "positional"
        if not missing:
            kind = "keyword-only"
            missing = [
                p.name
                for p in params
                if p.kind is inspect.Parameter.KEYWORD_ONLY
                and p.default is p.empty
                and p.name not in kwargs
            ]
        count = len(missing)
        return (
            f"{name}() missing {count} required {kind} argument{'s' * (count != 1)}:"
            f" {_listed(missing)}"
        )
    if why.endswith("is positional only, but was passed as a keyword"):
        bad = [
            p.name
            for p in params
            if p.kind is inspect.Parameter.POSITIONAL_ONLY and p.name in kwargs
        ]
        return (
            f"{name}() got some positional-only arguments passed as keyword arguments:"
            f" {_listed(bad)}"
        )
    if why.startswith("multiple values"):
        return f"{name}() got {why}"
    return f"{name}() {why}"


def _arguments_check(name: str, entry: dict[str, Any]) -> Any:
    """``(low, high, check)``: ``check`` raises TypeError when arguments do not fit the signature.

    None when the description has no usable parameter list (nothing is checked,
    as for an undescribed proxy). ``inspect.Signature.bind`` only matches names
    and counts: values are never looked at. Positional arguments alone, from
    ``low`` to ``high`` of them, surely fit: the caller skips ``check`` for them
    (most calls; a call of the check is a frame on every call).
    """
    sig = signature_from_params(entry.get("params"))
    if sig == signature_from_params(None):
        return None
    low, high = _positional_range(sig)

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(_call_error(name, sig, args, kwargs, str(exc))) from None

    return low, high, check


def _positional_range(sig: inspect.Signature) -> tuple[float, float]:
    """How many positional arguments alone ``sig.bind`` surely accepts: (fewest, most).

    A signature is valid only with its defaulted positional parameters after
    the others, so any count in the range fills every required one. A required
    keyword-only parameter makes the range empty: every call is bound.
    """
    kinds = inspect.Parameter
    low = high = 0.0
    for param in sig.parameters.values():
        if param.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD):
            high += 1
            low += param.default is kinds.empty
        elif param.kind is kinds.VAR_POSITIONAL:
            high = float("inf")
        elif param.kind is kinds.KEYWORD_ONLY and param.default is kinds.empty:
            return 1.0, 0.0
    return low, high


def _method(class_name: str, entry: dict[str, Any], *, asynchronous: bool = True) -> Any:
    """The function for one described remote method.

    Arguments are checked against the described signature before anything is
    sent (a wrong call fails at once with Python's wording, not after waiting
    in the queue). The class holds it with ``self`` first, so bound methods
    have the remote signature; ``help()`` of the class shows its ``_rpc_view``
    (the same call, documented with the remote signature alone).
    """
    name = entry["name"]
    checked = _arguments_check(name, entry)
    low, high, check = checked if checked is not None else (0, float("inf"), None)
    # A sync proxy's call returns the value itself: only an async one's coroutine is wrapped.
    settle = _settled if asynchronous else None

    def method(self: ProxyBase, /, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        if check is not None and (kwargs or not low <= len(args) <= high):
            try:
                check(args, kwargs)
            except TypeError as exc:
                exc.__traceback__ = None  # as for a Python function: the caller's line only
                raise
        try:
            result = self._rpc_call(name, args, kwargs)
            return result if settle is None else settle(result)
        except _CUT as exc:
            exc.__traceback__ = None  # see _settled: only the caller's frames remain
            raise

    def view(proxy: ProxyBase, /, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        try:
            return method(proxy, *args, **kwargs)
        except (RemoteException, TypeError) as exc:
            exc.__traceback__ = None
            raise

    remote = signature_from_params(entry.get("params"), entry.get("returns"))
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    try:
        with_self = remote.replace(parameters=[self_param, *remote.parameters.values()])
    except ValueError:  # e.g. a remote parameter itself named "self"
        remote = signature_from_params(None)
        with_self = remote.replace(parameters=[self_param, *remote.parameters.values()])
    for function, sig in ((method, with_self), (view, remote)):
        function.__name__ = name
        function.__qualname__ = f"{class_name}.{name}"
        function.__module__ = _REMOTE_MODULE
        function.__doc__ = entry.get("doc") or None
        function.__signature__ = sig  # type: ignore[attr-defined]
        _generated(function, name)
    method._rpc_view = view  # type: ignore[attr-defined]
    return method


def _property(entry: dict[str, Any]) -> property:
    name = entry["name"]

    def fget(self: ProxyBase) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        try:
            return _settled(self._rpc_call(GET_PROPERTY, [name], {}))
        except _CUT as exc:
            exc.__traceback__ = None  # see _settled: only the caller's frames remain
            raise

    def fset(self: ProxyBase, value: Any) -> None:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        try:
            self._rpc_call(SET_PROPERTY, [name, value], {})
        except _CUT as exc:
            exc.__traceback__ = None  # see _settled: only the caller's frames remain
            raise

    for function in (fget, fset):
        function.__module__ = _REMOTE_MODULE
        _generated(function, name)
    doc = entry.get("doc") or ""
    annotation = entry.get("annotation")
    if annotation:
        doc = f"{doc}\n\n({annotation}{', read-only' if entry.get('readonly') else ''})".strip()
    return property(fget, None if entry.get("readonly") else fset, None, doc or None)


def _child(entry: dict[str, Any]) -> property:
    name = entry["name"]

    def fget(self: ProxyBase) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        return self._rpc_child(name)

    doc = str(entry.get("doc") or "")
    kind = f"{entry.get('class') or 'object'}"
    if isinstance(entry.get("items"), int):
        kind += f", {entry['items']} items"
    info = entry.get("info")
    if isinstance(info, dict) and info.get("unit"):
        kind += f", in {info['unit']}"
    return property(fget, None, None, f"{doc}\n\n(remote {kind})".strip())


def _container(namespace: dict[str, Any], count: int) -> None:
    """Indexing for a list of children: proxy[0] is the child at path ``<path>.0``."""

    def getitem(self: ProxyBase, index: int) -> Any:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError("remote items are indexed by integers")
        position = index + count if index < 0 else index
        if not 0 <= position < count:
            raise IndexError(f"index {index} out of range ({count} items)")
        return self._rpc_child(str(position))

    def iterate(self: ProxyBase) -> Any:
        return (self._rpc_child(str(i)) for i in range(count))

    namespace["__getitem__"] = getitem
    namespace["__len__"] = lambda self: count
    namespace["__iter__"] = iterate


def _callable(namespace: dict[str, Any], class_name: str, entry: dict[str, Any]) -> None:
    """Calling a callable child (a QCoDeS parameter): the path itself is the call name."""
    method = _method(class_name, {**entry, "name": "__call__"})

    def call(self: ProxyBase, /, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        try:
            return _settled(self._rpc_call("", args, kwargs))
        except _CUT as exc:
            exc.__traceback__ = None  # see _settled: only the caller's frames remain
            raise

    call.__doc__ = method.__doc__
    call.__signature__ = method.__signature__  # type: ignore[attr-defined]
    namespace["__call__"] = call


_REMOTE_MODULE = "redisrpc.remote"  # the module every generated class and member claims


class _RemoteClass(type):
    """Metaclass of the generated proxy classes: the class documents the remote object.

    ``help(proxy)`` (pydoc) reads the class: it lists the remote members only
    (not the client's constructor or the proxy machinery), each method with the
    remote signature alone. Instances are untouched: attribute lookup, ``dir()``
    and Tab completion of a proxy do not go through the metaclass.
    """

    @property
    def __signature__(cls) -> inspect.Signature:
        return inspect.Signature()  # no local constructor worth showing: proxies come from Client

    def __dir__(cls) -> list[str]:
        return sorted(n for n in vars(cls) if not n.startswith("_"))

    def __getattribute__(cls, name: str) -> Any:
        value = type.__getattribute__(cls, name)
        if not name.startswith("_") and isinstance(value, FunctionType):
            return getattr(value, "_rpc_view", value)
        return value


def build_proxy_class(base: type[ProxyBase], description: dict[str, Any]) -> type[ProxyBase]:
    """Make the proxy class for one description, deriving from ``base``.

    Members whose names are not plain public identifiers are skipped, so a
    hostile description cannot add private or dunder attributes.
    """
    class_name = str(description.get("class") or "Remote")
    class_name = class_name if is_valid_name(class_name.replace(".", "_")) else "Remote"
    namespace: dict[str, Any] = {
        "__slots__": (),
        "__module__": _REMOTE_MODULE,
        "__qualname__": class_name,
        "__doc__": description.get("doc") or f"Remote {class_name} (served by redisrpc).",
    }
    methods, properties = description.get("methods"), description.get("properties")
    asynchronous = inspect.iscoroutinefunction(base._rpc_call)
    for entry in methods if isinstance(methods, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and is_valid_name(name) and not name.startswith("_"):
            namespace[name] = _method(class_name, entry, asynchronous=asynchronous)
    for entry in properties if isinstance(properties, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and is_valid_name(name) and not name.startswith("_"):
            namespace[name] = _property(entry)
    objects = description.get("objects")
    for entry in objects if isinstance(objects, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and is_valid_name(name) and not name.startswith("_"):
            namespace[name] = _child(entry)
    items = description.get("items")
    if isinstance(items, int) and not isinstance(items, bool) and items >= 0:
        _container(namespace, items)
    call = description.get("call")
    if isinstance(call, dict):
        _callable(namespace, class_name, call)
    made = _RemoteClass(class_name.rsplit(".", 1)[-1], (base,), namespace)
    return made  # type: ignore[return-value]  # a subclass of base, made by the metaclass
