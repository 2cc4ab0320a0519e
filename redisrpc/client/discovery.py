"""Discovery: list the live services of the registry, with their instances.

::

    for service in redisrpc.discover(redis.Redis()):
        print(service.name, service.class_name, len(service.instances), service.queue_depth)

The registry itself (its keys, the heartbeat) is described in
:mod:`redisrpc.core.registry`; this module turns what it stores into
:class:`ServiceInfo` and :class:`InstanceInfo` values.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from ..core.keys import service_name
from ..core.registry import DEFAULT_PREFIX, ServiceRecord, discovering
from ..core.transport import Transport

__all__ = ["InstanceInfo", "ServiceInfo", "discover"]


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


def _text(raw: dict[bytes, bytes], key: str, default: str = "") -> str:
    value = raw.get(key.encode())
    return value.decode("utf-8", "replace") if value is not None else default


def _number(raw: dict[bytes, bytes], key: str) -> int:
    try:
        return int(raw.get(key.encode(), b"0"))
    except ValueError:
        return 0


def _instance(
    instance_id: str, service: str, raw: dict[bytes, bytes], *, cluster: bool = False
) -> InstanceInfo:
    return InstanceInfo(
        id=instance_id,
        name=service_name(_text(raw, "name", service), cluster=cluster),
        host=_text(raw, "host"),
        pid=_number(raw, "pid"),
        class_name=_text(raw, "class"),
        summary=_text(raw, "summary"),
        started_at=_number(raw, "started_at") / 1000.0,
        last_seen=_number(raw, "last_seen") / 1000.0,
        library=_text(raw, "library"),
        protocol=_number(raw, "protocol"),
    )


def services_of(records: list[ServiceRecord], *, cluster: bool = False) -> list[ServiceInfo]:
    """The :class:`ServiceInfo` values for what :func:`~redisrpc.core.registry.discovering` read.

    On a cluster (``cluster=True``) the registry holds queue names (``{calc}``):
    services are named without the hash tag, as clients and servers are given them.
    """
    services = []
    for queue, depth, stored in records:
        name = service_name(queue, cluster=cluster)
        instances = sorted(
            (_instance(member, name, raw, cluster=cluster) for member, raw in stored),
            key=lambda i: (i.started_at, i.id),
        )
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


def discover(
    redis: redis.Redis | Transport | str | None, *, prefix: str = DEFAULT_PREFIX
) -> list[ServiceInfo]:
    """Return the live services in the registry, sorted by name.

    ``redis`` is a redis-py client, a :class:`~redisrpc.core.transport.Transport`,
    a URL, or None for ``REDIS_URL``. Three round trips, however many servers
    there are. Raises :class:`~redisrpc.RedisConnectionError` when Redis
    cannot be reached. The asyncio form is
    ``services_of(await async_transport.run(discovering(prefix)))``.
    """
    transport = Transport.of(redis)
    return services_of(transport.run(discovering(prefix)), cluster=transport.cluster)
