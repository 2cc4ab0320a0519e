"""The synchronous client: a proxy that turns ``calc.add(5)`` into a call over Redis.

::

    calc = redisrpc.Client(redis.Redis(), "calc")
    calc.add(5)                        # a remote call
    calc.add?                          # signature and docstring, no network
    redisrpc.with_timeout(calc, 120).slow_method()

A proxy is safe to share between threads: every call borrows its own pooled
connection and nothing in the proxy changes after it is built.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, TypeVar

import redis

from ..client.lock import Lock, held_token, lock
from ..client.proxy import ProxyBase, build_proxy_class, checked_timeout, error_from_reply
from ..core.protocol import (
    DESCRIBE,
    Reply,
    Request,
    decode_reply,
    encode_request,
)
from ..core.registry import counting_live, liveness_prefix
from ..core.transport import Plan, Transport
from ..errors import (
    MessageTooLargeError,
    ProtocolError,
    RedisConnectionError,
    RedisRPCError,
    RemoteException,
    ServerGoneError,
    TimeoutException,
)

__all__ = ["DEFAULT_TIMEOUT", "Client", "description", "refresh", "with_timeout"]

DEFAULT_TIMEOUT = 30.0
"""Seconds a call waits for its reply unless the client or the call says otherwise."""

_WAIT_SLICE = 1.0  # the longest single BLPOP, so a long wait stays interruptible
_GONE_GRACE = 1.0  # a default heartbeat period: how long a missing service gets to reappear

P = TypeVar("P", bound=ProxyBase)


class Client(ProxyBase):
    """A proxy for the remote object served on ``name``.

    Args:
        redis: a redis-py client, a URL, or None for ``REDIS_URL``.
        name: the service name (the server's request list).
        timeout: seconds each call waits for its reply (finite; default 30).
        describe: fetch ``__describe__`` now and build a typed proxy (default).
            With False, or against a server that does not answer it (the
            original RedisRPC), any public name is a plain remote call.
    """

    def __init__(
        self,
        redis: redis.Redis | str | None,
        name: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        describe: bool = True,
    ) -> None:
        self._rpc_setup(Transport.of(redis), name, timeout)
        if describe:
            self._rpc_refresh()

    # -- description --------------------------------------------------------

    def _rpc_refresh(self) -> dict[str, Any] | None:
        """Fetch the description again and rebuild this proxy's class from it."""
        try:
            found = self._rpc_call(DESCRIBE, (), {})
        except RemoteException:
            # An original RedisRPC server has no __describe__: stay dynamic.
            found = None
        if found is not None and not isinstance(found, dict):
            raise ProtocolError(f"{self._rpc_name!r} answered __describe__ with {type(found)}")
        self._rpc_adopt(found)
        return found

    def _rpc_adopt(self, found: dict[str, Any] | None) -> None:
        base = _base_class(type(self))
        self._rpc_description = found
        if found is not None:
            size = found.get("max_message_size")
            if isinstance(size, int) and size > 0:
                self._rpc_max_size = size
            object.__setattr__(self, "__class__", build_proxy_class(base, found))
        else:
            object.__setattr__(self, "__class__", base)

    def _rpc_with(self: P, **options: Any) -> P:
        """Return a sibling proxy sharing this one's connection, with other options."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        for key, value in options.items():
            object.__setattr__(twin, f"_rpc_{key}", value)
        return twin

    # -- calling ------------------------------------------------------------

    def _rpc_call(self, name: str, args: Any, kwargs: dict[str, Any]) -> Any:
        """Call ``name`` remotely and return its value, or raise its error."""
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        transport: Transport = self._rpc_transport
        timeout: float = self._rpc_timeout
        end = time.monotonic() + timeout
        with transport.translated():
            deadline = transport.now_ms() + int(timeout * 1000)
        data, reply_queue, _ = encode_call(self, name, args, kwargs, deadline)
        try:
            with transport.translated():
                # The request and the first wait share one round trip.
                pushed, popped = transport.execute(
                    ("RPUSH", self._rpc_name, data), ("BLPOP", reply_queue, wait_slice(end))
                )
                if isinstance(pushed, Exception):
                    raise pushed
                while popped is None:
                    if time.monotonic() >= end:
                        self._rpc_give_up(name, data, reply_queue, timeout)
                    self._rpc_check_alive(name, data, reply_queue)
                    (popped,) = transport.execute(("BLPOP", reply_queue, wait_slice(end)))
        except RedisConnectionError as exc:
            return self._rpc_recover(name, data, reply_queue, exc)
        return outcome(self, popped)

    def _rpc_recover(
        self, name: str, data: bytes, reply_queue: str, exc: RedisConnectionError
    ) -> Any:
        """After a lost connection: the reply if one is waiting, else raise RedisConnectionError.

        One attempt on a fresh connection withdraws the request if it is still
        queued, so a call that failed this way never runs later.
        """
        __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
        try:
            found = self._rpc_transport.rescue(recovering(self._rpc_name, data, reply_queue))
        except RedisRPCError:
            found = None  # Redis is still out of reach
        return recovered(self, name, exc, found)

    def _rpc_lock_token(self) -> str | None:
        """The advisory-lock token this proxy's calls carry (see :mod:`redisrpc.client.lock`)."""
        return held_token(self)

    def _rpc_lock(self, *, ttl: float = 30.0, note: str = "", wait: float = 0.0) -> Lock:
        """Same as ``redisrpc.lock(proxy, ...)``: hold the service for a sequence of calls."""
        return lock(self, ttl=ttl, note=note, wait=wait)

    def _rpc_check_alive(self, name: str, data: bytes, reply_queue: str) -> None:
        """Between waits: fail fast when every registered instance of the service is gone.

        See :func:`checking_gone`; one round trip while the service is alive.
        """
        self._rpc_transport.run(checking_gone(self, name, data, reply_queue))

    def _rpc_give_up(self, name: str, data: bytes, reply_queue: str, timeout: float) -> None:
        """Withdraw the request if no server took it yet, then raise TimeoutException."""
        transport: Transport = self._rpc_transport
        withdrawn = transport.run(withdrawing(self._rpc_name, data, reply_queue))
        raise timed_out(self, name, timeout, withdrawn)


def wait_slice(end: float) -> float:
    """Seconds for the next BLPOP: at most one slice, so long waits stay interruptible."""
    return max(0.01, min(_WAIT_SLICE, end - time.monotonic()))


# The pieces of a call that the sync and async clients share.


def encode_call(
    proxy: Any,
    name: str,
    args: Any,
    kwargs: dict[str, Any],
    deadline: int,
    *,
    reply_queue: str | None = None,
) -> tuple[bytes, str, str]:
    """Encode one call of ``proxy``; return the request bytes, its reply queue and its id.

    Without ``reply_queue`` the call gets a reply list of its own, named after
    its id; with one, the reply carries the id that tells calls apart.
    """
    call_id = secrets.token_hex(16)
    reply_queue = reply_queue or proxy._rpc_reply_prefix + call_id
    request = Request(name, list(args), kwargs, reply_queue, call_id, deadline)
    request.lock = proxy._rpc_lock_token()
    data = encode_request(request)
    if len(data) > proxy._rpc_max_size:
        raise MessageTooLargeError(
            f"request for {name}() is {len(data)} bytes, over the server's limit of"
            f" {proxy._rpc_max_size}"
        )
    return data, reply_queue, call_id


def outcome(proxy: Any, popped: Any) -> Any:
    """The value in a popped reply (a BLPOP result), or raise the error it carries."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
    if isinstance(popped, Exception):
        with proxy._rpc_transport.translated():
            raise popped
    return reply_value(proxy, decode_reply(popped[1]))


def reply_value(proxy: Any, reply: Reply) -> Any:
    """The value a decoded reply carries, or raise its error."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
    if reply.error is not None:
        raise error_from_reply(reply.error, proxy._rpc_name)
    return reply.value


def recovered(
    proxy: Any, name: str, exc: RedisConnectionError, found: tuple[bool, Any] | None
) -> Any:
    """The end of a call whose connection failed, from what :func:`recovering` found.

    A reply that arrived meanwhile is the call's outcome; otherwise this
    raises RedisConnectionError, with ``started=False`` when the request was
    withdrawn. ``found`` is None when Redis could not be asked.
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the error is remote
    withdrawn, popped = found or (False, None)
    if popped is not None:
        return reply_value(proxy, decode_reply(popped))
    if withdrawn:
        raise RedisConnectionError(
            f"{exc}; the request for {proxy._rpc_name}.{name}() was withdrawn and will never run",
            started=False,
        ) from exc
    raise RedisConnectionError(
        f"{exc}; the call {proxy._rpc_name}.{name}() may or may not have been delivered,"
        " and will not start after its deadline"
    ) from exc


def timed_out(proxy: Any, name: str, timeout: float, withdrawn: bool) -> TimeoutException:
    """The timeout error, once the request was withdrawn (never runs) or found taken."""
    if withdrawn:
        return TimeoutException(
            f"{proxy._rpc_name}.{name}() timed out after {timeout:g} s: no server took the"
            " request, which was withdrawn and will never run",
            started=False,
        )
    return TimeoutException(
        f"{proxy._rpc_name}.{name}() timed out after {timeout:g} s: a server took the request"
        " but did not answer in time (it may still be running)",
        started=True,
    )


def gone(proxy: Any, name: str, withdrawn: bool) -> ServerGoneError:
    """The error for a call whose service vanished: its request was withdrawn, or found taken."""
    where = f"every registered instance of {proxy._rpc_name!r} is gone (crashed or stopped)"
    if withdrawn:
        return ServerGoneError(
            f"{where}: {proxy._rpc_name}.{name}() was withdrawn before any server took it"
            " and will never run",
            started=False,
        )
    return ServerGoneError(
        f"{where} while {proxy._rpc_name}.{name}() was running: it may have partly run,"
        " and no reply will come",
        started=True,
    )


def withdrawing(service: str, data: bytes, reply_queue: str | None = None) -> Plan[bool]:
    """Remove a request if still queued; True when it was (it will never run).

    A call's own reply list goes too; a shared one (multiplexed) is left alone.
    """
    commands: list[tuple[Any, ...]] = [("LREM", service, 1, data)]
    if reply_queue is not None:
        commands.append(("DEL", reply_queue))
    removed, *_ = yield tuple(commands)
    return bool(removed)


def recovering(service: str, data: bytes, reply_queue: str) -> Plan[tuple[bool, Any]]:
    """After a lost connection: withdraw the request if still queued, and take a waiting reply.

    Returns (withdrawn, raw reply or None). For a call with its own reply
    list; the multiplexed async calls recover together (``redisrpc.aio``).
    """
    removed, popped = yield (("LREM", service, 1, data), ("LPOP", reply_queue))
    return bool(removed), popped


def checking_gone(proxy: Any, name: str, data: bytes, reply_queue: str) -> Plan[None]:
    """The liveness check of a call waiting on its own reply list; raises ServerGoneError.

    Only for services whose description says they register (see
    :mod:`redisrpc.core.registry`); others are waited on until the timeout. On a
    gone service the request is withdrawn (it never runs) and the reply list
    deleted, unless a reply is already waiting: that reply wins.
    """
    service: str = proxy._rpc_name
    prefix = liveness_prefix(proxy.__dict__.get("_rpc_description"))
    if prefix is None or (yield from counting_live(service, prefix=prefix)):
        return
    # Look twice, a heartbeat apart: a Redis that just restarted lost the registry
    # until the servers' next heartbeat, and those servers are not gone.
    yield _GONE_GRACE
    if (yield from counting_live(service, prefix=prefix)):
        return
    removed, waiting = yield (("LREM", service, 1, data), ("LLEN", reply_queue))
    if waiting:
        return  # the last instance answered before it deregistered
    yield (("DEL", reply_queue),)
    raise gone(proxy, name, bool(removed))


def _base_class(cls: type[ProxyBase]) -> type[ProxyBase]:
    """The hand-written class under a generated proxy class."""
    return cls.__base__ if cls.__module__ == "redisrpc.remote" else cls  # type: ignore[return-value]


def refresh(proxy: ProxyBase) -> dict[str, Any] | None:
    """Fetch a proxy's remote description again (after the server changed)."""
    return proxy._rpc_refresh()  # type: ignore[no-any-return]


def description(proxy: ProxyBase) -> dict[str, Any] | None:
    """Return the cached ``__describe__`` payload of a proxy (no network)."""
    return proxy.__dict__.get("_rpc_description")


def with_timeout(proxy: P, timeout: float) -> P:
    """Return a proxy like ``proxy`` whose calls wait ``timeout`` seconds.

    ``redisrpc.with_timeout(stage, 120).home()`` gives one slow call more time
    without changing the shared proxy.
    """
    return proxy._rpc_with(timeout=checked_timeout(timeout))  # type: ignore[no-any-return]
