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

Each loop turn is one round trip: the replies so far, the wait for the next
requests (BLMPOP, which takes more queued requests when calls are fast: at
most ~5 ms of work, so servers sharing a queue still share the load; before
Redis 7, BLPOP then LPOP with a count), and the per-call checks' reads. Every
request taken is run or answered. For thread-safe objects, ``workers=N`` runs
up to N calls at once.

Replies are pushed unacknowledged (``CLIENT REPLY SKIP``, where Redis allows
it), so Redis writes nothing back before the next wait; about once a second
a turn's replies are acknowledged instead, and a reply Redis refused is
logged.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from types import FrameType, TracebackType
from typing import Any

import redis

from ..client.lock import lock_key
from ..client.lock import refusal as lock_refusal
from ..core.clock import local_seconds
from ..core.keys import queue_name, reply_queue_prefix
from ..core.protocol import (
    DEFAULT_MAX_BLOB_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    DESCRIBE,
    OWN_ERROR_PREFIX,
    PING,
    ErrorInfo,
    Framed,
    Request,
    blob_header,
    check_serializer,
)
from ..core.registry import DEFAULT_HEARTBEAT, DEFAULT_PREFIX, serving_types, type_name
from ..core.transport import PackedCommand, Transport
from ..errors import (
    CommandError,
    RedisConnectionError,
    RedisRPCError,
    ServiceConflictError,
    TransportError,
)
from ..server.registration import Registration
from .calls import CallContext, Cancellations, Prefetched, RedisStart, Watcher
from .dispatch import SKIP, Dispatcher
from .exposure import Member
from .paths import is_path
from .poller import Poller

__all__ = ["Server"]

log = logging.getLogger("redisrpc.server")

_BATCH_MAX = 32  # the most queued requests one server takes at once
_BATCH_BUDGET_S = 0.005  # ...and at most about this much work, so others can share the load
_STOP_RETRIES = 5  # when stopping, attempts to deliver the last replies (about 3 s)
_REPLY_CHECK_S = 1.0  # replies go unacknowledged, except about once a second (see _quiet)
_RECOVERED_S = 30.0  # serving this long without failing resets the back-off (see _serve)


def _pop_unsupported(error: TransportError) -> bool:
    """Whether an error reply to BLMPOP says Redis lacks the command, or an ACL forbids it.

    Redis before 7.0 (and a server that renamed it) answers "unknown command";
    an ACL that allows BLPOP but not BLMPOP answers NOPERM. Other errors (a
    service key that is not a list, a loading or busy Redis) are BLPOP's too.
    The words are read, not redis-py's exception classes: those stay behind
    the transport.
    """
    cause = error.__cause__
    text = str(cause if cause is not None else error).lower()
    return "unknown command" in text or "no permissions" in text


def _reply_commands(pending: list[tuple[str, bytes]], ttl_ms: int) -> list[tuple[Any, ...]]:
    """RPUSH the replies and give each list an expiry (an unread reply must not stay forever).

    Replies bound for one list (a multiplexing client's) share one RPUSH.
    """
    if len(pending) == 1:
        queue, data = pending[0]
        if type(data) is bytes:  # one reply without blobs (a sequential caller's turn)
            return [("RPUSH", queue, data), ("PEXPIRE", queue, ttl_ms)]
    by_queue: dict[str, list[bytes]] = {}
    for queue, data in pending:
        items = by_queue.setdefault(queue, [])
        items.append(data)
        if isinstance(data, Framed):
            items.extend(data.blobs)  # the reply's blobs follow it, in the same RPUSH
    commands: list[tuple[Any, ...]] = []
    for queue, items in by_queue.items():
        commands.append(("RPUSH", queue, *items))
        commands.append(("PEXPIRE", queue, ttl_ms))
    return commands


def _detach(data: bytes) -> None:
    """Give a reply not sent yet blobs of its own, before another call of its batch runs.

    A reply's blobs are views of the arrays and buffers the call returned
    (no copy, see :mod:`redisrpc.core.protocol`), and a batch's replies are
    pushed after all its calls ran: a later call that refills the buffer an
    earlier one returned (a camera's frame) would change that earlier reply.
    """
    if isinstance(data, Framed):
        data.blobs = [bytes(blob) for blob in data.blobs]


class Server:
    """Serve ``obj`` on the Redis list ``name``.

    Args:
        redis: a redis-py client, a URL, None for ``REDIS_URL``, or a transport.
        name: the service name, which is also the request list's key.
        obj: any object; its public methods and properties become callable.
        expose: an explicit allow-list of names (otherwise see
            :func:`redisrpc.expose` and :mod:`redisrpc.server.exposure`).
        readonly: serve only methods marked ``@expose(readonly=True)``, and
            refuse every property or attribute write.
        deny_tags: hide members tagged with any of these (e.g. ``{"admin"}``).
        max_message_size: requests larger than this many bytes are refused.
        max_blob_size: the most bytes of raw blobs (bytes and arrays of protocol 4
            callers) one request or reply may carry (default 1 GiB).
        reply_ttl: seconds an unread reply list lives before Redis drops it.
        poll_interval: how often, in seconds, an idle server checks for stop().
        handle_signals: when run() is in the main thread, SIGINT and SIGTERM
            stop the server after the current call (a second SIGINT interrupts).
        workers: how many calls may run at once (default 1, one at a time).
            Only for objects that are safe to use from several threads.
        read_during_calls: members (names or paths, e.g. ``"position"``) whose
            reads are safe while a call runs: a watched stage position then
            moves during ``move_to()``. Others are read between calls
            (see :func:`redisrpc.watch`).
        register: list this instance in the live-server registry while it runs
            (see :mod:`redisrpc.core.registry`), so ``redisrpc list`` shows it and
            clients fail fast once every instance is gone.
        registry_prefix: the registry's key prefix.
        heartbeat: seconds between registry heartbeats; an instance that
            missed five is no longer listed.
        share: join the service even when its live instances serve another
            class. Without it, :meth:`run` and :meth:`start` raise
            :class:`~redisrpc.ServiceConflictError` then: calls would reach
            either object at random.
        transport: ``"json"``, the only wire format; accepted for compatibility
            with the original RedisRPC constructor (``"pickle"`` is refused).
    """

    def __init__(
        self,
        redis: Transport | redis.Redis | str | None,
        name: str,
        obj: Any,
        *,
        expose: Collection[str] | None = None,
        readonly: bool = False,
        deny_tags: Collection[str] = (),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
        reply_ttl: float = 60.0,
        poll_interval: float = 1.0,
        handle_signals: bool = True,
        workers: int = 1,
        read_during_calls: Collection[str] = (),
        register: bool = True,
        registry_prefix: str = DEFAULT_PREFIX,
        heartbeat: float = DEFAULT_HEARTBEAT,
        share: bool = False,
        transport: str = "json",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a server needs a non-empty service name")
        check_serializer(transport)
        self.transport = Transport.of(redis)
        # The request list's key, which names every key of the service ({name} on a cluster).
        name = queue_name(name, cluster=self.transport.cluster)
        self.name = name
        self.obj = obj
        self.max_message_size = max_message_size
        self.max_blob_size = max_blob_size
        self.reply_ttl_ms = max(1, int(reply_ttl * 1000))
        self.poll_interval = poll_interval
        self.handle_signals = handle_signals
        if not (isinstance(workers, int) and workers >= 1):
            raise ValueError("workers must be a positive integer")
        self.workers = workers
        self.read_during_calls = frozenset(read_during_calls)
        self._batch_max = _BATCH_MAX
        self._pops: dict[tuple[bool, int, float], tuple[tuple[Any, ...], ...]] = {}  # _pop_commands
        # One blocking pop takes a batch (BLMPOP, Redis 7); False after Redis refused it.
        self._blmpop = True
        # Recent average seconds per call, for batch sizes; unknown at first, so one at a time.
        self._call_time = _BATCH_BUDGET_S
        self._batch = 1  # how many queued requests to take at once (see _took_time)
        self._check_replies_at = 0.0  # when the replies are next acknowledged (see _quiet)
        self.ident = f"{name}@{socket.gethostname()}:{os.getpid()}"
        self._lock_key = lock_key(name)
        self.watcher = Watcher(self.transport, name)
        # Held while a call runs, so watched values are read between calls (server.poller).
        self._busy = threading.Lock()
        self.poller = Poller(
            self.transport, name, self.ident, self._read_watched, self._wait_for_calls
        )
        self.cancellations = Cancellations(self.transport, name)
        # What every pop sends along (see _took): the lock and the cancellation counter.
        self._prefetch: tuple[tuple[Any, ...], ...] = (
            # On a cluster a multi-key command fails (TRYAGAIN) while the slot migrates.
            (("GET", self._lock_key), ("GET", self.cancellations.key))
            if self.transport.cluster
            else (("MGET", self._lock_key, self.cancellations.key),)
        )
        self.redis_start = RedisStart(self.transport)
        self.dispatcher = Dispatcher(
            obj,
            name,
            ident=self.ident,
            expose=expose,
            readonly=readonly,
            deny_tags=deny_tags,
            max_message_size=max_message_size,
            contexts=self._call_context,
            max_blob_size=max_blob_size,
        )
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._thread: threading.Thread | None = None
        self.registration = (
            Registration(self.transport, name, obj, prefix=registry_prefix, heartbeat=heartbeat)
            if register
            else None
        )
        self.share = share
        self._registry_prefix = registry_prefix

    def __repr__(self) -> str:
        state = "stopped" if self._stopped.is_set() else "running"
        return f"<redisrpc.Server {self.name!r} serving {type(self.obj).__qualname__} ({state})>"

    @property
    def calls(self) -> int:
        """How many calls this server has run (refused ones not counted)."""
        return self.dispatcher.calls

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "server": self.ident,
            "max_message_size": self.max_message_size,
            "max_blob_size": self.max_blob_size,
            **(self.registration.describe_extra() if self.registration else {}),
        }

    def describe(self) -> dict[str, Any]:
        """Return the ``__describe__`` payload (rescanning the object first)."""
        return self.dispatcher.describe(self._describe_extra())

    def handle(
        self, raw: bytes, prefetched: Prefetched | None = None
    ) -> tuple[str | None, bytes | None]:
        """Process one raw request; return (reply queue, reply bytes).

        ``prefetched`` is what the round trip that popped ``raw`` read for
        its checks (the serving loop passes it; without it the lock is read
        now, and no cancellation is looked for). Never raises: see
        :meth:`redisrpc.server.dispatch.Dispatcher.handle`.
        """
        return self.dispatcher.handle(
            self._with_blobs(raw),
            now_ms=self.transport.now_ms,
            check=functools.partial(self._check, prefetched),  # no Python frame of its own
            describe_extra=self._describe_extra,
        )

    def _with_blobs(self, raw: bytes) -> bytes:
        """The request with its blobs (protocol 4), taken from its blob list in one round trip.

        The list must be under the service's reply prefix (as the reply queue
        must). Blobs that are missing (expired, or over the limit) leave the
        request short of them: it is then answered with a ProtocolError.
        """
        if raw.startswith(b'{"f'):
            return raw  # no blob header ({"blobs":N first): every plain request of redisrpc's
        count, key = blob_header(raw)
        if not count or key is None or not key.startswith(reply_queue_prefix(self.name)):
            return raw
        try:
            (blobs,) = self.transport.execute(("LPOP", key, count))
        except RedisRPCError as exc:
            log.warning("%s: could not take a request's blobs from %r: %s", self.name, key, exc)
            blobs = []
        blobs = blobs or []
        if sum(len(blob) for blob in blobs) > self.max_blob_size:
            log.warning("%s: a request's blobs exceed max_blob_size; refused", self.name)
            blobs = []
        return Framed(raw, blobs)

    def _check(self, prefetched: Prefetched | None, request: Request) -> ErrorInfo | None:
        """Before a call starts: not a replay, its caller has not given up, the lock lets it run."""
        if self.redis_start.replayed(request):
            log.warning(
                "%s: not running %s(): sent before this Redis started (restored from a"
                " snapshot); no reply",
                self.name,
                request.name[:80],
            )
            return SKIP
        if prefetched is not None:
            stale = self.cancellations.stale(request, prefetched)  # one clock reading for both
            if self.cancellations.cancelled(request, prefetched, stale=stale):
                return SKIP
            if stale:
                # Someone may have taken (or released) the lock since the pop: read it now.
                return self._lock_refusal(request)
            if prefetched.lock is None and request.lock is None:
                return None  # unlocked, and no lock claimed: lock_refusal's verdict, directly
        return self._lock_refusal(request, prefetched)

    def _call_context(self, request: Request, member: Member | None) -> CallContext:
        """The context a call runs in: progress, cancellation and streams (server.calls)."""
        owner: Any = self.obj
        if member is None and is_path(request.name):
            # A child's or a handle's method (``bench.axis.move``): the hook is its object's.
            try:
                owner, member = self.dispatcher.resolver.locate(self.dispatcher.root, request.name)
            except Exception:
                member = None  # the call itself reports what is wrong with the path
        hook = None
        if member is not None and member.on_cancel:
            hook = getattr(owner, member.on_cancel, None)
        return CallContext(
            self.transport,
            request,
            self.name,
            self.ident,
            self.reply_ttl_ms,
            hook if callable(hook) else None,
            self.watcher,
            self.max_message_size,
            self.max_blob_size,
        )

    def _lock_refusal(
        self, request: Request, prefetched: Prefetched | None = None
    ) -> ErrorInfo | None:
        """Check the advisory lock (see redisrpc.client.lock); None means run the call.

        The serving loop reads the lock in the round trip that took the
        request (``prefetched``); otherwise GET it now.
        """
        if request.name in (PING, DESCRIBE):
            return None  # others may still look at a locked server
        try:
            if prefetched is not None:
                stored = prefetched.lock
                if isinstance(stored, TransportError):  # its MGET got an error reply
                    raise stored
            else:
                (stored,) = self.transport.execute(("GET", self._lock_key))
        except RedisRPCError as exc:
            # Unknown lock state: not running the call is the at-most-once choice.
            return ErrorInfo(
                OWN_ERROR_PREFIX + "LockedError",
                f"cannot check the lock ({exc}); not executed",
                server=self.ident,
            )
        return lock_refusal(request.lock, stored, server=self.ident)

    # -- the loop -----------------------------------------------------------

    def _check_conflict(self) -> None:
        """Raise ServiceConflictError if live instances of this name serve another class.

        Unless ``share``. Redis out of reach is not a conflict: the loop then
        waits for it as it always does.
        """
        if self.share:
            return
        prefix = (
            self.registration.prefix if self.registration is not None else self._registry_prefix
        )
        try:
            serving = self.transport.run(serving_types(self.name, prefix=prefix))
        except RedisRPCError as exc:
            log.warning("%s: cannot check who else serves it (%s)", self.name, exc)
            return
        ours = type_name(self.obj)
        bare = type(self.obj).__qualname__
        own = self.registration.id if self.registration is not None else None
        others = sorted(
            {served for instance, served in serving.items() if instance != own}
            - {ours, bare}  # ``bare``: an instance of an older version, same class name
        )
        if others:
            raise ServiceConflictError(
                f"service {self.name!r} is already served by {len(serving)} live instance(s) of"
                f" {', '.join(others)}, not {ours}: calls would reach either at random. Serve"
                " under another name, or pass share=True to share it deliberately.",
                serving=tuple(others),
            )

    def run(self) -> None:
        """Serve until stop(), SIGINT or SIGTERM; the current call always completes.

        Raises :class:`~redisrpc.ServiceConflictError` first when live
        instances of this name serve another class (see ``share``).
        """
        self._check_conflict()
        self._stop.clear()
        self._stopped.clear()
        restore = self._install_signal_handlers()
        log.info(
            "%s: serving %s on %s", self.ident, type(self.obj).__qualname__, self.transport.location
        )
        self.watcher.start()
        self.poller.start()
        if self.registration is not None:
            self.registration.start()
        try:
            self._serve()
        finally:
            try:
                self.watcher.stop()
                self.poller.stop()
                if self.registration is not None:
                    self.registration.stop()
            finally:
                for sig, handler in restore.items():
                    signal.signal(sig, handler)
                self._stopped.set()
            log.info("%s: stopped after %d calls", self.ident, self.calls)

    def _serve(self) -> None:
        """Run the serving loop until stop(); no error it raises ends the server.

        Whatever is stored in Redis (a string on the queue key, a lock value
        no parser can read) must not stop every server of the service for
        good: the failure is logged, the server backs off (0.1 s doubling up
        to 5 s) and serves again, so it recovers by itself once the data is sane.
        """
        failures = 0
        last_failure = 0.0
        while True:
            try:
                self._loop()
                return
            except Exception as exc:
                now = time.monotonic()
                failures = 1 if now - last_failure > _RECOVERED_S else failures + 1
                last_failure = now
                delay = min(5.0, 0.1 * 2 ** (failures - 1))
                log.error(
                    "%s: serving failed: %s; serving again in %.1f s",
                    self.ident,
                    exc,
                    delay,
                    exc_info=not isinstance(exc, RedisRPCError),  # our own errors say enough
                )
                if self._stop.wait(delay):
                    return

    def _loop(self) -> None:
        if self.workers > 1:
            self._loop_workers()
            return
        pending: list[tuple[str, bytes]] = []  # replies not sent yet
        popped: list[bytes] = []  # requests taken from the queue: each is run or answered
        prefetched: Prefetched | None = None
        failures = 0
        busy = self._busy
        while True:
            handled = len(popped)
            for raw in popped:
                if pending:
                    _detach(pending[-1][1])  # the next call may change what it shows
                with busy:  # the poller reads watched members between calls
                    queue, data = self.handle(raw, prefetched)
                if queue is not None and data is not None:
                    pending.append((queue, data))
            popped = []
            stopping = self._stop.is_set()
            if stopping and not pending:
                return
            # The replies and the wait for the next requests share one round trip.
            commands = _reply_commands(pending, self.reply_ttl_ms)
            extra = () if stopping else self._pop_commands(self._batch)
            asked = local_seconds()
            if handled and prefetched is not None:
                # Their average time sizes the next batch: the clock readings of the
                # round trips around them serve, with no reading of their own.
                self._took_time(handled, asked - prefetched.answered)
            quiet = 0 if stopping else self._quiet(commands, asked)
            try:
                results = self.transport.execute(*commands, *extra, quiet=quiet)
            except CommandError as exc:
                results = exc.replies  # a reply or a pop refused: handled one by one below
                self._log_reply_failures(commands, results)
            except RedisConnectionError as exc:
                if exc.sent:
                    # Written in full, and the wait after them failed: Redis ran the
                    # replies before it blocked. Pushing them again would duplicate them.
                    pending = []
                failures += 1
                if self._wait_after_failure(failures, exc, pending):
                    return
                continue
            failures = 0  # without a CommandError, no reply is an error
            pending = []
            if stopping:
                return
            popped, prefetched = self._took(results[len(commands) :], asked)

    def _quiet(self, commands: list[tuple[Any, ...]], now: float) -> int:
        """How many of ``commands`` (the replies) to send unacknowledged this turn.

        An acknowledgement is a reply Redis writes back before the server's
        wait: one more wakeup on every call. Failures to reply (Redis out of
        memory, an ACL that forbids the reply keys) rarely come alone, so
        checking the replies about once a second still logs them. ``now`` is
        :func:`~redisrpc.core.clock.local_seconds`, read by the caller anyway.
        """
        if not commands or now < self._check_replies_at:
            return len(commands)
        self._check_replies_at = now + _REPLY_CHECK_S
        return 0

    # -- batches and the worker pool ------------------------------------------

    def _pop_commands(self, count: int) -> tuple[tuple[Any, ...], ...]:
        """The pop of up to ``count`` requests (it blocks while none is queued), then the prefetch.

        One BLMPOP on Redis 7; before it, BLPOP and LPOP for up to count - 1
        more. The prefetch (one MGET; on a cluster a GET per key) reads what
        the checks of the requests taken need, the lock and the cancellation
        counter, so they cost no round trip of their own.
        """
        key = (self._blmpop, count, self.poll_interval)  # poll_interval may be set at any time
        made = self._pops.get(key)  # the same few every turn: made once each
        if made is not None:
            return made
        commands: list[tuple[Any, ...]]
        if self._blmpop:
            commands = [("BLMPOP", self.poll_interval, 1, self.name, "LEFT", "COUNT", count)]
        else:
            commands = [("BLPOP", self.name, self.poll_interval)]
            if count > 1:
                commands.append(("LPOP", self.name, count - 1))
        commands.extend(self._prefetch)
        made = self._pops[key] = tuple(map(PackedCommand, commands))  # packed once, too
        return made

    def _took(self, results: list[Any], asked: float) -> tuple[list[bytes], Prefetched]:
        """Unpack the replies of _pop_commands, sent at ``asked``, into (requests, prefetched)."""
        fetched = results[-1] if len(self._prefetch) == 1 else results[-2:]
        lock, cancels = (fetched, fetched) if isinstance(fetched, TransportError) else fetched
        prefetched = Prefetched(lock, cancels, asked, local_seconds())
        blocked = results[0]
        if isinstance(blocked, TransportError):
            if self._blmpop and _pop_unsupported(blocked):  # it took nothing: BLPOP next turn
                log.info(
                    "%s: Redis cannot pop a batch in one command (%s); using BLPOP and LPOP",
                    self.name,
                    blocked,
                )
                self._blmpop = False
                return [], prefetched
            raise blocked  # e.g. WRONGTYPE: the service key is not a list
        if self._blmpop:  # None, or [key, [requests...]]
            return ([] if blocked is None else blocked[1]), prefetched
        taken = [] if blocked is None else [blocked[1]]
        if len(results) > 1 + len(self._prefetch):
            more = results[1]
            if isinstance(more, TransportError):  # Redis before 6.2 has no LPOP count
                log.info(
                    "%s: Redis cannot pop in batches (%s); taking one at a time", self.name, more
                )
                self._batch_max = self._batch = 1
            elif more:
                taken.extend(more)
        return taken, prefetched

    def _timed_handle(
        self, raw: bytes, prefetched: Prefetched | None
    ) -> tuple[str | None, bytes | None]:
        # Only the worker pool's calls come here: the object is safe to use from several
        # threads, so the poller too reads at will (no busy lock, as one worker holds).
        began = local_seconds()
        result = self.handle(raw, prefetched)
        self._took_time(1, local_seconds() - began)
        return result

    def _took_time(self, calls: int, seconds: float) -> None:
        """``calls`` calls took ``seconds``: an average over recent calls sizes the next batch.

        A batch (:attr:`_batch`) is as many queued requests as fit the batch
        budget. Requests held in a batch wait for those before them, and no
        other server can take them, so slow calls are taken one at a time.
        """
        weight = 0.2 if calls == 1 else 1.0 - 0.8**calls  # as if averaged in one at a time
        self._call_time += (seconds / calls - self._call_time) * weight
        fit = int(_BATCH_BUDGET_S / max(self._call_time, 1e-6))
        self._batch = max(1, min(self._batch_max, fit))

    def _read_watched(self, target: str) -> bytes | None:
        """Read a watched member for the poller; None while a call runs (one worker)."""
        if self.workers > 1 or target in self.read_during_calls:
            return self.dispatcher.read(target)
        if not self._busy.acquire(blocking=False):
            return None
        try:
            return self.dispatcher.read(target)
        finally:
            self._busy.release()

    def _wait_for_calls(self, seconds: float) -> None:
        """Wait up to ``seconds`` until no call runs (the poller's reads wait for that)."""
        if self._busy.acquire(timeout=seconds):
            self._busy.release()

    def _wait_after_failure(
        self, failures: int, exc: BaseException, pending: list[tuple[str, bytes]]
    ) -> bool:
        """Back off after a Redis failure; True means give up (stopping)."""
        self.redis_start.forget()  # Redis may come back restarted, from a snapshot
        delay = min(5.0, 0.1 * 2 ** (failures - 1))
        if self._stop.is_set():
            if not pending or failures >= _STOP_RETRIES:
                if pending:
                    count = len(pending)
                    log.warning("%s: stopping; %d replies not sent: %s", self.name, count, exc)
                return True
            time.sleep(delay)
            return False
        log.warning("%s: %s; retrying in %.1f s", self.name, exc, delay)
        self._stop.wait(delay)
        return False

    def _log_reply_failures(self, commands: list[tuple[Any, ...]], results: list[Any]) -> None:
        for command, result in zip(commands, results, strict=False):
            if isinstance(result, TransportError):
                log.warning("%s: could not reply on %r: %s", self.name, command[1], result)

    def _loop_workers(self) -> None:
        """Serve up to ``workers`` calls at once; each worker sends its own reply."""
        free = threading.Semaphore(self.workers)
        failures = 0
        with ThreadPoolExecutor(self.workers, thread_name_prefix=f"redisrpc-{self.name}") as pool:
            while not self._stop.is_set():
                if not free.acquire(timeout=self.poll_interval):
                    continue
                slots = 1
                while slots < min(self.workers, self._batch) and free.acquire(False):
                    slots += 1
                try:
                    asked = local_seconds()
                    try:
                        results = self.transport.execute(*self._pop_commands(slots))
                    except CommandError as exc:
                        results = exc.replies  # _took raises or copes, as in _loop
                    popped, prefetched = self._took(results, asked)
                except RedisConnectionError as exc:
                    for _ in range(slots):
                        free.release()
                    failures += 1
                    self._wait_after_failure(failures, exc, [])
                    continue
                except BaseException:
                    for _ in range(slots):
                        free.release()
                    raise
                failures = 0
                for _ in range(slots - len(popped)):
                    free.release()
                for raw in popped:
                    pool.submit(self._work, raw, prefetched, free)

    def _work(self, raw: bytes, prefetched: Prefetched, free: threading.Semaphore) -> None:
        try:
            queue, data = self._timed_handle(raw, prefetched)
            pending = [] if queue is None or data is None else [(queue, data)]
            failures = 0
            while pending:
                try:
                    commands = _reply_commands(pending, self.reply_ttl_ms)
                    try:
                        results = self.transport.execute(
                            *commands, quiet=self._quiet(commands, local_seconds())
                        )
                    except CommandError as exc:
                        results = exc.replies
                    self._log_reply_failures(commands, results)
                    break
                except RedisConnectionError as exc:
                    if exc.sent:
                        break  # written in full: Redis ran the push (see _loop)
                    failures += 1
                    if self._wait_after_failure(failures, exc, pending):
                        break
        except Exception:
            log.exception("%s: a worker failed", self.name)
        finally:
            free.release()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self._stop.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt
            log.info(
                "%s: %s received, stopping after the current call",
                self.name,
                signal.Signals(signum).name,
            )
            self._stop.set()

        restore: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            restore[sig] = signal.getsignal(sig)
            signal.signal(sig, on_signal)
        return restore

    def start(self, *, ready_timeout: float = 5.0) -> Server:
        """Serve in a daemon thread; stop() ends it.

        Returns once the instance is in the registry (or its first heartbeat
        failed, or ``ready_timeout`` passed), so ``discover()`` right after
        sees it. Raises :class:`~redisrpc.ServiceConflictError` when live
        instances of this name serve another class (see ``share``).
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"server {self.name!r} is already running")
        self._check_conflict()  # here, so the caller gets the error (run() checks again)
        self._stopped.clear()
        self._stop.clear()
        if self.registration is not None:
            self.registration.first_beat.clear()
        self._thread = threading.Thread(target=self.run, name=f"redisrpc-{self.name}", daemon=True)
        self._thread.start()
        if self.registration is not None:
            self.registration.first_beat.wait(ready_timeout)
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
