"""``redisrpc.watch``: a remote value that keeps itself up to date.

::

    volts = redisrpc.watch(psu, "voltage1", interval=0.5)
    volts.latest                 # the newest value, read at most 0.5 s ago
    for value in volts: ...      # each new value, as it changes
    volts.close()                # or: with redisrpc.watch(...) as volts:
    async for value in redisrpc.watch(apsu, "voltage1"): ...

In Jupyter a watch displays as a live value (a small live plot for numbers).
Every watcher of the same member on one Redis shares one read per interval
on the server side, and the server stops reading once nobody watches
(:mod:`redisrpc.core.watch` tells how). A change made by anyone shows
within about one interval.

One client reads all its watches of a service with one connection: a
thread for the sync client, a task of the event loop for the asyncio one;
both run the same plan (:func:`redisrpc.core.watch.reading`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

from ..core.aio_transport import AsyncTransport
from ..core.plan import Plan
from ..core.protocol import decode_reply, is_valid_name
from ..core.watch import (
    STREAM_LENGTH,
    Book,
    Subscriber,
    check_interval,
    reading,
    starting,
    unleasing,
)
from ..errors import RedisRPCError, TimeoutException
from .proxy import ProxyState, checked_timeout, error_from_reply, state_of

__all__ = ["WATCH_VERSION", "Watch", "watch"]

log = logging.getLogger("redisrpc.client")

WATCH_VERSION = 5
"""The first protocol version whose servers publish watched values."""

_HUBS = threading.Lock()  # makes one reader per proxy tree and thread kind at a time


def watch(proxy: Any, name: str, *, interval: float = 1.0, wait: float = 1.0) -> Watch:
    """Watch ``proxy.name`` (a property, attribute or read-only method without arguments).

    Returns a :class:`Watch`: ``.latest`` is the newest value, iterating it
    yields each new value as it changes, ``.close()`` stops it. A name the
    cached description says cannot be watched raises here, with no traffic.
    With a sync proxy watching starts at once, and the first value is waited
    for, up to ``wait`` seconds (the server reads it at once, between calls;
    not finding it in time is no error); with an asyncio proxy, when
    iteration starts (``async for``) or on ``await watch.start()``.
    Starting is no call: it never waits behind a long one.

    Args:
        proxy: a :class:`~redisrpc.Client`, an :class:`~redisrpc.AsyncClient`,
            or a child proxy of either (``dmm.ch1``).
        name: the member to watch.
        interval: seconds between reads on the server (0.05 to 3600).
        wait: seconds a sync watch waits for its first value (0: none).
    """
    try:
        return Watch(proxy, name, interval=interval, wait=wait)
    except RedisRPCError:
        raise  # a remote refusal: its own traceback, cut and framed
    except (AttributeError, TypeError, ValueError) as exc:
        raise exc.with_traceback(None) from None  # a local refusal: one line, no library frames


class Watch(Subscriber):
    """A watched remote member: its newest value, each change, a live display.

    Made by :func:`redisrpc.watch`. The values arrive in a background reader;
    ``observe`` callbacks run there too.
    """

    def __init__(self, proxy: Any, name: str, *, interval: float = 1.0, wait: float = 1.0) -> None:
        state = state_of(proxy)
        _check_target(state, name)
        self._state = state
        self.name = name
        self.target = f"{state.path}.{name}" if state.path else name
        self.interval = check_interval(interval)
        self.watch_id = secrets.token_hex(8)
        self.latest: Any = None
        """The newest value (None until the first arrives)."""
        self.error: RedisRPCError | None = None
        """The error of the newest read, if it failed (the value stays the last good one)."""
        self.updated: float | None = None
        """When the newest value or error was read (epoch seconds, Redis clock)."""
        self.closed = False
        self.values = 0
        """How many values and errors have arrived."""
        self._raw: bytes | None = None
        self._pending: deque[Any] = deque(maxlen=STREAM_LENGTH)
        self._changed = threading.Condition()
        self._observers: list[Callable[[Watch], None]] = []
        self._book: Book | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None
        if not isinstance(state.transport, AsyncTransport):
            state.transport.run(starting(state.name, self))
            self._join(_thread_book(state))
            with self._changed:  # usually milliseconds: the server reads at once
                self._changed.wait_for(lambda: self.values > 0, max(0.0, wait))

    # -- what the reader calls (Subscriber) -------------------------------

    def deliver(self, ms: int, raw: bytes) -> None:
        """Take one message from the stream: a value or an error, unless it is no news."""
        if raw == self._raw or self.closed:
            return
        self._raw = raw
        try:
            reply = decode_reply(raw, max_size=self._state.max_size)
        except RedisRPCError as exc:
            log.warning("%s: unreadable watched value: %s", self.label, exc)
            return
        with self._changed:
            self.updated = ms / 1000
            self.values += 1
            if reply.error is not None:
                self.error = error_from_reply(reply.error, self._state.name)
            else:
                self.error = None
                self.latest = reply.value
                self._pending.append(reply.value)
            self._changed.notify_all()
        self._tell()

    def failed(self, exc: BaseException) -> None:
        """Redis could not be read: the values pause, the reader retries."""
        log.info("%s: cannot read watched values (%s); retrying", self.label, exc)

    # -- the user's side ---------------------------------------------------

    @property
    def label(self) -> str:
        """``service.member`` (with a child's path), for display."""
        return f"{self._state.name}.{self.target}"

    def observe(self, callback: Callable[[Watch], None]) -> Callable[[], None]:
        """Call ``callback(watch)`` after each new value or error; return a function to stop it.

        The callback runs in the watch's reader: keep it short.
        """
        self._observers.append(callback)

        def forget() -> None:
            if callback in self._observers:
                self._observers.remove(callback)

        return forget

    def wait(self, timeout: float = 5.0) -> Any:
        """Block until the first value (or error) arrived; return :attr:`latest`.

        Raises the read's error if the newest read failed, and
        :class:`~redisrpc.TimeoutException` if nothing arrived in time.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self.values > 0, checked_timeout(timeout)):
                raise TimeoutException(f"no value of {self.label} within {timeout} s")
            if self.error is not None:
                raise self.error
            return self.latest

    def close(self) -> None:
        """Stop watching: the lease goes, and the server stops reading once nobody watches.

        With the sync client the lease is removed before this returns, so a
        script may exit right after. An asyncio watch's reader removes it
        soon after; ``await watch.aclose()`` removes it before returning.
        """
        sync = not isinstance(self._state.transport, AsyncTransport)
        if self._closing(unleased=sync) and sync:
            self._state.transport.run(_forgiving(unleasing(self._state.name, self)))

    async def aclose(self) -> None:
        """:meth:`close`, removing the lease before it returns (asyncio)."""
        if self._closing(unleased=True):
            await self._state.transport.run(_forgiving(unleasing(self._state.name, self)))

    def _closing(self, *, unleased: bool) -> bool:
        """Mark the watch closed; True if it had started (it holds a lease to remove)."""
        if self.closed:
            return False
        self.closed = True
        book = self._book
        if book is not None:
            book.remove(self, unleased=unleased)
        with self._changed:
            self._changed.notify_all()
        self._tell()
        return book is not None

    def __iter__(self) -> Iterator[Any]:
        while True:
            with self._changed:
                try:
                    self._changed.wait_for(lambda: bool(self._pending) or self.closed)
                except KeyboardInterrupt:
                    # One line, not the frames of threading's wait.
                    raise KeyboardInterrupt(f"stopped iterating {self.label}") from None
                if not self._pending:
                    return
                value = self._pending.popleft()
            yield value

    async def start(self) -> Watch:
        """Ask the server (asyncio proxies); the sync client's watch starts when made."""
        if self._book is None and not self.closed:
            await self._state.transport.run(starting(self._state.name, self))
            self._loop = asyncio.get_running_loop()
            self._arrived = asyncio.Event()
            self._join(_task_book(self._state, self._loop))
        return self

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._values()

    async def _values(self) -> AsyncIterator[Any]:
        await self.start()
        arrived = self._arrived
        assert arrived is not None
        while True:
            with self._changed:
                if self._pending:
                    value = self._pending.popleft()
                elif self.closed:
                    return
                else:
                    arrived.clear()
                    value = _NOTHING
            if value is _NOTHING:
                await arrived.wait()
                continue
            yield value

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Watch:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        every = f"every {self.interval:g} s"
        if self.closed:
            return f"<redisrpc.Watch {self.label} {every} (closed)>"
        if self.error is not None:
            return f"<redisrpc.Watch {self.label} {every}: {type(self.error).__name__}>"
        shown = "no value yet" if self.values == 0 else repr(self.latest)[:200]
        return f"<redisrpc.Watch {self.label} {every}: {shown}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """In Jupyter: a live value (see :mod:`redisrpc.notebook.live`)."""
        if not _in_kernel():  # a terminal: the text form, no widget to keep
            return {"text/plain": repr(self)}
        try:
            from ..notebook.live import LiveValue  # noqa: PLC0415 - ipywidgets is optional
        except ImportError:  # no ipywidgets: the text repr
            return {"text/plain": repr(self)}
        bundle = LiveValue(self)._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = repr(self)  # what a front end without widgets shows
        return bundle

    # -- internals -----------------------------------------------------------

    def _join(self, book_of: Callable[[], Book]) -> None:
        while True:  # a book closes with its last watch; then a new one starts
            book = book_of()
            if book.add(self):
                self._book = book
                return

    def _tell(self) -> None:
        if self._loop is not None and self._arrived is not None:
            # A loop that has ended (asyncio.run returned) has no iteration left to wake:
            # closing the watch after it must not raise.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._arrived.set)
        for callback in list(self._observers):
            try:
                callback(self)
            except Exception:
                log.exception("%s: a watch observer failed", self.label)


_NOTHING = object()


def _in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (where a widget can show)."""
    return "ipykernel" in sys.modules


def _forgiving(plan: Plan[None]) -> Plan[None]:
    """``plan``, with a Redis error logged instead of raised: an unremoved lease lapses."""
    try:
        yield from plan
    except RedisRPCError as exc:
        log.info("a watch lease was not removed (%s); it lapses by itself", exc)


def _thread_book(state: ProxyState) -> Callable[[], Book]:
    """The proxy tree's book read by a thread (started with its first watch)."""

    def book() -> Book:
        with _HUBS:
            found = state.channels.get(_THREAD)
            if isinstance(found, Book) and not found.closed:
                return found
            found = state.channels[_THREAD] = Book(state.name)
            threading.Thread(
                target=_read, args=(state, found), name=f"redisrpc-watch-{state.name}", daemon=True
            ).start()
            return found

    return book


def _read(state: ProxyState, book: Book) -> None:
    try:
        state.transport.run(reading(book))
    except Exception:
        log.exception("%s: the watch reader stopped", state.name)


def _task_book(state: ProxyState, loop: asyncio.AbstractEventLoop) -> Callable[[], Book]:
    """The proxy tree's book read by a task of ``loop``."""

    def book() -> Book:
        found = state.channels.get((_THREAD, loop))
        if isinstance(found, tuple) and not found[0].closed:
            return found[0]  # type: ignore[no-any-return]
        fresh = Book(state.name)
        task = loop.create_task(state.transport.run(reading(fresh)))
        state.channels[(_THREAD, loop)] = (fresh, task)  # the task is kept while it runs
        return fresh

    return book


_THREAD = "watch"  # the key of a proxy tree's watch reader among its channels


def _check_target(state: ProxyState, name: object) -> None:
    """Refuse locally what cannot be watched, from the cached description (no traffic)."""
    if not isinstance(name, str) or not is_valid_name(name) or name.startswith("_"):
        raise AttributeError(f"{name!r} is not a member name that can be watched")
    found = state.description
    if found is None:
        return  # undescribed: the server checks
    version = found.get("protocol")
    if not isinstance(version, int) or version < WATCH_VERSION:
        raise TypeError(
            f"{state.label} is served by protocol {version}; watching needs a server of"
            f" protocol {WATCH_VERSION} or later"
        )
    for entry in found.get("properties", ()):
        if entry.get("name") == name:
            return
    for entry in found.get("methods", ()):
        if entry.get("name") != name:
            continue
        if not entry.get("readonly"):
            raise TypeError(
                f"{state.label}.{name} is a method not marked @expose(readonly=True); only"
                " properties, attributes and read-only methods can be watched"
            )
        required = [
            p["name"]
            for p in entry.get("params", ())
            if "default" not in p
            and "default_repr" not in p
            and p.get("kind") not in ("VAR_POSITIONAL", "VAR_KEYWORD")
        ]
        if required:
            raise TypeError(
                f"{state.label}.{name}() takes {', '.join(required)}; it cannot be watched"
            )
        return
    known = ", ".join(sorted(e.get("name", "") for e in found.get("properties", ()))) or "none"
    raise AttributeError(f"{state.label} has no property {name!r} to watch (properties: {known})")
