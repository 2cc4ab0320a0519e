"""CPU per call, with no Redis and no other process: ``python -m benchmarks.cpu``.

Latency on a shared machine mostly measures the load; this measures what a
call costs each side in CPU, repeatably. Each side runs its real code, redis-py's
connection and parser included, on a fake socket that answers a few Redis
commands in process, so only the sending and receiving system calls are left out:

* ``server``: ``Server.handle`` of a prepared ``add(1)`` request (decode,
  checks, call context, output capture, the call, the reply);
* ``turn``: the serving loop's whole turn per call (handle, the reply's
  RPUSH, the next pop and its prefetched checks, packing);
* ``client``: ``proxy.add(1)`` on a described sync proxy (argument check,
  plan, encode, the Send exchange, decode), the reply made by the fake.

Prints the median CPU µs per call (``time.thread_time``) over ``--batches``
batches. ``--profile NAME`` shows a cProfile of one. For instruction counts
that no load changes, run one measure under valgrind with two values of
``--batches``; the difference over the extra calls is the count per call::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python -m benchmarks.cpu --only server --n 1000 --batches 1   # and --batches 3
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis

try:
    import hiredis
except ImportError:  # the fast extra is not installed: say so, not a traceback
    raise SystemExit("benchmarks.cpu needs hiredis: pip install -e '.[fast]'") from None

import redisrpc
from redisrpc.core.call import Call, encoded
from redisrpc.core.clock import local_seconds
from redisrpc.core.protocol import Reply, reply_queue_prefix
from redisrpc.core.transport import Transport
from redisrpc.server.calls import Prefetched

from .serve import Bench

__all__ = ["FakeSocket", "main"]

SERVICE = "cpu-bench"


def _resp(value: Any) -> bytes:
    """``value`` as Redis writes it (RESP2): integers, bulk strings, arrays, nil."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, (bytes, str)):
        data = value.encode() if isinstance(value, str) else value
        return b"$%d\r\n%s\r\n" % (len(data), data)
    return b"*%d\r\n" % len(value) + b"".join(_resp(item) for item in value)


class FakeSocket:
    """Stands in for a Redis connection's socket: answers the commands a call uses, in process.

    redis-py's own connection code and reply parser run on it as on a real
    socket; only the system calls of sending and receiving are left out (an
    idle connection's readiness poll is real: the socket's fd is an empty pipe).
    """

    def __init__(self, answer: Callable[[list[bytes]], Any]) -> None:
        self.answer = answer
        self.commands = hiredis.Reader()
        self.out = bytearray()
        self.fd, self._writer = os.pipe()

    def fileno(self) -> int:
        return self.fd

    def settimeout(self, timeout: float | None) -> None:
        """No waits here."""

    def gettimeout(self) -> float | None:
        return None

    def setsockopt(self, level: int, option: int, value: int) -> None:
        """Socket options (a read's low-water mark) change nothing here: replies are ready."""

    def sendall(self, data: Any) -> None:
        self.commands.feed(bytes(data))
        skip = False
        while (command := self.commands.gets()) is not False:
            if command[:3] == [b"CLIENT", b"REPLY", b"SKIP"]:
                skip = True
                continue
            reply = self.answer(command)
            if not skip:
                self.out += _resp(reply)
            skip = False

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        if not self.out:
            raise RuntimeError("the benchmark reads a reply it never sent")
        size = min(len(self.out), len(buffer))
        buffer[:size] = self.out[:size]
        del self.out[:size]
        return size


def _transport(answer: Callable[[list[bytes]], Any]) -> Transport:
    """A transport whose one connection is a redis-py connection on a FakeSocket, clock measured."""
    transport = Transport(redis.Redis())
    conn = transport._pool.make_connection()
    conn._sock = FakeSocket(answer)  # type: ignore[assignment]
    conn._parser.on_connect(conn)
    transport._idle.append(conn)
    clock = transport._clock
    clock._offset_ms = time.time() * 1000 - local_seconds() * 1000
    clock._measured_at = local_seconds()
    transport._skips = True
    return transport


def _time_reply() -> list[bytes]:
    now = time.time()
    return [str(int(now)).encode(), str(int(now % 1 * 1e6)).encode()]


class _Requests:
    """add(1) requests as the sync client sends them (protocol 4), each with a fresh id.

    One is encoded by the client's code; the others are copies whose id ends
    with another counter, as the client's ids do (a replace, about 1% of a
    call's cost), so a server serves them all.
    """

    def __init__(self) -> None:
        call = Call(
            SERVICE,
            "add",
            (1,),
            {},
            30.0,
            reply_queue_prefix(SERVICE),
            binary=True,
            caller="bench@host:1",
        )
        call.deadline = int(time.time() * 1000) + 3_600_000
        self.template = encoded(call)
        self.id = call.call_id.encode()
        self.made = 0

    def take(self, n: int) -> list[bytes]:
        """``n`` requests whose ids no server has seen."""
        start, self.made = self.made, self.made + n
        prefix = self.id[:-8]  # random hex, then the counter: no long runs of digits
        return [
            self.template.replace(self.id, b"%s%08x" % (prefix, i)) for i in range(start, n + start)
        ]


def _server(answer: Callable[[list[bytes]], Any]) -> redisrpc.Server:
    server = redisrpc.Server(
        _transport(answer), SERVICE, Bench(), register=False, handle_signals=False
    )
    server.redis_start.started_ms, server.redis_start._stale = 0, False  # Redis started long ago
    return server


def server_handle(n: int) -> Callable[[], None]:
    """``n`` calls of Server.handle, each on a request taken in a fresh turn."""
    server = _server(lambda command: None)
    requests = _Requests()

    def run() -> None:
        # Each request as if just popped: its pop stamped an hour ahead, so no call re-reads
        # the cancellation counter, however slow the machine (valgrind) makes a batch.
        later = local_seconds() + 3600
        prefetched = Prefetched(None, None, later, later)
        for raw in requests.take(n):
            queue, data = server.handle(raw, prefetched)
            assert queue is not None and data is not None

    return run


def server_turn(n: int) -> Callable[[], None]:
    """``n`` turns of the serving loop, one request each (the pop finds one at a time)."""
    waiting: deque[bytes] = deque()

    def answer(command: list[bytes]) -> Any:
        name = command[0]
        if name == b"BLPOP":
            if not waiting:
                server._stop.set()
                return None
            return [command[1], waiting.popleft()]
        if name == b"BLMPOP":  # BLMPOP timeout 1 key LEFT COUNT n
            if not waiting:
                server._stop.set()
                return None
            return [command[3], [waiting.popleft()]]
        if name == b"MGET":
            return [None] * (len(command) - 1)
        if name == b"TIME":
            return _time_reply()
        if name == b"ECHO":
            return command[1]
        if name in (b"RPUSH", b"PEXPIRE"):
            return 1
        return None  # GET (lock, cancellation counter), LPOP

    # One request queued at a time (a sequential caller's case); the server asks for a
    # batch all the same, as a real one does once its calls prove fast.
    server = _server(answer)
    requests = _Requests()

    def run() -> None:
        waiting.extend(requests.take(n))
        server._stop.clear()
        server._loop()

    return run


def client_call(n: int) -> Callable[[], None]:
    """``n`` calls of ``proxy.add(1)`` on a described sync proxy."""
    described = _server(lambda command: None).describe()

    def answer(command: list[bytes]) -> Any:
        name = command[0]
        if name == b"RPUSH":
            data = command[2]
            at = data.index(b'"id":"') + 6
            answer.reply = b'{"return_value":2,"protocol":4,"id":"%s"}' % data[at : at + 32]  # type: ignore[attr-defined]
            return 1
        if name == b"BLPOP":
            return [command[1], answer.reply]  # type: ignore[attr-defined]
        return None

    proxy = redisrpc.Client(_transport(answer), SERVICE, describe=False)
    proxy._rpc_adopt(Reply(value=described))

    def run() -> None:
        add = proxy.add
        for _ in range(n):
            add(1)

    return run


MEASURES = {"server": server_handle, "turn": server_turn, "client": client_call}


def _measure(name: str, n: int, batches: int, *, verbose: bool = False) -> float:
    """Median CPU µs per call over ``batches`` batches of ``n`` calls."""
    per_call = []
    run = MEASURES[name](n)
    run()  # warm-up
    for _ in range(batches):
        began = time.thread_time()
        run()
        per_call.append((time.thread_time() - began) / n * 1e6)
    if verbose:
        print(f"{name}: " + " ".join(f"{value:.1f}" for value in per_call))
    return statistics.median(per_call)


def main(argv: list[str] | None = None) -> None:
    """Print the CPU per call of each measure (or a profile of one)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="calls per batch")
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--only", choices=sorted(MEASURES), action="append")
    parser.add_argument("--profile", choices=sorted(MEASURES), help="cProfile one measure")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every batch too")
    args = parser.parse_args(argv)
    if args.profile:
        run = MEASURES[args.profile](args.n)
        profile = cProfile.Profile()
        profile.runcall(run)
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return
    for name in args.only or list(MEASURES):
        median = _measure(name, args.n, args.batches, verbose=args.verbose)
        print(f"{name:7} {median:7.1f} µs CPU per call")


if __name__ == "__main__":
    main()
