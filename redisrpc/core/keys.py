"""Every Redis key redisrpc uses, named in one place.

A service's keys all derive from its *queue name*, the key of its request
list. On a single Redis (or Sentinel) the queue name is the service name, so
the keys are exactly those of the original RedisRPC and of every earlier
version of this library::

    calc                  request list            calc:rpc:<id>      a reply list
    calc:lock             advisory lock           calc:cancel:<id>   a cancel mark
    calc:cancels          cancel counter          calc:running       running calls
    calc:watchers         watch leases            calc:watch:<name>  a watched value's stream
    calc:poller           which instance polls the watched values
    calc:watch-now        members new watchers want read now (wakes the poller)

On a Redis Cluster the queue name is the service name in a hash tag,
``{calc}``, and every other key of the service starts with it
(``{calc}:rpc:<id>``, ``{calc}:lock`` ...). Redis hashes only the part
between the braces, so all of one service's keys live in one hash slot: a
call (push the request, wait for the reply, mark a cancel) never crosses
slots, and different services spread over the nodes. That one decision is
:func:`queue_name`; nothing else adds braces.

The registry (:mod:`redisrpc.core.registry`) keeps ``<prefix>:services``
(an index of names, its own slot), ``<prefix>:service:<queue name>`` and
``<prefix>:instance:<instance id>``; on a cluster an instance id starts with
its queue name (:func:`instance_id`), so a service's registry entries share
its slot too.
"""

from __future__ import annotations

__all__ = [
    "cancel_key",
    "cancels_key",
    "instance_id",
    "instance_key",
    "is_tagged",
    "lock_key",
    "poller_key",
    "queue_name",
    "reply_queue_prefix",
    "running_key",
    "service_key",
    "service_name",
    "services_key",
    "watch_key",
    "watch_now_key",
    "watchers_key",
]


def is_tagged(name: str) -> bool:
    """Whether ``name`` is already a whole hash tag, ``{...}`` with no other brace."""
    return (
        len(name) > 2
        and name[0] == "{"
        and name[-1] == "}"
        and "{" not in name[1:-1]
        and "}" not in name[1:-1]
    )


def queue_name(service: str, *, cluster: bool = False) -> str:
    """The key of ``service``'s request list; every other key of the service starts with it.

    ``service`` itself on a single Redis (the original RedisRPC's key);
    ``{service}`` on a cluster, so the service's keys share one hash slot. A
    name that already is ``{...}`` is kept, so tagging twice changes nothing.
    """
    if not cluster or is_tagged(service):
        return service
    return "{" + service + "}"


def service_name(queue: str, *, cluster: bool = False) -> str:
    """The service a queue name stands for: :func:`queue_name` undone (``{calc}`` -> ``calc``)."""
    return queue[1:-1] if cluster and is_tagged(queue) else queue


def reply_queue_prefix(queue: str) -> str:
    """Return the prefix every reply queue of ``queue`` must carry (``calc:rpc:``).

    Servers refuse to write anywhere else, so a hostile request cannot make a
    server push into, or set an expiry on, an unrelated key.
    """
    return f"{queue}:rpc:"


def lock_key(queue: str) -> str:
    """The Redis key holding the advisory lock of the service whose queue is ``queue``."""
    return f"{queue}:lock"


def cancel_key(queue: str, call_id: str) -> str:
    """The key a caller sets when it gives up on a call: servers never start it, and stop it."""
    return f"{queue}:cancel:{call_id}"


def cancels_key(queue: str) -> str:
    """A counter callers increment after setting a cancel mark (servers poll only on change)."""
    return f"{queue}:cancels"


def running_key(queue: str) -> str:
    """The hash of the calls each instance is running now (instance id -> JSON)."""
    return f"{queue}:running"


def watchers_key(queue: str) -> str:
    """The sorted set of watch leases (see :mod:`redisrpc.core.watch`), scored by expiry (ms)."""
    return f"{queue}:watchers"


def watch_key(queue: str, target: str) -> str:
    """The stream of a watched member's values (``target``: a name or a dotted path)."""
    return f"{queue}:watch:{target}"


def watch_now_key(queue: str) -> str:
    """The list new watchers push a member's name onto: the poller wakes and reads it now."""
    return f"{queue}:watch-now"


def poller_key(queue: str) -> str:
    """Which instance of the service reads its watched values (one at a time)."""
    return f"{queue}:poller"


def services_key(prefix: str) -> str:
    """The registry's sorted set of queue names, scored by their latest instance expiry."""
    return f"{prefix}:services"


def service_key(prefix: str, queue: str) -> str:
    """The sorted set of the instance ids of the service whose queue is ``queue``."""
    return f"{prefix}:service:{queue}"


def instance_key(prefix: str, instance: str) -> str:
    """The hash of one instance's metadata."""
    return f"{prefix}:instance:{instance}"


def instance_id(queue: str, unique: str, *, cluster: bool = False) -> str:
    """A registry instance id: ``unique`` (host:pid:random), after the queue name on a cluster.

    On a cluster the id carries the service's hash tag, so the instance's
    hash lands in the service's slot.
    """
    return f"{queue}:{unique}" if cluster else unique
