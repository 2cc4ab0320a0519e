"""A short soak: client processes call server processes on one queue; every call runs once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, free_port, python_env, wait_for


def soak(url: str, *options: str) -> dict:
    """Run benchmarks.soak against ``url`` and return its JSON report."""
    done = subprocess.run(
        [PYTHON, "-m", "benchmarks.soak", "--url", url, "--json", *options],
        cwd=ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def test_every_call_answered_and_run_exactly_once(redis_url):
    """2,000 calls from 2 client processes to 2 server processes: all answered, each run once."""
    report = soak(redis_url, "--calls", "2000", "--clients", "2", "--servers", "2")
    assert report["answered"] == 2000
    assert report["failed"] == 0
    assert report["wrong_answers"] == 0
    assert report["executions"] == 2000
    assert report["duplicates"] == 0
    assert all(n > 0 for n in report["executions_per_server"])  # both servers took calls
    assert report["keys_left"] == []
    assert report["ok"]


@pytest.mark.slow
def test_killed_connections_never_duplicate(redis_url):
    """With connections killed mid-run, no call runs twice and every answered call ran once."""
    report = soak(
        redis_url, "--calls", "2000", "--clients", "2", "--servers", "2", "--faults", "6",
        "--timeout", "5",
    )  # fmt: skip
    assert report["faults_injected"] == 6
    assert report["duplicates"] == 0
    assert report["answered_not_executed_once"] == 0
    assert report["answered"] + report["failed"] == 2000
    assert report["keys_left"] == []
    assert report["ok"]


def test_a_client_whose_start_up_fails_still_reports(redis_url):
    """A soak client that never reaches Redis prints a report of failed calls, not a traceback."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    options = ["--url", dead, "--calls", "3", "--timeout", "1"]
    done = subprocess.run(
        [PYTHON, "-m", "benchmarks.soak", "client", *options],
        cwd=ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["calls"] == 3 and len(report["failed"]) == 3


def _soak_children(url: str) -> list[int]:
    """Pids of live soak child processes (clients and servers) talking to ``url``."""
    found = []
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = status.read_bytes().split(b"\0")
        except OSError:
            continue
        role = b"client" in argv or b"serve" in argv
        if b"benchmarks.soak" in argv and url.encode() in argv and role:
            found.append(int(status.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc to find the children")
def test_an_interrupted_soak_leaves_no_child_processes(redis_url):
    """Ctrl-C during a run: the conductor kills its client and server processes on the way out."""
    options = ["--url", redis_url, "--calls", "500000", "--clients", "2", "--servers", "1"]
    conductor = subprocess.Popen(
        [PYTHON, "-m", "benchmarks.soak", *options],
        cwd=ROOT,
        env=python_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Two clients and one server running, calls flowing.
        wait_for(lambda: len(_soak_children(redis_url)) >= 3, timeout=60, interval=0.1)
        conductor.send_signal(signal.SIGINT)
        conductor.wait(60)
        wait_for(lambda: not _soak_children(redis_url), timeout=15, message="children left")
    finally:
        if conductor.poll() is None:
            conductor.kill()
        for pid in _soak_children(redis_url):
            os.kill(pid, signal.SIGKILL)
