"""What a served method knows about the call it runs: progress, cancellation, streams.

Inside a served method, with no change to its signature::

    def move_to(self, mm: float) -> float:
        for step in self._steps_to(mm):
            if redisrpc.cancelled():          # the caller pressed Ctrl-C, or gave up
                break
            self._step(step)
            redisrpc.progress(step, total, "moving")
        return self.position

    @redisrpc.expose(on_cancel="halt")        # called from another thread on cancel
    def home(self) -> None: ...

A method that returns a generator (or any iterator) streams: each item
reaches the caller as it is made, the server staying at most
:data:`STREAM_WINDOW` items ahead of what the caller has read.

The server side of all this is the :class:`Watcher`: a thread that, once a
call has run for :data:`LONG_CALL` seconds, publishes it as running (method,
caller, elapsed, progress) and looks for its cancel mark every
:data:`LONG_CALL` seconds; and :class:`Cancellations`, the check that keeps a
server from starting a request whose caller already gave up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from typing import Any, NamedTuple

from ..core.clock import local_seconds
from ..core.plan import NOW, Plan
from ..core.protocol import (
    BLOB_VERSION,
    DEFAULT_MAX_BLOB_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    INTERIM_VERSION,
    Framed,
    Request,
    cancel_key,
    cancels_key,
    encode_framed_item,
    encode_progress,
    running_key,
)
from ..core.transport import Transport
from ..errors import RedisRPCError

__all__ = [
    "LONG_CALL",
    "STREAM_WINDOW",
    "CallContext",
    "Cancellations",
    "Prefetched",
    "RedisStart",
    "Watcher",
    "cancelled",
    "current",
    "progress",
]

log = logging.getLogger("redisrpc.server")

LONG_CALL = 0.2
"""Seconds after which a running call is published and checked for cancellation."""
STREAM_WINDOW = 64
"""The most stream items a server puts on a caller's reply list ahead of its reading."""
RECHECK_AFTER = 0.005
"""A server re-reads the cancellation counter before starting a request when its last
reading may be older than this (a previous call ran long, or the process was paused)."""
_RECHECK_AFTER_MS = RECHECK_AFTER * 1000

_PROGRESS_EVERY = 0.1  # at most ten progress messages a second reach a caller
_PUBLISH_EVERY = 1.0  # how often a running call's published state is refreshed
_RUNNING_TTL_MS = 10_000  # the running hash outlives its last refresh this long
_STALL_LIMIT = 60.0  # a stream whose caller reads nothing for this long is abandoned

_current: ContextVar[CallContext | None] = ContextVar("redisrpc_call", default=None)


def current() -> CallContext | None:
    """The call the current thread runs for a server, or None outside one."""
    return _current.get()


def progress(done: float, total: float | None = None, message: str = "") -> None:
    """Report the progress of the call being served (a no-op outside a served call).

    The caller's progress callback, or its progress bar, shows it; while
    progress keeps coming, the caller's timeout does not run out (it measures
    silence). Reports come through at most ten times a second.
    """
    context = _current.get()
    if context is not None:
        context.report(done, total, message)


def cancelled() -> bool:
    """True once the caller of the call being served gave up on it (Ctrl-C, a timeout).

    Long loops check it and stop early; see also ``@expose(on_cancel=...)``.
    """
    context = _current.get()
    return context is not None and context.cancel.is_set()


class Flag:
    """A flag another thread sets, like :class:`threading.Event`, but free until waited on.

    Every call gets one; only a streaming call ever waits on it, so the lock
    and condition of an Event are made then, not per call.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._set

    def set(self) -> None:
        """Set the flag, waking a waiter."""
        self._set = True
        if self._event is not None:
            self._event.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the flag; True if it is set."""
        if self._set:
            return True
        if self._event is None:
            self._event = threading.Event()
            if self._set:  # set meanwhile, before the event existed
                self._event.set()
        return self._event.wait(timeout)


class CallContext:
    """One call a server runs: its request, its cancel flag, its progress."""

    # Every call makes one: what most calls never change is a class default, not set each time.
    _token: Token[CallContext | None] | None = None
    last_progress: dict[str, Any] | None = None
    cancelled_by: str | None = None
    """Who cancelled the call, when not its own caller (who then still gets an answer)."""
    published = False
    heard = False
    """Whether the caller got interim messages: it may wait past the deadline then."""
    _sent_at = 0.0

    def __init__(  # noqa: PLR0917 - positional on the hot path: half the cost of keywords
        self,
        transport: Transport,
        request: Request,
        service: str,
        instance: str,
        reply_ttl_ms: int,
        on_cancel: Callable[[], Any] | None = None,
        watcher: Watcher | None = None,
        max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
    ) -> None:
        self.transport = transport
        self.watcher = watcher
        # The server's limits: a streamed item is held to them as its final reply is.
        self.max_size = max_size
        self.max_blob_size = max_blob_size
        self.request = request
        self.service = service
        self.instance = instance
        self.reply_ttl_ms = reply_ttl_ms
        self.on_cancel = on_cancel
        self.cancel = Flag()
        self.started = time.monotonic()

    @property
    def started_epoch(self) -> float:
        """When the call started, in epoch seconds on the Redis clock (as readers measure).

        Not this host's wall clock: readers elsewhere compare it with the Redis
        clock, so a host whose clock is off would show wrong elapsed times.
        """
        return self.transport.now_ms() / 1000.0 - (time.monotonic() - self.started)

    @property
    def interim(self) -> bool:
        """Whether the caller takes interim messages (protocol 3 and a call id)."""
        return self.request.protocol >= INTERIM_VERSION and self.request.id is not None

    def __enter__(self) -> CallContext:
        """The call runs: the current call of its thread, watched by the server's watcher."""
        self._token = _current.set(self)
        if self.watcher is not None:
            self.watcher.begin(self)
        return self

    def __exit__(self, *exc: object) -> None:
        """The call ended: unwatched, no longer current, cleaned up after if cancelled."""
        watcher = self.watcher
        if watcher is not None:
            watcher.end(self)
        if self._token is not None:
            _current.reset(self._token)
        if self.cancel._set:
            self.discard()

    def report(self, done: float, total: float | None, message: str) -> None:
        """Send a progress message to the caller (rate-limited; the last one always goes)."""
        self.last_progress = {"done": done, "total": total, "message": str(message)[:200]}
        if not self.interim:
            return
        now = time.monotonic()
        final = total is not None and done >= total
        if now - self._sent_at < _PROGRESS_EVERY and not final:
            return
        self._sent_at = now
        data = encode_progress(self.request.id, done, total, str(message)[:200])
        self._push(data)

    def _push(self, data: bytes) -> int:
        self.heard = True
        queue = self.request.response_queue
        blobs = data.blobs if isinstance(data, Framed) else ()  # in the same RPUSH (protocol 4)
        length, _ = self.transport.execute(
            ("RPUSH", queue, data, *blobs), ("PEXPIRE", queue, self.reply_ttl_ms)
        )
        return int(length)

    def cancel_now(self, mark: Any = b"1") -> None:
        """The call was cancelled: set the flag, and call the method's on_cancel hook once.

        ``mark`` is the cancel mark's value: ``1`` from the caller itself, who
        is gone; anything else names someone else, and the caller is answered.
        """
        if self.cancel.is_set():
            return
        if mark not in (b"1", "1", 1):
            by = mark.decode("utf-8", "replace") if isinstance(mark, bytes) else str(mark)
            self.cancelled_by = by[:200]
        self.cancel.set()
        log.info("%s: %s() cancelled by its caller", self.instance, self.request.name)
        if self.on_cancel is not None:
            try:
                self.on_cancel()
            except Exception:
                log.exception(
                    "%s: the on_cancel hook of %s() failed", self.instance, self.request.name
                )

    def discard(self) -> None:
        """A cancelled call is over: remove its cancel mark, and its reply list if unread.

        A caller that gave up reads nothing more; progress or items sent before
        the server saw the mark would otherwise keep the list alive until it
        expires. A call someone else cancelled is still answered.
        """
        commands: list[tuple[Any, ...]] = []
        if self.cancelled_by is None:
            commands.append(("DEL", self.request.response_queue))
        if self.request.id is not None:
            commands.append(("DEL", cancel_key(self.service, self.request.id)))
        try:
            self.transport.execute(*commands)
        except RedisRPCError as exc:
            log.debug("%s: could not clean up after a cancelled call: %s", self.instance, exc)

    def stream(self, items: Iterator[Any]) -> tuple[bool, Any]:
        """Send a generator's items to the caller; returns (finished, its return value).

        ``finished`` is False when the caller cancelled (the generator is
        closed, so its ``finally`` runs) or stopped reading for a minute.
        """
        try:
            while True:
                if self.cancel.is_set():
                    return False, None
                try:
                    item = next(items)
                except StopIteration as stop:
                    return True, stop.value
                waited = 0.0
                binary = self.request.protocol >= BLOB_VERSION
                length = self._push(
                    encode_framed_item(
                        self.request.id,
                        item,
                        binary=binary,
                        max_size=self.max_size,
                        max_blob_size=self.max_blob_size,
                    )
                )
                while length > STREAM_WINDOW:  # the caller is behind: wait for it to read
                    if self.cancel.wait(0.01 if waited < 0.1 else 0.05):
                        return False, None
                    waited += 0.05
                    if waited > _STALL_LIMIT:
                        log.warning(
                            "%s: %s() stream abandoned: its caller stopped reading",
                            self.instance,
                            self.request.name,
                        )
                        return False, None
                    (length,) = self.transport.execute(("LLEN", self.request.response_queue))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # runs the generator's finally (a no-op once it is exhausted)

    def running(self) -> dict[str, Any]:
        """What ``redisrpc list``, the explorer and a waiting caller see of this call."""
        return {
            "id": self.request.id,
            "method": self.request.name,
            "caller": self.request.caller,
            "instance": self.instance,
            "since": round(self.started_epoch, 3),
            "progress": self.last_progress,
        }


class Watcher:
    """A server's thread that watches its long calls: publishes them, and stops cancelled ones."""

    def __init__(self, transport: Transport, service: str) -> None:
        self.transport = transport
        self.service = service
        self._calls: dict[int, CallContext] = {}
        # Held while a call is cancelled, and while one ends: a mark read as its call
        # ended (the next one may run) never reaches the hook, which would stop that one.
        self._cancelling = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (the server starts serving)."""
        self._stop.clear()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name=f"redisrpc-watch-{self.service}", daemon=True
            )
            self._thread.start()

    def begin(self, context: CallContext) -> None:
        """A call starts: no I/O and no wakeup (the watcher looks every :data:`LONG_CALL`)."""
        self._calls[id(context)] = context  # a dict's item assignment is atomic

    def end(self, context: CallContext) -> None:
        """A call ended; if it was published, take it off the running list."""
        with self._cancelling:  # not while its on_cancel hook runs
            self._calls.pop(id(context), None)
        if context.published and context.request.id is not None:
            try:
                self.transport.execute(("HDEL", running_key(self.service), context.request.id))
            except RedisRPCError as exc:
                log.debug("%s: could not unpublish a call: %s", self.service, exc)

    def stop(self) -> None:
        """Stop the thread (the server stops)."""
        self._stop.set()

    def _run(self) -> None:
        next_publish = 0.0
        while not self._stop.wait(LONG_CALL):
            calls = list(self._calls.values())
            if not calls:
                continue
            now = time.monotonic()
            long = [c for c in calls if now - c.started >= LONG_CALL and c.request.id is not None]
            if long:
                publish = now >= next_publish or any(not c.published for c in long)
                try:
                    self._look(long, publish)
                except RedisRPCError as exc:
                    log.debug("%s: watching long calls: %s", self.service, exc)
                if publish:
                    next_publish = now + _PUBLISH_EVERY

    def _look(self, calls: list[CallContext], publish: bool) -> None:
        """One round trip: the cancel marks of the long calls, and (re)publishing them."""
        commands: list[tuple[Any, ...]] = [
            ("GET", cancel_key(self.service, str(c.request.id))) for c in calls
        ]
        if publish:
            # The Redis clock, as readers judge it: a host whose clock is behind would
            # publish entries already past, so its calls would never show (nor be cancelled).
            until = int(self.transport.now_ms() + (2 * _PUBLISH_EVERY + LONG_CALL) * 1000)
            fields: list[Any] = []
            for call in calls:
                entry = call.running()
                entry["until"] = until
                fields += [str(call.request.id), json.dumps(entry)]
            key = running_key(self.service)
            commands += [("HSET", key, *fields), ("PEXPIRE", key, _RUNNING_TTL_MS)]
        replies = self.transport.execute(*commands)
        for call, marked in zip(calls, replies, strict=False):
            if publish:
                call.published = True
            if marked is not None:
                with self._cancelling:
                    if self._calls.get(id(call)) is call:  # not one that ended meanwhile
                        call.cancel_now(marked)


class RedisStart:
    """When the Redis server started, to refuse requests replayed from a snapshot.

    A protocol 3 request says when it was sent (``sent``, Redis clock). One
    sent before this Redis started can only come from a snapshot the Redis
    loaded at start (RDB or AOF): its caller was answered, or gave up, long
    ago. The start is read (``INFO server``) when first needed and again
    after every lost connection, since Redis may have restarted meanwhile.
    Uptime comes in whole seconds: the earliest possible start is used, so a
    request sent just after a restart is never refused.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.started_ms: int | None = None
        self._stale = True

    def forget(self) -> None:
        """The connection was lost: read the start again before the next request."""
        self._stale = True

    def replayed(self, request: Request) -> bool:
        """Whether ``request`` was sent before this Redis started (a replay)."""
        if request.sent is None:
            return False
        if self._stale:
            try:
                self.started_ms = self.transport.run(self._measuring())
                self._stale = False
            except RedisRPCError as exc:
                log.debug("cannot read when Redis started: %s", exc)
                return False
        return self.started_ms is not None and request.sent < self.started_ms

    @staticmethod
    def _measuring() -> Plan[int | None]:
        (info,) = yield (("INFO", "server"),)
        now = yield NOW
        text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
        for line in text.splitlines():
            if line.startswith("uptime_in_seconds:"):
                return int(now - (int(line.split(":", 1)[1]) + 1) * 1000)
        return None


class Prefetched(NamedTuple):
    """What the round trip that popped requests read for their checks: one ``MGET``.

    The pop and the read happened between :attr:`asked` and :attr:`answered`
    (:func:`~redisrpc.core.clock.local_seconds`, the clock the Redis clock
    estimate follows).
    """

    lock: Any
    """The lock key's value (None: free), or the error reply Redis gave."""
    cancels: Any
    """The cancellation counter's value (None: never bumped), or the error reply."""
    asked: float
    """When the round trip was sent."""
    answered: float
    """When its replies had all come."""


class Cancellations:
    """Keeps a server from starting a request whose caller already gave up.

    A caller that gives up on a request a server already took sets the
    request's cancel mark and bumps the service's counter
    (:func:`~redisrpc.core.protocol.cancels_key`). A server reads the counter
    in the round trip that pops its requests; a mark for one of them can only
    be set after that pop, so while the counter still has that value, none
    is marked and nothing more is asked. Before starting a request, a reading
    that may be older than :data:`RECHECK_AFTER` (a long previous call, a
    paused process) is refreshed first; only if the counter moved is the
    request's own mark looked at (and removed).
    """

    def __init__(self, transport: Transport, service: str) -> None:
        self.transport = transport
        self.service = service
        self.key = cancels_key(service)

    def cancelled(self, request: Request, at_pop: Prefetched, *, stale: bool | None = None) -> bool:
        """Whether ``request``'s caller gave up.

        ``at_pop`` holds the counter's value read in the round trip that
        popped the request, and when that round trip was sent and answered;
        ``stale`` is :meth:`stale`'s verdict on it, when the caller has it.
        """
        if request.id is None:
            return False
        counter = at_pop.cancels
        try:
            if self.stale(request, at_pop) if stale is None else stale:
                # A long call before it, or a paused process: ask again now.
                (counter_now,) = self.transport.execute(("GET", self.key))
            else:
                counter_now = counter
            if counter_now == counter:
                return False
            (deleted,) = self.transport.execute(("DEL", cancel_key(self.service, request.id)))
        except RedisRPCError as exc:
            # Unknown: not starting would lose a call nobody gave up on; the deadline still holds.
            log.warning("%s: cannot check for cancellation (%s)", self.service, exc)
            return False
        return bool(deleted)

    def stale(self, request: Request, at_pop: Prefetched) -> bool:
        """Whether what ``request``'s pop read may be older than :data:`RECHECK_AFTER`.

        The lock too may have been taken since (during a long call before it):
        the server reads again what it needs then.
        """
        # Most requests are taken just after their pop: no other bound to look at then.
        if (local_seconds() - at_pop.asked) * 1000.0 <= _RECHECK_AFTER_MS:
            return False
        return self._age_ms(request, at_pop) > _RECHECK_AFTER_MS

    def _age_ms(self, request: Request, at_pop: Prefetched) -> float:
        """How old the counter reading of ``request``'s pop is, in ms: never less than it is.

        The pop came after its round trip was sent, which bounds the age; when
        that is over the limit (the pop waited for a request to come, or the
        process was paused, a reply in its socket), the request's ``sent``
        (protocol 3, the Redis clock) bounds it too, since the pop came after
        it; but no bound may go below the time since the replies came (a
        ``sent`` in the future).
        """
        now = local_seconds()
        age = (now - at_pop.asked) * 1000.0
        if age <= _RECHECK_AFTER_MS or request.sent is None:
            return age
        since_sent = self.transport.now_ms() - request.sent
        return max((now - at_pop.answered) * 1000.0, min(age, since_sent))
