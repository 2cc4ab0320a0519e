"""``python -m redisrpc``: the same as the ``redisrpc`` command."""

from __future__ import annotations

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
