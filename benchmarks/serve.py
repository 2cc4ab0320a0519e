"""Servers for the benchmarks, each run as its own process: ``python -m benchmarks.serve KIND``.

Every server prints one ``ready ...`` line when it can take calls and exits
when its standard input closes, so a crashed benchmark leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from typing import Any

import redis

import redisrpc

__all__ = ["Bench", "main"]


class Bench:
    """The served object: a trivial call and one that stands for instrument work."""

    def add(self, x: int) -> int:
        """Return x + 1."""
        return x + 1

    def work(self, ms: float) -> float:
        """Sleep ``ms`` milliseconds (an instrument busy elsewhere) and return ms."""
        time.sleep(ms / 1000.0)
        return ms

    def array(self, nbytes: int) -> Any:
        """A float64 array of ``nbytes`` bytes (made once per size: only moving it is measured)."""
        import numpy  # noqa: PLC0415 (only the array rows need it)

        if nbytes not in _ARRAYS:
            _ARRAYS[nbytes] = numpy.random.default_rng(0).random(nbytes // 8)
        return _ARRAYS[nbytes]

    def take(self, data: Any) -> int:
        """Receive an array (or bytes) and say how many bytes came."""
        return int(getattr(data, "nbytes", None) or len(data))

    def array_bytes(self, nbytes: int) -> bytes:
        """The same array's bytes, for peers that move bytes, not arrays."""
        if nbytes not in _BYTES:
            _BYTES[nbytes] = self.array(nbytes).tobytes()
        return _BYTES[nbytes]


_ARRAYS: dict[int, Any] = {}
_BYTES: dict[int, bytes] = {}


def _exit_when_orphaned() -> None:
    def watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _ready(info: str = "") -> None:
    print(f"ready {info}".strip(), flush=True)


def serve_redisrpc(url: str, name: str, workers: int) -> None:
    """A redisrpc Server with its defaults (registered, one call at a time)."""
    server = redisrpc.Server(url, name, Bench(), workers=workers, handle_signals=False)
    server.start()
    _ready()
    threading.Event().wait()


def serve_naive(url: str, name: str) -> None:
    """The hand-written baseline: BLPOP a request, RPUSH the answer, nothing else."""
    r = redis.Redis.from_url(url)
    _ready()
    bench = Bench()
    while True:
        popped = r.blpop([name], timeout=1)
        if popped is None:
            continue
        request = json.loads(popped[1])
        r.rpush(request["q"], json.dumps({"r": bench.add(request["x"])}))


def serve_pyro5() -> None:
    """Pyro5's threaded daemon on a free port; prints the object's URI."""
    import Pyro5.api  # noqa: PLC0415 (optional)

    exposed = Pyro5.api.expose(Bench)
    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    uri = daemon.register(exposed, "bench")
    _ready(str(uri))
    daemon.requestLoop()


def serve_rpyc() -> None:
    """RPyC's ThreadedServer on a free port; prints the port."""
    import rpyc  # noqa: PLC0415 (optional)
    from rpyc.utils.server import ThreadedServer  # noqa: PLC0415

    bench = Bench()

    class BenchService(rpyc.Service):  # type: ignore[misc]
        def exposed_add(self, x: int) -> int:
            return bench.add(x)

        def exposed_array_bytes(self, nbytes: int) -> bytes:
            return bench.array_bytes(nbytes)

        def exposed_take(self, data: bytes) -> int:
            return bench.take(data)

    config = {"sync_request_timeout": 300}
    server = ThreadedServer(BenchService, hostname="127.0.0.1", port=0, protocol_config=config)
    threading.Thread(target=server.start, daemon=True).start()
    deadline = time.monotonic() + 10
    while True:  # it listens only once start() runs
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    _ready(str(server.port))
    threading.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Start one server of the given kind and serve until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    parser.add_argument("kind", choices=["redisrpc", "naive", "pyro5", "rpyc"])
    parser.add_argument("--url", default="")
    parser.add_argument("--name", default="bench")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    _exit_when_orphaned()
    kinds: dict[str, Any] = {
        "redisrpc": lambda: serve_redisrpc(args.url, args.name, args.workers),
        "naive": lambda: serve_naive(args.url, args.name),
        "pyro5": serve_pyro5,
        "rpyc": serve_rpyc,
    }
    kinds[args.kind]()


if __name__ == "__main__":
    main()
