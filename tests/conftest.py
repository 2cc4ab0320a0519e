"""Shared fixtures: a private real redis-server per test session, fakeredis, and served objects."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import redisrpc

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """Return a TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A redis-server process owned by the tests: start, stop, kill and restart it."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        self.binary = binary
        self.port = port or free_port()
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix="redisrpc-test-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> RedisProcess:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.dir,
            "--daemonize", "no",
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        while True:
            try:
                probe.ping()
                break
            except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)
            except redis.ResponseError:  # e.g. NOAUTH: it is up
                break
        probe.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, downtime: float = 0.0) -> None:
        self.kill()
        time.sleep(downtime)
        self.start()


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisProcess]:
    """The session's private redis-server on a free port (never the shared 6379)."""
    proc = RedisProcess().start()
    yield proc
    proc.stop()


@pytest.fixture
def redis_url(redis_proc: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> str:
    """URL of the private redis-server, emptied for this test; also set as REDIS_URL."""
    with redis_proc.client() as r:
        r.flushall()
    monkeypatch.setenv("REDIS_URL", redis_proc.url)
    return redis_proc.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A redis-py client on the private, emptied redis-server."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server for this test alone, for fault tests that kill or restart it."""
    proc = RedisProcess().start()
    yield proc
    proc.kill()


@pytest.fixture
def fake() -> Any:
    """A fresh in-memory fakeredis client, for fast unit tests."""
    import fakeredis

    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def serve(r: redis.Redis) -> Iterator[Any]:
    """Start a redisrpc.Server in a thread: ``serve(obj, "name", **options)``; stopped after."""
    servers: list[redisrpc.Server] = []

    def start(obj: Any, name: str = "svc", **options: Any) -> redisrpc.Server:
        options.setdefault("poll_interval", 0.1)
        server = redisrpc.Server(r, name, obj, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(10)


def python_env() -> dict[str, str]:
    """Environment for child Python processes that import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


PYTHON = sys.executable
