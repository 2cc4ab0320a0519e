"""The ``redisrpc`` command line: list, describe, call, set and serve remote objects.

::

    redisrpc list                          # live servers on REDIS_URL (or localhost)
    redisrpc describe calc                 # doc, methods with signatures, properties
    redisrpc call calc add 5               # arguments are JSON literals; prints JSON
    redisrpc call calc div 1 --kw x=0      # keyword arguments
    redisrpc set psu voltage1 5            # set a property (value: a JSON literal)
    redisrpc watch psu voltage1            # print each change (Ctrl-C stops; --count N)
    redisrpc serve mymodule:Thing --name thing
    redisrpc serve mymodule:Thing --readonly --expose idn,voltage --deny-tag admin
    redisrpc demo                          # serve example objects (embedded Redis if needed)

``--url`` (or the ``REDIS_URL`` environment variable) picks the Redis server:
``redis://``, ``rediss://`` for TLS, ``redis://user:password@host:port/db``.

Exit codes: 0 success; 1 the remote call raised (its type, message and
traceback are printed); 2 bad usage or arguments; 3 Redis unreachable or
refusing, unknown service, or every instance gone; 4 timed out; 130
interrupted.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import importlib
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from ._version import __version__
from .client.discovery import ServiceInfo, discover
from .client.signature import signature_from_params
from .client.sync import Client, description
from .client.watch import watch
from .core.cancel import running_calls_of
from .core.keys import queue_name
from .core.protocol import SET_PROPERTY
from .core.registry import DEFAULT_HEARTBEAT, DEFAULT_PREFIX
from .core.transport import Transport, resolve_url
from .errors import (
    EncodingError,
    RedisConnectionError,
    RedisRPCError,
    RemoteException,
    ServerGoneError,
    TimeoutException,
    TransportError,
)
from .notebook import rst
from .server.loop import Server

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_REMOTE",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "main",
]

EXIT_REMOTE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130

_MISSING = object()
_PROBE_TIMEOUT = 3.0  # how long an unregistered service gets to answer before it is "unknown"


class _Exit(Exception):  # noqa: N818 - control flow, never escapes main()
    """Stop with one line on stderr and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- formatting -----------------------------------------------------------------


def _duration(seconds: float) -> str:
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


def _ago(seconds: float) -> str:
    return f"{max(0.0, seconds):.1f}s ago" if seconds < 60 else f"{_duration(seconds)} ago"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
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


def _dumps(value: Any) -> str:
    indent = 2 if isinstance(value, (dict, list)) and value else None
    return json.dumps(value, indent=indent, ensure_ascii=False, default=_jsonable)


def _literal(text: str) -> Any:
    """A JSON literal, or the text itself when it is not one (plain words)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _keywords(items: Sequence[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise _Exit(
                EXIT_USAGE, f"--kw expects key=value with a Python name as key, not {item!r}"
            )
        kwargs[key] = _literal(value)
    return kwargs


# -- shared steps -----------------------------------------------------------------


def _transport(args: argparse.Namespace) -> Transport:
    """A transport on the chosen Redis, checked with one PING so failures come first."""
    transport = Transport.of(resolve_url(args.url), connect_timeout=3.0)
    transport.ping()
    return transport


def _services(transport: Transport, prefix: str) -> dict[str, ServiceInfo]:
    return {s.name: s for s in discover(transport, prefix=prefix)}


def _connect(args: argparse.Namespace, transport: Transport, name: str) -> Client:
    """A described client for ``name``, or exit 3 when nothing serves it."""
    registered = name in _services(transport, args.prefix)
    probe = args.timeout if registered else min(args.timeout, _PROBE_TIMEOUT)
    try:
        return Client(resolve_url(args.url), name, timeout=probe)
    except TimeoutException as exc:
        if exc.started:
            raise
        raise _Exit(
            EXIT_UNAVAILABLE,
            f"unknown service {name!r}: no live server is registered under that name and"
            f" nothing answered within {probe:g} s (`redisrpc list` shows live servers)",
        ) from exc


# -- commands -------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    transport = _transport(args)
    services = discover(transport, prefix=args.prefix)
    queues = {s.name: queue_name(s.name, cluster=transport.cluster) for s in services}
    found = transport.run(running_calls_of(list(queues.values()))) if services else {}
    running = {name: found[queue] for name, queue in queues.items()}
    if args.json:
        print(
            json.dumps(
                [
                    {**dataclasses.asdict(s), "last_seen": s.last_seen, "running": running[s.name]}
                    for s in services
                ],
                indent=2,
            )
        )
        return 0
    if not services:
        print(f"no live servers registered on {transport.location} (prefix {args.prefix!r})")
        return 0
    now = transport.now_ms() / 1000.0
    rows = []
    for s in services:
        first = s.instances[0]
        where = f"{first.host}:{first.pid}"
        if len(s.instances) > 1:
            where += f" +{len(s.instances) - 1} more"
        rows.append(
            [
                s.name,
                s.class_name,
                str(len(s.instances)),
                where,
                _duration(now - s.started_at),
                str(s.queue_depth),
                _ago(now - s.last_seen),
                _running(running[s.name], now),
            ]
        )
    header = ["NAME", "CLASS", "INSTANCES", "HOST:PID", "UPTIME", "QUEUE", "LAST SEEN", "RUNNING"]
    print(_table(header, rows))
    return 0


def _running(calls: list[dict[str, Any]], now: float) -> str:
    """What a service runs now: the oldest call (method, elapsed, caller), and how many more."""
    if not calls:
        return "-"
    first = calls[0]
    since = first.get("since")
    elapsed = f" {_duration(now - since)}" if isinstance(since, (int, float)) else ""
    text = f"{first.get('method', '?')}(){elapsed} by {first.get('caller') or '?'}"
    return text + (f" +{len(calls) - 1} more" if len(calls) > 1 else "")


def _signature(entry: dict[str, Any]) -> str:
    text = str(signature_from_params(entry.get("params"), entry.get("returns")))
    return text if entry.get("signature_known", True) else f"{text}  (signature unknown)"


def _indented(doc: str, pad: str = "      ") -> list[str]:
    # reST inline markup (:meth:`add`, double backquotes) shown as what it names.
    return [pad + line if line else "" for line in rst.to_text(doc).strip().splitlines()]


def _cmd_describe(args: argparse.Namespace) -> int:
    transport = _transport(args)
    proxy = _connect(args, transport, args.name)
    found = description(proxy)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if found is None:
        print(
            f"{args.name}: answers, but does not describe itself"
            " (an original RedisRPC server?); any method name can be called"
        )
        return 0
    lines = [
        f"{args.name}: {found.get('class', '?')} (module {found.get('module', '?')}),"
        f" served by {found.get('server', '?')}, {found.get('library', '?')}"
    ]
    if found.get("doc"):
        lines += ["", *_indented(str(found["doc"]), "  ")]
    lines += ["", "Methods:"]
    for entry in found.get("methods", []) or [{"name": "(none)", "params": []}]:
        lines.append(f"  {entry['name']}{_signature(entry)}")
        lines += _indented(str(entry.get("doc") or ""))
    lines += ["", "Properties:"]
    if not found.get("properties"):
        lines.append("  (none)")
    for entry in found.get("properties", []):
        annotation = f": {entry['annotation']}" if entry.get("annotation") else ""
        access = "read-only" if entry.get("readonly") else "read-write"
        lines.append(f"  {entry['name']}{annotation}  ({access})")
        lines += _indented(str(entry.get("doc") or ""))
    service = _services(transport, str(found.get("registry_prefix") or args.prefix)).get(args.name)
    if service is not None:
        now = transport.now_ms() / 1000.0
        lines += ["", f"Instances ({len(service.instances)}, queue depth {service.queue_depth}):"]
        for i in service.instances:
            lines.append(
                f"  {i.id}  up {_duration(now - i.started_at)}, last seen"
                f" {_ago(now - i.last_seen)}, {i.library}, protocol {i.protocol}"
            )
    print("\n".join(lines))
    return 0


def _cmd_call(args: argparse.Namespace) -> int:
    call_args = [_literal(a) for a in args.args]
    kwargs = _keywords(args.kw)
    transport = _transport(args)
    proxy = _connect(args, transport, args.name)
    found = description(proxy)
    method = args.method
    if method.startswith("_"):
        raise _Exit(EXIT_USAGE, f"{method!r} is private and cannot be called")
    if found is not None:
        props = {p["name"] for p in found.get("properties", [])}
        methods = {m["name"]: m for m in found.get("methods", [])}
        if method in props:
            if call_args or kwargs:
                raise _Exit(
                    EXIT_USAGE, f"{args.name}.{method} is a property: it takes no arguments"
                )
            value = getattr(_with_timeout(proxy, args.timeout), method)
            print(_dumps(value))
            return 0
        if method not in methods:
            known = ", ".join(sorted([*methods, *props])) or "none"
            raise _Exit(EXIT_USAGE, f"{args.name} has no method {method!r} (known: {known})")
        signature = signature_from_params(methods[method].get("params"))
        unexpected = _unexpected_keywords(signature, kwargs)
        if unexpected:
            raise _Exit(
                EXIT_USAGE,
                f"bad arguments for {args.name}.{method}{signature}: unexpected keyword"
                f" argument{'s' if len(unexpected) > 1 else ''} {', '.join(map(repr, unexpected))}",
            )
        try:
            signature.bind(*call_args, **kwargs)
        except TypeError as exc:
            raise _Exit(
                EXIT_USAGE, f"bad arguments for {args.name}.{method}{signature}: {exc}"
            ) from exc
    value = _with_timeout(proxy, args.timeout)._rpc_call(method, call_args, kwargs)
    print(_dumps(value))
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


def _cmd_set(args: argparse.Namespace) -> int:
    prop = args.property
    if prop.startswith("_"):
        raise _Exit(EXIT_USAGE, f"{prop!r} is private and cannot be set")
    value = _literal(args.value)
    transport = _transport(args)
    proxy = _connect(args, transport, args.name)
    found = description(proxy)
    if found is not None:
        props = {p["name"]: p for p in found.get("properties", [])}
        if prop not in props:
            methods = {m["name"] for m in found.get("methods", [])}
            what = "a method, not a property" if prop in methods else "no such property"
            known = ", ".join(sorted(props)) or "none"
            raise _Exit(EXIT_USAGE, f"{args.name}.{prop}: {what} (properties: {known})")
        if props[prop].get("readonly"):
            raise _Exit(EXIT_USAGE, f"{args.name}.{prop} is read-only")
    _with_timeout(proxy, args.timeout)._rpc_call(SET_PROPERTY, [prop, value], {})
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    """Print each new value of a watched member, one line each, until Ctrl-C or ``--count``."""
    *path, member = args.member.split(".")
    transport = _transport(args)
    owner: Any = _connect(args, transport, args.name)
    for segment in path:  # a child's member: ch1.volts, channels.0.volts
        owner = owner[int(segment)] if segment.isdigit() else getattr(owner, segment)
    try:
        watched = watch(owner, member, interval=args.interval)
    except (AttributeError, TypeError, ValueError) as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from exc
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
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # stopped by a supervisor: close cleanly too
    try:
        for value in watched:
            print(f"{_clock(watched.updated)} {json.dumps(value, default=_jsonable)}", flush=True)
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


def _with_timeout(proxy: Client, timeout: float) -> Client:
    return proxy._rpc_with(timeout=float(timeout))


def _load(spec: str) -> tuple[Any, str]:
    """Import ``module:attr`` and return the object to serve (classes and factories are called)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _Exit(EXIT_USAGE, f"expected module:attr (e.g. mypackage.lab:Stage), not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: serve modules in this directory
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise _Exit(EXIT_USAGE, f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise _Exit(EXIT_USAGE, f"{module_name!r} has no attribute {attr!r}") from exc
    if inspect.isclass(target) or inspect.isfunction(target) or inspect.ismethod(target):
        try:
            target = target()
        except Exception as exc:
            raise _Exit(EXIT_REMOTE, f"{spec}() failed: {type(exc).__name__}: {exc}") from exc
    return target, attr.rsplit(".", 1)[-1]


def _cmd_serve(args: argparse.Namespace) -> int:
    obj, attr = _load(args.target)
    name = args.name or attr.lower()
    allow = _names(args.expose) if args.expose else None
    # A mistyped --expose name would silently serve less than meant: refuse it.
    missing = [n for n in allow or () if inspect.getattr_static(obj, n, _MISSING) is _MISSING]
    if missing:
        raise _Exit(
            EXIT_USAGE,
            f"--expose: {type(obj).__qualname__} has no member {', '.join(map(repr, missing))}",
        )
    url = resolve_url(args.url)
    _transport(args).close()
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
        deny_tags=_names(args.deny_tag),
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


def _names(values: Sequence[str]) -> list[str]:
    """The names of repeatable, comma-separated options (``--expose a,b --expose c``)."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return number


def _cmd_demo(args: argparse.Namespace) -> int:
    from .embedded import ensure_redis  # noqa: PLC0415
    from .sim.demo import READ_DURING_CALLS, demo_objects  # noqa: PLC0415 - loads the sim bench

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


# -- the parser ---------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``redisrpc`` command."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="Redis URL (default: $REDIS_URL, else redis://localhost:6379/0)",
    )
    common.add_argument(
        "--prefix",
        default=argparse.SUPPRESS,
        help=f"registry key prefix (default: {DEFAULT_PREFIX})",
    )
    parser = _Parser(
        prog="redisrpc",
        parents=[common],
        description="Call remote Python objects through Redis.",
        epilog="Exit codes: 1 remote error, 2 usage, 3 Redis or service unavailable, 4 timeout.",
    )
    parser.add_argument("--version", action="version", version=f"redisrpc {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p = sub.add_parser("list", parents=[common], help="list live servers")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("describe", parents=[common], help="show a remote object's API")
    p.add_argument("name", help="service name")
    p.add_argument("--json", action="store_true", help="print the raw description")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    p.set_defaults(func=_cmd_describe)

    p = sub.add_parser(
        "call",
        parents=[common],
        help="call a remote method, print JSON",
        description="Arguments are JSON literals; plain words are strings.",
    )
    p.add_argument("name", help="service name")
    p.add_argument("method", help="method (or property) name")
    p.add_argument("args", nargs="*", metavar="ARG", help="positional argument (JSON literal)")
    p.add_argument(
        "--kw",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument (repeatable)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    p.set_defaults(func=_cmd_call)

    p = sub.add_parser(
        "set",
        parents=[common],
        help="set a remote property",
        description="The value is a JSON literal; a plain word is a string.",
    )
    p.add_argument("name", help="service name")
    p.add_argument("property", help="property (or data attribute) name")
    p.add_argument("value", help="the new value (JSON literal)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    p.set_defaults(func=_cmd_set)

    p = sub.add_parser(
        "watch",
        parents=[common],
        help="print each change of a remote value",
        description="Print each new value of a property (or read-only method) as it changes:"
        " its read time and JSON. All watchers share one read per interval on the server.",
    )
    p.add_argument("name", help="service name")
    p.add_argument("member", help="property name, or a child's (ch1.volts)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between reads (default 1)")
    p.add_argument("--count", type=int, default=0, help="stop after this many values")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve an importable object",
        description="Serve module:attr; classes and factories are called first.",
    )
    p.add_argument("target", metavar="module:attr")
    p.add_argument("--name", help="service name (default: attr, lower-cased)")
    p.add_argument(
        "--heartbeat", type=float, default=DEFAULT_HEARTBEAT, help="registry heartbeat in seconds"
    )
    p.add_argument("--no-register", action="store_true", help="stay out of the registry")
    p.add_argument(
        "--readonly",
        action="store_true",
        help="read-only: properties cannot be set; only methods marked"
        " @redisrpc.expose(readonly=True) can be called",
    )
    p.add_argument(
        "--expose",
        action="append",
        default=[],
        metavar="NAMES",
        help="serve only these members (comma-separated, repeatable)",
    )
    p.add_argument(
        "--deny-tag",
        action="append",
        default=[],
        metavar="TAGS",
        help="hide members tagged @redisrpc.expose(tags=...) with these (comma-separated,"
        " repeatable)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="calls run at once (default 1; more only for thread-safe objects)",
    )
    p.add_argument(
        "--read-during-calls",
        action="append",
        default=[],
        metavar="MEMBER",
        help="a member safe to read while a call runs, for watchers (repeatable)",
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", parents=[common], help="serve example objects to explore")
    p.add_argument(
        "--no-embedded",
        action="store_true",
        help="fail instead of starting an embedded Redis when none answers",
    )
    p.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    args.url = getattr(args, "url", None)
    args.prefix = getattr(args, "prefix", DEFAULT_PREFIX)
    for option in ("timeout", "heartbeat"):
        value = getattr(args, option, None)
        if value is not None and not (0 < value < float("inf")):
            return _fail(EXIT_USAGE, f"--{option} must be a positive number of seconds")
    try:
        return int(args.func(args))
    except _Exit as exc:
        return _fail(exc.code, exc.message)
    except RemoteException as exc:
        if exc.remote_traceback:
            print(exc.remote_traceback.rstrip("\n"), file=sys.stderr)
        return _fail(
            EXIT_REMOTE, f"remote {exc.remote_type or 'error'}: {exc.message} (from {exc.server})"
        )
    except TimeoutException as exc:
        return _fail(EXIT_TIMEOUT, str(exc))
    except (RedisConnectionError, TransportError, ServerGoneError) as exc:
        return _fail(EXIT_UNAVAILABLE, str(exc))
    except EncodingError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except RedisRPCError as exc:
        return _fail(EXIT_REMOTE, f"{type(exc).__name__}: {exc}")
    except RuntimeError as exc:  # e.g. the embedded Redis needs fakeredis
        return _fail(EXIT_UNAVAILABLE, str(exc))
    except KeyboardInterrupt as exc:  # its message says what became of an interrupted call
        return _fail(EXIT_INTERRUPTED, str(exc) or "interrupted")


def _fail(code: int, message: str) -> int:
    print(f"redisrpc: error: {message}", file=sys.stderr)
    return code
