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
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .._version import __version__
from ..core.registry import DEFAULT_HEARTBEAT, DEFAULT_PREFIX
from ..errors import (
    EncodingError,
    RedisConnectionError,
    RedisRPCError,
    RemoteException,
    ServerGoneError,
    TimeoutException,
    TransportError,
)
from .act import cmd_call, cmd_set, cmd_watch
from .common import (
    EXIT_INTERRUPTED,
    EXIT_REMOTE,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Exit,
    positive_int,
)
from .look import cmd_describe, cmd_list
from .serving import cmd_demo, cmd_serve

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_REMOTE",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]


# Every negative JSON number (-3, -2.5, -1e3, -2.5E-3) and -Infinity. argparse's own
# pattern knows only -3 and -2.5, so it took "-1e3" for an unknown option.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-Infinity$")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Arguments are JSON literals: a negative number is an argument, never an option
        # (no option of ours looks like a number, so argparse does the same for -3).
        self._negative_number_matcher = _NEGATIVE_NUMBER

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
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("describe", parents=[common], help="show a remote object's API")
    p.add_argument("name", help="service name")
    p.add_argument("--json", action="store_true", help="print the raw description")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    p.set_defaults(func=cmd_describe)

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
    p.set_defaults(func=cmd_call)

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
    p.set_defaults(func=cmd_set)

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
    p.set_defaults(func=cmd_watch)

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
        type=positive_int,
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
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", parents=[common], help="serve example objects to explore")
    p.add_argument(
        "--no-embedded",
        action="store_true",
        help="fail instead of starting an embedded Redis when none answers",
    )
    p.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_demo)
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
    except Exit as exc:
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
