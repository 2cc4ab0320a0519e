"""Proxy classes built from a ``__describe__`` payload, shared by the sync and async clients.

A proxy's class is made from the remote description: each remote method is a
real function with ``__name__``, ``__doc__`` and ``__signature__``, each
remote property a real property. ``dir()``, Tab completion, ``help()``, ``?``
and :func:`inspect.signature` read that class and never touch the network.

Hygiene rules: every internal attribute starts with ``_rpc_`` (remote names
never start with ``_``, so nothing can clash); unknown and private names raise
:class:`AttributeError` locally; ``repr`` comes from the cached description.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..core.protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    GET_PROPERTY,
    OWN_ERROR_PREFIX,
    SET_PROPERTY,
    ErrorInfo,
    is_valid_name,
    reply_queue_prefix,
)
from ..errors import (
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
from .signature import signature_from_params

__all__ = ["ProxyBase", "build_proxy_class", "checked_timeout", "error_from_reply"]

_OWN_ERRORS: dict[str, type[RedisRPCError]] = {
    OWN_ERROR_PREFIX + "ProtocolError": ProtocolError,
    OWN_ERROR_PREFIX + "MessageTooLargeError": MessageTooLargeError,
    OWN_ERROR_PREFIX + "EncodingError": EncodingError,
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


class ProxyBase:
    """Behaviour shared by every proxy; subclasses provide ``_rpc_call``."""

    _rpc_name: str
    _rpc_description: dict[str, Any] | None
    _rpc_location: str

    def _rpc_setup(self, transport: Any, name: str, timeout: float) -> None:
        """Set the state every proxy starts with: undescribed, on ``transport``."""
        self._rpc_name = name
        self._rpc_transport = transport
        self._rpc_location = transport.location
        self._rpc_timeout = checked_timeout(timeout)
        self._rpc_reply_prefix = reply_queue_prefix(name)
        self._rpc_description = None
        self._rpc_max_size = DEFAULT_MAX_MESSAGE_SIZE

    def _rpc_call(self, name: str, args: Any, kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup failed: the name is not a described member.
        if name.startswith("_"):
            raise AttributeError(name)
        description = self.__dict__.get("_rpc_description")
        if description is not None:
            # From the built class, not the raw description, which may be malformed.
            known = sorted(n for n in dir(type(self)) if not n.startswith("_"))
            raise AttributeError(
                f"remote {description.get('class', 'object')} {self._rpc_name!r} has no"
                f" method or property {name!r} (known: {', '.join(known) or 'none'})"
            )
        if not is_valid_name(name):
            raise AttributeError(name)
        return _DynamicMethod(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_rpc_") or isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
        elif (
            self.__dict__.get("_rpc_description") is None
            and is_valid_name(name)
            and not (name.startswith("_"))
        ):
            self._rpc_call(SET_PROPERTY, [name, value], {})
        else:
            raise AttributeError(f"remote {self._rpc_name!r} has no writable property {name!r}")

    def __repr__(self) -> str:
        description = self.__dict__.get("_rpc_description")
        return f"<{summary_line(self._rpc_name, description, self._rpc_location)}>"

    def _repr_html_(self) -> str:
        """The notebook's HTML card, from the cached description (no network)."""
        description = self.__dict__.get("_rpc_description")
        return describe_html(self._rpc_name, description, self._rpc_location)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text form: summary, docs, members (no network)."""
        description = self.__dict__.get("_rpc_description")
        printer.text(describe_text(self._rpc_name, description, self._rpc_location))


class _DynamicMethod:
    """A method of an undescribed remote (an original RedisRPC server): no signature known."""

    __slots__ = ("_rpc_name", "_rpc_proxy")

    def __init__(self, proxy: ProxyBase, name: str) -> None:
        self._rpc_proxy = proxy
        self._rpc_name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        return self._rpc_proxy._rpc_call(self._rpc_name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._rpc_name!r} of {self._rpc_proxy._rpc_name!r} (undescribed)>"


def _method(class_name: str, entry: dict[str, Any]) -> Any:
    name = entry["name"]

    def method(self: ProxyBase, /, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        return self._rpc_call(name, args, kwargs)

    method.__name__ = name
    method.__qualname__ = f"{class_name}.{name}"
    method.__doc__ = entry.get("doc") or None
    remote = signature_from_params(entry.get("params"), entry.get("returns"))
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    try:
        method.__signature__ = remote.replace(  # type: ignore[attr-defined]
            parameters=[self_param, *remote.parameters.values()]
        )
    except ValueError:  # e.g. a remote parameter itself named "self"
        method.__signature__ = signature_from_params(None).replace(  # type: ignore[attr-defined]
            parameters=[self_param, *signature_from_params(None).parameters.values()]
        )
    return method


def _property(entry: dict[str, Any]) -> property:
    name = entry["name"]

    def fget(self: ProxyBase) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        return self._rpc_call(GET_PROPERTY, [name], {})

    def fset(self: ProxyBase, value: Any) -> None:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        self._rpc_call(SET_PROPERTY, [name, value], {})

    doc = entry.get("doc") or ""
    annotation = entry.get("annotation")
    if annotation:
        doc = f"{doc}\n\n({annotation}{', read-only' if entry.get('readonly') else ''})".strip()
    return property(fget, None if entry.get("readonly") else fset, None, doc or None)


def build_proxy_class(base: type[ProxyBase], description: dict[str, Any]) -> type[ProxyBase]:
    """Make the proxy class for one description, deriving from ``base``.

    Members whose names are not plain public identifiers are skipped, so a
    hostile description cannot add private or dunder attributes.
    """
    class_name = str(description.get("class") or "Remote")
    class_name = class_name if is_valid_name(class_name.replace(".", "_")) else "Remote"
    namespace: dict[str, Any] = {
        "__slots__": (),
        "__module__": "redisrpc.remote",
        "__qualname__": class_name,
        "__doc__": description.get("doc") or f"Remote {class_name} (served by redisrpc).",
    }
    methods, properties = description.get("methods"), description.get("properties")
    for entry in methods if isinstance(methods, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and is_valid_name(name) and not name.startswith("_"):
            namespace[name] = _method(class_name, entry)
    for entry in properties if isinstance(properties, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and is_valid_name(name) and not name.startswith("_"):
            namespace[name] = _property(entry)
    return type(class_name.rsplit(".", 1)[-1], (base,), namespace)
