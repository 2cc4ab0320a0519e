"""The one exception tree of redisrpc.

Everything redisrpc raises derives from :class:`RedisRPCError`, so one
``except redisrpc.RedisRPCError`` catches it all. Redis client errors never
escape: the transport boundary translates them into the classes below.

::

    RedisRPCError                       base of everything redisrpc raises
    ├── RedisConnectionError            Redis unreachable or connection lost (also ConnectionError)
    ├── TransportError                  Redis answered with an error (auth, ACL, wrong type)
    │   └── CommandError                one or more commands of an exchange got an error reply;
    │                                   ``.replies`` holds every reply, errors as TransportError
    ├── ProtocolError                   a message breaks the wire format (also ValueError)
    │   └── MessageTooLargeError        a message exceeds the configured size limit
    ├── EncodingError                   a value has no JSON wire encoding (also TypeError)
    ├── TimeoutException                no reply within the timeout (also TimeoutError)
    ├── ServerGoneError                 every instance of the service vanished mid-call
    │   └── UnknownServiceError         nothing serves that name (a typo?); close matches named
    ├── CallCancelledError              someone else cancelled the call while it ran
    ├── LockedError                     another client holds the server's advisory lock
    ├── ServiceConflictError            a server would join a service that serves another class
    └── RemoteException                 the remote call raised; remote type and traceback
        ├── Remote<Builtin>             e.g. RemoteZeroDivisionError, also a ZeroDivisionError
        └── <remote type name>          e.g. OverCurrentError for an instrument's own error

    RemoteTraceback                     not raised: carries the framed remote traceback as
                                        ``__cause__`` of a RemoteException, so Python and IPython
                                        print it above the local one.

A remote error's local traceback holds only the caller's frames: the proxy
drops redisrpc's own frames, which say nothing about the error.

``RemoteException`` and ``TimeoutException`` keep the classic RedisRPC names.
"""

from __future__ import annotations

import builtins
import keyword
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CallCancelledError",
    "CommandError",
    "EncodingError",
    "LockedError",
    "MessageTooLargeError",
    "ProtocolError",
    "RedisConnectionError",
    "RedisRPCError",
    "RemoteException",
    "RemoteTraceback",
    "ServerGoneError",
    "ServiceConflictError",
    "TimeoutException",
    "TransportError",
    "UnknownServiceError",
    "remote_exception",
]


class RedisRPCError(Exception):
    """Base class of every error redisrpc raises."""


class RedisConnectionError(RedisRPCError, ConnectionError):
    """Redis could not be reached, or the connection dropped during an operation.

    For a call, ``started`` is ``False`` when its request was withdrawn after
    the failure (it will never run) and None when that is unknown.
    """

    def __init__(self, message: str, *, started: bool | None = None) -> None:
        super().__init__(message)
        self.started = started
        self.sent = False
        """Whether every command of the failed exchange had been written (Redis ran them,
        unless the connection died before it read them)."""


class TransportError(RedisRPCError):
    """Redis answered a command with an error (authentication, ACL, wrong key type)."""


class CommandError(TransportError):
    """Redis answered one or more commands of an exchange with an error reply.

    Every reply was read before this was raised, so the connection stays in
    step. ``replies`` holds them all, in command order; each error reply is a
    :class:`TransportError` instance, the others are Redis's raw replies.
    The message is the first error's.
    """

    def __init__(self, message: str, *, replies: list[Any]) -> None:
        super().__init__(message)
        self.replies = replies


class ProtocolError(RedisRPCError, ValueError):
    """A message does not follow the wire format."""


class MessageTooLargeError(ProtocolError):
    """A message is larger than the configured maximum size."""


class EncodingError(RedisRPCError, TypeError):
    """A value has no JSON wire encoding; the message names its type."""


class TimeoutException(RedisRPCError, TimeoutError):  # noqa: N818 - the classic name
    """No reply arrived within the timeout.

    ``started`` tells whether a server had already taken the request when the
    caller gave up: ``False`` means the request was withdrawn and will never run.
    """

    def __init__(self, message: str, *, started: bool | None = None) -> None:
        super().__init__(message)
        self.started = started


class ServerGoneError(RedisRPCError):
    """Every registered instance of the service vanished while a call was waiting.

    ``started`` tells whether a server had taken the request: ``False`` means it
    was withdrawn and will never run; ``True`` that it may have partly run.
    """

    def __init__(self, message: str, *, started: bool | None = None) -> None:
        super().__init__(message)
        self.started = started


class CallCancelledError(RedisRPCError):
    """Someone else cancelled the call while it ran (``redisrpc.cancel``).

    It may have partly run; the message names who cancelled it.
    """


class UnknownServiceError(ServerGoneError):
    """No live server is registered under the service name, and none took the request.

    The request was withdrawn (``started`` is False: it will never run);
    ``suggestions`` lists registered services with similar names.
    """

    def __init__(self, message: str, *, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message, started=False)
        self.suggestions = list(suggestions)


class LockedError(RedisRPCError):
    """Another client holds the server's advisory lock."""

    def __init__(self, message: str, *, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class ServiceConflictError(RedisRPCError):
    """A server was asked to join a service whose live instances serve another class.

    Calls to one service name go to any of its instances, so two different
    objects under one name answer calls at random. Serve under another name,
    or pass ``share=True`` to :class:`~redisrpc.Server` when the sharing is
    deliberate. ``serving`` lists the classes the live instances serve.
    """

    def __init__(self, message: str, *, serving: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.serving = serving


class RemoteException(RedisRPCError):  # noqa: N818 - the classic name
    """The remote method raised; the remote type, message and traceback are attached.

    When the remote type is a Python builtin exception the raised object is a
    subclass that is also an instance of that builtin, so ``except KeyError``
    works across the wire. Any other remote type (an instrument's own
    ``OverCurrentError``) gets a subclass named after it, so tracebacks name
    it; catch it as ``RemoteException`` and look at ``remote_type``.
    """

    def __init__(
        self,
        message: str,
        *,
        remote_type: str = "",
        remote_traceback: str = "",
        server: str = "",
    ) -> None:
        # Not super(): builtin bases such as UnicodeDecodeError need other arguments.
        Exception.__init__(self, message)
        self.message = message
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        self.server = server

    def __str__(self) -> str:
        return self.message

    def _render_traceback_(self) -> list[str]:
        """IPython's traceback hook: the remote part once, then IPython's view of the local part.

        IPython would otherwise give the remote part a local header of its own
        ("RemoteTraceback ... Traceback (most recent call last)") above the one
        the remote text already has.
        """
        shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
        cause = self.__cause__
        if shell is None or not isinstance(cause, RemoteTraceback):
            return traceback.format_exception(self)
        saved = self.__suppress_context__
        self.__cause__, self.__suppress_context__ = None, True
        try:
            local: list[str] = shell.InteractiveTB.structured_traceback(
                type(self), self, self.__traceback__
            )
        finally:
            self.__cause__, self.__suppress_context__ = cause, saved
        remote = f"Remote traceback {cause}"
        return [*local[:1], remote, "", *local[1:]]

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            remote_exception,
            (self.remote_type, self.message, self.remote_traceback, self.server),
        )


class RemoteTraceback(Exception):  # noqa: N818 - a display carrier, never raised
    """Shows a remote traceback, framed, as the cause of a RemoteException.

    Its one line of ``traceback`` output is the header of the remote part
    (``RemoteTraceback: from calc@lab:7 (most recent call last):``), so the
    remote traceback is announced once, not once by the class and again by
    the text; a bar closes it before the local part begins.
    """

    def __init__(self, text: str, *, server: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.server = server

    def __str__(self) -> str:
        where = f"from {self.server}" if self.server else "from the server"
        body = self.text.rstrip("\n")
        first, _, rest = body.partition("\n")
        if first.strip() == "Traceback (most recent call last):":
            head, body = f"{where} (most recent call last):", rest
        else:
            head = f"{where}:"
        return f"{head}\n{body}\n{_BAR} end of remote traceback {_BAR}"


_BAR = "─" * 12

# BaseException-only builtins (KeyboardInterrupt, SystemExit) are deliberately
# absent: a remote Ctrl-C must not stop the local program.
_BUILTIN_EXCEPTIONS: dict[str, type[Exception]] = {
    name: obj
    for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, Exception) and not name.startswith("_")
}

# How many classes for remote type names outside the builtins are kept (least
# recently used go first); a name seen again after eviction gets an equivalent class.
_REMOTE_CLASS_LIMIT = 256

# Classes for builtin names are few (one per builtin) and kept for good, so
# ``type(exc)`` stays the same class for a builtin name; other names arrive
# from the network, unbounded in number, and share a bounded LRU.
_BUILTIN_REMOTE_CLASSES: dict[str, type[RemoteException]] = {}
_REMOTE_CLASSES: OrderedDict[str, type[RemoteException]] = OrderedDict()
_CLASSES_LOCK = threading.Lock()
_NAME_LIMIT = 200  # characters of a remote type name turned into a class name


def _builtin_remote_class(type_name: str, builtin: type[Exception]) -> type[RemoteException]:
    """``Remote<Builtin>``: a RemoteException that is also an instance of the builtin."""
    try:
        cls: type[RemoteException] = type(
            f"Remote{type_name}",
            (RemoteException, builtin),
            {"__doc__": f"A remote {type_name}.", "__module__": __name__},
        )
        # Some builtins (MemoryError) refuse to be made this way: probe once.
        RemoteException.__init__(cls.__new__(cls), type_name)
    except TypeError:  # a C layout conflict or an unsafe __new__; the base class serves
        return RemoteException
    return cls


def _named_remote_class(type_name: str) -> type[RemoteException]:
    """A RemoteException subclass that shows under the remote type's own name.

    ``mod.sub.OverCurrentError`` gives a class named ``OverCurrentError`` in
    module ``mod.sub``, so the traceback's last line reads
    ``mod.sub.OverCurrentError: message``. The name is only text: nothing is
    imported or looked up, and a name that is not a plain dotted identifier
    (or names a non-exception builtin such as ``SystemExit``) gives the base class.
    """
    parts = type_name.split(".")
    if len(type_name) > _NAME_LIMIT or not all(
        p.isidentifier() and not keyword.iskeyword(p) for p in parts
    ):
        return RemoteException
    if len(parts) == 1 and parts[0] in vars(builtins):
        return RemoteException  # e.g. SystemExit, object: never impersonate a builtin
    module = ".".join(parts[:-1]) or "remote"
    return type(
        parts[-1],
        (RemoteException,),
        {
            "__doc__": f"A remote {type_name} (see ``remote_type``, ``remote_traceback``).",
            "__module__": module,
            "__qualname__": parts[-1],
        },
    )


def _remote_class(type_name: str) -> type[RemoteException]:
    """Return the RemoteException subclass for a remote type name (cached, bounded)."""
    # A dictionary lookup among builtins: nothing in the name is evaluated.
    builtin = _BUILTIN_EXCEPTIONS.get(type_name)
    with _CLASSES_LOCK:
        if builtin is not None:
            cls = _BUILTIN_REMOTE_CLASSES.get(type_name)
            if cls is None:
                cls = _BUILTIN_REMOTE_CLASSES[type_name] = _builtin_remote_class(type_name, builtin)
            return cls
        cls = _REMOTE_CLASSES.get(type_name)
        if cls is not None:
            _REMOTE_CLASSES.move_to_end(type_name)
            return cls
        cls = _REMOTE_CLASSES[type_name] = _named_remote_class(type_name)
        while len(_REMOTE_CLASSES) > _REMOTE_CLASS_LIMIT:
            _REMOTE_CLASSES.popitem(last=False)
        return cls


def remote_exception(
    remote_type: str, message: str, remote_traceback: str = "", server: str = ""
) -> RemoteException:
    """Build the exception to raise locally for an error reply from a server."""
    cls = _remote_class(remote_type)
    exc = cls.__new__(cls)
    RemoteException.__init__(
        exc,
        message,
        remote_type=remote_type,
        remote_traceback=remote_traceback,
        server=server,
    )
    # Builtin bases keep their own args (KeyError's str quotes them); set them
    # so that the builtin view of the exception shows the remote message.
    exc.args = (message,)
    if remote_traceback:
        exc.__cause__ = RemoteTraceback(remote_traceback, server=server)
    return exc
