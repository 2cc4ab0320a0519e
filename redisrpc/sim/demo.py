"""Objects to explore right away: ``redisrpc demo`` serves them.

:class:`Calculator` is the classic RedisRPC example, with type hints and
docstrings so that ``calc.add?`` and Tab completion have something to show.
:func:`demo_objects` adds the simulated instruments of
:mod:`redisrpc.instruments` when that module is available.
"""

from __future__ import annotations

import logging
import time

__all__ = ["READ_DURING_CALLS", "Calculator", "demo_objects"]

log = logging.getLogger("redisrpc.demo")


class Calculator:
    """A calculator with one register, the classic RedisRPC example.

    Every operation acts on the register and returns its new value::

        calc.clr(); calc.add(5); calc.mul(3)   # -> 15.0
    """

    def __init__(self) -> None:
        self._value = 0.0
        self._history: list[str] = []

    def _apply(self, op: str, x: float, value: float) -> float:
        self._value = value
        self._history = [*self._history[-19:], f"{op} {x!r}"]
        return self._value

    def clr(self) -> None:
        """Set the register to zero and forget the history."""
        self._value = 0.0
        self._history = []

    def add(self, x: float) -> float:
        """Add ``x`` to the register and return the new value."""
        return self._apply("add", x, self._value + x)

    def sub(self, x: float) -> float:
        """Subtract ``x`` from the register and return the new value."""
        return self._apply("sub", x, self._value - x)

    def mul(self, x: float) -> float:
        """Multiply the register by ``x`` and return the new value."""
        return self._apply("mul", x, self._value * x)

    def div(self, x: float) -> float:
        """Divide the register by ``x`` and return the new value.

        Raises ZeroDivisionError for ``x == 0``, which the caller receives as
        a remote ZeroDivisionError with the server's traceback.
        """
        return self._apply("div", x, self._value / x)

    def val(self) -> float:
        """Return the register's value."""
        return self._value

    def sleep(self, seconds: float = 1.0) -> float:
        """Wait ``seconds`` (at most 600), then return the register: a long call to play with.

        Try it with a short timeout: ``redisrpc.with_timeout(calc, 0.5).sleep(2)``.
        """
        time.sleep(max(0.0, min(float(seconds), 600.0)))
        return self._value

    @property
    def history(self) -> list[str]:
        """The last 20 operations, oldest first (read-only)."""
        return list(self._history)


READ_DURING_CALLS: dict[str, tuple[str, ...]] = {"stage": ("position",)}
"""Members of the demo services safe to read while a call runs (a watched position moves)."""


def demo_objects() -> dict[str, object]:
    """Return the demo objects by service name: ``calc`` plus the simulated bench if available."""
    objects: dict[str, object] = {"calc": Calculator()}
    try:
        from . import instruments  # noqa: PLC0415 - optional: written separately, needs numpy
    except ImportError as exc:
        log.debug("no simulated instruments in the demo: %s", exc)
        return objects
    bench = instruments.bench()
    objects.update(bench)
    return objects
