"""The floor of a brokered call: a bare RPUSH/BLPOP exchange over raw sockets.

``python -m benchmarks.floor`` starts its own redis-server (as ``python -m
benchmarks`` does) and times a call between two processes with no library in
the way, three ways:

- ``acknowledged``: every push is answered, as with any plain Redis client;
- ``server skips``: the server pushes its reply with ``CLIENT REPLY SKIP``
  (what redisrpc's server does);
- ``both skip``: the client's request push is unanswered too (faster, but a
  refused request would go unnoticed, so redisrpc's client does not do this).

It prints each p50 against a raw-socket PING and a redis-py PING from the same
run. It reads replies with its own few lines of RESP, so it needs no parser.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import socket
import statistics
import time
from collections.abc import Iterator
from typing import Any

import redis

from .run import redis_server

__all__ = ["exchange", "floor_server", "main"]

_SKIP = b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$4\r\nSKIP\r\n"
MODES = {"acknowledged": (False, False), "server skips": (False, True), "both skip": (True, True)}


def _pack(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Conn:
    """A raw Redis connection: send bytes, read one RESP2 reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buffer) < size + 2:
                self.buffer += self.sock.recv(65536)
            data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
            return data
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.read() for _ in range(count)]
        raise ValueError(f"unexpected reply {line!r}")


def _serve(port: int, skip: bool, ready: Any) -> None:
    """BLPOP a request, push the reply (with or without SKIP) together with the next BLPOP."""
    conn = _Conn(port)
    ready.set()
    reply = b""
    while True:
        conn.sock.sendall(reply + _pack("BLPOP", "floor", 1))
        if reply and not skip:
            conn.read()  # the reply push's acknowledgement
        popped = conn.read()
        if popped is None:
            reply = b""
            continue
        if popped[1] == b"stop":
            return
        reply = (_SKIP if skip else b"") + _pack("RPUSH", b"floor:" + popped[1], popped[1])


def exchange(conn: _Conn, key: bytes, client_skips: bool) -> None:
    """One call: push ``key`` as the request, with the wait for its reply, and read it."""
    conn.sock.sendall(
        (_SKIP if client_skips else b"")
        + _pack("RPUSH", "floor", key)
        + _pack("BLPOP", b"floor:" + key, 5)
    )
    if not client_skips:
        conn.read()  # the request push's acknowledgement
    conn.read()


@contextlib.contextmanager
def floor_server(port: int, server_skips: bool) -> Iterator[Any]:
    """The serving side in a process of its own, stopped (by a "stop" request) on exit."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    server = context.Process(target=_serve, args=(port, server_skips, ready))
    server.start()
    try:
        ready.wait(30)
        yield server
    finally:
        conn = _Conn(port)
        conn.sock.sendall(_pack("RPUSH", "floor", "stop"))
        conn.read()
        conn.sock.close()
        server.join(30)


def _exchange(port: int, skip: bool, calls: int) -> float:
    """p50 seconds of ``calls`` request/reply exchanges, one after another."""
    conn = _Conn(port)
    times = []
    for i in range(calls):
        began = time.perf_counter()
        exchange(conn, b"%d" % i, skip)
        times.append(time.perf_counter() - began)
    conn.sock.close()
    return statistics.median(times[calls // 10 :])


def _pings(port: int, calls: int) -> tuple[float, float]:
    conn = _Conn(port)
    raw = []
    for _ in range(calls):
        began = time.perf_counter()
        conn.sock.sendall(_pack("PING"))
        conn.read()
        raw.append(time.perf_counter() - began)
    client = redis.Redis(port=port)
    py = []
    for _ in range(calls):
        began = time.perf_counter()
        client.ping()
        py.append(time.perf_counter() - began)
    client.close()
    return statistics.median(raw[calls // 10 :]), statistics.median(py[calls // 10 :])


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run every mode ``--repeat`` times and print medians."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {name: [] for name in ["raw PING", "redis-py PING", *MODES]}
    with redis_server() as url:
        port = redis.Redis.from_url(url).connection_pool.connection_kwargs["port"]
        for _ in range(args.repeat):
            raw, py = _pings(port, args.calls)
            results["raw PING"].append(raw)
            results["redis-py PING"].append(py)
            for name, (client_skips, server_skips) in MODES.items():
                with floor_server(port, server_skips):
                    results[name].append(_exchange(port, client_skips, args.calls))
    medians = {name: statistics.median(values) * 1e6 for name, values in results.items()}
    print(f"medians of {args.repeat} runs of {args.calls} exchanges")
    print("| exchange | p50 µs | / raw PING | / redis-py PING |")
    print("|---|---:|---:|---:|")
    for name, value in medians.items():
        print(
            f"| {name} | {value:.0f} | {value / medians['raw PING']:.2f}"
            f" | {value / medians['redis-py PING']:.2f} |"
        )


if __name__ == "__main__":
    main()
