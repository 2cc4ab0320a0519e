"""The one boundary between redisrpc and redis-py.

Every Redis command redisrpc sends goes through a :class:`Transport`: it owns
a connection pool configured for RPC (no automatic retries, so a request is
never pushed twice; bounded socket timeouts, so nothing hangs), estimates the
Redis server's clock for deadlines (:mod:`redisrpc.core.clock`), and
translates redis-py exceptions into :mod:`redisrpc.errors` inside
:meth:`Transport.execute`, so nobody else ever sees ``redis.exceptions``.

Each exchange waits for Redis as long as its own commands may block, plus
:data:`BLOCK_MARGIN`: a ``BLPOP`` of 1 s gives up on a stalled Redis after
about 2 s, and one of 12 s does not fail at the 10 s socket timeout. Other
exchanges wait ``socket_timeout``.

Logic that both the sync and the asyncio clients need (the liveness check, the
advisory lock) is written once as a :data:`Plan`, a generator of steps that
:meth:`Transport.run` and :meth:`AsyncTransport.run` carry out: only the I/O
differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import os
import re
import select
import threading
import time
import weakref
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.cluster
import redis.exceptions as rexc
import redis.sentinel
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.crc import key_slot
from redis.retry import Retry

from ..errors import CommandError, RedisConnectionError, RedisRPCError, TransportError
from .clock import RedisClock
from .plan import NOW, Each, Plan, drive, drive_async

__all__ = [
    "BLOCK_MARGIN",
    "DEFAULT_URL",
    "RESCUE_TIMEOUT",
    "AsyncTransport",
    "ClusterTransport",
    "PackedCommand",
    "Transport",
    "blocking_seconds",
    "command_keys",
    "exchange_slot",
    "masked_url",
    "pack_commands",
    "parse_cluster_url",
    "parse_sentinel_url",
    "resolve_url",
    "url_of",
]

DEFAULT_URL = "redis://localhost:6379/0"

# Connection settings that belong to one pool instance and must not be copied.
_POOL_PRIVATE_KWARGS = frozenset({"maint_notifications_pool_handler", "retry", "retry_on_error"})

RESCUE_TIMEOUT = 1.0
"""Seconds :meth:`Transport.rescue` waits to connect or for a reply (the path after a failure)."""

T = TypeVar("T")


def _arg_bytes(arg: Any) -> bytes:
    """One command argument as Redis sees it (redis-py's rules: str as UTF-8, numbers as repr)."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return repr(arg).encode()
    raise TypeError(f"a Redis command argument must be str, bytes, int or float, not {type(arg)}")


def _pack_python(command: Sequence[Any]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = _arg_bytes(arg)
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


_pack_tuple: Callable[[tuple[Any, ...]], bytes]
try:  # the "fast" extra: hiredis packs a command in C
    from hiredis import pack_command as _pack_tuple
except ImportError:  # pragma: no cover - exercised where hiredis is absent
    _pack_tuple = _pack_python


def _pack(command: Sequence[Any]) -> bytes:
    if type(command) is PackedCommand:
        return command.packed
    return _pack_tuple(command if type(command) is tuple else tuple(command))


class PackedCommand(tuple[Any, ...]):
    """A command packed once, for one sent every round trip (a server's pop): a tuple of its
    arguments, like any command, whose RESP :func:`pack_commands` takes as it is, and whose
    blocking time (:func:`blocking_seconds`) an exchange's read timeout takes as it is."""

    packed: bytes
    blocks: float | None

    def __new__(cls, command: Sequence[Any]) -> PackedCommand:
        made = super().__new__(cls, command)
        made.packed = _pack_tuple(tuple(command))
        made.blocks = blocking_seconds(command)
        return made


def pack_commands(commands: Sequence[Sequence[Any]], *, quiet: int = 0) -> Any:
    """Encode ``commands`` as one RESP write; the first ``quiet`` ones will get no reply.

    A quiet command is preceded by ``CLIENT REPLY SKIP``: Redis runs it and
    sends nothing back, so it adds no reply, and no wakeup, to the round trip.
    Returns bytes, or a list of buffers when an argument is a ``memoryview``
    (a blob: its memory is written to the socket as it is, never copied).
    """
    for command in commands:
        if memoryview in map(type, command):  # the scan runs in C: every call's hot path
            return _pack_chunks(commands, quiet)
    # Our commands are tuples: packed by hiredis directly, with no Python frame per command.
    pack = _pack_tuple
    if not quiet:
        return b"".join(
            [
                pack(c) if type(c) is tuple else c.packed if type(c) is PackedCommand else _pack(c)
                for c in commands
            ]
        )
    return b"".join(
        [
            (_SKIP if i < quiet else b"")
            + (pack(c) if type(c) is tuple else c.packed if type(c) is PackedCommand else _pack(c))
            for i, c in enumerate(commands)
        ]
    )


def _pack_chunks(commands: Sequence[Sequence[Any]], quiet: int) -> list[Any]:
    """RESP for commands with memoryview arguments: small parts joined, blobs left in place."""
    chunks: list[Any] = []
    small: list[bytes] = []
    for i, command in enumerate(commands):
        if i < quiet:
            small.append(_SKIP)
        small.append(b"*%d\r\n" % len(command))
        for arg in command:
            if type(arg) is memoryview:
                small.append(b"$%d\r\n" % arg.nbytes)
                chunks += (b"".join(small), arg)
                small = [b"\r\n"]
            else:
                data = _arg_bytes(arg)
                small += (b"$%d\r\n" % len(data), data, b"\r\n")
    chunks.append(b"".join(small))
    return chunks


_SKIP = _pack_python(("CLIENT", "REPLY", "SKIP"))


BLOCK_MARGIN = 1.0
"""Seconds an exchange with blocking commands waits beyond their blocking time."""

_FOREVER = 10.0**7  # a blocking time of 0 means "no limit"; asyncio needs a number

# Where each blocking command keeps its blocking time: (argument index, unit in seconds).
# A negative index counts from the end; None means "after the BLOCK keyword".
_BLOCKING: dict[str, tuple[int | None, float]] = {
    "BLPOP": (-1, 1.0),
    "BRPOP": (-1, 1.0),
    "BRPOPLPUSH": (-1, 1.0),
    "BLMOVE": (-1, 1.0),
    "BZPOPMIN": (-1, 1.0),
    "BZPOPMAX": (-1, 1.0),
    "BLMPOP": (1, 1.0),
    "BZMPOP": (1, 1.0),
    "WAIT": (2, 0.001),
    "WAITAOF": (3, 0.001),
    "XREAD": (None, 0.001),
    "XREADGROUP": (None, 0.001),
}


# Every usual spelling, so the hot path (non-blocking commands, spelt in capitals) is one lookup.
_BLOCKING_SPELT: dict[Any, tuple[int | None, float]] = {
    spelt: where
    for name, where in _BLOCKING.items()
    for spelt in (name, name.lower(), name.encode(), name.lower().encode())
}


def _word(arg: Any) -> str:
    return arg.upper() if isinstance(arg, str) else bytes(arg).decode("ascii", "replace").upper()


def blocking_seconds(command: Sequence[Any]) -> float | None:
    """How long ``command`` may block in Redis, in seconds (``inf``: no limit; None: never).

    Covers the list, sorted-set and stream pops (BLPOP ... XREADGROUP) and
    WAIT/WAITAOF. A malformed blocking time is left to Redis to refuse (0).
    """
    name = command[0] if command else None
    where = _BLOCKING_SPELT.get(name)
    if where is None:
        if not isinstance(name, (str, bytes)) or name.isupper() or name.islower():
            return None
        where = _BLOCKING.get(_word(name))  # a mixed-case spelling
        if where is None:
            return None
    index, unit = where
    if index is None:  # XREAD[GROUP] ... [BLOCK ms] ... STREAMS ...
        words = [_word(a) if isinstance(a, (str, bytes)) else "" for a in command]
        if "BLOCK" not in words:
            return None
        index = words.index("BLOCK") + 1
    try:
        arg = command[index]
        value = float(arg if isinstance(arg, (int, float)) else _arg_bytes(arg))
    except (IndexError, TypeError, ValueError):
        return 0.0
    return math.inf if value == 0 else max(0.0, value * unit)


# Commands that never block, as redisrpc spells them: most of every exchange, one lookup each.
_NEVER_BLOCKS = frozenset(
    spelt
    for name in (
        "RPUSH", "LPUSH", "LPOP", "RPOP", "LREM", "LLEN", "LRANGE", "PEXPIRE", "EXPIRE", "GET",
        "SET", "DEL", "EXISTS", "INCR", "TIME", "ECHO", "PING", "INFO", "CLIENT", "HSET", "HDEL",
        "HGET", "HGETALL", "ZADD", "ZREM", "SCAN", "PUBLISH", "MGET", "HMGET", "ZRANGE",
        "ZRANGEBYSCORE", "ZREMRANGEBYSCORE", "ZCOUNT", "XADD", "XREVRANGE", "TYPE", "EVAL",
        "ASKING",
    )
    for spelt in (name, name.encode())
)  # fmt: skip


def _read_timeout(commands: Sequence[Sequence[Any]]) -> float | None:
    """Seconds to wait for an exchange's replies, or None for the socket timeout.

    Only exchanges with blocking commands get their own: the sum of their
    blocking times (Redis runs them one after another) plus the margin.
    """
    total: float | None = None
    for command in commands:
        if type(command) is PackedCommand:
            blocks = command.blocks
        elif command and command[0] in _NEVER_BLOCKS:
            continue
        else:
            blocks = blocking_seconds(command)
        if blocks is not None:
            total = (total or 0.0) + blocks
    return None if total is None else total + BLOCK_MARGIN


# redis-py 8 added a per-read timeout to the sync read_response: one settimeout per
# socket read, cheaper than can_read's extra polls on the hot path.
_READ_TIMEOUT = "timeout" in inspect.signature(AbstractConnection.read_response).parameters

try:  # the "fast" extra: redis-py's hiredis parser, whose reader we drive directly
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _MORE
    from redis._parsers.hiredis import _HiredisParser
except ImportError:  # pragma: no cover - redis-py without its hiredis parser
    _HiredisParser = None  # type: ignore[assignment,misc]
    _MORE = object()
try:
    from hiredis import PushNotification as _Push
except ImportError:  # pragma: no cover - no hiredis, or one before 3.2
    _Push = None  # type: ignore[assignment,misc]


def _direct(conn: AbstractConnection) -> Any:
    """The connection's hiredis parser when its replies can be read directly, else None.

    redis-py's ``read_response`` costs several Python frames per reply (a
    health-check clock, host formatting, push-message handling): most of an
    exchange's CPU once hiredis parses. Connections with redis-py's hiredis
    parser are read here instead, with the same errors and push messages
    handed to the parser as redis-py does; anything else (the pure-Python
    parser, a redis-py whose parser looks different) takes redis-py's own path.
    """
    parser = conn._parser
    if (
        _HiredisParser is None
        or type(parser) is not _HiredisParser
        or getattr(parser, "_reader", None) is None
        or not hasattr(getattr(parser, "_sock", None), "recv_into")  # fakeredis has its own
        or not isinstance(getattr(parser, "_buffer", None), bytearray)
    ):
        return None
    return parser


def _read_direct(parser: Any, wait: float | None) -> Any:
    """One reply from a hiredis parser's reader, reading its socket as needed.

    Error replies come back as exception instances (redis-py's own classes);
    a lost or silent socket raises redis-py's ConnectionError or TimeoutError.
    """
    reader = parser._reader
    reply = reader.gets()
    if reply is _MORE:
        sock, buffer = parser._sock, parser._buffer
        if wait is not None:
            sock.settimeout(wait)
        try:
            while reply is _MORE:
                size = sock.recv_into(buffer)
                if not size:
                    raise rexc.ConnectionError("Connection closed by server.")
                reader.feed(buffer, 0, size)
                reply = reader.gets()
        except TimeoutError as exc:  # socket.timeout
            raise rexc.TimeoutError("Timeout reading from socket") from exc
        except OSError as exc:
            raise rexc.ConnectionError(f"Error while reading from socket: {exc}") from exc
        finally:
            if wait is not None:
                sock.settimeout(parser._socket_timeout)
    if isinstance(reply, rexc.ConnectionError):
        raise reply  # e.g. LOADING: Redis is starting
    if _Push is not None and isinstance(reply, _Push):  # RESP3: not a reply to us
        parser.handle_push_response(reply)
        return _read_direct(parser, wait)
    return reply


def _read(conn: AbstractConnection, deadline: float | None = None, parser: Any = None) -> Any:
    """One reply; an error reply is returned as its exception instance.

    With a ``deadline`` (time.monotonic()), each socket read of the reply waits
    up to the time left until then (at least 0.1 ms) instead of the socket
    timeout. ``parser`` is :func:`_direct`'s verdict on ``conn``, taken once
    per exchange.
    """
    wait = None if deadline is None else max(1e-4, min(deadline - time.monotonic(), _FOREVER))
    if parser is not None:
        return _read_direct(parser, wait)
    try:
        if wait is None:
            return conn.read_response()
        if _READ_TIMEOUT:
            return conn.read_response(timeout=wait)  # type: ignore[call-arg,unused-ignore]
        # Before redis-py 8, can_read(timeout) is the public bounded wait.
        if not conn.can_read(wait):
            raise rexc.TimeoutError("no reply within the blocking time")
        return conn.read_response()
    except rexc.ResponseError as exc:
        return exc


def _deadline(commands: Sequence[Sequence[Any]]) -> float | None:
    timeout = _read_timeout(commands)
    return None if timeout is None else time.monotonic() + timeout


def _exchange(
    conn: AbstractConnection,
    packed: bytes | list[Any],
    count: int,
    deadline: float | None,
    parser: Any,
) -> list[Any]:
    """Send ``packed`` (``count`` commands) and read their replies (until ``deadline``).

    ``parser`` is :func:`_direct`'s verdict on ``conn`` as it is now. On any
    failure the connection is dropped: a half-read socket is never reused.
    """
    parser = _send(conn, packed, parser)
    try:
        return [_read(conn, deadline, parser) for _ in range(count)]
    except BaseException as exc:
        conn.disconnect()  # type: ignore[no-untyped-call]
        _mark_sent(exc)
        raise


def _exchange_quietly(
    conn: AbstractConnection,
    packed: bytes | list[Any],
    count: int,
    skipped: int,
    marker: bytes,
    *,
    deadline: float | None,
    parser: Any,
) -> tuple[list[Any], bool]:
    """Like :func:`_exchange` for commands whose first ``skipped`` were sent with SKIP.

    ``packed`` ends with ``ECHO marker``, whose reply shows which replies came:
    Redis may stop honouring SKIP after the probe (an ACL change, a busy
    script). Returns the replies (None for skipped ones) and whether SKIP was
    honoured; a reply stream that fits neither case drops the connection.
    """
    parser = _send(conn, packed, parser)
    try:
        got: list[Any] = []
        for _ in range(count + skipped + 1):
            reply = _read(conn, deadline, parser)
            if reply == marker:
                break
            got.append(reply)
        if len(got) == count - skipped:
            return [None] * skipped + got, True
        if len(got) == count + skipped:  # every SKIP refused: each quiet command answered
            return got[1 : 2 * skipped : 2] + got[2 * skipped :], False
        raise rexc.ConnectionError("Redis answered out of step with CLIENT REPLY SKIP")
    except BaseException as exc:
        conn.disconnect()  # type: ignore[no-untyped-call]
        _mark_sent(exc)
        raise


def _send(conn: AbstractConnection, packed: bytes | list[Any], parser: Any) -> Any:
    """Write one exchange; on failure the connection is dropped and nothing counts as sent.

    ``parser`` is :func:`_direct`'s verdict on ``conn``: a connection read
    directly is written directly too (redis-py's ``send_packed_command`` adds
    a health check and host formatting per write). Returns it, for reading the
    replies (None once redis-py's path has written: it may have connected).
    """
    try:
        chunks = packed if isinstance(packed, list) else (packed,)
        if parser is None:
            conn.send_packed_command(chunks, check_health=False)  # type: ignore[no-untyped-call]
            return None
        sock = parser._sock
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except TimeoutError as exc:  # socket.timeout
            raise rexc.TimeoutError("Timeout writing to socket") from exc
        except OSError as exc:
            raise rexc.ConnectionError(f"Error while writing to socket: {exc}") from exc
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    return parser


_SENT = "_redisrpc_sent"


def _mark_sent(exc: BaseException) -> None:
    """Note on a failure while reading that the commands had all been written."""
    with contextlib.suppress(AttributeError):  # an exception type that takes no attributes
        setattr(exc, _SENT, True)


def resolve_url(url: str | None = None) -> str:
    """Return ``url``, else the ``REDIS_URL`` environment variable, else the local default."""
    return url or os.environ.get("REDIS_URL") or DEFAULT_URL


_PASSWORD = re.compile(r"^([A-Za-z+]+://[^:/@]*:)[^@/]+@")


def masked_url(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: for display, never for connecting."""
    return _PASSWORD.sub(r"\1***@", url)


def url_of(client: Any) -> str | None:
    """A URL reaching the same Redis as a redis-py client, its password masked (:func:`masked_url`).

    For the code lines a notebook shows (``redisrpc.Client("redis://host:6379/0", "calc")``).
    None for what no plain URL describes (Sentinel-managed and cluster clients, transports).
    """
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, redis.ConnectionPool) or isinstance(
        pool, redis.sentinel.SentinelConnectionPool
    ):
        return None
    kwargs = pool.connection_kwargs
    user, password = kwargs.get("username"), kwargs.get("password")
    auth = f"{user or ''}:***@" if password else (f"{user}@" if user else "")
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix://{auth}{kwargs['path']}?db={db}"
    tls = issubclass(pool.connection_class, redis.connection.SSLConnection)
    host = str(kwargs.get("host", "localhost"))
    host = f"[{host}]" if ":" in host else host
    return f"{'rediss' if tls else 'redis'}://{auth}{host}:{kwargs.get('port', 6379)}/{db}"


def _describe_location(kwargs: dict[str, Any]) -> str:
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _translation(exc: BaseException, location: str) -> RedisRPCError:
    """The redisrpc error for a redis-py (or socket) exception; raise it ``from exc``.

    A lost connection whose commands had all been written says so (``sent``).
    """
    if isinstance(exc, (rexc.AuthenticationError, rexc.NoPermissionError)):
        return TransportError(f"Redis at {location} refused access: {exc}")
    if isinstance(exc, rexc.AskError):  # redis-py drops the word MOVED or ASK from the text
        kind = "MOVED" if isinstance(exc, rexc.MovedError) else "ASK"
        return TransportError(
            f"Redis at {location} redirected a command ({kind} slot {exc.slot_id}"
            f" to {exc.host}:{exc.port})"
        )
    if isinstance(exc, rexc.RedisError) and not isinstance(
        exc, (rexc.ConnectionError, rexc.TimeoutError)
    ):
        return TransportError(f"Redis at {location} returned an error: {exc}")
    if isinstance(exc, rexc.TimeoutError):
        error = RedisConnectionError(f"Redis at {location} did not answer in time: {exc}")
    else:  # redis-py's ConnectionError, or a socket or TLS error it lets through
        error = RedisConnectionError(f"cannot talk to Redis at {location}: {exc}")
    error.sent = bool(getattr(exc, _SENT, False))
    return error


def _checked(replies: list[Any], location: str) -> list[Any]:
    """``replies``, or raise :class:`CommandError` when any is an error reply."""
    for reply in replies:
        if isinstance(reply, rexc.ResponseError):
            break
    else:
        return replies
    translated_replies = [
        _error_reply(reply, location) if isinstance(reply, rexc.ResponseError) else reply
        for reply in replies
    ]
    first = next(r for r in translated_replies if isinstance(r, TransportError))
    raise CommandError(str(first), replies=translated_replies)


def _error_reply(reply: rexc.ResponseError, location: str) -> RedisRPCError:
    error = _translation(reply, location)
    error.__cause__ = reply
    return error


# -- Sentinel and Cluster URLs -------------------------------------------------


def _split_hosts(
    url: str, scheme: str
) -> tuple[str | None, str | None, list[tuple[str, int]], str, dict[str, str]]:
    """(user, password, [(host, port)...], path, query) of ``scheme://[user:pw@]h:p[,h:p]/path?q``."""
    rest = url[len(scheme) + 3 :]
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    user: str | None = None
    password: str | None = None
    if at:
        name, colon, secret = auth.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    addresses: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon:
            host, port = port, ""
        host = host.strip("[]")
        if not host:
            raise ValueError(f"no host in {part!r}")
        addresses.append((host, int(port) if port else 26379 if "sentinel" in scheme else 6379))
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    return user, password, addresses, path if slash else "", options


def parse_sentinel_url(url: str) -> dict[str, Any]:
    """Parse ``redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME[/db]``.

    Returns ``sentinels`` (a list of (host, port)), ``service_name``, and the
    master's connection settings (``db``, ``username``, ``password``,
    ``ssl`` for ``rediss+sentinel``). The query may give ``sentinel_username``
    and ``sentinel_password`` when the sentinels themselves require them. The
    default sentinel port is 26379.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise ValueError("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    user, password, sentinels, path, query = _split_hosts(url, scheme)
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("a Sentinel URL names the master: redis+sentinel://host:port/MASTER[/db]")
    unknown = set(query) - {"sentinel_username", "sentinel_password"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}")
    return {
        "sentinels": sentinels,
        "service_name": unquote(parts[0]),
        "db": int(parts[1]) if len(parts) == 2 else 0,
        "username": user,
        "password": password,
        "ssl": scheme == "rediss+sentinel",
        "sentinel_username": query.get("sentinel_username"),
        "sentinel_password": query.get("sentinel_password"),
    }


def parse_cluster_url(url: str) -> dict[str, Any]:
    """Parse ``redis+cluster://[user:password@]host:port[,host:port...]``: the startup nodes.

    Returns ``nodes`` (a list of (host, port)) and ``username``,
    ``password``, ``ssl`` (``rediss+cluster``). A cluster has only db 0.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("redis+cluster", "rediss+cluster"):
        raise ValueError("a Cluster URL starts with redis+cluster:// or rediss+cluster://")
    user, password, nodes, path, query = _split_hosts(url, scheme)
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    if query:
        raise ValueError(f"unknown option(s) {sorted(query)}")
    return {
        "nodes": nodes,
        "username": user,
        "password": password,
        "ssl": scheme == "rediss+cluster",
    }


def _client_of_url(url: str, *, connect_timeout: float) -> redis.Redis | redis.cluster.RedisCluster:
    """The redis-py client a URL describes (plain, Sentinel-managed, or a cluster)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme.endswith("+sentinel"):
        spec = parse_sentinel_url(url)
        sentinel_kwargs: dict[str, Any] = {
            # A silent sentinel must not hang the search for the master.
            "socket_timeout": connect_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        if spec["sentinel_password"] is not None:
            sentinel_kwargs["password"] = spec["sentinel_password"]
            sentinel_kwargs["username"] = spec["sentinel_username"]
        manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            spec["sentinels"],
            sentinel_kwargs=sentinel_kwargs,
            db=spec["db"],
            username=spec["username"],
            password=spec["password"],
            ssl=spec["ssl"],
        )
        master: redis.Redis = manager.master_for(spec["service_name"])  # type: ignore[no-untyped-call]
        return master
    if scheme.endswith("+cluster"):
        spec = parse_cluster_url(url)
        return _LazyCluster(spec)  # type: ignore[return-value]
    return redis.Redis.from_url(url)


class _LazyCluster:
    """Startup nodes and settings of a cluster not contacted yet (Transport.of connects lazily)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec


# -- Cluster routing -------------------------------------------------------------

# Commands redisrpc sends that name no key (routed to any primary).
_KEYLESS = frozenset(
    {
        "PING",
        "ECHO",
        "TIME",
        "CLIENT",
        "ASKING",
        "WAIT",
        "WAITAOF",
        "INFO",
        "ROLE",
        "CLUSTER",
        "SCRIPT",
        "FUNCTION",
        "READONLY",
        "READWRITE",
        "DBSIZE",
        "COMMAND",
        "CONFIG",
        "HELLO",
    }
)
_ALL_KEYS = frozenset({"DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH", "SINTER", "SUNION"})
_ALL_BUT_LAST = frozenset({"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})
_TWO_KEYS = frozenset(
    {"RPOPLPUSH", "LMOVE", "BRPOPLPUSH", "BLMOVE", "RENAME", "RENAMENX", "SMOVE", "COPY"}
)
_NUMKEYS_AT = {
    "EVAL": 2,
    "EVALSHA": 2,
    "EVAL_RO": 2,
    "EVALSHA_RO": 2,
    "FCALL": 2,
    "FCALL_RO": 2,
    "LMPOP": 1,
    "ZMPOP": 1,
    "SINTERCARD": 1,
    "BLMPOP": 2,
    "BZMPOP": 2,
}


def command_keys(command: Sequence[Any]) -> list[Any]:
    """The keys ``command`` touches, by the command's own key layout.

    Covers the commands redisrpc sends and the usual others; any other
    command is taken to have its key first (as most do).
    """
    if not command:
        return []
    name = _word(command[0])
    args = list(command[1:])
    if name in _KEYLESS:
        return []
    if name in _ALL_KEYS:
        return args
    if name in _ALL_BUT_LAST:
        return args[:-1]
    if name in _TWO_KEYS:
        return args[:2]
    if name in ("MSET", "MSETNX"):
        return args[::2]
    if name in _NUMKEYS_AT:
        at = _NUMKEYS_AT[name] - 1
        count = int(_arg_bytes(args[at]))
        return args[at + 1 : at + 1 + count]
    if name in ("XREAD", "XREADGROUP"):
        words = [_word(a) if isinstance(a, (str, bytes)) else "" for a in args]
        rest = args[words.index("STREAMS") + 1 :]
        return rest[: len(rest) // 2]
    return args[:1]


def exchange_slot(commands: Sequence[Sequence[Any]]) -> int | None:
    """The one hash slot of an exchange's keys (None: no keys); raises if they span slots.

    A cluster runs each exchange on one node, so every key of an exchange
    must hash to one slot: redisrpc names a service's keys with one hash tag
    (:mod:`redisrpc.core.keys`) so its exchanges always do.
    """
    slot: int | None = None
    for command in commands:
        for key in command_keys(command):
            this = key_slot(_arg_bytes(key))
            if slot is None:
                slot = this
            elif this != slot:
                raise TransportError(
                    f"one exchange spans Redis Cluster hash slots {slot} and {this}"
                    f" ({_word(command[0])} {key!r}): its keys need one hash tag"
                )
    return slot


def _split(replies: list[Any], exchanges: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """The flat replies of concatenated exchanges, cut back into one list per exchange."""
    out, at = [], 0
    for exchange in exchanges:
        out.append(replies[at : at + len(exchange)])
        at += len(exchange)
    return out


_HAS_POLL = hasattr(select, "poll")


def _stale(conn: AbstractConnection, parser: Any) -> bool:
    """Whether an idle connection has anything to read: Redis closed or reset it.

    One ``poll`` with no wait. redis-py's ``can_read(0)`` does the same with
    more around it (formatting the host for an error message that is rarely
    raised); it still serves connections not read directly. ``parser`` is
    :func:`_direct`'s verdict on ``conn``.
    """
    try:
        if parser is None or not _HAS_POLL:  # Windows has no poll()
            return bool(conn.can_read(0))
        if parser._reader.has_data():
            return True
        poller = select.poll()
        poller.register(parser._sock, select.POLLIN)
        return bool(poller.poll(0))
    except (rexc.ConnectionError, rexc.TimeoutError, OSError):
        return True


class Transport:
    """A retry-free Redis connection pool plus a Redis clock estimate.

    Build one with :meth:`Transport.of`; servers and clients each own one.
    Everything goes through :meth:`execute` (or a plan run by :meth:`run`);
    the redis-py pool underneath is private.

    A Sentinel-managed client (``sentinel.master_for(name)``, or a
    ``redis+sentinel://`` URL) gives a pool whose connections ask the
    sentinels for the current master whenever they (re)connect, so after a
    failover the next exchange finds the new master by itself. A cluster
    gives a :class:`ClusterTransport`.
    """

    cluster = False
    """Whether this talks to a Redis Cluster (keys then carry hash tags: :mod:`.keys`)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        source = client.connection_pool
        kwargs = {
            k: v for k, v in source.connection_kwargs.items() if k not in _POOL_PRIVATE_KWARGS
        }
        kwargs.update(
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            # A retried RPUSH could deliver a request twice; we never retry.
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
        )
        kwargs.pop("orig_socket_timeout", None)
        self._pool: redis.ConnectionPool
        if isinstance(source, redis.sentinel.SentinelConnectionPool):
            kwargs.pop("connection_pool", None)  # the new pool sets its own
            self.location = f"sentinel master {source.service_name!r}"
            self._pool = redis.sentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
                source.service_name,
                source.sentinel_manager,
                connection_class=source.connection_class,
                **kwargs,
            )
        else:
            self.location = _describe_location(kwargs)
            self._pool = redis.ConnectionPool(connection_class=source.connection_class, **kwargs)
        self.socket_timeout = socket_timeout
        self._clock = RedisClock()
        self._clock_lock = threading.Lock()
        # execute()'s own idle connections: a list's pop and append are atomic, which
        # makes taking one far cheaper than redis-py's pool (the hot path of every call).
        self._idle: list[AbstractConnection] = []
        self._made: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()
        self._made_lock = threading.Lock()
        self._pid = os.getpid()
        self._skips: bool | None = None  # does this Redis honour CLIENT REPLY SKIP? (probed)
        self._marker = b"redisrpc-" + os.urandom(8).hex().encode()  # ends a quiet exchange
        self._echo = _pack_python(("ECHO", self._marker))  # packed once: sent after every one

    @classmethod
    def of(cls, target: Any, **options: Any) -> Transport:
        """Build a transport from a redis-py client, a URL, or None (``REDIS_URL``).

        URLs: ``redis://``, ``rediss://``, ``unix://`` (redis-py's forms),
        ``redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db]``
        and ``redis+cluster://[user:password@]host:port[,host:port...]``
        (``rediss+`` for TLS). Clients: ``redis.Redis``, a Sentinel-managed one
        (``Sentinel(...).master_for(name)``), or ``redis.cluster.RedisCluster``.
        A transport is returned as it is (``options`` then do not apply).
        """
        if isinstance(target, Transport):
            return target
        client: Any
        if target is None or isinstance(target, str):
            url = resolve_url(target)
            try:
                client = _client_of_url(url, connect_timeout=options.get("connect_timeout", 5.0))
            except (ValueError, IndexError) as exc:
                raise TransportError(f"invalid Redis URL {url!r}: {exc}") from exc
        else:
            client = target
        if isinstance(client, (_LazyCluster, redis.cluster.RedisCluster)):
            return ClusterTransport(client, **options)
        return cls(client, **options)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.disconnect()
        for conn in list(self._made):
            conn.disconnect()  # type: ignore[no-untyped-call]

    def ping(self) -> None:
        """Check that Redis answers (one PING); raises the usual redisrpc errors."""
        self.execute(("PING",))

    def execute(self, *commands: Sequence[Any], quiet: int = 0) -> list[Any]:
        """Send ``commands`` in one write and return their raw replies, in order.

        A non-transactional pipeline without redis-py's per-pipeline overhead
        (the hot path of every call). A connection is never reused half-read.

        Raises :class:`~redisrpc.RedisConnectionError` when Redis cannot be
        reached or does not answer in time (the socket timeout, or for an
        exchange with blocking commands their blocking time plus
        :data:`BLOCK_MARGIN`), :class:`~redisrpc.TransportError` when it
        refuses access, and :class:`~redisrpc.errors.CommandError` after
        reading every reply when any of them is an error reply.

        The first ``quiet`` commands are sent with ``CLIENT REPLY SKIP`` where
        Redis supports it: their replies are None, as Redis sends none. Each
        reply Redis writes costs a wakeup, which on a loaded machine costs the
        call waiting for the next reply. Without support, their real replies
        are returned; an ECHO sent last shows which replies came, so a Redis
        that stops honouring SKIP later is noticed (and probed again).
        """
        try:
            if quiet and self._skips is None:
                self._skips = self._probe_skip()
            skipped = quiet if self._skips else 0
            deadline = _deadline(commands)
            conn, parser = self._ready()
            try:
                if not skipped:
                    packed = pack_commands(commands)
                    replies = _exchange(conn, packed, len(commands), deadline, parser)
                else:
                    packed = pack_commands(commands, quiet=skipped)
                    packed = packed + self._echo if type(packed) is bytes else [*packed, self._echo]
                    replies, honoured = _exchange_quietly(
                        conn,
                        packed,
                        len(commands),
                        skipped,
                        self._marker,
                        deadline=deadline,
                        parser=parser,
                    )
                    if not honoured:
                        self._skips = None  # probe again before the next quiet command
            finally:
                self._idle.append(conn)
        except (rexc.RedisError, OSError) as exc:
            raise _translation(exc, self.location) from exc
        return _checked(replies, self.location)

    def _take(self) -> AbstractConnection:
        """An idle connection that is ready to send, or a new one."""
        return self._ready()[0]

    def _ready(self) -> tuple[AbstractConnection, Any]:
        """:meth:`_take`'s connection, with :func:`_direct`'s verdict on it as it is now.

        The verdict is taken once per exchange, after any reconnect (which
        gives the parser a new reader and socket).
        """
        if self._pid != os.getpid():
            # A forked child must not share its parent's sockets; the parent keeps them.
            self._idle, self._made, self._pid = [], weakref.WeakSet(), os.getpid()
            self._made_lock = threading.Lock()  # another thread may have held it at the fork
        try:
            conn = self._idle.pop()
        except IndexError:
            with self._made_lock:
                conn = self._pool.make_connection()  # type: ignore[assignment]
                self._made.add(conn)
        try:
            if getattr(conn, "_sock", None) is None:
                # connect() is a no-op while connected, but redis-py 8 runs even that
                # through its retry machinery (1.4 us): skipped on the hot path.
                conn.connect()  # type: ignore[no-untyped-call]
            else:
                parser = _direct(conn)
                if not _stale(conn, parser):
                    return conn, parser  # the hot path: one verdict serves the exchange
                # An idle connection has nothing to read unless Redis closed or reset
                # it: reconnect now rather than send a request into a dead socket
                # (which would make the call's outcome unknown).
                conn.disconnect()  # type: ignore[no-untyped-call]
                conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            self._idle.append(conn)
            raise
        return conn, _direct(conn)

    def _probe_skip(self) -> bool:
        """Whether Redis honours ``CLIENT REPLY SKIP`` (some proxies and ACLs refuse it).

        The probe is behavioural: of two ECHOs after a SKIP, only the second
        may answer. Anything else means quiet commands are sent with replies.
        """
        first, second = b"redisrpc-probe-1", b"redisrpc-probe-2"
        conn = self._take()
        try:
            conn.send_packed_command(  # type: ignore[no-untyped-call]
                (_SKIP + _pack_python(("ECHO", first)) + _pack_python(("ECHO", second)),),
                check_health=False,
            )
            try:
                reply = conn.read_response()
            except rexc.ResponseError:
                reply = None  # SKIP refused: both ECHOs still answer
            if reply == second:
                return True
            for _ in range(1 if reply == first else 2):
                conn.read_response()
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            self._idle.append(conn)
        return False

    def execute_each(self, exchanges: Sequence[Sequence[Sequence[Any]]]) -> list[list[Any]]:
        """Carry out several exchanges (each within one hash slot); their replies, per exchange.

        On a single Redis they go in one write, as one exchange.
        """
        flat = [command for exchange in exchanges for command in exchange]
        return _split(self.execute(*flat), exchanges) if flat else [[] for _ in exchanges]

    def run(self, plan: Plan[T]) -> T:
        """Carry out a :data:`~redisrpc.core.plan.Plan` (blocking) and return its result."""
        return drive(plan, self.step)

    def step(self, step: Any) -> Any:
        """Carry out one generic plan step: commands, :data:`NOW`, :class:`Each` or a pause."""
        if isinstance(step, tuple):
            return self.execute(*step)
        if isinstance(step, Each):
            return self.execute_each(step.exchanges)
        if step is NOW:
            return self.now_ms()
        if isinstance(step, (int, float)):
            time.sleep(step)
            return None
        raise TypeError(f"not a plan step for this transport: {step!r}")

    def rescue(self, plan: Plan[T], *, timeout: float = RESCUE_TIMEOUT) -> T:
        """Carry out a plan on a new connection that waits at most ``timeout`` seconds.

        The path after a connection failure: it must neither reuse a broken
        connection nor keep its caller waiting as long as a normal command may.
        """
        kwargs = dict(self._pool.connection_kwargs)
        kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        conn = self._pool.connection_class(**kwargs)

        def step(step: Any) -> Any:
            if not isinstance(step, tuple):
                return self.step(step)
            try:
                packed = pack_commands(step)
                replies = _exchange(conn, packed, len(step), _deadline(step), _direct(conn))
            except (rexc.RedisError, OSError) as exc:
                raise _translation(exc, self.location) from exc
            return _checked(replies, self.location)

        try:
            return drive(plan, step)
        finally:
            conn.disconnect()

    # -- the Redis clock ----------------------------------------------------

    def now_ms(self) -> int:
        """Return an estimate of the Redis server's clock, in epoch milliseconds.

        Deadlines and heartbeats use the Redis clock, so hosts whose clocks
        disagree still agree on time, and a step of the local wall clock
        changes nothing (see :class:`~redisrpc.core.clock.RedisClock`). The
        offset is measured with ``TIME`` and refreshed every minute.
        """
        now = self._clock.current_ms()
        if now is not None:
            return now
        with self._clock_lock:
            if self._clock.due:  # another thread may have measured meanwhile
                self.run(self._clock.measuring())
        return self._clock.now_ms()


_REDIRECTS = 5
"""How many MOVED/ASK redirections one exchange follows before giving up."""

# Connection settings of a RedisCluster worth copying to our own node connections.
_NODE_SETTINGS = (
    "username",
    "password",
    "credential_provider",
    "ssl",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_ca_certs",
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "client_name",
    "protocol",
)


def _redirection(reply: Any) -> tuple[bool, str, int] | None:
    """(asking, host, port) when ``reply`` is a MOVED or ASK redirection, else None."""
    cause = reply.__cause__ if isinstance(reply, TransportError) else None
    if not isinstance(cause, rexc.AskError):
        return None
    return not isinstance(cause, rexc.MovedError), str(cause.host), int(cause.port)


_Batch = tuple[tuple[str, int] | None, bool, list[Sequence[Any]]]


def _routing(commands: Sequence[Sequence[Any]]) -> Generator[_Batch, list[Any], list[Any]]:
    """Send an exchange, then resend only its redirected commands where Redis points.

    Yields (node or None for the slot's owner, asking, commands) and gets
    their replies (error replies included). A redirected command did not run,
    so it is sent once more; one that answered ran, and is never resent (a
    server's reply push and its blocked pop may be split by a slot moving).
    Returns the replies in order; raises CommandError if any is an error.
    """
    replies: list[Any] = [None] * len(commands)
    pending = list(range(len(commands)))
    node: tuple[str, int] | None = None
    asking = False
    for _ in range(_REDIRECTS):
        got = yield node, asking, [commands[i] for i in pending]
        moved: list[int] = []
        targets = set()
        for index, reply in zip(pending, got, strict=True):
            replies[index] = reply
            where = _redirection(reply)
            if where is not None:
                moved.append(index)
                targets.add(where)
        if not moved:
            break
        if len(targets) > 1:
            break  # redirected to several nodes at once: report, do not guess
        pending = moved
        asking, host, port = targets.pop()
        node = (host, port)
    first = next((r for r in replies if isinstance(r, TransportError)), None)
    if first is not None:
        raise CommandError(str(first), replies=replies)
    return replies


def _asking(commands: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """``commands`` each after ASKING (which holds for the next command only)."""
    return [c for command in commands for c in (("ASKING",), command)]


def _once(commands: tuple[Any, ...]) -> Plan[list[Any]]:
    replies: list[Any] = yield commands
    return replies


class ClusterTransport(Transport):
    """A :class:`Transport` for a Redis Cluster: each exchange goes to the node owning its slot.

    Every exchange keeps to one hash slot (:func:`exchange_slot` checks it;
    :mod:`redisrpc.core.keys` tags each service's keys so it does), and is
    sent in one write on one connection of that node, as on a single Redis.
    The slot map comes from redis-py's cluster machinery
    (``RedisCluster``'s nodes manager). A MOVED reply sends the exchange on to
    the named node and refreshes the map; ASK sends it once, after ASKING, to
    the importing node; a lost node refreshes the map before the next
    exchange. Only the commands Redis redirected are sent again (a
    redirected command did not run); those that answered ran, and are not.

    Commands are never sent quietly here: the replies are what tell a
    redirection.
    """

    cluster = True

    def __init__(
        self, client: Any, *, socket_timeout: float = 10.0, connect_timeout: float = 5.0
    ) -> None:
        settings: dict[str, Any]
        if isinstance(client, _LazyCluster):
            spec = client.spec
            self._startup: list[tuple[str, int]] = list(spec["nodes"])
            settings = {k: spec[k] for k in ("username", "password") if spec[k] is not None}
            if spec["ssl"]:
                settings["ssl"] = True
        elif isinstance(client, redis.cluster.RedisCluster):
            self._startup = [(n.host, int(n.port)) for n in client.get_nodes()]  # type: ignore[no-untyped-call]
            given = client.nodes_manager.connection_kwargs
            settings = {k: given[k] for k in _NODE_SETTINGS if given.get(k) is not None}
        else:
            raise TypeError(f"not a Redis Cluster client: {client!r}")
        if not self._startup:
            raise TransportError("a Redis Cluster needs at least one startup node")
        self._settings = settings
        self.socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self.location = "cluster " + ",".join(f"{h}:{p}" for h, p in self._startup)
        self._clock = RedisClock()
        self._clock_lock = threading.Lock()
        self._map: redis.cluster.RedisCluster | None = None
        self._map_lock = threading.Lock()
        self._stale = False
        self._nodes: dict[str, Transport] = {}

    # -- the slot map ---------------------------------------------------------

    def _slots(self) -> redis.cluster.RedisCluster:
        """The cluster map, built on first use and refreshed once marked stale."""
        with self._map_lock:
            try:
                if self._map is None:
                    self._map = redis.cluster.RedisCluster(
                        startup_nodes=[
                            redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                            for h, p in self._startup
                        ],
                        socket_timeout=self._connect_timeout,
                        socket_connect_timeout=self._connect_timeout,
                        **self._settings,
                    )
                    self._stale = False
                elif self._stale:
                    self._map.nodes_manager.initialize()
                    self._stale = False
            except (rexc.RedisError, rexc.RedisClusterException, OSError) as exc:
                raise _translation(exc, self.location) from exc
            return self._map

    def node_of(self, slot: int | None) -> Transport:
        """The transport of the primary that owns ``slot`` (None: any primary)."""
        cluster = self._slots()
        try:
            if slot is None:
                node = cluster.get_default_node()  # type: ignore[no-untyped-call]
            else:
                node = cluster.nodes_manager.get_node_from_slot(slot)
        except rexc.RedisClusterException as exc:  # the slot is not covered (yet)
            self._stale = True
            raise RedisConnectionError(f"Redis Cluster at {self.location}: {exc}") from exc
        return self._node_at(node.host, int(node.port))

    def _node_at(self, host: str, port: int) -> Transport:
        name = f"{host}:{port}"
        node = self._nodes.get(name)
        if node is None:
            with self._map_lock:
                node = self._nodes.get(name)
                if node is None:
                    client = redis.Redis(host=host, port=port, **self._settings)
                    node = Transport(
                        client,
                        socket_timeout=self.socket_timeout,
                        connect_timeout=self._connect_timeout,
                    )
                    self._nodes[name] = node
        return node

    def primaries(self) -> list[Transport]:
        """The transport of every primary node, as the map has them now."""
        cluster = self._slots()
        primaries = cluster.get_primaries()  # type: ignore[no-untyped-call]
        return [self._node_at(n.host, int(n.port)) for n in primaries]

    # -- exchanges --------------------------------------------------------------

    def execute(self, *commands: Sequence[Any], quiet: int = 0) -> list[Any]:
        """As :meth:`Transport.execute`, on the node that owns the exchange's hash slot.

        Raises :class:`~redisrpc.TransportError` at once if the exchange's
        keys span slots. ``quiet`` is ignored: every command is answered.
        """
        slot = exchange_slot(commands)
        routing = _routing(commands)
        try:
            where, asking, batch = next(routing)
            while True:
                if where is None:
                    node = self.node_of(slot)
                else:
                    node = self._node_at(*where)
                    self._stale = self._stale or not asking  # MOVED: the map is out of date
                try:
                    got = node.execute(*_asking(batch) if asking else batch)
                except CommandError as exc:
                    got = exc.replies
                except RedisConnectionError:
                    self._stale = True  # the node may have failed over: refresh first
                    raise
                where, asking, batch = routing.send(got[1::2] if asking else got)
        except StopIteration as done:
            result: list[Any] = done.value
            return result

    def execute_each(self, exchanges: Sequence[Sequence[Sequence[Any]]]) -> list[list[Any]]:
        """Each exchange on its own slot's node (one round trip each)."""
        return [self.execute(*exchange) if exchange else [] for exchange in exchanges]

    def rescue(self, plan: Plan[T], *, timeout: float = RESCUE_TIMEOUT) -> T:
        """As :meth:`Transport.rescue`: each exchange on a new connection of its node."""

        def one(step: Any) -> Any:
            if isinstance(step, tuple):
                node = self.node_of(exchange_slot(step))
                return node.rescue(_once(step), timeout=timeout)
            if isinstance(step, Each):
                return [one(exchange) for exchange in step.exchanges]
            return self.step(step)

        return drive(plan, one)

    def close(self) -> None:
        """Close every node's connections and the map's."""
        for node in list(self._nodes.values()):
            node.close()
        with self._map_lock:
            if self._map is not None:
                self._map.close()
                self._map = None


async def _exchange_async(
    conn: redis.asyncio.connection.AbstractConnection, commands: Sequence[Sequence[Any]]
) -> list[Any]:
    """The asyncio form of :func:`_exchange` (every command answered)."""
    deadline = _deadline(commands)
    try:
        await conn.send_packed_command(pack_commands(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            # None: the socket timeout; else what is left of the exchange's wait.
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                replies.append(await conn.read_response(timeout=wait))
            except rexc.ResponseError as exc:
                replies.append(exc)
    except BaseException:
        await conn.disconnect()  # cancelled or failed mid-reply: never reuse it
        raise
    return replies


# Pool settings that are wiring of one redis-py pool, not part of where Redis is.
_ASYNC_SKIP = frozenset(
    {"event_dispatcher", "parser_class", "redis_connect_func", "himport_registry", "retry"}
)


def _async_connection_class(sync_class: type) -> type[redis.asyncio.connection.AbstractConnection]:
    aio = redis.asyncio.connection
    if issubclass(sync_class, aio.AbstractConnection):
        return sync_class
    if issubclass(sync_class, redis.UnixDomainSocketConnection):
        return aio.UnixDomainSocketConnection
    if issubclass(sync_class, redis.SSLConnection):
        return aio.SSLConnection
    return aio.Connection


def _accepted_kwargs(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and klass is not object:
            names.update(inspect.signature(init).parameters)
    return names


def _async_sentinel(manager: Any) -> Any:
    """An asyncio Sentinel manager asking the same sentinels as a sync (or asyncio) one."""
    if isinstance(manager, redis.asyncio.sentinel.Sentinel):
        return manager
    addresses, settings = [], {}
    for sentinel in manager.sentinels:
        given = sentinel.connection_pool.connection_kwargs
        addresses.append((given["host"], given["port"]))
        settings = {
            k: given[k]
            for k in ("socket_timeout", "socket_connect_timeout", "username", "password")
            if given.get(k) is not None
        }
    return redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        addresses, min_other_sentinels=manager.min_other_sentinels, sentinel_kwargs=settings
    )


class AsyncTransport:
    """The asyncio counterpart of :class:`Transport`: same pool settings, no retries.

    redis.asyncio connections belong to the event loop that opened them, so
    this keeps one pool per running loop: a transport made once keeps working
    across ``asyncio.run`` calls and inside Jupyter's own loop.
    """

    _source: Any  # the pool whose settings this copies
    cluster = False
    """Whether this talks to a Redis Cluster (as :attr:`Transport.cluster`)."""

    def __init__(
        self, target: Any = None, *, socket_timeout: float = 10.0, connect_timeout: float = 5.0
    ) -> None:
        self.socket_timeout = socket_timeout
        self._clock = RedisClock()
        # A cluster: the sync transport keeps the slot map; one of these per node does the I/O.
        self._router: ClusterTransport | None = None
        self._node_transports: dict[int, AsyncTransport] = {}
        if isinstance(target, AsyncTransport) and target._router is not None:
            target = target._router
        if not isinstance(target, (Transport, AsyncTransport, redis.asyncio.Redis)):
            target = Transport.of(target)
        if isinstance(target, ClusterTransport):
            self._router, self.cluster, self.location = target, True, target.location
            return
        source_pool: Any
        if isinstance(target, (Transport, AsyncTransport)):
            source_pool = target._pool if isinstance(target, Transport) else target._source
        else:
            source_pool = target.connection_pool
        self._source = source_pool
        # Sentinel: (service name, sync manager); each event loop gets its own asyncio manager.
        self._sentinel: tuple[str, Any] | None = None
        sentinel_pools = (
            redis.sentinel.SentinelConnectionPool,
            redis.asyncio.sentinel.SentinelConnectionPool,
        )
        if isinstance(source_pool, sentinel_pools):
            self._sentinel = (source_pool.service_name, source_pool.sentinel_manager)
        connection_class = _async_connection_class(source_pool.connection_class)
        if self._sentinel is not None and not issubclass(
            connection_class, redis.asyncio.sentinel.SentinelManagedConnection
        ):
            connection_class = (
                redis.asyncio.sentinel.SentinelManagedSSLConnection
                if issubclass(connection_class, redis.asyncio.connection.SSLConnection)
                else redis.asyncio.sentinel.SentinelManagedConnection
            )
        accepted = _accepted_kwargs(connection_class)
        kwargs = {
            k: v
            for k, v in source_pool.connection_kwargs.items()
            if k in accepted
            and k not in _POOL_PRIVATE_KWARGS
            and k not in _ASYNC_SKIP
            and k != "connection_pool"
            and not k.startswith(("maint", "orig_", "oss_"))
        }
        kwargs.update(
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            retry_on_error=[],
        )
        self.location = _describe_location(kwargs)
        if self._sentinel is not None:
            self.location = f"sentinel master {self._sentinel[0]!r}"
        self._connection_class = connection_class
        self._kwargs = kwargs
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, redis.asyncio.ConnectionPool
        ] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, target: Any, **options: Any) -> AsyncTransport:
        """Build one from a redis-py client (sync or asyncio), a URL, None, or a transport."""
        return target if isinstance(target, AsyncTransport) else cls(target, **options)

    @property
    def _pool(self) -> redis.asyncio.ConnectionPool:
        """The connection pool of the running event loop."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            if self._sentinel is not None:
                name, manager = self._sentinel
                pool = redis.asyncio.sentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
                    name,
                    _async_sentinel(manager),
                    connection_class=self._connection_class,
                    **self._kwargs,
                )
            else:
                pool = redis.asyncio.ConnectionPool(
                    connection_class=self._connection_class, **self._kwargs
                )
            self._pools[loop] = pool
        return pool

    async def close(self) -> None:
        """Close the running loop's pooled connections."""
        for node in list(self._node_transports.values()):
            await node.close()
        if self._router is not None:
            return
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.disconnect()

    async def ping(self) -> None:
        """Check that Redis answers (one PING), as :meth:`Transport.ping`."""
        await self.execute(("PING",))

    async def execute(self, *commands: Sequence[Any]) -> list[Any]:
        """Like :meth:`Transport.execute`: one write, raw replies, the same errors."""
        if self._router is not None:
            return await self._routed(commands)
        try:
            pool = self._pool
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                replies = await _exchange_async(conn, commands)
            finally:
                await pool.release(conn)
        except (rexc.RedisError, OSError) as exc:
            raise _translation(exc, self.location) from exc
        return _checked(replies, self.location)

    async def run(self, plan: Plan[T]) -> T:
        """Carry out a plan in the running loop and return its result."""
        return await drive_async(plan, self.step)

    async def execute_each(self, exchanges: Sequence[Sequence[Sequence[Any]]]) -> list[list[Any]]:
        """As :meth:`Transport.execute_each`: one write, or one per exchange on a cluster."""
        if self._router is not None:
            return [await self.execute(*exchange) if exchange else [] for exchange in exchanges]
        flat = [command for exchange in exchanges for command in exchange]
        return _split(await self.execute(*flat), exchanges) if flat else [[] for _ in exchanges]

    async def _node(self, router: ClusterTransport, slot: int | None) -> AsyncTransport:
        """The asyncio transport of the node owning ``slot`` (the map is read in a thread)."""
        if router._map is None or router._stale:
            await asyncio.to_thread(router._slots)
        return self._async_of(router.node_of(slot))

    def _async_of(self, node: Transport) -> AsyncTransport:
        found = self._node_transports.get(id(node))
        if found is None:
            found = AsyncTransport(
                node,
                socket_timeout=self.socket_timeout,
                connect_timeout=node._pool.connection_kwargs.get("socket_connect_timeout") or 5.0,
            )
            self._node_transports[id(node)] = found
        return found

    async def _routed(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """:meth:`ClusterTransport.execute` for asyncio: the slot's node, redirections followed."""
        router = self._router
        assert router is not None
        slot = exchange_slot(commands)
        routing = _routing(commands)
        try:
            where, asking, batch = next(routing)
            while True:
                if where is None:
                    node = await self._node(router, slot)
                else:
                    node = self._async_of(router._node_at(*where))
                    router._stale = router._stale or not asking
                try:
                    got = await node.execute(*_asking(batch) if asking else batch)
                except CommandError as exc:
                    got = exc.replies
                except RedisConnectionError:
                    router._stale = True
                    raise
                where, asking, batch = routing.send(got[1::2] if asking else got)
        except StopIteration as done:
            result: list[Any] = done.value
            return result

    async def step(self, step: Any) -> Any:
        """Carry out one generic plan step, as :meth:`Transport.step`."""
        if isinstance(step, tuple):
            return await self.execute(*step)
        if isinstance(step, Each):
            return await self.execute_each(step.exchanges)
        if step is NOW:
            return await self.now_ms()
        if isinstance(step, (int, float)):
            await asyncio.sleep(step)
            return None
        raise TypeError(f"not a plan step for this transport: {step!r}")

    async def rescue(self, plan: Plan[T], *, timeout: float = RESCUE_TIMEOUT) -> T:
        """Carry out a plan on a new, briefly waiting connection: see :meth:`Transport.rescue`."""
        if self._router is not None:
            router = self._router

            async def routed(step: Any) -> Any:
                if isinstance(step, tuple):
                    node = await self._node(router, exchange_slot(step))
                    return await node.rescue(_once(step), timeout=timeout)
                if isinstance(step, Each):
                    return [await routed(exchange) for exchange in step.exchanges]
                return await self.step(step)

            return await drive_async(plan, routed)
        # The pool's own settings: a Sentinel pool adds the link its connections ask.
        kwargs = dict(self._pool.connection_kwargs)
        kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        conn = self._connection_class(**kwargs)

        async def step(step: Any) -> Any:
            if not isinstance(step, tuple):
                return await self.step(step)
            try:
                replies = await _exchange_async(conn, step)
            except (rexc.RedisError, OSError) as exc:
                raise _translation(exc, self.location) from exc
            return _checked(replies, self.location)

        try:
            return await drive_async(plan, step)
        finally:
            await conn.disconnect()

    async def now_ms(self) -> int:
        """The Redis server clock estimate, as :meth:`Transport.now_ms` (the same clock)."""
        now = self._clock.current_ms()
        if now is not None:
            return now
        await self.run(self._clock.measuring())
        return self._clock.now_ms()
