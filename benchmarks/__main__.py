"""``python -m benchmarks``: run the suite and print the table."""

from __future__ import annotations

from .run import main

__all__: list[str] = []

main()
