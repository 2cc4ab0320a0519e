"""Show a remote call's output in the caller's cell, marked as remote.

The server sends what a call printed, warned and logged with its reply (see
:mod:`redisrpc.server.output`); :func:`show_output` replays it here, in order:
printed text goes to ``sys.stdout``/``sys.stderr`` with each line prefixed by
``[service] ``, warnings are issued again as warnings (their category when it
is a built-in warning, else :class:`RemoteWarning`) naming the service, and log
records go to the logger ``redisrpc.remote.<service>``.
"""

from __future__ import annotations

import builtins
import logging
import sys
import warnings
from typing import Any

__all__ = ["RemoteWarning", "show_output"]


class RemoteWarning(UserWarning):
    """A warning a remote call issued whose category is not a built-in warning."""


def _prefixed(service: str, text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(f"[{service}] {line}" for line in lines)


def _category(fields: dict[str, Any]) -> type[Warning]:
    found = getattr(builtins, str(fields.get("category", "")), None)
    builtin = fields.get("module") in (None, "builtins")
    if builtin and isinstance(found, type) and issubclass(found, Warning):
        return found
    return RemoteWarning


def show_output(service: str, events: Any) -> None:
    """Replay a reply's ``output`` events here (malformed events are skipped)."""
    if not isinstance(events, list):
        return
    for event in events:
        if not (isinstance(event, list) and len(event) == 2):
            continue
        kind, body = event
        if kind in ("stdout", "stderr") and isinstance(body, str):
            stream = sys.stdout if kind == "stdout" else sys.stderr
            stream.write(_prefixed(service, body))
            stream.flush()
        elif kind == "warning" and isinstance(body, dict):
            category = _category(body)
            name = "" if category is not RemoteWarning else f"{body.get('category')}: "
            warnings.warn_explicit(
                f"[{service}] {name}{body.get('message', '')}",
                category,
                str(body.get("filename", service)),
                int(body.get("lineno", 0)) if isinstance(body.get("lineno"), int) else 0,
            )
        elif kind == "log" and isinstance(body, dict):
            level = logging.getLevelName(str(body.get("level", "INFO")))
            logger = logging.getLogger(f"redisrpc.remote.{service}")
            logger.log(
                level if isinstance(level, int) else logging.INFO,
                "[%s] %s: %s",
                service,
                body.get("logger", ""),
                body.get("message", ""),
            )
