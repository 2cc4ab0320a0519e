"""The server side of watched values: one poller per service reads and publishes.

Every instance runs a :class:`Poller` thread; the one holding the service's
poller key reads the watched members at their intervals and publishes each
change to the member's stream (the wire is described in
:mod:`redisrpc.core.watch`). When its instance dies, another takes over
within :data:`_HOLD_MS`. Between turns every instance waits on the
service's watch-now list (BLPOP): a new watcher pushes its member's name
there, and whichever instance pops it reads the member at once, so a new
watcher sees the current value without waiting for the next turn.

Reads happen between calls: ``read`` (the server's) refuses while a call
runs on a one-worker server, and the poller tries again shortly, because an
instrument driver is rarely safe to use from two threads at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from ..core.keys import poller_key, watch_key, watch_now_key, watchers_key
from ..core.transport import Transport
from ..core.watch import STREAM_LENGTH, WAKE_TTL_MS, lease_ms, parse_lease
from ..errors import CommandError, RedisConnectionError, RedisRPCError

__all__ = ["Poller"]

log = logging.getLogger("redisrpc.server")

_HOLD_MS = 3000  # how long the poller key outlives its holder's last turn
_IDLE_S = 1.0  # how often an instance looks for leases when it reads nothing
_BUSY_S = 1.0  # the longest wait for a running call to end before the next turn
# Redis times blocked clients out in its cron, every 1/hz s (100 ms by default), so a
# BLPOP returns up to that late: the poller blocks that much less, then sleeps here.
_REDIS_TICK_S = 0.1

Reader = Callable[[str], "bytes | None"]
"""Reads one target; returns the reply-shaped message, or None while a call runs."""

Idle = Callable[[float], object]
"""Waits up to that many seconds for the running call to end."""


class Poller:
    """Read the service's watched members and publish their changes (one instance at a time).

    Args:
        transport: the server's transport.
        queue: the service's queue name.
        ident: this instance, as the poller key's value.
        read: reads one target (see :data:`Reader`).
        idle: waits for a running call to end (see :data:`Idle`).
    """

    def __init__(
        self, transport: Transport, queue: str, ident: str, read: Reader, idle: Idle
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.ident = ident
        self.read = read
        self.idle = idle
        self.blocked = False
        """Whether the last turn left a read for after the running call."""
        self.reads = 0
        """How many reads this instance made (the poller's, and those of new watches)."""
        self.turns = 0
        """How many turns the poller thread has taken (for tests and diagnostics)."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._forced: set[str] = set()
        self._last: dict[str, bytes] = {}  # target -> the message last published
        self._due: dict[str, float] = {}  # target -> monotonic time of its next read
        self._holding = False  # whether this instance held the poller key last turn
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the poller thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"redisrpc-poller-{self.queue}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the poller thread (and give up the poller key if this instance held it)."""
        self._stop.set()
        wake = watch_now_key(self.queue)
        # Wake the thread from its wait (an empty name is no member: nothing is read);
        # without Redis it wakes within a second anyway.
        with contextlib.suppress(RedisRPCError):
            self.transport.execute(("RPUSH", wake, ""), ("PEXPIRE", wake, WAKE_TTL_MS))
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self._holding = False  # started again, it takes over from whoever polled meanwhile
        with contextlib.suppress(RedisRPCError):  # an unpopped wake-up, and its key, go
            self.transport.execute(("LREM", wake, 0, ""))
        try:
            # Another instance takes over at once instead of after _HOLD_MS.
            (held,) = self.transport.execute(("GET", poller_key(self.queue)))
            if held == self.ident.encode():
                self.transport.execute(("DEL", poller_key(self.queue)))
        except RedisRPCError:
            pass

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                wait = self.turn()
                failures = 0
            except Exception as exc:
                failures += 1
                wait = min(5.0, 0.1 * 2**failures)
                log.warning("%s: watched values not read: %s", self.queue, exc)
                self._stop.wait(wait)
                continue
            if self.blocked:
                self.idle(min(wait, _BUSY_S))  # no Redis traffic while a long call runs
            else:
                self._wait(wait)

    def _wait(self, seconds: float) -> None:
        """Wait ``seconds``, on the watch-now list where that is precise enough.

        A new watcher's member wakes the wait; names pushed during a short
        local sleep are taken by the next turn (LPOP).
        """
        if seconds <= 0 or self._stop.is_set():
            return
        deadline = time.monotonic() + seconds
        if seconds > 1.5 * _REDIS_TICK_S:
            try:
                (popped,) = self.transport.execute(
                    ("BLPOP", watch_now_key(self.queue), f"{seconds - _REDIS_TICK_S:.3f}")
                )
            except RedisRPCError as exc:
                log.info("%s: cannot wait for new watchers (%s)", self.queue, exc)
                popped = None
            if popped:
                self._wake([popped[1]])
                return
        self._stop.wait(max(0.0, deadline - time.monotonic()))

    def _wake(self, names: list[bytes]) -> None:
        """Have these members read in the next turn (if they are leased)."""
        with self._lock:
            self._forced.update(n.decode(errors="replace") for n in names if n)

    def turn(self) -> float:
        """Read what is due, publish what changed; return the seconds until the next turn."""
        self.turns += 1
        now = self.transport.now_ms()
        key = poller_key(self.queue)
        leases = watchers_key(self.queue)
        try:
            _, members, held, woken = self.transport.execute(
                ("ZREMRANGEBYSCORE", leases, "-inf", now),
                ("ZRANGE", leases, 0, -1),
                ("GET", key),
                ("LPOP", watch_now_key(self.queue), 100),  # pushed while this instance slept
            )
        except CommandError as exc:
            if any(isinstance(reply, RedisRPCError) for reply in exc.replies[:3]):
                raise
            # LPOP with a count needs Redis 6.2: before it, a wake is taken by BLPOP only.
            _, members, held, woken = *exc.replies[:3], None
        if isinstance(woken, list):
            self._wake(woken)
        targets, bad = self._targets(members or [])
        if targets and held is None:  # nobody polls: this instance offers (no key unless watched)
            _, held = self.transport.execute(
                ("SET", key, self.ident, "NX", "PX", _HOLD_MS), ("GET", key)
            )
        holder = held == self.ident.encode()
        if holder and not self._holding:
            # Taking over: others may have published since this instance last did, so
            # its last values say nothing of the streams; the first reads are published.
            self._last.clear()
            self._due.clear()
        self._holding = holder
        with self._lock:
            # Only leased members: a name pushed by anyone else is never read.
            forced = self._forced & set(targets)
            self._forced = set()
        for gone in set(self._last) - set(targets):
            # Nobody watches it now: its next watcher gets a fresh read published.
            self._last.pop(gone, None)
            self._due.pop(gone, None)
        clock = time.monotonic()
        due = set(forced)
        if holder:
            due.update(t for t in targets if self._due.get(t, 0.0) <= clock)
        commands: list[tuple[object, ...]] = [("PEXPIRE", key, _HOLD_MS)] if holder else []
        if bad:
            commands.append(("ZREM", leases, *bad))
        blocked: set[str] = set()
        published: list[str] = []
        for target in sorted(due):
            message = self.read(target)
            if message is None:  # a call is running: read it once the call ends
                blocked.add(target)
                if target in forced:
                    with self._lock:
                        self._forced.add(target)
                continue
            self.reads += 1
            interval = targets.get(target)
            if interval is not None:
                self._due[target] = clock + interval
            if target in forced or message != self._last.get(target):
                stream = watch_key(self.queue, target)
                commands.append(
                    ("XADD", stream, "MAXLEN", "~", STREAM_LENGTH, "*", "reply", message)
                )
                # The stream outlives its last lease, then goes: nobody reads it.
                commands.append(("PEXPIRE", stream, 2 * lease_ms(interval or 1.0)))
                published.append(target)
            if interval is not None:
                self._last[target] = message
        if commands:
            try:
                self.transport.execute(*commands)
            except RedisConnectionError:
                # Perhaps never published, yet _last has them: unforced, an unchanged value
                # would not be published again, and its watchers would keep the old one.
                with self._lock:
                    self._forced.update(published)
                raise
        self.blocked = bool(blocked)
        upcoming = [due for target, due in self._due.items() if target not in blocked]
        if holder and upcoming:
            return max(0.0, min(min(upcoming) - time.monotonic(), _IDLE_S))
        return _IDLE_S

    def _targets(self, members: list[bytes]) -> tuple[dict[str, float], list[bytes]]:
        """The leased targets with the shortest interval each is watched at, and the garbage."""
        targets: dict[str, float] = {}
        bad: list[bytes] = []
        for member in members:
            lease = parse_lease(member)
            if lease is None:
                log.warning("%s: removing a malformed watch lease %.120r", self.queue, member)
                bad.append(member)
                continue
            target, interval, _ = lease
            targets[target] = min(interval, targets.get(target, interval))
        return targets, bad
