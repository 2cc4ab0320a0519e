"""Serve the classic Calculator on the Redis list ``calc`` until Ctrl-C or SIGTERM.

Run ``python examples/calculator/server.py [--url redis://host:6379/0] [--name calc]``;
without ``--url`` it uses the ``REDIS_URL`` environment variable, else the local Redis.
"""

from __future__ import annotations

import argparse
import logging

from calc import Calculator

import redisrpc

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--name", default="calc", help="service name (default: calc)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    server = redisrpc.Server(options.url, options.name, Calculator())
    print(f"serving Calculator as {options.name!r} on {server.transport.location}", flush=True)
    server.run()
    print(f"stopped after {server.calls} calls", flush=True)


if __name__ == "__main__":
    main()
