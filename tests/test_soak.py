"""A short soak: client processes call server processes on one queue; every call runs once."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import PYTHON, ROOT, python_env


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
