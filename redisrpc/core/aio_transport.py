"""The asyncio transport: :class:`AsyncTransport`, the counterpart of the sync one.

It copies the pool settings of a sync :class:`~redisrpc.core.transport.Transport`
(or a redis-py client) into one redis.asyncio pool per running event loop,
with the same rules: no retries, waits bounded by each exchange's blocking time
(:mod:`redisrpc.core.wire`), the same error translation. A Sentinel pool gets
an asyncio Sentinel manager asking the same sentinels; on a cluster the sync
:class:`~redisrpc.core.cluster.ClusterTransport` keeps the slot map and routes,
and an :class:`AsyncTransport` per node does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import time
from collections.abc import MutableMapping, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.exceptions as rexc
import redis.sentinel
from redis.backoff import NoBackoff

from ..errors import CommandError, RedisConnectionError
from .clock import RedisClock
from .cluster import ClusterTransport, _asking, _once, _routing, exchange_slot
from .plan import NOW, Each, Plan, drive_async
from .transport import (
    _POOL_PRIVATE_KWARGS,
    RESCUE_TIMEOUT,
    Transport,
    _checked,
    _describe_location,
    _split,
    _translation,
)
from .wire import _deadline, pack_commands

__all__ = ["AsyncTransport", "ended_loops"]

T = TypeVar("T")
V = TypeVar("V")


def ended_loops(per_loop: MutableMapping[Any, V]) -> list[V]:
    """Take out of ``per_loop`` what belongs to event loops that were closed.

    Each ``asyncio.run`` (a script's, or a thread's beside Jupyter's loop) makes
    a loop. What is kept for a loop (a pool's connections, a multiplexer) holds
    the loop, so a weak key never lets go: without this, every ended loop's
    connections stayed open. Keys that are no loops are left alone.
    """
    ended = [k for k in per_loop if isinstance(k, asyncio.AbstractEventLoop) and k.is_closed()]
    return [per_loop.pop(loop) for loop in ended]


def _shut(pool: redis.asyncio.ConnectionPool) -> None:
    """Close the connections of a pool whose loop was closed (they cannot be awaited now).

    Shutting each socket down ends the connection at once, on both sides; the
    socket itself is freed with the pool.
    """
    # redis-py's own lists (this module is the boundary to it): none if they are renamed.
    kept = (getattr(pool, name, ()) for name in ("_available_connections", "_in_use_connections"))
    for conn in [conn for group in kept for conn in group]:
        writer = getattr(conn, "_writer", None)
        sock = None if writer is None else writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


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


def _async_sentinel(manager: Any) -> Any:
    """An asyncio Sentinel manager asking the same sentinels as a sync (or asyncio) one."""
    if isinstance(manager, redis.asyncio.sentinel.Sentinel):
        return manager
    addresses, settings = [], {}
    for sentinel in manager.sentinels:
        given = sentinel.connection_pool.connection_kwargs
        addresses.append((given["host"], given["port"]))
        settings = {
            k: given[k]
            for k in ("socket_timeout", "socket_connect_timeout", "username", "password")
            if given.get(k) is not None
        }
    return redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        addresses, min_other_sentinels=manager.min_other_sentinels, sentinel_kwargs=settings
    )


class AsyncTransport:
    """The asyncio counterpart of :class:`Transport`: same pool settings, no retries.

    redis.asyncio connections belong to the event loop that opened them, so
    this keeps one pool per running loop: a transport made once keeps working
    across ``asyncio.run`` calls and inside Jupyter's own loop.
    """

    _source: Any  # the pool whose settings this copies
    cluster = False
    """Whether this talks to a Redis Cluster (as :attr:`Transport.cluster`)."""

    def __init__(
        self, target: Any = None, *, socket_timeout: float = 10.0, connect_timeout: float = 5.0
    ) -> None:
        self.socket_timeout = socket_timeout
        self._clock = RedisClock()
        # A cluster: the sync transport keeps the slot map; one of these per node does the I/O.
        self._router: ClusterTransport | None = None
        self._node_transports: dict[int, AsyncTransport] = {}
        if isinstance(target, AsyncTransport) and target._router is not None:
            target = target._router
        if not isinstance(target, (Transport, AsyncTransport, redis.asyncio.Redis)):
            target = Transport.of(target)
        if isinstance(target, ClusterTransport):
            self._router, self.cluster, self.location = target, True, target.location
            return
        source_pool: Any
        if isinstance(target, (Transport, AsyncTransport)):
            source_pool = target._pool if isinstance(target, Transport) else target._source
        else:
            source_pool = target.connection_pool
        self._source = source_pool
        # Sentinel: (service name, sync manager); each event loop gets its own asyncio manager.
        self._sentinel: tuple[str, Any] | None = None
        sentinel_pools = (
            redis.sentinel.SentinelConnectionPool,
            redis.asyncio.sentinel.SentinelConnectionPool,
        )
        if isinstance(source_pool, sentinel_pools):
            self._sentinel = (source_pool.service_name, source_pool.sentinel_manager)
        connection_class = _async_connection_class(source_pool.connection_class)
        if self._sentinel is not None and not issubclass(
            connection_class, redis.asyncio.sentinel.SentinelManagedConnection
        ):
            connection_class = (
                redis.asyncio.sentinel.SentinelManagedSSLConnection
                if issubclass(connection_class, redis.asyncio.connection.SSLConnection)
                else redis.asyncio.sentinel.SentinelManagedConnection
            )
        accepted = _accepted_kwargs(connection_class)
        kwargs = {
            k: v
            for k, v in source_pool.connection_kwargs.items()
            if k in accepted
            and k not in _POOL_PRIVATE_KWARGS
            and k not in _ASYNC_SKIP
            and k != "connection_pool"
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
        if self._sentinel is not None:
            self.location = f"sentinel master {self._sentinel[0]!r}"
        self._connection_class = connection_class
        self._kwargs = kwargs
        # One pool per event loop; those of loops that ended go when a new loop comes.
        self._pools: dict[asyncio.AbstractEventLoop, redis.asyncio.ConnectionPool] = {}

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
            for ended in ended_loops(self._pools):
                _shut(ended)
            if self._sentinel is not None:
                name, manager = self._sentinel
                pool = redis.asyncio.sentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
                    name,
                    _async_sentinel(manager),
                    connection_class=self._connection_class,
                    **self._kwargs,
                )
            else:
                pool = redis.asyncio.ConnectionPool(
                    connection_class=self._connection_class, **self._kwargs
                )
            self._pools[loop] = pool
        return pool

    async def close(self) -> None:
        """Close the running loop's pooled connections."""
        for node in list(self._node_transports.values()):
            await node.close()
        if self._router is not None:
            return
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.disconnect()

    async def ping(self) -> None:
        """Check that Redis answers (one PING), as :meth:`Transport.ping`."""
        await self.execute(("PING",))

    async def execute(self, *commands: Sequence[Any]) -> list[Any]:
        """Like :meth:`Transport.execute`: one write, raw replies, the same errors."""
        if self._router is not None:
            return await self._routed(commands)
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

    async def execute_each(self, exchanges: Sequence[Sequence[Sequence[Any]]]) -> list[list[Any]]:
        """As :meth:`Transport.execute_each`: one write, or one per exchange on a cluster."""
        if self._router is not None:
            return [await self.execute(*exchange) if exchange else [] for exchange in exchanges]
        flat = [command for exchange in exchanges for command in exchange]
        return _split(await self.execute(*flat), exchanges) if flat else [[] for _ in exchanges]

    async def _node(self, router: ClusterTransport, slot: int | None) -> AsyncTransport:
        """The asyncio transport of the node owning ``slot`` (the map is read in a thread)."""
        if router._map is None or router._stale:
            await asyncio.to_thread(router._slots)
        return self._async_of(router.node_of(slot))

    def _async_of(self, node: Transport) -> AsyncTransport:
        found = self._node_transports.get(id(node))
        if found is None:
            found = AsyncTransport(
                node,
                socket_timeout=self.socket_timeout,
                connect_timeout=node._pool.connection_kwargs.get("socket_connect_timeout") or 5.0,
            )
            self._node_transports[id(node)] = found
        return found

    async def _routed(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """:meth:`ClusterTransport.execute` for asyncio: the slot's node, redirections followed."""
        router = self._router
        assert router is not None
        slot = exchange_slot(commands)
        routing = _routing(commands)
        try:
            where, asking, batch = next(routing)
            while True:
                if where is None:
                    node = await self._node(router, slot)
                else:
                    node = self._async_of(router._node_at(*where))
                    router._stale = router._stale or not asking
                try:
                    got = await node.execute(*_asking(batch) if asking else batch)
                except CommandError as exc:
                    got = exc.replies
                except RedisConnectionError:
                    router._stale = True
                    raise
                where, asking, batch = routing.send(got[1::2] if asking else got)
        except StopIteration as done:
            result: list[Any] = done.value
            return result

    async def step(self, step: Any) -> Any:
        """Carry out one generic plan step, as :meth:`Transport.step`."""
        if isinstance(step, tuple):
            return await self.execute(*step)
        if isinstance(step, Each):
            return await self.execute_each(step.exchanges)
        if step is NOW:
            return await self.now_ms()
        if isinstance(step, (int, float)):
            await asyncio.sleep(step)
            return None
        raise TypeError(f"not a plan step for this transport: {step!r}")

    async def rescue(self, plan: Plan[T], *, timeout: float = RESCUE_TIMEOUT) -> T:
        """Carry out a plan on a new, briefly waiting connection: see :meth:`Transport.rescue`."""
        if self._router is not None:
            router = self._router

            async def routed(step: Any) -> Any:
                if isinstance(step, tuple):
                    node = await self._node(router, exchange_slot(step))
                    return await node.rescue(_once(step), timeout=timeout)
                if isinstance(step, Each):
                    return [await routed(exchange) for exchange in step.exchanges]
                return await self.step(step)

            return await drive_async(plan, routed)
        # The pool's own settings: a Sentinel pool adds the link its connections ask.
        kwargs = dict(self._pool.connection_kwargs)
        kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
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
        now = self._clock.current_ms()
        if now is not None:
            return now
        await self.run(self._clock.measuring())
        return self._clock.now_ms()
