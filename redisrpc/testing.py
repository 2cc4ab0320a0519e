"""Throwaway redis-server processes and polling helpers, for tests and benchmarks.

:class:`RedisServer` runs a private ``redis-server`` (it must be on ``PATH``) on a
free port of 127.0.0.1, with no persistence and its own temporary directory, so
it never touches a shared Redis such as the one on port 6379::

    with RedisServer() as server:
        client = redisrpc.Client(server.url, "svc")
        server.pause()  # SIGSTOP: Redis stops answering, connections stay open
        server.resume()
        server.restart()  # same port, empty data

Many can run at once (e.g. one per pytest-xdist worker): a port is only taken
once the new process answers on its own Unix socket, and a port someone else
took in the meantime is given up for another one.

:func:`wait_for` and :func:`wait_for_async` poll a condition instead of sleeping
for a guessed time.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis

__all__ = ["RedisServer", "TLSFiles", "free_port", "wait_for", "wait_for_async"]

T = TypeVar("T")

_HOST = "127.0.0.1"


def _port_range() -> tuple[int, int]:
    """Ports to pick from: below the kernel's ephemeral range when it leaves room.

    Outgoing connections (every redis client of every test) take their local
    port from the ephemeral range, so a port picked there can be taken between
    the pick and redis-server's bind, even on a restart of the same server.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    if low > 12_000:
        return 10_000, low - 1
    return 0, 0  # let the kernel choose


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listens on right now.

    Only a hint: another process may bind it before the caller does; callers
    that start a server on it must retry on failure (as :class:`RedisServer` does).
    """
    low, high = _port_range()
    for _ in range(100):
        candidate = random.randint(low, high) if high else 0
        with socket.socket() as sock:
            try:
                sock.bind((_HOST, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free TCP port found")


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for a TLS-only :class:`RedisServer` (clients are not asked for certificates)."""

    cert: Path
    key: Path
    ca: Path


class RedisServer:
    """A private redis-server process: start, stop, kill, restart, pause and resume it.

    ``args`` are extra ``redis-server`` options (e.g. ``"--requirepass", "pw"``).
    ``port`` fixes the port (default: a free one, kept across restarts). With
    ``tls`` the server listens only with TLS on ``port`` and :attr:`url` is
    ``rediss://``. :meth:`close` (or leaving the ``with`` block) stops the
    process and removes its temporary directory.
    """

    def __init__(
        self,
        *args: str,
        port: int | None = None,
        tls: TLSFiles | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (it must be on PATH)")
        self.binary = binary
        self.args = list(args)
        self.tls = tls
        self.start_timeout = start_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="redisrpc-redis-"))
        self._fixed_port = port
        #: The TCP (or TLS) port; 0 until the first start picks one.
        self.port = port or 0
        self.proc: subprocess.Popen[bytes] | None = None

    # -- addresses ------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (``rediss://`` with TLS)."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{_HOST}:{self.port}/0"

    @property
    def unix_socket(self) -> Path:
        """The server's Unix socket, in its private directory (always plain, never TLS)."""
        return self.dir / "redis.sock"

    @property
    def pid(self) -> int | None:
        """The process id while the server runs, else None."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive (it may be paused)."""
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client of this server over TCP (TLS options added when needed)."""
        if self.tls is not None:
            kwargs.setdefault("ssl", True)
            kwargs.setdefault("ssl_ca_certs", str(self.tls.ca))
        return redis.Redis(host=_HOST, port=self.port, **kwargs)

    # -- life cycle -----------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the process and return once it answers; no-op while it runs.

        Without a fixed port a port lost to another process is replaced by a
        new free one; a fixed port (or the kept one of a restart) is retried
        until ``start_timeout``.
        """
        if self.running:
            return self
        deadline = time.monotonic() + self.start_timeout
        keep = self._fixed_port or self.port  # clients of a restarted server use its old port
        while True:
            port = keep or free_port()
            if self._launch(port, deadline):
                self.port = port
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}:\n{self.log()}")
            if keep:
                time.sleep(0.05)  # e.g. a client's socket holds the port: wait for it to go

    def _command(self, port: int) -> list[str]:
        listen = ["--port", str(port)]
        if self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(port)]
            listen += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)]
            listen += ["--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        return [
            self.binary,
            *listen,
            "--bind",
            _HOST,
            "--unixsocket",
            str(self.unix_socket),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--logfile",
            str(self.dir / "redis.log"),
            "--daemonize",
            "no",
            *self.args,
        ]

    def _launch(self, port: int, deadline: float) -> bool:
        """Run redis-server on ``port``; True once it answers, False if it exited."""
        proc = subprocess.Popen(
            self._command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # Probing the private Unix socket (never the TCP port) proves the answer
        # comes from this process: redis-server binds all its listeners, or
        # exits, before it serves any of them.
        probe = redis.Redis(unix_socket_path=str(self.unix_socket), socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    probe.ping()
                except (redis.AuthenticationError, redis.ResponseError):
                    pass  # NOAUTH and the like: it is up
                except (redis.ConnectionError, redis.TimeoutError):
                    if proc.poll() is not None:
                        return False
                    if time.monotonic() > deadline:
                        proc.kill()
                        proc.wait(10)
                        raise RuntimeError(f"redis-server did not answer on port {port}") from None
                    time.sleep(0.01)
                    continue
                self.proc = proc
                return True
        finally:
            probe.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (a paused server is resumed first so it can exit)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.send_signal(signal.SIGCONT)
            self.proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL and wait: no clean-up, connections are cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, downtime: float = 0.0) -> None:
        """Kill, stay down ``downtime`` seconds, start again on the same port (empty)."""
        self.kill()
        time.sleep(downtime)
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing until resumed."""
        if self.proc is None:
            raise RuntimeError("redis-server is not running")
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.proc is None:
            raise RuntimeError("redis-server is not running")
        self.proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        """What redis-server logged so far (e.g. why it did not start)."""
        try:
            return (self.dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the process and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state} pid={self.pid}>"


# -- polling ------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition not met",
) -> T:
    """Call ``predicate`` every ``interval`` s until it returns something truthy; return that.

    Raises TimeoutError (with ``message``) after ``timeout`` seconds. The
    predicate is always tried once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} within {timeout} s")
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition not met",
) -> T:
    """:func:`wait_for` for asyncio code: the loop keeps running; ``predicate`` may be async."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} within {timeout} s")
        await asyncio.sleep(interval)
