"""The calculator example, run as scripts against the private redis-server."""

from __future__ import annotations

import signal
import subprocess
import sys

from conftest import PYTHON, ROOT, python_env

EXAMPLE = ROOT / "examples" / "calculator"


def test_calculator_server_and_client_scripts(redis_url, r):
    """server.py serves, client.py runs the classic sequence (val() == 4), SIGTERM stops it."""
    server = subprocess.Popen(
        [PYTHON, str(EXAMPLE / "server.py"), "--url", redis_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("serving Calculator as 'calc'")
        client = subprocess.run(
            [PYTHON, str(EXAMPLE / "client.py")],  # REDIS_URL from the fixture
            capture_output=True,
            text=True,
            env=python_env(),
            timeout=60,
            check=False,
        )
        assert client.returncode == 0, client.stderr
        lines = client.stdout.splitlines()
        assert lines[0].startswith("<redisrpc proxy 'calc': Calculator with 6 methods")
        assert lines[1:] == [
            "clr() -> 0.0",
            "add(5) -> 5.0",
            "sub(3) -> 2.0",
            "mul(4) -> 8.0",
            "div(2) -> 4.0",
            "val() -> 4.0",
            "div(0) raised RemoteZeroDivisionError: float division by zero",
        ]
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    assert "stopped after 8 calls" in out  # __describe__ + 6 calls + div(0)
    assert "Traceback" not in err.replace("remote traceback", "")
    assert r.llen("calc") == 0


def test_calculator_object_runs_locally():
    """The example's Calculator is a plain class: the same sequence works without Redis."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        calculator_module = __import__("calc")
    finally:
        sys.path.remove(str(EXAMPLE))
    Calculator = calculator_module.Calculator
    calc = Calculator()
    calc.clr()
    calc.add(5)
    calc.sub(3)
    calc.mul(4)
    calc.div(2)
    assert calc.val() == 4
    assert all(getattr(Calculator, m).__doc__ for m in ["clr", "add", "sub", "mul", "div", "val"])
