"""Where a call's time goes, process by process: ``python -m benchmarks.account``.

A latency hides who spends it. This runs calls one after another, as the
sequential rows of ``python -m benchmarks`` do, and reads from ``/proc`` the
CPU time (user and system) and the context switches that each process spent
on them: the caller (this process), the server's process and, for brokered
calls, ``redis-server``. Measured side by side in one run:

- ``redis-py PING``: one round trip to Redis, the unit of the other tables;
- ``floor``: the bare brokered exchange of ``python -m benchmarks.floor``
  (raw sockets, the server's reply sent with ``CLIENT REPLY SKIP``);
- ``redisrpc``: ``add(1)`` through a sync proxy and a :class:`redisrpc.Server`;
- ``Pyro5``: ``add(1)`` over one direct TCP connection (when Pyro5 is installed).

On a machine with fewer cores than busy processes, a call's p50 is close to
the CPU that all of them spend on it, so the columns add up to the latency's
causes. Linux only (it reads ``/proc``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import redis

import redisrpc

from . import floor
from .run import redis_server, server_processes

__all__ = ["Account", "main", "usage"]


@dataclass(frozen=True)
class Usage:
    """A process's CPU seconds and context switches so far (all its threads)."""

    cpu: float
    switches: int


def usage(pid: int) -> Usage:
    """What ``pid`` has used so far, its live threads summed (``/proc/PID/task``).

    CPU comes from ``schedstat`` (nanoseconds), not the 10 ms ticks of ``stat``.
    """
    cpu_ns = 0
    switches = 0
    task_dir = f"/proc/{pid}/task"
    for tid in os.listdir(task_dir):
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            with open(f"{task_dir}/{tid}/schedstat") as f:
                cpu_ns += int(f.read().split()[0])
            with open(f"{task_dir}/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
    return Usage(cpu_ns / 1e9, switches)


@dataclass
class Account:
    """One measurement: p50 µs, and per call each process's CPU µs and context switches."""

    name: str
    p50_us: float
    cpu_us: dict[str, float] = field(default_factory=dict)
    switches: dict[str, float] = field(default_factory=dict)

    @property
    def total_cpu_us(self) -> float:
        return sum(self.cpu_us.values())


def account(name: str, call: Callable[[], object], pids: dict[str, int], calls: int) -> Account:
    """Make ``calls`` calls (after a warm-up) and charge each process its share per call."""
    for _ in range(max(10, calls // 10)):
        call()
    everyone = {"client": os.getpid(), **pids}
    before = {who: usage(pid) for who, pid in everyone.items()}
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    after = {who: usage(pid) for who, pid in everyone.items()}
    return Account(
        name,
        statistics.median(times) * 1e6,
        {who: (after[who].cpu - before[who].cpu) / calls * 1e6 for who in everyone},
        {who: (after[who].switches - before[who].switches) / calls for who in everyone},
    )


def _median(runs: list[Account]) -> Account:
    """Each figure's median over the runs of one measurement."""
    first = runs[0]
    return Account(
        first.name,
        statistics.median(run.p50_us for run in runs),
        {who: statistics.median(run.cpu_us[who] for run in runs) for who in first.cpu_us},
        {who: statistics.median(run.switches[who] for run in runs) for who in first.switches},
    )


def _local_redis(pid: int) -> dict[str, int]:
    """``{"redis": pid}`` if ``pid`` is a redis-server on this machine, else nothing."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            local = f.read().startswith("redis")
    except OSError:
        local = False
    return {"redis": pid} if local else {}


@contextlib.contextmanager
def _measures(url: str, calls: int) -> Iterator[list[Callable[[], Account]]]:
    """Each measurement, ready to run, with its servers started (and stopped on exit)."""
    client = redis.Redis.from_url(url)
    # Redis's own CPU only when it runs here (REDIS_URL may name another machine).
    redis_pids = _local_redis(int(client.info("server")["process_id"]))
    port = int(client.connection_pool.connection_kwargs["port"])
    with contextlib.ExitStack() as stack:
        measures = [lambda: account("redis-py PING", client.ping, redis_pids, calls)]

        floor_pid = stack.enter_context(floor.floor_server(port, True)).pid
        assert floor_pid is not None
        conn = floor._Conn(port)
        stack.callback(conn.sock.close)
        keys = iter(range(1 << 62))
        measures.append(
            lambda: account(
                "floor (bare exchange, server skips)",
                lambda: floor.exchange(conn, b"%d" % next(keys), False),
                {"server": floor_pid, **redis_pids},
                calls,
            )
        )

        ((ours, _),) = stack.enter_context(server_processes("redisrpc", url=url, name="account"))
        proxy = redisrpc.Client(url, "account")
        add = functools.partial(proxy.add, 1)
        pids = {"server": ours.pid, **redis_pids}
        measures.append(lambda: account("redisrpc sync call", add, pids, calls))

        if importlib.util.find_spec("Pyro5") is not None:
            import Pyro5.api  # noqa: PLC0415 (optional)

            ((pyro, uri),) = stack.enter_context(server_processes("pyro5"))
            direct = functools.partial(Pyro5.api.Proxy(uri).add, 1)
            measures.append(lambda: account("Pyro5 call", direct, {"server": pyro.pid}, calls))
        yield measures


def table(accounts: list[Account]) -> str:
    """The markdown table: per call, each process's CPU µs (and switches), and the sums."""
    pyro = next((a for a in accounts if a.name == "Pyro5 call"), None)
    lines = [
        "| measurement | p50 µs | client CPU µs | server CPU µs | Redis CPU µs "
        "| all CPU µs | all CPU / Pyro5's | switches a call (client/server/Redis) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for a in accounts:

        def cell(who: str, a: Account = a) -> str:
            return f"{a.cpu_us[who]:.0f}" if who in a.cpu_us else ""

        ratio = f"{a.total_cpu_us / pyro.total_cpu_us:.2f}" if pyro else ""
        switches = "/".join(
            f"{a.switches[who]:.1f}" if who in a.switches else "-"
            for who in ("client", "server", "redis")
        )
        lines.append(
            f"| {a.name} | {a.p50_us:.0f} | {cell('client')} | {cell('server')} "
            f"| {cell('redis')} | {a.total_cpu_us:.0f} | {ratio} | {switches} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run each measurement ``--repeat`` times, taking turns, and print the medians."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.account", description=__doc__)
    parser.add_argument("--calls", type=int, default=5000, help="calls per measurement run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, taking turns")
    args = parser.parse_args(argv)
    if not os.path.exists(f"/proc/{os.getpid()}/task"):
        sys.exit("benchmarks.account reads /proc: it runs on Linux only")
    with redis_server() as url, _measures(url, args.calls) as measures:
        runs: list[list[Account]] = [[] for _ in measures]
        for _ in range(args.repeat):
            for measure, kept in zip(measures, runs, strict=True):
                kept.append(measure())
    print(f"per call; medians of {args.repeat} runs of {args.calls} calls each")
    print(table([_median(kept) for kept in runs]))


if __name__ == "__main__":
    main()
