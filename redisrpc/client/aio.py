"""The asyncio client: ``await calc.add(5)``, with the same proxy as the sync client.

::

    calc = await redisrpc.AsyncClient("redis://lab:6379", "calc")   # fetches the description
    await calc.add(5)
    await calc.value                          # properties are awaited too
    await redisrpc.aio.set_property(calc, "value", 0.0)
    results = await asyncio.gather(*(calc.add(i) for i in range(100)))   # many in flight

It works in Jupyter's running event loop (top-level ``await``) and under
``asyncio.run``. Introspection is the sync client's: the proxy's class is built
by :func:`redisrpc.client.proxy.build_proxy_class` from the same description, so
``dir()``, Tab completion, ``help()``, ``?`` and :func:`inspect.signature` are
identical and never touch the network. Each method returns a coroutine.

Calls keep the sync client's guarantees: a request id, a deadline on the Redis
clock, a per-call reply list that expires, and on timeout the request is
withdrawn if no server took it (``TimeoutException(started=False)``). A
cancelled call (``asyncio.wait_for``, task cancellation) is withdrawn the same
way when no server took it yet. A call to a registered service whose instances
are all gone fails fast with :class:`~redisrpc.ServerGoneError`, as in the
sync client, and ``async with redisrpc.lock(calc): ...`` holds the advisory
lock (:mod:`redisrpc.client.lock`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from collections.abc import Generator
from typing import Any

import redis

from ..client.proxy import ProxyBase
from ..client.sync import (
    _GONE_GRACE,
    DEFAULT_TIMEOUT,
    Client,
    checking_gone,
    encode_call,
    gone,
    outcome,
    recovered,
    recovering,
    reply_value,
    timed_out,
    wait_slice,
    withdrawing,
)
from ..core.protocol import (
    DESCRIBE,
    SET_PROPERTY,
    decode_reply,
)
from ..core.registry import counting_live, liveness_prefix
from ..core.transport import AsyncTransport, Plan
from ..errors import ProtocolError, RedisConnectionError, RedisRPCError, RemoteException

__all__ = ["AsyncClient", "set_property"]

log = logging.getLogger("redisrpc.aio")


class AsyncClient(ProxyBase):
    """An asyncio proxy for the remote object served on ``name``.

    ``await AsyncClient(redis, name)`` fetches the description and returns the
    typed proxy; without the ``await`` the proxy stays undescribed (any public
    name is a plain remote call, as with ``Client(..., describe=False)``).

    Args:
        redis: a redis-py client (sync or ``redis.asyncio``), a URL, or None
            for ``REDIS_URL``; only its connection settings are used.
        name: the service name (the server's request list).
        timeout: seconds each call waits for its reply (finite; default 30).
    """

    def __init__(
        self,
        redis: redis.Redis | Any | str | None,
        name: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._rpc_setup(AsyncTransport.of(redis), name, timeout)

    def __await__(self) -> Generator[Any, None, AsyncClient]:
        return self._rpc_described().__await__()

    async def _rpc_described(self) -> AsyncClient:
        await self._rpc_refresh()
        return self

    # The sync client's description and option handling, shared as is.
    _rpc_adopt = Client._rpc_adopt
    _rpc_with = Client._rpc_with
    _rpc_lock_token = Client._rpc_lock_token
    _rpc_lock = Client._rpc_lock

    async def _rpc_refresh(self) -> dict[str, Any] | None:
        """Fetch the description again and rebuild this proxy's class from it."""
        try:
            found = await self._rpc_call(DESCRIBE, (), {})
        except RemoteException:
            found = None  # an original RedisRPC server: stay dynamic
        if found is not None and not isinstance(found, dict):
            raise ProtocolError(f"{self._rpc_name!r} answered __describe__ with {type(found)}")
        self._rpc_adopt(found)  # type: ignore[misc]
        return found

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_rpc_"):
            object.__setattr__(self, name, value)
            return
        # Assignment cannot be awaited: a silent un-sent write would be worse than an error.
        raise AttributeError(
            f"cannot assign {name!r} on an async proxy; use"
            f" `await redisrpc.aio.set_property(proxy, {name!r}, value)`"
        )

    async def _rpc_call(self, name: str, args: Any, kwargs: dict[str, Any]) -> Any:
        """Call ``name`` remotely and return its value, or raise its error."""
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        transport: AsyncTransport = self._rpc_transport
        timeout: float = self._rpc_timeout
        end = time.monotonic() + timeout
        with transport.translated():
            deadline = await transport.now_ms() + int(timeout * 1000)
        described = self._rpc_description
        if described is not None and _echoes_ids(described):
            # A protocol 2 server echoes call ids: calls can share one reply list.
            return await self._rpc_mux().call(
                self, name, args, kwargs, deadline=deadline, timeout=timeout
            )
        data, reply_queue, _ = encode_call(self, name, args, kwargs, deadline)
        try:
            with transport.translated():
                pushed, popped = await transport.execute(
                    ("RPUSH", self._rpc_name, data), ("BLPOP", reply_queue, wait_slice(end))
                )
                if isinstance(pushed, Exception):
                    raise pushed
                while popped is None:
                    if time.monotonic() >= end:
                        withdrawn = await self._rpc_withdraw(data, reply_queue)
                        raise timed_out(self, name, timeout, withdrawn)
                    await transport.run(checking_gone(self, name, data, reply_queue))
                    (popped,) = await transport.execute(("BLPOP", reply_queue, wait_slice(end)))
        except RedisConnectionError as exc:
            return await self._rpc_recover(name, data, reply_queue, exc)
        except asyncio.CancelledError:
            await asyncio.shield(self._rpc_withdraw(data, reply_queue, quiet=True))
            raise
        return outcome(self, popped)

    async def _rpc_recover(
        self, name: str, data: bytes, reply_queue: str, exc: RedisConnectionError
    ) -> Any:
        """After a lost connection: as :meth:`redisrpc.Client._rpc_recover`."""
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        transport: AsyncTransport = self._rpc_transport
        try:
            found = await transport.rescue(recovering(self._rpc_name, data, reply_queue))
        except RedisRPCError:
            found = None  # Redis is still out of reach
        return recovered(self, name, exc, found)

    def _rpc_mux(self) -> _Multiplexer:
        muxes = self.__dict__.get("_rpc_muxes")
        if muxes is None:
            muxes = weakref.WeakKeyDictionary()
            self._rpc_muxes = muxes
        loop = asyncio.get_running_loop()
        mux = muxes.get(loop)
        if mux is None:
            mux = muxes[loop] = _Multiplexer(
                self._rpc_transport, self._rpc_name, self._rpc_reply_prefix + secrets.token_hex(16)
            )
        return mux

    async def _rpc_withdraw(
        self, data: bytes, reply_queue: str | None = None, *, quiet: bool = False
    ) -> bool:
        """Remove the request if still queued: see :func:`redisrpc.client.withdrawing`."""
        transport: AsyncTransport = self._rpc_transport
        try:
            return await transport.run(withdrawing(self._rpc_name, data, reply_queue))
        except RedisRPCError:
            if quiet:
                return False
            raise


# What a call's future holds when no reply will come: its timeout passed, or its
# service is gone and the request was withdrawn (never runs) or had been taken.
_EXPIRED = object()


class _Lost:
    """A call's outcome after its connection was lost: see :func:`redisrpc.client.recovered`."""

    def __init__(self, error: RedisConnectionError, found: tuple[bool, Any] | None) -> None:
        self.error = error
        self.found = found


_GONE_WITHDRAWN = object()
_GONE_TAKEN = object()


class _Multiplexer:
    """Many calls in flight on one event loop, with one reply list and one reader.

    Requests made in the same loop iteration go out as one RPUSH; one reader
    task pops replies in batches and hands each to its call by id. Each call
    keeps its own deadline, timeout and withdrawal. While calls wait longer
    than a read slice, the reader checks about once a second that a registered
    service still has a live instance (see :func:`redisrpc.client.checking_gone`).
    """

    def __init__(self, transport: AsyncTransport, service: str, reply_queue: str) -> None:
        self.transport = transport
        self.service = service
        self.reply_queue = reply_queue
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.outbox: dict[str, bytes] = {}  # call id -> request, not sent yet
        self.pushed: dict[str, tuple[bytes, float]] = {}  # call id -> request, when pushed
        self.reader: asyncio.Task[None] | None = None
        self.prefix: str | None = None  # the registry prefix, if the service registers
        self.next_check = 0.0
        self.none_live_at: float | None = None  # when the last check found no live instance

    async def call(
        self,
        proxy: AsyncClient,
        name: str,
        args: Any,
        kwargs: dict[str, Any],
        *,
        deadline: int,
        timeout: float,
    ) -> Any:
        """Make one call: queue it, wait for its reply (or a send failure) or its timeout."""
        data, _, call_id = encode_call(
            proxy, name, args, kwargs, deadline, reply_queue=self.reply_queue
        )
        self.prefix = liveness_prefix(proxy._rpc_description)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting[call_id] = future
        if not self.outbox:
            loop.call_soon(self.flush)
        self.outbox[call_id] = data
        if self.reader is None:
            self.reader = loop.create_task(self.read())
        timer = loop.call_later(timeout, _expire, future)
        try:
            try:
                reply = await future
            except asyncio.CancelledError:
                if self.outbox.pop(call_id, None) is None:  # already sent: withdraw it
                    await asyncio.shield(proxy._rpc_withdraw(data, quiet=True))
                raise
        finally:
            timer.cancel()
            self.waiting.pop(call_id, None)
            self.pushed.pop(call_id, None)
        if reply is _EXPIRED:
            withdrawn = await proxy._rpc_withdraw(data)
            raise timed_out(proxy, name, timeout, withdrawn)
        if reply is _GONE_WITHDRAWN or reply is _GONE_TAKEN:
            raise gone(proxy, name, reply is _GONE_WITHDRAWN)
        if isinstance(reply, _Lost):
            return recovered(proxy, name, reply.error, reply.found)
        return reply_value(proxy, reply)

    def flush(self) -> None:
        """Send every queued request in one RPUSH (a task, so the loop goes on)."""
        batch, self.outbox = self.outbox, {}
        if batch:
            task = asyncio.get_running_loop().create_task(self.send(batch))
            _KEEP.add(task)
            task.add_done_callback(_KEEP.discard)

    async def send(self, batch: dict[str, bytes]) -> None:
        """Push a batch; if that fails, every call in it fails with the error."""
        try:
            with self.transport.translated():
                (pushed,) = await self.transport.execute(("RPUSH", self.service, *batch.values()))
                if isinstance(pushed, Exception):
                    raise pushed
        except RedisConnectionError as exc:
            await self.lose(batch, exc)
            return
        except RedisRPCError as exc:
            for call_id in batch:
                future = self.waiting.get(call_id)
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        now = time.monotonic()
        self.pushed.update((i, (data, now)) for i, data in batch.items() if i in self.waiting)

    async def read(self) -> None:
        """Pop replies while calls wait, and hand each to its call."""
        try:
            while self.waiting:
                with self.transport.translated():
                    blocked, more = await self.transport.execute(
                        ("BLPOP", self.reply_queue, _READ_SLICE),
                        ("LPOP", self.reply_queue, _READ_BATCH),
                    )
                for raw in ([blocked[1]] if blocked else []) + (more or []):
                    self.deliver(raw)
                if self.prefix is not None and time.monotonic() >= self.next_check:
                    await self.check_alive(self.prefix)
        except RedisConnectionError as exc:
            # Calls not sent yet never will be; the sent ones are withdrawn if still queued.
            unsent, self.outbox = self.outbox, {}
            for call_id in unsent:
                self.settle(call_id, _Lost(exc, (True, None)))
            await self.lose({i: data for i, (data, _) in self.pushed.items()}, exc)
        except Exception as exc:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(exc)
        finally:
            self.reader = None

    async def lose(self, requests: dict[str, bytes], exc: RedisConnectionError) -> None:
        """After a lost connection: one rescue for all these calls, then settle each.

        The rescue withdraws every request still queued and takes the replies
        already waiting (which settle their calls as usual); the rest end in
        RedisConnectionError, ``started=False`` where withdrawn.
        """
        found: list[int] | None
        try:
            found = await self.transport.rescue(self.withdrawing_all(list(requests.values())))
        except RedisRPCError:
            found = None  # Redis is still out of reach: each call's outcome stays unknown
        for index, call_id in enumerate(requests):
            withdrawn = found is not None and found[index] == 1
            self.settle(call_id, _Lost(exc, None if found is None else (withdrawn, None)))

    def withdrawing_all(self, requests: list[bytes]) -> Plan[list[int]]:
        """LREM each request, and pop the replies waiting on the shared list (delivered)."""
        removed: list[int]
        *removed, more = yield (
            *(("LREM", self.service, 1, data) for data in requests),
            ("LPOP", self.reply_queue, _READ_BATCH),
        )
        for raw in more or []:
            self.deliver(raw)
        return removed

    def settle(self, call_id: str, outcome: Any) -> None:
        future = self.waiting.get(call_id)
        if future is not None and not future.done():
            future.set_result(outcome)

    async def check_alive(self, prefix: str) -> None:
        """Fail the long-waiting calls fast once no instance of the service is live.

        As the per-call check, it looks twice a heartbeat apart (a restarted
        Redis lacks the registry until the next heartbeat), withdraws each
        request so it never runs, and lets a reply already waiting win. Calls
        pushed less than a slice ago are left to the next check.
        """
        now = time.monotonic()
        oldest = next(iter(self.pushed.values()), None)  # pushed in time order
        if oldest is None or now - oldest[1] < _READ_SLICE:
            return
        stale = [(i, data) for i, (data, at) in self.pushed.items() if now - at >= _READ_SLICE]
        self.next_check = now + _GONE_GRACE
        live = await self.transport.run(counting_live(self.service, prefix=prefix))
        previous, self.none_live_at = self.none_live_at, None if live else now
        if live or previous is None or now - previous > 3 * _GONE_GRACE:
            return  # alive, or the first of two looks in a row
        # A reply already waiting was answered before the last instance went: it wins.
        removed = await self.transport.run(self.withdrawing_all([data for _, data in stale]))
        for (call_id, _), count in zip(stale, removed, strict=True):
            future = self.waiting.get(call_id)
            if future is not None and not future.done():
                future.set_result(_GONE_WITHDRAWN if count == 1 else _GONE_TAKEN)

    def deliver(self, raw: bytes) -> None:
        try:
            reply = decode_reply(raw)
        except RedisRPCError as exc:
            log.warning("dropped an undecodable reply on %s: %s", self.reply_queue, exc)
            return
        future = self.waiting.get(reply.id or "")
        if future is not None and not future.done():
            future.set_result(reply)  # else: a reply to a call that already gave up


_KEEP: set[asyncio.Task[None]] = set()  # running push tasks (the loop keeps only weak refs)
_READ_SLICE = 1.0
_READ_BATCH = 256


def _echoes_ids(description: dict[str, Any]) -> bool:
    version = description.get("protocol")
    return isinstance(version, int) and version >= 2


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_EXPIRED)


async def set_property(proxy: AsyncClient, name: str, value: Any) -> None:
    """Set a remote property through an async proxy (``proxy.name = value`` cannot await)."""
    prop = getattr(type(proxy), name, None)
    if proxy._rpc_description is not None and not isinstance(prop, property):
        raise AttributeError(f"remote {proxy._rpc_name!r} has no property {name!r}")
    if isinstance(prop, property) and prop.fset is None:
        raise AttributeError(f"property {name!r} of {proxy._rpc_name!r} is read-only")
    await proxy._rpc_call(SET_PROPERTY, [name, value], {})
