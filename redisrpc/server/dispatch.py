"""Dispatch: turn one raw request into one reply for a served object.

The :class:`Dispatcher` decodes a request, refuses what the exposure rule
does not allow, checks the caller's deadline and any per-call check the
server passes in (the advisory lock), runs the method, and encodes the reply.
It does no I/O of its own, so the whole request-to-reply path is testable
without Redis; :class:`~redisrpc.Server` supplies the Redis clock and the lock.

Every failure becomes an error reply with a type name: the remote exception's
(``ZeroDivisionError``, ``mymodule.MyError``), or ``redisrpc.<Class>`` for
what the server itself refuses (``redisrpc.ProtocolError``,
``redisrpc.TimeoutException`` for a passed deadline, ...).

Dotted names reach child objects (:mod:`redisrpc.server.paths`), values with
no JSON form come back as handles (:mod:`redisrpc.server.handles`), and what
a call prints or warns travels with its reply (:mod:`redisrpc.server.output`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Collection
from typing import Any

from ..core.protocol import (
    DESCRIBE,
    GET_PROPERTY,
    OWN_ERROR_PREFIX,
    PING,
    RELEASE,
    SET_PROPERTY,
    ErrorInfo,
    Reply,
    Request,
    decode_request,
    encode_reply,
    encode_reply_with,
    is_valid_name,
    salvage_response_queue,
)
from ..errors import MessageTooLargeError, RedisRPCError
from ..server.exposure import Member, describe, exposed_members
from .adapters import view_of
from .handles import Handles
from .output import capturing
from .paths import PathError, Resolver, is_path

__all__ = ["Dispatcher"]

log = logging.getLogger("redisrpc.server")

Check = Callable[[Request], "ErrorInfo | None"]
"""A per-call check: returns an error to refuse the request, or None to run it."""


class _CallError(Exception):
    """An error the dispatcher reports as is, without a traceback of its own frames."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _message(exc: BaseException) -> str:
    """The exception's message, even when its __str__ is broken."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__qualname__} whose str() failed>"


def _user_traceback(exc: BaseException) -> str:
    """Format a traceback without the dispatcher's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _output(events: list[list[Any]] | None) -> dict[str, Any] | None:
    return {"output": events} if events else None


class Dispatcher:
    """Run requests against ``obj`` under the exposure rule; no I/O.

    Args:
        obj: the served object.
        name: the service name (requests must name reply queues under it).
        ident: who answers, e.g. ``calc@host:pid``, put in error replies.
        expose, readonly, deny_tags: the exposure rule's options (see
            :func:`redisrpc.server.exposure.exposed_members`).
        max_message_size: the largest request, and reply, in bytes.
    """

    def __init__(
        self,
        obj: Any,
        name: str,
        *,
        ident: str,
        expose: Collection[str] | None = None,
        readonly: bool = False,
        deny_tags: Collection[str] = (),
        max_message_size: int,
    ) -> None:
        self.obj = obj
        self.name = name
        self.ident = ident
        self.allow = frozenset(expose) if expose is not None else None
        self.readonly = readonly
        self.deny_tags = frozenset(deny_tags)
        self.max_message_size = max_message_size
        self.calls = 0
        self.root = view_of(obj)  # an adapter's view when one serves the object
        self.members: dict[str, Member] = self.scan()
        self.resolver = Resolver(self._members_of, self._handle)
        self.handles = Handles(self._describe_value)
        self.log_level: int | None = None
        """Send log records at this level and above back with each reply (None: none)."""

    def scan(self) -> dict[str, Member]:
        """Apply the one exposure rule (calls and __describe__ share it)."""
        return exposed_members(
            self.root, allow=self.allow, readonly=self.readonly, deny_tags=self.deny_tags
        )

    def _members_of(self, obj: Any) -> dict[str, Member]:
        """The rule for objects reached by a path: ``expose=`` applies to the root only."""
        if obj is self.root:
            return self.scan()
        return exposed_members(obj, readonly=self.readonly, deny_tags=self.deny_tags)

    def _handle(self, handle: str) -> Any:
        try:
            return self.handles.get(handle)
        except KeyError:
            raise PathError(
                "redisrpc.HandleError", f"handle {handle} was released or expired"
            ) from None

    def _describe_value(self, obj: Any, path: str) -> dict[str, Any]:
        members = self.resolver.members(obj, keep=False)
        return describe(obj, members, name=self.name, extra={"path": path})

    def describe(self, extra: dict[str, Any], path: str | None = None) -> dict[str, Any]:
        """Return the ``__describe__`` payload of the root, or of the child at ``path``."""
        if path is None:
            self.members = self.scan()
            return describe(self.root, self.members, name=self.name, extra=extra)
        target, member = self.resolver.locate(self.root, path)
        if member is not None:
            raise _CallError("TypeError", f"{path[:80]!r} is a {member.kind}, not an object")
        members = self.resolver.members(target, rescan=True, keep=not path.startswith("@"))
        return describe(target, members, name=self.name, extra={**extra, "path": path})

    def _member(self, name: str) -> Member:
        if not is_valid_name(name):
            raise _CallError("AttributeError", f"{name[:80]!r} is not a valid method name")
        if name.startswith("_"):
            raise _CallError("AttributeError", f"{name!r} is private and cannot be called")
        member = self.members.get(name)
        if member is None:
            # The object may have grown a member since the last scan.
            self.members = self.scan()
            member = self.members.get(name)
        if member is None:
            raise _CallError(
                "AttributeError",
                f"{type(self.obj).__qualname__!r} object has no exposed member {name!r}",
            )
        return member

    def _locate(self, name: str) -> tuple[Any, Member | None]:
        """The object and member a call name means: a plain name, or a path."""
        if not is_path(name):
            member = self._member(name)
            if member.kind != "object":
                return self.root, member
        try:
            return self.resolver.locate(self.root, name)
        except PathError as exc:
            raise _CallError(exc.type_name, exc.message) from None

    def _property(self, args: list[Any]) -> tuple[Any, Member]:
        if not args or not isinstance(args[0], str):
            raise _CallError("TypeError", "the first argument must be a property name")
        owner, member = self._locate(args[0])
        if member is None or member.kind in ("method", "object"):
            kind = "an object" if member is None or member.kind == "object" else "a method"
            raise _CallError("AttributeError", f"{args[0][:80]!r} is {kind}, not a property")
        return owner, member

    def invoke(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        describe_extra: Callable[[], dict[str, Any]],
    ) -> Any:
        """Run one call by name: a built-in call, a property access or a method."""
        if name == PING:
            return "pong"
        if name == DESCRIBE:
            if args and isinstance(args[0], str):
                try:
                    return self.describe(describe_extra(), args[0])
                except PathError as exc:
                    raise _CallError(exc.type_name, exc.message) from None
            return self.describe(describe_extra())
        if name == RELEASE:
            return self.handles.release(args)
        if name == GET_PROPERTY:
            owner, member = self._property(args)
            return getattr(owner, member.name)
        if name == SET_PROPERTY:
            owner, member = self._property(args)
            if len(args) != 2:
                raise _CallError("TypeError", "__setprop__ takes a name and a value")
            if member.readonly:
                raise _CallError("AttributeError", f"property {member.name!r} is read-only")
            setattr(owner, member.name, args[1])
            return None
        owner, found = self._locate(name)
        if found is None:
            if getattr(owner, "_redisrpc_callable", None) is None:
                raise _CallError("TypeError", f"{name[:80]!r} is an object, not callable")
            return owner(*args, **kwargs)  # a callable view: dmm.ch1() reads, dmm.ch1(3) sets
        if found.kind != "method":
            raise _CallError(
                "TypeError",
                f"{name[:80]!r} is a {found.kind}, not a method; read it as a property",
            )
        return getattr(owner, found.name)(*args, **kwargs)

    def _error(self, request: Request, type_name: str, message: str, tb: str = "") -> bytes:
        return encode_reply(
            Reply(error=ErrorInfo(type_name, message, tb, self.ident), id=request.id)
        )

    def handle(
        self,
        raw: bytes,
        *,
        now_ms: Callable[[], int],
        check: Check,
        describe_extra: Callable[[], dict[str, Any]],
    ) -> tuple[str | None, bytes | None]:
        """Process one raw request; return (reply queue, reply bytes).

        ``now_ms`` reads the Redis clock (only for requests with a deadline);
        ``check`` may refuse a request before it runs. Never raises: every
        failure becomes an error reply, or (None, None) when the message names
        no usable reply queue.
        """
        try:
            request = decode_request(raw, queue=self.name, max_size=self.max_message_size)
        except RedisRPCError as exc:
            queue = salvage_response_queue(raw, self.name)
            kind = (
                "MessageTooLargeError"
                if isinstance(exc, MessageTooLargeError)
                else type(exc).__name__
            )
            log.warning(
                "%s: bad request (%s), %s: %.200r",
                self.name,
                exc,
                "answered" if queue else "no reply queue, dropped",
                raw[:200],
            )
            if queue is None:
                return None, None
            error = ErrorInfo(OWN_ERROR_PREFIX + kind, str(exc), server=self.ident)
            return queue, encode_reply(Reply(error=error))
        queue = request.response_queue
        if request.deadline is not None:
            try:
                late_ms = now_ms() - request.deadline
            except RedisRPCError:
                late_ms = 0  # clock unknown: run the call rather than drop it
            if late_ms > 0:
                log.warning(
                    "%s: not running %s(): its caller's deadline passed %d ms ago",
                    self.name,
                    request.name[:80],
                    late_ms,
                )
                message = f"deadline passed {late_ms} ms before the call could start; not executed"
                return queue, self._error(request, OWN_ERROR_PREFIX + "TimeoutException", message)
        refused = check(request)
        if refused is not None:
            log.info("%s: refused %s(): %s", self.name, request.name[:80], refused.message)
            return queue, encode_reply(Reply(error=refused, id=request.id))
        with capturing(log_level=self.log_level) as capture:
            try:
                value = self.invoke(request.name, request.args, request.kwargs, describe_extra)
                self.calls += 1
            except _CallError as exc:
                log.info("%s: refused %s(): %s", self.name, request.name[:80], exc.message)
                return queue, self._error(request, exc.type_name, exc.message)
            except (Exception, SystemExit) as exc:
                # SystemExit too: a served method calling sys.exit() must not end the server.
                self.calls += 1
                message = _message(exc)
                kind = _error_type(exc)
                log.info("%s: %s() raised %s: %s", self.name, request.name, kind, message)
                error = ErrorInfo(kind, message, _user_traceback(exc), self.ident)
                return queue, encode_reply(
                    Reply(error=error, id=request.id, extra=_output(capture.result()))
                )
        if request.name == RELEASE:
            return None, None  # fire and forget: nobody waits for this reply
        reply = Reply(value=value, id=request.id, extra=_output(capture.result()))
        data = encode_reply_with(reply, self.handles.tag)
        if len(data) > self.max_message_size:
            message = (
                f"the return value of {request.name}() is {len(data)} bytes,"
                f" over the limit of {self.max_message_size}"
            )
            data = self._error(request, OWN_ERROR_PREFIX + "MessageTooLargeError", message)
        return queue, data
