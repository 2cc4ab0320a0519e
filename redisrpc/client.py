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

from .errors import (
    MessageTooLargeError,
    ProtocolError,
    RedisConnectionError,
    RemoteException,
    TimeoutException,
)
from .protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DESCRIBE,
    Request,
    decode_reply,
    encode_request,
    reply_queue_prefix,
)
from .proxy import ProxyBase, build_proxy_class, error_from_reply
from .transport import Transport

__all__ = ["DEFAULT_TIMEOUT", "Client", "description", "refresh", "with_timeout"]

DEFAULT_TIMEOUT = 30.0
"""Seconds a call waits for its reply unless the client or the call says otherwise."""

_WAIT_SLICE = 1.0  # the longest single BLPOP, so a long wait stays interruptible

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
        if not (timeout > 0 and timeout < float("inf")):
            raise ValueError("timeout must be a positive, finite number of seconds")
        transport = Transport.of(redis)
        self._rpc_name = name
        self._rpc_transport = transport
        self._rpc_location = transport.location
        self._rpc_timeout = float(timeout)
        self._rpc_reply_prefix = reply_queue_prefix(name)
        self._rpc_description = None
        self._rpc_max_size = DEFAULT_MAX_MESSAGE_SIZE
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
        transport: Transport = self._rpc_transport
        timeout: float = self._rpc_timeout
        call_id = secrets.token_hex(16)
        reply_queue = self._rpc_reply_prefix + call_id
        started = time.monotonic()
        end = started + timeout
        with transport.translated():
            deadline = transport.now_ms() + int(timeout * 1000)
        data = encode_request(
            Request(name, list(args), kwargs, reply_queue, call_id, deadline, self._rpc_lock_token())
        )
        if len(data) > self._rpc_max_size:
            raise MessageTooLargeError(
                f"request for {name}() is {len(data)} bytes, over the server's limit of"
                f" {self._rpc_max_size}"
            )
        pipe = transport.redis.pipeline(transaction=False)
        pipe.rpush(self._rpc_name, data)
        pipe.blpop([reply_queue], timeout=_slice(end))
        try:
            with transport.translated():
                _, popped = pipe.execute()
                while popped is None:
                    if time.monotonic() >= end:
                        self._rpc_give_up(name, data, reply_queue, timeout)
                    self._rpc_check_alive(name, data, reply_queue)
                    popped = transport.redis.blpop([reply_queue], timeout=_slice(end))
        except RedisConnectionError as exc:
            raise RedisConnectionError(
                f"{exc}; the call {self._rpc_name}.{name}() may or may not have been delivered,"
                " and will not start after its deadline"
            ) from exc
        reply = decode_reply(popped[1])
        if reply.error is not None:
            raise error_from_reply(reply.error, self._rpc_name)
        return reply.value

    def _rpc_lock_token(self) -> str | None:
        return None

    def _rpc_check_alive(self, name: str, data: bytes, reply_queue: str) -> None:
        """Hook run between waits; the registry makes it fail fast on dead services."""

    def _rpc_give_up(self, name: str, data: bytes, reply_queue: str, timeout: float) -> None:
        """Withdraw the request if no server took it yet, then raise TimeoutException."""
        redis_ = self._rpc_transport.redis
        with self._rpc_transport.translated():
            removed = redis_.lrem(self._rpc_name, 1, data)
            redis_.delete(reply_queue)
        if removed:
            raise TimeoutException(
                f"{self._rpc_name}.{name}() timed out after {timeout:g} s: no server took the"
                " request, which was withdrawn and will never run",
                started=False,
            )
        raise TimeoutException(
            f"{self._rpc_name}.{name}() timed out after {timeout:g} s: a server took the request"
            " but did not answer in time (it may still be running)",
            started=True,
        )


def _slice(end: float) -> float:
    return max(0.01, min(_WAIT_SLICE, end - time.monotonic()))


def _base_class(cls: type[ProxyBase]) -> type[ProxyBase]:
    """The hand-written class under a generated proxy class."""
    return cls.__base__ if cls.__module__ == "redisrpc.remote" else cls  # type: ignore[return-value]


def refresh(proxy: ProxyBase) -> dict[str, Any] | None:
    """Fetch a proxy's remote description again (after the server changed)."""
    return proxy._rpc_refresh()  # type: ignore[attr-defined, no-any-return]


def description(proxy: ProxyBase) -> dict[str, Any] | None:
    """Return the cached ``__describe__`` payload of a proxy (no network)."""
    return proxy.__dict__.get("_rpc_description")


def with_timeout(proxy: P, timeout: float) -> P:
    """Return a proxy like ``proxy`` whose calls wait ``timeout`` seconds.

    ``redisrpc.with_timeout(stage, 120).home()`` gives one slow call more time
    without changing the shared proxy.
    """
    if not (timeout > 0 and timeout < float("inf")):
        raise ValueError("timeout must be a positive, finite number of seconds")
    return proxy._rpc_with(timeout=float(timeout))  # type: ignore[attr-defined, no-any-return]
