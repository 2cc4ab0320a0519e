"""The classic RedisRPC example object: a calculator with one register."""

from __future__ import annotations

__all__ = ["Calculator"]


class Calculator:
    """A calculator with one register (the accumulator)."""

    def __init__(self) -> None:
        self.acc = 0.0

    def clr(self) -> float:
        """Clear the register and return it (0.0)."""
        self.acc = 0.0
        return self.acc

    def add(self, number: float) -> float:
        """Add ``number`` to the register and return the register."""
        self.acc += number
        return self.acc

    def sub(self, number: float) -> float:
        """Subtract ``number`` from the register and return the register."""
        self.acc -= number
        return self.acc

    def mul(self, number: float) -> float:
        """Multiply the register by ``number`` and return the register."""
        self.acc *= number
        return self.acc

    def div(self, number: float) -> float:
        """Divide the register by ``number`` and return the register.

        Dividing by zero raises ZeroDivisionError (on the caller's side too).
        """
        self.acc /= number
        return self.acc

    def val(self) -> float:
        """Return the register."""
        return self.acc
