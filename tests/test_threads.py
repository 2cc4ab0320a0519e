"""Many threads on one sync proxy: overlapping calls share a reply list and a reader thread."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import CutBatch, wait_for

import redisrpc
from redisrpc.client.threads import ThreadMultiplexer
from redisrpc.core.plan import Send
from redisrpc.errors import RedisConnectionError


class Worker:
    def __init__(self) -> None:
        self.gate = threading.Event()

    def ident(self, i: int, payload: Any = None) -> Any:
        return [i, payload]

    def wait_gate(self) -> str:
        self.gate.wait(10)
        return "open"

    def fail(self, i: int) -> None:
        raise ValueError(f"no {i}")

    def half_done(self) -> str:
        redisrpc.progress(1, 2, "half")
        self.gate.wait(10)
        return "done"

    def half_then_done(self) -> str:
        redisrpc.progress(1, 2, "half")
        return "done"

    def counted(self, n: int) -> Any:
        return iter(range(n))  # an iterator, not a generator function: not described as a stream


def _run_threads(count: int, target: Any) -> list[Any]:
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = target(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_32_threads_share_one_proxy_and_each_gets_its_own_replies(r, serve):
    serve(Worker(), "work", workers=4)
    work = redisrpc.Client(r, "work")

    def calls(i: int) -> list[Any]:
        out = []
        for k in range(20):
            payload = np.full(10, i * 100 + k) if k % 5 == 0 else f"t{i}-{k}"
            out.append((payload, work.ident(i, payload)))
            try:
                work.fail(i)
            except redisrpc.RemoteException as exc:
                out.append(("error", str(exc)))
        return out

    results = _run_threads(32, calls)
    for i, got in enumerate(results):
        assert not isinstance(got, Exception), got
        for sent, reply in got:
            if isinstance(sent, str) and sent == "error":
                assert f"no {i}" in reply
            elif isinstance(sent, np.ndarray):
                assert reply[0] == i and np.array_equal(reply[1], sent)
            else:
                assert reply == [i, sent]
    # Overlapping calls went through the proxy's one multiplexer; its lists are all read.
    flight = redisrpc.client.sync.state_of(work).channels["threads"]
    assert isinstance(flight.mux, ThreadMultiplexer)
    assert flight.calls == [] and flight.mux.boxes == {}
    assert r.keys("work:rpc:*") == []


def test_a_multiplexed_call_waits_while_others_complete(r, serve):
    worker = Worker()
    serve(worker, "work", workers=4)
    work = redisrpc.Client(r, "work")
    slow: list[Any] = []
    blocker = threading.Thread(target=lambda: slow.append(work.wait_gate()))
    blocker.start()
    flight = redisrpc.client.sync.state_of(work).channels
    wait_for(lambda: "threads" in flight and len(flight["threads"].calls) == 1)
    assert [work.ident(i) for i in range(5)] == [[i, None] for i in range(5)]
    worker.gate.set()
    blocker.join(10)
    assert slow == ["open"]


def test_a_stream_through_the_multiplexer_leaves_no_box_and_no_reader_behind(r, serve):
    worker = Worker()
    serve(worker, "work", workers=4)
    work = redisrpc.Client(r, "work")
    slow: list[Any] = []
    blocker = threading.Thread(target=lambda: slow.append(work.wait_gate()))
    blocker.start()
    channels = redisrpc.client.sync.state_of(work).channels
    wait_for(lambda: "threads" in channels and len(channels["threads"].calls) == 1)
    assert list(work.counted(3)) == [0, 1, 2]  # multiplexed: another call is in flight
    closed = work.counted(100)
    assert next(closed) == 0
    closed.close()
    worker.gate.set()
    blocker.join(10)
    assert slow == ["open"]
    mux = channels["threads"].mux
    assert mux.boxes == {}
    wait_for(lambda: mux.reader is None, message="the reader still runs")


class _ReaderDropsOnce:
    """A real transport whose reader loses its connection once, just after messages arrived."""

    def __init__(self, real: Any, reply_queue: str, messages: int) -> None:
        self.real = real
        self.reply_queue = reply_queue
        self.messages = messages
        self.armed = True

    def execute(self, *commands: Any, quiet: int = 0) -> Any:
        if self.armed and commands[0][:2] == ("BLPOP", self.reply_queue):
            self.armed = False
            wait_for(lambda: self.real.execute(("LLEN", self.reply_queue))[0] >= self.messages)
            raise RedisConnectionError("the reader's connection dropped")
        return self.real.execute(*commands, quiet=quiet)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _reader_drops_once(work: Any, messages: int = 1) -> tuple[_ReaderDropsOnce, list[Any]]:
    """Make ``work``'s calls multiplexed (a call waits in a thread until the gate opens),
    through a transport whose reader fails once ``messages`` reached the shared list."""
    state = redisrpc.client.sync.state_of(work)
    flight = state.channels["threads"] = redisrpc.client.threads.Flight()
    shared = state.reply_prefix + secrets.token_hex(8)  # an earlier test's reader may still pop
    transport = _ReaderDropsOnce(state.transport, shared, messages)
    flight.mux = ThreadMultiplexer(transport, state.name, shared, max_size=state.max_size)  # type: ignore[arg-type]
    slow: list[Any] = []
    threading.Thread(target=lambda: slow.append(work.wait_gate()), daemon=True).start()
    wait_for(lambda: len(flight.calls) == 1)
    return transport, slow


@pytest.fixture
def dropping(r: Any, serve: Any) -> Iterator[Callable[[int], tuple[Any, _ReaderDropsOnce]]]:
    """Make a multiplexed proxy of a 4-worker :class:`Worker` whose reader fails once
    ``messages`` reached the shared list (see :func:`_reader_drops_once`); at the end the
    held call is let go and must finish."""
    worker = Worker()
    serve(worker, "work", workers=4)
    work = redisrpc.Client(r, "work")
    held: list[list[Any]] = []

    def make(messages: int) -> tuple[Any, _ReaderDropsOnce]:
        transport, slow = _reader_drops_once(work, messages)
        held.append(slow)
        return work, transport

    yield make
    worker.gate.set()
    for slow in held:
        wait_for(lambda slow=slow: slow == ["open"])


def test_a_reply_left_on_the_shared_list_by_a_failed_reader_is_taken_at_recovery(dropping):
    work, transport = dropping(1)
    # Multiplexed; the reply reaches the shared list, then the reader's connection drops.
    # The connection is back at once: the call's recovery finds its reply (as a call with
    # a list of its own pops it from that list), instead of failing as lost.
    assert work.ident(1) == [1, None]
    assert not transport.armed


def test_a_progress_message_found_at_recovery_is_not_taken_for_the_reply(dropping):
    work, transport = dropping(1)
    # The reader fails once the call's progress is on the shared list: its recovery finds
    # that progress, not a reply (the call still runs, and is now marked cancelled).
    with pytest.raises(RedisConnectionError, match="may or may not have been delivered"):
        work.half_done()
    assert not transport.armed


def test_a_reply_behind_a_progress_message_is_taken_at_recovery(dropping):
    work, transport = dropping(2)
    # The reader fails once the call's progress and its reply are both on the shared list.
    assert work.half_then_done() == "done"
    assert not transport.armed


def test_multiplexed_calls_time_out_and_are_withdrawn(r):
    # Nothing serves "idle": every overlapping call times out and leaves nothing queued.
    idle = redisrpc.Client(r, "idle", timeout=0.5, describe=False)
    state = redisrpc.client.sync.state_of(idle)
    state.description = {"protocol": 4}  # as if described: replies carry ids
    results = _run_threads(8, lambda i: idle._rpc_call("anything", (i,), {}))
    assert all(isinstance(x, redisrpc.TimeoutException) for x in results), results
    assert r.llen("idle") == 0


class _FakeTransport:
    """Records pushes; a push may block on a gate or fail; pops find nothing."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.pushes: list[int] = []
        self.gate = threading.Event()
        self.first = threading.Event()

    def execute(self, *commands: Any, quiet: int = 0) -> list[Any]:
        if commands[-1][0] == "RPUSH":
            if self.fail:
                raise RedisConnectionError("Redis went away")
            self.pushes.append(len(commands[-1]) - 2)
            self.first.set()
            self.gate.wait(10)
            return [len(self.pushes)]
        time.sleep(0.01)  # the reader's pop: nothing came
        return [None, None]


def test_requests_queued_during_a_push_go_out_together_in_the_next():
    transport = _FakeTransport()
    mux = ThreadMultiplexer(transport, "svc", "svc:rpc:shared", max_size=1000)  # type: ignore[arg-type]

    def send(i: int) -> Any:
        return mux.step(Send("svc", b"{}", "svc:rpc:shared", f"id{i}", 0.2))

    leader = threading.Thread(target=send, args=(0,))
    leader.start()
    assert transport.first.wait(10)  # the first push is in flight: the others queue
    others = [threading.Thread(target=send, args=(i,)) for i in range(1, 4)]
    for t in others:
        t.start()
    wait_for(lambda: len(mux.outbox) == 3)
    transport.gate.set()
    for t in [leader, *others]:
        t.join(10)
    assert transport.pushes == [1, 3]
    for i in range(4):
        mux.forget(f"id{i}")


class _InterruptedTransport(_FakeTransport):
    """The first push is interrupted (Ctrl-C) once the gate opens; later pushes go through."""

    def execute(self, *commands: Any, quiet: int = 0) -> list[Any]:
        if commands[-1][0] == "RPUSH" and not self.pushes:
            self.pushes.append(len(commands[-1]) - 2)
            self.first.set()
            self.gate.wait(10)
            raise KeyboardInterrupt
        return super().execute(*commands, quiet=quiet)


def test_ctrl_c_during_a_push_leaves_the_calls_queued_meanwhile_pushed():
    # The calls of other threads, queued while the interrupted push was in flight, were
    # never written: they are pushed (by another thread), not failed as perhaps delivered.
    transport = _InterruptedTransport()
    mux = ThreadMultiplexer(transport, "svc", "svc:rpc:shared", max_size=1000)  # type: ignore[arg-type]
    results: dict[int, Any] = {}

    def send(i: int) -> None:
        try:
            results[i] = mux.step(Send("svc", b"{}", "svc:rpc:shared", f"id{i}", 0.2))
        except BaseException as exc:
            results[i] = exc

    leader = threading.Thread(target=send, args=(0,))
    leader.start()
    assert transport.first.wait(10)
    others = [threading.Thread(target=send, args=(i,)) for i in range(1, 4)]
    for t in others:
        t.start()
    wait_for(lambda: len(mux.outbox) == 3)
    transport.gate.set()
    for t in [leader, *others]:
        t.join(10)
    assert isinstance(results[0], KeyboardInterrupt)
    assert transport.pushes == [1, 3]
    assert [results[i] for i in range(1, 4)] == [None, None, None]  # waited: no reply came
    for i in range(4):
        mux.forget(f"id{i}")
    wait_for(lambda: mux.reader is None and not mux.pushing)


def test_a_failed_push_is_raised_at_the_calls_send_step():
    mux = ThreadMultiplexer(_FakeTransport(fail=True), "svc", "svc:rpc:shared", max_size=1000)  # type: ignore[arg-type]
    with pytest.raises(RedisConnectionError, match="went away"):
        mux.step(Send("svc", b"{}", "svc:rpc:shared", "id1", 1.0))
    mux.forget("id1")
    wait_for(lambda: mux.reader is None)


class _CutBatchTransport(CutBatch):
    def execute(self, *commands: Any, quiet: int = 0) -> list[Any]:
        replies = self.answer(commands)
        if replies is None:
            time.sleep(0.01)  # a blocking pop's wait: nothing more came
            return [None, None]
        return replies


def test_whole_replies_of_a_batch_are_delivered_when_taking_a_cut_off_blob_fails():
    mux = ThreadMultiplexer(_CutBatchTransport(), "svc", "q", max_size=1000)  # type: ignore[arg-type]
    try:
        reply = mux.step(Send("svc", b"{}", "q", "a", 5.0))
        assert reply.value == "for a"  # it came whole: a failure after it must not lose it
    finally:
        mux.forget("a")
    wait_for(lambda: mux.reader is None)


def test_ctrl_c_while_the_reader_starts_leaves_later_calls_pushed(monkeypatch):
    # Ctrl-C lands while a call starts the reader thread (Thread.start waits for it):
    # the interrupted call gives up, and the calls after it are still pushed.
    transport = _FakeTransport()
    transport.gate.set()  # pushes go through at once
    mux = ThreadMultiplexer(transport, "svc", "svc:rpc:shared", max_size=1000)  # type: ignore[arg-type]
    start_reader = mux._start_reader

    def interrupted() -> None:
        monkeypatch.setattr(mux, "_start_reader", start_reader)  # once
        raise KeyboardInterrupt

    monkeypatch.setattr(mux, "_start_reader", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mux.step(Send("svc", b"{}", "svc:rpc:shared", "id1", 1.0))
    mux.forget("id1")
    assert mux.step(Send("svc", b"{}", "svc:rpc:shared", "id2", 0.05)) is None  # no reply
    assert transport.pushes == [1]
    mux.forget("id2")
    wait_for(lambda: mux.reader is None)
