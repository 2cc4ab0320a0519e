"""Handles: values JSON cannot hold come back as remote proxies, released when dropped."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest
from conftest import wait_for

import redisrpc
from redisrpc.server.handles import Handles


class Job:
    """A running job."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._cancelled = False

    @property
    def done(self) -> bool:
        """Whether the job finished."""
        return True

    def result(self, scale: int = 1) -> int:
        """The job's result."""
        return self.n * scale

    def _private(self) -> None:
        raise AssertionError("never runs")


class Lab:
    """Starts jobs."""

    def start(self, n: int) -> Job:
        """Start a job; returns it."""
        return Job(n)

    def several(self) -> dict[str, Any]:
        """A value holding handles among plain data."""
        return {"jobs": [Job(1), Job(2)], "count": 2}

    def echo(self, value: int) -> int:
        """A plain value."""
        return value

    def labelled(self, label: dict[str, Any]) -> dict[str, Any]:
        """A caller's dict, beside a handle."""
        return {"label": label, "job": Job(4)}


def test_a_value_with_no_json_form_comes_back_as_a_handle_proxy(r: Any, serve: Any) -> None:
    server = serve(Lab(), "lab")
    lab = redisrpc.Client(r, "lab")
    job = lab.start(7)
    assert type(job).__name__ == "Job" and job.__doc__ == "A running job."
    assert {"done", "result"} <= set(dir(job)) and "_private" not in dir(job)
    assert job.done is True and job.result(scale=3) == 21
    assert len(server.dispatcher.handles) == 1
    several = lab.several()
    assert several["count"] == 2 and [j.result() for j in several["jobs"]] == [1, 2]
    assert lab.echo(5) == 5  # plain values untouched


def test_dropping_the_proxy_releases_the_handle_on_the_server(r: Any, serve: Any) -> None:
    server = serve(Lab(), "lab")
    lab = redisrpc.Client(r, "lab")
    job = lab.start(1)
    twin = redisrpc.with_timeout(job, 5)  # shares the handle
    del job
    gc.collect()
    assert len(server.dispatcher.handles) == 1
    assert twin.result() == 1
    del twin
    gc.collect()
    wait_for(lambda: len(server.dispatcher.handles) == 0, message="handle not released")
    assert server.dispatcher.handles.expired == 0
    assert not [k for k in r.keys("lab:rpc:*") if b"release" in k]  # no reply to a release


def test_a_released_handle_is_an_error_and_private_paths_never_run(r: Any, serve: Any) -> None:
    server = serve(Lab(), "lab")
    lab = redisrpc.Client(r, "lab")
    job = lab.start(2)
    handle = job._rpc_state.path
    server.dispatcher.handles.release([handle])
    with pytest.raises(redisrpc.RemoteException, match="released or expired"):
        job.result()
    live = lab.start(3)
    path = live._rpc_state.path
    raw = json.dumps(
        {"function_call": {"name": f"{path}._private"}, "response_queue": "lab:rpc:x"}
    ).encode()
    _, data = server.handle(raw)
    assert data is not None and b"is private" in data


def test_handles_are_bounded_by_count_and_time_if_the_caller_vanishes() -> None:
    now = [0.0]
    handles = Handles(lambda obj, path: {}, max_count=3, ttl=10.0, clock=lambda: now[0])
    ids = [handles.add(object()) for _ in range(5)]
    assert len(handles) == 3 and handles.expired == 2
    with pytest.raises(KeyError):
        handles.get(ids[0])
    now[0] = 5.0
    handles.get(ids[4])  # used: stays
    now[0] = 12.0
    handles.add(object())  # the sweep drops those unused for more than 10 s
    assert len(handles) == 2 and handles.expired == 4


def test_server_memory_stays_bounded_over_many_calls_returning_handles(r: Any, serve: Any) -> None:
    server = serve(Lab(), "lab")
    lab = redisrpc.Client(r, "lab")
    for i in range(500):
        assert lab.start(i).result() == i  # each proxy dropped at once
    gc.collect()
    wait_for(lambda: len(server.dispatcher.handles) == 0, message="handles not released")
    kept = [lab.start(i) for i in range(1100)]  # held: the count bound pushes the oldest out
    assert len(server.dispatcher.handles) <= 1000
    assert kept[-1].result() == 1099


class Result:
    """A measurement's result: its attributes are the quantities it has."""

    def __init__(self, **quantities: float) -> None:
        self.__dict__.update(quantities)


class Bench:
    """Hands out its parameters and results by reference."""

    def __init__(self) -> None:
        qcodes = pytest.importorskip("qcodes.instrument_drivers.mock_instruments")
        self.chan = qcodes.DummyChannelInstrument("bench_handles")

    def parameter(self, name: str) -> Any:
        """One of the instrument's parameters (IDN is read-only, A's temperature settable)."""
        return self.chan.IDN if name == "IDN" else self.chan.A.temperature

    def channels(self, count: int) -> Any:
        """The first ``count`` channels."""
        return self.chan.channels[:count]

    def measure(self, **quantities: float) -> Result:
        """A result holding these quantities."""
        return Result(**quantities)


def test_each_handle_is_described_as_itself_not_as_the_first_of_its_type(
    r: Any, serve: Any
) -> None:
    """Values of one class differ in what they show: another parameter, a longer channel list."""
    bench = Bench()
    try:
        serve(bench, "bench")
        proxy = redisrpc.Client(r, "bench")
        idn = proxy.parameter("IDN")
        temperature = proxy.parameter("temperature")
        assert "set" not in dir(idn) and "set" in dir(temperature)
        assert "[K]" in (temperature.__doc__ or "")
        temperature.set(4.2)
        assert bench.chan.A.temperature() == 4.2
        assert len(proxy.channels(2)) == 2
        five = proxy.channels(5)
        assert len(five) == 5 and five[4].temperature() == 0  # ChanE, reachable
        assert proxy.measure(x=1.0).x == 1.0
        assert proxy.measure(y=2.0).y == 2.0
    finally:
        bench.chan.close()


def test_a_dict_using_the_tag_key_beside_a_handle_comes_back_unchanged(r: Any, serve: Any) -> None:
    """A caller's data is never taken for a tagged value, also in a reply that holds handles."""
    serve(Lab(), "lab")
    lab = redisrpc.Client(r, "lab")
    assert lab.echo({"__redisrpc__": "bytes", "base64": "aGk="})["base64"] == "aGk="
    label = {"__redisrpc__": "bytes", "base64": "aGk="}
    reply = lab.labelled(label)
    assert reply["label"] == label and reply["job"].result() == 4
