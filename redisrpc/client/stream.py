"""Streamed results: a remote generator arrives as an iterator, item by item.

::

    for trace in scope.stream(10):          # sync: a RemoteStream
        plot(trace)
    async for trace in ascope.stream(10):   # asyncio: an AsyncRemoteStream
        ...

Items arrive in order; the server runs ahead of the caller by a bounded
number of items only (PROTOCOL.md, streams). The generator's return value is
``stream.value`` once the stream is exhausted (and ``StopIteration.value``).
Closing the stream (``close()``, ``break`` then dropping it, ``with``, garbage
collection) marks the call cancelled: the server closes the remote
generator, so its ``finally`` runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from ..core.call import Call, awaiting, closing
from ..core.plan import Plan
from ..core.protocol import Reply
from ..errors import RedisRPCError

__all__ = ["AsyncRemoteStream", "RemoteStream"]

log = logging.getLogger("redisrpc.client")


class _Base:
    """What both stream kinds share: the call, the first message, the end."""

    def __init__(self, state: Any, call: Call, first: Reply) -> None:
        self._state = state
        self._call = call
        self._pending: Reply | None = first
        self.done = False
        self.value: Any = None
        """The remote generator's return value, once the stream is exhausted."""

    def __repr__(self) -> str:
        where = "exhausted" if self.done else "open"
        return f"<redisrpc stream of {self._call.label} ({where})>"

    def _next_plan(self) -> Plan[Reply]:
        return awaiting(self._call, None)

    def _take(self, reply: Reply) -> Any:
        """The item a message carries; at the end, StopIteration with the return value."""
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        if reply.interim == "item":
            return reply.value
        self.done = True
        self._finished()
        self.value = self._state.value(reply)  # raises the remote error, if any
        raise StopIteration(self.value)

    def _finished(self) -> None:
        """Called once the stream ended (overridden to release a multiplexer slot)."""


class RemoteStream(_Base):
    """The items of a remote generator, for a ``for`` loop."""

    def __init__(
        self,
        state: Any,
        call: Call,
        first: Reply,
        run: Callable[[Plan[Any]], Any],
        finished: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(state, call, first)
        self._run = run
        # A multiplexed stream's items come through the proxy's shared reply list:
        # its slot there is released when the stream ends, however it ends.
        self._release = finished

    def _finished(self) -> None:
        if self._release is not None:
            self._release()

    def __iter__(self) -> RemoteStream:
        return self

    def __next__(self) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        if self.done:
            raise StopIteration(self.value)
        reply, self._pending = self._pending, None
        if reply is None:
            try:
                reply = self._run(self._next_plan())
            except BaseException:
                self.done = True
                self._finished()
                raise
        return self._take(reply)

    def close(self) -> None:
        """Stop the stream: the server closes the remote generator (its ``finally`` runs)."""
        if not self.done:
            self.done = True
            try:
                self._run(closing(self._call))
            finally:
                self._finished()

    def __enter__(self) -> RemoteStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except (RedisRPCError, AttributeError) as exc:  # garbage collection must not raise
            log.debug("could not close a dropped stream: %s", exc)


class AsyncRemoteStream(_Base):
    """The items of a remote generator, for ``async for`` (from the asyncio client)."""

    def __init__(
        self,
        state: Any,
        call: Call,
        first: Reply,
        run: Callable[[Plan[Any]], Awaitable[Any]],
        finished: Callable[[], None],
    ) -> None:
        super().__init__(state, call, first)
        self._run = run
        self._release = finished

    def _finished(self) -> None:
        self._release()

    def __aiter__(self) -> AsyncRemoteStream:
        return self

    async def __anext__(self) -> Any:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        if self.done:
            raise StopAsyncIteration
        reply, self._pending = self._pending, None
        if reply is None:
            try:
                reply = await self._run(self._next_plan())
            except BaseException:
                self.done = True
                self._finished()
                raise
        try:
            return self._take(reply)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop the stream: the server closes the remote generator (its ``finally`` runs)."""
        if not self.done:
            self.done = True
            try:
                await self._run(closing(self._call))
            finally:
                self._finished()

    async def __aenter__(self) -> AsyncRemoteStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
