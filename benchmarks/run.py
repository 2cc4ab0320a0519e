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

__all__ = ["ArrayRow", "Row", "main"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One line of the table; None where a figure does not apply."""

    name: str
    p50_us: float | None = None
    p99_us: float | None = None
    rate: float | None = None
    note: str = ""


@dataclass
class ArrayRow:
    """Moving one array of ``nbytes`` each way: median ms per transfer, by whom."""

    nbytes: int
    ms: dict[str, float]


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
    with server_processes(kind, count, **options) as started:
        yield [info for _, info in started]


@contextlib.contextmanager
def server_processes(
    kind: str, count: int = 1, **options: Any
) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """Like :func:`servers`, yielding each process with its payload (for its pid)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    args = [sys.executable, "-m", "benchmarks.serve", kind]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    procs: list[subprocess.Popen[str]] = []
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
        yield list(zip(procs, infos, strict=True))
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
        _peers(sizes, measure, url)
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


def _peers(
    sizes: Sizes, measure: Callable[[Callable[[], Row]], None], url: str | None = None
) -> None:
    """Pyro5 and RPyC, each against its own server process, when installed."""
    n, k = sizes.calls, sizes.threads
    if importlib.util.find_spec("Pyro5") is None:
        measure(lambda: Row("Pyro5", note="not installed (pip install Pyro5)"))
    else:
        import Pyro5.api  # noqa: PLC0415 (optional)

        with servers("pyro5") as (uri,):
            call = functools.partial(Pyro5.api.Proxy(uri).add, 1)
            measure(lambda: sequential("Pyro5 call (direct TCP)", call, n))
            if url is not None:
                with servers("redisrpc", url=url, name="interleaved"):
                    ours = functools.partial(redisrpc.Client(url, "interleaved").add, 1)
                    pairs = [
                        interleaved(("redisrpc sync call", ours), ("Pyro5 call", call), n)
                        for _ in range(sizes.repeat)
                    ]
                for i in range(2):  # medians of the runs, which took turns with Pyro5
                    runs = iter(pairs)
                    measure(lambda i=i, runs=runs: next(runs)[i])

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


def interleaved(
    a: tuple[str, Callable[[], Any]], b: tuple[str, Callable[[], Any]], n: int
) -> list[Row]:
    """Two kinds of call timed alternately, so both see the same load (a shared machine)."""
    for _ in range(max(10, n // 10)):
        a[1]()
        b[1]()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(n):
        for (_, call), out in zip((a, b), times, strict=True):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
    rows = []
    for (name, _), out in zip((a, b), times, strict=True):
        out.sort()
        total = sum(out)
        rows.append(
            Row(
                f"interleaved: {name}",
                _percentile(out, 0.5) * 1e6,
                _percentile(out, 0.99) * 1e6,
                n / total,
            )
        )
    return rows


ARRAY_SIZES = (8 * 1024, 256 * 1024, 8 * 1024 * 1024, 64 * 1024 * 1024)


def _timed_median(call: Callable[[], Any], nbytes: int) -> float:
    """Median ms of ``call`` over enough transfers for this size (about 0.5 GB, 3 to 200)."""
    count = max(3, min(200, (512 * 1024 * 1024) // max(nbytes, 1) // 4))
    call()  # warm up
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def run_arrays(url: str, sizes: tuple[int, ...], peers: bool) -> list[ArrayRow]:
    """Arrays each way: raw SET+GET of the same bytes, redisrpc, Pyro5 (marshal), RPyC."""
    import numpy  # noqa: PLC0415 (only these rows need it)

    rows = [ArrayRow(n, {}) for n in sizes]
    r = redis.Redis.from_url(url)
    with servers("redisrpc", url=url, name="arrays"):
        proxy: Any = redisrpc.Client(url, "arrays", timeout=300)
        for row in rows:
            data = proxy.array(row.nbytes)
            raw = data.tobytes()

            def set_get(raw: bytes = raw) -> None:
                r.set("bench:raw", raw)
                assert len(r.get("bench:raw") or b"") == len(raw)

            row.ms["raw SET+GET"] = _timed_median(set_get, row.nbytes)
            row.ms["redisrpc down"] = _timed_median(
                functools.partial(proxy.array, row.nbytes), row.nbytes
            )
            row.ms["redisrpc up"] = _timed_median(functools.partial(proxy.take, data), row.nbytes)
        r.delete("bench:raw")
    if peers and importlib.util.find_spec("Pyro5") is not None:
        import Pyro5.api  # noqa: PLC0415 (optional)

        with servers("pyro5") as (uri,):
            pyro = Pyro5.api.Proxy(uri)
            pyro._pyroSerializer = "marshal"  # bytes as they are (serpent would base64 them)
            for row in rows:
                data = numpy.ones(row.nbytes // 8)
                row.ms["Pyro5 down"] = _timed_median(
                    lambda n=row.nbytes: numpy.frombuffer(pyro.array_bytes(n)), row.nbytes
                )
                row.ms["Pyro5 up"] = _timed_median(
                    lambda d=data: pyro.take(d.tobytes()), row.nbytes
                )
    if peers and importlib.util.find_spec("rpyc") is not None:
        import rpyc  # noqa: PLC0415 (optional)

        with servers("rpyc") as (port,):
            config = {"sync_request_timeout": 300}
            root = rpyc.connect("127.0.0.1", int(port), config=config).root
            for row in rows:
                data = numpy.ones(row.nbytes // 8)
                row.ms["RPyC down"] = _timed_median(
                    lambda n=row.nbytes: numpy.frombuffer(root.array_bytes(n)), row.nbytes
                )
                row.ms["RPyC up"] = _timed_median(lambda d=data: root.take(d.tobytes()), row.nbytes)
    return rows


def array_table(rows: list[ArrayRow]) -> str:
    """Median ms per transfer, and each against raw SET+GET of the same bytes (lower is better)."""
    columns = [c for c in rows[0].ms if c != "raw SET+GET"] if rows else []
    lines = [
        "| array | raw SET+GET ms | " + " | ".join(f"{c} ms (x raw)" for c in columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for row in rows:
        raw = row.ms["raw SET+GET"]
        size = (
            f"{row.nbytes // (1024 * 1024)} MB"
            if row.nbytes >= 1024 * 1024
            else f"{row.nbytes // 1024} KB"
        )
        cells = [f"{row.ms[c]:.2f} ({row.ms[c] / raw:.2f})" if c in row.ms else "" for c in columns]
        lines.append(f"| {size} | {raw:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    parser.add_argument("--no-arrays", action="store_true", help="skip the array rows")
    parser.add_argument("--only-arrays", action="store_true", help="only the array rows")
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
    array_sizes = (8 * 1024, 1024 * 1024) if args.quick else ARRAY_SIZES
    with redis_server() as url:
        rows = [] if args.only_arrays else run_suite(url, sizes, peers=not args.no_peers)
        arrays = [] if args.no_arrays else run_arrays(url, array_sizes, peers=not args.no_peers)
        print(f"redisrpc benchmarks: {machine(url)}")
    print(f"command: python -m benchmarks {' '.join(argv if argv is not None else sys.argv[1:])}")
    if rows:
        print()
        print(table(rows))
    if arrays:
        print()
        print(array_table(arrays))
