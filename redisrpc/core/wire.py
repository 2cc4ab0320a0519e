"""One exchange on one redis-py connection: its commands packed, written, and their replies read.

An exchange is a run of commands sent in one write on one connection, whose
replies are then read back in order. Here are its parts, below any pool:

* packing: :func:`pack_commands` writes RESP itself (hiredis packs each
  command in C when present), with ``CLIENT REPLY SKIP`` before quiet
  commands and ``memoryview`` blobs left uncopied;
* blocking times: :func:`blocking_seconds` reads how long a command may block
  in Redis, so an exchange waits that long plus :data:`BLOCK_MARGIN`
  (:func:`_read_timeout`, :func:`_deadline`) rather than the socket timeout;
* the read path: where a connection uses redis-py's hiredis parser, its
  reader and socket are driven directly (:func:`_direct`, :func:`_read_direct`),
  else redis-py's ``read_response`` reads; :func:`_stale` checks an idle
  connection with one ``poll``. Setting a socket's timeout or low-water mark
  is a system call each, so the direct path leaves both in place for the next
  exchange, which usually wants the same (:func:`_wait_at_most`,
  :func:`_gathering`): a call's exchange costs its client and its server a
  send and a receive, each with the ``poll`` CPython makes before it;
* writes and whole exchanges: :func:`_send`, :func:`_exchange` and
  :func:`_exchange_quietly`.

These raise redis-py's exceptions and return error replies as exception
instances; a failed exchange drops its connection (a half-read socket is never
reused), and a failure after the write is marked as sent (:func:`_mark_sent`).
Pools, retries and the translation into :mod:`redisrpc.errors` belong to
:mod:`redisrpc.core.transport`.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import math
import select
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions as rexc
from redis.connection import AbstractConnection

__all__ = ["BLOCK_MARGIN", "PackedCommand", "blocking_seconds", "pack_commands"]


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


# A blocking exchange's first socket read waits for this many bytes: more than
# an acknowledgement (":1\r\n", 4 bytes) and at most any two replies (3 bytes
# or more each). So a push's acknowledgement that comes before the blocking pop's
# reply wakes no one on its own (one wakeup less per call: on a busy or virtual
# machine a wakeup costs more than the Python around it); an error reply, the
# pop's reply and a closed connection still wake the reader at once.
_WAKE_BYTES = 5


_LOW_WATER = [hasattr(socket, "SO_RCVLOWAT")]  # [False] once the system refused it
_UNSUPPORTED = {
    code
    for name in ("ENOPROTOOPT", "EINVAL", "WSAENOPROTOOPT", "WSAEINVAL")
    if (code := getattr(errno, name, None)) is not None
}


def _low_water(sock: Any, size: int) -> bool:
    """Set the socket's receive low-water mark; False where it cannot be set.

    It only saves wakeups: reads work the same without it. A system that
    does not support it (Windows) turns it off for the process; any other
    failure (a closed socket) is left to the read that follows.
    """
    if _LOW_WATER[0]:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
            return True
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                _LOW_WATER[0] = False
    return False


# The socket whose low-water mark is _WAKE_BYTES is noted on its parser: the mark stays
# between exchanges, and is set again (a system call) only when a read needs the other.
_RAISED = "_redisrpc_low_water_raised"


def _gathering(parser: Any, sock: Any, gather: bool) -> bool:
    """Give ``sock`` the low-water mark the next read needs; whether it is :data:`_WAKE_BYTES`.

    A call's exchange usually arrives whole in its first read, so the mark
    raised for it is still right for the next call's: no system call either way.
    A raised mark that cannot be lowered (the socket broke) raises redis-py's
    ConnectionError: a read must not wait for bytes that may never come.
    """
    raised = getattr(parser, _RAISED, None) is sock
    if gather == raised:
        return raised
    if gather:
        raised = _low_water(sock, _WAKE_BYTES)
    else:
        try:  # whatever _LOW_WATER says now: this socket took the mark, so it has one
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        except OSError as exc:
            raise rexc.ConnectionError(f"Error while reading from socket: {exc}") from exc
        raised = False
    setattr(parser, _RAISED, sock if raised else None)
    return raised


_SLACK = 0.02
"""How far (a share of the wait) a socket's timeout may be from the wanted one and still serve."""


def _wait_at_most(sock: Any, seconds: float | None) -> None:
    """Give ``sock`` a timeout of ``seconds``, unless the one it has is within :data:`_SLACK`.

    Setting a timeout is a system call; the timeout left by the last exchange
    (a blocking pop's wait) usually serves the next one as it is.
    """
    have = sock.gettimeout()
    if seconds is None or have is None:
        if have != seconds:
            sock.settimeout(seconds)
    elif abs(have - seconds) > seconds * _SLACK:
        sock.settimeout(seconds)


def _read_direct(parser: Any, wait: float | None, gather: bool = False) -> Any:
    """One reply from a hiredis parser's reader, reading its socket as needed.

    Error replies come back as exception instances (redis-py's own classes);
    a lost or silent socket raises redis-py's ConnectionError or TimeoutError.
    Each socket read waits up to ``wait`` seconds (None: the socket timeout).
    With ``gather`` (the first read of a blocking exchange that expects two
    replies or more), the first socket read waits for :data:`_WAKE_BYTES`.
    """
    reader = parser._reader
    reply = reader.gets()
    if reply is _MORE:
        sock, buffer = parser._sock, parser._buffer
        _wait_at_most(sock, parser._socket_timeout if wait is None else wait)
        gather = _gathering(parser, sock, gather)
        try:
            while reply is _MORE:
                size = sock.recv_into(buffer)
                if not size:
                    raise rexc.ConnectionError("Connection closed by server.")
                reader.feed(buffer, 0, size)
                reply = reader.gets()
                if gather and reply is _MORE:  # the rest may be a short piece: take any byte
                    gather = _gathering(parser, sock, False)
        except TimeoutError as exc:  # socket.timeout
            raise rexc.TimeoutError("Timeout reading from socket") from exc
        except OSError as exc:
            raise rexc.ConnectionError(f"Error while reading from socket: {exc}") from exc
    if isinstance(reply, rexc.ConnectionError):
        raise reply  # e.g. LOADING: Redis is starting
    if _Push is not None and isinstance(reply, _Push):  # RESP3: not a reply to us
        parser.handle_push_response(reply)
        # The push may have brought part of the reply: what is left of the exchange may
        # be under the raised mark, so the reply's own reads take any byte.
        return _read_direct(parser, wait)
    return reply


def _restore_socket(conn: AbstractConnection) -> None:
    """Give a connection read directly back redis-py's socket settings, for redis-py to read.

    The direct path leaves its last timeout and low-water mark on the socket
    (:func:`_wait_at_most`, :func:`_gathering`); redis-py reads expect neither.
    """
    parser = _direct(conn)
    if parser is not None and parser._sock is not None:
        _wait_at_most(parser._sock, parser._socket_timeout)
        _gathering(parser, parser._sock, False)


def _read(
    conn: AbstractConnection,
    deadline: float | None = None,
    parser: Any = None,
    gather: bool = False,
) -> Any:
    """One reply; an error reply is returned as its exception instance.

    With a ``deadline`` (time.monotonic()), each socket read of the reply waits
    up to the time left until then (at least 0.1 ms) instead of the socket
    timeout. ``parser`` is :func:`_direct`'s verdict on ``conn``, taken once
    per exchange; ``gather`` is passed to :func:`_read_direct`.
    """
    wait = None if deadline is None else max(1e-4, min(deadline - time.monotonic(), _FOREVER))
    if parser is not None:
        return _read_direct(parser, wait, gather)
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
        gather = deadline is not None and count > 1
        return [_read(conn, deadline, parser, gather and not i) for i in range(count)]
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
        # Two replies or more always come (the marker's among them).
        gather = deadline is not None and count - skipped >= 1
        for i in range(count + skipped + 1):
            reply = _read(conn, deadline, parser, gather and not i)
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
        if type(packed) is not bytes or not _may_write_now(sock, len(packed), parser):
            _wait_at_most(sock, parser._socket_timeout)
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


_SMALL_WRITE = 64 * 1024
_WRITE_WAIT = 1.0


def _may_write_now(sock: Any, size: int, parser: Any) -> bool:
    """Whether a write of ``size`` bytes may wait as long as the socket's timeout as it is.

    A small write waits only while Redis reads nothing at all, so any timeout
    from a second up to the socket timeout (the last blocking pop's wait,
    usually) bounds it well enough, with no system call to set one; a large
    write, or one after a longer wait (a pop with no time limit), gets the
    socket timeout.
    """
    have: float | None = sock.gettimeout()
    want: float | None = parser._socket_timeout
    if have is None or want is None or size > _SMALL_WRITE:
        return have == want
    return min(want, _WRITE_WAIT) <= have <= want


_SENT = "_redisrpc_sent"


def _mark_sent(exc: BaseException) -> None:
    """Note on a failure while reading that the commands had all been written."""
    with contextlib.suppress(AttributeError):  # an exception type that takes no attributes
        setattr(exc, _SENT, True)


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
