"""The test helpers of redisrpc.testing: the redis-server launcher and the polling helpers."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

import redisrpc.testing
from redisrpc.testing import RedisServer, wait_for, wait_for_async


def test_server_starts_on_a_free_port_and_cleans_up():
    """Two servers get their own ports and processes; close() ends the process and its files."""
    with RedisServer() as one, RedisServer() as two:
        assert one.port != two.port
        with one.client() as a, two.client() as b:
            a.set("k", "one")
            assert b.get("k") is None  # separate data
            assert a.info("server")["process_id"] == one.pid
        assert redis.Redis.from_url(two.url).ping()
    assert not one.running and one.pid is None
    assert not one.dir.exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(one.url, socket_connect_timeout=1).ping()


def test_a_port_someone_else_holds_is_given_up_for_another(monkeypatch):
    """A port taken by another redis-server is never mistaken for ours: a new port is picked."""
    with RedisServer() as taken:
        picks = iter([taken.port])
        real = redisrpc.testing.free_port
        monkeypatch.setattr(redisrpc.testing, "free_port", lambda: next(picks, None) or real())
        with RedisServer() as mine:
            assert mine.port != taken.port
            with mine.client() as client:
                assert client.info("server")["process_id"] == mine.pid


def test_restart_keeps_the_port_and_empties_the_data():
    """restart() is a kill and a fresh start on the same port: clients reconnect to it."""
    with RedisServer() as server:
        client = server.client()
        client.set("k", "v")
        port, pid = server.port, server.pid
        server.restart()
        assert server.port == port and server.pid != pid
        assert client.get("k") is None  # redis-py reconnects on the same URL
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        client.close()


def test_pause_stops_answers_until_resume():
    """pause() (SIGSTOP) leaves connections open but unanswered; resume() answers them."""
    with RedisServer() as server, server.client(socket_timeout=0.3) as client:
        assert client.ping()
        server.pause()
        try:
            with pytest.raises(redis.TimeoutError):
                client.ping()
        finally:
            server.resume()
        assert server.client().ping()
        server.pause()  # a paused server still stops cleanly


def test_extra_args_reach_redis_server():
    """Extra arguments are redis-server options; a password-protected server still starts."""
    with RedisServer("--requirepass", "s3cret") as server:
        with pytest.raises(redis.AuthenticationError):
            server.client().ping()
        assert server.client(password="s3cret").ping()


def test_wait_for_returns_the_value_or_times_out():
    """wait_for returns the first truthy value; past the timeout it raises TimeoutError."""
    began = time.monotonic()
    values = iter([0, None, "", "ready"])
    assert wait_for(lambda: next(values), interval=0.01) == "ready"
    with pytest.raises(TimeoutError, match=r"never within 0\.1 s"):
        wait_for(lambda: False, timeout=0.1, interval=0.01, message="never")
    assert time.monotonic() - began < 5


def test_wait_for_async_keeps_the_loop_running():
    """wait_for_async lets other tasks run while it polls, and accepts async predicates."""

    async def main() -> None:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, done.set)
        assert await wait_for_async(done.is_set, interval=0.01)

        async def check() -> bool:
            return done.is_set()

        assert await wait_for_async(check)
        with pytest.raises(TimeoutError):
            await wait_for_async(lambda: False, timeout=0.05, interval=0.01)

    asyncio.run(main())
