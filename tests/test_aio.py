"""The asyncio client: same proxy as the sync client, many calls in flight, same guarantees."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any

import pytest
from conftest import CutBatch, free_port, wait_for, watch_pushes
from servable import Thing

import redisrpc
from redisrpc.aio import AsyncClient, set_property
from redisrpc.client.aio import Multiplexer
from redisrpc.core.aio_transport import AsyncTransport
from redisrpc.core.plan import Receive, Send
from redisrpc.core.protocol import (
    Reply,
    decode_request,
    encode_reply,
)
from redisrpc.errors import RedisConnectionError
from redisrpc.testing import wait_for_async


class Calculator:
    """A calculator with one register."""

    def __init__(self) -> None:
        self.acc = 0.0
        self.label = "calc"
        self.started = threading.Event()  # set when slow() or hold() begins
        self.release = threading.Event()  # ends hold()

    def add(self, x: float, *, scale: float = 1.0) -> float:
        """Add x times scale to the register."""
        self.acc += x * scale
        return self.acc

    def echo(self, value: Any) -> Any:
        """Return value unchanged."""
        return value

    def divide(self, a: float, b: float) -> float:
        """a / b."""
        return a / b

    def slow(self, seconds: float) -> float:
        """Sleep, then return seconds."""
        self.started.set()
        time.sleep(seconds)
        return seconds

    def hold(self) -> None:
        """Keep the server busy until the test sets ``release`` (at most 10 s)."""
        self.started.set()
        self.release.wait(10)

    @property
    def total(self) -> float:
        """The register."""
        return self.acc

    @total.setter
    def total(self, value: float) -> None:
        self.acc = value


def test_awaited_proxy_has_the_sync_proxys_introspection(r, serve):
    """`await AsyncClient(...)` builds the same class: names, signatures, docs and repr."""
    serve(Calculator(), "calc")
    sync = redisrpc.Client(r, "calc", timeout=5)

    async def main() -> AsyncClient:
        return await AsyncClient(r, "calc", timeout=5)

    proxy = asyncio.run(main())
    assert type(proxy).__name__ == type(sync).__name__ == "Calculator"
    assert [n for n in dir(proxy) if not n.startswith("_")] == [
        n for n in dir(sync) if not n.startswith("_")
    ]
    assert str(inspect.signature(proxy.add)) == str(inspect.signature(sync.add))
    assert proxy.add.__doc__ == sync.add.__doc__ == "Add x times scale to the register."
    assert type(proxy).total.__doc__ == type(sync).total.__doc__
    assert repr(proxy).replace("AsyncClient", "") == repr(sync)
    assert redisrpc.description(proxy) == redisrpc.description(sync)
    with pytest.raises(AttributeError, match="no method or property 'nope'"):
        proxy.nope  # noqa: B018


def test_calls_properties_and_errors_under_asyncio_run(r, serve):
    """Methods and properties are awaited; remote errors keep their builtin type."""
    serve(Calculator(), "calc")

    async def main() -> None:
        calc = await AsyncClient(r, "calc", timeout=5)
        assert await calc.add(2, scale=3) == 6
        assert await calc.total == 6
        await set_property(calc, "total", 1.5)
        assert await calc.total == 1.5
        assert await calc.echo({"a": [1, b"\x00"]}) == {"a": [1, b"\x00"]}
        with pytest.raises(ZeroDivisionError):
            await calc.divide(1, 0)
        with pytest.raises(redisrpc.RemoteException) as info:
            await calc.divide(1, 0)
        assert info.value.remote_type == "ZeroDivisionError"
        with pytest.raises(AttributeError, match="set_property"):
            calc.total = 3
        with pytest.raises(AttributeError, match="no property"):
            await set_property(calc, "nope", 1)

    asyncio.run(main())


def test_many_calls_in_flight_each_get_their_own_reply(r, serve):
    """asyncio.gather of hundreds of calls returns every result in order, through one reply list."""
    serve(Calculator(), "calc")

    async def main() -> list[Any]:
        calc = await AsyncClient(r, "calc", timeout=10)
        return await asyncio.gather(*(calc.echo(i) for i in range(500)))

    assert asyncio.run(main()) == list(range(500))
    assert r.llen("calc") == 0
    assert r.keys("calc:rpc:*") == []  # every reply was read


def test_one_proxy_works_across_event_loops(r, serve):
    """A proxy made under one asyncio.run keeps working under the next (pools are per loop)."""
    serve(Calculator(), "calc")
    proxy = asyncio.run(AsyncClient(r, "calc", timeout=5)._rpc_described())
    assert asyncio.run(proxy.echo(1)) == 1
    assert asyncio.run(proxy.echo(2)) == 2


def test_works_inside_an_already_running_loop(r, serve):
    """Inside a loop that is already running (as in Jupyter), awaiting the proxy just works."""
    serve(Calculator(), "calc")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:

        async def cell() -> list[Any]:  # what a notebook cell with top-level await runs
            assert asyncio.get_running_loop() is loop
            calc = await AsyncClient(r, "calc", timeout=5)
            first = await calc.echo("x")
            rest = await asyncio.gather(calc.echo(1), calc.echo(2))
            return [first, *rest]

        assert asyncio.run_coroutine_threadsafe(cell(), loop).result(10) == ["x", 1, 2]
        assert asyncio.run_coroutine_threadsafe(cell(), loop).result(10) == ["x", 1, 2]
    finally:
        # Shut down as asyncio.run and Jupyter do: cancel what still runs (the reply reader).
        asyncio.run_coroutine_threadsafe(_cancel_others(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _cancel_others() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def test_undescribed_proxy_makes_plain_calls(r, serve):
    """Without the await the proxy is dynamic, like Client(describe=False), and still calls."""
    serve(Calculator(), "calc")
    calc: Any = AsyncClient(r, "calc", timeout=5)
    assert redisrpc.description(calc) is None
    assert "not described" in repr(calc)
    assert asyncio.run(calc.echo(7)) == 7


@pytest.mark.parametrize("described", [True, False])
def test_timeout_without_server_withdraws_the_request(r, serve, described):
    """No server: the call times out with started=False and leaves nothing queued."""
    server = serve(Calculator(), "calc")

    async def main() -> None:
        calc = AsyncClient(r, "calc", timeout=0.5)
        if described:
            await calc
        server.stop(10)
        began = time.monotonic()
        with pytest.raises(redisrpc.TimeoutException) as info:
            await calc.echo(1)
        assert info.value.started is False
        assert 0.4 < time.monotonic() - began < 5
        assert "withdrawn" in str(info.value)

    asyncio.run(main())
    assert r.llen("calc") == 0


def test_timeout_while_running_reports_started(r, serve):
    """A call the server took but did not finish in time raises with started=True."""
    serve(Calculator(), "calc")

    async def main() -> None:
        calc = await AsyncClient(r, "calc", timeout=5)
        with pytest.raises(redisrpc.TimeoutException) as info:
            await redisrpc.with_timeout(calc, 0.3).slow(1.0)
        assert info.value.started is True
        assert await calc.echo("after") == "after"  # the late reply is not mistaken for this one

    asyncio.run(main())


def test_cancelled_call_is_withdrawn(r, serve):
    """asyncio.wait_for cancelling a queued call removes the request, so it never runs."""
    calc_obj = Calculator()
    server = serve(calc_obj, "calc")

    async def main() -> None:
        calc = await AsyncClient(r, "calc", timeout=30)
        server.stop(10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(calc.add(100), 0.3)

    asyncio.run(main())
    assert r.llen("calc") == 0
    assert calc_obj.acc == 0


def test_unreachable_redis_raises_our_connection_error():
    """With no Redis listening, the error is redisrpc's, never redis-py's."""
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def main() -> None:
        with pytest.raises(redisrpc.RedisConnectionError):
            await AsyncClient(url, "calc", timeout=1)

    asyncio.run(main())


def test_invalid_timeout_is_refused():
    """Timeouts must be positive and finite, as for the sync client."""
    with pytest.raises(ValueError):
        AsyncClient(None, "calc", timeout=0)
    with pytest.raises(ValueError):
        AsyncClient(None, "calc", timeout=float("inf"))


def test_many_calls_in_flight_fail_cleanly_when_redis_dies(own_redis):
    """Calls waiting on a shared reply list all fail with our connection error if Redis goes."""
    calc_obj = Calculator()
    server = redisrpc.Server(
        own_redis.url, "calc", calc_obj, poll_interval=0.1, handle_signals=False
    ).start()
    admin = own_redis.client()
    try:

        async def main() -> list[Any]:
            calc = await AsyncClient(own_redis.url, "calc", timeout=10)
            calls = [asyncio.ensure_future(calc.slow(1)) for _ in range(5)]
            # In flight: one running, the other four queued.
            await wait_for_async(lambda: calc_obj.started.is_set() and admin.llen("calc") == 4)
            own_redis.kill()
            return await asyncio.gather(*calls, return_exceptions=True)

        began = time.monotonic()
        results = asyncio.run(main())
        assert time.monotonic() - began < 5  # not the 10 s timeout
        assert all(isinstance(x, redisrpc.RedisConnectionError) for x in results), results
        assert "may or may not have been delivered" in str(results[0])
    finally:
        admin.close()
        server.stop(10)


@pytest.mark.parametrize("described", [True, False], ids=["shared-reply-list", "own-reply-list"])
def test_queued_calls_cut_off_from_redis_are_withdrawn(own_redis, described):
    """A lost connection while requests wait in the queue: each is withdrawn and never runs."""
    calc_obj = Calculator()
    server = redisrpc.Server(
        own_redis.url, "calc", calc_obj, poll_interval=0.1, handle_signals=False
    ).start()
    caller_url = f"{own_redis.url}?client_name=caller"
    admin = own_redis.client()
    try:

        async def main() -> list[Any]:
            proxy = AsyncClient(caller_url, "calc", timeout=10)
            calc: Any = await proxy if described else proxy
            blocker = asyncio.ensure_future(calc.hold())
            await wait_for_async(calc_obj.started.is_set)  # busy: the next calls queue
            calls = [asyncio.ensure_future(calc.add(1)) for _ in range(3)]
            await wait_for_async(lambda: admin.llen("calc") == 3)
            for entry in admin.client_list():
                if entry.get("name") == "caller":
                    admin.client_kill_filter(_id=entry["id"])
            results = await asyncio.gather(*calls, return_exceptions=True)
            # The server is still busy, so nothing was taken: all withdrawn, no reply list left.
            assert admin.llen("calc") == 0
            assert admin.keys("calc:rpc:*") == []
            calc_obj.release.set()
            await asyncio.gather(blocker, return_exceptions=True)
            return results

        results = asyncio.run(main())
        assert all(isinstance(x, redisrpc.RedisConnectionError) for x in results), results
        assert all(x.started is False and "withdrawn" in str(x) for x in results), results
    finally:
        calc_obj.release.set()
        server.stop(10)  # waits for hold() to end: a request left queued would have run
        admin.close()
    assert calc_obj.acc == 0


def test_calls_in_flight_share_one_reply_list_and_one_push(r, serve):
    """Concurrent calls of a described proxy carry distinct ids and one shared reply queue."""
    server = serve(Calculator(), "calc")

    async def main() -> list[bytes]:
        calc = await AsyncClient(r, "calc", timeout=5)
        server.stop(10)
        calls = [asyncio.ensure_future(calc.echo(i)) for i in range(3)]
        await wait_for_async(lambda: r.llen("calc") == 3)
        queued = r.lrange("calc", 0, -1)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        return queued

    queued = [decode_request(raw, queue="calc") for raw in asyncio.run(main())]
    assert [q.args for q in queued] == [[0], [1], [2]]
    assert len({q.id for q in queued}) == 3
    assert len({q.response_queue for q in queued}) == 1
    assert queued[0].response_queue.startswith("calc:rpc:")
    assert r.llen("calc") == 0  # the cancelled calls were withdrawn


GONE_TIMEOUT = 60.0  # far above the stale window, so failing fast is clearly not the timeout


async def _thing_proxy(url: str, name: str, path: str) -> AsyncClient:
    """A described async proxy that calls through the multiplexer or on per-call reply lists."""
    proxy = await AsyncClient(url, name, timeout=GONE_TIMEOUT)
    if path == "per-call":  # a protocol 1 server does not echo call ids
        proxy._rpc_adopt(Reply(value={**redisrpc.description(proxy), "protocol": 1}))
    return proxy


def _assert_path(proxy: AsyncClient, path: str) -> None:
    """The calls went the way the test means them to (the multiplexer exists only if used)."""
    assert bool(proxy._rpc_state.channels) == (path == "multiplexed")


@pytest.mark.parametrize("path", ["multiplexed", "per-call"])
def test_killed_server_fails_awaiting_calls_fast(spawn_server, redis_url, r, path):
    """SIGKILL: the running call fails started=True, the queued one is withdrawn, both fast."""
    child = spawn_server("servable:Thing", "victim")

    async def main() -> list[Any]:
        thing: Any = await _thing_proxy(redis_url, "victim", path)
        with watch_pushes(r, "victim") as pushed:
            running = asyncio.ensure_future(thing.sleep(GONE_TIMEOUT / 2))
            await wait_for_async(lambda: pushed() >= 1 and r.llen("victim") == 0)  # taken
            queued = asyncio.ensure_future(thing.incr(100))
            await wait_for_async(lambda: pushed() >= 2 and r.llen("victim") == 1)  # queued
        await asyncio.to_thread(child.kill)
        results = await asyncio.gather(running, queued, return_exceptions=True)
        _assert_path(thing, path)
        return results

    began = time.monotonic()
    running, queued = asyncio.run(main())
    assert time.monotonic() - began < 20  # 5 missed heartbeats and two looks, far below 60 s
    assert isinstance(running, redisrpc.ServerGoneError), running
    assert running.started is True
    assert "may have partly run" in str(running)
    assert isinstance(queued, redisrpc.ServerGoneError), queued
    assert queued.started is False
    assert r.llen("victim") == 0


@pytest.mark.parametrize("path", ["multiplexed", "per-call"])
def test_request_withdrawn_when_the_service_is_gone_never_runs(r, redis_url, serve, path):
    """A call queued after the last instance stopped is withdrawn fast and never runs later."""
    thing = Thing()
    server = serve(thing, "svc")

    async def main() -> None:
        proxy: Any = await _thing_proxy(redis_url, "svc", path)
        assert await proxy.incr() == 1
        server.stop(10)
        began = time.monotonic()
        with pytest.raises(redisrpc.ServerGoneError, match="withdrawn") as info:
            await proxy.incr(100)
        assert info.value.started is False
        assert time.monotonic() - began < 10
        _assert_path(proxy, path)

    asyncio.run(main())
    assert r.llen("svc") == 0
    assert r.keys("svc:rpc:*") == []
    serve(thing, "svc")
    assert redisrpc.Client(r, "svc", timeout=5).incr(0) == 1  # incr(100) never ran


@pytest.mark.parametrize("path", ["multiplexed", "per-call"])
def test_non_registering_service_is_never_declared_gone(r, redis_url, serve, path):
    """A service that does not register is waited for: a server that comes late still answers."""
    server = serve(Thing(), "svc", register=False)

    async def main() -> Any:
        proxy: Any = await _thing_proxy(redis_url, "svc", path)
        server.stop(10)
        late = threading.Timer(2.5, serve, args=(Thing(), "svc"), kwargs={"register": False})
        late.start()
        try:
            return await proxy.incr(7)
        finally:
            await asyncio.to_thread(late.join)
            _assert_path(proxy, path)

    assert asyncio.run(main()) == 7


class _CutBatchIO(CutBatch):
    async def step(self, commands: Any) -> list[Any]:
        replies = self.answer(commands)
        if replies is None:
            await asyncio.sleep(0.01)  # a blocking pop's wait: nothing more came
            return [None, None]
        return replies


def test_whole_replies_of_a_batch_are_delivered_when_taking_a_cut_off_blob_fails():
    async def main() -> Any:
        mux = Multiplexer(_CutBatchIO(), "svc", "q", max_size=1000)  # type: ignore[arg-type]
        try:
            return await mux.step(Send("svc", b"{}", "q", "a", 5.0))
        finally:
            mux.forget("a")

    assert asyncio.run(main()).value == "for a"  # it came whole: a later failure must not lose it


class _BatchOfItemsIO:
    """The reader's first pop, made once call ``a`` waits, takes three items of its stream."""

    def __init__(self) -> None:
        self.mux: Multiplexer | None = None
        self.items = [encode_reply(Reply(value=i, id="a", interim="item")) for i in range(3)]

    async def step(self, commands: Any) -> list[Any]:
        if commands[-1][0] == "RPUSH":
            return [1]
        mux = self.mux
        assert mux is not None
        await wait_for_async(lambda: mux.boxes["a"].future is not None)
        items, self.items = self.items, []
        if not items:
            await asyncio.sleep(0.01)  # the reader's blocking pop: nothing more comes
            return [None, None]
        return [[b"q", items[0]], items[1:]]


def test_stream_items_popped_together_reach_the_caller_in_order():
    """Items one pop took while the caller waited come in the order the server sent them."""

    async def main() -> list[Any]:
        io = _BatchOfItemsIO()
        mux = io.mux = Multiplexer(io, "svc", "q", max_size=1000)  # type: ignore[arg-type]
        try:
            first = await mux.step(Send("svc", b"{}", "q", "a", 5.0))
            rest = [await mux.step(Receive("q", "a", 5.0)) for _ in range(2)]
        finally:
            mux.forget("a")
        return [reply.value for reply in (first, *rest)]

    assert asyncio.run(main()) == [0, 1, 2]


class Reporter:
    """Reports progress, then answers."""

    def half_then_done(self) -> str:
        """Progress, then the reply."""
        redisrpc.progress(1, 2, "half")
        return "done"


class _ReaderDropsOnce:
    """A real transport whose reader loses its connection once, when ``messages`` arrived."""

    def __init__(self, real: AsyncTransport, reply_queue: str, messages: int) -> None:
        self.real = real
        self.reply_queue = reply_queue
        self.messages = messages
        self.armed = True

    async def step(self, step: Any) -> Any:
        if self.armed and isinstance(step, tuple) and step[0][:2] == ("BLPOP", self.reply_queue):
            self.armed = False

            async def arrived() -> bool:
                return bool(
                    (await self.real.execute(("LLEN", self.reply_queue)))[0] >= self.messages
                )

            await wait_for_async(arrived)
            raise RedisConnectionError("the reader's connection dropped")
        return await self.real.step(step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_reply_behind_a_progress_message_is_taken_at_recovery(r, serve):
    """The reader fails once the call's progress and reply are on the shared list: the
    recovery pops both, and takes the reply (not the progress, which would report it lost)."""
    serve(Reporter(), "rep")

    async def main() -> Any:
        rep = await AsyncClient(r, "rep", timeout=10)
        state = rep._rpc_state
        queue = state.reply_prefix + "shared"
        transport = _ReaderDropsOnce(state.transport, queue, messages=2)
        mux = Multiplexer(transport, state.name, queue, max_size=state.max_size)  # type: ignore[arg-type]
        state.channels[asyncio.get_running_loop()] = mux
        result = await rep.half_then_done()
        assert not transport.armed
        return result

    assert asyncio.run(main()) == "done"


@pytest.mark.parametrize("described", [True, False], ids=["shared-reply-list", "own-reply-list"])
def test_event_loops_that_ended_leave_no_connection_open(r, serve, described):
    """A proxy called under asyncio.run again and again (a script, or a thread beside
    Jupyter's loop) keeps no connection of the loops that ended, nor their multiplexers."""
    serve(Calculator(), "calc")
    proxy = AsyncClient(r, "calc", timeout=5)
    calc: Any = asyncio.run(proxy._rpc_described()) if described else proxy
    assert asyncio.run(calc.echo(-1)) == -1
    before = len(r.client_list())  # the server's, and those of the loop that just ended
    for i in range(10):
        assert asyncio.run(calc.echo(i)) == i
    wait_for(lambda: len(r.client_list()) <= before, message="connections of ended loops left open")
    assert len(calc._rpc_state.channels) <= 1
