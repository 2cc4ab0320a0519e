"""The classic calculator round trip against the private redis-server."""

from __future__ import annotations

import redisrpc


class Calculator:
    """A calculator with one register."""

    def __init__(self) -> None:
        self.acc = 0.0

    def clr(self) -> None:
        self.acc = 0.0

    def add(self, x: float) -> float:
        self.acc += x
        return self.acc

    def val(self) -> float:
        return self.acc


def test_round_trip(r, serve):
    """A described proxy calls the served object and sees its state."""
    serve(Calculator(), "calc")
    calc = redisrpc.Client(r, "calc", timeout=5)
    calc.clr()
    calc.add(5)
    assert calc.val() == 5
