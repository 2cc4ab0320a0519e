"""``redisrpc call``, ``set`` and ``watch``: act on a remote object from a shell."""

from __future__ import annotations

import argparse
import inspect
import json
import signal
import threading
import time
from types import FrameType
from typing import Any

from ..client.signature import signature_from_params
from ..client.sync import description
from ..client.watch import watch
from ..core.protocol import SET_PROPERTY
from ..errors import RemoteException
from .common import (
    EXIT_USAGE,
    Exit,
    connect_proxy,
    jsonable,
    open_transport,
    parse_keywords,
    parse_literal,
    proxy_with_timeout,
    to_json,
)

__all__ = ["cmd_call", "cmd_set", "cmd_watch"]


def cmd_call(args: argparse.Namespace) -> int:
    """Call a remote method (or read a property) and print its value as JSON."""
    call_args = [parse_literal(a) for a in args.args]
    kwargs = parse_keywords(args.kw)
    transport = open_transport(args)
    proxy = connect_proxy(args, transport, args.name)
    found = description(proxy)
    method = args.method
    if method.startswith("_"):
        raise Exit(EXIT_USAGE, f"{method!r} is private and cannot be called")
    if found is not None:
        props = {p["name"] for p in found.get("properties", [])}
        methods = {m["name"]: m for m in found.get("methods", [])}
        if method in props:
            if call_args or kwargs:
                raise Exit(EXIT_USAGE, f"{args.name}.{method} is a property: it takes no arguments")
            value = getattr(proxy_with_timeout(proxy, args.timeout), method)
            print(to_json(value))
            return 0
        if method not in methods:
            known = ", ".join(sorted([*methods, *props])) or "none"
            raise Exit(EXIT_USAGE, f"{args.name} has no method {method!r} (known: {known})")
        signature = signature_from_params(methods[method].get("params"))
        unexpected = _unexpected_keywords(signature, kwargs)
        if unexpected:
            raise Exit(
                EXIT_USAGE,
                f"bad arguments for {args.name}.{method}{signature}: unexpected keyword"
                f" argument{'s' if len(unexpected) > 1 else ''} {', '.join(map(repr, unexpected))}",
            )
        try:
            signature.bind(*call_args, **kwargs)
        except TypeError as exc:
            raise Exit(
                EXIT_USAGE, f"bad arguments for {args.name}.{method}{signature}: {exc}"
            ) from exc
    value = proxy_with_timeout(proxy, args.timeout)._rpc_call(method, call_args, kwargs)
    print(to_json(value))
    return 0


def _unexpected_keywords(signature: inspect.Signature, kwargs: dict[str, Any]) -> list[str]:
    """The keywords ``signature`` cannot take; bind() would report a missing argument first."""
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []
    named = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return [key for key in kwargs if key not in named]


def cmd_set(args: argparse.Namespace) -> int:
    """Set a remote property to a JSON literal."""
    prop = args.property
    if prop.startswith("_"):
        raise Exit(EXIT_USAGE, f"{prop!r} is private and cannot be set")
    value = parse_literal(args.value)
    transport = open_transport(args)
    proxy = connect_proxy(args, transport, args.name)
    found = description(proxy)
    if found is not None:
        props = {p["name"]: p for p in found.get("properties", [])}
        if prop not in props:
            methods = {m["name"] for m in found.get("methods", [])}
            what = "a method, not a property" if prop in methods else "no such property"
            known = ", ".join(sorted(props)) or "none"
            raise Exit(EXIT_USAGE, f"{args.name}.{prop}: {what} (properties: {known})")
        if props[prop].get("readonly"):
            raise Exit(EXIT_USAGE, f"{args.name}.{prop} is read-only")
    proxy_with_timeout(proxy, args.timeout)._rpc_call(SET_PROPERTY, [prop, value], {})
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Print each new value of a watched member, one line each, until Ctrl-C or ``--count``."""
    *path, member = args.member.split(".")
    transport = open_transport(args)
    owner: Any = connect_proxy(args, transport, args.name)
    for i, segment in enumerate(path):  # a child's member: ch1.volts, channels.0.volts
        try:
            owner = owner[int(segment)] if segment.isdigit() else getattr(owner, segment)
        except RemoteException:
            raise  # describing the child failed remotely: main() reports it
        except (AttributeError, IndexError, TypeError) as exc:
            # A mistyped path is bad usage, told in one line like an unknown member.
            where = ".".join([args.name, *path[: i + 1]])
            raise Exit(EXIT_USAGE, f"{where}: {exc}") from exc
    try:
        watched = watch(owner, member, interval=args.interval)
    except (AttributeError, TypeError, ValueError) as exc:
        raise Exit(EXIT_USAGE, str(exc)) from exc
    shown = 0
    last_error: str | None = None

    def show(w: Any) -> None:
        nonlocal last_error
        if w.error is not None:  # the values go on; the error is shown once
            text = f"{type(w.error).__name__}: {w.error}".splitlines()[0]
            if text != last_error:
                print(f"{_clock(w.updated)} error {text}", flush=True)
            last_error = text
        else:
            last_error = None

    watched.observe(show)
    show(watched)  # the first read came while watch() waited for it: a failed one shows too
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # stopped by a supervisor: close cleanly too
    try:
        for value in watched:
            print(f"{_clock(watched.updated)} {json.dumps(value, default=jsonable)}", flush=True)
            shown += 1
            if args.count and shown >= args.count:
                break
    except KeyboardInterrupt:
        pass  # the way to stop watching
    finally:
        watched.close()
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _clock(epoch: float | None) -> str:
    """HH:MM:SS.mmm of a Redis-clock time (when a watched value was read)."""
    seconds = time.time() if epoch is None else epoch
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}"
