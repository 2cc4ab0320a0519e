"""The simulated bench: instruments and the demo services, for tutorials and tests."""

from __future__ import annotations

__all__: list[str] = []
