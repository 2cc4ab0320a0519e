"""The Redis clock estimate (core.clock), stepped by hand: no Redis."""

from __future__ import annotations

import time

from redisrpc.core.clock import RedisClock
from redisrpc.testing import wait_for


def _measured(clock: RedisClock, redis_ms: float) -> None:
    """Run the measuring plan, Redis answering TIME with ``redis_ms`` each time."""
    plan = clock.measuring()
    step = next(plan)
    try:
        while True:
            assert step == (("TIME",),)
            seconds, ms = divmod(redis_ms, 1000)
            step = plan.send([(str(int(seconds)).encode(), str(int(ms * 1000)).encode())])
    except StopIteration:
        pass


def test_current_ms_is_none_until_measured_and_then_agrees_with_now_ms():
    clock = RedisClock()
    assert clock.due
    assert clock.current_ms() is None
    redis_ms = time.time() * 1000 + 123_456.0  # a Redis host whose clock is 2 minutes ahead
    _measured(clock, redis_ms)
    assert not clock.due
    current = clock.current_ms()
    assert current is not None
    assert abs(current - redis_ms) < 1000
    assert 0 <= clock.now_ms() - current < 1000


def test_current_ms_is_none_once_a_measurement_is_due_again():
    clock = RedisClock(refresh=0.0)
    _measured(clock, time.time() * 1000)
    wait_for(lambda: clock.due, timeout=1.0)  # the refresh period (none) is over
    assert clock.current_ms() is None
