"""Call the calculator served by server.py with the classic RedisRPC sequence.

Run ``python examples/calculator/client.py [--url redis://host:6379/0] [--name calc]``
while ``server.py`` is running.
"""

from __future__ import annotations

import argparse

import redisrpc

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run clr, add, sub, mul, div and val remotely, printing each result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--name", default="calc", help="service name (default: calc)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    options = parser.parse_args(argv)

    calculator = redisrpc.Client(options.url, options.name, timeout=options.timeout)
    print(repr(calculator))
    print("clr() ->", calculator.clr())
    print("add(5) ->", calculator.add(5))
    print("sub(3) ->", calculator.sub(3))
    print("mul(4) ->", calculator.mul(4))
    print("div(2) ->", calculator.div(2))
    result = calculator.val()
    print("val() ->", result)
    assert result == 4
    try:
        calculator.div(0)
    except ZeroDivisionError as exc:  # a remote error, raised as the builtin type
        print(f"div(0) raised {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
