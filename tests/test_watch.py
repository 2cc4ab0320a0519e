"""redisrpc.watch: live values, one shared poller per service, no reads once nobody watches."""

from __future__ import annotations

import asyncio
import logging
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
from redisrpc.core.keys import poller_key, watch_key, watch_now_key, watchers_key
from redisrpc.core.transport import Transport
from redisrpc.core.watch import lease_member, parse_lease
from redisrpc.notebook.live import LiveValue, format_value, sparkline
from redisrpc.server.poller import Poller


class Meter:
    """An instrument whose reads are counted, and which is never read during a call."""

    def __init__(self) -> None:
        self._level = 1.0
        self.reads = 0
        self.overlaps = 0
        self.failing = False
        self._busy = False
        self.ch1 = Channel()

    @property
    def level(self) -> float:
        """The level, in volts."""
        self.reads += 1
        self.overlaps += self._busy
        if self.failing:
            raise RuntimeError("sensor unplugged")
        return self._level

    @level.setter
    def level(self, value: float) -> None:
        self._level = value

    def work(self, seconds: float) -> str:
        """Keep the instrument busy."""
        self._busy = True
        try:
            time.sleep(seconds)
        finally:
            self._busy = False
        return "done"

    def reset(self) -> None:
        """A method that changes things: never watchable."""
        self._level = 0.0


class Gauge:
    """Marked members only: read-only methods say they change nothing."""

    @redisrpc.expose(readonly=True)
    def reading(self) -> float:
        """A read-only method without arguments: watchable."""
        return 2.0

    @redisrpc.expose(readonly=True)
    def scaled(self, factor: float) -> float:
        """A read-only method with an argument: not watchable."""
        return 2.0 * factor


class Channel:
    """A child object, reached as ``meter.ch1``."""

    def __init__(self) -> None:
        self.volts = 0.5


def test_watch_gives_the_current_value_then_each_change_made_by_another_client(r, serve):
    meter = Meter()
    serve(meter, "meter")
    watcher = redisrpc.Client(r, "meter")
    with redisrpc.watch(watcher, "level", interval=0.1) as level:
        assert level.wait() == 1.0
        values = iter(level)
        assert next(values) == 1.0
        redisrpc.Client(r, "meter").level = 2.5  # another client, its own connection
        assert next(values) == 2.5
        assert level.latest == 2.5 and level.error is None
        assert level.updated is not None and abs(level.updated - time.time()) < 5
    assert level.closed
    assert list(level) == []  # a closed watch yields nothing more


def test_unchanged_values_are_published_once(r, serve):
    meter = Meter()
    serve(meter, "meter")
    with redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.05) as level:
        level.wait()
        server_reads = meter.reads
        wait_for(lambda: meter.reads >= server_reads + 10, message="ten more reads")
        assert r.xlen(watch_key("meter", "level")) == 1
        assert level.values == 1


def test_five_watchers_share_one_read_per_interval(r, serve):
    meter = Meter()
    server = serve(meter, "meter")
    watches = [redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.1) for _ in range(5)]
    try:
        for each in watches:
            each.wait()
        assert r.zcard(watchers_key("meter")) == 5
        turns, reads, began = server.poller.turns, meter.reads, time.monotonic()
        wait_for(lambda: server.poller.turns >= turns + 20, message="twenty poller turns")
        elapsed = time.monotonic() - began
        made = meter.reads - reads
        # One read per interval for the service: five pollers would make five times as many.
        assert 0 < made <= elapsed / 0.1 + 3, (made, elapsed)
        redisrpc.Client(r, "meter").level = 4.0
        for each in watches:
            wait_for(lambda each=each: each.latest == 4.0, message="every watcher sees 4.0")
    finally:
        for each in watches:
            each.close()


def test_the_server_stops_reading_once_the_last_watcher_closes(r, serve):
    meter = Meter()
    server = serve(meter, "meter")
    first = redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.05)
    second = redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.05)
    second.wait()
    first.close()
    reads = meter.reads
    wait_for(lambda: meter.reads > reads + 3, message="still read for the second watcher")
    second.close()
    assert r.zcard(watchers_key("meter")) == 0  # removed before close() returned
    turns = server.poller.turns
    wait_for(lambda: server.poller.turns >= turns + 2, message="two idle poller turns")
    reads = meter.reads
    wait_for(lambda: server.poller.turns >= turns + 4, message="two more idle turns")
    assert meter.reads == reads
    assert not r.exists(poller_key("meter")) or r.zcard(watchers_key("meter")) == 0


def _watcher_process(url: str) -> subprocess.Popen[str]:
    """A child process that watches meter.level and prints each value."""
    code = textwrap.dedent(
        f"""
        import redisrpc
        level = redisrpc.watch(redisrpc.Client({url!r}, "meter"), "level", interval=0.1)
        for value in level:
            print("value", value, flush=True)
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=python_env()
    )


def test_a_killed_watchers_lease_expires_and_reading_stops(r, redis_url, serve):
    meter = Meter()
    server = serve(meter, "meter")
    child = _watcher_process(redis_url)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["value", "1.0"]
        redisrpc.Client(r, "meter").level = 3.0  # a change made by this process reaches it
        assert child.stdout.readline().split() == ["value", "3.0"]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    wait_for(lambda: r.zcard(watchers_key("meter")) == 0, timeout=15, message="lease expired")
    turns = server.poller.turns
    wait_for(lambda: server.poller.turns >= turns + 1, message="a poller turn")
    reads = meter.reads
    wait_for(lambda: server.poller.turns >= turns + 3, message="two more poller turns")
    assert meter.reads == reads


def test_only_members_that_change_nothing_can_be_watched(r, serve):
    serve(Meter(), "meter")
    serve(Gauge(), "gauge")
    meter = redisrpc.Client(r, "meter")
    gauge = redisrpc.Client(r, "gauge")
    with pytest.raises(TypeError, match="not marked @expose"):
        redisrpc.watch(meter, "reset")
    with pytest.raises(TypeError, match="takes factor"):
        redisrpc.watch(gauge, "scaled")
    with pytest.raises(AttributeError, match="no property 'nope'"):
        redisrpc.watch(meter, "nope")
    with pytest.raises(AttributeError):
        redisrpc.watch(meter, "_level")
    with pytest.raises(ValueError, match="interval"):
        redisrpc.watch(meter, "level", interval=0)
    assert r.zcard(watchers_key("meter")) == 0  # refused locally: nothing was leased
    assert r.zcard(watchers_key("gauge")) == 0
    with redisrpc.watch(gauge, "reading", interval=0.1) as reading:
        assert reading.wait() == 2.0


def test_the_server_refuses_what_an_undescribed_proxy_asks_to_watch(r, serve):
    meter = Meter()
    serve(meter, "meter")
    blind = redisrpc.Client(r, "meter", describe=False)
    with redisrpc.watch(blind, "reset", interval=0.05) as reset:
        with pytest.raises(redisrpc.RemoteException, match="not marked @expose") as refused:
            reset.wait()
        assert isinstance(refused.value, TypeError)
        assert meter.level == 1.0  # reset() never ran
    with (
        redisrpc.watch(blind, "nothing", interval=0.05) as nothing,
        pytest.raises(redisrpc.RemoteException, match="no exposed member"),
    ):
        nothing.wait()
    assert r.zcard(watchers_key("meter")) == 0


def test_an_older_server_is_refused_locally(r, serve):
    serve(Meter(), "meter")
    meter = redisrpc.Client(r, "meter")
    redisrpc.description(meter)["protocol"] = 4  # as described by a protocol 4 server
    with pytest.raises(TypeError, match="protocol 4"):
        redisrpc.watch(meter, "level")


def test_a_failed_read_is_reported_and_values_resume(r, serve):
    meter = Meter()
    serve(meter, "meter")
    with redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.05) as level:
        assert level.wait() == 1.0
        meter.failing = True
        wait_for(lambda: level.error is not None, message="the error arrives")
        assert isinstance(level.error, RuntimeError)
        assert "sensor unplugged" in str(level.error)
        assert level.latest == 1.0  # the last good value stays
        with pytest.raises(RuntimeError, match="sensor unplugged"):
            level.wait()
        meter.failing = False
        meter.level = 6.0
        wait_for(lambda: level.latest == 6.0 and level.error is None, message="values resume")


def test_a_childs_member_can_be_watched(r, serve):
    meter = Meter()
    serve(meter, "meter")
    proxy = redisrpc.Client(r, "meter")
    with redisrpc.watch(proxy.ch1, "volts", interval=0.05) as volts:
        assert volts.wait() == 0.5
        assert volts.label == "meter.ch1.volts"
        meter.ch1.volts = 0.75
        wait_for(lambda: volts.latest == 0.75, message="the child's change arrives")


def test_values_are_read_between_calls_on_a_one_worker_server(r, serve):
    meter = Meter()
    serve(meter, "meter")
    proxy = redisrpc.Client(r, "meter")
    with redisrpc.watch(proxy, "level", interval=0.05) as level:
        level.wait()
        reads = meter.reads
        assert proxy.work(0.6) == "done"
        wait_for(lambda: meter.reads > reads + 2, message="reads after the call")
    assert meter.overlaps == 0


def test_a_watch_opened_during_a_long_call_starts_at_once_and_reads_after_it(r, serve):
    meter = Meter()
    serve(meter, "meter")
    proxy = redisrpc.Client(r, "meter")
    worker = threading.Thread(target=proxy.work, args=(4.0,))
    worker.start()
    wait_for(lambda: redisrpc.running(proxy), message="work() running")
    level = redisrpc.watch(proxy, "level", interval=0.05)  # a described proxy: no call at all
    try:
        assert worker.is_alive()  # made while the call runs: it did not queue behind it
        assert level.values == 0 and meter.reads == 0  # never read during the call
        assert level.wait(timeout=10) == 1.0
        assert not worker.is_alive() or not meter._busy
    finally:
        level.close()
        worker.join(10)
    assert meter.overlaps == 0


def test_watching_works_while_another_client_holds_the_lock(r, serve):
    meter = Meter()
    serve(meter, "meter")
    holder = redisrpc.Client(r, "meter")
    with redisrpc.lock(holder), redisrpc.watch(redisrpc.Client(r, "meter"), "level") as level:
        assert level.wait() == 1.0
        holder.level = 9.0
        wait_for(lambda: level.latest == 9.0, message="the holder's change arrives")


def test_another_instance_takes_over_the_polling(r, serve):
    first_meter, second_meter = Meter(), Meter()
    first = serve(first_meter, "meter", share=True)
    second = serve(second_meter, "meter", share=True)
    with redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.05) as level:
        level.wait()
        holder, other = (
            (first, second)
            if r.get(poller_key("meter")) == first.ident.encode()
            else (
                second,
                first,
            )
        )
        other_meter = second_meter if holder is first else first_meter
        holder.stop(10)
        wait_for(lambda: r.get(poller_key("meter")) == other.ident.encode(), message="taken over")
        other_meter.level = 8.0
        wait_for(lambda: level.latest == 8.0, message="the new poller's value arrives")


def test_a_malformed_lease_is_removed_and_logged(r, serve, caplog):
    meter = Meter()
    server = serve(meter, "meter")
    r.zadd(watchers_key("meter"), {b"\xff not json": time.time() * 1000 + 60_000})
    r.zadd(watchers_key("meter"), {lease_member("level", 1e9, "x"): time.time() * 1000 + 60_000})
    with caplog.at_level(logging.WARNING, logger="redisrpc.server"):
        turns = server.poller.turns
        wait_for(lambda: server.poller.turns >= turns + 2, message="two poller turns")
        assert r.zcard(watchers_key("meter")) == 0
    assert "malformed watch lease" in caplog.text
    with redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.05) as level:
        assert level.wait() == 1.0  # and it keeps serving


def test_lease_members_round_trip_and_garbage_is_rejected():
    assert parse_lease(lease_member("ch1.volts", 0.5, "abc")) == ("ch1.volts", 0.5, "abc")
    for garbage in (b"", b"[]", b'["x", 0, "id"]', b'["", 1, "id"]', b"[1, 1, 1]", b"\xff"):
        assert parse_lease(garbage) is None


def test_async_watch_iterates_each_change(r, redis_url, serve):
    meter = Meter()
    serve(meter, "meter")

    async def main() -> list[float]:
        proxy = await redisrpc.AsyncClient(redis_url, "meter")
        seen: list[float] = []
        async with redisrpc.watch(proxy, "level", interval=0.05) as level:
            async for value in level:
                seen.append(value)
                if value == 1.0:
                    threading.Thread(target=setattr, args=(meter, "level", 5.0)).start()
                if value == 5.0:
                    break
        return seen

    assert asyncio.run(main()) == [1.0, 5.0]
    assert r.zcard(watchers_key("meter")) == 0  # removed before the async with ended


def test_a_sync_close_of_an_async_watch_leaves_the_lease_to_its_reader(r, redis_url, serve):
    serve(Meter(), "meter")

    async def main() -> None:
        proxy = await redisrpc.AsyncClient(redis_url, "meter")
        level = await redisrpc.watch(proxy, "level", interval=0.05).start()
        assert r.zcard(watchers_key("meter")) == 1
        level.close()  # no await: the loop's reader removes the lease
        await redisrpc.testing.wait_for_async(
            lambda: r.zcard(watchers_key("meter")) == 0, message="the reader removed the lease"
        )

    asyncio.run(main())


def test_observers_hear_each_value_and_can_stop(r, serve):
    meter = Meter()
    serve(meter, "meter")
    heard: list[Any] = []
    with redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.05) as level:
        forget = level.observe(lambda w: heard.append(w.latest))
        level.wait()
        meter.level = 2.0
        wait_for(lambda: 2.0 in heard, message="the observer hears 2.0")
        forget()
        count = len(heard)
        meter.level = 3.0
        wait_for(lambda: level.latest == 3.0, message="3.0 arrives")
        assert len(heard) == count


def test_a_watch_displays_as_a_live_widget_that_follows_its_values(r, serve):
    meter = Meter()
    serve(meter, "meter")
    with redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.05) as level:
        level.wait()
        live = LiveValue(level)
        assert "<code>1</code>" in live.value.value or "<code>1.0</code>" in live.value.value
        meter.level = 2.25
        wait_for(lambda: "2.25" in live.value.value, message="the widget shows 2.25")
        assert "<polyline" in live.plot.value
        meter.failing = True
        wait_for(lambda: "sensor unplugged" in live.status.value, message="the error shows")
        assert level._repr_mimebundle_() == {"text/plain": repr(level)}  # a terminal
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys.modules["redisrpc.client.watch"], "_in_kernel", lambda: True)
            bundle = level._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["text/plain"] == repr(level)
    wait_for(lambda: "closed" in live.status.value, message="a closed watch says so")


def test_values_are_formatted_short_and_plotted_as_steps():
    assert format_value(1 / 3) == "0.333333"
    assert format_value(7) == "7"
    assert format_value(True) == "True"
    assert format_value("x" * 500).endswith("…")
    assert sparkline([], 0.0) == ""
    svg = sparkline([(0.0, 1.0), (1.0, 2.0)], 2.0)
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 4  # 1 at t=0, held to t=1, 2 at t=1, held to now
    assert "1 to 2" in svg  # the range, since the plot has no axes


def test_members_named_safe_are_read_during_a_call(r, serve):
    meter = Meter()
    serve(meter, "meter", read_during_calls={"level"})
    proxy = redisrpc.Client(r, "meter")
    with redisrpc.watch(proxy, "level", interval=0.05) as level:
        level.wait()
        done = threading.Event()
        worker = threading.Thread(target=lambda: (proxy.work(1.0), done.set()))
        worker.start()
        wait_for(lambda: meter.overlaps >= 3, message="reads while work() runs")
        assert not done.is_set()
        worker.join(10)


def test_a_redis_without_lpop_count_still_polls():
    """Before Redis 6.2 `LPOP key count` is an error reply: the turn goes on without it."""

    class OldRedis:
        def now_ms(self) -> int:
            return 1_000

        def execute(self, *commands: Any, **_: Any) -> list[Any]:
            replies: list[Any] = [0, [lease_member("level", 0.5, "w")], b"me", 1]
            if commands[-1][0] == "LPOP":
                replies[3] = redisrpc.TransportError("ERR wrong number of arguments")
                raise redisrpc.CommandError("ERR wrong number", replies=replies)
            return [1] * len(commands)

    read: list[str] = []
    poller = Poller(OldRedis(), "meter", "me", lambda t: read.append(t) or b"{}", lambda s: None)
    assert 0 <= poller.turn() <= 1.0
    assert read == ["level"]  # this instance holds the poller key: it read the leased member


def test_a_server_nobody_watched_leaves_no_watch_keys(r, serve):
    server = serve(Meter(), "meter")
    turns = server.poller.turns
    wait_for(lambda: server.poller.turns >= turns + 2, message="two poller turns")
    server.stop(10)
    assert not server.running
    assert [k for k in r.keys("meter:*") if b"watch" in k or b"poller" in k] == []


class Quitter(Meter):
    """An instrument whose driver gives up by calling sys.exit()."""

    @property
    def gone(self) -> float:
        """A read that exits."""
        sys.exit("driver gave up")


def test_a_member_that_calls_sys_exit_is_reported_and_the_others_stay_watched(r, serve):
    meter = Quitter()
    serve(meter, "meter")
    proxy = redisrpc.Client(r, "meter")
    with (
        redisrpc.watch(proxy, "level", interval=0.05) as level,
        redisrpc.watch(proxy, "gone", interval=0.05) as gone,
    ):
        assert level.wait() == 1.0
        with pytest.raises(redisrpc.RemoteException, match="driver gave up"):
            gone.wait()
        meter.level = 7.0
        wait_for(lambda: level.latest == 7.0, message="the other member's change arrives")


def test_a_lease_nested_too_deeply_to_parse_is_removed_and_polling_goes_on(r, serve):
    serve(Meter(), "meter")
    hostile = b"[" * 100_000
    r.zadd(watchers_key("meter"), {hostile: time.time() * 1000 + 60_000})
    with redisrpc.watch(redisrpc.Client(r, "meter"), "level", interval=0.05) as level:
        assert level.wait() == 1.0
    assert r.zscore(watchers_key("meter"), hostile) is None


class _PublishFailsOnce:
    """A transport whose first publish (XADD) fails, as when Redis restarts during a turn."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.failed = False

    def now_ms(self) -> int:
        return self.transport.now_ms()

    def execute(self, *commands: Any, **options: Any) -> list[Any]:
        if not self.failed and any(command[0] == "XADD" for command in commands):
            self.failed = True
            raise redisrpc.RedisConnectionError("Redis went away")
        return self.transport.execute(*commands, **options)


def _newest(r: Any, target: str) -> bytes | None:
    """The newest message published for ``target`` on the service meter."""
    entries = r.xrevrange(watch_key("meter", target), count=1)
    return entries[0][1][b"reply"] if entries else None


def test_a_change_whose_publishing_failed_is_published_once_redis_answers(r):
    r.zadd(watchers_key("meter"), {lease_member("level", 0.05, "w"): time.time() * 1000 + 60_000})
    flaky = _PublishFailsOnce(Transport.of(r))
    value = b'{"return_value":2.0}'
    poller = Poller(flaky, "meter", "me", lambda target: value, lambda seconds: None)
    with pytest.raises(redisrpc.RedisConnectionError):
        poller.turn()  # read 2.0, and could not publish it
    assert flaky.failed and _newest(r, "level") is None
    wait_for(
        lambda: poller.turn() is not None and _newest(r, "level") == value,
        message="2.0 published on a later turn",
    )


def test_an_instance_taking_over_the_polling_publishes_what_it_reads(r):
    r.zadd(watchers_key("meter"), {lease_member("level", 0.05, "w"): time.time() * 1000 + 60_000})
    transport = Transport.of(r)
    one, two = b'{"return_value":1.0}', b'{"return_value":2.0}'
    shared = [one]  # the instrument both instances read
    first = Poller(transport, "meter", "first", lambda target: shared[0], lambda seconds: None)
    second = Poller(transport, "meter", "second", lambda target: shared[0], lambda seconds: None)
    first.turn()  # takes the poller key and publishes 1.0
    assert r.get(poller_key("meter")) == b"first" and _newest(r, "level") == one
    r.rpush(watch_now_key("meter"), "level")  # a new watcher, whose read the second takes
    second.turn()
    assert second.reads == 1 and r.get(poller_key("meter")) == b"first"
    shared[0] = two
    wait_for(
        lambda: first.turn() is not None and _newest(r, "level") == two,
        message="the first instance publishes 2.0",
    )
    first.stop()  # it stops, and gives up the poller key
    assert r.get(poller_key("meter")) is None
    shared[0] = one
    wait_for(
        lambda: second.turn() is not None and _newest(r, "level") == one,
        message="the second instance, now polling, publishes 1.0",
    )
    assert r.get(poller_key("meter")) == b"second"


class Broken:
    """A service whose only member always fails."""

    @property
    def level(self) -> float:
        """A sensor that is unplugged."""
        raise RuntimeError("sensor unplugged")


def test_the_cli_prints_the_error_of_a_member_that_fails_from_the_start(r, redis_url, serve):
    serve(Broken(), "broken")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "redisrpc", "watch", "broken", "level", "--interval", "0.1"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**python_env(), "REDIS_URL": redis_url},
    )
    assert watcher.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watcher.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("sensor unplugged" in line for line in lines), message="the error")
        assert lines[0].split()[1] == "error"  # the first line: "HH:MM:SS.mmm error ..."
    finally:
        watcher.terminate()
        watcher.wait(30)
        reader.join(10)


def test_an_async_watch_closes_after_its_event_loop_ended(r, redis_url, serve):
    serve(Meter(), "meter")

    async def main() -> Any:
        proxy = await redisrpc.AsyncClient(redis_url, "meter")
        level = await redisrpc.watch(proxy, "level", interval=0.05).start()
        assert await asyncio.wait_for(level.__aiter__().__anext__(), 10) == 1.0
        return level

    level = asyncio.run(main())  # the loop, and with it the watch's reader, ends here
    level.close()
    assert level.closed
