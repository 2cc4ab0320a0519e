"""The server: the serving loop, the dispatcher and the one exposure rule."""

from __future__ import annotations

from .exposure import expose
from .loop import Server

__all__ = ["Server", "expose"]
