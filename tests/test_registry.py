"""The live-server registry: registration, heartbeats, clean and unclean exits, discovery."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import pytest
import redis
import redis.connection
from conftest import wait_for

import redisrpc
from redisrpc.client.discovery import discover
from redisrpc.core import wire
from redisrpc.core.registry import STALE_BEATS, live_instances
from redisrpc.core.transport import Transport
from redisrpc.server.registration import Registration


class Probe:
    """A probe for registry tests.

    Second line of the docstring.
    """

    def ping(self) -> str:
        """Answer pong."""
        return "pong"


def services(r: redis.Redis, prefix: str = "redisrpc") -> dict[str, redisrpc.ServiceInfo]:
    return {s.name: s for s in redisrpc.discover(r, prefix=prefix)}


def test_server_registers_with_its_metadata(r, serve):
    """A running server is listed with name, host, pid, class, summary, times and versions."""
    (seconds, _) = r.time()
    server = serve(Probe(), "probe")
    service = wait_for(lambda: services(r).get("probe"))
    assert service.class_name == "Probe"
    assert service.summary == "A probe for registry tests."
    assert service.queue_depth == 0
    (instance,) = service.instances
    assert instance.id == server.registration.id
    assert instance.name == "probe"
    assert (instance.host, instance.pid) == (socket.gethostname(), os.getpid())
    assert instance.library == f"redisrpc {redisrpc.__version__}"
    assert instance.protocol == redisrpc.PROTOCOL_VERSION
    assert seconds - 2 <= instance.started_at <= instance.last_seen <= seconds + 5
    assert service.last_seen == instance.last_seen


def test_description_tells_clients_the_service_registers(r, serve):
    """The server's __describe__ payload names its instance and registry prefix."""
    server = serve(Probe(), "probe", registry_prefix="lab")
    found = redisrpc.description(redisrpc.Client(r, "probe", timeout=5))
    assert found is not None
    assert found["registered"] is True
    assert found["instance"] == server.registration.id
    assert found["registry_prefix"] == "lab"


def test_unregistered_server_stays_out(r, serve):
    """register=False keeps a server out of the registry and out of its description."""
    serve(Probe(), "quiet", register=False)
    client = redisrpc.Client(r, "quiet", timeout=5)
    assert client.ping() == "pong"
    assert services(r) == {}
    assert "registered" not in (redisrpc.description(client) or {})
    assert r.keys("redisrpc:*") == []


def test_clean_stop_removes_the_instance_at_once(r, serve):
    """stop() deregisters before it returns: no waiting for the entry to go stale."""
    server = serve(Probe(), "probe")
    wait_for(lambda: services(r).get("probe"))
    server.stop(10)
    assert services(r) == {}
    assert not r.exists(f"redisrpc:instance:{server.registration.id}")


def test_instances_are_grouped_per_service_with_queue_depth(r, serve):
    """Two instances of one service form one entry; waiting requests show as queue depth."""
    serve(Probe(), "probe")
    serve(Probe(), "probe")
    idle = Registration(Transport.of(r), "idle", Probe()).start()  # registered, never consumes
    try:
        r.rpush("idle", b"a", b"b", b"c")

        def both_listed() -> dict[str, redisrpc.ServiceInfo] | None:
            found = services(r)
            probe = found.get("probe")
            # The idle entry is written by its own heartbeat thread: wait for it too.
            listed = probe is not None and len(probe.instances) == 2 and "idle" in found
            return found if listed else None

        found = wait_for(both_listed)
        assert sorted(found) == ["idle", "probe"]
        assert found["idle"].queue_depth == 3
        assert found["probe"].queue_depth == 0
        assert len({i.id for i in found["probe"].instances}) == 2
        assert [s.name for s in redisrpc.discover(r)] == ["idle", "probe"]
    finally:
        idle.stop()


def test_prefix_keeps_registries_apart(r, serve):
    """Servers under another prefix are invisible under the default one, and all keys use it."""
    serve(Probe(), "probe", registry_prefix="lab1")
    wait_for(lambda: services(r, "lab1").get("probe"))
    assert services(r) == {}
    assert all(key.startswith(b"lab1:") for key in r.keys("*") if key != b"probe")


def test_heartbeat_refreshes_last_seen(r, serve):
    """The heartbeat thread keeps moving last_seen forward while started_at stays."""
    serve(Probe(), "probe", heartbeat=0.1)
    first = wait_for(lambda: services(r).get("probe")).instances[0]
    later = wait_for(lambda: services(r)["probe"].instances[0].last_seen > first.last_seen + 0.2)
    assert later
    assert services(r)["probe"].instances[0].started_at == first.started_at


def test_stale_entry_lapses_with_nobody_cleaning_up(r):
    """An instance that stops beating without deregistering is dropped after its stale window."""
    registration = Registration(Transport.of(r), "ghost", Probe(), heartbeat=0.1)
    registration.beat()  # registered once, then silent: a crash
    assert [s.name for s in discover(r)] == ["ghost"]
    window = STALE_BEATS * 0.1
    began = time.monotonic()
    wait_for(lambda: discover(r) == [], message="the stale entry was still listed")
    assert time.monotonic() - began >= window - 0.1  # not dropped before its window
    assert live_instances(Transport.of(r), "ghost") == 0
    wait_for(  # its metadata expires too
        lambda: not r.exists(f"redisrpc:instance:{registration.id}"),
        message="the instance metadata did not expire",
    )


def test_invalid_options_are_refused(r):
    """Heartbeats outside (0, 60] s and an empty prefix are errors at construction."""
    for heartbeat in (0, -1, 61):
        with pytest.raises(ValueError, match="heartbeat"):
            redisrpc.Server(r, "x", Probe(), heartbeat=heartbeat)
    with pytest.raises(ValueError, match="prefix"):
        redisrpc.Server(r, "x", Probe(), registry_prefix="")


def test_discover_on_unreachable_redis_raises_our_error():
    """discover() on a Redis that does not answer raises RedisConnectionError."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(redisrpc.RedisConnectionError):
        redisrpc.discover(f"redis://127.0.0.1:{port}/0")


def test_discover_costs_constant_round_trips(r, monkeypatch):
    """Listing a thousand instances takes as many round trips as listing one."""
    transport = Transport.of(r)
    sends = []
    original = wire._send  # every write of an exchange (looked up in wire)

    def counting(*args: Any, **kwargs: Any) -> Any:
        sends.append(1)
        return original(*args, **kwargs)

    def round_trips() -> tuple[int, list[redisrpc.ServiceInfo]]:
        sends.clear()
        monkeypatch.setattr(wire, "_send", counting)
        try:
            found = discover(transport)
        finally:
            monkeypatch.undo()
        return len(sends), found

    Registration(transport, "svc0", Probe(), heartbeat=10).beat()
    one, found = round_trips()
    assert len(found) == 1
    for i in range(1000):
        Registration(transport, f"svc{i % 100}", Probe(), heartbeat=10).beat()
    many, found = round_trips()
    assert len(found) == 100
    assert sum(len(s.instances) for s in found) == 1001
    assert many == one
    assert 1 <= one <= 4


def test_discover_works_on_fakeredis(fake):
    """The registry needs only plain commands: fakeredis serves it for unit tests."""
    transport = Transport.of(fake)
    registration = Registration(transport, "fake", Probe())
    registration.beat()
    (service,) = discover(transport)
    assert (service.name, service.class_name) == ("fake", "Probe")
    registration.deregister()
    assert discover(transport) == []


def test_sigkill_instance_vanishes_by_itself(spawn_server, r):
    """A server killed with SIGKILL stays listed briefly, then drops out within the stale window."""
    child = spawn_server("servable:Thing", "victim")
    child.kill()
    killed = time.monotonic()
    assert "victim" in services(r)  # nobody deregistered it: only time removes it
    wait_for(lambda: "victim" not in services(r), timeout=20)
    assert time.monotonic() - killed < 12  # default stale window: 5 missed 1 s heartbeats


def test_sigterm_instance_deregisters_at_once(spawn_server, r):
    """SIGTERM stops a served process cleanly: it exits 0 and leaves the registry at once."""
    keep = spawn_server("servable:Thing", "svc")
    child = spawn_server("servable:Thing", "svc")
    assert len(services(r)["svc"].instances) == 2
    assert child.terminate() == 0
    # The stale window is 5 s; a clean stop is gone when the process has exited.
    (remaining,) = services(r)["svc"].instances
    assert remaining.pid == keep.pid


def test_server_reregisters_after_redis_restart(own_redis):
    """A Redis restart loses the registry; the next heartbeats put the instance back."""
    client = own_redis.client()
    server = redisrpc.Server(client, "phoenix", Probe(), heartbeat=0.2, poll_interval=0.1)
    server.start()
    try:
        wait_for(lambda: redisrpc.discover(client))
        client.set("marker", 1)
        own_redis.restart()
        # Emptied (the server may already be back: only the test's own key tells).
        assert own_redis.client().exists("marker") == 0
        wait_for(lambda: redisrpc.discover(own_redis.client()), timeout=15)
    finally:
        server.stop(10)
