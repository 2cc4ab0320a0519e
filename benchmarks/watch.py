"""Watched values: how soon a change shows, and how many reads many watchers cost.

``python -m benchmarks.watch`` starts its own redis-server, serves a counting
instrument with ``redisrpc serve`` in another process, and measures:

- **latency**: another process sets the value; how long until a watcher
  here sees it, at intervals of 1 s and 0.2 s (the changes are spread over
  the interval, so the median is about half of it; the goal is the maximum:
  within one interval);
- **shared reads**: the instrument's reads per second with 1 and 5 watcher
  processes (``redisrpc watch``), against the 1/interval one poller makes;
- **after the last watcher**: reads in the seconds after every watcher
  stopped (SIGTERM), which should be none.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redisrpc
from redisrpc.testing import wait_for

from .run import redis_server

__all__ = ["Counted", "main"]

ROOT = Path(__file__).resolve().parent.parent


class Counted:
    """An instrument that counts how often its ``value`` is read."""

    def __init__(self) -> None:
        self._reads = 0
        self._level = 1.0

    @property
    def value(self) -> float:
        """The level, counted."""
        self._reads += 1
        return self._level

    @property
    def level(self) -> float:
        """The level, set by another client (reading it here is not counted)."""
        return self._level

    @level.setter
    def level(self, new: float) -> None:
        self._level = new

    @property
    def reads(self) -> int:
        """How often ``value`` was read."""
        return self._reads


def _env(url: str) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "REDIS_URL": url, "PYTHONPATH": path}


def _latency(url: str, interval: float, changes: int) -> list[float]:
    """Seconds from another process's Set to this process seeing the value."""
    setter = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-c",
            "import sys, redisrpc\nc = redisrpc.Client(None, 'counted')\n"
            "for line in sys.stdin:\n    c.level = float(line); print('set', flush=True)\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(url),
    )
    assert setter.stdin is not None and setter.stdout is not None
    seen: list[float] = []
    with redisrpc.watch(redisrpc.Client(url, "counted"), "value", interval=interval) as value:
        value.wait()
        for index in range(changes):
            time.sleep(random.uniform(0, interval))  # spread over the poller's phase
            target = round(interval + 2 + index * 0.01, 3)
            began = time.monotonic()
            setter.stdin.write(f"{target}\n")
            setter.stdin.flush()
            setter.stdout.readline()
            wait_for(lambda target=target: value.latest == target, timeout=10, interval=0.001)
            seen.append(time.monotonic() - began)
    setter.stdin.close()
    setter.wait(10)
    return seen


def _reads_per_second(url: str, watchers: int, interval: float, seconds: float) -> float:
    """The instrument's reads per second while ``watchers`` processes watch it."""
    command = [sys.executable, "-m", "redisrpc", "watch", "counted", "value"]
    procs = [
        subprocess.Popen(
            [*command, "--interval", str(interval)],
            stdout=subprocess.DEVNULL,
            env=_env(url),
        )
        for _ in range(watchers)
    ]
    proxy = redisrpc.Client(url, "counted")
    try:
        leases = redisrpc.Client(url, "counted")._rpc_state.transport
        wait_for(lambda: leases.execute(("ZCARD", "counted:watchers"))[0] == watchers, timeout=30)
        time.sleep(interval)  # past the first reads of each new watcher
        before, began = proxy.reads, time.monotonic()
        time.sleep(seconds)
        return (proxy.reads - before) / (time.monotonic() - began)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(10)


def main(argv: list[str] | None = None) -> None:
    """Print the latency and read-count figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.watch", description=__doc__)
    parser.add_argument("--changes", type=int, default=15, help="changes per interval")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per read count")
    args = parser.parse_args(argv)
    with redis_server() as url:
        server = subprocess.Popen(
            [sys.executable, "-m", "redisrpc", "serve", "benchmarks.watch:Counted"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_env(url),
            cwd=ROOT,
        )
        try:
            wait_for(lambda: "counted" in {s.name for s in redisrpc.discover(url)}, timeout=30)
            print("set by another process -> seen by a watcher here:")
            for interval in (1.0, 0.2):
                seen = _latency(url, interval, args.changes)
                print(
                    f"  interval {interval:g} s: median {statistics.median(seen) * 1000:.0f} ms,"
                    f" max {max(seen) * 1000:.0f} ms ({len(seen)} changes)"
                )
            interval = 0.5
            print(
                f"reads of the instrument per second (interval {interval:g} s, one poller:"
                f" {1 / interval:g}/s):"
            )
            for watchers in (1, 5):
                rate = _reads_per_second(url, watchers, interval, args.seconds)
                print(f"  {watchers} watcher process{'es' if watchers > 1 else ''}: {rate:.2f}/s")
            proxy = redisrpc.Client(url, "counted")
            before = proxy.reads
            time.sleep(args.seconds / 2)
            print(
                f"reads in {args.seconds / 2:g} s after every watcher stopped:"
                f" {proxy.reads - before}"
            )
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
