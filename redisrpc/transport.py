"""The one boundary between redisrpc and redis-py.

Every Redis command redisrpc sends goes through a :class:`Transport`: it owns
a connection pool configured for RPC (no automatic retries, so a request is
never pushed twice; bounded socket timeouts, so nothing hangs), estimates the
Redis server's clock for deadlines, and translates redis-py exceptions into
:mod:`redisrpc.errors` so users never catch ``redis.exceptions``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.exceptions as rexc
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import RedisConnectionError, RedisRPCError, TransportError

__all__ = [
    "DEFAULT_URL",
    "Transport",
    "resolve_url",
    "translated",
]

DEFAULT_URL = "redis://localhost:6379/0"

# Connection settings that belong to one pool instance and must not be copied.
_POOL_PRIVATE_KWARGS = frozenset({"maint_notifications_pool_handler", "retry", "retry_on_error"})

_CLOCK_REFRESH_S = 60.0


def resolve_url(url: str | None = None) -> str:
    """Return ``url``, else the ``REDIS_URL`` environment variable, else the local default."""
    return url or os.environ.get("REDIS_URL") or DEFAULT_URL


def _describe_location(kwargs: dict[str, Any]) -> str:
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


@contextmanager
def translated(location: str = "Redis") -> Iterator[None]:
    """Translate redis-py exceptions raised inside the block into redisrpc errors."""
    try:
        yield
    except RedisRPCError:
        raise
    except (rexc.AuthenticationError, rexc.NoPermissionError) as exc:
        raise TransportError(f"Redis at {location} refused access: {exc}") from exc
    except rexc.ConnectionError as exc:
        raise RedisConnectionError(f"cannot talk to Redis at {location}: {exc}") from exc
    except rexc.TimeoutError as exc:
        raise RedisConnectionError(f"Redis at {location} did not answer in time: {exc}") from exc
    except rexc.RedisError as exc:
        raise TransportError(f"Redis at {location} returned an error: {exc}") from exc
    except OSError as exc:  # sockets and TLS errors that redis-py lets through
        raise RedisConnectionError(f"cannot talk to Redis at {location}: {exc}") from exc


class Transport:
    """A retry-free Redis connection pool plus a Redis clock estimate.

    Build one with :meth:`Transport.of`; servers and clients each own one.
    """

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
        self.location = _describe_location(kwargs)
        self.pool = redis.ConnectionPool(connection_class=source.connection_class, **kwargs)
        self.redis = redis.Redis(connection_pool=self.pool)
        self.socket_timeout = socket_timeout
        self._offset_ms: float | None = None
        self._offset_at = 0.0
        self._clock_lock = threading.Lock()

    @classmethod
    def of(cls, target: redis.Redis | str | None, **options: Any) -> Transport:
        """Build a transport from a redis-py client, a URL, or None (``REDIS_URL``)."""
        if isinstance(target, Transport):
            return target
        if target is None or isinstance(target, str):
            url = resolve_url(target)
            try:
                client = redis.Redis.from_url(url)
            except ValueError as exc:
                raise TransportError(f"invalid Redis URL {url!r}: {exc}") from exc
        else:
            client = target
        return cls(client, **options)

    def translated(self) -> Any:
        """A context manager that translates redis-py errors, naming this Redis."""
        return translated(self.location)

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.disconnect()

    # -- the Redis clock ----------------------------------------------------

    def now_ms(self) -> int:
        """Return an estimate of the Redis server's clock, in epoch milliseconds.

        Deadlines and heartbeats use the Redis clock, so hosts whose clocks
        disagree still agree on time. The offset is measured with ``TIME``
        and refreshed every minute.
        """
        local = time.time() * 1000.0
        if self._offset_ms is None or time.monotonic() - self._offset_at > _CLOCK_REFRESH_S:
            self._measure_offset()
        assert self._offset_ms is not None
        return int(local + self._offset_ms)

    def _measure_offset(self) -> None:
        with self._clock_lock:
            best: tuple[float, float] | None = None
            for _ in range(3):
                before = time.time() * 1000.0
                with self.translated():
                    seconds, micros = self.redis.time()
                after = time.time() * 1000.0
                rtt = after - before
                offset = seconds * 1000.0 + micros / 1000.0 - (before + after) / 2.0
                if best is None or rtt < best[0]:
                    best = (rtt, offset)
            assert best is not None
            self._offset_ms = best[1]
            self._offset_at = time.monotonic()
