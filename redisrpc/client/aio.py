"""The asyncio client: ``await calc.add(5)``, with the same proxy as the sync client.

::

    calc = await redisrpc.AsyncClient("redis://lab:6379", "calc")   # fetches the description
    await calc.add(5)
    await calc.value                          # properties are awaited too
    await redisrpc.aio.set_property(calc, "value", 0.0)
    results = await asyncio.gather(*(calc.add(i) for i in range(100)))   # many in flight

It works in Jupyter's running event loop (top-level ``await``) and under
``asyncio.run``. Introspection is the sync client's: the proxy's class is built
by :func:`redisrpc.client.proxy.build_proxy_class` from the same description,
so ``dir()``, Tab completion, ``help()``, ``?`` and :func:`inspect.signature`
are identical and never touch the network. Each method returns a coroutine.

A call is the sync client's plan (:func:`redisrpc.core.call.calling`), with the
same guarantees; only its I/O differs. Calls to a protocol 2 server on one
event loop share one reply list and one reader (:class:`Multiplexer`):
requests made in the same loop turn go out in one RPUSH, and replies are
handed to their calls by id. A cancelled call (``asyncio.wait_for``, task
cancellation) is withdrawn when no server took it yet.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any

import redis

from ..core.aio_transport import AsyncTransport, ended_loops
from ..core.call import Call, calling, first_reply, routed
from ..core.keys import queue_name
from ..core.ownlist import OwnList, blob_commands, framing
from ..core.plan import Plan, Receive, Recover, Send, drive_async
from ..core.protocol import SET_PROPERTY, Reply, check_serializer
from ..core.transport import Transport
from ..errors import RedisRPCError
from .proxy import ProxyBase, ProxyState, checked_timeout
from .stream import AsyncRemoteStream
from .sync import DEFAULT_TIMEOUT

__all__ = ["AsyncClient", "Multiplexer", "set_property"]

log = logging.getLogger("redisrpc.aio")

_READ_SLICE = 1.0
_READ_BATCH = 256


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
        transport: the original RedisRPC's serializer argument; only ``'json'``.
    """

    __slots__ = ()

    def __init__(
        self,
        redis: redis.Redis | AsyncTransport | Transport | Any | str | None,
        name: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: str = "json",
    ) -> None:
        check_serializer(transport)
        io = AsyncTransport.of(redis)
        state = ProxyState(queue_name(name, cluster=io.cluster), io, checked_timeout(timeout))
        object.__setattr__(self, "_rpc_state", state)

    def __await__(self) -> Generator[Any, None, AsyncClient]:
        return self._rpc_described().__await__()

    async def _rpc_described(self) -> AsyncClient:
        await self._rpc_refresh()
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        # Assignment cannot be awaited: a silent un-sent write would be worse than an error.
        raise AttributeError(
            f"cannot assign {name!r} on an async proxy; use"
            f" `await redisrpc.aio.set_property(proxy, {name!r}, value)`"
        )

    async def _rpc_run(self, call: Call) -> Any:
        """Run one call's plan: its reply, or a stream of its items.

        Calls to a server that echoes ids share the loop's multiplexer, except
        described streams: their items wait on a list of their own, where the
        server sees how far the caller has read.
        """
        state = self._rpc_state
        transport: AsyncTransport = state.transport
        if not state.echoes_ids or state.streams(call.method):
            direct = _Direct(transport)
            call.own = direct.own  # the plan runs its list's Send and Receive in place
            reply = await drive_async(calling(call), direct.step)
            return _maybe_stream(state, call, reply, direct.step, lambda: None)
        loop = asyncio.get_running_loop()
        mux = state.channels.get(loop)
        if mux is None:
            ended_loops(state.channels)
            mux = state.channels[loop] = Multiplexer(
                transport,
                state.name,
                state.reply_prefix + secrets.token_hex(16),
                max_size=state.max_size,
            )
        call.shared_queue = mux.reply_queue
        streaming = False
        try:
            reply = await drive_async(calling(call), mux.step)
            result = _maybe_stream(state, call, reply, mux.step, lambda: mux.forget(call.call_id))
            streaming = isinstance(result, AsyncRemoteStream)
            return result
        finally:
            if not streaming:
                mux.forget(call.call_id)

    async def _rpc_call(self, name: str, args: Any, kwargs: dict[str, Any]) -> Any:
        """Call ``name`` remotely and return its value (or its stream), or raise its error."""
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        state = self._rpc_state
        watcher = state.watcher(name)
        try:
            result = await self._rpc_run(state.call(name, args, kwargs, on_event=watcher))
        finally:
            if watcher is not None:
                watcher.close()
        return result if isinstance(result, AsyncRemoteStream) else state.value(result)

    async def _rpc_refresh(self) -> dict[str, Any] | None:
        """Fetch the description again and rebuild this proxy's class from it."""
        return self._rpc_adopt(await self._rpc_run(self._rpc_state.describe_call()))


def _maybe_stream(
    state: ProxyState,
    call: Call,
    reply: Reply,
    step: Callable[[Any], Awaitable[Any]],
    finished: Callable[[], None],
) -> Reply | AsyncRemoteStream:
    """The reply, or the stream it opens."""
    if reply.interim == "item" or reply.stream:
        return AsyncRemoteStream(state, call, reply, lambda plan: drive_async(plan, step), finished)
    return reply


class _Direct:
    """Carries out a call's steps on a reply list of its own (see :class:`OwnList`)."""

    __slots__ = ("own", "transport")

    def __init__(self, transport: AsyncTransport) -> None:
        self.transport = transport
        self.own = OwnList()

    async def step(self, step: Any) -> Any:
        plan = self.own.plan(step)
        if plan is None:
            return await self.transport.step(step)
        if isinstance(step, Recover):
            return await self.transport.rescue(plan)
        return await self.transport.run(plan)


class _Box:
    """What one call waits on: replies handed to it, and the future of its current wait."""

    __slots__ = ("future", "items", "pushed")

    def __init__(self, pushed: asyncio.Future[None]) -> None:
        self.items: deque[Any] = deque()
        self.future: asyncio.Future[Any] | None = None
        self.pushed = pushed

    def put(self, item: Any) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(item)
        else:
            self.items.append(item)


class Multiplexer:
    """Many calls on one event loop, with one shared reply list and one reader.

    It carries out the calls' own steps: :class:`~redisrpc.core.plan.Send`
    queues the request (requests of one loop turn go out in one RPUSH) and
    waits; the reader pops replies in batches and hands each to its call by
    id; :class:`~redisrpc.core.plan.Recover` steps of one loop turn share one
    fresh connection. Everything else goes to the transport.
    """

    def __init__(
        self, transport: AsyncTransport, service: str, reply_queue: str, *, max_size: int
    ) -> None:
        self.transport = transport
        self.max_size = max_size  # the largest reply decoded (the server's advertised limit)
        self.service = service
        self.reply_queue = reply_queue
        self.boxes: dict[str, _Box] = {}
        self.outbox: dict[str, bytes] = {}  # call id -> request, not sent yet
        self.rescues: dict[str, tuple[Recover, asyncio.Future[tuple[bool, Any]]]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def step(self, step: Any) -> Any:
        """Carry out one step of a multiplexed call's plan."""
        if isinstance(step, Send):
            return await self._send(step)
        if isinstance(step, Receive):
            return await self._wait(step.call_id, step.wait)
        if isinstance(step, Recover):
            return await self._recover(step)
        return await self.transport.step(step)

    def forget(self, call_id: str) -> None:
        """The call is over: drop what the multiplexer kept for it."""
        self.boxes.pop(call_id, None)
        self.outbox.pop(call_id, None)

    async def _send(self, step: Send) -> Any:
        loop = asyncio.get_running_loop()
        box = self.boxes[step.call_id] = _Box(loop.create_future())
        if not self.outbox:
            loop.call_soon(self._flush)
        self.outbox[step.call_id] = step.data
        self._read()
        try:
            await box.pushed
        except asyncio.CancelledError:
            self.outbox.pop(step.call_id, None)  # not sent yet: it never will be
            raise
        return await self._wait(step.call_id, step.wait)

    async def _wait(self, call_id: str, wait: float) -> Any:
        """The next reply (or error) handed to the call, or None after ``wait`` seconds."""
        box = self.boxes[call_id]
        self._read()
        if box.items:
            item = box.items.popleft()
        else:
            loop = asyncio.get_running_loop()
            box.future = loop.create_future()
            timer = loop.call_later(wait, _settle, box.future, None)
            try:
                # The first one handed over; what came after it (in the same pop) waits in
                # the box, behind it: a stream's items and progress stay in order.
                item = await box.future
            finally:
                timer.cancel()
                box.future = None
        if isinstance(item, BaseException):
            raise item
        return item

    def _flush(self) -> None:
        """Send every queued request in one RPUSH (a task, so the loop goes on)."""
        batch, self.outbox = self.outbox, {}
        if batch:
            _spawn(self._push(batch))

    async def _push(self, batch: dict[str, bytes]) -> None:
        """Push a batch; if that fails, every call in it gets the error."""
        error: BaseException | None = None
        try:
            # Blob lists first (protocol 4), in the same round trip as the requests.
            blobs = tuple(c for data in batch.values() for c in blob_commands(data))
            await self.transport.step((*blobs, ("RPUSH", self.service, *batch.values())))
        except RedisRPCError as exc:
            error = exc
        for call_id in batch:
            box = self.boxes.get(call_id)
            if box is None or box.pushed.done():
                continue
            if error is None:
                box.pushed.set_result(None)
            else:
                box.pushed.set_exception(error)

    def _read(self) -> None:
        """Start the reader if calls wait and none runs."""
        if self.reader is None and self.boxes:
            self.reader = asyncio.get_running_loop().create_task(self._reading())

    async def _reading(self) -> None:
        """Pop replies while calls wait, and hand each to its call."""
        try:
            while self.boxes:
                blocked, more = await self.transport.step(
                    (
                        ("BLPOP", self.reply_queue, _READ_SLICE),
                        ("LPOP", self.reply_queue, _READ_BATCH),
                    )
                )
                for raw in await self._framed(([blocked[1]] if blocked else []) + (more or [])):
                    self._deliver(raw)
        except RedisRPCError as exc:
            # Every waiting call learns of it at its step; its plan then recovers.
            for box in self.boxes.values():
                box.put(exc)
        finally:
            self.reader = None

    async def _framed(self, elements: list[bytes]) -> list[bytes]:
        """The messages among popped ``elements`` not delivered yet (see :func:`framing`)."""
        return await drive_async(
            framing(self.reply_queue, elements, self._deliver), self.transport.step
        )

    def _deliver(self, raw: bytes) -> None:
        reply = routed(raw, max_size=self.max_size, queue=self.reply_queue)
        box = self.boxes.get(reply.id or "") if reply is not None else None
        if box is not None:
            box.put(reply)  # else: a reply to a call that already gave up, or garbage

    async def _recover(self, step: Recover) -> tuple[bool, Any]:
        """Withdraw the request on a fresh connection; the recoveries of one loop turn share it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        if not self.rescues:
            loop.call_soon(lambda: _spawn(self._rescue()))
        self.rescues[step.call_id] = (step, future)
        return await future

    async def _rescue(self) -> None:
        batch, self.rescues = self.rescues, {}
        try:
            removed = await self.transport.rescue(self._withdrawing_all(batch))
        except RedisRPCError as exc:
            for _, future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for (call_id, (_, future)), count in zip(batch.items(), removed, strict=True):
            box = self.boxes.get(call_id)
            waiting = None if box is None else first_reply(_handed(box))
            if not future.done():
                future.set_result((count == 1, waiting))

    def _withdrawing_all(self, batch: dict[str, tuple[Recover, Any]]) -> Plan[list[int]]:
        """LREM each request (and mark it cancelled), and pop the replies waiting (delivered)."""
        steps = [step for step, _ in batch.values()]
        replies = yield (
            *(("LREM", self.service, 1, step.data) for step in steps),
            ("LPOP", self.reply_queue, _READ_BATCH),
        )
        removed: list[int] = replies[: len(steps)]
        more = replies[len(steps)]
        marks = [
            m for step, count in zip(steps, removed, strict=True) if not count for m in step.marks
        ]
        if marks:
            yield tuple(marks)
        for box in self.boxes.values():  # errors handed out before are settled now
            while box.items and isinstance(box.items[0], BaseException):
                box.items.popleft()
        for raw in (yield from framing(self.reply_queue, more or [], self._deliver)):
            self._deliver(raw)
        return removed


_KEEP: set[asyncio.Task[None]] = set()  # running tasks (the loop keeps only weak refs)


def _spawn(coroutine: Any) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _KEEP.add(task)
    task.add_done_callback(_KEEP.discard)


def _handed(box: _Box) -> Iterator[Any]:
    """What was handed to ``box`` and not taken yet, in order (taken as it is read)."""
    while box.items:
        yield box.items.popleft()


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


async def set_property(proxy: AsyncClient, name: str, value: Any) -> None:
    """Set a remote property through an async proxy (``proxy.name = value`` cannot await)."""
    prop = getattr(type(proxy), name, None)
    state = proxy._rpc_state
    if state.description is not None and not isinstance(prop, property):
        raise AttributeError(f"remote {state.name!r} has no property {name!r}")
    if isinstance(prop, property) and prop.fset is None:
        raise AttributeError(f"property {name!r} of {state.name!r} is read-only")
    await proxy._rpc_call(SET_PROPERTY, [name, value], {})
