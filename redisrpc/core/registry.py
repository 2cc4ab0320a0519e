"""The live-server registry: servers announce themselves, anyone can list them.

Every :class:`~redisrpc.Server` (unless ``register=False``) keeps one entry
per running instance in Redis, refreshed by a heartbeat thread and removed at
once on a clean stop. An instance that dies without cleaning up (``kill -9``,
power loss) drops out by itself when its heartbeat lapses: nobody has to
sweep. ::

    for service in redisrpc.discover(redis.Redis()):
        print(service.name, service.class_name, len(service.instances), service.queue_depth)

Layout (all keys under one prefix, ``redisrpc`` by default; PROTOCOL.md has
the details for other languages):

* ``<prefix>:services`` -- sorted set of service names, scored by the latest
  expiry time (epoch ms, Redis clock) of any of their instances;
* ``<prefix>:service:<name>`` -- sorted set of instance ids, each scored by
  its own expiry time: last heartbeat + its stale window;
* ``<prefix>:instance:<id>`` -- hash of the instance's metadata, with a TTL
  equal to its stale window.

An instance is live while its score is in the future. Scoring by expiry,
rather than by last heartbeat, lets instances with different heartbeat rates
share a service and lets a reader decide liveness with one ``ZCOUNT``.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Any

import redis
from redis.typing import EncodableT

from .._version import __version__
from ..core.protocol import PROTOCOL_VERSION
from ..errors import RedisRPCError
from .plan import NOW, Plan
from .transport import Transport

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_PREFIX",
    "STALE_BEATS",
    "InstanceInfo",
    "Registration",
    "ServiceInfo",
    "counting_live",
    "discover",
    "listing_names",
    "live_instances",
    "liveness_prefix",
]

log = logging.getLogger("redisrpc.registry")

DEFAULT_PREFIX = "redisrpc"
DEFAULT_HEARTBEAT = 1.0
"""Seconds between heartbeats."""
STALE_BEATS = 5
"""An instance that missed this many heartbeats in a row is no longer live."""
MAX_HEARTBEAT = 60.0

# The index keys outlive every instance's stale window (at most 5 x 60 s), so a
# short-lived instance can never make them expire under a long-lived one.
_INDEX_TTL_MS = 600_000


def _services_key(prefix: str) -> str:
    return f"{prefix}:services"


def _service_key(prefix: str, name: str) -> str:
    return f"{prefix}:service:{name}"


def _instance_key(prefix: str, instance: str) -> str:
    return f"{prefix}:instance:{instance}"


def summary_of(obj: Any) -> str:
    """Return the first line of an object's docstring (or its class's), at most 200 characters."""
    doc = inspect.getdoc(obj) or ""
    for line in doc.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


@dataclass(frozen=True)
class InstanceInfo:
    """One running server instance, as read from the registry (times: epoch s, Redis clock)."""

    id: str
    name: str
    host: str
    pid: int
    class_name: str
    summary: str
    started_at: float
    last_seen: float
    library: str
    protocol: int


@dataclass(frozen=True)
class ServiceInfo:
    """A service name with its live instances and the number of requests waiting in its queue."""

    name: str
    class_name: str
    summary: str
    instances: tuple[InstanceInfo, ...]
    queue_depth: int

    @property
    def last_seen(self) -> float:
        """The latest heartbeat of any instance (epoch seconds, Redis clock)."""
        return max((i.last_seen for i in self.instances), default=0.0)

    @property
    def started_at(self) -> float:
        """When the oldest live instance started (epoch seconds, Redis clock)."""
        return min((i.started_at for i in self.instances), default=0.0)


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
            :data:`STALE_BEATS` missed ones.
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
        self.id = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"
        self.meta: dict[EncodableT, EncodableT] = {
            "name": name,
            "host": self.host,
            "pid": self.pid,
            "class": type(obj).__qualname__,
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
        now = self.transport.now_ms()
        if self.started_at_ms is None:
            self.started_at_ms = now
        expires = now + self.stale_ms
        service = _service_key(self.prefix, self.name)
        services = _services_key(self.prefix)
        instance = _instance_key(self.prefix, self.id)
        pipe = self.transport.redis.pipeline(transaction=False)
        pipe.hset(
            instance, mapping={**self.meta, "started_at": self.started_at_ms, "last_seen": now}
        )
        pipe.pexpire(instance, self.stale_ms)
        pipe.zadd(service, {self.id: expires})
        # Sweep crashed siblings so the set does not grow without bound.
        pipe.zremrangebyscore(service, "-inf", now)
        pipe.pexpire(service, _INDEX_TTL_MS)
        pipe.zadd(services, {self.name: expires}, gt=True)
        pipe.zremrangebyscore(services, "-inf", now)
        pipe.pexpire(services, _INDEX_TTL_MS)
        with self.transport.translated():
            pipe.execute()

    def deregister(self) -> None:
        """Remove this instance's entry now; raises on Redis errors."""
        pipe = self.transport.redis.pipeline(transaction=False)
        pipe.zrem(_service_key(self.prefix, self.name), self.id)
        pipe.delete(_instance_key(self.prefix, self.id))
        with self.transport.translated():
            pipe.execute()

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


def counting_live(name: str, *, prefix: str = DEFAULT_PREFIX) -> Plan[int]:
    """The :data:`~redisrpc.core.transport.Plan` that counts ``name``'s live instances: one ZCOUNT.

    ``await async_transport.run(counting_live(name))`` is the asyncio form of
    :func:`live_instances`.
    """
    now = yield NOW
    (count,) = yield (("ZCOUNT", _service_key(prefix, name), f"({now}", "+inf"),)
    return int(count)


def listing_names(*, prefix: str = DEFAULT_PREFIX) -> Plan[list[str]]:
    """The plan that lists the names of services with a live instance: one ZRANGEBYSCORE."""
    now = yield NOW
    (names,) = yield (("ZRANGEBYSCORE", _services_key(prefix), f"({now}", "+inf"),)
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def live_instances(transport: Transport, name: str, *, prefix: str = DEFAULT_PREFIX) -> int:
    """Return how many live instances the registry lists for ``name`` (one round trip)."""
    return transport.run(counting_live(name, prefix=prefix))


def liveness_prefix(description: dict[str, Any] | None) -> str | None:
    """The registry prefix a described service registers under, or None if it does not.

    Reads what :meth:`Registration.describe_extra` puts in the description;
    only such services can be declared gone.
    """
    if not isinstance(description, dict) or description.get("registered") is not True:
        return None
    prefix = description.get("registry_prefix")
    return prefix if isinstance(prefix, str) and prefix else None


def _text(raw: dict[bytes, bytes], key: str, default: str = "") -> str:
    value = raw.get(key.encode())
    return value.decode("utf-8", "replace") if value is not None else default


def _number(raw: dict[bytes, bytes], key: str) -> int:
    try:
        return int(raw.get(key.encode(), b"0"))
    except ValueError:
        return 0


def _instance(instance_id: str, service: str, raw: dict[bytes, bytes]) -> InstanceInfo:
    return InstanceInfo(
        id=instance_id,
        name=_text(raw, "name", service),
        host=_text(raw, "host"),
        pid=_number(raw, "pid"),
        class_name=_text(raw, "class"),
        summary=_text(raw, "summary"),
        started_at=_number(raw, "started_at") / 1000.0,
        last_seen=_number(raw, "last_seen") / 1000.0,
        library=_text(raw, "library"),
        protocol=_number(raw, "protocol"),
    )


def discover(
    redis: redis.Redis | Transport | str | None, *, prefix: str = DEFAULT_PREFIX
) -> list[ServiceInfo]:
    """Return the live services in the registry, sorted by name.

    ``redis`` is a redis-py client, a :class:`~redisrpc.core.transport.Transport`,
    a URL, or None for ``REDIS_URL``. Three round trips, however many servers
    there are. Raises :class:`~redisrpc.RedisConnectionError` when Redis
    cannot be reached.
    """
    transport = redis if isinstance(redis, Transport) else Transport.of(redis)
    with transport.translated():
        pipe = transport.redis.pipeline(transaction=False)
        pipe.time()  # the Redis clock itself, in the same round trip
        pipe.zrange(_services_key(prefix), 0, -1, withscores=True)
        (seconds, micros), indexed = pipe.execute()
        now = seconds * 1000 + micros // 1000
        names = [n.decode("utf-8", "replace") for n, score in indexed if score > now]
        pipe = transport.redis.pipeline(transaction=False)
        for name in names:
            pipe.zrangebyscore(_service_key(prefix, name), f"({now}", "+inf")
            pipe.llen(name)
        listed = pipe.execute(raise_on_error=False) if names else []
        ids: list[tuple[str, list[str], int]] = []
        for i, name in enumerate(names):
            members, depth = listed[2 * i], listed[2 * i + 1]
            if isinstance(members, Exception) or not members:
                continue
            ids.append(
                (
                    name,
                    sorted(m.decode("utf-8", "replace") for m in members),
                    depth if isinstance(depth, int) else 0,
                )
            )
        pipe = transport.redis.pipeline(transaction=False)
        for _, members, _ in ids:
            for member in members:
                pipe.hgetall(_instance_key(prefix, member))
        metadata = iter(pipe.execute(raise_on_error=False) if ids else [])
    services = []
    for name, members, depth in ids:
        instances = []
        for member in members:
            raw = next(metadata)
            if isinstance(raw, dict) and raw:  # gone between the two reads: skip it
                instances.append(_instance(member, name, raw))
        if not instances:
            continue
        instances.sort(key=lambda i: (i.started_at, i.id))
        first = instances[0]
        services.append(
            ServiceInfo(
                name=name,
                class_name=first.class_name,
                summary=first.summary,
                instances=tuple(instances),
                queue_depth=depth,
            )
        )
    services.sort(key=lambda s: s.name)
    return services
