"""The Redis boundary: command packing, unacknowledged commands, and its own connections."""

from __future__ import annotations

import os

import pytest
import redis
from conftest import RedisServer
from redis.connection import Connection

from redisrpc.core import transport as transport_module
from redisrpc.core.transport import Transport, pack_commands
from redisrpc.embedded import EmbeddedRedis

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
    pure = b"".join(transport_module._pack_python(command) for command in COMMANDS)
    assert pure == expected


def test_a_bool_argument_is_refused():
    """A bool is not a Redis argument (redis-py refuses it too)."""
    with pytest.raises(TypeError):
        transport_module._pack_python(("SET", "k", True))


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
    replies = transport.execute(("SET", "k", "v"), ("LPUSH", "k", "x"), ("GET", "k"), quiet=2)
    assert replies[0] == b"OK"
    assert isinstance(replies[1], redis.ResponseError) and "WRONGTYPE" in str(replies[1])
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
    replies = transport.execute(("RPUSH", "q", "b"), ("SET", "q", "x", "GET"), quiet=1)
    assert replies[0] == 2  # the quiet command's real reply
    assert isinstance(replies[1], redis.ResponseError) and "WRONGTYPE" in str(replies[1])
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


def test_a_forked_child_opens_its_own_connections(redis_url: str):
    """After fork the child never writes on its parent's sockets; both keep working."""
    transport = Transport.of(redis_url)
    (parent_id,) = transport.execute(("CLIENT", "ID"))
    read_end, write_end = os.pipe()
    pid = os.fork()
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
