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
user, note, since) with a time to live. The holder renews it while its block
runs; if the holder's process dies, the key expires after ``ttl`` seconds and
the service is free again. The lock belongs to the proxy object: calls
through it (from any thread, and through proxies derived from it with
:func:`~redisrpc.with_timeout` while it is held) carry the token.

This is a module function, not a proxy method, because a remote object may
well have a method called ``lock`` of its own; ``proxy._rpc_lock(...)`` is the
same thing.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from types import TracebackType
from typing import Any

from .errors import LockedError, RedisRPCError
from .protocol import ErrorInfo
from .transport import Transport

__all__ = ["Lock", "held_token", "lock", "lock_info", "lock_key", "refusal"]

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


def lock_key(service: str) -> str:
    """The Redis key holding the advisory lock of ``service``."""
    return f"{service}:lock"


class _Cell:
    """The token a proxy's calls carry; shared by the proxy and its later siblings."""

    __slots__ = ("token",)

    def __init__(self) -> None:
        self.token: str | None = None


def _target(proxy: Any) -> tuple[Transport, str]:
    transport = proxy.__dict__.get("_rpc_transport") if hasattr(proxy, "__dict__") else None
    if not isinstance(transport, Transport):
        raise TypeError(f"expected a redisrpc proxy, got {type(proxy).__qualname__}")
    return transport, str(proxy.__dict__["_rpc_name"])


def held_token(proxy: Any) -> str | None:
    """The lock token that calls through ``proxy`` carry, or None."""
    cell = proxy.__dict__.get("_rpc_lock_cell")
    return cell.token if isinstance(cell, _Cell) else None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "?"


def _parse(stored: bytes | str | None) -> dict[str, Any] | None:
    """Decode a stored lock value; a value we cannot read still counts as held."""
    if stored is None:
        return None
    try:
        value = json.loads(stored)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"token": None, "note": "unreadable lock value"}


def _public(holder: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in holder.items() if k != "token"}


def _describe(holder: dict[str, Any]) -> str:
    who = f"{holder.get('user', '?')}@{holder.get('host', '?')} (pid {holder.get('pid', '?')})"
    since = holder.get("since")
    if isinstance(since, int):
        who += f" since {time.strftime('%H:%M:%S', time.localtime(since / 1000))}"
    note = holder.get("note")
    return f"{who}: {note!r}" if note else who


def lock_info(proxy: Any) -> dict[str, Any] | None:
    """Who holds the lock of ``proxy``'s service: host, pid, user, note, since, expires_in.

    Returns None when the service is not locked. ``since`` is in epoch
    milliseconds (Redis clock); ``expires_in`` in seconds.
    """
    transport, service = _target(proxy)
    pipe = transport.redis.pipeline(transaction=False)
    pipe.get(lock_key(service))
    pipe.pttl(lock_key(service))
    with transport.translated():
        stored, pttl = pipe.execute()
    holder = _parse(stored)
    if holder is None:
        return None
    info = _public(holder)
    info["expires_in"] = pttl / 1000 if isinstance(pttl, int) and pttl >= 0 else None
    return info


def refusal(
    request_token: str | None, stored: bytes | str | None, *, server: str
) -> ErrorInfo | None:
    """The server's verdict for one call: None to run it, else the LockedError reply.

    ``stored`` is the current value of the lock key. A call runs when the
    service is unlocked and the call carries no token, or when it carries the
    holder's token. A call made under a lock that has since expired is refused
    too: its caller believes nobody else ran anything in between.
    """
    holder = _parse(stored)
    if holder is None:
        if request_token is None:
            return None
        return ErrorInfo(
            "redisrpc.LockedError",
            "the lock this call was made under has expired or was released; not executed",
            server=server,
        )
    if request_token is not None and holder.get("token") == request_token:
        return None
    public = _public(holder)
    return ErrorInfo(
        "redisrpc.LockedError",
        f"locked by {_describe(public)}; not executed",
        server=server,
        details={"holder": public},
    )


class Lock:
    """The advisory lock of one proxy's service; use it as a context manager.

    Made by :func:`lock`; ``acquire()`` and ``release()`` also work across
    notebook cells.
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

    def __repr__(self) -> str:
        state = "held" if self.held else "not held"
        return f"<redisrpc.Lock on {self.service!r} ({state}), note={self.note!r}>"

    @property
    def held(self) -> bool:
        """Whether this object believes it holds the lock (it may have expired since)."""
        return self._token is not None

    def _cell(self) -> _Cell:
        cell = self._proxy.__dict__.get("_rpc_lock_cell")
        if not isinstance(cell, _Cell):
            cell = _Cell()
            object.__setattr__(self._proxy, "_rpc_lock_cell", cell)
        return cell

    def acquire(self) -> Lock:
        """Take the lock, waiting up to ``wait`` seconds; raise LockedError if still held."""
        cell = self._cell()
        if cell.token is not None:
            raise RuntimeError(f"this proxy already holds the lock of {self.service!r}")
        redis_ = self._transport.redis
        token = secrets.token_hex(16)
        ttl_ms = max(1, int(self.ttl * 1000))
        end = time.monotonic() + self.wait
        while True:
            with self._transport.translated():
                holder = {
                    "token": token,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "user": _user(),
                    "note": self.note,
                    "since": self._transport.now_ms(),
                    "ttl": self.ttl,
                }
                value = json.dumps(holder).encode()
                if redis_.set(self.key, value, nx=True, px=ttl_ms):
                    break
            left = end - time.monotonic()
            if left <= 0:
                info = lock_info(self._proxy)
                if info is None:
                    continue  # released in the meantime: try once more
                raise LockedError(f"{self.service!r} is locked by {_describe(info)}", holder=info)
            time.sleep(min(_POLL_S, left))
        self._value, self._token = value, token
        cell.token = token
        if self.renew:
            self._stop.clear()
            self._renewer = threading.Thread(
                target=self._keep, name=f"redisrpc-lock-{self.service}", daemon=True
            )
            self._renewer.start()
        return self

    def _keep(self) -> None:
        """Extend the lock every third of its ttl while it is held."""
        value = self._value or b""
        ttl_ms = max(1, int(self.ttl * 1000))
        while not self._stop.wait(self.ttl / 3):
            try:
                with self._transport.translated():
                    kept = self._transport.redis.eval(_RENEW, 1, self.key, value, ttl_ms)
            except RedisRPCError as exc:
                log.warning("could not renew the lock of %r: %s", self.service, exc)
                continue
            if not kept:
                log.warning("the lock of %r expired before it could be renewed", self.service)
                return

    def release(self) -> bool:
        """Give the lock back; return whether it was still ours to release."""
        if self._token is None:
            return False
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        self._renewer = None
        cell = self._cell()
        if cell.token == self._token:
            cell.token = None
        value, self._value, self._token = self._value or b"", None, None
        with self._transport.translated():
            return bool(self._transport.redis.eval(_RELEASE, 1, self.key, value))

    def __enter__(self) -> Lock:
        return self if self.held else self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def lock(proxy: Any, *, ttl: float = 30.0, note: str = "", wait: float = 0.0) -> Lock:
    """Hold ``proxy``'s service for a sequence of calls: ``with redisrpc.lock(stage): ...``.

    Args:
        proxy: a redisrpc client proxy.
        ttl: seconds the lock outlives its holder if the holder dies; a live
            holder renews it.
        note: why you hold it, shown to others (in LockedError and lock_info).
        wait: seconds to wait for a lock someone else holds before raising
            :class:`~redisrpc.LockedError` (0: fail at once).
    """
    return Lock(proxy, ttl=ttl, note=note, wait=wait)
