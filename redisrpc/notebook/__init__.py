"""Notebook and terminal display: the explorer widget, its forms, and the proxy cards.

The explorer needs ipywidgets (``pip install 'redisrpc[notebook]'``); import
:mod:`redisrpc.notebook.explorer` only where it is installed.
"""

from __future__ import annotations

__all__: list[str] = []
