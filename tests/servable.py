"""Test-only objects that child processes serve as ``servable:Thing`` (tests/ is on PYTHONPATH)."""

from __future__ import annotations

import os
import time

__all__ = ["Thing", "make_thing"]


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
