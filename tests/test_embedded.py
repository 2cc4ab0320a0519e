"""The embedded Redis (fakeredis over TCP) for machines without a Redis server."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator

import pytest
import redis
from conftest import CLI_SCRIPT, free_port, python_env, read_until, run_cli
from servable import Thing

import redisrpc
from redisrpc import embedded


@pytest.fixture
def no_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """REDIS_URL pointing at a port nothing listens on; any embedded Redis started is stopped."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setattr(embedded, "_started", None)
    yield url
    started = embedded._started
    if started is not None:
        started.stop()


def test_embedded_redis_starts_serves_and_stops():
    """EmbeddedRedis listens on a free loopback port until stopped."""
    with redisrpc.EmbeddedRedis() as server:
        assert server.running and server.port > 0
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    assert not server.running
    assert not embedded.is_reachable(server.url, timeout=0.5)


def test_rpc_round_trip_on_the_embedded_redis():
    """A server and a client work through the embedded Redis, registry included."""
    with redisrpc.EmbeddedRedis() as embedded_redis:
        url = embedded_redis.url
        with redisrpc.Server(url, "thing", Thing(), poll_interval=0.1):
            client = redisrpc.Client(url, "thing", timeout=10)
            assert client.incr(4) == 4
            assert [s.name for s in redisrpc.discover(url)] == ["thing"]


def test_ensure_redis_prefers_a_real_redis(redis_url):
    """When REDIS_URL answers, ensure_redis returns it and starts nothing."""
    assert redisrpc.ensure_redis() == redis_url
    assert redisrpc.ensure_redis(redis_url) == redis_url


def test_ensure_redis_falls_back_to_embedded_once(no_redis, caplog):
    """With no Redis, ensure_redis starts one embedded server, says so, and reuses it."""
    url = redisrpc.ensure_redis()
    assert url != no_redis
    assert embedded.is_reachable(url)
    assert "embedded Redis" in caplog.text
    assert redisrpc.ensure_redis() == url


def test_ensure_redis_without_fallback_raises(no_redis):
    """fallback=False turns a missing Redis into RedisConnectionError."""
    with pytest.raises(redisrpc.RedisConnectionError, match="no Redis answers"):
        redisrpc.ensure_redis(fallback=False)
    assert embedded._started is None


def test_demo_on_embedded_redis_serves_another_process(no_redis):
    """``redisrpc demo`` without Redis embeds one; other processes call and list through it."""
    proc = subprocess.Popen(
        [str(CLI_SCRIPT), "demo"],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = read_until(proc, "Ctrl-C stops.")
        assert "started an embedded Redis" in out
        url = next(line.split()[1] for line in out.splitlines() if line.startswith("Redis: "))
        assert url != no_redis
        calc = redisrpc.Client(url, "calc", timeout=10)  # this test process is the other one
        calc.clr()
        assert calc.add(5) == 5
        listed = run_cli("--url", url, "list")  # and a third process
        assert listed.returncode == 0 and "Calculator" in listed.stdout
        assert json.loads(run_cli("--url", url, "call", "calc", "mul", "3").stdout) == 15
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_demo_without_embedded_fails_cleanly(no_redis):
    """``redisrpc demo --no-embedded`` with no Redis is one line and exit 3."""
    proc = run_cli("demo", "--no-embedded")
    assert proc.returncode == 3
    assert "no Redis answers" in proc.stderr and "Traceback" not in proc.stderr
