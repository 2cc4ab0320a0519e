"""Dispatch: turn one raw request into one reply for a served object.

The :class:`Dispatcher` decodes a request, refuses what the exposure rule
does not allow, checks the caller's deadline and any per-call check the
server passes in (the advisory lock), runs the method, and encodes the reply.
It does no I/O of its own, so the whole request-to-reply path is testable
without Redis; :class:`~redisrpc.Server` supplies the Redis clock and the lock.

Every failure becomes an error reply with a type name: the remote exception's
(``ZeroDivisionError``, ``mymodule.MyError``), or ``redisrpc.<Class>`` for
what the server itself refuses (``redisrpc.ProtocolError``, ...).

Two kinds of request get no reply at all, because nobody waits for one:

* a request taken after its caller's deadline (it is not run; the caller has
  given up and withdrawn it), and a reply ready only after the deadline;
* a request whose ``id`` this dispatcher has already run: a replay, e.g. a
  queue restored from a Redis snapshot after its callers got their results.
  Ids are remembered until their deadline passes (at most
  :data:`REMEMBERED_IDS` of them).

Dotted names reach child objects (:mod:`redisrpc.server.paths`), values with
no JSON form come back as handles (:mod:`redisrpc.server.handles`), and what
a call prints or warns travels with its reply (:mod:`redisrpc.server.output`).
"""

from __future__ import annotations

import inspect
import logging
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ..core.protocol import (
    BLOB_VERSION,
    BUILTIN_CALLS,
    DEFAULT_MAX_BLOB_SIZE,
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
    encode_framed_reply,
    encode_reply,
    encode_reply_with,
    encode_value_reply,
    is_valid_name,
    salvage_id,
    salvage_response_queue,
)
from ..errors import MessageTooLargeError, RedisRPCError
from ..server.exposure import Member, describe, exposed_members
from .adapters import refresh, view_of
from .handles import Handles
from .output import capturing
from .paths import PathError, Resolver, is_path

__all__ = ["REMEMBERED_IDS", "SKIP", "Check", "Contexts", "Dispatcher"]

log = logging.getLogger("redisrpc.server")

SKIP = ErrorInfo(OWN_ERROR_PREFIX + "Cancelled", "the caller gave up")
"""What a check returns for a request whose caller gave up: it is dropped, with no reply."""

REMEMBERED_IDS = 50_000
"""The most request ids a dispatcher remembers to refuse replays (oldest forgotten first)."""

_NO_DEADLINE = 2**63  # the expiry of a remembered id whose request has no deadline
_SWEEP_EVERY = 1024  # remembered ids are swept for passed deadlines every this many calls

Check = Callable[[Request], "ErrorInfo | None"]
"""A per-call check: returns an error to refuse the request, :data:`SKIP`, or None to run it."""

Contexts = Callable[[Request, "Member | None"], AbstractContextManager[Any]]
"""Makes the context a call runs in (see :class:`redisrpc.server.calls.CallContext`)."""


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
        contexts: makes the context each call runs in (progress, cancellation,
            streams); the server supplies it, the I/O is its own.
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
        contexts: Contexts | None = None,
        max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
    ) -> None:
        self.obj = obj
        self.max_blob_size = max_blob_size
        self.contexts = contexts
        self.name = name
        self.ident = ident
        self.allow = frozenset(expose) if expose is not None else None
        self.readonly = readonly
        self.deny_tags = frozenset(deny_tags)
        self.max_message_size = max_message_size
        self.calls = 0
        self.root = view_of(obj)  # an adapter's view when one serves the object
        self.members: dict[str, Member] = self.scan()
        self._described: tuple[Any, dict[str, Any]] | None = None  # (fingerprint, description)
        # id -> deadline (ms) of the requests run, oldest first; see _replayed.
        self._ran: OrderedDict[str, int] = OrderedDict()
        self._ran_lock = threading.Lock()  # workers > 1 run handle() in several threads
        self._until_sweep = _SWEEP_EVERY
        self._until_full_sweep = 0  # ids remembered before every id may be looked at again
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
            # Computed again only when the object changed: a description of a class with
            # hundreds of methods costs the serving thread tens of milliseconds, the
            # object's fingerprint (its classes' members, its attributes' types) microseconds.
            fingerprint = _fingerprint(self.root)
            cached = self._described
            if cached is None or cached[0] != fingerprint:
                self.members = self.scan()
                cached = self._described = (
                    fingerprint,
                    describe(self.root, self.members, name=self.name),
                )
            return {**cached[1], **extra}
        target, member = self.resolver.locate(self.root, path)
        if member is not None:
            raise _CallError("TypeError", f"{path[:80]!r} is a {member.kind}, not an object")
        members = self.resolver.members(target, rescan=True, keep=not path.startswith("@"))
        return describe(target, members, name=self.name, extra={**extra, "path": path})

    def _member(self, name: str) -> Member:
        member = self.members.get(name)
        if member is not None:
            return member  # a scanned member's name is a valid, public one: nothing to check
        if not is_valid_name(name):
            raise _CallError("AttributeError", f"{name[:80]!r} is not a valid method name")
        if name.startswith("_"):
            raise _CallError("AttributeError", f"{name!r} is private and cannot be called")
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

    def watchable(self, target: Any) -> tuple[Any, Member]:
        """The owner and member ``target`` names, if it can be watched; else raise _CallError.

        A property, a plain attribute, or a method marked
        ``@expose(readonly=True)`` that takes no arguments: reading it
        every interval changes nothing.
        """
        if not isinstance(target, str):
            raise _CallError("TypeError", "the first argument must be a member name")
        owner, member = self._locate(target)
        if member is None or member.kind == "object":
            raise _CallError("TypeError", f"{target[:80]!r} is an object; watch one of its members")
        if member.kind == "method":
            if not member.readonly:
                raise _CallError(
                    "TypeError",
                    f"{target[:80]!r} is a method not marked @expose(readonly=True); only"
                    " properties, attributes and read-only methods can be watched",
                )
            try:
                inspect.signature(getattr(owner, member.name)).bind()
            except TypeError:
                raise _CallError(
                    "TypeError", f"{target[:80]!r} takes arguments; it cannot be watched"
                ) from None
            except ValueError:
                pass  # no signature to check (a builtin): calling it tells
        return owner, member

    def read(self, target: str) -> bytes:
        """Read a watched member: the JSON of a reply, its value or its error (never raises)."""
        try:
            owner, member = self.watchable(target)
            value = getattr(owner, member.name)
            if member.kind == "method":
                value = value()
            data = encode_reply(Reply(value=value))
        except _CallError as exc:
            data = encode_reply(
                Reply(error=ErrorInfo(exc.type_name, exc.message, server=self.ident))
            )
        except (Exception, SystemExit) as exc:
            # SystemExit too, as for calls: it would end the poller thread, and with it
            # every watched value of the server.
            error = ErrorInfo(_error_type(exc), _message(exc), _user_traceback(exc), self.ident)
            data = encode_reply(Reply(error=error))
        if len(data) > self.max_message_size:
            message = (
                f"{target[:80]!r} is {len(data)} bytes, over the limit of {self.max_message_size}"
            )
            data = encode_reply(
                Reply(error=ErrorInfo(OWN_ERROR_PREFIX + "MessageTooLargeError", message))
            )
        return data

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

    def _cancelled(self, request: Request, context: Any) -> tuple[str | None, bytes | None]:
        """The end of a cancelled call: no reply for a caller who gave up, else who cancelled."""
        by = getattr(context, "cancelled_by", None)
        if by is None:
            return None, None  # the caller gave up: nobody reads a reply
        message = f"{request.name}() was cancelled by {by} while it ran"
        return request.response_queue, self._error(
            request, OWN_ERROR_PREFIX + "CallCancelledError", message
        )

    def _replayed(self, request: Request, now_ms: Callable[[], int]) -> bool:
        """Remember ``request``'s id; True if it was already run (a replay: do not run it).

        An id is forgotten once its deadline passed (the deadline check
        refuses it from then on) or when :data:`REMEMBERED_IDS` newer ones
        push it out.
        """
        if request.id is None:
            return False  # a version 1 request: nothing to recognise it by
        ran = self._ran
        with self._ran_lock:
            if request.id in ran:
                return True
            ran[request.id] = _NO_DEADLINE if request.deadline is None else request.deadline
            # An OrderedDict forgets its oldest in O(1); a dict's front fills with
            # deleted slots that every next(iter(...)) walks over.
            if len(ran) > REMEMBERED_IDS:
                ran.popitem(last=False)
            self._until_sweep -= 1
            if self._until_sweep <= 0:
                self._until_sweep = _SWEEP_EVERY
                try:
                    now = now_ms()
                except RedisRPCError:
                    return False
                self._sweep(now)
            return False

    def _sweep(self, now: int) -> None:
        """Forget the ids whose deadline passed (called with the lock held).

        Deadlines mostly grow in the order calls come, so the oldest go first,
        at the cost of what they free; only when that leaves the memory over
        half full (a long call's id holds the front) is every id looked at. A
        server busy enough to keep that many ids within their deadlines would
        look at all of them at every sweep for nothing (25 us a call at 50 000):
        after a full look, the next waits until as many new ids came, so it
        costs about one step per call.
        """
        ran = self._ran
        while ran:
            oldest = next(iter(ran))
            if ran[oldest] >= now:
                break
            del ran[oldest]
        self._until_full_sweep -= _SWEEP_EVERY
        if len(ran) > REMEMBERED_IDS // 2 and self._until_full_sweep <= 0:
            self._ran = OrderedDict((key, end) for key, end in ran.items() if end >= now)
            self._until_full_sweep = len(self._ran)

    def _late_ms(self, request: Request, now_ms: Callable[[], int]) -> int:
        """How many ms past its caller's deadline ``request`` is now (0 or less: in time)."""
        if request.deadline is None:
            return 0
        try:
            return now_ms() - request.deadline
        except RedisRPCError:
            return 0  # clock unknown: run the call, send the reply, rather than drop them

    def _encode_reply(self, reply: Reply) -> bytes:
        """The reply's JSON; values with no JSON form become handles (see server.handles)."""
        return encode_reply_with(reply, self.handles.tag)

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
        failure becomes an error reply; (None, None) means no reply at all
        (no usable reply queue, the caller's deadline passed, or a replay).
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
            # With the request's id where it can be read: its caller takes no reply without.
            too_large = isinstance(exc, MessageTooLargeError)
            call_id = None if too_large else salvage_id(raw, self.max_message_size)
            return queue, encode_reply(Reply(error=error, id=call_id))
        queue = request.response_queue
        late_ms = self._late_ms(request, now_ms)
        if late_ms > 0:
            # The caller has given up: no reply, which nobody would read.
            log.warning(
                "%s: not running %s(): its caller's deadline passed %d ms ago; no reply",
                self.name,
                request.name[:80],
                late_ms,
            )
            return None, None
        if self._replayed(request, now_ms):
            log.warning(
                "%s: not running %s() again: request %r was already run (a replay,"
                " e.g. from a Redis snapshot); no reply",
                self.name,
                request.name[:80],
                request.id,
            )
            return None, None
        try:
            refused = check(request)
        except Exception as exc:  # a check must never stop the server; not running is safe
            log.exception("%s: could not check %s()", self.name, request.name[:80])
            refused = ErrorInfo(
                OWN_ERROR_PREFIX + "LockedError",
                f"the server could not check the lock ({exc!r}); not executed",
                server=self.ident,
            )
        if refused is SKIP:
            log.info("%s: not running %s(): its caller gave up", self.name, request.name[:80])
            return None, None
        if refused is not None:
            log.info("%s: refused %s(): %s", self.name, request.name[:80], refused.message)
            return queue, encode_reply(Reply(error=refused, id=request.id))
        context: Any = None
        name = request.name
        member = self.members.get(name)  # the call's member, looked up once (None: a path...)
        with capturing(self.log_level) as capture:
            try:
                # The server's call context; none for a bare dispatcher or a built-in call.
                with (
                    nullcontext()
                    if self.contexts is None or name in BUILTIN_CALLS
                    else self.contexts(request, member)
                ) as context:
                    if member is not None and member.kind == "method":
                        # A method of the root (most calls): what invoke would do, directly.
                        value = getattr(self.root, member.name)(*request.args, **request.kwargs)
                    else:
                        value = self.invoke(name, request.args, request.kwargs, describe_extra)
                    stream = type(value) not in _PLAIN_TYPES and _is_stream(value)
                    if stream and context is not None and context.interim:
                        finished, value = context.stream(value)
                        if not finished:
                            return self._cancelled(request, context)
                    elif stream:
                        value = list(value)  # a caller before protocol 3 gets the items at once
                self.calls += 1
                if context is not None and context.cancel.is_set():
                    return self._cancelled(request, context)
            except _CallError as exc:
                log.info("%s: refused %s(): %s", self.name, request.name[:80], exc.message)
                return queue, self._error(request, exc.type_name, exc.message)
            except (Exception, SystemExit) as exc:
                # SystemExit too: a served method calling sys.exit() must not end the server.
                self.calls += 1
                if context is not None and context.cancel.is_set():
                    return self._cancelled(request, context)
                message = _message(exc)
                kind = _error_type(exc)
                log.info("%s: %s() raised %s: %s", self.name, request.name, kind, message)
                error = ErrorInfo(kind, message, _user_traceback(exc), self.ident)
                return queue, encode_reply(
                    Reply(error=error, id=request.id, extra=_output(capture.result()))
                )
        if request.name == RELEASE:
            return None, None  # fire and forget: nobody waits for this reply
        late_ms = self._late_ms(request, now_ms)
        if late_ms > 0 and not (context is not None and context.heard):
            # Its caller gave up at the deadline, unless interim messages kept it waiting.
            log.warning(
                "%s: %s() finished %d ms after its caller's deadline; no reply",
                self.name,
                request.name[:80],
                late_ms,
            )
            return None, None
        events = capture.result() if capture.dropped else capture.events
        if not events and not stream:
            # A plain value and no output (most calls): the bytes encode_framed_reply gives.
            data = encode_value_reply(value, request.id)
            if data is not None:
                if len(data) > self.max_message_size:
                    return queue, self._too_large(request, len(data))
                return queue, data
        # Positional (value, error, id, interim, stream, extra): half the cost of keywords.
        reply = Reply(
            value, None, request.id, None, stream and context is not None, _output(events)
        )
        data = encode_framed_reply(
            reply,
            binary=request.protocol >= BLOB_VERSION,
            max_size=self.max_message_size,
            max_blob_size=self.max_blob_size,
            encode=self._encode_reply,
        )
        if len(data) > self.max_message_size:
            data = self._too_large(request, len(data))
        return queue, data

    def _too_large(self, request: Request, size: int) -> bytes:
        """The error reply that replaces a reply of ``size`` bytes, over the limit."""
        message = (
            f"the return value of {request.name}() is {size} bytes,"
            f" over the limit of {self.max_message_size}"
        )
        return self._error(request, OWN_ERROR_PREFIX + "MessageTooLargeError", message)


def _fingerprint(obj: Any) -> tuple[Any, ...]:
    """What the description depends on: every class's members, the instance's attribute types."""
    refresh(obj)  # a view catches up with its target first (a parameter added while served)
    parts: list[Any] = [type(obj)]
    for cls in type(obj).__mro__[:-1]:  # not object
        members = vars(cls)
        parts.append((tuple(members), tuple(map(id, members.values()))))
    own = getattr(obj, "__dict__", None)
    if isinstance(own, dict):
        parts.append(tuple((k, id(v) if callable(v) else type(v)) for k, v in own.items()))
    return tuple(parts)


_PLAIN_TYPES = frozenset({int, float, bool, str, bytes, bytearray, list, dict, tuple, type(None)})


def _is_stream(value: Any) -> bool:
    """A generator or other iterator (not a container, string or file-like value) streams."""
    if type(value) in _PLAIN_TYPES:
        return False  # the usual return values: no ABC check (exact types; subclasses may iterate)
    return isinstance(value, Iterator) and not isinstance(value, (str, bytes, bytearray))
