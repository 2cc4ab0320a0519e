"""The one boundary between redisrpc and redis-py.

Every Redis command redisrpc sends goes through a :class:`Transport`: it owns
a connection pool configured for RPC (no automatic retries, so a request is
never pushed twice; bounded socket timeouts, so nothing hangs), estimates the
Redis server's clock for deadlines, and translates redis-py exceptions into
:mod:`redisrpc.errors` so users never catch ``redis.exceptions``.

Logic that both the sync and the asyncio clients need (the liveness check, the
advisory lock) is written once as a :data:`Plan`, a generator of steps that
:meth:`Transport.run` and :meth:`AsyncTransport.run` carry out: only the I/O
differs.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.exceptions as rexc
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from ..errors import RedisConnectionError, RedisRPCError, TransportError
from .plan import NOW, Plan, drive, drive_async

__all__ = [
    "DEFAULT_URL",
    "RESCUE_TIMEOUT",
    "AsyncTransport",
    "Transport",
    "pack_commands",
    "resolve_url",
    "translated",
]

DEFAULT_URL = "redis://localhost:6379/0"

# Connection settings that belong to one pool instance and must not be copied.
_POOL_PRIVATE_KWARGS = frozenset({"maint_notifications_pool_handler", "retry", "retry_on_error"})

_CLOCK_REFRESH_S = 60.0
RESCUE_TIMEOUT = 1.0
"""Seconds :meth:`Transport.rescue` waits to connect or for a reply (the path after a failure)."""

T = TypeVar("T")


def _replies(replies: list[Any]) -> list[Any]:
    """The replies to a plan's step, raising the first error reply (inside translated())."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


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


def _read(conn: AbstractConnection) -> Any:
    """One reply; an error reply is returned as its exception instance."""
    try:
        return conn.read_response()
    except rexc.ResponseError as exc:
        return exc


def _exchange(conn: AbstractConnection, packed: bytes, count: int) -> list[Any]:
    """Send ``packed`` (``count`` commands) and read their replies.

    On any failure the connection is dropped: a half-read socket is never reused.
    """
    try:
        conn.send_packed_command((packed,), check_health=False)  # type: ignore[no-untyped-call]
        return [_read(conn) for _ in range(count)]
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise


def _exchange_quietly(
    conn: AbstractConnection, packed: bytes, count: int, skipped: int, marker: bytes
) -> tuple[list[Any], bool]:
    """Like :func:`_exchange` for commands whose first ``skipped`` were sent with SKIP.

    ``packed`` ends with ``ECHO marker``, whose reply shows which replies came:
    Redis may stop honouring SKIP after the probe (an ACL change, a busy
    script). Returns the replies (None for skipped ones) and whether SKIP was
    honoured; a reply stream that fits neither case drops the connection.
    """
    try:
        conn.send_packed_command((packed,), check_health=False)  # type: ignore[no-untyped-call]
        got: list[Any] = []
        for _ in range(count + skipped + 1):
            reply = _read(conn)
            if reply == marker:
                break
            got.append(reply)
        if len(got) == count - skipped:
            return [None] * skipped + got, True
        if len(got) == count + skipped:  # every SKIP refused: each quiet command answered
            return got[1 : 2 * skipped : 2] + got[2 * skipped :], False
        raise rexc.ConnectionError("Redis answered out of step with CLIENT REPLY SKIP")
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise


def resolve_url(url: str | None = None) -> str:
    """Return ``url``, else the ``REDIS_URL`` environment variable, else the local default."""
    return url or os.environ.get("REDIS_URL") or DEFAULT_URL


def _describe_location(kwargs: dict[str, Any]) -> str:
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


@contextmanager
def translated(location: str = "Redis") -> Iterator[None]:
    """Translate redis-py exceptions raised inside the block into redisrpc errors."""
    try:
        yield
    except RedisRPCError:
        raise
    except (rexc.AuthenticationError, rexc.NoPermissionError) as exc:
        raise TransportError(f"Redis at {location} refused access: {exc}") from exc
    except rexc.ConnectionError as exc:
        raise RedisConnectionError(f"cannot talk to Redis at {location}: {exc}") from exc
    except rexc.TimeoutError as exc:
        raise RedisConnectionError(f"Redis at {location} did not answer in time: {exc}") from exc
    except rexc.RedisError as exc:
        raise TransportError(f"Redis at {location} returned an error: {exc}") from exc
    except OSError as exc:  # sockets and TLS errors that redis-py lets through
        raise RedisConnectionError(f"cannot talk to Redis at {location}: {exc}") from exc


class Transport:
    """A retry-free Redis connection pool plus a Redis clock estimate.

    Build one with :meth:`Transport.of`; servers and clients each own one.
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
        self.pool = redis.ConnectionPool(connection_class=source.connection_class, **kwargs)
        self.redis = redis.Redis(connection_pool=self.pool)
        self.socket_timeout = socket_timeout
        self._offset_ms: float | None = None
        self._offset_at = 0.0
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
    def of(cls, target: redis.Redis | str | None, **options: Any) -> Transport:
        """Build a transport from a redis-py client, a URL, or None (``REDIS_URL``)."""
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

    def translated(self) -> Any:
        """A context manager that translates redis-py errors, naming this Redis."""
        return translated(self.location)

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.disconnect()
        for conn in list(self._made):
            conn.disconnect()  # type: ignore[no-untyped-call]

    def execute(self, *commands: Sequence[Any], quiet: int = 0) -> list[Any]:
        """Send ``commands`` in one write and return their raw replies, in order.

        A non-transactional pipeline without redis-py's per-pipeline overhead
        (the hot path of every call). Error replies are returned as exception
        instances; connection failures raise redis-py errors, so wrap calls in
        :meth:`translated`. A connection is never reused half-read.

        The first ``quiet`` commands are sent with ``CLIENT REPLY SKIP`` where
        Redis supports it: their replies are None, as Redis sends none. Each
        reply Redis writes costs a wakeup, which on a loaded machine costs the
        call waiting for the next reply. Without support, their real replies
        are returned; an ECHO sent last shows which replies came, so a Redis
        that stops honouring SKIP later is noticed (and probed again).
        """
        if quiet and self._skips is None:
            self._skips = self._probe_skip()
        skipped = quiet if self._skips else 0
        conn = self._take()
        try:
            if not skipped:
                return _exchange(conn, pack_commands(commands), len(commands))
            packed = pack_commands((*commands, ("ECHO", self._marker)), quiet=skipped)
            replies, honoured = _exchange_quietly(
                conn, packed, len(commands), skipped, self._marker
            )
            if not honoured:
                self._skips = None  # probe again before the next quiet command
            return replies
        finally:
            self._idle.append(conn)

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
                conn = self.pool.make_connection()  # type: ignore[assignment]
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
            with self.translated():
                return _replies(self.execute(*step))
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
        kwargs = dict(self.pool.connection_kwargs)
        kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        conn = self.pool.connection_class(**kwargs)

        def step(step: Any) -> Any:
            if not isinstance(step, tuple):
                return self.step(step)
            with self.translated():
                return _replies(_exchange(conn, pack_commands(step), len(step)))

        try:
            return drive(plan, step)
        finally:
            conn.disconnect()

    # -- the Redis clock ----------------------------------------------------

    def now_ms(self) -> int:
        """Return an estimate of the Redis server's clock, in epoch milliseconds.

        Deadlines and heartbeats use the Redis clock, so hosts whose clocks
        disagree still agree on time. The offset is measured with ``TIME``
        and refreshed every minute.
        """
        local = time.time() * 1000.0
        if self._offset_ms is None or time.monotonic() - self._offset_at > _CLOCK_REFRESH_S:
            self._measure_offset()
        assert self._offset_ms is not None
        return int(local + self._offset_ms)

    def _measure_offset(self) -> None:
        with self._clock_lock:
            samples = []
            for _ in range(3):
                before = time.time() * 1000.0
                with self.translated():
                    seconds, micros = self.redis.time()
                samples.append((before, time.time() * 1000.0, int(seconds), int(micros)))
            self._offset_ms = _best_offset(samples)
            self._offset_at = time.monotonic()


def _best_offset(samples: list[tuple[float, float, int, int]]) -> float:
    """Redis clock minus local clock (ms), from (before, after, seconds, micros) TIME samples.

    The sample with the shortest round trip wins; its midpoint is taken as the
    moment Redis read its clock.
    """
    before, after, seconds, micros = min(samples, key=lambda s: s[1] - s[0])
    return seconds * 1000.0 + micros / 1000.0 - (before + after) / 2.0


async def _exchange_async(
    conn: redis.asyncio.connection.AbstractConnection, commands: Sequence[Sequence[Any]]
) -> list[Any]:
    """The asyncio form of :func:`_exchange` (every command answered)."""
    try:
        await conn.send_packed_command(pack_commands(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
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
            source_pool = target.pool if isinstance(target, Transport) else target._source
        elif isinstance(target, redis.asyncio.Redis):
            source_pool = target.connection_pool
        else:
            source_pool = Transport.of(target).pool
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
        self._offset_ms: float | None = None
        self._offset_at = 0.0

    @classmethod
    def of(cls, target: Any, **options: Any) -> AsyncTransport:
        """Build one from a redis-py client (sync or asyncio), a URL, None, or a transport."""
        return target if isinstance(target, AsyncTransport) else cls(target, **options)

    @property
    def pool(self) -> redis.asyncio.ConnectionPool:
        """The connection pool of the running event loop."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = redis.asyncio.ConnectionPool(
                connection_class=self._connection_class, **self._kwargs
            )
            self._pools[loop] = pool
        return pool

    @property
    def redis(self) -> redis.asyncio.Redis:
        """A redis.asyncio client on this loop's pool."""
        return redis.asyncio.Redis(connection_pool=self.pool)

    def translated(self) -> Any:
        """A context manager that translates redis-py errors, naming this Redis."""
        return translated(self.location)

    async def close(self) -> None:
        """Close the running loop's pooled connections."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.disconnect()

    async def execute(self, *commands: Sequence[Any]) -> list[Any]:
        """Like :meth:`Transport.execute`: one write, raw replies, errors as instances."""
        pool = self.pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            return await _exchange_async(conn, commands)
        finally:
            await pool.release(conn)

    async def run(self, plan: Plan[T]) -> T:
        """Carry out a plan in the running loop and return its result."""
        return await drive_async(plan, self.step)

    async def step(self, step: Any) -> Any:
        """Carry out one generic plan step, as :meth:`Transport.step`."""
        if isinstance(step, tuple):
            with self.translated():
                return _replies(await self.execute(*step))
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
            with self.translated():
                return _replies(await _exchange_async(conn, step))

        try:
            return await drive_async(plan, step)
        finally:
            await conn.disconnect()

    async def now_ms(self) -> int:
        """The Redis server clock estimate, as :meth:`Transport.now_ms`."""
        if self._offset_ms is None or time.monotonic() - self._offset_at > _CLOCK_REFRESH_S:
            samples = []
            for _ in range(3):
                before = time.time() * 1000.0
                with self.translated():
                    (reply,) = await self.execute(("TIME",))
                if isinstance(reply, Exception):
                    with self.translated():
                        raise reply
                seconds, micros = reply
                samples.append((before, time.time() * 1000.0, int(seconds), int(micros)))
            self._offset_ms = _best_offset(samples)
            self._offset_at = time.monotonic()
        return int(time.time() * 1000.0 + self._offset_ms)
