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

The boundary is five modules, the only ones that import redis-py's internals
(this one re-exports the wire and URL names it is built on; the cluster and
asyncio transports build on it, so they are imported from their own modules):

* :mod:`~redisrpc.core.transport` (here) -- :class:`Transport`: the pool,
  :meth:`~Transport.execute`, plans, the clock; and the error translation;
* :mod:`~redisrpc.core.wire` -- one exchange on one connection: command
  packing, blocking times, the direct hiredis read path and the writes;
* :mod:`~redisrpc.core.urls` -- the default URL, URLs for display, Sentinel
  and Cluster URLs;
* :mod:`~redisrpc.core.cluster` -- routing each exchange to its slot's node,
  and :class:`ClusterTransport`;
* :mod:`~redisrpc.core.aio_transport` -- :class:`AsyncTransport`, for asyncio.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.exceptions as rexc
import redis.sentinel
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from ..errors import CommandError, RedisConnectionError, RedisRPCError, TransportError
from .clock import RedisClock
from .plan import NOW, Each, Plan, drive
from .urls import (
    DEFAULT_URL,
    _client_of_url,
    _LazyCluster,
    masked_url,
    parse_cluster_url,
    parse_sentinel_url,
    resolve_url,
    url_of,
)
from .wire import (
    _SENT,
    _SKIP,
    BLOCK_MARGIN,
    PackedCommand,
    _deadline,
    _direct,
    _exchange,
    _exchange_quietly,
    _pack_python,
    _restore_socket,
    _stale,
    blocking_seconds,
    pack_commands,
)

__all__ = [
    "BLOCK_MARGIN",
    "DEFAULT_URL",
    "RESCUE_TIMEOUT",
    "PackedCommand",
    "Transport",
    "blocking_seconds",
    "masked_url",
    "pack_commands",
    "parse_cluster_url",
    "parse_sentinel_url",
    "resolve_url",
    "url_of",
]


# Connection settings that belong to one pool instance and must not be copied.
_POOL_PRIVATE_KWARGS = frozenset({"maint_notifications_pool_handler", "retry", "retry_on_error"})

RESCUE_TIMEOUT = 1.0
"""Seconds :meth:`Transport.rescue` waits to connect or for a reply (the path after a failure)."""

T = TypeVar("T")


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
    if isinstance(exc, rexc.AskError):  # redis-py drops the word MOVED or ASK from the text
        kind = "MOVED" if isinstance(exc, rexc.MovedError) else "ASK"
        return TransportError(
            f"Redis at {location} redirected a command ({kind} slot {exc.slot_id}"
            f" to {exc.host}:{exc.port})"
        )
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


def _split(replies: list[Any], exchanges: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """The flat replies of concatenated exchanges, cut back into one list per exchange."""
    out, at = [], 0
    for exchange in exchanges:
        out.append(replies[at : at + len(exchange)])
        at += len(exchange)
    return out


class Transport:
    """A retry-free Redis connection pool plus a Redis clock estimate.

    Build one with :meth:`Transport.of`; servers and clients each own one.
    Everything goes through :meth:`execute` (or a plan run by :meth:`run`);
    the redis-py pool underneath is private.

    A Sentinel-managed client (``sentinel.master_for(name)``, or a
    ``redis+sentinel://`` URL) gives a pool whose connections ask the
    sentinels for the current master whenever they (re)connect, so after a
    failover the next exchange finds the new master by itself. A cluster
    gives a :class:`ClusterTransport`.
    """

    cluster = False
    """Whether this talks to a Redis Cluster (keys then carry hash tags: :mod:`.keys`)."""

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
        self._pool: redis.ConnectionPool
        # A Sentinel master's pool: a READONLY reply means the master moved.
        self._follows_master = False
        if isinstance(source, redis.sentinel.SentinelConnectionPool):
            kwargs.pop("connection_pool", None)  # the new pool sets its own
            self.location = f"sentinel master {source.service_name!r}"
            self._follows_master = bool(source.is_master)
            self._pool = redis.sentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
                source.service_name,
                source.sentinel_manager,
                connection_class=source.connection_class,
                **kwargs,
            )
        else:
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
        self._echo = _pack_python(("ECHO", self._marker))  # packed once: sent after every one

    @classmethod
    def of(cls, target: Any, **options: Any) -> Transport:
        """Build a transport from a redis-py client, a URL, or None (``REDIS_URL``).

        URLs: ``redis://``, ``rediss://``, ``unix://`` (redis-py's forms),
        ``redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db]``
        and ``redis+cluster://[user:password@]host:port[,host:port...]``
        (``rediss+`` for TLS). Clients: ``redis.Redis``, a Sentinel-managed one
        (``Sentinel(...).master_for(name)``), or ``redis.cluster.RedisCluster``.
        A transport is returned as it is (``options`` then do not apply).
        """
        if isinstance(target, Transport):
            return target
        client: Any
        if target is None or isinstance(target, str):
            url = resolve_url(target)
            try:
                client = _client_of_url(url, connect_timeout=options.get("connect_timeout", 5.0))
            except (ValueError, IndexError) as exc:
                # Masked: an error message ends up in logs and tracebacks.
                raise TransportError(f"invalid Redis URL {masked_url(url)!r}: {exc}") from exc
        else:
            client = target
        if isinstance(client, (_LazyCluster, redis.cluster.RedisCluster)):
            # cluster.py builds on this module (a ClusterTransport is a Transport).
            from .cluster import ClusterTransport  # noqa: PLC0415 - an import cycle

            return ClusterTransport(client, **options)
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
            conn, parser = self._ready()
            try:
                if not skipped:
                    packed = pack_commands(commands)
                    replies = _exchange(conn, packed, len(commands), deadline, parser)
                else:
                    packed = pack_commands(commands, quiet=skipped)
                    packed = packed + self._echo if type(packed) is bytes else [*packed, self._echo]
                    replies, honoured = _exchange_quietly(
                        conn,
                        packed,
                        len(commands),
                        skipped,
                        self._marker,
                        deadline=deadline,
                        parser=parser,
                    )
                    if not honoured:
                        self._skips = None  # probe again before the next quiet command
                if self._follows_master and any(type(r) is rexc.ReadOnlyError for r in replies):
                    # The master was made a replica under us (redis-py's Sentinel connections
                    # see this, but not through the direct read path): drop the connection
                    # before another thread takes it, so the next one asks the sentinels.
                    conn.disconnect()  # type: ignore[no-untyped-call]
                    raise rexc.ConnectionError("it is a replica now (READONLY): the master moved")
            finally:
                self._idle.append(conn)
        except (rexc.RedisError, OSError) as exc:
            raise _translation(exc, self.location) from exc
        return _checked(replies, self.location)

    def _take(self) -> AbstractConnection:
        """An idle connection that is ready to send, or a new one."""
        return self._ready()[0]

    def _ready(self) -> tuple[AbstractConnection, Any]:
        """:meth:`_take`'s connection, with :func:`_direct`'s verdict on it as it is now.

        The verdict is taken once per exchange, after any reconnect (which
        gives the parser a new reader and socket).
        """
        # getpid, not a counter bumped by os.register_at_fork: a fork that runs no Python
        # hooks (uWSGI's prefork workers by default, a fork from C) must be noticed too.
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
            if getattr(conn, "_sock", None) is None:
                # connect() is a no-op while connected, but redis-py 8 runs even that
                # through its retry machinery (1.4 us): skipped on the hot path.
                conn.connect()  # type: ignore[no-untyped-call]
            else:
                parser = _direct(conn)
                if not _stale(conn, parser):
                    return conn, parser  # the hot path: one verdict serves the exchange
                # An idle connection has nothing to read unless Redis closed or reset
                # it: reconnect now rather than send a request into a dead socket
                # (which would make the call's outcome unknown).
                conn.disconnect()  # type: ignore[no-untyped-call]
                conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            self._idle.append(conn)
            raise
        return conn, _direct(conn)

    def _probe_skip(self) -> bool:
        """Whether Redis honours ``CLIENT REPLY SKIP`` (some proxies and ACLs refuse it).

        The probe is behavioural: of two ECHOs after a SKIP, only the second
        may answer. Anything else means quiet commands are sent with replies.
        """
        first, second = b"redisrpc-probe-1", b"redisrpc-probe-2"
        conn = self._take()
        try:
            _restore_socket(conn)  # redis-py reads this one
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

    def execute_each(self, exchanges: Sequence[Sequence[Sequence[Any]]]) -> list[list[Any]]:
        """Carry out several exchanges (each within one hash slot); their replies, per exchange.

        On a single Redis they go in one write, as one exchange.
        """
        flat = [command for exchange in exchanges for command in exchange]
        return _split(self.execute(*flat), exchanges) if flat else [[] for _ in exchanges]

    def run(self, plan: Plan[T]) -> T:
        """Carry out a :data:`~redisrpc.core.plan.Plan` (blocking) and return its result."""
        return drive(plan, self.step)

    def step(self, step: Any) -> Any:
        """Carry out one generic plan step: commands, :data:`NOW`, :class:`Each` or a pause."""
        if isinstance(step, tuple):
            return self.execute(*step)
        if isinstance(step, Each):
            return self.execute_each(step.exchanges)
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
                packed = pack_commands(step)
                replies = _exchange(conn, packed, len(step), _deadline(step), _direct(conn))
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
        now = self._clock.current_ms()
        if now is not None:
            return now
        with self._clock_lock:
            if self._clock.due:  # another thread may have measured meanwhile
                self.run(self._clock.measuring())
        return self._clock.now_ms()
