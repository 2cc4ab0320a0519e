"""Long calls at the bench: Ctrl-C that stops the instrument, progress, streams, cancel marks."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from conftest import ROOT, python_env, wait_for

import redisrpc
from redisrpc.client.progress import ProgressDisplay
from redisrpc.client.proxy import ProxyState
from redisrpc.server.calls import STREAM_WINDOW


class Stepper:
    """An in-process instrument: steps with progress, and a generator with a finally."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.saw_cancel = threading.Event()

    def move(self, steps: int, step_s: float = 0.05) -> int:
        for i in range(steps):
            if redisrpc.cancelled():
                self.saw_cancel.set()
                return i
            time.sleep(step_s)
            redisrpc.progress(i + 1, steps, f"step {i + 1}")
        return steps

    def count(self, n: int, step_s: float = 0.0) -> Any:
        try:
            for i in range(n):
                if step_s:
                    time.sleep(step_s)
                yield i
            return n
        finally:
            self.closed.set()

    def quick(self) -> int:
        redisrpc.progress(1, 1)  # one report, then done: no bar for a fast call
        return 7


def _client_process(url: str, code: str) -> subprocess.Popen[str]:
    """A child Python process running ``code`` with ``proxy`` on service 'mover'."""
    script = (
        textwrap.dedent(
            f"""
        import sys, redisrpc
        proxy = redisrpc.Client({url!r}, "mover", timeout=30)
        print("ready", flush=True)
        try:
        """
        )
        + textwrap.indent(textwrap.dedent(code), "    ")
        + textwrap.dedent(
            """
        except KeyboardInterrupt as exc:
            print("interrupted:", exc, flush=True)
            sys.exit(0)
        """
        )
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=python_env(),
    )


def test_progress_reaches_the_callback(r, serve):
    """with_progress(proxy, callback): each report arrives as (done, total, message)."""
    serve(Stepper(), "stepper")
    seen: list[tuple[float, float | None, str]] = []
    proxy = redisrpc.with_progress(
        redisrpc.Client(r, "stepper", timeout=10), lambda *update: seen.append(update)
    )
    assert proxy.move(5, 0.12) == 5
    assert seen[-1] == (5, 5, "step 5")
    assert len(seen) >= 3 and [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)


def test_progress_bar_shows_after_half_a_second_and_fast_calls_show_none():
    """The bar appears only once a call has run 0.5 s; its text has the counts and message."""
    now = [0.0]
    out = io.StringIO()
    display = ProgressDisplay("stage.move()", file=out, clock=lambda: now[0])
    display("progress", {"done": 1, "total": 10, "message": "moving"})
    assert out.getvalue() == ""  # too early: a fast call does not flash a bar
    now[0] = 0.6
    display("progress", {"done": 5, "total": 10, "message": "moving"})
    display.close()
    assert "stage.move() moving" in out.getvalue() and "5/10" in out.getvalue()


def test_waiting_behind_another_call_says_which(r, serve, monkeypatch):
    """A queued call with a display says what runs: the method and who called it."""
    stepper = Stepper()
    serve(stepper, "stepper")
    busy = redisrpc.Client(r, "stepper", timeout=10)
    proxy = redisrpc.Client(r, "stepper", timeout=10)  # described before the server is busy
    worker = threading.Thread(target=busy.move, args=(30, 0.05))
    worker.start()
    wait_for(lambda: r.hlen("stepper:running"), timeout=5)  # published once it runs long
    events: list[tuple[str, Any]] = []

    class Recorder:
        def __call__(self, kind: str, value: Any) -> None:
            events.append((kind, value))

        def close(self) -> None:
            pass

    monkeypatch.setattr(ProxyState, "watcher", lambda self, method: Recorder())
    assert proxy.quick() == 7
    worker.join(10)
    waiting = [v for k, v in events if k == "waiting" and v]
    assert waiting and waiting[0][0]["method"] == "move"
    assert waiting[0][0]["caller"].endswith(f":{os.getpid()}")
    assert not waiting[0][0]["mine"]


def test_progress_keeps_a_call_alive_past_its_timeout_but_not_past_its_limit(r, serve):
    """The timeout measures silence; `limit` is a hard limit."""
    serve(Stepper(), "stepper")
    proxy = redisrpc.Client(r, "stepper", timeout=0.6)
    assert proxy.move(12, 0.1) == 12  # 1.2 s of work, never 0.6 s of silence
    limited = redisrpc.with_timeout(proxy, 0.6, limit=0.8)
    with pytest.raises(redisrpc.TimeoutException) as info:
        limited.move(20, 0.1)
    assert info.value.started is True
    assert "reached its limit of 0.8 s" in str(info.value) and "asked to cancel" in str(info.value)


def test_ctrl_c_on_a_running_call_cancels_it_on_the_server(r, redis_url, spawn_server):
    """SIGINT to a client process: the server's method sees cancelled() within a second."""
    spawn_server("servable:Mover", "mover")
    child = _client_process(redis_url, "proxy.move(400, 0.05)")
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    wait_for(lambda: r.get("mover:started"), timeout=10)
    interrupted_at = time.monotonic()
    child.send_signal(signal.SIGINT)
    line = child.stdout.readline()
    assert line.startswith("interrupted:") and "asked to cancel" in line
    assert child.wait(10) == 0
    wait_for(lambda: r.get("mover:saw_cancel"), timeout=5)
    assert time.monotonic() - interrupted_at < 1.5
    assert r.get("mover:finished") is None
    assert redisrpc.Client(r, "mover", timeout=10).move(1, 0.01) == 1  # serving again
    wait_for(lambda: not r.keys("mover:rpc:*") and not r.keys("mover:cancel:*"), timeout=5)


def test_ctrl_c_runs_the_on_cancel_hook_of_a_method_that_never_checks(r, redis_url, spawn_server):
    """@expose(on_cancel="halt"): a cancelled drift() is stopped by its hook."""
    spawn_server("servable:Mover", "mover")
    child = _client_process(redis_url, "proxy.drift(30)")
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    wait_for(lambda: r.get("mover:started"), timeout=10)
    child.send_signal(signal.SIGINT)
    assert child.stdout.readline().startswith("interrupted:")
    assert child.wait(10) == 0
    wait_for(lambda: r.get("mover:halted"), timeout=3)
    wait_for(lambda: r.get("mover:finished"), timeout=3)  # drift() returned at once


def test_cancelled_async_task_cancels_the_running_call(r, serve):
    """Cancelling an asyncio task that awaits a call cancels it on the server."""
    stepper = Stepper()
    serve(stepper, "stepper")

    async def main() -> None:
        proxy = await redisrpc.AsyncClient(r, "stepper", timeout=10)
        task = asyncio.ensure_future(proxy.move(200, 0.05))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert stepper.saw_cancel.wait(2)


def test_stream_of_ten_thousand_items_arrives_in_order_with_its_return_value(r, serve):
    """A generator method streams: every item, in order, then its return value."""
    serve(Stepper(), "stepper")
    stream = redisrpc.Client(r, "stepper", timeout=10).count(10_000)
    assert list(stream) == list(range(10_000))
    assert stream.value == 10_000
    assert r.keys("stepper:rpc:*") == []


def test_stream_stays_a_bounded_window_ahead_of_a_slow_reader(r, serve):
    """The server stops producing while the caller's unread items fill the window."""
    serve(Stepper(), "stepper")
    stream = redisrpc.Client(r, "stepper", timeout=10).count(2_000)
    first = next(stream)
    queue = r.keys("stepper:rpc:*")[0]
    lengths = []
    for _ in range(20):  # a slow reader: the server must wait for it
        lengths.append(r.llen(queue))
        time.sleep(0.02)
    assert first == 0 and max(lengths) <= STREAM_WINDOW + 1
    assert list(stream) == list(range(1, 2_000))


def test_closing_a_stream_runs_the_generators_finally(r, serve):
    """break, then drop the stream: the remote generator is closed and its finally runs."""
    stepper = Stepper()
    serve(stepper, "stepper")
    proxy = redisrpc.Client(r, "stepper", timeout=10)
    for item in proxy.count(1_000_000, 0.001):
        if item == 3:
            break
    assert stepper.closed.wait(3)
    assert proxy.quick() == 7  # the server is free again
    wait_for(lambda: not r.keys("stepper:rpc:*"), timeout=5)


def test_async_for_over_a_stream(r, serve):
    """`async for` on the asyncio client, with the return value after it."""
    stepper = Stepper()
    serve(stepper, "stepper")

    async def main() -> tuple[list[int], Any]:
        proxy = await redisrpc.AsyncClient(r, "stepper", timeout=10)
        stream = await proxy.count(500)
        return [item async for item in stream], stream.value

    items, value = asyncio.run(main())
    assert items == list(range(500)) and value == 500


def test_paused_server_never_starts_a_call_whose_caller_already_failed(r, spawn_server):
    """SIGSTOP past the heartbeat window: its callers fail; after SIGCONT nothing runs."""
    server = spawn_server("servable:Thing", "svc")
    proxies = [redisrpc.Client(r, "svc", timeout=30) for _ in range(8)]
    assert proxies[0].incr(0) == 0
    os.kill(server.pid, signal.SIGSTOP)
    try:
        outcomes: list[BaseException] = []

        def call(proxy: Any) -> None:
            try:
                proxy.incr()
            except BaseException as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=call, args=(p,)) for p in proxies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(outcomes) == 8
        assert all(isinstance(x, redisrpc.ServerGoneError) for x in outcomes), outcomes
        assert any(x.started for x in outcomes)  # the stopped server had taken one
        assert r.llen("svc") == 0  # the others were withdrawn
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert redisrpc.Client(r, "svc", timeout=10).total == 0  # none of the eight ran
    wait_for(lambda: not r.keys("svc:cancel:*") and not r.keys("svc:rpc:*"), timeout=10)


def test_running_lists_a_long_call_and_cancel_stops_it_naming_who(r, serve):
    """redisrpc.running() shows the call; redisrpc.cancel() stops it; its caller is told who."""
    stepper = Stepper()
    serve(stepper, "stepper")
    caller = redisrpc.Client(r, "stepper", timeout=10)
    observer = redisrpc.Client(r, "stepper", timeout=10)
    outcome: list[BaseException] = []

    def move() -> None:
        try:
            caller.move(200, 0.05)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=move)
    worker.start()
    calls = wait_for(lambda: redisrpc.running(observer), timeout=5)
    assert calls[0]["method"] == "move" and calls[0]["caller"].endswith(f":{os.getpid()}")
    redisrpc.cancel(observer, calls[0]["id"])
    worker.join(5)
    assert stepper.saw_cancel.is_set()
    assert isinstance(outcome[0], redisrpc.CallCancelledError)
    assert "cancelled by" in str(outcome[0])
    wait_for(lambda: not redisrpc.running(observer) and not r.keys("stepper:cancel:*"), timeout=5)


class Axis:
    """A child instrument whose drift() never checks cancelled(): only its hook stops it."""

    def __init__(self) -> None:
        self.halted = threading.Event()

    @redisrpc.expose(on_cancel="halt")
    def drift(self, seconds: float) -> str:
        self.halted.wait(seconds)
        return "halted" if self.halted.is_set() else "drifted"

    def halt(self) -> None:
        self.halted.set()


class Bench:
    """A served object with an instrument as a child: callers reach it as ``bench.axis``."""

    def __init__(self) -> None:
        self.axis = Axis()


def test_cancelling_a_childs_method_runs_the_childs_on_cancel_hook(r, serve):
    """bench.axis.drift() cancelled: the hook of axis, the method's own object, stops it."""
    bench = Bench()
    serve(bench, "bench")
    caller = redisrpc.Client(r, "bench", timeout=30)
    observer = redisrpc.Client(r, "bench", timeout=10)
    outcome: list[BaseException] = []

    def drift() -> None:
        try:
            caller.axis.drift(20)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=drift)
    worker.start()
    calls = wait_for(lambda: redisrpc.running(observer), timeout=5)
    assert calls[0]["method"] == "axis.drift"
    redisrpc.cancel(observer, calls[0]["id"])
    assert bench.axis.halted.wait(5)
    worker.join(5)
    assert isinstance(outcome[0], redisrpc.CallCancelledError)


class Stage:
    """Moves that wait for the test's word; ``halt()``, the on_cancel hook, notes which it hit."""

    def __init__(self) -> None:
        self.go = {"first": threading.Event(), "second": threading.Event()}
        self.moving: str | None = None
        self.halted: list[str | None] = []

    @redisrpc.expose(on_cancel="halt")
    def move(self, name: str) -> str:
        self.moving = name
        self.go[name].wait(20)
        return name

    def halt(self) -> None:
        self.halted.append(self.moving)


class GatedLooks:
    """The watcher's transport, holding its first look at the cancel marks until let go."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.looking = threading.Event()
        self.let_go = threading.Event()
        self.looks = 0
        self.marks: list[str] = []  # the cancel marks looked at

    def execute(self, *commands: Any, **options: Any) -> Any:
        marks = [c[1] for c in commands if c[0] == "GET" and ":cancel:" in c[1]]
        if marks:
            self.looks += 1
            self.marks += marks
            self.looking.set()
            self.let_go.wait(20)
        return self.transport.execute(*commands, **options)

    def now_ms(self) -> int:
        return int(self.transport.now_ms())  # the Redis clock, as published entries use


def test_a_cancel_mark_seen_after_its_call_ended_does_not_halt_the_next_call(r, serve):
    """A mark read while its call ends and the next starts: the hook must not stop the next."""
    stage = Stage()
    server = serve(stage, "stage")
    gate = GatedLooks(server.watcher.transport)
    server.watcher.transport = gate
    first = redisrpc.Client(r, "stage", timeout=30)
    second = redisrpc.Client(r, "stage", timeout=30)
    results: list[str] = []
    moving = threading.Thread(target=lambda: results.append(first.move("first")))
    moving.start()
    assert gate.looking.wait(5)  # the watcher looks at the long first move...
    r.set(gate.marks[0], 1)  # ...and its caller gives up, too late
    stage.go["first"].set()
    moving.join(5)
    assert results == ["first"]  # it ended and was answered
    later = threading.Thread(target=lambda: results.append(second.move("second")))
    later.start()
    wait_for(lambda: stage.moving == "second", timeout=5)
    gate.let_go.set()
    wait_for(lambda: gate.looks >= 2, timeout=5)  # the late mark's look is over
    stage.go["second"].set()
    later.join(5)
    assert results == ["first", "second"]
    assert stage.halted == []
