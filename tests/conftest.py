"""Shared fixtures: a private real redis-server per test session (per xdist worker), fakeredis,
served objects and child processes; the launcher and ``wait_for`` live in redisrpc.testing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from hypothesis import settings

import redisrpc
from redisrpc.core.protocol import Framed, Reply, encode_framed_reply
from redisrpc.errors import RedisConnectionError
from redisrpc.testing import RedisServer, free_port, wait_for

# No per-example time limit: the suite runs four workers on small machines, and speed is
# measured by the benchmarks, never by a test (a slow example is not a failure).
settings.register_profile("redisrpc", deadline=None)
settings.load_profile("redisrpc")

__all__ = [
    "CLI_SCRIPT",
    "PYTHON",
    "ROOT",
    "CutBatch",
    "RedisServer",
    "ServerProcess",
    "free_port",
    "python_env",
    "read_until",
    "run_cli",
    "wait_for",
    "watch_pushes",
    "when_taken",
]

ROOT = Path(__file__).resolve().parent.parent


class CutBatch:
    """A fake Redis for a multiplexer's reader (the sync and async tests wrap it).

    The reader's first pop takes a whole reply to ``a``, then one to ``b``
    whose blob the batch cut off; taking that blob fails (the connection went
    away between the two). Pushes succeed.
    """

    def __init__(self) -> None:
        whole = encode_framed_reply(Reply(value="for a", id="a"), binary=True)
        cut = encode_framed_reply(Reply(value=b"blob of b", id="b"), binary=True)
        assert isinstance(cut, Framed)
        self.batch: list[Any] | None = [[b"q", whole], [bytes(cut)]]

    def answer(self, commands: Any) -> list[Any] | None:
        """The replies to ``commands``; None for a later pop, which finds nothing more."""
        if commands[-1][0] == "RPUSH":
            return [1]
        if commands[0][0] == "BLPOP":
            batch, self.batch = self.batch, None
            return batch
        raise RedisConnectionError("Redis went away")  # the LPOP of b's blob


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisServer]:
    """This session's (with xdist: this worker's) private redis-server on a free port.

    Shared by all tests of the worker: a test that stops, restarts or pauses
    Redis uses ``own_redis`` instead.
    """
    with RedisServer() as proc:
        yield proc


@pytest.fixture
def redis_url(redis_proc: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
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
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone, for fault tests that kill, restart or pause it."""
    with RedisServer() as proc:
        yield proc
        proc.kill()


@pytest.fixture
def fake() -> Any:
    """A fresh in-memory fakeredis client, for fast unit tests."""
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


@contextlib.contextmanager
def watch_pushes(r: redis.Redis, key: str) -> Iterator[Callable[[], int]]:
    """Count pushes onto the list ``key`` (a service queue) as they happen.

    Yields a function returning how many RPUSH/LPUSH reached ``key`` so far, so
    a test can wait until a request was sent even after a server popped it.
    Uses keyspace notifications, switched on for the ``with`` block only.
    """
    r.config_set("notify-keyspace-events", "Kl")
    pubsub = r.pubsub()
    pubsub.subscribe(f"__keyspace@0__:{key}")
    confirmed = pubsub.get_message(timeout=5)  # in effect before any push that follows
    assert confirmed is not None and confirmed["type"] == "subscribe", confirmed
    count = 0

    def pushed() -> int:
        nonlocal count
        while (message := pubsub.get_message(timeout=0)) is not None:
            count += message["data"] in (b"rpush", b"lpush")
        return count

    try:
        yield pushed
    finally:
        pubsub.close()
        r.config_set("notify-keyspace-events", "")


def when_taken(r: redis.Redis, queue: str, action: Callable[[], Any]) -> threading.Thread:
    """Run ``action`` in a thread once a request was pushed onto ``queue`` and a server took it.

    For fault tests that must strike while a call runs (not while it is queued).
    Join the returned thread at the end of the test.
    """
    with_pushes = watch_pushes(r, queue)
    pushed = with_pushes.__enter__()

    def run() -> None:
        try:
            wait_for(lambda: pushed() >= 1 and r.llen(queue) == 0, message="request not taken")
        finally:
            with_pushes.__exit__(None, None, None)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def python_env() -> dict[str, str]:
    """Environment for child Python processes that import this checkout."""
    env = dict(os.environ)
    # tests/ too, so children can serve test-only classes such as ``servable:Thing``.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return env


PYTHON = sys.executable


class ServerProcess:
    """A ``python -m redisrpc serve`` child process (see the ``spawn_server`` fixture)."""

    def __init__(self, proc: subprocess.Popen[bytes], name: str, url: str, log: Any) -> None:
        self.proc = proc
        self.name = name
        self.url = url
        self._log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def instance(self, prefix: str = "redisrpc") -> redisrpc.InstanceInfo | None:
        """This process's registry entry, or None while it is not listed."""
        for service in redisrpc.discover(self.url, prefix=prefix):
            for instance in service.instances:
                if service.name == self.name and instance.pid == self.pid:
                    return instance
        return None

    def wait_registered(self, timeout: float = 20.0, prefix: str = "redisrpc") -> None:
        deadline = time.monotonic() + timeout
        while self.instance(prefix) is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name!r} exited early:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {self.name!r} did not register:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        """Everything the child printed so far (stdout and stderr)."""
        self._log.flush()
        self._log.seek(0)
        return str(self._log.read().decode("utf-8", "replace"))

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; return the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)


@pytest.fixture
def spawn_server(redis_url: str) -> Iterator[Any]:
    """Run servers in child processes: ``spawn_server("servable:Thing", "name", *cli_args)``.

    Runs ``python -m redisrpc serve TARGET --name NAME --url URL [cli_args]``,
    waits until the instance is in the registry (``wait=False`` skips that,
    e.g. with ``--no-register``) and returns a :class:`ServerProcess`.
    Children still alive at teardown get SIGTERM, then SIGKILL.
    """
    children: list[ServerProcess] = []

    def spawn(
        target: str = "servable:Thing",
        name: str = "svc",
        *args: str,
        url: str | None = None,
        wait: bool = True,
        prefix: str = "redisrpc",
    ) -> ServerProcess:
        url = url or redis_url
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed at teardown
        command = [PYTHON, "-m", "redisrpc", "serve", target, "--name", name, "--url", url]
        command += ["--prefix", prefix, *args]
        proc = subprocess.Popen(
            command, env=python_env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        child = ServerProcess(proc, name, url, log)
        children.append(child)
        if wait:
            child.wait_registered(prefix=prefix)
        return child

    yield spawn
    for child in children:
        try:
            child.terminate(10)
        except subprocess.TimeoutExpired:
            child.kill()
        child._log.close()


CLI_SCRIPT = Path(PYTHON).with_name("redisrpc")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run the console script and return the completed process (text output)."""
    if not CLI_SCRIPT.exists():
        pytest.fail(f"the console script {CLI_SCRIPT} is not installed (pip install -e .)")
    return subprocess.run(
        [str(CLI_SCRIPT), *args],
        check=False,
        env=env or python_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 30) -> str:
    """Read a child's output until a line contains ``marker``; return everything read."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    proc.kill()
    pytest.fail(f"{marker!r} never printed:\n{''.join(seen)}")
