"""Fail-fast liveness: a client stops waiting on a service whose instances are all gone."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import wait_for, watch_pushes, when_taken
from servable import Thing

import redisrpc
from redisrpc.core import wire
from redisrpc.core.call import checking_gone
from redisrpc.core.registry import live_instances

TIMEOUT = 60.0  # long call timeouts, so that failing fast is clearly not the timeout


def test_call_fails_fast_when_the_server_is_killed_mid_call(spawn_server, redis_url, r):
    """SIGKILL during a call: ServerGoneError(started=True) within the stale window, not 60 s."""
    child = spawn_server("servable:Thing", "victim")
    client = redisrpc.Client(redis_url, "victim", timeout=TIMEOUT)
    killer = when_taken(r, "victim", child.kill)
    started = time.monotonic()
    try:
        with pytest.raises(redisrpc.ServerGoneError, match="gone") as info:
            client.sleep(TIMEOUT / 2)
    finally:
        killer.join()
    elapsed = time.monotonic() - started
    assert info.value.started is True
    assert "may have partly run" in str(info.value)
    assert elapsed < 20  # 5 missed heartbeats + one 1 s wait slice, far below 60 s


def test_queued_request_is_withdrawn_when_the_last_instance_stops(r, serve):
    """A request nobody took is removed from the queue and never runs on a later server."""
    thing = Thing()
    server = serve(thing, "svc")
    client = redisrpc.Client(r, "svc", timeout=TIMEOUT)
    assert client.incr() == 1
    server.stop(10)
    started = time.monotonic()
    with pytest.raises(redisrpc.ServerGoneError, match="withdrawn") as info:
        client.incr(100)
    assert info.value.started is False
    assert time.monotonic() - started < 10
    assert r.llen("svc") == 0
    assert r.keys("svc:rpc:*") == []
    serve(thing, "svc")
    assert redisrpc.Client(r, "svc", timeout=5).incr(0) == 1  # incr(100) never ran


def test_sigterm_while_a_request_is_queued(spawn_server, redis_url, r):
    """SIGTERM during a long call: that call gets its reply, the queued one fails fast."""
    child = spawn_server("servable:Thing", "svc")
    first = redisrpc.Client(redis_url, "svc", timeout=TIMEOUT)
    second = redisrpc.Client(redis_url, "svc", timeout=TIMEOUT)
    outcome: dict[str, Any] = {}

    def long_call() -> None:
        outcome["first"] = first.sleep(1.5)

    caller = threading.Thread(target=long_call)
    with watch_pushes(r, "svc") as pushed:
        caller.start()
        wait_for(lambda: pushed() >= 1 and r.llen("svc") == 0, message="the call was not taken")
    child.proc.terminate()
    started = time.monotonic()
    with pytest.raises(redisrpc.ServerGoneError) as info:
        second.incr()
    caller.join(30)
    assert outcome["first"] == 1.5
    assert info.value.started is False
    assert time.monotonic() - started < 10
    assert child.proc.wait(10) == 0
    assert r.llen("svc") == 0


def test_reply_sent_before_deregistering_is_delivered(r, serve):
    """A server stopped during a call finishes it; the caller gets the value, not an error."""
    server = serve(Thing(), "svc")
    client = redisrpc.Client(r, "svc", timeout=TIMEOUT)
    stopper = when_taken(r, "svc", lambda: server.stop(10))
    try:
        assert client.sleep(1.5) == 1.5
    finally:
        stopper.join()


def test_unregistered_service_is_waited_for_as_before(r, serve):
    """A service that does not register is never declared gone: a late server still answers."""
    server = serve(Thing(), "svc", register=False)
    client = redisrpc.Client(r, "svc", timeout=20)
    server.stop(10)
    late = threading.Timer(2.5, serve, args=(Thing(), "svc"), kwargs={"register": False})
    late.start()
    try:
        assert client.incr(7) == 7
    finally:
        late.join()


def test_undescribed_client_keeps_plain_timeouts(r, serve):
    """Without a description (describe=False, original RedisRPC) calls time out as before."""
    server = serve(Thing(), "svc")
    client = redisrpc.Client(r, "svc", timeout=1.5, describe=False)
    assert client.incr() == 1
    server.stop(10)
    with pytest.raises(redisrpc.TimeoutException) as info:
        client.incr()
    assert info.value.started is False


def test_liveness_check_costs_one_round_trip(r, serve, monkeypatch):
    """While the service is alive, the check between waits is a single command."""
    serve(Thing(), "svc")
    client = redisrpc.Client(r, "svc", timeout=5)
    transport = client._rpc_state.transport
    assert live_instances(transport, "svc") == 1  # also measures the clock offset
    sends = []
    original = wire._send  # every write of an exchange (looked up in wire)

    def counting(*args: Any, **kwargs: Any) -> Any:
        sends.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(wire, "_send", counting)
    call = client._rpc_state.call("incr", (), {})
    assert call.registry_prefix is not None
    transport.run(checking_gone(call, b"{}", call.registry_prefix))
    monkeypatch.undo()
    assert len(sends) == 1


def test_redis_restart_is_not_mistaken_for_a_gone_service(own_redis):
    """A Redis restart empties the registry; the next heartbeat refills it and the call succeeds."""
    server = redisrpc.Server(own_redis.client(), "svc", Thing(), poll_interval=0.2)
    server.start()
    try:
        client = redisrpc.Client(own_redis.client(), "svc", timeout=TIMEOUT)
        assert client.incr() == 1
        own_redis.client().set("marker", 1)
        own_redis.restart()
        # Emptied (the server may already be back: only the test's own key tells).
        assert own_redis.client().exists("marker") == 0
        assert client.incr() == 2
    finally:
        server.stop(10)


def test_a_server_whose_clock_steps_back_does_not_look_gone(r, serve, monkeypatch):
    """The server's wall clock steps back 20 s mid-call: its heartbeats keep it live.

    The step hits only the server's threads (the client's clock is right), as
    when the server runs on another host. The heartbeat scores are in the
    Redis clock, so no false ServerGoneError.
    """
    server = serve(Thing(), "svc", heartbeat=0.2)  # stale after 1 s of missed heartbeats
    client = redisrpc.Client(r, "svc", timeout=TIMEOUT)
    assert client.echo(1) == 1
    wall = time.time

    def stepped() -> float:
        name = threading.current_thread().name
        server_side = name.startswith(("redisrpc-heartbeat-svc", "redisrpc-svc"))
        return wall() - 20.0 if server_side else wall()

    monkeypatch.setattr(time, "time", stepped)
    assert client.sleep(3.0) == 3.0  # several stale windows long
    assert live_instances(server.transport, "svc") == 1
