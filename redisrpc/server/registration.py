"""A server instance's registry entry: register, heartbeat in a thread, deregister.

The key layout and the plans this runs live in :mod:`redisrpc.core.registry`;
discovery, the reading side, in :mod:`redisrpc.client.discovery`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Any

from .._version import __version__
from ..core.keys import instance_id
from ..core.protocol import PROTOCOL_VERSION
from ..core.registry import (
    DEFAULT_HEARTBEAT,
    DEFAULT_PREFIX,
    MAX_HEARTBEAT,
    STALE_BEATS,
    beating,
    deregistering,
    summary_of,
    type_name,
)
from ..core.transport import Transport
from ..errors import RedisRPCError

__all__ = ["Registration"]

log = logging.getLogger("redisrpc.registry")


class Registration:
    """One server instance's registry entry: register, heartbeat in a thread, deregister.

    The server owns one and calls :meth:`start` when its loop starts and
    :meth:`stop` when it ends. Every heartbeat rewrites the whole entry, so an
    instance reappears by itself after Redis lost its data (a restart).

    Args:
        transport: where to register.
        name: the service name.
        obj: the served object (its class name and docstring summary are published).
        prefix: the registry's key prefix.
        heartbeat: seconds between heartbeats; the entry goes stale after
            :data:`~redisrpc.core.registry.STALE_BEATS` missed ones.
    """

    def __init__(
        self,
        transport: Transport,
        name: str,
        obj: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        heartbeat: float = DEFAULT_HEARTBEAT,
    ) -> None:
        if not (0 < heartbeat <= MAX_HEARTBEAT):
            raise ValueError(f"heartbeat must be between 0 and {MAX_HEARTBEAT:g} seconds")
        if not prefix:
            raise ValueError("the registry prefix must not be empty")
        self.transport = transport
        self.name = name
        self.prefix = prefix
        self.heartbeat = float(heartbeat)
        self.stale_ms = max(1, int(STALE_BEATS * heartbeat * 1000))
        self.host = socket.gethostname()
        self.pid = os.getpid()
        unique = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"
        self.id = instance_id(name, unique, cluster=transport.cluster)
        self.meta: dict[str, str | int | float] = {
            "name": name,
            "host": self.host,
            "pid": self.pid,
            "class": type(obj).__qualname__,
            "type": type_name(obj),
            "summary": summary_of(obj),
            "library": f"redisrpc {__version__}",
            "protocol": PROTOCOL_VERSION,
            "language": "python",
            "heartbeat_ms": int(self.heartbeat * 1000),
        }
        self.started_at_ms: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.first_beat = threading.Event()
        """Set once the first heartbeat was attempted (whether or not Redis took it)."""

    def __repr__(self) -> str:
        return f"<redisrpc.Registration {self.name!r} {self.id} under {self.prefix!r}>"

    def describe_extra(self) -> dict[str, Any]:
        """The keys a server adds to its description so clients can check liveness."""
        return {"registered": True, "instance": self.id, "registry_prefix": self.prefix}

    def beat(self) -> None:
        """Write the whole entry with a fresh expiry, in one round trip; raises on Redis errors."""
        self.started_at_ms = self.transport.run(
            beating(
                self.prefix,
                self.name,
                self.id,
                self.meta,
                stale_ms=self.stale_ms,
                started_at_ms=self.started_at_ms,
            )
        )

    def deregister(self) -> None:
        """Remove this instance's entry now; raises on Redis errors."""
        self.transport.run(deregistering(self.prefix, self.name, self.id))

    def _beat_logged(self) -> None:
        try:
            self.beat()
        except RedisRPCError as exc:
            if not self._failing:
                log.warning("%s: registry heartbeat failed (%s); retrying", self.name, exc)
            self._failing = True
            return
        if self._failing:
            log.info("%s: registry heartbeat restored", self.name)
        self._failing = False

    def _run(self) -> None:
        self._beat_logged()
        self.first_beat.set()
        while not self._stop.wait(self.heartbeat):
            self._beat_logged()

    def start(self) -> Registration:
        """Start the heartbeat thread, which registers at once (errors are logged, not raised).

        Registering in the thread lets the server's loop start without waiting
        for Redis; the entry appears a round trip later.
        """
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self.first_beat.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"redisrpc-heartbeat-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the heartbeat and deregister (errors are logged: the entry then lapses)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        try:
            self.deregister()
        except RedisRPCError as exc:
            log.warning(
                "%s: could not deregister (%s); the entry lapses in %.1f s",
                self.name,
                exc,
                self.stale_ms / 1000,
            )
