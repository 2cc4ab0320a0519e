"""Faults: Redis restarts, dropped connections, timed-out callers, and long runs.

Every test counts executions on the server side: a fault may fail a call, but
it must never run a call twice, run one its caller gave up on, or leave keys.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_for

import redisrpc
from redisrpc.core.protocol import Request, decode_reply, encode_request

REPLY_TTL = 1.0  # seconds; short, so that expiry is observable in a test


class Recorder:
    """Counts every execution by key."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.guard = threading.Lock()
        self.started = threading.Event()

    def work(self, key: str, seconds: float = 0.0) -> str:
        with self.guard:
            self.runs[key] += 1
        self.started.set()
        time.sleep(seconds)  # the call's own duration: the behaviour under test
        with self.guard:
            self.done[key] += 1
        return key


def named(url: str, name: str) -> str:
    """The URL with a client name, so a test can find (and kill) those connections."""
    return f"{url}?client_name={name}"


def kill_connections(proc: Any, name: str) -> int:
    """CLIENT KILL every connection called ``name``; return how many."""
    killed = 0
    with proc.client() as admin:
        for entry in admin.client_list():
            if entry.get("name") == name:
                killed += admin.client_kill_filter(_id=entry["id"])
    return killed


def blocked(r: Any, name: str) -> bool:
    """Whether a connection called ``name`` is blocked in a command (waiting for a reply)."""
    return any(e.get("name") == name and "b" in e.get("flags", "") for e in r.client_list())


def drained(r: Any, service: str) -> bool:
    """No request left in the service's queue and no reply list left (all taken or expired)."""
    return r.llen(service) == 0 and r.keys(f"{service}:rpc:*") == []


def call_until_it_works(proxy: Any, key: str, within: float) -> float:
    """Retry a call while Redis or the server comes back; return the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            assert proxy.work(key) == key
            return time.monotonic() - started
        except (redisrpc.RedisConnectionError, redisrpc.ServerGoneError):
            assert time.monotonic() - started < within, "the service never came back"
            time.sleep(0.1)


def test_redis_restart_server_reconnects_with_backoff(own_redis, caplog):
    """Redis down: calls fail fast and clearly; back up: the same server and client work again."""
    recorder = Recorder()
    with (
        caplog.at_level(logging.WARNING, logger="redisrpc.server"),
        redisrpc.Server(own_redis.url, "svc", recorder, poll_interval=0.1) as server,
    ):
        proxy = redisrpc.Client(own_redis.url, "svc", timeout=10)
        assert proxy.work("before") == "before"
        own_redis.kill()
        started = time.monotonic()
        with pytest.raises(redisrpc.RedisConnectionError):
            proxy.work("while-down")
        assert time.monotonic() - started < 5  # refused at once, not after the 10 s timeout
        wait_for(  # the server fails a few times, backing off
            lambda: sum("retrying in" in rec.getMessage() for rec in caplog.records) >= 3,
            message="the server did not retry three times",
        )
        assert server.running
        own_redis.start()
        call_until_it_works(proxy, "after", within=20)
        assert server.running
        wait_for(  # the next heartbeats re-register the server
            lambda: [s.name for s in redisrpc.discover(own_redis.url)] == ["svc"],
            interval=0.1,
            message="the server did not re-register",
        )
    assert recorder.runs == Counter({"before": 1, "after": 1})
    delays = [
        float(m.group(1))
        for rec in caplog.records
        if (m := re.search(r"retrying in ([0-9.]+) s", rec.getMessage()))
    ]
    assert len(delays) >= 3 and delays[:3] == sorted(delays[:3]) and delays[0] < delays[2]


def test_in_flight_call_fails_clearly_when_redis_dies(own_redis):
    """Redis dies during a call: the caller gets RedisConnectionError at once; no re-run later."""
    recorder = Recorder()
    with redisrpc.Server(own_redis.url, "svc", recorder, poll_interval=0.1, reply_ttl=REPLY_TTL):
        proxy = redisrpc.Client(own_redis.url, "svc", timeout=30)
        outcome: dict[str, Any] = {}

        def call() -> None:
            started = time.monotonic()
            try:
                proxy.work("in-flight", 1.0)
            except BaseException as exc:
                outcome["error"] = exc
            outcome["seconds"] = time.monotonic() - started

        caller = threading.Thread(target=call)
        caller.start()
        assert recorder.started.wait(10)
        own_redis.kill()
        caller.join(15)
        assert not caller.is_alive(), "the call hung after Redis died"
        assert isinstance(outcome.get("error"), redisrpc.RedisConnectionError)
        assert "may or may not" in str(outcome["error"])
        assert outcome["seconds"] < 10
        own_redis.start()
        call_until_it_works(proxy, "after", within=20)
        with own_redis.client() as r:
            wait_for(lambda: drained(r, "svc"), message="requests or replies left in Redis")
    assert recorder.runs == Counter({"in-flight": 1, "after": 1})


def test_connection_dropped_after_push_never_runs_twice(own_redis):
    """CLIENT KILL on a caller waiting for its reply: a clear error, and one execution only.

    redis-py retries a failed command by default; a retried RPUSH would run the
    call twice. redisrpc's connections never retry.
    """
    recorder = Recorder()
    with redisrpc.Server(own_redis.url, "svc", recorder, poll_interval=0.1, reply_ttl=REPLY_TTL):
        proxy = redisrpc.Client(named(own_redis.url, "caller"), "svc", timeout=30)
        assert proxy.work("warm-up") == "warm-up"
        recorder.started.clear()

        def kill_while_running() -> None:  # the kill lands while the caller waits for the reply
            if recorder.started.wait(10):
                kill_connections(own_redis, "caller")

        threading.Thread(target=kill_while_running).start()
        with pytest.raises(redisrpc.RedisConnectionError):
            proxy.work("dropped", 0.8)
        wait_for(lambda: recorder.done["dropped"], message="the call did not finish")
        with own_redis.client() as r:  # a resent request would be queued or running by now
            wait_for(lambda: drained(r, "svc"), message="requests or replies left in Redis")
        assert recorder.runs == Counter({"warm-up": 1, "dropped": 1})
        assert proxy.work("again") == "again"  # the same proxy reconnects
    assert recorder.runs == Counter({"warm-up": 1, "dropped": 1, "again": 1})


def test_connection_dropped_while_queued_withdraws_the_request(own_redis):
    """A caller cut off while its request still waits in the queue withdraws it: it never runs."""
    recorder = Recorder()
    with redisrpc.Server(own_redis.url, "svc", recorder, poll_interval=0.1, reply_ttl=REPLY_TTL):
        proxy = redisrpc.Client(named(own_redis.url, "caller"), "svc", timeout=30)
        busy = threading.Thread(target=redisrpc.Client(own_redis.url, "svc").work, args=("busy", 1))
        busy.start()
        assert recorder.started.wait(10)  # the only server is busy: the next request queues
        admin = own_redis.client()

        def kill_while_queued() -> None:
            wait_for(lambda: admin.llen("svc") == 1, message="the request was not queued")
            kill_connections(own_redis, "caller")

        threading.Thread(target=kill_while_queued).start()
        with pytest.raises(redisrpc.RedisConnectionError, match="withdrawn") as caught:
            proxy.work("queued")
        assert caught.value.started is False
        assert admin.llen("svc") == 0  # withdrawn: no longer queued
        busy.join(10)
        assert drained(admin, "svc")  # and no reply list left behind
        assert proxy.work("again") == "again"
        admin.close()
    assert recorder.runs == Counter({"busy": 1, "again": 1})


def test_a_reply_that_arrived_while_the_connection_was_lost_is_returned(r, serve, monkeypatch):
    """The connection fails after the call was answered: the caller still gets its value."""
    recorder = Recorder()
    serve(recorder, "svc")
    proxy = redisrpc.Client(r, "svc", timeout=10)
    transport = proxy._rpc_state.transport
    real = transport.execute

    def push_then_fail(*commands: Any, **options: Any) -> list[Any]:
        (push, wait) = commands
        real(push)  # the request goes out; then the connection "drops" before the wait
        wait_for(lambda: r.llen(wait[1]), message="no reply")
        raise redisrpc.RedisConnectionError("connection lost")  # as execute() raises it

    monkeypatch.setattr(transport, "execute", push_then_fail)
    assert proxy.work("answered") == "answered"
    assert recorder.runs == Counter({"answered": 1})
    assert r.keys("svc:rpc:*") == []  # the reply was taken, not left to expire


def test_server_connection_dropped_mid_call_still_answers(own_redis):
    """CLIENT KILL on the server's connections during a call: the reply still arrives, once."""
    recorder = Recorder()
    url = named(own_redis.url, "server")
    with redisrpc.Server(url, "svc", recorder, poll_interval=0.1):
        proxy = redisrpc.Client(own_redis.url, "svc", timeout=30)
        result: dict[str, Any] = {}
        caller = threading.Thread(target=lambda: result.update(value=proxy.work("mid", 0.5)))
        caller.start()
        assert recorder.started.wait(10)
        assert kill_connections(own_redis, "server") >= 1
        caller.join(20)
        assert result.get("value") == "mid"
        assert proxy.work("next") == "next"
    assert recorder.runs == Counter({"mid": 1, "next": 1})


def test_a_delivered_reply_is_not_pushed_again_after_the_connection_drops(own_redis):
    """The server's connection drops while it waits after a reply: the reply is not re-sent.

    The reply and the next BLPOP share one round trip; Redis ran the RPUSH, the
    caller took the reply, then the wait failed. Pushing the reply again leaves
    a stray reply list (until reply_ttl) in the caller's namespace.
    """
    recorder = Recorder()
    url = named(own_redis.url, "server")
    with redisrpc.Server(url, "svc", recorder, poll_interval=5), own_redis.client() as r:
        try:
            proxy = redisrpc.Client(own_redis.url, "svc", timeout=10)
            assert proxy.work("once") == "once"
            wait_for(lambda: blocked(r, "server"), message="the server is not waiting")
            assert r.keys("svc:rpc:*") == []  # the caller took its reply
            assert kill_connections(own_redis, "server") >= 1
            wait_for(lambda: blocked(r, "server"), message="the server did not reconnect")
            assert r.keys("svc:rpc:*") == []
        finally:
            own_redis.kill()  # ends the server's long wait, so it stops at once
    assert recorder.runs == Counter({"once": 1})


def test_killed_server_with_a_live_sibling_gives_a_timeout(spawn_server, redis_url):
    """A call whose server dies while another instance lives ends in TimeoutException(started)."""
    children = [spawn_server("servable:Thing", "pair") for _ in range(2)]
    caller = redisrpc.Client(f"{redis_url}?client_name=caller", "pair", timeout=4)
    other = redisrpc.Client(redis_url, "pair", timeout=10)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            caller.sleep(30)
        except BaseException as exc:
            outcome["error"] = exc

    waiting = threading.Thread(target=call)
    waiting.start()
    with redis.Redis.from_url(redis_url) as r:  # pushed, and taken by one instance
        wait_for(lambda: blocked(r, "caller") and r.llen("pair") == 0, message="not taken")
    idle = other.pid()  # answered by the instance that is not sleeping
    busy = next(c for c in children if c.pid != idle)
    busy.kill()
    waiting.join(20)
    error = outcome.get("error")
    assert isinstance(error, redisrpc.TimeoutException) and error.started is True
    assert other.pid() == idle  # the sibling keeps serving


def test_timed_out_calls_never_run_and_leave_no_keys(r, serve):
    """Thousands of calls time out: none withdrawn runs, none runs twice, every key expires."""
    recorder = Recorder()
    serve(recorder, "busy", reply_ttl=REPLY_TTL)
    threads, per_thread = 40, 50
    outcomes: dict[str, str] = {}
    guard = threading.Lock()

    def caller(t: int) -> None:
        proxy = redisrpc.Client(r, "busy", timeout=0.08, describe=False)
        for i in range(per_thread):
            key = f"{t}-{i}"
            try:
                proxy.work(key, 0.01)
                result = "answered"
            except redisrpc.TimeoutException as exc:
                result = "started" if exc.started else "withdrawn"
            with guard:
                outcomes[key] = result

    workers = [threading.Thread(target=caller, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert len(outcomes) == threads * per_thread
    tally = Counter(outcomes.values())
    assert tally["withdrawn"] + tally["started"] >= 1000  # thousands of calls, most timed out
    # The server drains the queue and late replies expire.
    wait_for(lambda: drained(r, "busy"), timeout=30, message="requests or replies left")
    runs = dict(recorder.runs)
    assert max(runs.values()) == 1  # nothing ran twice
    assert all(outcomes[k] != "withdrawn" for k in runs)  # nothing withdrawn ran
    assert all(k in runs for k, v in outcomes.items() if v == "answered")
    assert r.llen("busy") == 0
    # Cancel marks of calls a server had taken expire within seconds of their deadline.
    # (-2: expired meanwhile; never -1, no expiry. A mark lives 3 s past the request's
    # deadline, which each caller reckons from its own estimate of the Redis clock.)
    ttls = {k: r.pttl(k) for k in r.keys("busy:cancel*")}
    odd = {k: t for k, t in ttls.items() if not (t == -2 or 0 <= t <= 5_000)}
    assert not odd, odd
    wait_for(lambda: not [k for k in r.keys("*") if not k.startswith(b"redisrpc:")], timeout=8)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process (VmHWM: its peak so far), from /proc."""
    status = Path(f"/proc/{pid}/status")
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} line")


def flood(r: Any, service: str, count: int) -> None:
    """Send ``count`` echo calls in pipelined batches and check every reply."""
    queue = f"{service}:rpc:flood"
    run = secrets.token_hex(4)  # ids are unique per call: a server refuses an id it already ran
    for start in range(0, count, 500):
        batch = range(start, min(count, start + 500))
        pipe = r.pipeline(transaction=False)
        for i in batch:
            pipe.rpush(service, encode_request(Request("echo", [i], {}, queue, f"{run}-{i}")))
        pipe.execute()
        for i in batch:
            popped = r.blpop([queue], timeout=10)
            assert popped is not None
            assert decode_reply(popped[1]).value == i


def test_requests_from_a_snapshot_are_refused_by_a_new_server_too(own_redis):
    """A server that never saw the requests refuses those sent before Redis (re)started."""
    recorder = Recorder()
    with own_redis.client() as r:
        now = redisrpc.core.transport.Transport.of(r).now_ms()
        for i in range(3):
            request = Request("work", [f"old{i}"], {}, f"svc:rpc:{i}", f"id-{i}", now + 120_000)
            request.sent = now  # as a protocol 3 client sends it
            r.rpush("svc", encode_request(request))
        r.save()
    own_redis.kill()
    time.sleep(2.1)  # the behaviour under test: the requests are older than the restarted Redis
    own_redis.start()  # loads the snapshot: the three requests are queued again
    with own_redis.client() as r:
        assert r.llen("svc") == 3
        with redisrpc.Server(own_redis.url, "svc", recorder, poll_interval=0.1):
            proxy = redisrpc.Client(own_redis.url, "svc", timeout=10)
            assert proxy.work("new") == "new"  # a request sent now runs
            assert r.llen("svc") == 0 and not r.keys("svc:rpc:*")
    assert recorder.runs == Counter({"new": 1})


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read RSS")
def test_server_memory_stays_flat(spawn_server, r):
    """A server process's resident memory does not grow over 20,000 calls."""
    child = spawn_server("servable:Thing", "mem")
    flood(r, "mem", 2_000)  # warm up: imports, caches, buffers
    before = rss_kib(child.pid)
    flood(r, "mem", 20_000)
    after = rss_kib(child.pid)
    assert after - before < 8 * 1024, f"RSS grew from {before} KiB to {after} KiB"


def test_requests_restored_from_a_snapshot_never_run_twice(own_redis):
    """Snapshot with calls queued, calls answered, kill -9, restart from the RDB: no re-run."""
    recorder = Recorder()
    with own_redis.client() as r:
        transport = redisrpc.core.transport.Transport.of(r)
        deadline = transport.now_ms() + 120_000  # still ahead after the restart
        for i in range(3):
            request = Request("work", [f"k{i}"], {}, f"svc:rpc:{i}", f"id-{i}", deadline)
            r.rpush("svc", encode_request(request))
        r.save()  # the snapshot holds the three queued requests
        assert (Path(own_redis.dir) / "dump.rdb").exists()
        with redisrpc.Server(own_redis.url, "svc", recorder, poll_interval=0.1) as server:
            for i in range(3):
                popped = r.blpop([f"svc:rpc:{i}"], timeout=5)
                assert popped is not None and decode_reply(popped[1]).value == f"k{i}"
            own_redis.kill()
            own_redis.start()  # same --dir: Redis loads the snapshot
            with own_redis.client() as fresh:
                assert fresh.llen("svc") in (0, 3)  # restored, unless the server took them already
                proxy = redisrpc.Client(own_redis.url, "svc", timeout=10)
                call_until_it_works(proxy, "after", within=20)
                # The restored requests were taken before "after" (FIFO), refused, unanswered.
                assert fresh.llen("svc") == 0
                for i in range(3):
                    # A reply sent in the exchange that Redis died in may be sent again
                    # (its delivery was never confirmed); the replay adds none.
                    left = fresh.lrange(f"svc:rpc:{i}", 0, -1)
                    assert [decode_reply(raw).value for raw in left] in ([], [f"k{i}"])
            assert server.running
    assert recorder.runs == Counter({"k0": 1, "k1": 1, "k2": 1, "after": 1})


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read RSS")
def test_a_request_of_tiny_values_does_not_blow_up_a_server(spawn_server, r):
    """8 MiB of empty arrays (~80 bytes each in Python): refused before decoding, peak stays low."""
    child = spawn_server("servable:Thing", "mem")
    flood(r, "mem", 200)
    before = rss_kib(child.pid, "VmHWM")
    message = 8 * 1024 * 1024
    raw = encode_request(Request("echo", [[[]] * (message // 3)], {}, "mem:rpc:big", "big"))
    r.rpush("mem", raw)
    popped = r.blpop(["mem:rpc:big"], timeout=30)
    assert popped is not None, "no reply"
    assert decode_reply(popped[1]).error.type == "redisrpc.MessageTooLargeError"
    grew = rss_kib(child.pid, "VmHWM") - before
    assert grew < 5 * len(raw) // 1024, f"peak RSS grew by {grew} KiB for {len(raw)} bytes"
    flood(r, "mem", 10)  # and it serves on
