"""``redisrpc serve`` and ``redisrpc demo``: serve an importable object, or the examples."""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from ..client.discovery import discover
from ..core.transport import resolve_url
from ..server.loop import Server
from .common import (
    EXIT_REMOTE,
    EXIT_USAGE,
    Exit,
    open_transport,
    split_names,
)

_MISSING = object()

__all__ = ["cmd_demo", "cmd_serve"]


def _load(spec: str) -> tuple[Any, str]:
    """Import ``module:attr`` and return the object to serve (classes and factories are called)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise Exit(EXIT_USAGE, f"expected module:attr (e.g. mypackage.lab:Stage), not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: serve modules in this directory
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise Exit(EXIT_USAGE, f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise Exit(EXIT_USAGE, f"{module_name!r} has no attribute {attr!r}") from exc
    if inspect.isclass(target) or inspect.isfunction(target) or inspect.ismethod(target):
        try:
            target = target()
        except Exception as exc:
            raise Exit(EXIT_REMOTE, f"{spec}() failed: {type(exc).__name__}: {exc}") from exc
    return target, attr.rsplit(".", 1)[-1]


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve an importable object until Ctrl-C or SIGTERM."""
    obj, attr = _load(args.target)
    name = args.name or attr.lower()
    allow = split_names(args.expose) if args.expose else None
    # A mistyped --expose name would silently serve less than meant: refuse it.
    missing = [n for n in allow or () if inspect.getattr_static(obj, n, _MISSING) is _MISSING]
    if missing:
        raise Exit(
            EXIT_USAGE,
            f"--expose: {type(obj).__qualname__} has no member {', '.join(map(repr, missing))}",
        )
    url = resolve_url(args.url)
    open_transport(args).close()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    server = Server(
        url,
        name,
        obj,
        register=not args.no_register,
        registry_prefix=args.prefix,
        heartbeat=args.heartbeat,
        expose=allow,
        readonly=args.readonly,
        deny_tags=split_names(args.deny_tag),
        workers=args.workers,
        read_during_calls=args.read_during_calls,
    )
    print(
        f"redisrpc: serving {type(obj).__qualname__} as {name!r} on {server.transport.location}"
        " (Ctrl-C or SIGTERM stops)",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Serve the example objects (an embedded Redis when none answers)."""
    from ..embedded import ensure_redis  # noqa: PLC0415
    from ..sim.demo import READ_DURING_CALLS, demo_objects  # noqa: PLC0415 - loads the sim bench

    requested = resolve_url(args.url)
    url = ensure_redis(args.url, fallback=not args.no_embedded, quiet=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    servers = [
        Server(
            url,
            name,
            obj,
            registry_prefix=args.prefix,
            heartbeat=args.heartbeat,
            read_during_calls=READ_DURING_CALLS.get(name, ()),
        ).start()
        for name, obj in demo_objects().items()
    ]
    _wait_listed(url, {server.name for server in servers}, args.prefix)
    if url != requested:
        print(
            f"No Redis answers at {_safe_url(requested)}: started an embedded Redis"
            " (fakeredis) in this process."
        )
    print(f"Redis: {_safe_url(url)}")
    print("Serving:")
    for server in servers:
        print(f"  {server.name:<8} {type(server.obj).__qualname__}")
    print(
        "\nConnect from Python, IPython or Jupyter:\n"
        "    import redisrpc\n"
        f"    calc = redisrpc.Client({_safe_url(url)!r}, 'calc')\n"
        "    calc.add(5)          # then try calc.add? and calc.<Tab>\n"
        f"\nOr from a shell: redisrpc --url {_safe_url(url)} list\n"
        "Ctrl-C stops.",
        flush=True,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    while not done.wait(0.5):
        pass
    # Stop them all at once: each finishes its current call and deregisters.
    stoppers = [threading.Thread(target=server.stop, args=(10,)) for server in servers]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()
    print("redisrpc demo: stopped", flush=True)
    return 0


def _wait_listed(url: str, names: set[str], prefix: str, timeout: float = 5.0) -> None:
    """Wait (briefly) until the servers just started are in the registry."""
    deadline = time.monotonic() + timeout
    while not names <= {s.name for s in discover(url, prefix=prefix)}:
        if time.monotonic() > deadline:
            return  # still starting; they will appear
        time.sleep(0.05)


def _safe_url(url: str) -> str:
    """The URL with any password masked, for printing."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
