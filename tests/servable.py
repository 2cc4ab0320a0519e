"""Test-only objects that child processes serve as ``servable:Thing`` (tests/ is on PYTHONPATH)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import redis

import redisrpc

__all__ = ["Guarded", "Mover", "Thing", "make_thing"]


@redisrpc.writable("label")
class Thing:
    """A small object for child-process tests.

    It counts calls, sleeps on request and fails on request.
    """

    def __init__(self) -> None:
        self._total = 0
        self.label = "thing"  # a plain, writable data attribute

    def incr(self, by: int = 1) -> int:
        """Add ``by`` to the total and return it."""
        self._total += by
        return self._total

    def echo(self, value: object, *, twice: bool = False) -> object:
        """Return ``value`` (as a pair when ``twice``)."""
        return [value, value] if twice else value

    def sleep(self, seconds: float) -> float:
        """Sleep ``seconds``, then return them."""
        time.sleep(seconds)
        return seconds

    def fail(self, message: str = "boom") -> None:
        """Raise ValueError(message)."""
        raise ValueError(message)

    def pid(self) -> int:
        """The serving process's id."""
        return os.getpid()

    @property
    def total(self) -> int:
        """The running total (read-only)."""
        return self._total


def make_thing() -> Thing:
    """A factory, for ``redisrpc serve servable:make_thing``."""
    return Thing()


class Mover:
    """A slow instrument for long-call tests, served in a child process.

    It leaves marks in Redis (``REDIS_URL``) that the test reads: ``mover:started``,
    ``mover:saw_cancel`` (the step at which it saw ``redisrpc.cancelled()``),
    ``mover:finished``, ``mover:halted`` (its on_cancel hook ran) and
    ``mover:closed`` (a stream's generator ran its ``finally``).
    """

    def __init__(self) -> None:
        self._redis = redis.Redis.from_url(os.environ["REDIS_URL"])
        self._halt = threading.Event()

    def move(self, steps: int, step_s: float = 0.05) -> int:
        """Take ``steps`` steps, reporting progress; stop early once cancelled."""
        self._redis.set("mover:started", 1)
        for i in range(steps):
            if redisrpc.cancelled():
                self._redis.set("mover:saw_cancel", i)
                return i
            time.sleep(step_s)
            redisrpc.progress(i + 1, steps, "moving")
        self._redis.set("mover:finished", 1)
        return steps

    @redisrpc.expose(on_cancel="halt")
    def drift(self, seconds: float) -> str:
        """Run ``seconds`` without ever checking cancelled(); only halt() stops it."""
        self._redis.set("mover:started", 1)
        self._halt.clear()
        stopped = self._halt.wait(seconds)
        self._redis.set("mover:finished", 1)
        return "halted" if stopped else "drifted"

    def halt(self) -> None:
        """The on_cancel hook of drift()."""
        self._halt.set()
        self._redis.set("mover:halted", 1)

    def count(self, n: int, step_s: float = 0.0) -> Iterator[int]:
        """Yield 0..n-1; return n; note in Redis when the generator is closed or ends."""
        try:
            for i in range(n):
                if step_s:
                    time.sleep(step_s)
                yield i
            return n
        finally:
            self._redis.set("mover:closed", 1)


class Guarded:
    """Marked members, for ``serve --readonly``, ``--expose`` and ``--deny-tag``."""

    def __init__(self) -> None:
        self._level = 1.0

    @redisrpc.expose
    @property
    def level(self) -> float:
        """A set point (writable unless the server is read-only)."""
        return self._level

    @level.setter
    def level(self, value: float) -> None:
        self._level = float(value)

    @redisrpc.expose(readonly=True)
    def read(self) -> float:
        """Read the set point (safe for a read-only server)."""
        return self._level

    @redisrpc.expose
    def reset(self) -> None:
        """Set the level back to 1."""
        self._level = 1.0

    @redisrpc.expose(tags={"admin"})
    def calibrate(self) -> str:
        """An admin-only operation."""
        return "calibrated"

    def helper(self) -> str:
        """Not marked, so never served."""
        return "helper"
