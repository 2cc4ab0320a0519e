"""Measurements and the printed table; ``python -m benchmarks`` calls :func:`main`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import importlib.util
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

import redisrpc
from redisrpc.aio import AsyncClient
from redisrpc.testing import RedisServer

__all__ = ["Row", "main"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One line of the table; None where a figure does not apply."""

    name: str
    p50_us: float | None = None
    p99_us: float | None = None
    rate: float | None = None
    note: str = ""


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def sequential(name: str, call: Callable[[], Any], n: int) -> Row:
    """Time ``n`` calls one after another (after a short warm-up)."""
    for _ in range(max(10, n // 10)):
        call()
    times = []
    began = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - began
    times.sort()
    return Row(name, _percentile(times, 0.5) * 1e6, _percentile(times, 0.99) * 1e6, n / total)


def threaded(name: str, make_call: Callable[[], Callable[[], Any]], threads: int, n: int) -> Row:
    """Calls per second with ``threads`` threads making ``n`` calls in all."""
    per_thread = max(1, n // threads)
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            call = make_call()  # in its thread: some peers' proxies belong to one thread
            call()  # warm up: connections are open before the clock starts
        except BaseException as exc:
            errors.append(exc)
            start.abort()
            return
        start.wait()
        try:
            for _ in range(per_thread):
                call()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed to start
        start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    total = time.perf_counter() - began
    if errors:
        raise errors[0]
    return Row(name, rate=per_thread * threads / total)


def asynchronous(name: str, url: str, service: str, concurrency: int, n: int) -> Row:
    """Calls per second with ``concurrency`` calls in flight on one AsyncClient."""

    async def go() -> float:
        proxy = await AsyncClient(url, service, timeout=60)
        per_task = max(1, n // concurrency)

        async def task() -> None:
            for _ in range(per_task):
                await proxy.add(1)

        await asyncio.gather(*(proxy.add(1) for _ in range(concurrency)))  # warm up
        began = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(concurrency)))
        return per_task * concurrency / (time.perf_counter() - began)

    return Row(name, rate=asyncio.run(go()))


# -- processes ----------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yield the URL of a private redis-server, or of REDIS_URL when none is installed."""
    if shutil.which("redis-server") is None:
        yield redisrpc.core.transport.resolve_url(None)
        return
    with RedisServer() as server:
        yield server.url


@contextlib.contextmanager
def servers(kind: str, count: int = 1, **options: Any) -> Iterator[list[str]]:
    """Start ``count`` server processes of ``kind``; yield their ``ready`` lines' payloads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    args = [sys.executable, "-m", "benchmarks.serve", kind]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    procs = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    args,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    cwd=ROOT,
                    env=env,
                    text=True,
                )
            )
        infos = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError(f"benchmark server {kind} did not start")
            infos.append(" ".join(line[1:]))
        yield infos
    finally:
        for proc in procs:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()


# -- the suite ------------------------------------------------------------------


@dataclass
class Sizes:
    """How many calls each measurement makes."""

    calls: int
    threads: int
    repeat: int
    concurrency: int
    scale: tuple[int, ...]
    work_ms: float


def naive_call(r: redis.Redis, service: str) -> Callable[[], Any]:
    """One call of the hand-written baseline: RPUSH, then BLPOP, two round trips."""

    def call() -> Any:
        queue = f"{service}:rpc:{secrets.token_hex(8)}"
        r.rpush(service, json.dumps({"x": 1, "q": queue}))
        popped = r.blpop([queue], timeout=10)
        assert popped is not None
        return json.loads(popped[1])["r"]

    return call


def median_of(repeat: int, measure: Callable[[], Row]) -> Row:
    """Run one measurement ``repeat`` times; keep the median of each figure."""
    runs = [measure() for _ in range(repeat)]

    def mid(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    return Row(
        runs[0].name,
        mid([r.p50_us for r in runs]),
        mid([r.p99_us for r in runs]),
        mid([r.rate for r in runs]),
        runs[0].note,
    )


def run_suite(url: str, sizes: Sizes, peers: bool) -> list[Row]:
    """Run every measurement and return the rows in table order."""
    n, k, c = sizes.calls, sizes.threads, sizes.concurrency
    rows: list[Row] = []

    def measure(make: Callable[[], Row]) -> None:
        rows.append(median_of(sizes.repeat, make))

    with servers("redisrpc", url=url, name="bench"):
        proxy: Any = redisrpc.Client(url, "bench")
        add = functools.partial(proxy.add, 1)
        ping = redis.Redis.from_url(url).ping  # the raw redis-py baseline
        measure(lambda: sequential("redis-py PING", ping, n))
        measure(lambda: sequential("redisrpc call, sync client", add, n))
        measure(lambda: threaded(f"redisrpc, {k} threads, one proxy", lambda: add, k, 5 * n))
        measure(
            lambda: asynchronous(f"redisrpc, async client, {c} in flight", url, "bench", c, 5 * n)
        )
    with servers("naive", url=url, name="naive"):
        naive = naive_call(redis.Redis.from_url(url), "naive")
        measure(lambda: sequential("naive RPUSH then BLPOP (no pipelining)", naive, n))
        measure(lambda: threaded(f"naive, {k} threads", lambda: naive, k, 5 * n))
    for count in sizes.scale:
        _scale_out(url, sizes, count, measure)
    if peers:
        _peers(sizes, measure)
    return rows


def _scale_out(
    url: str, sizes: Sizes, count: int, measure: Callable[[Callable[[], Row]], None]
) -> None:
    """Throughput with ``count`` server processes on one queue."""
    n, k, c = sizes.calls, sizes.threads, sizes.concurrency
    name = f"scale{count}"
    with servers("redisrpc", count, url=url, name=name):
        shared: Any = redisrpc.Client(url, name)
        add = functools.partial(shared.add, 1)
        work = functools.partial(shared.work, sizes.work_ms)
        label = f"scale-out: {count} server(s)"
        measure(lambda: threaded(f"{label}, {k} threads, add()", lambda: add, k, 5 * n))
        measure(
            lambda: threaded(
                f"{label}, {k} threads, work({sizes.work_ms:g} ms)", lambda: work, k, max(k, n // 2)
            )
        )
        measure(lambda: asynchronous(f"{label}, async, {c} in flight, add()", url, name, c, 5 * n))


def _peers(sizes: Sizes, measure: Callable[[Callable[[], Row]], None]) -> None:
    """Pyro5 and RPyC, each against its own server process, when installed."""
    n, k = sizes.calls, sizes.threads
    if importlib.util.find_spec("Pyro5") is None:
        measure(lambda: Row("Pyro5", note="not installed (pip install Pyro5)"))
    else:
        import Pyro5.api  # noqa: PLC0415 (optional)

        with servers("pyro5") as (uri,):
            call = functools.partial(Pyro5.api.Proxy(uri).add, 1)
            measure(lambda: sequential("Pyro5 call (direct TCP)", call, n))

            def pyro_call() -> Callable[[], Any]:  # Pyro5 proxies belong to one thread
                return functools.partial(Pyro5.api.Proxy(uri).add, 1)

            measure(lambda: threaded(f"Pyro5, {k} threads", pyro_call, k, 5 * n))
    if importlib.util.find_spec("rpyc") is None:
        measure(lambda: Row("RPyC", note="not installed (pip install rpyc)"))
    else:
        import rpyc  # noqa: PLC0415 (optional)

        with servers("rpyc") as (port,):
            root = rpyc.connect("127.0.0.1", int(port)).root
            measure(lambda: sequential("RPyC call (direct TCP)", lambda: root.add(1), n))

            def rpyc_call() -> Callable[[], Any]:  # one connection per thread
                own = rpyc.connect("127.0.0.1", int(port)).root
                return lambda: own.add(1)

            measure(lambda: threaded(f"RPyC, {k} threads", rpyc_call, k, 5 * n))


# -- output ---------------------------------------------------------------------


def machine(url: str) -> str:
    """A one-line description of where the figures come from."""
    with redis.Redis.from_url(url) as r:
        version = r.info("server").get("redis_version", "?")
    hiredis = "yes" if importlib.util.find_spec("hiredis") else "no"
    return (
        f"{datetime.date.today().isoformat()}, {platform.system()} {platform.machine()},"
        f" {os.cpu_count()} CPUs, {platform.python_implementation()}"
        f" {platform.python_version()}, Redis {version}, redis-py {redis.__version__},"
        f" hiredis {hiredis}"
    )


def table(rows: list[Row]) -> str:
    """Format rows as Markdown, with ratios to the PING row (the first)."""
    ping = rows[0]

    def num(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    lines = [
        "| measurement | p50 µs | p99 µs | calls/s | p50 / PING p50 | calls/s / PING calls/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.note:
            lines.append(f"| {row.name} | | | | | {row.note} |")
            continue
        latency = None if row.p50_us is None or ping.p50_us is None else row.p50_us / ping.p50_us
        rate = None if row.rate is None or ping.rate is None else row.rate / ping.rate
        lines.append(
            f"| {row.name} | {num(row.p50_us, '.0f')} | {num(row.p99_us, '.0f')}"
            f" | {num(row.rate, ',.0f')} | {num(latency, '.2f')} | {num(rate, '.2f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run the suite and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tiny run (checks it works)")
    parser.add_argument("--calls", type=int, default=3000, help="sequential calls per row")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=128, help="async calls in flight")
    parser.add_argument("--scale", default="1,2,4", help="server counts for scale-out")
    parser.add_argument("--work-ms", type=float, default=1.0, help="the work() call's sleep")
    parser.add_argument("--no-peers", action="store_true", help="skip Pyro5 and RPyC")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; medians are shown")
    args = parser.parse_args(argv)
    sizes = Sizes(
        calls=args.calls,
        threads=args.threads,
        repeat=args.repeat,
        concurrency=args.concurrency,
        scale=tuple(int(x) for x in args.scale.split(",")),
        work_ms=args.work_ms,
    )
    if args.quick:
        sizes = Sizes(calls=20, threads=2, repeat=1, concurrency=4, scale=(1, 2), work_ms=1.0)
    with redis_server() as url:
        rows = run_suite(url, sizes, peers=not args.no_peers)
        print(f"redisrpc benchmarks: {machine(url)}")
    print(f"command: python -m benchmarks {' '.join(argv if argv is not None else sys.argv[1:])}")
    print()
    print(table(rows))
