"""Run the calculator example end to end: a Redis, the server in its own process, the client.

    python examples/calculator/run.py

Uses ``REDIS_URL`` or a Redis on localhost when one answers; otherwise it
starts an embedded Redis (fakeredis) in this process and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redisrpc
from redisrpc.embedded import ensure_redis

HERE = Path(__file__).resolve().parent


def wait_for_service(url: str, name: str, timeout: float = 20.0) -> None:
    """Wait until the service is registered as live."""
    deadline = time.monotonic() + timeout
    while not any(s.name == name for s in redisrpc.discover(url)):
        if time.monotonic() > deadline:
            raise SystemExit(f"the {name!r} server did not come up within {timeout:g} s")
        time.sleep(0.1)


def main() -> int:
    url = ensure_redis()
    env = {**os.environ, "REDIS_URL": url}
    print(f"run: Redis at {url}")
    server = subprocess.Popen([sys.executable, str(HERE / "server.py")], env=env)
    try:
        wait_for_service(url, "calc")
        print("run: server is up; running the client")
        return subprocess.call([sys.executable, str(HERE / "client.py")], env=env)
    finally:
        server.terminate()
        code = server.wait(15)
        print(f"run: server stopped (exit code {code})")


if __name__ == "__main__":
    sys.exit(main())
