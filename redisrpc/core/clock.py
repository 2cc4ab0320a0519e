"""The Redis clock: an estimate of the Redis server's time that ignores local clock steps.

Deadlines and heartbeats are written in the Redis server's clock (epoch ms),
so hosts whose wall clocks disagree still agree on time. A :class:`RedisClock`
keeps the offset between Redis ``TIME`` and a local monotonic clock, so an
NTP step, a manual ``date -s`` or a VM resume that moves ``time.time()``
changes nothing: the estimate only moves as real time passes. Both
transports use it (:meth:`Transport.now_ms <redisrpc.core.transport.Transport.now_ms>`
and its asyncio twin); only how the measuring plan is run differs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator
from typing import Any

__all__ = [
    "GOOD_ROUND_TRIP",
    "MAX_SAMPLES",
    "REFRESH_S",
    "SAMPLES",
    "RedisClock",
    "best_offset",
    "local_seconds",
]

REFRESH_S = 60.0
"""Seconds between two measurements of the offset (drift between the clocks is slow)."""
SAMPLES = 3
MAX_SAMPLES = 10
"""The most ``TIME`` samples one measurement takes when every one is slow."""
GOOD_ROUND_TRIP = 0.005
"""A sample this fast (seconds) ends a slow measurement early: the estimate is within 2.5 ms."""
"""TIME round trips per measurement; the shortest one wins."""


def _local_clock() -> Callable[[], float]:
    # CLOCK_BOOTTIME (Linux) is monotonic and, unlike CLOCK_MONOTONIC, keeps
    # counting while the machine sleeps: a resumed laptop is not hours behind.
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        try:
            time.clock_gettime(boottime)
        except OSError:  # pragma: no cover - a kernel without it
            return time.monotonic
        return functools.partial(time.clock_gettime, boottime)  # no Python frame per reading
    return time.monotonic  # pragma: no cover - not Linux


local_seconds: Callable[[], float] = _local_clock()
"""The local clock the offset is kept against: monotonic, in seconds, origin unspecified."""


class RedisClock:
    """Redis ``TIME`` minus a local monotonic clock, measured now and then.

    Not thread-safe on its own: a transport runs :meth:`measuring` under its
    own lock. Reading (:meth:`now_ms`) is safe from any thread.

    Args:
        refresh: seconds after which :attr:`due` asks for a new measurement.
    """

    def __init__(self, *, refresh: float = REFRESH_S) -> None:
        self.refresh = refresh
        self._offset_ms: float | None = None
        self._measured_at = 0.0

    def __repr__(self) -> str:
        return f"<redisrpc.RedisClock offset={self._offset_ms} ms>"

    @property
    def due(self) -> bool:
        """Whether the offset is unknown or older than ``refresh`` seconds."""
        return self._offset_ms is None or local_seconds() - self._measured_at > self.refresh

    def measuring(self) -> Generator[Any, Any, None]:
        """The plan that measures the offset: :data:`SAMPLES` ``TIME`` round trips, or more.

        The sample with the shortest round trip wins; its midpoint is taken as
        the moment Redis read its clock, so the estimate is off by at most half
        that round trip. On a loaded machine (a thread descheduled mid-sample)
        every sample may be slow: up to :data:`MAX_SAMPLES` are taken until one
        comes back within :data:`GOOD_ROUND_TRIP`. Run it with ``transport.run(...)``.
        """
        samples: list[tuple[float, float, float]] = []
        while len(samples) < SAMPLES or (
            len(samples) < MAX_SAMPLES
            and min(after - before for before, after, _ in samples) > GOOD_ROUND_TRIP
        ):
            before = local_seconds()
            ((seconds, micros),) = yield (("TIME",),)
            after = local_seconds()
            samples.append((before, after, int(seconds) * 1000.0 + int(micros) / 1000.0))
        self._offset_ms = best_offset(samples)
        self._measured_at = samples[-1][1]

    def current_ms(self) -> int | None:
        """The estimate now, or None when a measurement is :attr:`due` (one clock reading).

        The hot path of every call's deadline checks: :attr:`due` and
        :meth:`now_ms` together read the local clock twice.
        """
        offset = self._offset_ms
        now = local_seconds()
        if offset is None or now - self._measured_at > self.refresh:
            return None
        return int(now * 1000.0 + offset)

    def now_ms(self) -> int:
        """The Redis clock estimate, in epoch milliseconds (run :meth:`measuring` first)."""
        if self._offset_ms is None:
            raise RuntimeError("the Redis clock has not been measured yet")
        return int(local_seconds() * 1000.0 + self._offset_ms)


def best_offset(samples: list[tuple[float, float, float]]) -> float:
    """Redis ms minus local ms, from (local before s, local after s, Redis ms) samples."""
    before, after, redis_ms = min(samples, key=lambda s: s[1] - s[0])
    return redis_ms - (before + after) * 500.0
