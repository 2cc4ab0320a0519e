"""The server: wraps any Python object and answers calls on a Redis list.

::

    server = redisrpc.Server(redis.Redis(), "calc", Calculator())
    server.run()          # blocks; stop() from another thread, SIGINT or SIGTERM end it

or, in a notebook or test, in a background thread::

    with redisrpc.Server(redis.Redis(), "calc", Calculator()):
        ...

A server never deletes its queue (a client may already be waiting), takes
one call at a time (wrapped instruments are rarely thread-safe), and never
runs a request whose deadline has passed. Bad messages are answered with an
error where a reply queue can be found, logged, and do not stop the server.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Collection
from types import FrameType, TracebackType
from typing import Any

import redis

from .errors import (
    MessageTooLargeError,
    ProtocolError,
    RedisConnectionError,
    RedisRPCError,
    TransportError,
)
from .introspect import Member, describe, exposed_members
from .protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DESCRIBE,
    GET_PROPERTY,
    PING,
    SET_PROPERTY,
    ErrorInfo,
    Reply,
    decode_request,
    encode_reply,
    is_valid_name,
    salvage_response_queue,
)
from .transport import Transport

__all__ = ["Server"]

log = logging.getLogger("redisrpc.server")

_OWN = "redisrpc."  # prefix of error types that the server itself reports


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


def _user_traceback(exc: BaseException) -> str:
    """Format a traceback without the dispatcher's own frame."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class Server:
    """Serve ``obj`` on the Redis list ``name``.

    Args:
        redis: a redis-py client, a URL, or None for ``REDIS_URL``.
        name: the service name, which is also the request list's key.
        obj: any object; its public methods and properties become callable.
        expose: an explicit allow-list of names (otherwise see
            :func:`redisrpc.expose` and :mod:`redisrpc.introspect`).
        max_message_size: requests larger than this many bytes are refused.
        reply_ttl: seconds an unread reply list lives before Redis drops it.
        poll_interval: how often, in seconds, an idle server checks for stop().
        handle_signals: when run() is in the main thread, SIGINT and SIGTERM
            stop the server after the current call (a second SIGINT interrupts).
    """

    def __init__(
        self,
        redis: redis.Redis | str | None,
        name: str,
        obj: Any,
        *,
        expose: Collection[str] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        reply_ttl: float = 60.0,
        poll_interval: float = 1.0,
        handle_signals: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a server needs a non-empty service name")
        self.name = name
        self.obj = obj
        self.transport = Transport.of(redis)
        self.max_message_size = max_message_size
        self.reply_ttl_ms = max(1, int(reply_ttl * 1000))
        self.poll_interval = poll_interval
        self.handle_signals = handle_signals
        self.ident = f"{name}@{socket.gethostname()}:{os.getpid()}"
        self.calls = 0
        self._allow = frozenset(expose) if expose is not None else None
        self._members: dict[str, Member] = exposed_members(obj, allow=self._allow)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "stopped" if self._stopped.is_set() else "running"
        return f"<redisrpc.Server {self.name!r} serving {type(self.obj).__qualname__} ({state})>"

    # -- dispatch (no Redis here, besides the clock for deadlines) -----------

    def _member(self, name: str) -> Member:
        if not is_valid_name(name):
            raise _CallError("AttributeError", f"{name[:80]!r} is not a valid method name")
        if name.startswith("_"):
            raise _CallError("AttributeError", f"{name!r} is private and cannot be called")
        member = self._members.get(name)
        if member is None:
            # The object may have grown a member since the last scan.
            self._members = exposed_members(self.obj, allow=self._allow)
            member = self._members.get(name)
        if member is None:
            raise _CallError(
                "AttributeError",
                f"{type(self.obj).__qualname__!r} object has no exposed member {name!r}",
            )
        return member

    def _property(self, args: list[Any]) -> Member:
        if not args or not isinstance(args[0], str):
            raise _CallError("TypeError", "the first argument must be a property name")
        member = self._member(args[0])
        if member.kind == "method":
            raise _CallError("AttributeError", f"{args[0]!r} is a method, not a property")
        return member

    def describe(self) -> dict[str, Any]:
        """Return the ``__describe__`` payload (rescanning the object first)."""
        self._members = exposed_members(self.obj, allow=self._allow)
        return describe(
            self.obj,
            self._members,
            name=self.name,
            extra={"server": self.ident, "max_message_size": self.max_message_size},
        )

    def _invoke(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if name == PING:
            return "pong"
        if name == DESCRIBE:
            return self.describe()
        if name == GET_PROPERTY:
            return getattr(self.obj, self._property(args).name)
        if name == SET_PROPERTY:
            member = self._property(args)
            if len(args) != 2:
                raise _CallError("TypeError", "__setprop__ takes a name and a value")
            if member.readonly:
                raise _CallError("AttributeError", f"property {member.name!r} is read-only")
            setattr(self.obj, member.name, args[1])
            return None
        member = self._member(name)
        if member.kind != "method":
            raise _CallError(
                "TypeError", f"{name!r} is a {member.kind}, not a method; read it as a property"
            )
        return getattr(self.obj, name)(*args, **kwargs)

    def handle(self, raw: bytes) -> tuple[str | None, bytes | None]:
        """Process one raw request; return (reply queue, reply bytes).

        Never raises: every failure becomes an error reply, or (None, None)
        when the message names no usable reply queue.
        """
        try:
            request = decode_request(raw, queue=self.name, max_size=self.max_message_size)
        except (ProtocolError, RedisRPCError) as exc:
            queue = salvage_response_queue(raw, self.name)
            kind = "MessageTooLargeError" if isinstance(exc, MessageTooLargeError) else type(
                exc
            ).__name__
            log.warning(
                "%s: bad request (%s), %s: %.200r",
                self.name,
                exc,
                "answered" if queue else "no reply queue, dropped",
                raw[:200],
            )
            if queue is None:
                return None, None
            return queue, encode_reply(
                Reply(error=ErrorInfo(_OWN + kind, str(exc), server=self.ident))
            )
        if request.deadline is not None:
            try:
                late_ms = self.transport.now_ms() - request.deadline
            except RedisRPCError:
                late_ms = 0  # clock unknown: run the call rather than drop it
            if late_ms > 0:
                log.warning(
                    "%s: not running %s(): its caller's deadline passed %d ms ago",
                    self.name,
                    request.name[:80],
                    late_ms,
                )
                error = ErrorInfo(
                    _OWN + "TimeoutException",
                    f"deadline passed {late_ms} ms before the call could start; not executed",
                    server=self.ident,
                )
                return request.response_queue, encode_reply(Reply(error=error, id=request.id))
        try:
            value = self._invoke(request.name, request.args, request.kwargs)
            self.calls += 1
        except _CallError as exc:
            log.info("%s: refused %s(): %s", self.name, request.name[:80], exc.message)
            error = ErrorInfo(exc.type_name, exc.message, server=self.ident)
            return request.response_queue, encode_reply(Reply(error=error, id=request.id))
        except Exception as exc:
            self.calls += 1
            log.info("%s: %s() raised %s: %s", self.name, request.name, _error_type(exc), exc)
            error = ErrorInfo(_error_type(exc), str(exc), _user_traceback(exc), self.ident)
            return request.response_queue, encode_reply(Reply(error=error, id=request.id))
        data = encode_reply(Reply(value=value, id=request.id))
        if len(data) > self.max_message_size:
            error = ErrorInfo(
                _OWN + "MessageTooLargeError",
                f"the return value of {request.name}() is {len(data)} bytes,"
                f" over the limit of {self.max_message_size}",
                server=self.ident,
            )
            data = encode_reply(Reply(error=error, id=request.id))
        return request.response_queue, data

    # -- the loop -----------------------------------------------------------

    def run(self) -> None:
        """Serve until stop(), SIGINT or SIGTERM; the current call always completes."""
        self._stop.clear()
        self._stopped.clear()
        restore = self._install_signal_handlers()
        log.info("%s: serving %s on %s", self.ident, type(self.obj).__qualname__,
                 self.transport.location)
        try:
            self._loop()
        finally:
            for sig, handler in restore.items():
                signal.signal(sig, handler)
            self._stopped.set()
            log.info("%s: stopped after %d calls", self.ident, self.calls)

    def _loop(self) -> None:
        pending: list[tuple[str, bytes]] = []
        backoff = 0.0
        while True:
            stopping = self._stop.is_set()
            if stopping and not pending:
                return
            pipe = self.transport.redis.pipeline(transaction=False)
            for queue, data in pending:
                pipe.rpush(queue, data)
                pipe.pexpire(queue, self.reply_ttl_ms)
            if not stopping:
                # The replies and the wait for the next request share one round trip.
                pipe.blpop([self.name], timeout=self.poll_interval)
            try:
                with self.transport.translated():
                    results = pipe.execute(raise_on_error=False)
            except RedisConnectionError as exc:
                backoff = min(5.0, max(0.1, backoff * 2))
                log.warning("%s: %s; retrying in %.1f s", self.name, exc, backoff)
                if self._stop.wait(backoff) and not pending:
                    return
                continue
            backoff = 0.0
            for (queue, _), result in zip(pending, results[0::2]):
                if isinstance(result, Exception):
                    log.warning("%s: could not reply on %r: %s", self.name, queue, result)
            pending = []
            if stopping:
                return
            popped = results[-1]
            if isinstance(popped, Exception):
                with self.transport.translated():
                    raise popped  # e.g. WRONGTYPE: the service key is not a list
            if popped is None:
                continue
            queue, data = self.handle(popped[1])
            if queue is not None and data is not None:
                pending.append((queue, data))

    def _install_signal_handlers(self) -> dict[int, Any]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self._stop.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt
            log.info("%s: %s received, stopping after the current call", self.name,
                     signal.Signals(signum).name)
            self._stop.set()

        restore = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            restore[sig] = signal.getsignal(sig)
            signal.signal(sig, on_signal)
        return restore

    def start(self) -> Server:
        """Serve in a daemon thread and return at once; stop() ends it."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"server {self.name!r} is already running")
        self._stopped.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"redisrpc-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the server to stop after the current call, and wait for it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        else:
            self._stopped.wait(timeout)

    @property
    def running(self) -> bool:
        """Whether the serving loop is active."""
        return not self._stopped.is_set()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Block until Redis answers, so callers know the server can be reached."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.transport.translated():
                    self.transport.redis.ping()
                return
            except (RedisConnectionError, TransportError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
