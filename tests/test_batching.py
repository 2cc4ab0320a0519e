"""The serving loop's batches and worker pool: every request taken is run or answered once."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from conftest import RedisServer, wait_for

import redisrpc
from redisrpc.client.lock import held_token
from redisrpc.core.clock import local_seconds
from redisrpc.core.protocol import Request, decode_reply, encode_request
from redisrpc.core.transport import Transport
from redisrpc.server.calls import RECHECK_AFTER, Cancellations, Prefetched


class Recorder:
    """Records calls and the most calls it ever saw at once."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.seen: list[int] = []
        self.active = 0
        self.peak = 0
        self.guard = threading.Lock()

    def work(self, n: int) -> int:
        """Note n, sleep a little, return n."""
        with self.guard:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.seconds)
        with self.guard:
            self.active -= 1
            self.seen.append(n)
        return n


def _queue_requests(r: Any, name: str, count: int, deadline: int | None = None) -> list[str]:
    queues = []
    for i in range(count):
        queue = f"{name}:rpc:{i}"
        r.rpush(name, encode_request(Request("work", [i], {}, queue, str(i), deadline)))
        queues.append(queue)
    return queues


def _reply(r: Any, queue: str) -> Any:
    popped = r.blpop([queue], timeout=10)
    assert popped is not None, f"no reply on {queue}"
    return decode_reply(popped[1])


def test_a_backlog_is_served_once_each_in_order(r, serve):
    """Requests queued before the server starts are taken in batches, each run exactly once."""
    queues = _queue_requests(r, "rec", 100)
    rec = Recorder()
    server = serve(rec, "rec")
    replies = [_reply(r, q) for q in queues]
    assert [reply.value for reply in replies] == list(range(100))
    assert [reply.id for reply in replies] == [str(i) for i in range(100)]
    assert rec.seen == list(range(100))
    assert server.calls == 100
    assert r.llen("rec") == 0
    assert all(r.pttl(q) == -2 for q in queues)  # read, so gone


def test_a_backlog_is_taken_in_batches_by_one_blocking_pop(r, serve):
    """On Redis 7 one BLMPOP takes up to a batch: fewer pops than requests."""
    r.config_resetstat()
    queues = _queue_requests(r, "rec", 100)
    serve(Recorder(), "rec")
    assert [_reply(r, q).value for q in queues] == list(range(100))
    stats = r.info("commandstats")
    assert stats["cmdstat_blmpop"]["calls"] < 100  # some pops took several requests


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("refusal", ["unknown command", "acl"])
def test_a_redis_without_blmpop_is_served_with_blpop_and_lpop(refusal, workers, caplog):
    """Redis before 7 has no BLMPOP (or an ACL forbids it): the server says so once, pops
    with BLPOP and LPOP from then on, and serves every request once, in order."""
    renamed = ("--rename-command", "BLMPOP", "") if refusal == "unknown command" else ()
    with RedisServer(*renamed) as proc, proc.client() as admin:
        if refusal == "acl":
            commands = ["+@all", "-blmpop"]
            admin.acl_setuser("old", enabled=True, nopass=True, keys=["*"], channels=["*"],
                              commands=commands)  # fmt: skip
        client = proc.client(username="old", password="x") if refusal == "acl" else admin
        queues = _queue_requests(client, "rec", 50)
        rec = Recorder()
        with caplog.at_level(logging.INFO, logger="redisrpc.server"):
            server = redisrpc.Server(client, "rec", rec, workers=workers, poll_interval=0.1)
            with server:
                replies = [_reply(client, q) for q in queues]
        assert [reply.value for reply in replies] == list(range(50))
        assert sorted(rec.seen) == list(range(50)) and server.calls == 50
        if workers == 1:
            assert rec.seen == list(range(50))
        stats = admin.info("commandstats")
        assert stats["cmdstat_blpop"]["calls"] >= 1 and stats["cmdstat_lpop"]["calls"] >= 1
        fallbacks = [m for m in caplog.messages if "cannot pop a batch in one command" in m]
        assert len(fallbacks) == 1, fallbacks


def test_deadlines_are_checked_per_request_within_a_batch(r, serve):
    """In one batch, requests past their deadline are dropped unrun and unanswered; others run."""
    transport = redisrpc.core.transport.Transport.of(r)
    late = transport.now_ms() - 1000
    fine = transport.now_ms() + 60_000
    for i, deadline in enumerate([fine, late, fine, late, fine]):
        r.rpush("rec", encode_request(Request("work", [i], {}, f"rec:rpc:{i}", str(i), deadline)))
    rec = Recorder()
    serve(rec, "rec")
    replies = [_reply(r, f"rec:rpc:{i}") for i in (0, 2, 4)]
    assert [reply.value for reply in replies] == [0, 2, 4]
    assert rec.seen == [0, 2, 4]
    assert r.llen("rec") == 0
    # Their callers gave up: no reply was written for the late ones.
    assert r.exists("rec:rpc:1", "rec:rpc:3") == 0


def test_slow_calls_are_not_hoarded_by_one_server(r, serve):
    """Calls slower than the batch budget are taken one at a time, so two servers share them."""
    a, b = Recorder(0.05), Recorder(0.05)
    _queue_requests(r, "rec", 12)
    server_a = serve(a, "rec")
    server_b = serve(b, "rec")
    for i in range(12):
        _reply(r, f"rec:rpc:{i}")
    assert sorted(a.seen + b.seen) == list(range(12))
    assert server_a.calls > 1 and server_b.calls > 1


def test_default_is_one_call_at_a_time_and_workers_run_several(r, serve):
    """workers=1 (the default) never overlaps calls; workers=4 runs up to four at once."""
    for name, workers, expected_peak in [("one", 1, 1), ("four", 4, 4)]:
        rec = Recorder(0.2)
        server = serve(rec, name, workers=workers)
        assert server.workers == workers
        for queue in _queue_requests(r, name, 8):
            assert _reply(r, queue).error is None
        assert sorted(rec.seen) == list(range(8))
        assert rec.peak == expected_peak


def test_worker_pool_answers_calls_from_threads(r, serve):
    """A proxy shared by 16 threads gets every answer right from a pooled server."""
    serve(Recorder(0.01), "rec", workers=4)
    proxy: Any = redisrpc.Client(r, "rec", timeout=10)
    results: dict[int, int] = {}

    def caller(base: int) -> None:
        for i in range(base, base + 10):
            results[i] = proxy.work(i)

    threads = [threading.Thread(target=caller, args=(k * 10,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: i for i in range(160)}


def test_stopping_a_worker_pool_finishes_calls_in_flight(r, serve):
    """stop() lets running calls finish and reply; nothing taken is lost."""
    rec = Recorder(0.3)
    server = serve(rec, "rec", workers=3)
    queues = _queue_requests(r, "rec", 3)
    wait_for(lambda: rec.active >= 3, message="three calls did not run at once")
    server.stop(10)
    assert not server.running
    assert [_reply(r, q).value for q in queues] == [0, 1, 2]


@pytest.mark.parametrize("workers", [0, -1, 1.5])
def test_workers_must_be_a_positive_integer(r, workers):
    """A worker count that is not a positive integer is refused at construction."""
    with pytest.raises(ValueError, match="workers"):
        redisrpc.Server(r, "rec", Recorder(), workers=workers, register=False)


class Gate:
    """``hold()`` runs until released; ``work(n)`` returns n at once. Records what ran."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.seen: list[Any] = []

    def hold(self) -> str:
        """Wait for the test to release it; last longer than RECHECK_AFTER all the same."""
        self.holding.set()
        self.release.wait(10)
        time.sleep(4 * RECHECK_AFTER)  # a call shorter than that leaves the counter unread
        self.seen.append("hold")
        return "held"

    def work(self, n: int) -> int:
        """Return n."""
        self.seen.append(n)
        return n


def test_one_pop_reads_the_lock_and_the_cancellation_counter_for_its_batch(r, serve):
    """The lock and the counter read with the pop that took three requests apply to each: the
    holder's run, a stranger's is refused, and one cancelled while it waited never starts."""
    gate = Gate()
    serve(gate, "gate")
    proxy: Any = redisrpc.Client(r, "gate", timeout=10)
    for i in range(30):  # fast calls: the server takes batches from now on
        assert proxy.work(i) == i
    r.incr("gate:cancels", 2)  # an older cancellation: the counter is set, and not moving
    now = Transport.of(r).now_ms()
    with redisrpc.lock(proxy):
        token = held_token(proxy)

        def request(name: str, args: list[Any], call_id: str, lock: str | None) -> bytes:
            return encode_request(
                Request(name, args, {}, f"gate:rpc:{call_id}", call_id, now + 60_000, lock, 3,
                        sent=now)
            )  # fmt: skip

        r.rpush(
            "gate",
            request("hold", [], "a", token),
            request("work", [100], "victim", token),
            request("work", [101], "stranger", None),
        )
        wait_for(lambda: gate.holding.is_set() and r.llen("gate") == 0, message="one pop")
        # The victim's caller gives up now that a server took its request (see PROTOCOL.md).
        r.set("gate:cancel:victim", 1, px=60_000)
        r.incr("gate:cancels")
        gate.release.set()
        assert _reply(r, "gate:rpc:a").value == "held"
        refused = _reply(r, "gate:rpc:stranger").error  # answered after the victim's turn
    assert refused is not None and refused.type.endswith("LockedError")
    assert gate.seen[30:] == ["hold"]
    assert r.exists("gate:rpc:victim", "gate:cancel:victim") == 0  # no reply; its mark removed


@pytest.mark.parametrize(
    ("waited", "sent", "rereads"),
    [
        (0.0, None, False),  # a fresh pop: its reading stands
        (1.0, 0, False),  # the pop waited a second for a request sent just now
        (1.0, None, True),  # ...for a request that does not say when it was sent
        (1.0, -1000, True),  # a request sent a second ago: the reading may be as old
        (1.0, 60_000, True),  # sent "in the future": bounded by the replies' arrival
    ],
)
def test_the_counter_is_read_again_when_the_pop_may_be_old(r, waited, sent, rereads):
    """Cancellations.cancelled asks Redis again only when the pop's reading may be over 5 ms old.

    The pop came after its round trip was sent, and after its request was sent;
    a server paused with the replies in its socket (test_long_calls) reads again.
    """
    transport = Transport.of(r)
    sent_commands: list[Any] = []

    class Counting:  # the real transport, its commands noted
        now_ms = transport.now_ms

        def execute(self, *commands: Any) -> list[Any]:
            sent_commands.extend(commands)
            return transport.execute(*commands)

    cancellations = Cancellations(Counting(), "svc")  # type: ignore[arg-type]
    now_ms, now = transport.now_ms(), local_seconds()
    answered = now - 0.01 if sent is not None and sent > 0 else now  # the future: 10 ms ago
    at_pop = Prefetched(None, None, now - waited, answered)
    request = Request("work", [], {}, "svc:rpc:1", "1", None)
    request.sent = None if sent is None else now_ms + sent
    assert not cancellations.cancelled(request, at_pop)
    assert sent_commands == ([("GET", "svc:cancels")] if rereads else [])
