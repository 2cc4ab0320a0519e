"""Watched values on the wire: leases, the poller's stream, and the readers' plan.

A client watches a member (a property, a plain attribute or a read-only
method without arguments) of a service; every watcher of that member on the
same Redis shares **one** read per interval, however many notebooks watch:

1. A watcher adds its lease: a member of the sorted set ``<queue>:watchers``,
   the JSON array ``[target, interval, watch_id]`` (``target`` a member name
   or path: ``"voltage"``, ``"ch1.voltage"``), scored by its expiry on the
   Redis clock (epoch ms). In the same round trip it pushes ``target`` onto
   ``<queue>:watch-now``, on which the poller waits between turns, so the
   member is read at once (:func:`starting`). No call is involved, so a new
   watch never waits behind a long call. The watcher renews the lease
   (ZADD) every third of :func:`lease_ms` and removes it (ZREM) when it
   stops; a watcher that dies stops counting when its lease expires.
3. One instance of the service at a time holds ``<queue>:poller`` (SET NX
   PX) and reads each leased target every (smallest) interval, between
   calls. When a value differs from the last one it published, it XADDs a
   reply-shaped message (the JSON of a reply: ``return_value`` or ``error``)
   to the stream ``<queue>:watch:<target>``, capped at :data:`STREAM_LENGTH`
   entries; the entry id's milliseconds are when it was read. A member that
   cannot be watched is published as an error reply. With no lease left,
   nothing is read.
4. Watchers read the stream: the newest entry first (XREVRANGE ... COUNT
   1), then every later one (XREAD BLOCK).

This module is pure: the lease format, and :func:`reading`, the plan one
client runs for all its watches of one service (the sync client in a
thread, the asyncio client in a task).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import RedisRPCError
from .keys import watch_key, watch_now_key, watchers_key
from .plan import NOW, Plan

__all__ = [
    "MAX_INTERVAL",
    "MIN_INTERVAL",
    "STREAM_LENGTH",
    "WAKE_TTL_MS",
    "Book",
    "Subscriber",
    "check_interval",
    "lease_member",
    "lease_ms",
    "parse_lease",
    "reading",
    "starting",
    "unleasing",
]

MIN_INTERVAL = 0.05
"""The shortest interval a watcher may ask for, in seconds."""
MAX_INTERVAL = 3600.0
"""The longest interval, in seconds."""
STREAM_LENGTH = 64
"""About how many values a watched member's stream keeps (MAXLEN ~)."""
_LEASE_MIN_MS = 5000
_BLOCK_MS = 250  # a reader's longest wait: how soon it sees a new watch or a close
_MAX_ID = 120  # characters of a watch id
_MAX_TARGET = 1000  # characters of a target (a name or a path)
WAKE_TTL_MS = 60_000
"""How long a watch-now list nobody pops (no server runs) lives, in ms."""


def check_interval(interval: object) -> float:
    """Return ``interval`` as a float, or raise ValueError if it is not a sane watch interval."""
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise ValueError(f"a watch interval is a number of seconds, not {interval!r}")
    value = float(interval)
    if not (math.isfinite(value) and MIN_INTERVAL <= value <= MAX_INTERVAL):
        raise ValueError(f"a watch interval is {MIN_INTERVAL} to {MAX_INTERVAL} s, not {interval}")
    return value


def lease_ms(interval: float) -> int:
    """How long a lease lasts: three intervals, and at least five seconds."""
    return max(_LEASE_MIN_MS, int(3000 * interval))


def lease_member(target: str, interval: float, watch_id: str) -> bytes:
    """The sorted-set member of one watcher's lease."""
    return json.dumps([target, interval, watch_id], separators=(",", ":")).encode()


def parse_lease(member: Any) -> tuple[str, float, str] | None:
    """``(target, interval, watch_id)`` of a lease member, or None if it is not one."""
    try:
        target, interval, watch_id = json.loads(member)
        if not (isinstance(target, str) and target and isinstance(watch_id, str)):
            return None
        if len(watch_id) > _MAX_ID or len(target) > _MAX_TARGET:
            return None
        return target, check_interval(interval), watch_id
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested too deeply
        return None


class Subscriber:
    """What the reading plan needs of one watch: its lease, and where its values go."""

    target: str
    interval: float
    watch_id: str

    def deliver(self, ms: int, raw: bytes) -> None:
        """Take one stream entry: when it was read (epoch ms) and the reply-shaped message."""
        raise NotImplementedError

    def failed(self, exc: BaseException) -> None:
        """Redis could not be read; the plan tries again."""


@dataclass
class Book:
    """The watches of one client on one service, as the reading plan sees them.

    Thread-safe: watches are added and removed from any thread while the
    plan runs. Once the last watch is gone the book closes, and the plan
    ends after removing the leases.
    """

    queue: str
    block_ms: int = _BLOCK_MS
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _subs: dict[str, Subscriber] = field(default_factory=dict)
    _added: bool = False  # a watch came since the last exchange: renew every lease now
    _dropped: list[bytes] = field(default_factory=list)
    _last_ids: dict[str, str] = field(default_factory=dict)
    _renew_at: int = 0
    closed: bool = False

    def add(self, sub: Subscriber) -> bool:
        """Add a watch; False if the book has closed (start another)."""
        with self._lock:
            if self.closed:
                return False
            self._subs[sub.watch_id] = sub
            self._added = True
            return True

    def remove(self, sub: Subscriber, *, unleased: bool = False) -> None:
        """Drop a watch; the last one closes the book.

        Its lease goes in the next exchange, unless the caller removed it
        already (``unleased``, see :func:`unleasing`).
        """
        with self._lock:
            if self._subs.pop(sub.watch_id, None) is None:
                return
            if not unleased:
                self._dropped.append(lease_member(sub.target, sub.interval, sub.watch_id))
            if not self._subs:
                self.closed = True

    def _keys(self) -> dict[str, list[Subscriber]]:
        keys: dict[str, list[Subscriber]] = {}
        for sub in self._subs.values():
            keys.setdefault(watch_key(self.queue, sub.target), []).append(sub)
        return keys

    def exchange(self, now_ms: int) -> tuple[tuple[tuple[Any, ...], ...], bool]:
        """The next exchange: (its commands, whether it is the last one)."""
        with self._lock:
            commands: list[tuple[Any, ...]] = []
            if self._dropped:
                commands.append(("ZREM", watchers_key(self.queue), *self._dropped))
                self._dropped = []
            if self.closed:
                return tuple(commands), True
            if not self._subs:
                return tuple(commands), False  # made, its first watch on the way
            # A new watch may have the shortest lease: renew them all, and time from it.
            renew = list(self._subs.values()) if self._added or now_ms >= self._renew_at else []
            if renew:
                pairs = [
                    part
                    for sub in renew
                    for part in (
                        now_ms + lease_ms(sub.interval),
                        lease_member(sub.target, sub.interval, sub.watch_id),
                    )
                ]
                commands.append(("ZADD", watchers_key(self.queue), *pairs))
                shortest = min(lease_ms(sub.interval) for sub in renew)
                self._renew_at = now_ms + shortest // 3
            self._added = False
            keys = self._keys()
            fresh = [key for key in keys if key not in self._last_ids]
            for key in fresh:
                commands.append(("XREVRANGE", key, "+", "-", "COUNT", 1))
            waiting = [key for key in keys if key in self._last_ids]
            if waiting:
                ids = [self._last_ids[key] for key in waiting]
                block = 0 if fresh else self.block_ms  # fresh keys: read again at once
                # BLOCK 0 would wait for ever: a fresh key's first XREAD just does not block.
                read: tuple[Any, ...] = ("XREAD", "COUNT", STREAM_LENGTH)
                if block:
                    read += ("BLOCK", block)
                commands.append((*read, "STREAMS", *waiting, *ids))
            return tuple(commands), False

    def take(self, commands: tuple[tuple[Any, ...], ...], replies: list[Any]) -> None:
        """Deliver the entries an exchange brought to the watches of their streams."""
        with self._lock:
            keys = self._keys()
        for command, reply in zip(commands, replies, strict=False):
            if command[0] == "XREVRANGE":
                key = command[1]
                self._last_ids.setdefault(key, "0-0")
                self._deliver(key, reply or [], keys)
            elif command[0] == "XREAD" and reply:
                # A map of key -> entries over RESP3, a list of [key, entries] over RESP2.
                streams = reply.items() if isinstance(reply, dict) else reply
                for name, entries in streams:
                    key = name.decode() if isinstance(name, bytes) else str(name)
                    self._deliver(key, entries, keys)

    def _deliver(self, key: str, entries: list[Any], keys: dict[str, list[Subscriber]]) -> None:
        for entry_id, fields in entries:
            text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            self._last_ids[key] = text
            raw = _field(fields, b"reply")
            if raw is None:
                continue  # not ours: a reader ignores what it cannot read
            ms = int(text.split("-", 1)[0])
            for sub in keys.get(key, ()):
                sub.deliver(ms, raw)

    def failed(self, exc: BaseException) -> None:
        """Tell every watch that Redis could not be read; fresh reads follow."""
        with self._lock:
            subs = list(self._subs.values())
            self._renew_at = 0  # the leases may have expired meanwhile
        for sub in subs:
            sub.failed(exc)


def _field(fields: Any, name: bytes) -> bytes | None:
    """One field of a stream entry (a flat list of names and values, as RESP2 sends it)."""
    if isinstance(fields, dict):
        value = fields.get(name)
        return value if isinstance(value, bytes) else None
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == name and isinstance(fields[index + 1], bytes):
            return fields[index + 1]  # type: ignore[no-any-return]
    return None


def starting(queue: str, sub: Subscriber) -> Plan[None]:
    """Add one watch's lease and ask for its member to be read now (one round trip)."""
    now = yield NOW
    wake = watch_now_key(queue)
    yield (
        (
            "ZADD",
            watchers_key(queue),
            now + lease_ms(sub.interval),
            lease_member(sub.target, sub.interval, sub.watch_id),
        ),
        ("RPUSH", wake, sub.target),
        ("PEXPIRE", wake, WAKE_TTL_MS),
    )


def unleasing(queue: str, sub: Subscriber) -> Plan[None]:
    """Remove one watch's lease now: a process about to exit stops the polling at once."""
    yield (("ZREM", watchers_key(queue), lease_member(sub.target, sub.interval, sub.watch_id)),)


def reading(book: Book, *, on_error: Callable[[BaseException], None] | None = None) -> Plan[None]:
    """Renew the book's leases and read its streams until it closes (then drop the leases).

    A lost connection or an error reply is told to every watch and retried
    after a pause (0.25 s, doubling up to 5 s), so a Redis restart only
    pauses the values.
    """
    failures = 0
    while True:
        now = yield NOW
        commands, last = book.exchange(now)
        if not commands:
            if last:
                return
            yield 0.01  # a new book: its first watch is being added
            continue
        try:
            replies = yield commands
        except RedisRPCError as exc:
            if last:
                return  # the leases expire by themselves
            book.failed(exc)
            if on_error is not None:
                on_error(exc)
            yield min(5.0, 0.25 * 2**failures)
            failures += 1
            continue
        failures = 0
        book.take(commands, replies)
        if last:
            return
