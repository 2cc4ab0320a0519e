"""Soak test: many client processes call many server processes on one queue.

::

    python -m benchmarks.soak --calls 50000 --clients 4 --servers 2
    python -m benchmarks.soak --calls 50000 --clients 4 --servers 2 --faults 20

Every server process records each key it executes; every client process
checks each answer. The run verifies that every answered call ran exactly
once with the right result, that no call ran twice (also under ``--faults``:
Redis connections of clients and servers killed at random during the run,
after which a failed call may have run at most once), counts the keys left
in Redis once replies had time to expire, and reports the servers' resident
memory before and after. It starts its own redis-server unless ``--url`` is
given, and prints a JSON report (``--json``) or a short summary; the exit
status is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

import redisrpc

from .run import ROOT, redis_server

__all__ = ["Soak", "main"]


class Soak:
    """The served object: records every key it executes."""

    def __init__(self) -> None:
        self.executed: list[str] = []

    def work(self, key: str) -> str:
        """Record ``key`` and answer it reversed (so answers are checkable)."""
        self.executed.append(key)
        return key[::-1]


def rss_kib(pid: int) -> int | None:
    """Resident memory of a process in KiB (Linux), or None where /proc is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# -- the child processes ------------------------------------------------------------


def serve(url: str, service: str, reply_ttl: float) -> None:
    """A server process: serve until stdin closes, then print the executed keys as JSON."""
    obj = Soak()
    server = redisrpc.Server(url, service, obj, reply_ttl=reply_ttl, poll_interval=0.2)
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop(30)
    print(json.dumps({"pid": os.getpid(), "executed": obj.executed}), flush=True)


def _connect(url: str, service: str, timeout: float) -> tuple[Any, str | None]:
    """The client proxy, retried while faults hit its start-up describe; (None, why) if never."""
    give_up = time.monotonic() + timeout
    while True:
        try:
            return redisrpc.Client(url, service, timeout=timeout), None
        except redisrpc.RedisRPCError as exc:
            if time.monotonic() > give_up:
                return None, f"{type(exc).__name__}(started=False)"
            time.sleep(0.1)


def call(url: str, service: str, ident: str, calls: int, timeout: float) -> None:
    """A client process: make ``calls`` calls, then print what happened as JSON.

    It always prints its report: a fault during start-up (the describe) is
    retried, and if the client never gets going every call counts as failed.
    """
    wrong = 0
    failed: dict[str, str] = {}
    began = time.perf_counter()
    proxy, why = _connect(url, service, timeout)
    for i in range(calls):
        key = f"{ident}-{i}"
        if proxy is None:
            failed[key] = why or "not connected"
            continue
        try:
            if proxy.work(key) != key[::-1]:
                wrong += 1
        except redisrpc.RedisRPCError as exc:
            started = getattr(exc, "started", None)
            failed[key] = f"{type(exc).__name__}(started={started})"
    seconds = time.perf_counter() - began
    report = {"calls": calls, "wrong": wrong, "failed": failed, "seconds": seconds}
    print(json.dumps(report), flush=True)


# -- the conductor ------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.soak", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=_env(),
        text=True,
    )


@contextlib.contextmanager
def _servers(
    url: str, service: str, count: int, reply_ttl: float
) -> Iterator[list[subprocess.Popen[str]]]:
    options = ["--url", url, "--name", service, "--reply-ttl", str(reply_ttl)]
    procs: list[subprocess.Popen[str]] = []
    with _reaped(procs):
        for _ in range(count):
            procs.append(_spawn("serve", *options))
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a soak server did not start")
        yield procs


def _last_json(out: str | None, what: str) -> dict[str, Any]:
    """The JSON report a child printed last; RuntimeError (not IndexError) when it printed none."""
    lines = (out or "").strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        raise RuntimeError(f"{what} printed no report (it crashed?): {(out or '')[-500:]!r}")
    return report


@contextlib.contextmanager
def _reaped(procs: list[subprocess.Popen[str]]) -> Iterator[list[subprocess.Popen[str]]]:
    """Kill whichever of ``procs`` still runs when the block ends, however it ends (Ctrl-C too)."""
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


def _inject_faults(url: str, count: int, spread: float, stop: threading.Event) -> list[str]:
    """Kill ``count`` random client or server connections, spread over ``spread`` seconds."""
    done: list[str] = []
    admin = redis.Redis.from_url(url)
    try:
        own = admin.client_id()
        for _ in range(count):
            if stop.wait(spread / max(1, count)):
                break
            victims = [c for c in admin.client_list() if int(c["id"]) != own]
            if victims:
                victim = random.choice(victims)
                with contextlib.suppress(redis.ResponseError):  # it may have closed meanwhile
                    admin.client_kill_filter(_id=victim["id"])
                done.append(f"killed connection {victim['id']} (last command {victim['cmd']})")
    finally:
        admin.close()
    return done


def soak(
    url: str, *, calls: int, clients: int, servers: int, faults: int, timeout: float, ttl: float
) -> dict[str, Any]:
    """Run one soak against the Redis at ``url`` and return its report."""
    r = redis.Redis.from_url(url)
    service = f"soak-{secrets.token_hex(4)}"  # a fresh name: nothing else in Redis is touched
    per_client = [calls // clients + (1 if i < calls % clients else 0) for i in range(clients)]
    with _servers(url, service, servers, ttl) as procs:
        warm = redisrpc.Client(url, service, timeout=timeout)
        for i in range(200):
            warm.work(f"warm-{i}")
        rss_before = [rss_kib(p.pid) for p in procs]
        began = time.perf_counter()
        options = ["--url", url, "--name", service, "--timeout", str(timeout)]
        stop = threading.Event()
        injected: list[str] = []
        reports = []
        callers: list[subprocess.Popen[str]] = []
        with _reaped(callers):
            for i, n in enumerate(per_client):
                callers.append(_spawn("client", *options, "--id", f"c{i}", "--calls", str(n)))
            try:
                if faults:
                    # Seconds: spread the faults over the first part of the run (calls run
                    # at several thousand per second; a run that ends early skips the rest).
                    estimate = calls / 20000
                    injector = threading.Thread(
                        target=lambda: injected.extend(_inject_faults(url, faults, estimate, stop)),
                        daemon=True,  # never keeps an interrupted soak alive
                    )
                    injector.start()
                for i, proc in enumerate(callers):
                    out, _ = proc.communicate(timeout=max(600.0, calls / 50))
                    reports.append(_last_json(out, f"client c{i}"))
            finally:
                stop.set()
            elapsed = time.perf_counter() - began
            if faults:
                injector.join()
        rss_after = [rss_kib(p.pid) for p in procs]
        executed: Counter[str] = Counter()
        per_server = []
        for proc in procs:
            out, _ = proc.communicate("", timeout=60)
            keys = _last_json(out, f"server {proc.pid}")["executed"]
            executed.update(keys)
            per_server.append(sum(1 for k in keys if not k.startswith("warm-")))
    time.sleep(ttl + 0.5)  # unread replies of failed calls expire meanwhile
    # The queue, reply lists, lock and registry entry of the service: all gone by now.
    keys_left = [k.decode("utf-8", "replace") for k in r.keys(f"*{service}*")]
    r.close()

    failed: dict[str, str] = {}
    for report in reports:
        failed.update(report["failed"])
    answered = [f"c{i}-{j}" for i, n in enumerate(per_client) for j in range(n)]
    answered = [k for k in answered if k not in failed]
    duplicates = sorted(k for k, n in executed.items() if n > 1)
    report = {
        "calls": calls,
        "service": service,
        "client_processes": clients,
        "server_processes": servers,
        "seconds": round(elapsed, 2),
        # While the clients were calling (their start-up excluded); for information only.
        "calls_per_second": round(calls / max(rep["seconds"] for rep in reports)),
        "faults_injected": len(injected),
        "answered": len(answered),
        "wrong_answers": sum(rep["wrong"] for rep in reports),
        "failed": len(failed),
        "failures": dict(Counter(failed.values())),
        "executions": sum(n for k, n in executed.items() if not k.startswith("warm-")),
        "executions_per_server": per_server,
        "answered_not_executed_once": sum(1 for k in answered if executed[k] != 1),
        "failed_and_executed": sum(1 for k in failed if executed[k] == 1),
        "duplicates": len(duplicates),
        "keys_left": keys_left,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_after": rss_after,
    }
    report["ok"] = (
        report["wrong_answers"] == 0
        and report["duplicates"] == 0
        and report["answered_not_executed_once"] == 0
        and not keys_left
        and (faults > 0 or report["failed"] == 0)
    )
    return report


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run a soak, a server or a client."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--url", help="Redis URL (default: start a private redis-server)")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--servers", type=int, default=2, help="server processes")
    parser.add_argument("--faults", type=int, default=0, help="connections to kill during the run")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-call timeout, seconds")
    parser.add_argument("--reply-ttl", type=float, default=2.0, help="servers' reply_ttl")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--id", default="c0", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="soak", help=argparse.SUPPRESS)
    role = args.pop(0) if args and args[0] in ("serve", "client") else "run"
    opts = parser.parse_args(args)
    if role == "serve":
        serve(opts.url, opts.name, opts.reply_ttl)
        return
    if role == "client":
        call(opts.url, opts.name, opts.id, opts.calls, opts.timeout)
        return
    with contextlib.ExitStack() as stack:
        url = opts.url or stack.enter_context(redis_server())
        report = soak(
            url,
            calls=opts.calls,
            clients=opts.clients,
            servers=opts.servers,
            faults=opts.faults,
            timeout=opts.timeout,
            ttl=opts.reply_ttl,
        )
    if opts.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>28}: {value}")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
