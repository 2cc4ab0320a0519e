"""An embedded Redis for trying redisrpc on a machine without one.

::

    url = redisrpc.ensure_redis()      # REDIS_URL or localhost if it answers, else embedded
    calc = redisrpc.Client(url, "calc")

:func:`ensure_redis` prefers a real Redis: only when none answers does it
start fakeredis's TCP server (``pip install 'redisrpc[embedded]'``) on a free
loopback port, in daemon threads of this process, and log that it did. Other
processes reach it by its URL for as long as this process runs. It is meant
for demos, notebooks and tests, not production: data lives in memory only.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from .core.transport import Transport, resolve_url
from .errors import RedisConnectionError

__all__ = ["EmbeddedRedis", "ensure_redis", "is_reachable"]

log = logging.getLogger("redisrpc.embedded")

_started: EmbeddedRedis | None = None
_started_lock = threading.Lock()


class EmbeddedRedis:
    """A fakeredis TCP server in this process: ``start()``, ``url``, ``stop()``.

    Args:
        host: the address to listen on (loopback by default: nothing is
            exposed to the network unless you ask).
        port: the TCP port; 0 picks a free one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL clients connect to (valid once started)."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._thread is not None and self._thread.is_alive()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<redisrpc.EmbeddedRedis {self.url} ({state})>"

    def start(self) -> EmbeddedRedis:
        """Start serving in a daemon thread and return once connections are accepted."""
        if self.running:
            return self
        try:
            from fakeredis import TcpFakeServer  # noqa: PLC0415 - an optional extra
        except ImportError as exc:
            raise RuntimeError(
                "the embedded Redis needs fakeredis: pip install 'redisrpc[embedded]'"
            ) from exc
        try:
            server = TcpFakeServer((self.host, self.port))
        except OSError as exc:
            raise RedisConnectionError(
                f"cannot start an embedded Redis on {self.host}:{self.port}: {exc}"
            ) from exc
        # One handler thread per connection; daemon threads let the process exit
        # while clients are still connected.
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"redisrpc-embedded-redis-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting connections and close the listening socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._thread = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def is_reachable(url: str | None = None, *, timeout: float = 1.0) -> bool:
    """Whether a Redis answers PING at ``url`` (default ``REDIS_URL`` or localhost).

    Raises :class:`~redisrpc.TransportError` when a Redis answers but refuses
    access (wrong password): that is a real Redis, misconfigured.
    """
    transport = Transport.of(resolve_url(url), socket_timeout=timeout, connect_timeout=timeout)
    try:
        transport.ping()
        return True
    except RedisConnectionError:
        return False
    finally:
        transport.close()


def ensure_redis(url: str | None = None, *, fallback: bool = True, quiet: bool = False) -> str:
    """Return the URL of a Redis that answers, starting an embedded one if needed.

    ``url`` (default: ``REDIS_URL``, else ``redis://localhost:6379/0``) is
    returned when a Redis answers there. Otherwise, with ``fallback`` (the
    default), an embedded Redis is started on a free loopback port -- once
    per process; later calls reuse it -- a warning is logged, and its URL is
    returned. Without ``fallback``, raises :class:`~redisrpc.RedisConnectionError`.
    ``quiet`` skips the warning, for callers that announce it themselves.
    """
    global _started
    target = resolve_url(url)
    if is_reachable(target):
        return target
    if not fallback:
        raise RedisConnectionError(f"no Redis answers at {target}")
    with _started_lock:
        if _started is None or not _started.running:
            _started = EmbeddedRedis().start()
            if not quiet:
                log.warning(
                    "no Redis answers at %s; started an embedded Redis (fakeredis) at %s,"
                    " which lives as long as this process",
                    target,
                    _started.url,
                )
        return _started.url
