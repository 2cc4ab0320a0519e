"""The benchmark suite runs end to end (a tiny run; figures are printed, never asserted)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import redis
from conftest import PYTHON, ROOT, python_env


def run_module(*args: str, timeout: float) -> str:
    """Run ``python -m <args>`` from the repository root; return its output (it must succeed)."""
    done = subprocess.run(
        [PYTHON, "-m", *args],
        check=False,
        cwd=ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quick_benchmark_prints_every_row(redis_url):
    """`python -m benchmarks --quick` starts its servers and prints the full table."""
    out = run_module("benchmarks", "--quick", timeout=180)
    assert "redisrpc benchmarks: " in out and "Redis " in out
    for row in [
        "| redis-py PING |",
        "| redisrpc call, sync client |",
        "| redisrpc, 2 threads, one proxy |",
        "| redisrpc, async client, 4 in flight |",
        "| naive RPUSH then BLPOP (no pipelining) |",
        "| scale-out: 1 server(s), 2 threads, add() |",
        "| scale-out: 2 server(s), 2 threads, work(1 ms) |",
        "| scale-out: 2 server(s), async, 4 in flight, add() |",
        "| Pyro5",
        "| RPyC",
        "| array | raw SET+GET ms | redisrpc down ms (x raw) | redisrpc up ms (x raw) |",
        "| 8 KB |",
        "| 1 MB |",
    ]:
        assert row in out, f"missing row {row!r} in:\n{out}"
    if importlib.util.find_spec("Pyro5") is not None:  # the peers extra: the interleaved rows
        assert "| interleaved: redisrpc sync call |" in out, out
        assert "| interleaved: Pyro5 call |" in out, out
    else:
        assert "not installed (pip install Pyro5)" in out, out
    ping = next(line for line in out.splitlines() if line.startswith("| redis-py PING"))
    assert ping.rstrip().endswith("| 1.00 | 1.00 |")


def test_floor_benchmark_prints_every_exchange(redis_url):
    """`python -m benchmarks.floor` runs each raw exchange (tiny size) and prints its row."""
    out = run_module("benchmarks.floor", "--calls", "50", "--repeat", "1", timeout=120)
    rows = [
        "| raw PING |",
        "| redis-py PING |",
        "| acknowledged |",
        "| server skips |",
        "| both skip |",
    ]
    for row in rows:
        assert row in out, f"missing row {row!r} in:\n{out}"


def test_watch_benchmark_prints_every_figure(redis_url):
    """`python -m benchmarks.watch` (a tiny run) prints latency, shared reads and reads after."""
    out = run_module("benchmarks.watch", "--changes", "2", "--seconds", "1", timeout=180)
    for line in ("interval 1 s: median", "interval 0.2 s: median", "5 watcher processes:"):
        assert line in out, f"missing {line!r} in:\n{out}"
    assert "reads in 0.5 s after every watcher stopped:" in out


def test_cpu_benchmark_prints_each_sides_cpu_per_call():
    """`python -m benchmarks.cpu` needs no Redis: each measure runs on its fake socket."""
    pytest.importorskip("hiredis")  # the fast extra: its reader parses the fake socket's input
    out = run_module("benchmarks.cpu", "--n", "30", "--batches", "1", timeout=120)
    for name in ("server", "turn", "client"):
        line = next((line for line in out.splitlines() if line.startswith(name)), None)
        assert line is not None and line.endswith("µs CPU per call"), out
        assert float(line.split()[1]) > 0, out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="it reads /proc")
def test_account_benchmark_charges_each_process_its_cpu(redis_url):
    """`python -m benchmarks.account` (a tiny run) charges CPU to the processes each call used."""
    out = run_module("benchmarks.account", "--calls", "200", "--repeat", "1", timeout=180)
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| measurement")
    }
    # p50, client, server, Redis, all: a PING uses no server; a brokered call uses all three.
    assert rows["redis-py PING"][2] == ""
    for name in ("floor (bare exchange, server skips)", "redisrpc sync call"):
        p50, client, server, redis_cpu, total = (float(cell) for cell in rows[name][:5])
        assert min(p50, client, server, redis_cpu) > 0, out
        assert total == pytest.approx(client + server + redis_cpu, abs=2), out
    if importlib.util.find_spec("Pyro5") is not None:
        assert rows["Pyro5 call"][3] == "" and rows["Pyro5 call"][5] == "1.00", out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="it reads /proc")
def test_account_charges_redis_only_when_it_runs_here(redis_url):
    """Redis's CPU is read only from a local redis-server (REDIS_URL may name another host)."""
    account = pytest.importorskip("benchmarks.account")
    pid = int(redis.Redis.from_url(redis_url).info("server")["process_id"])
    assert account._local_redis(pid) == {"redis": pid}
    assert account._local_redis(os.getpid()) == {}  # a process that is not Redis
    assert account._local_redis(2**22 + 7) == {}  # no such process
