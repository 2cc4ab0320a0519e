"""The advisory lock: one client holds a server for a sequence of calls.

::

    with redisrpc.lock(stage, ttl=30, note="aligning the beam"):
        stage.move(5)
        stage.move(7)         # nobody else's call runs in between

While the lock is held, the servers of that service refuse every call that
does not carry the holder's token with :class:`~redisrpc.LockedError`, which
names the holder and the note (``__describe__`` and ``__ping__`` stay open, so
others can still connect and look). :func:`lock_info` shows who holds it.

The lock lives in Redis under ``<service>:lock`` as JSON (holder host, pid,
user, note, since) with a time to live. The value holds only a digest of the
token (SHA-256), never the token itself: anyone who can read the key still
cannot call under the lock. The holder renews it while its block
runs; if the holder's process dies, the key expires after ``ttl`` seconds and
the service is free again. The lock belongs to the proxy object: calls
through it (from any thread, and through proxies derived from it with
:func:`~redisrpc.with_timeout` while it is held) carry the token.

With an asyncio proxy (:class:`~redisrpc.AsyncClient`) the same lock is
taken with ``async with``, renewed by an asyncio task, and read with
``await lock_info_async(proxy)``::

    async with redisrpc.lock(stage, note="scan"):
        await stage.move(5)

This is a module function, not a proxy method, because a remote object may
well have a method called ``lock`` of its own; ``proxy._rpc_lock(...)`` is the
same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from types import TracebackType
from typing import Any, TypeVar

from ..core.aio_transport import AsyncTransport
from ..core.keys import lock_key  # re-exported
from ..core.plan import NOW, Plan
from ..core.protocol import OWN_ERROR_PREFIX, ErrorInfo
from ..core.transport import Transport
from ..errors import LockedError, RedisRPCError
from .proxy import LockCell, login_name, state_of

__all__ = [
    "Lock",
    "describe_holder",
    "digest",
    "held_token",
    "lock",
    "lock_info",
    "lock_info_async",
    "lock_key",
    "refusal",
]

log = logging.getLogger("redisrpc.lock")

# Compare-and-delete and compare-and-extend: only the holder's exact value may
# release or renew the lock, so a late release never frees someone else's lock.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""

_POLL_S = 0.1  # how often a caller waiting for the lock tries again


def _target(proxy: Any) -> tuple[Transport | AsyncTransport, str]:
    state = state_of(proxy)
    return state.transport, state.name


_Kind = TypeVar("_Kind", Transport, AsyncTransport)


def _io(transport: Transport | AsyncTransport, kind: type[_Kind], instead: str) -> _Kind:
    """The proxy's transport, if it is of ``kind`` (sync or asyncio); else say what to use."""
    if not isinstance(transport, kind):
        sort = "an asyncio" if kind is Transport else "a sync"
        raise TypeError(f"this is {sort} proxy: use {instead}")
    return transport


def held_token(proxy: Any) -> str | None:
    """The lock token that calls through ``proxy`` carry, or None."""
    return state_of(proxy).lock.token


def digest(token: str) -> str:
    """The SHA-256 hex digest of a lock token: what the lock value stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


_UNREADABLE = {"digest": None, "note": "unreadable lock value"}
_MAX_LOCK_VALUE = 64 * 1024  # a holder's value is a few hundred bytes; more is not ours


def _parse(stored: bytes | str | None) -> dict[str, Any] | None:
    """Decode a stored lock value; a value we cannot read still counts as held.

    The value is whatever someone SET in Redis: no content of it (size,
    nesting, types) may raise here, or it would stop every server of the
    service.
    """
    if stored is None:
        return None
    if len(stored) > _MAX_LOCK_VALUE:
        return dict(_UNREADABLE)
    try:
        value = json.loads(stored)
    except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
        return dict(_UNREADABLE)
    if not isinstance(value, dict):
        return dict(_UNREADABLE)
    return value


def _public(holder: dict[str, Any]) -> dict[str, Any]:
    """The holder as others see it: no token or digest, ``since`` in epoch seconds."""
    public = {k: v for k, v in holder.items() if k not in ("token", "digest")}
    if "since" in public:
        public["since"] = _seconds(public["since"])
    return public


def _seconds(since_ms: Any) -> float | None:
    """The wire's ``since`` (epoch ms, Redis clock) as epoch seconds; None if it is not a time."""
    if isinstance(since_ms, bool) or not isinstance(since_ms, (int, float)):
        return None
    seconds = since_ms / 1000 if abs(since_ms) < 1e18 else math.nan
    return seconds if math.isfinite(seconds) else None


def describe_holder(holder: dict[str, Any]) -> str:
    """One line naming the holder; ``holder`` is a :func:`_public` value (since in seconds)."""
    who = f"{holder.get('user', '?')}@{holder.get('host', '?')} (pid {holder.get('pid', '?')})"
    since = holder.get("since")
    if isinstance(since, float):
        # A time out of the platform's range is left out, not raised.
        with contextlib.suppress(OverflowError, OSError, ValueError):
            who += f" since {time.strftime('%H:%M:%S', time.localtime(since))}"
    note = holder.get("note")
    return f"{who}: {note!r}" if note else who


def _reading(service: str) -> Plan[dict[str, Any] | None]:
    """The plan behind :func:`lock_info` (see :data:`redisrpc.core.transport.Plan`)."""
    stored, pttl = yield (("GET", lock_key(service)), ("PTTL", lock_key(service)))
    holder = _parse(stored)
    if holder is None:
        return None
    info = _public(holder)
    info["expires_in"] = pttl / 1000 if isinstance(pttl, int) and pttl >= 0 else None
    return info


def lock_info(proxy: Any) -> dict[str, Any] | None:
    """Who holds the lock of ``proxy``'s service: host, pid, user, note, since, expires_in.

    Returns None when the service is not locked. ``since`` is in epoch
    seconds (a float, Redis clock); ``expires_in`` in seconds. For an asyncio
    proxy use :func:`lock_info_async`.
    """
    transport, service = _target(proxy)
    sync = _io(transport, Transport, "`await redisrpc.lock_info_async(proxy)`")
    return sync.run(_reading(service))


async def lock_info_async(proxy: Any) -> dict[str, Any] | None:
    """:func:`lock_info` for an asyncio proxy: ``await redisrpc.lock_info_async(proxy)``."""
    transport, service = _target(proxy)
    aio = _io(transport, AsyncTransport, "redisrpc.lock_info(proxy)")
    return await aio.run(_reading(service))


def refusal(
    request_token: str | None, stored: bytes | str | None, *, server: str
) -> ErrorInfo | None:
    """The server's verdict for one call: None to run it, else the LockedError reply.

    ``stored`` is the current value of the lock key. A call runs when the
    service is unlocked and the call carries no token, or when it carries the
    holder's token: the token's digest equals the stored ``digest`` (compared
    in constant time). A call made under a lock that has since expired is refused
    too: its caller believes nobody else ran anything in between.
    """
    holder = _parse(stored)
    if holder is None:
        if request_token is None:
            return None
        return ErrorInfo(
            OWN_ERROR_PREFIX + "LockedError",
            "the lock this call was made under has expired or was released; not executed",
            server=server,
        )
    stored_digest = holder.get("digest")
    if (
        request_token is not None
        and isinstance(stored_digest, str)
        and hmac.compare_digest(stored_digest.encode(), digest(request_token).encode())
    ):
        return None
    public = _public(holder)
    return ErrorInfo(
        OWN_ERROR_PREFIX + "LockedError",
        f"locked by {describe_holder(public)}; not executed",
        server=server,
        details={"holder": public},
    )


class Lock:
    """The advisory lock of one proxy's service; use it as a context manager.

    Made by :func:`lock`; ``acquire()`` and ``release()`` also work across
    notebook cells. For an asyncio proxy: ``async with``, or
    ``await acquire_async()`` and ``await release_async()``.
    """

    def __init__(
        self,
        proxy: Any,
        *,
        ttl: float = 30.0,
        note: str = "",
        wait: float = 0.0,
        renew: bool = True,
    ) -> None:
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError("ttl must be a positive, finite number of seconds")
        if not (wait >= 0 and math.isfinite(wait)):
            raise ValueError("wait must be a finite number of seconds, 0 or more")
        self._transport, self.service = _target(proxy)
        self._proxy = proxy
        self.key = lock_key(self.service)
        self.ttl = float(ttl)
        self.note = str(note)
        self.wait = float(wait)
        self.renew = renew
        self._value: bytes | None = None
        self._token: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renewal: asyncio.Task[None] | None = None  # the asyncio renewer

    def __repr__(self) -> str:
        state = "held" if self.held else "not held"
        return f"<redisrpc.Lock on {self.service!r} ({state}), note={self.note!r}>"

    @property
    def held(self) -> bool:
        """Whether this object believes it holds the lock (it may have expired since)."""
        return self._token is not None

    def _cell(self) -> LockCell:
        return state_of(self._proxy).lock

    def _acquiring(self) -> Plan[None]:
        """Take the lock, waiting up to ``wait`` seconds; raise LockedError if still held."""
        cell = self._cell()
        if cell.token is not None:
            raise RuntimeError(f"this proxy already holds the lock of {self.service!r}")
        token = secrets.token_hex(16)
        ttl_ms = max(1, int(self.ttl * 1000))
        end = time.monotonic() + self.wait
        while True:
            holder = {
                "digest": digest(token),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "user": login_name(),
                "note": self.note,
                "since": (yield NOW),
                "ttl": self.ttl,
            }
            value = json.dumps(holder).encode()
            (taken,) = yield (("SET", self.key, value, "NX", "PX", ttl_ms),)
            if taken:
                break
            left = end - time.monotonic()
            if left <= 0:
                info = yield from _reading(self.service)
                if info is None:
                    continue  # released in the meantime: try once more
                raise LockedError(
                    f"{self.service!r} is locked by {describe_holder(info)}", holder=info
                )
            yield min(_POLL_S, left)
        self._value, self._token = value, token
        cell.token = token

    def _renewing(self, value: bytes) -> Plan[bool]:
        """Extend the lock by its ttl if it is still ours."""
        (kept,) = yield (("EVAL", _RENEW, 1, self.key, value, max(1, int(self.ttl * 1000))),)
        return bool(kept)

    def _still_held(self, renewed: bool | RedisRPCError) -> bool:
        """Log a failed renewal; False once the lock is lost (renewing stops)."""
        if isinstance(renewed, RedisRPCError):
            log.warning("could not renew the lock of %r: %s", self.service, renewed)
        elif not renewed:
            log.warning("the lock of %r expired before it could be renewed", self.service)
        return renewed is not False

    def _releasing(self) -> Plan[bool]:
        """Forget the token, then delete the lock if it is still ours."""
        cell = self._cell()
        if cell.token == self._token:
            cell.token = None
        value, self._value, self._token = self._value or b"", None, None
        (released,) = yield (("EVAL", _RELEASE, 1, self.key, value),)
        return bool(released)

    def acquire(self) -> Lock:
        """Take the lock, waiting up to ``wait`` seconds; raise LockedError if still held."""
        transport = _io(self._transport, Transport, "`async with` or `await acquire_async()`")
        transport.run(self._acquiring())
        if self.renew:
            self._stop.clear()
            self._renewer = threading.Thread(
                target=self._keep,
                args=(transport, self._value or b""),
                name=f"redisrpc-lock-{self.service}",
                daemon=True,
            )
            self._renewer.start()
        return self

    def _keep(self, transport: Transport, value: bytes) -> None:
        """Extend the lock every third of its ttl while it is held (the renewer thread)."""
        while not self._stop.wait(self.ttl / 3):
            try:
                renewed: bool | RedisRPCError = transport.run(self._renewing(value))
            except RedisRPCError as exc:
                renewed = exc
            if not self._still_held(renewed):
                return

    def release(self) -> bool:
        """Give the lock back; return whether it was still ours to release."""
        if self._token is None:
            return False
        transport = _io(self._transport, Transport, "`await release_async()`")
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        self._renewer = None
        return transport.run(self._releasing())

    async def acquire_async(self) -> Lock:
        """:meth:`acquire` for an asyncio proxy; an asyncio task renews the lock."""
        transport = _io(self._transport, AsyncTransport, "`with` or `acquire()`")
        await transport.run(self._acquiring())
        if self.renew:
            loop = asyncio.get_running_loop()
            self._renewal = loop.create_task(self._keep_async(transport, self._value or b""))
        return self

    async def _keep_async(self, transport: AsyncTransport, value: bytes) -> None:
        """Extend the lock every third of its ttl while it is held (the renewer task)."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                renewed: bool | RedisRPCError = await transport.run(self._renewing(value))
            except RedisRPCError as exc:
                renewed = exc
            if not self._still_held(renewed):
                return

    async def release_async(self) -> bool:
        """:meth:`release` for an asyncio proxy."""
        if self._token is None:
            return False
        transport = _io(self._transport, AsyncTransport, "`release()`")
        if self._renewal is not None:
            self._renewal.cancel()  # a renewal in flight cannot extend the released lock
        self._renewal = None
        return await transport.run(self._releasing())

    def __enter__(self) -> Lock:
        return self if self.held else self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> Lock:
        return self if self.held else await self.acquire_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release_async()


def lock(proxy: Any, *, ttl: float = 30.0, note: str = "", wait: float = 0.0) -> Lock:
    """Hold ``proxy``'s service for a sequence of calls: ``with redisrpc.lock(stage): ...``.

    With an asyncio proxy: ``async with redisrpc.lock(stage): ...``.

    Args:
        proxy: a redisrpc client proxy, sync or asyncio.
        ttl: seconds the lock outlives its holder if the holder dies; a live
            holder renews it.
        note: why you hold it, shown to others (in LockedError and lock_info).
        wait: seconds to wait for a lock someone else holds before raising
            :class:`~redisrpc.LockedError` (0: fail at once).
    """
    return Lock(proxy, ttl=ttl, note=note, wait=wait)
