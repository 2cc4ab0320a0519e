"""The one boundary between redisrpc and redis-py.

Every Redis command redisrpc sends goes through a :class:`Transport`: it owns
a connection pool configured for RPC (no automatic retries, so a request is
never pushed twice; bounded socket timeouts, so nothing hangs), estimates the
Redis server's clock for deadlines (:mod:`redisrpc.core.clock`), and
translates redis-py exceptions into :mod:`redisrpc.errors` inside
:meth:`Transport.execute`, so nobody else ever sees ``redis.exceptions``.

Each exchange waits for Redis as long as its own commands may block, plus
:data:`BLOCK_MARGIN`: a ``BLPOP`` of 1 s gives up on a stalled Redis after
about 2 s, and one of 12 s does not fail at the 10 s socket timeout. Other
exchanges wait ``socket_timeout``.

Logic that both the sync and the asyncio clients need (the liveness check, the
advisory lock) is written once as a :data:`Plan`, a generator of steps that
:meth:`Transport.run` and :meth:`AsyncTransport.run` carry out: only the I/O
differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.exceptions as rexc
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from ..errors import CommandError, RedisConnectionError, RedisRPCError, TransportError
from .clock import RedisClock
from .plan import NOW, Plan, drive, drive_async

__all__ = [
    "BLOCK_MARGIN",
    "DEFAULT_URL",
    "RESCUE_TIMEOUT",
    "AsyncTransport",
    "Transport",
    "blocking_seconds",
    "pack_commands",
    "resolve_url",
]

DEFAULT_URL = "redis://localhost:6379/0"

# Connection settings that belong to one pool instance and must not be copied.
_POOL_PRIVATE_KWARGS = frozenset({"maint_notifications_pool_handler", "retry", "retry_on_error"})

RESCUE_TIMEOUT = 1.0
"""Seconds :meth:`Transport.rescue` waits to connect or for a reply (the path after a failure)."""

T = TypeVar("T")


def _arg_bytes(arg: Any) -> bytes:
    """One command argument as Redis sees it (redis-py's rules: str as UTF-8, numbers as repr)."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return repr(arg).encode()
    raise TypeError(f"a Redis command argument must be str, bytes, int or float, not {type(arg)}")


def _pack_python(command: Sequence[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = _arg_bytes(arg)
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


try:  # the "fast" extra: hiredis packs a command in C
    from hiredis import pack_command as _pack_hiredis
except ImportError:  # pragma: no cover - exercised where hiredis is absent
    _pack = _pack_python
else:

    def _pack(command: Sequence[Any]) -> bytes:
        packed: bytes = _pack_hiredis(tuple(command))
        return packed


def pack_commands(commands: Sequence[Sequence[Any]], *, quiet: int = 0) -> bytes:
    """Encode ``commands`` as one RESP write; the first ``quiet`` ones will get no reply.

    A quiet command is preceded by ``CLIENT REPLY SKIP``: Redis runs it and
    sends nothing back, so it adds no reply, and no wakeup, to the round trip.
    """
    return b"".join(
        _SKIP + _pack(command) if i < quiet else _pack(command)
        for i, command in enumerate(commands)
    )


_SKIP = _pack_python(("CLIENT", "REPLY", "SKIP"))


BLOCK_MARGIN = 1.0
"""Seconds an exchange with blocking commands waits beyond their blocking time."""

_FOREVER = 10.0**7  # a blocking time of 0 means "no limit"; asyncio needs a number

# Where each blocking command keeps its blocking time: (argument index, unit in seconds).
# A negative index counts from the end; None means "after the BLOCK keyword".
_BLOCKING: dict[str, tuple[int | None, float]] = {
    "BLPOP": (-1, 1.0),
    "BRPOP": (-1, 1.0),
    "BRPOPLPUSH": (-1, 1.0),
    "BLMOVE": (-1, 1.0),
    "BZPOPMIN": (-1, 1.0),
    "BZPOPMAX": (-1, 1.0),
    "BLMPOP": (1, 1.0),
    "BZMPOP": (1, 1.0),
    "WAIT": (2, 0.001),
    "WAITAOF": (3, 0.001),
    "XREAD": (None, 0.001),
    "XREADGROUP": (None, 0.001),
}


# Every usual spelling, so the hot path (non-blocking commands, spelt in capitals) is one lookup.
_BLOCKING_SPELT: dict[Any, tuple[int | None, float]] = {
    spelt: where
    for name, where in _BLOCKING.items()
    for spelt in (name, name.lower(), name.encode(), name.lower().encode())
}


def _word(arg: Any) -> str:
    return arg.upper() if isinstance(arg, str) else bytes(arg).decode("ascii", "replace").upper()


def blocking_seconds(command: Sequence[Any]) -> float | None:
    """How long ``command`` may block in Redis, in seconds (``inf``: no limit; None: never).

    Covers the list, sorted-set and stream pops (BLPOP ... XREADGROUP) and
    WAIT/WAITAOF. A malformed blocking time is left to Redis to refuse (0).
    """
    name = command[0] if command else None
    where = _BLOCKING_SPELT.get(name)
    if where is None:
        if not isinstance(name, (str, bytes)) or name.isupper() or name.islower():
            return None
        where = _BLOCKING.get(_word(name))  # a mixed-case spelling
        if where is None:
            return None
    index, unit = where
    if index is None:  # XREAD[GROUP] ... [BLOCK ms] ... STREAMS ...
        words = [_word(a) if isinstance(a, (str, bytes)) else "" for a in command]
        if "BLOCK" not in words:
            return None
        index = words.index("BLOCK") + 1
    try:
        arg = command[index]
        value = float(arg if isinstance(arg, (int, float)) else _arg_bytes(arg))
    except (IndexError, TypeError, ValueError):
        return 0.0
    return math.inf if value == 0 else max(0.0, value * unit)


def _read_timeout(commands: Sequence[Sequence[Any]]) -> float | None:
    """Seconds to wait for an exchange's replies, or None for the socket timeout.

    Only exchanges with blocking commands get their own: the sum of their
    blocking times (Redis runs them one after another) plus the margin.
    """
    total: float | None = None
    for command in commands:
        blocks = blocking_seconds(command)
        if blocks is not None:
            total = (total or 0.0) + blocks
    return None if total is None else total + BLOCK_MARGIN


# redis-py 8 added a per-read timeout to the sync read_response: one settimeout per
# socket read, cheaper than can_read's extra polls on the hot path.
_READ_TIMEOUT = "timeout" in inspect.signature(AbstractConnection.read_response).parameters


def _read(conn: AbstractConnection, deadline: float | None = None) -> Any:
    """One reply; an error reply is returned as its exception instance.

    With a ``deadline`` (time.monotonic()), wait for its first byte until then
    instead of for the socket timeout; the rest of a reply that has started
    arriving is read with the socket timeout.
    """
    try:
        if deadline is None:
            return conn.read_response()
        wait = max(0.0, min(deadline - time.monotonic(), _FOREVER))
        if _READ_TIMEOUT:
            return conn.read_response(timeout=wait)  # type: ignore[call-arg,unused-ignore]
        # Before redis-py 8, can_read(timeout) is the public bounded wait.
        if not conn.can_read(wait):
            raise rexc.TimeoutError("no reply within the blocking time")
        return conn.read_response()
    except rexc.ResponseError as exc:
        return exc


def _deadline(commands: Sequence[Sequence[Any]]) -> float | None:
    timeout = _read_timeout(commands)
    return None if timeout is None else time.monotonic() + timeout


def _exchange(
    conn: AbstractConnection, packed: bytes, count: int, deadline: float | None = None
) -> list[Any]:
    """Send ``packed`` (``count`` commands) and read their replies (until ``deadline``).

    On any failure the connection is dropped: a half-read socket is never reused.
    """
    _send(conn, packed)
    try:
        return [_read(conn, deadline) for _ in range(count)]
    except BaseException as exc:
        conn.disconnect()  # type: ignore[no-untyped-call]
        _mark_sent(exc)
        raise


def _exchange_quietly(
    conn: AbstractConnection,
    packed: bytes,
    count: int,
    skipped: int,
    marker: bytes,
    *,
    deadline: float | None = None,
) -> tuple[list[Any], bool]:
    """Like :func:`_exchange` for commands whose first ``skipped`` were sent with SKIP.

    ``packed`` ends with ``ECHO marker``, whose reply shows which replies came:
    Redis may stop honouring SKIP after the probe (an ACL change, a busy
    script). Returns the replies (None for skipped ones) and whether SKIP was
    honoured; a reply stream that fits neither case drops the connection.
    """
    _send(conn, packed)
    try:
        got: list[Any] = []
        for _ in range(count + skipped + 1):
            reply = _read(conn, deadline)
            if reply == marker:
                break
            got.append(reply)
        if len(got) == count - skipped:
            return [None] * skipped + got, True
        if len(got) == count + skipped:  # every SKIP refused: each quiet command answered
            return got[1 : 2 * skipped : 2] + got[2 * skipped :], False
        raise rexc.ConnectionError("Redis answered out of step with CLIENT REPLY SKIP")
    except BaseException as exc:
        conn.disconnect()  # type: ignore[no-untyped-call]
        _mark_sent(exc)
        raise


def _send(conn: AbstractConnection, packed: bytes) -> None:
    """Write one exchange; on failure the connection is dropped and nothing counts as sent."""
    try:
        conn.send_packed_command((packed,), check_health=False)  # type: ignore[no-untyped-call]
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise


_SENT = "_redisrpc_sent"


def _mark_sent(exc: BaseException) -> None:
    """Note on a failure while reading that the commands had all been written."""
    with contextlib.suppress(AttributeError):  # an exception type that takes no attributes
        setattr(exc, _SENT, True)


def resolve_url(url: str | None = None) -> str:
    """Return ``url``, else the ``REDIS_URL`` environment variable, else the local default."""
    return url or os.environ.get("REDIS_URL") or DEFAULT_URL


def _describe_location(kwargs: dict[str, Any]) -> str:
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _translation(exc: BaseException, location: str) -> RedisRPCError:
    """The redisrpc error for a redis-py (or socket) exception; raise it ``from exc``.

    A lost connection whose commands had all been written says so (``sent``).
    """
    if isinstance(exc, (rexc.AuthenticationError, rexc.NoPermissionError)):
        return TransportError(f"Redis at {location} refused access: {exc}")
    if isinstance(exc, rexc.RedisError) and not isinstance(
        exc, (rexc.ConnectionError, rexc.TimeoutError)
    ):
        return TransportError(f"Redis at {location} returned an error: {exc}")
    if isinstance(exc, rexc.TimeoutError):
        error = RedisConnectionError(f"Redis at {location} did not answer in time: {exc}")
    else:  # redis-py's ConnectionError, or a socket or TLS error it lets through
        error = RedisConnectionError(f"cannot talk to Redis at {location}: {exc}")
    error.sent = bool(getattr(exc, _SENT, False))
    return error


def _checked(replies: list[Any], location: str) -> list[Any]:
    """``replies``, or raise :class:`CommandError` when any is an error reply."""
    for reply in replies:
        if isinstance(reply, rexc.ResponseError):
            break
    else:
        return replies
    translated_replies = [
        _error_reply(reply, location) if isinstance(reply, rexc.ResponseError) else reply
        for reply in replies
    ]
    first = next(r for r in translated_replies if isinstance(r, TransportError))
    raise CommandError(str(first), replies=translated_replies)


def _error_reply(reply: rexc.ResponseError, location: str) -> RedisRPCError:
    error = _translation(reply, location)
    error.__cause__ = reply
    return error


class Transport:
    """A retry-free Redis connection pool plus a Redis clock estimate.

    Build one with :meth:`Transport.of`; servers and clients each own one.
    Everything goes through :meth:`execute` (or a plan run by :meth:`run`);
    the redis-py pool underneath is private.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        source = client.connection_pool
        kwargs = {
            k: v for k, v in source.connection_kwargs.items() if k not in _POOL_PRIVATE_KWARGS
        }
        kwargs.update(
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            # A retried RPUSH could deliver a request twice; we never retry.
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
        )
        kwargs.pop("orig_socket_timeout", None)
        self.location = _describe_location(kwargs)
        self._pool = redis.ConnectionPool(connection_class=source.connection_class, **kwargs)
        self.socket_timeout = socket_timeout
        self._clock = RedisClock()
        self._clock_lock = threading.Lock()
        # execute()'s own idle connections: a list's pop and append are atomic, which
        # makes taking one far cheaper than redis-py's pool (the hot path of every call).
        self._idle: list[AbstractConnection] = []
        self._made: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()
        self._made_lock = threading.Lock()
        self._pid = os.getpid()
        self._skips: bool | None = None  # does this Redis honour CLIENT REPLY SKIP? (probed)
        self._marker = b"redisrpc-" + os.urandom(8).hex().encode()  # ends a quiet exchange

    @classmethod
    def of(cls, target: Transport | redis.Redis | str | None, **options: Any) -> Transport:
        """Build a transport from a redis-py client, a URL, or None (``REDIS_URL``).

        A transport is returned as it is (``options`` then do not apply).
        """
        if isinstance(target, Transport):
            return target
        if target is None or isinstance(target, str):
            url = resolve_url(target)
            try:
                client = redis.Redis.from_url(url)
            except ValueError as exc:
                raise TransportError(f"invalid Redis URL {url!r}: {exc}") from exc
        else:
            client = target
        return cls(client, **options)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.disconnect()
        for conn in list(self._made):
            conn.disconnect()  # type: ignore[no-untyped-call]

    def ping(self) -> None:
        """Check that Redis answers (one PING); raises the usual redisrpc errors."""
        self.execute(("PING",))

    def execute(self, *commands: Sequence[Any], quiet: int = 0) -> list[Any]:
        """Send ``commands`` in one write and return their raw replies, in order.

        A non-transactional pipeline without redis-py's per-pipeline overhead
        (the hot path of every call). A connection is never reused half-read.

        Raises :class:`~redisrpc.RedisConnectionError` when Redis cannot be
        reached or does not answer in time (the socket timeout, or for an
        exchange with blocking commands their blocking time plus
        :data:`BLOCK_MARGIN`), :class:`~redisrpc.TransportError` when it
        refuses access, and :class:`~redisrpc.errors.CommandError` after
        reading every reply when any of them is an error reply.

        The first ``quiet`` commands are sent with ``CLIENT REPLY SKIP`` where
        Redis supports it: their replies are None, as Redis sends none. Each
        reply Redis writes costs a wakeup, which on a loaded machine costs the
        call waiting for the next reply. Without support, their real replies
        are returned; an ECHO sent last shows which replies came, so a Redis
        that stops honouring SKIP later is noticed (and probed again).
        """
        try:
            if quiet and self._skips is None:
                self._skips = self._probe_skip()
            skipped = quiet if self._skips else 0
            deadline = _deadline(commands)
            conn = self._take()
            try:
                if not skipped:
                    replies = _exchange(conn, pack_commands(commands), len(commands), deadline)
                else:
                    packed = pack_commands((*commands, ("ECHO", self._marker)), quiet=skipped)
                    replies, honoured = _exchange_quietly(
                        conn, packed, len(commands), skipped, self._marker, deadline=deadline
                    )
                    if not honoured:
                        self._skips = None  # probe again before the next quiet command
            finally:
                self._idle.append(conn)
        except (rexc.RedisError, OSError) as exc:
            raise _translation(exc, self.location) from exc
        return _checked(replies, self.location)

    def _take(self) -> AbstractConnection:
        """An idle connection that is ready to send, or a new one."""
        if self._pid != os.getpid():
            # A forked child must not share its parent's sockets; the parent keeps them.
            self._idle, self._made, self._pid = [], weakref.WeakSet(), os.getpid()
            self._made_lock = threading.Lock()  # another thread may have held it at the fork
        try:
            conn = self._idle.pop()
        except IndexError:
            with self._made_lock:
                conn = self._pool.make_connection()  # type: ignore[assignment]
                self._made.add(conn)
        try:
            conn.connect()  # type: ignore[no-untyped-call]  # a no-op while connected
            try:
                # An idle connection has nothing to read unless Redis closed or reset
                # it: reconnect now rather than send a request into a dead socket.
                if conn.can_read(0):
                    raise rexc.ConnectionError("idle connection has data")
            except (rexc.ConnectionError, rexc.TimeoutError, OSError):
                conn.disconnect()  # type: ignore[no-untyped-call]
                conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            self._idle.append(conn)
            raise
        return conn

    def _probe_skip(self) -> bool:
        """Whether Redis honours ``CLIENT REPLY SKIP`` (some proxies and ACLs refuse it).

        The probe is behavioural: of two ECHOs after a SKIP, only the second
        may answer. Anything else means quiet commands are sent with replies.
        """
        first, second = b"redisrpc-probe-1", b"redisrpc-probe-2"
        conn = self._take()
        try:
            conn.send_packed_command(  # type: ignore[no-untyped-call]
                (_SKIP + _pack_python(("ECHO", first)) + _pack_python(("ECHO", second)),),
                check_health=False,
            )
            try:
                reply = conn.read_response()
            except rexc.ResponseError:
                reply = None  # SKIP refused: both ECHOs still answer
            if reply == second:
                return True
            for _ in range(1 if reply == first else 2):
                conn.read_response()
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            self._idle.append(conn)
        return False

    def run(self, plan: Plan[T]) -> T:
        """Carry out a :data:`~redisrpc.core.plan.Plan` (blocking) and return its result."""
        return drive(plan, self.step)

    def step(self, step: Any) -> Any:
        """Carry out one generic plan step: a tuple of commands, :data:`NOW` or a pause."""
        if isinstance(step, tuple):
            return self.execute(*step)
        if step is NOW:
            return self.now_ms()
        if isinstance(step, (int, float)):
            time.sleep(step)
            return None
        raise TypeError(f"not a plan step for this transport: {step!r}")

    def rescue(self, plan: Plan[T], *, timeout: float = RESCUE_TIMEOUT) -> T:
        """Carry out a plan on a new connection that waits at most ``timeout`` seconds.

        The path after a connection failure: it must neither reuse a broken
        connection nor keep its caller waiting as long as a normal command may.
        """
        kwargs = dict(self._pool.connection_kwargs)
        kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        conn = self._pool.connection_class(**kwargs)

        def step(step: Any) -> Any:
            if not isinstance(step, tuple):
                return self.step(step)
            try:
                replies = _exchange(conn, pack_commands(step), len(step), _deadline(step))
            except (rexc.RedisError, OSError) as exc:
                raise _translation(exc, self.location) from exc
            return _checked(replies, self.location)

        try:
            return drive(plan, step)
        finally:
            conn.disconnect()

    # -- the Redis clock ----------------------------------------------------

    def now_ms(self) -> int:
        """Return an estimate of the Redis server's clock, in epoch milliseconds.

        Deadlines and heartbeats use the Redis clock, so hosts whose clocks
        disagree still agree on time, and a step of the local wall clock
        changes nothing (see :class:`~redisrpc.core.clock.RedisClock`). The
        offset is measured with ``TIME`` and refreshed every minute.
        """
        if self._clock.due:
            with self._clock_lock:
                if self._clock.due:  # another thread may have measured meanwhile
                    self.run(self._clock.measuring())
        return self._clock.now_ms()


async def _exchange_async(
    conn: redis.asyncio.connection.AbstractConnection, commands: Sequence[Sequence[Any]]
) -> list[Any]:
    """The asyncio form of :func:`_exchange` (every command answered)."""
    deadline = _deadline(commands)
    try:
        await conn.send_packed_command(pack_commands(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            # None: the socket timeout; else what is left of the exchange's wait.
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                replies.append(await conn.read_response(timeout=wait))
            except rexc.ResponseError as exc:
                replies.append(exc)
    except BaseException:
        await conn.disconnect()  # cancelled or failed mid-reply: never reuse it
        raise
    return replies


# Pool settings that are wiring of one redis-py pool, not part of where Redis is.
_ASYNC_SKIP = frozenset(
    {"event_dispatcher", "parser_class", "redis_connect_func", "himport_registry", "retry"}
)


def _async_connection_class(sync_class: type) -> type[redis.asyncio.connection.AbstractConnection]:
    aio = redis.asyncio.connection
    if issubclass(sync_class, aio.AbstractConnection):
        return sync_class
    if issubclass(sync_class, redis.UnixDomainSocketConnection):
        return aio.UnixDomainSocketConnection
    if issubclass(sync_class, redis.SSLConnection):
        return aio.SSLConnection
    return aio.Connection


def _accepted_kwargs(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and klass is not object:
            names.update(inspect.signature(init).parameters)
    return names


class AsyncTransport:
    """The asyncio counterpart of :class:`Transport`: same pool settings, no retries.

    redis.asyncio connections belong to the event loop that opened them, so
    this keeps one pool per running loop: a transport made once keeps working
    across ``asyncio.run`` calls and inside Jupyter's own loop.
    """

    _source: Any  # the pool whose settings this copies

    def __init__(
        self, target: Any = None, *, socket_timeout: float = 10.0, connect_timeout: float = 5.0
    ) -> None:
        source_pool: Any
        if isinstance(target, (Transport, AsyncTransport)):
            source_pool = target._pool if isinstance(target, Transport) else target._source
        elif isinstance(target, redis.asyncio.Redis):
            source_pool = target.connection_pool
        else:
            source_pool = Transport.of(target)._pool
        self._source = source_pool
        connection_class = _async_connection_class(source_pool.connection_class)
        accepted = _accepted_kwargs(connection_class)
        kwargs = {
            k: v
            for k, v in source_pool.connection_kwargs.items()
            if k in accepted
            and k not in _POOL_PRIVATE_KWARGS
            and k not in _ASYNC_SKIP
            and not k.startswith(("maint", "orig_", "oss_"))
        }
        kwargs.update(
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            retry_on_error=[],
        )
        self.location = _describe_location(kwargs)
        self.socket_timeout = socket_timeout
        self._connection_class = connection_class
        self._kwargs = kwargs
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, redis.asyncio.ConnectionPool
        ] = weakref.WeakKeyDictionary()
        self._clock = RedisClock()

    @classmethod
    def of(cls, target: Any, **options: Any) -> AsyncTransport:
        """Build one from a redis-py client (sync or asyncio), a URL, None, or a transport."""
        return target if isinstance(target, AsyncTransport) else cls(target, **options)

    @property
    def _pool(self) -> redis.asyncio.ConnectionPool:
        """The connection pool of the running event loop."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = redis.asyncio.ConnectionPool(
                connection_class=self._connection_class, **self._kwargs
            )
            self._pools[loop] = pool
        return pool

    async def close(self) -> None:
        """Close the running loop's pooled connections."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.disconnect()

    async def ping(self) -> None:
        """Check that Redis answers (one PING), as :meth:`Transport.ping`."""
        await self.execute(("PING",))

    async def execute(self, *commands: Sequence[Any]) -> list[Any]:
        """Like :meth:`Transport.execute`: one write, raw replies, the same errors."""
        try:
            pool = self._pool
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                replies = await _exchange_async(conn, commands)
            finally:
                await pool.release(conn)
        except (rexc.RedisError, OSError) as exc:
            raise _translation(exc, self.location) from exc
        return _checked(replies, self.location)

    async def run(self, plan: Plan[T]) -> T:
        """Carry out a plan in the running loop and return its result."""
        return await drive_async(plan, self.step)

    async def step(self, step: Any) -> Any:
        """Carry out one generic plan step, as :meth:`Transport.step`."""
        if isinstance(step, tuple):
            return await self.execute(*step)
        if step is NOW:
            return await self.now_ms()
        if isinstance(step, (int, float)):
            await asyncio.sleep(step)
            return None
        raise TypeError(f"not a plan step for this transport: {step!r}")

    async def rescue(self, plan: Plan[T], *, timeout: float = RESCUE_TIMEOUT) -> T:
        """Carry out a plan on a new, briefly waiting connection: see :meth:`Transport.rescue`."""
        kwargs = dict(self._kwargs, socket_timeout=timeout, socket_connect_timeout=timeout)
        conn = self._connection_class(**kwargs)

        async def step(step: Any) -> Any:
            if not isinstance(step, tuple):
                return await self.step(step)
            try:
                replies = await _exchange_async(conn, step)
            except (rexc.RedisError, OSError) as exc:
                raise _translation(exc, self.location) from exc
            return _checked(replies, self.location)

        try:
            return await drive_async(plan, step)
        finally:
            await conn.disconnect()

    async def now_ms(self) -> int:
        """The Redis server clock estimate, as :meth:`Transport.now_ms` (the same clock)."""
        if self._clock.due:
            await self.run(self._clock.measuring())
        return self._clock.now_ms()
