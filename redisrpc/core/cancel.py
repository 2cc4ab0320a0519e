"""Cancel marks and what servers run now: the keys behind giving up on a call.

A caller that gives up on a request a server already took sets the request's
cancel mark and bumps the service's counter (:func:`cancel_commands`); servers
never start a marked request and stop a running one (PROTOCOL.md,
cancellation). Servers publish the calls they have run for a while
(:func:`running_calls`), and anyone may cancel one (:func:`cancelling_running`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .plan import NOW, Plan
from .protocol import cancel_key, cancels_key, running_key

__all__ = [
    "MARK_MARGIN",
    "cancel_commands",
    "cancelling_running",
    "running_calls",
    "running_calls_of",
]

MARK_MARGIN = 3.0
"""Seconds a cancel mark outlives its request's deadline: time for a server to see it."""


def cancel_commands(
    service: str, call_id: str, *, ttl_ms: int, by: str | None = None
) -> tuple[tuple[Any, ...], ...]:
    """Set a call's cancel mark and bump the service's counter; both expire in ``ttl_ms``.

    A mark set by someone else than the caller (``by``) names them: the server
    then still answers the caller, with the error that says who cancelled the call.
    """
    counter = cancels_key(service)
    return (
        ("SET", cancel_key(service, call_id), by or b"1", "PX", ttl_ms),
        ("INCR", counter),
        ("PEXPIRE", counter, ttl_ms),
    )


def running_calls(service: str) -> Plan[list[dict[str, Any]]]:
    """The calls ``service``'s instances run now, as they publish them (PROTOCOL.md)."""
    return (yield from running_calls_of([service]))[service]


def running_calls_of(services: Sequence[str]) -> Plan[dict[str, list[dict[str, Any]]]]:
    """:func:`running_calls` for many services in one round trip, oldest call first."""
    hashes = yield tuple(("HGETALL", running_key(service)) for service in services)
    now = yield NOW
    found: dict[str, list[dict[str, Any]]] = {}
    for service, raw in zip(services, hashes, strict=True):
        running = []
        for value in (raw or {}).values():
            try:
                entry = json.loads(value)
            except ValueError:
                continue
            until = entry.get("until") if isinstance(entry, dict) else None
            if isinstance(until, int) and until > now:
                running.append(entry)
        found[service] = sorted(running, key=lambda e: e.get("since") or 0)
    return found


def cancelling_running(service: str, call_id: str, *, by: str) -> Plan[None]:
    """Cancel a call that runs now, whoever made it (its server stops it within 0.2 s).

    The mark names ``by``: the server answers the call's own caller with
    :class:`~redisrpc.CallCancelledError` saying who cancelled it.
    """
    yield cancel_commands(service, call_id, ttl_ms=int(MARK_MARGIN * 1000), by=by)
