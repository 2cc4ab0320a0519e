"""Many threads on one sync proxy: overlapping calls share a reply list and a reader thread."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

import redisrpc
from redisrpc.client.threads import ThreadMultiplexer


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
    assert flight.count == 0 and flight.mux.boxes == {}
    assert r.keys("work:rpc:*") == []


def test_a_multiplexed_call_waits_while_others_complete(r, serve):
    worker = Worker()
    serve(worker, "work", workers=4)
    work = redisrpc.Client(r, "work")
    slow: list[Any] = []
    blocker = threading.Thread(target=lambda: slow.append(work.wait_gate()))
    blocker.start()
    flight = redisrpc.client.sync.state_of(work).channels
    redisrpc.testing.wait_for(lambda: "threads" in flight and flight["threads"].count == 1)
    assert [work.ident(i) for i in range(5)] == [[i, None] for i in range(5)]
    worker.gate.set()
    blocker.join(10)
    assert slow == ["open"]


def test_multiplexed_calls_time_out_and_are_withdrawn(r):
    # Nothing serves "idle": every overlapping call times out and leaves nothing queued.
    idle = redisrpc.Client(r, "idle", timeout=0.5, describe=False)
    state = redisrpc.client.sync.state_of(idle)
    state.description = {"protocol": 4}  # as if described: replies carry ids
    results = _run_threads(8, lambda i: idle._rpc_call("anything", (i,), {}))
    assert all(isinstance(x, redisrpc.TimeoutException) for x in results), results
    assert r.llen("idle") == 0


def test_a_failed_push_reaches_every_call_of_its_batch(r, serve):
    """A push that fails is each call's first 'reply': its plan recovers (here: Redis gone)."""
    serve(Worker(), "work", workers=4)
    work = redisrpc.Client(r, "work", timeout=5)
    flight = redisrpc.client.sync.state_of(work).channels
    mux_calls = _run_threads(4, lambda i: work.ident(i))
    assert mux_calls == [[i, None] for i in range(4)]
    mux = flight["threads"].mux
    assert mux is not None
    boxes_before = dict(mux.boxes)
    assert boxes_before == {}
