"""The simulated bench's public module: ``redisrpc.instruments.bench()`` and its instruments.

The implementation lives in :mod:`redisrpc.sim.instruments`.
"""

from __future__ import annotations

from .sim.instruments import (
    FunctionGenerator,
    InstrumentError,
    LinearStage,
    Oscilloscope,
    OverCurrentError,
    PowerSupply,
    bench,
)

__all__ = [
    "FunctionGenerator",
    "InstrumentError",
    "LinearStage",
    "Oscilloscope",
    "OverCurrentError",
    "PowerSupply",
    "bench",
]
