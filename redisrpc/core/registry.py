"""The live-server registry's key layout and the plans that read and write it.

Every :class:`~redisrpc.Server` (unless ``register=False``) keeps one entry
per running instance in Redis, refreshed by a heartbeat thread
(:mod:`redisrpc.server.registration`) and removed at once on a clean stop. An
instance that dies without cleaning up (``kill -9``, power loss) drops out by
itself when its heartbeat lapses: nobody has to sweep. Clients list it with
:func:`redisrpc.discover` (:mod:`redisrpc.client.discovery`). ::

    for service in redisrpc.discover(redis.Redis()):
        print(service.name, service.class_name, len(service.instances), service.queue_depth)

Every read and write is a :data:`~redisrpc.core.transport.Plan`, so the sync
and asyncio transports share it.

Layout (all keys under one prefix, ``redisrpc`` by default; PROTOCOL.md has
the details for other languages):

* ``<prefix>:services`` -- sorted set of service names, scored by the latest
  expiry time (epoch ms, Redis clock) of any of their instances;
* ``<prefix>:service:<name>`` -- sorted set of instance ids, each scored by
  its own expiry time: last heartbeat + its stale window;
* ``<prefix>:instance:<id>`` -- hash of the instance's metadata, with a TTL
  equal to its stale window. ``class`` is the served object's class name,
  ``type`` its module-qualified name (which tells two classes of one name
  apart, see :func:`serving_types`).

An instance is live while its score is in the future. Scoring by expiry,
rather than by last heartbeat, lets instances with different heartbeat rates
share a service and lets a reader decide liveness with one ``ZCOUNT``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from .keys import instance_key, service_key, services_key  # re-exported
from .plan import NOW, Each, Plan
from .transport import Transport

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_PREFIX",
    "MAX_HEARTBEAT",
    "STALE_BEATS",
    "InstanceRecord",
    "ServiceRecord",
    "beating",
    "counting_live",
    "deregistering",
    "discovering",
    "instance_key",
    "listing_names",
    "live_instances",
    "liveness_prefix",
    "service_key",
    "services_key",
    "serving_types",
    "summary_of",
    "type_name",
]

DEFAULT_PREFIX = "redisrpc"
DEFAULT_HEARTBEAT = 1.0
"""Seconds between heartbeats."""
STALE_BEATS = 5
"""An instance that missed this many heartbeats in a row is no longer live."""
MAX_HEARTBEAT = 60.0

# The index keys outlive every instance's stale window (at most 5 x 60 s), so a
# short-lived instance can never make them expire under a long-lived one.
_INDEX_TTL_MS = 600_000

InstanceRecord = tuple[str, dict[bytes, bytes]]
"""One live instance as stored: its id and its raw metadata hash."""
ServiceRecord = tuple[str, int, list[InstanceRecord]]
"""One live service as stored: its name, its queue depth, its instances (by id)."""


def summary_of(obj: Any) -> str:
    """Return the first line of an object's docstring (or its class's), at most 200 characters."""
    doc = inspect.getdoc(obj) or ""
    for line in doc.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def type_name(obj: Any) -> str:
    """The module-qualified class name of ``obj``, as the registry's ``type`` field holds it."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def beating(
    prefix: str,
    name: str,
    instance: str,
    meta: Mapping[str, str | int | float],
    *,
    stale_ms: int,
    started_at_ms: int | None = None,
) -> Plan[int]:
    """The plan of one heartbeat: write the whole entry with a fresh expiry, one round trip.

    Scores are in the Redis clock (the ``NOW`` step), so a step of the local
    wall clock cannot make a live instance look expired. Returns the entry's
    ``started_at`` (``started_at_ms``, or now on the first beat).
    """
    now: int = yield NOW
    started = now if started_at_ms is None else started_at_ms
    expires = now + stale_ms
    service, services = service_key(prefix, name), services_key(prefix)
    entry = instance_key(prefix, instance)
    fields: list[Any] = []
    for key, value in {**meta, "started_at": started, "last_seen": now}.items():
        fields += (key, value)
    # Two exchanges, one round trip on a single Redis: on a cluster the entry
    # lives in the service's hash slot and the index in its own.
    yield Each(
        (
            (
                ("HSET", entry, *fields),
                ("PEXPIRE", entry, stale_ms),
                ("ZADD", service, expires, instance),
                # Sweep crashed siblings so the set does not grow without bound.
                ("ZREMRANGEBYSCORE", service, "-inf", now),
                ("PEXPIRE", service, _INDEX_TTL_MS),
            ),
            (
                ("ZADD", services, "GT", expires, name),
                ("ZREMRANGEBYSCORE", services, "-inf", now),
                ("PEXPIRE", services, _INDEX_TTL_MS),
            ),
        )
    )
    return started


def deregistering(prefix: str, name: str, instance: str) -> Plan[None]:
    """The plan that removes one instance's entry now (one round trip)."""
    yield (("ZREM", service_key(prefix, name), instance), ("DEL", instance_key(prefix, instance)))


def counting_live(name: str, *, prefix: str = DEFAULT_PREFIX) -> Plan[int]:
    """The :data:`~redisrpc.core.transport.Plan` that counts ``name``'s live instances: one ZCOUNT.

    ``await async_transport.run(counting_live(name))`` is the asyncio form of
    :func:`live_instances`.
    """
    now = yield NOW
    (count,) = yield (("ZCOUNT", service_key(prefix, name), f"({now}", "+inf"),)
    return int(count)


def listing_names(*, prefix: str = DEFAULT_PREFIX) -> Plan[list[str]]:
    """The plan that lists the names of services with a live instance: one ZRANGEBYSCORE."""
    now = yield NOW
    (names,) = yield (("ZRANGEBYSCORE", services_key(prefix), f"({now}", "+inf"),)
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def live_instances(transport: Transport, name: str, *, prefix: str = DEFAULT_PREFIX) -> int:
    """Return how many live instances the registry lists for ``name`` (one round trip)."""
    return transport.run(counting_live(name, prefix=prefix))


def serving_types(name: str, *, prefix: str = DEFAULT_PREFIX) -> Plan[dict[str, str]]:
    """The plan that maps each live instance of ``name`` to the class it serves.

    The value is the ``type`` field (module-qualified), or the bare ``class``
    field for instances of older versions that do not write ``type``.
    """
    now = yield NOW
    (members,) = yield (("ZRANGEBYSCORE", service_key(prefix, name), f"({now}", "+inf"),)
    ids = [_text(m) for m in members]
    if not ids:
        return {}
    found = yield tuple(("HMGET", instance_key(prefix, i), "type", "class") for i in ids)
    # (one slot: a service's instance ids carry its hash tag on a cluster)
    serving = {}
    for instance, (full, bare) in zip(ids, found, strict=True):
        if full is not None or bare is not None:  # gone meanwhile: skip it
            serving[instance] = _text(full if full is not None else bare)
    return serving


def discovering(prefix: str = DEFAULT_PREFIX) -> Plan[list[ServiceRecord]]:
    """The plan that reads every live service and instance: three round trips in all.

    The Redis clock comes with the first read (``TIME``), so liveness is
    decided by Redis's own time. Services are returned in index order with
    their instances sorted by id; an instance that vanished between the reads
    is left out, and so is a service left with none.
    """
    (seconds, micros), indexed = yield (
        ("TIME",),
        ("ZRANGE", services_key(prefix), 0, -1, "WITHSCORES"),
    )
    now = int(seconds) * 1000 + int(micros) // 1000
    names = [_text(n) for n, score in _scored(indexed) if score > now]
    if not names:
        return []
    # One exchange per service (its hash slot on a cluster); one write on a single Redis.
    listed = yield Each(
        tuple(
            (
                ("ZRANGEBYSCORE", service_key(prefix, name), f"({now}", "+inf"),
                ("TYPE", name),  # LLEN on a key that is not a list would be an error reply
            )
            for name in names
        )
    )
    found: list[tuple[str, list[str], bool]] = []
    for name, (members, kind) in zip(names, listed, strict=True):
        if members:
            found.append((name, sorted(_text(m) for m in members), _text(kind) == "list"))
    if not found:
        return []
    read = yield Each(
        tuple(
            (
                *(("HGETALL", instance_key(prefix, m)) for m in members),
                *((("LLEN", name),) if is_list else ()),
            )
            for name, members, is_list in found
        )
    )
    replies = iter(reply for exchange in read for reply in exchange)
    services: list[ServiceRecord] = []
    for name, members, is_list in found:
        instances = [(m, _hash(next(replies))) for m in members]
        depth = int(next(replies)) if is_list else 0
        instances = [(m, raw) for m, raw in instances if raw]
        if instances:
            services.append((name, depth, instances))
    return services


def liveness_prefix(description: dict[str, Any] | None) -> str | None:
    """The registry prefix a described service registers under, or None if it does not.

    Reads what :meth:`Registration.describe_extra
    <redisrpc.server.registration.Registration.describe_extra>` puts in the
    description; only such services can be declared gone.
    """
    if not isinstance(description, dict) or description.get("registered") is not True:
        return None
    prefix = description.get("registry_prefix")
    return prefix if isinstance(prefix, str) and prefix else None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _scored(reply: Sequence[Any]) -> list[tuple[Any, float]]:
    """(member, score) pairs of a WITHSCORES reply: flat in RESP2, pairs in RESP3."""
    if reply and isinstance(reply[0], (list, tuple)):
        return [(member, float(score)) for member, score in reply]
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


def _hash(reply: Any) -> dict[bytes, bytes]:
    """A HGETALL reply as a dict: a flat list in RESP2, a map in RESP3."""
    if isinstance(reply, dict):
        return reply
    return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}
