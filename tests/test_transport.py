"""The Redis boundary: command packing, unacknowledged commands, and its own connections."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import importlib.util
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Generator

import pytest
import redis
from conftest import RedisServer, free_port, wait_for
from redis.connection import Connection

import redisrpc
from redisrpc.core import transport as transport_module
from redisrpc.core import wire
from redisrpc.core.aio_transport import AsyncTransport
from redisrpc.core.protocol import decode_request
from redisrpc.core.transport import (
    PackedCommand,
    Transport,
    blocking_seconds,
    masked_url,
    pack_commands,
    url_of,
)
from redisrpc.embedded import EmbeddedRedis
from redisrpc.errors import CommandError, RedisConnectionError, TransportError

COMMANDS = [
    ("RPUSH", "calc", b'{"function_call": {}}', b"\x00\xff"),
    ("BLPOP", "calc:rpc:ab", 0.25),
    ("PEXPIRE", "q", 60000),
    ("SET", "caf\u00e9", "\u03bc", "PX", 10**12),
    ("ECHO", -1.5e-7),
]


def test_commands_are_packed_as_redis_py_packs_them():
    """Our packing (hiredis or pure Python) is byte for byte redis-py's, for every argument type."""
    conn = Connection()
    expected = b"".join(b"".join(conn.pack_command(*command)) for command in COMMANDS)
    assert pack_commands(COMMANDS) == expected
    pure = b"".join(wire._pack_python(command) for command in COMMANDS)
    assert pure == expected


@pytest.mark.parametrize("quiet", [0, 2])
def test_commands_packed_once_are_packed_as_any_other(quiet):
    """A PackedCommand (a server's pop, packed once) gives the bytes of the plain command."""
    packed = [PackedCommand(command) for command in COMMANDS]
    assert packed == COMMANDS  # still the tuple of its arguments
    assert pack_commands(packed, quiet=quiet) == pack_commands(COMMANDS, quiet=quiet)
    assert wire._read_timeout(packed) == wire._read_timeout(COMMANDS)
    assert wire._read_timeout(packed[2:]) is None  # none of them blocks
    with_blob = [*packed, ("RPUSH", "q", memoryview(b"blob"))]
    chunks = pack_commands(with_blob, quiet=quiet)
    assert b"".join(chunks) == b"".join(pack_commands([*COMMANDS, with_blob[-1]], quiet=quiet))


def test_a_bool_argument_is_refused():
    """A bool is not a Redis argument (redis-py refuses it too)."""
    with pytest.raises(TypeError):
        wire._pack_python(("SET", "k", True))


def test_quiet_commands_run_without_a_reply(r: redis.Redis, redis_url: str):
    """Quiet commands run, Redis answers only the rest, and their slots read None."""
    transport = Transport.of(redis_url)
    replies = transport.execute(
        ("RPUSH", "q", "a"), ("RPUSH", "q", "b"), ("LRANGE", "q", 0, -1), quiet=2
    )
    assert replies == [None, None, [b"a", b"b"]]
    assert transport.execute(("PING",)) == [b"PONG"]  # nothing left unread on the connection
    transport.close()


def test_quiet_commands_on_the_embedded_redis():
    """fakeredis's TCP server (the embedded default) honours CLIENT REPLY SKIP too."""
    with EmbeddedRedis() as embedded:
        transport = Transport.of(embedded.url)
        assert transport.execute(("SET", "k", "v"), ("GET", "k"), quiet=1) == [None, b"v"]
        transport.close()


def test_without_client_reply_quiet_commands_are_answered(own_redis: RedisServer):
    """A user who may not send CLIENT gets every reply, errors included, and nothing is lost."""
    with own_redis.client() as admin:
        admin.execute_command("ACL", "SETUSER", "noclient", "on", ">pw", "~*", "+@all", "-client")
    url = f"redis://noclient:pw@127.0.0.1:{own_redis.port}/0"
    transport = Transport.of(url)
    with pytest.raises(CommandError, match="WRONGTYPE") as caught:
        transport.execute(("SET", "k", "v"), ("LPUSH", "k", "x"), ("GET", "k"), quiet=2)
    replies = caught.value.replies
    assert replies[0] == b"OK"
    assert isinstance(replies[1], TransportError) and "WRONGTYPE" in str(replies[1])
    assert replies[2] == b"v"
    assert transport.execute(("PING",)) == [b"PONG"]
    transport.close()


def test_skip_refused_after_the_probe_is_noticed(own_redis: RedisServer):
    """An ACL change that forbids CLIENT after the probe: replies stay in step, none is lost."""
    with own_redis.client() as admin:
        admin.execute_command("ACL", "SETUSER", "lab", "on", ">pw", "~*", "+@all")
        transport = Transport.of(f"redis://lab:pw@127.0.0.1:{own_redis.port}/0")
        assert transport.execute(("RPUSH", "q", "a"), ("LLEN", "q"), quiet=1) == [None, 1]
        admin.execute_command("ACL", "SETUSER", "lab", "-client")
    with pytest.raises(CommandError) as caught:
        transport.execute(("RPUSH", "q", "b"), ("SET", "q", "x", "GET"), quiet=1)
    replies = caught.value.replies
    assert replies[0] == 2  # the quiet command's real reply
    assert isinstance(replies[1], TransportError) and "WRONGTYPE" in str(replies[1])
    # Probed again, SKIP is refused: quiet commands are now sent acknowledged.
    assert transport.execute(("LRANGE", "q", 0, -1), ("PING",), quiet=1) == [[b"a", b"b"], b"PONG"]
    transport.close()


def test_a_connection_killed_while_idle_is_replaced(r: redis.Redis, redis_url: str):
    """Redis closing an idle connection costs the next command nothing: it reconnects first."""
    transport = Transport.of(redis_url)
    (first,) = transport.execute(("CLIENT", "ID"))
    assert r.client_kill_filter(_id=first) == 1
    (second,) = transport.execute(("CLIENT", "ID"))
    assert second != first
    transport.close()


NEEDS_HIREDIS = pytest.mark.skipif(
    importlib.util.find_spec("hiredis") is None, reason="the direct read path needs hiredis"
)

READ_PATHS = [
    pytest.param("direct", marks=NEEDS_HIREDIS),
    "read_response",
    "can_read",
]
"""How replies are read: hiredis driven directly; redis-py 8's read_response(timeout=);
can_read(timeout), then read_response, for older redis-py."""


def _take_read_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    if path != "direct":
        # Each where it is looked up: _direct by Transport, _READ_TIMEOUT by wire._read.
        monkeypatch.setattr(transport_module, "_direct", lambda conn: None)
        monkeypatch.setattr(wire, "_READ_TIMEOUT", path == "read_response")


def _replies_both_ways(transport: Transport, commands: list[tuple[object, ...]]) -> list[object]:
    """The replies read directly, then read again through redis-py's read_response."""
    direct = _execute_raw(transport, commands)
    with pytest.MonkeyPatch.context() as patch:
        _take_read_path(patch, "read_response")
        through_redis_py = _execute_raw(transport, commands)
    return [direct, through_redis_py]


def _execute_raw(transport: Transport, commands: list[tuple[object, ...]]) -> list[object]:
    try:
        return transport.execute(*commands)
    except CommandError as exc:
        return [str(reply) if isinstance(reply, Exception) else reply for reply in exc.replies]


@NEEDS_HIREDIS
def test_replies_read_directly_equal_redis_pys_reading(r: redis.Redis, redis_url: str):
    """With hiredis, replies skip redis-py's read_response: the same values, errors and sizes."""
    transport = Transport.of(redis_url)
    conn = transport._take()
    assert wire._direct(conn) is not None  # the fast path is the one in use
    transport._idle.append(conn)
    big = os.urandom(3 * 65536 + 7)  # several socket reads
    r.rpush("direct:list", b"a", b"", big)
    r.set("direct:str", b"v")
    commands: list[tuple[object, ...]] = [
        ("LRANGE", "direct:list", 0, -1),
        ("GET", "direct:none"),
        ("LPOP", "direct:str"),  # WRONGTYPE, inside the exchange
        ("TIME",),
        ("BLPOP", "direct:empty", 0.01),  # a nil after a wait
        ("XRANGE", "direct:none", "-", "+"),
        ("INCR", "direct:n"),
    ]
    direct, through_redis_py = _replies_both_ways(transport, commands)
    assert direct[0] == through_redis_py[0] == [b"a", b"", big]
    assert direct[1] is None and direct[4] is None and direct[5] == []
    assert "WRONGTYPE" in str(direct[2]) and "WRONGTYPE" in str(through_redis_py[2])
    assert (direct[6], through_redis_py[6]) == (1, 2)
    transport.close()


@pytest.mark.parametrize("fork", ["os.fork", "fork from C"])
def test_a_forked_child_opens_its_own_connections(redis_url: str, fork: str):
    """After fork the child never writes on its parent's sockets; both keep working.

    Also after a fork that runs no Python fork hooks (as uWSGI's prefork
    workers are made by default): libc's fork, called through ctypes.
    """
    transport = Transport.of(redis_url)
    (parent_id,) = transport.execute(("CLIENT", "ID"))
    read_end, write_end = os.pipe()
    pid = os.fork() if fork == "os.fork" else ctypes.CDLL(None).fork()
    if pid == 0:  # the child: report its connection id, then leave at once
        try:
            (child_id,) = transport.execute(("CLIENT", "ID"))
            os.write(write_end, str(child_id).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child_id = int(os.read(read_end, 64) or b"0")
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_id not in (0, parent_id)
    assert transport.execute(("CLIENT", "ID")) == [parent_id]
    transport.close()


def test_close_disconnects_every_connection(r: redis.Redis, redis_url: str):
    """close() ends the transport's connections (Redis sees them go)."""
    transport = Transport.of(redis_url)
    (conn_id,) = transport.execute(("CLIENT", "ID"))
    transport.close()
    listed = [client["id"] for client in r.client_list()]
    assert conn_id not in [int(i) for i in listed]


# -- errors are translated inside execute ------------------------------------------


def test_an_error_reply_raises_command_error_after_every_reply(r: redis.Redis, redis_url: str):
    """An error reply raises CommandError holding every reply; the connection stays in step."""
    transport = Transport.of(redis_url)
    with pytest.raises(CommandError, match="WRONGTYPE") as caught:
        transport.execute(("SET", "k", "v"), ("LPUSH", "k", "x"), ("GET", "k"))
    ok, error, value = caught.value.replies
    assert (ok, value) == (b"OK", b"v")
    assert isinstance(error, TransportError)
    assert not isinstance(error, redis.RedisError)
    assert transport.execute(("PING",)) == [b"PONG"]
    transport.close()


def test_unreachable_redis_raises_our_connection_error():
    """A refused connection raises redisrpc's RedisConnectionError, never redis-py's."""
    transport = Transport.of(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1.0)
    with pytest.raises(RedisConnectionError) as caught:
        transport.execute(("PING",))
    assert not isinstance(caught.value, redis.RedisError)
    with pytest.raises(RedisConnectionError):
        transport.ping()


# -- timeouts that hold ------------------------------------------------------------


def test_blocking_time_of_each_blocking_command():
    """Each blocking command's own blocking time is found, in seconds; others never block."""
    assert blocking_seconds(("BLPOP", "a", "b", 2.5)) == 2.5
    assert blocking_seconds((b"brpop", "a", "1")) == 1.0
    assert blocking_seconds(("BLMOVE", "a", "b", "LEFT", "RIGHT", 3)) == 3.0
    assert blocking_seconds(("BLMPOP", 4, 2, "a", "b", "LEFT", "COUNT", 9)) == 4.0
    assert blocking_seconds(("BZPOPMIN", "z", 0.5)) == 0.5
    assert blocking_seconds(("BZMPOP", 1.5, 1, "z", "MIN")) == 1.5
    assert blocking_seconds(("XREAD", "COUNT", 5, "BLOCK", 1500, "STREAMS", "s", "$")) == 1.5
    assert (
        blocking_seconds(("XREADGROUP", "GROUP", "g", "c", "block", 200, "STREAMS", "s", ">"))
        == 0.2
    )
    assert blocking_seconds(("XREAD", "STREAMS", "s", "0")) is None
    assert blocking_seconds(("WAIT", 1, 250)) == 0.25
    assert blocking_seconds(("WAITAOF", 1, 0, 100)) == 0.1
    assert blocking_seconds(("BLPOP", "a", 0)) == math.inf
    assert blocking_seconds(("GET", "BLOCK")) is None
    assert blocking_seconds(("LPOP", "a", 3)) is None


class _CountingSocket:
    """A socket stand-in that records how many bytes each ``recv_into`` returned."""

    def __init__(self, sock: object) -> None:
        self.sock = sock
        self.reads: list[int] = []

    def recv_into(self, buffer: bytearray, nbytes: int = 0) -> int:
        size: int = self.sock.recv_into(buffer, nbytes)  # type: ignore[attr-defined]
        self.reads.append(size)
        return size

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def _counted_direct_transport(url: str, **options: object) -> tuple[Transport, _CountingSocket]:
    """A transport with one idle direct-path connection whose socket reads are counted."""
    transport = Transport.of(redis.Redis.from_url(url, **options))  # type: ignore[arg-type]
    conn = transport._take()
    parser = wire._direct(conn)
    assert parser is not None  # the path under test
    counted = _CountingSocket(parser._sock)
    parser._sock = counted
    transport._idle.append(conn)
    return transport, counted


@NEEDS_HIREDIS
def test_a_push_acknowledgement_alone_does_not_wake_a_blocked_exchange(
    r: redis.Redis, redis_url: str
):
    """RPUSH then BLPOP, as a call sends them: the reader wakes once, for the pop's reply.

    The pop's reply is pushed only after Redis shows the exchange blocked, so
    the 4-byte acknowledgement was there alone first; the first socket read
    still brings more than it.
    """
    transport, counted = _counted_direct_transport(redis_url)
    result: list[object] = []
    exchange = threading.Thread(
        target=lambda: result.extend(
            transport.execute(("RPUSH", "ack:service", b"request"), ("BLPOP", "ack:reply", 5))
        )
    )
    exchange.start()
    wait_for(lambda: r.llen("ack:service") == 1 and r.info("clients")["blocked_clients"] >= 1)
    r.rpush("ack:reply", b"the reply")
    exchange.join(10)
    assert result == [1, [b"ack:reply", b"the reply"]]
    assert counted.reads[0] > len(b":1\r\n")
    transport.close()


class _NoLowWaterSocket(_CountingSocket):
    """A socket of a system without SO_RCVLOWAT (Windows refuses to set it)."""

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if option == socket.SO_RCVLOWAT:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        self.sock.setsockopt(level, option, value)  # type: ignore[attr-defined]


@NEEDS_HIREDIS
def test_a_system_without_a_low_water_mark_reads_as_before(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
):
    """Where the mark cannot be set, calls still work: it is turned off, not an error."""
    monkeypatch.setattr(wire, "_LOW_WATER", [True])
    transport, counted = _counted_direct_transport(redis_url)
    parser = transport_module._direct(transport._idle[0])
    parser._sock = refusing = _NoLowWaterSocket(counted.sock)
    replies = transport.execute(("RPUSH", "nolow:q", b"x"), ("BLPOP", "nolow:q", 1))
    assert replies == [1, [b"nolow:q", b"x"]]
    assert wire._LOW_WATER == [False] and refusing.reads  # read, without the mark
    transport.close()


@NEEDS_HIREDIS
@pytest.mark.parametrize("protocol", [2, 3])
def test_a_short_reply_after_a_waking_acknowledgement_is_read_at_once(
    r: redis.Redis, redis_url: str, protocol: int
):
    """A 5-byte acknowledgement (":12") wakes the reader; the 3-byte RESP3 nil after it is read.

    Only the first socket read of an exchange waits for several bytes: had
    the next waited too, the nil of the timed-out pop would sit unread until
    the exchange's deadline, and the exchange would fail with a timeout.
    """
    r.rpush("short:service", *[b"x"] * 11)
    transport, counted = _counted_direct_transport(redis_url, protocol=protocol)
    replies = transport.execute(("RPUSH", "short:service", b"y"), ("BLPOP", "short:empty", 0.05))
    assert replies == [12, None]
    assert counted.reads[0] >= 5
    transport.close()


class _SettingsSocket(_CountingSocket):
    """A socket stand-in that records the system calls that change its settings."""

    def __init__(self, sock: object) -> None:
        super().__init__(sock)
        self.settings: list[tuple[str, object]] = []
        self.write_timeouts: list[float | None] = []

    def settimeout(self, value: float | None) -> None:
        self.settings.append(("timeout", value))
        self.sock.settimeout(value)  # type: ignore[attr-defined]

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.settings.append(("sockopt", value))
        self.sock.setsockopt(level, option, value)  # type: ignore[attr-defined]

    def sendall(self, data: bytes) -> None:
        self.write_timeouts.append(self.sock.gettimeout())  # type: ignore[attr-defined]
        self.sock.sendall(data)  # type: ignore[attr-defined]


def _settings_transport(
    url: str, socket_timeout: float = 10.0
) -> tuple[Transport, _SettingsSocket]:
    """A transport with one idle direct-path connection whose socket settings are recorded."""
    transport = Transport.of(redis.Redis.from_url(url), socket_timeout=socket_timeout)
    conn = transport._take()
    parser = wire._direct(conn)
    assert parser is not None  # the path under test
    parser._sock = recording = _SettingsSocket(parser._sock)
    transport._idle.append(conn)
    return transport, recording


@NEEDS_HIREDIS
def test_calls_after_the_first_change_no_socket_setting(r: redis.Redis, redis_url: str):
    """A call's exchange leaves its wait and low-water mark in place for the next call's.

    Each setting is a system call, and each of the call's exchanges wants the
    same ones: only the first exchange on a connection sets them.
    """
    transport, recording = _settings_transport(redis_url)
    for i in range(3):
        r.rpush(f"settings:reply{i}", b"reply")
        assert transport.execute(
            ("RPUSH", "settings:service", b"request"), ("BLPOP", f"settings:reply{i}", 1)
        ) == [i + 1, [f"settings:reply{i}".encode(), b"reply"]]
        if i == 0:
            assert recording.settings  # the first exchange sets the wait and the mark
            recording.settings.clear()
    assert recording.settings == []
    transport.close()


@NEEDS_HIREDIS
def test_after_a_blocking_exchange_a_short_plain_reply_is_read_at_once(
    r: redis.Redis, redis_url: str
):
    """The mark left for the next call is lowered for a read that takes any byte.

    LLEN's reply is 4 bytes, under the mark a blocking exchange leaves: read
    with that mark it would wait for the socket timeout (1 s here) and fail.
    """
    transport, recording = _settings_transport(redis_url, socket_timeout=1.0)
    r.rpush("short2:reply", b"reply")
    transport.execute(("RPUSH", "short2:service", b"x"), ("BLPOP", "short2:reply", 1))
    began = time.monotonic()
    assert transport.execute(("LLEN", "short2:empty")) == [0]
    assert time.monotonic() - began < 0.5
    assert recording.sock.gettimeout() == 1.0  # type: ignore[attr-defined]
    transport.close()


@NEEDS_HIREDIS
def test_a_raised_mark_is_lowered_after_the_process_turned_the_mark_off(
    r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
):
    """A connection left with the mark raised still reads a short reply at once.

    The process turns the mark off when some socket refuses it; sockets that
    took it keep theirs until it is lowered, which must still happen.
    """
    transport, _ = _settings_transport(redis_url, socket_timeout=1.0)
    r.rpush("off:reply", b"reply")
    transport.execute(("RPUSH", "off:service", b"x"), ("BLPOP", "off:reply", 1))
    monkeypatch.setattr(wire, "_LOW_WATER", [False])  # another socket refused it
    assert transport.execute(("LLEN", "off:empty")) == [0]
    transport.close()


class _UnlowerableSocket(_SettingsSocket):
    """A socket that took the raised mark, and then refuses to have it lowered (it broke)."""

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if option == socket.SO_RCVLOWAT and value == 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        super().setsockopt(level, option, value)


@NEEDS_HIREDIS
def test_a_mark_that_cannot_be_lowered_fails_the_exchange_at_once(r: redis.Redis, redis_url: str):
    """Not after the socket timeout: the read would wait for bytes that may never come."""
    transport, recording = _settings_transport(redis_url, socket_timeout=5.0)
    parser = transport_module._direct(transport._idle[0])
    parser._sock = _UnlowerableSocket(recording.sock)
    r.rpush("unlow:reply", b"reply")
    transport.execute(("RPUSH", "unlow:service", b"x"), ("BLPOP", "unlow:reply", 1))
    began = time.monotonic()
    with pytest.raises(RedisConnectionError, match="Invalid argument"):
        transport.execute(("LLEN", "unlow:empty"))
    assert time.monotonic() - began < 2.0
    assert transport.execute(("LLEN", "unlow:empty")) == [0]  # on a new connection
    transport.close()


@NEEDS_HIREDIS
def test_a_large_write_waits_the_socket_timeout(r: redis.Redis, redis_url: str):
    """After a short wait was left on the socket, a large write gets the socket timeout again.

    A small write waits only while Redis reads nothing, and takes the wait
    left in place; a large one may need the full socket timeout to go out.
    """
    transport, recording = _settings_transport(redis_url, socket_timeout=7.0)
    pop = ("RPUSH", "large:service", b"x"), ("BLPOP", "large:reply", 2)
    r.rpush("large:reply", b"reply", b"reply")
    transport.execute(*pop)
    transport.execute(("RPUSH", "large:service", b"y"))
    transport.execute(*pop)
    transport.execute(("SET", "large:value", b"v" * (256 * 1024)))
    small, large = recording.write_timeouts[1::2]
    assert small is not None and 2.0 < small < 7.0  # the pop's wait, left in place
    assert large == 7.0
    transport.close()


@NEEDS_HIREDIS
def test_a_write_after_a_pop_with_no_time_limit_waits_the_socket_timeout(
    r: redis.Redis, redis_url: str
):
    """A pop with no time limit leaves no limit on the socket: the next write gets its own."""
    transport, recording = _settings_transport(redis_url, socket_timeout=7.0)
    r.rpush("forever:reply", b"reply")
    transport.execute(("RPUSH", "forever:service", b"x"), ("BLPOP", "forever:reply", 0))
    transport.execute(("RPUSH", "forever:service", b"y"))
    assert recording.write_timeouts[1] == 7.0
    transport.close()


@pytest.mark.parametrize("read_path", READ_PATHS)
def test_a_block_longer_than_the_socket_timeout_is_waited_for(
    r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch, read_path: str
):
    """A BLPOP of 1 s on a transport whose socket timeout is 0.3 s returns None, no error.

    Every way of bounding a read (see READ_PATHS).
    """
    _take_read_path(monkeypatch, read_path)
    transport = Transport.of(redis_url, socket_timeout=0.3)
    began = time.monotonic()
    assert transport.execute(("SET", "k", "v"), ("BLPOP", "q", 1)) == [b"OK", None]
    assert time.monotonic() - began >= 0.9
    # rescue() (socket timeout 0.3 s here) derives its wait the same way.
    assert transport.rescue(_one_step(("BLPOP", "q", 0.8)), timeout=0.3) == [None]
    transport.close()


def test_async_block_longer_than_the_socket_timeout_is_waited_for(r: redis.Redis, redis_url: str):
    """The asyncio transport derives each exchange's wait from its blocking commands too."""

    async def main() -> list[object]:
        transport = AsyncTransport(redis_url, socket_timeout=0.3)
        try:
            return await transport.execute(("BLPOP", "q", 1))
        finally:
            await transport.close()

    assert asyncio.run(main()) == [None]


def _one_step(step: tuple[object, ...]) -> Generator[object, list[object], list[object]]:
    replies = yield (step,)
    return replies


class _Echo:
    """Echoes."""

    def echo(self, value: object) -> object:
        """Return ``value``."""
        return value


@pytest.mark.parametrize("read_path", READ_PATHS)
def test_a_call_on_a_stalled_redis_fails_within_its_timeout(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, read_path: str
):
    """SIGSTOP of redis-server: a call with timeout=2 fails with our error in well under 11 s."""
    _take_read_path(monkeypatch, read_path)
    server = redisrpc.Server(own_redis.url, "svc", _Echo(), poll_interval=0.2).start()
    assert own_redis.proc is not None
    pid = own_redis.proc.pid
    try:
        client = redisrpc.Client(own_redis.url, "svc", timeout=2)
        assert client.echo(1) == 1  # described, clock measured: only the call is left
        os.kill(pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(redisrpc.RedisRPCError):
                client.echo(2)
            took = time.monotonic() - began
        finally:
            os.kill(pid, signal.SIGCONT)
        assert took < 4.0, f"the call failed after {took:.1f} s"
    finally:
        server.stop(15)


# -- the Redis clock ---------------------------------------------------------------


def _redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_the_redis_clock_ignores_a_wall_clock_step(r: redis.Redis, redis_url: str, monkeypatch):
    """time.time() jumping 10 min forward does not move either transport's Redis clock."""
    transport = Transport.of(redis_url)
    async_transport = AsyncTransport(redis_url)
    transport.now_ms()
    asyncio.run(async_transport.now_ms())
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + 600.0)
    assert abs(transport.now_ms() - _redis_ms(r)) < 1000
    assert abs(asyncio.run(async_transport.now_ms()) - _redis_ms(r)) < 1000
    transport.close()


def test_a_client_whose_clock_jumps_forward_sends_a_correct_deadline(
    r: redis.Redis, redis_url: str, monkeypatch
):
    """After a +10 min wall-clock step the request's deadline is still now + timeout (Redis clock).

    Nobody serves the queue: the call times out and its request is withdrawn on time.
    """
    client = redisrpc.Client(redis_url, "nobody", timeout=1.5, describe=False)
    client._rpc_state.transport.now_ms()  # the clock is measured before the step
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + 600.0)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.echo(1)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    (raw,) = wait_for(lambda: r.lrange("nobody", 0, -1))
    sent_at = _redis_ms(r)
    deadline = decode_request(raw, queue="nobody").deadline
    assert deadline is not None
    assert sent_at < deadline <= sent_at + 1500 + 500
    caller.join(10)
    assert outcome and isinstance(outcome[0], redisrpc.TimeoutException)
    assert r.llen("nobody") == 0  # withdrawn: it will never run


def test_url_of_a_client_reaches_the_same_redis_and_masks_its_password(redis_url):
    """url_of() rebuilds a URL from a redis-py client (TLS, unix, db); passwords show as ***."""
    client = redis.Redis.from_url(redis_url)
    try:
        rebuilt = url_of(client)
        assert rebuilt is not None and redis.Redis.from_url(rebuilt).ping()
    finally:
        client.close()
    assert (
        url_of(redis.Redis.from_url("rediss://lab:secret@h:6380/2")) == "rediss://lab:***@h:6380/2"
    )
    assert url_of(redis.Redis.from_url("unix:///tmp/r.sock?db=3")) == "unix:///tmp/r.sock?db=3"
    assert url_of("redis://h:1/0") is None
    assert masked_url("redis+sentinel://lab:s3@a:1,b:2/m") == "redis+sentinel://lab:***@a:1,b:2/m"
    assert masked_url("redis://h:6379/0") == "redis://h:6379/0"


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://lab:s3cret@s1:26379/mymaster/0/extra",
        "redis+sentinel://s1:26379/mymaster?sentinel_password=s3cret&bogus=1",
        "redis+cluster://lab:s3cret@h1:7000/3",
        "redis://:s3cret@h:notaport/0",
        "redis+sentinel://lab:pa@s3cret@s1:notaport/mymaster",
    ],
)
def test_an_invalid_url_is_reported_without_its_password(url):
    """The error for a URL that does not parse names the URL, its passwords masked."""
    with pytest.raises(TransportError, match="invalid Redis URL") as raised:
        Transport.of(url)
    assert "s3cret" not in str(raised.value)
    assert "***" in str(raised.value)
    assert "s3cret" not in masked_url(url)
