"""What the commands share: exit codes, one-line failures, formatting, connecting."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Sequence
from typing import Any

from ..client.discovery import ServiceInfo, discover
from ..client.sync import Client
from ..core.transport import Transport, resolve_url
from ..errors import (
    TimeoutException,
)

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_REMOTE",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Exit",
    "connect_proxy",
    "fmt_ago",
    "fmt_duration",
    "fmt_table",
    "jsonable",
    "open_transport",
    "parse_keywords",
    "parse_literal",
    "positive_int",
    "proxy_with_timeout",
    "services_on",
    "split_names",
    "to_json",
]

EXIT_REMOTE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130

_PROBE_TIMEOUT = 3.0  # how long an unregistered service gets to answer before it is "unknown"


class Exit(Exception):  # noqa: N818 - control flow, never escapes main()
    """Stop with one line on stderr and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fmt_duration(seconds: float) -> str:
    """A short human duration: ``42s``, ``3m05s``, ``2h10m``, ``3d4h``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def fmt_ago(seconds: float) -> str:
    """``0.4s ago``, for heartbeats."""
    return f"{max(0.0, seconds):.1f}s ago" if seconds < 60 else f"{fmt_duration(seconds)} ago"


def fmt_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under a header, columns aligned with two spaces."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """``default=`` for json.dumps: arrays as lists, bytes as text or base64."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def to_json(value: Any) -> str:
    """JSON for the terminal: indented when it is a non-empty container."""
    indent = 2 if isinstance(value, (dict, list)) and value else None
    return json.dumps(value, indent=indent, ensure_ascii=False, default=jsonable)


def parse_literal(text: str) -> Any:
    """A JSON literal, or the text itself when it is not one (plain words)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_keywords(items: Sequence[str]) -> dict[str, Any]:
    """``--kw key=value`` items as keyword arguments (values are JSON literals)."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise Exit(
                EXIT_USAGE, f"--kw expects key=value with a Python name as key, not {item!r}"
            )
        kwargs[key] = parse_literal(value)
    return kwargs


def open_transport(args: argparse.Namespace) -> Transport:
    """A transport on the chosen Redis, checked with one PING so failures come first."""
    transport = Transport.of(resolve_url(args.url), connect_timeout=3.0)
    transport.ping()
    return transport


def services_on(transport: Transport, prefix: str) -> dict[str, ServiceInfo]:
    """The live services of the registry at ``prefix``, by name."""
    return {s.name: s for s in discover(transport, prefix=prefix)}


def connect_proxy(args: argparse.Namespace, transport: Transport, name: str) -> Client:
    """A described client for ``name``, or exit 3 when nothing serves it."""
    registered = name in services_on(transport, args.prefix)
    probe = args.timeout if registered else min(args.timeout, _PROBE_TIMEOUT)
    try:
        return Client(resolve_url(args.url), name, timeout=probe)
    except TimeoutException as exc:
        if exc.started:
            raise
        raise Exit(
            EXIT_UNAVAILABLE,
            f"unknown service {name!r}: no live server is registered under that name and"
            f" nothing answered within {probe:g} s (`redisrpc list` shows live servers)",
        ) from exc


def proxy_with_timeout(proxy: Client, timeout: float) -> Client:
    """``proxy`` with another call timeout."""
    return proxy._rpc_with(timeout=float(timeout))


def split_names(values: Sequence[str]) -> list[str]:
    """The names of repeatable, comma-separated options (``--expose a,b --expose c``)."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return number
