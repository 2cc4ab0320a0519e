"""The client proxy against a real redis-server: calls, errors, timeouts, threads, refresh."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
import pytest
from conftest import wait_for
from hypothesis import given
from hypothesis import strategies as st

import redisrpc
from redisrpc.client import proxy as proxy_module
from redisrpc.client.signature import signature_from_params
from redisrpc.core import call as call_module
from redisrpc.core.plan import Plan
from redisrpc.core.protocol import ErrorInfo, Reply, Request, encode_request
from redisrpc.sim.instruments import PowerSupply


@redisrpc.writable("threshold")  # plain attributes are read-only unless marked
class Lab:
    """A small lab bench."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.threshold = 0.5

    def add(self, a: float, b: float = 1.0, *, note: str = "") -> float:
        """Add a and b."""
        self.log.append(f"add {a} {b}")
        return a + b

    def div(self, a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    def lookup(self, key: str) -> str:
        return {"a": "alpha"}[key]

    def echo(self, value: Any) -> Any:
        return value

    def sleep(self, seconds: float) -> str:
        """Sleep, then say so."""
        self.log.append(f"sleep {seconds}")
        time.sleep(seconds)
        return "slept"

    def mark(self, tag: str) -> None:
        self.log.append(f"mark {tag}")

    @property
    def temperature(self) -> float:
        """Temperature in kelvin."""
        return 4.2


class Boom:
    """Stands in for the proxy's transport, its only way to Redis: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the proxy used Redis: .{name}")


@pytest.fixture
def lab() -> Lab:
    """A fresh Lab."""
    return Lab()


@pytest.fixture
def client(r, serve, lab) -> redisrpc.Client:
    """A described client of the served Lab."""
    serve(lab, "lab")
    return redisrpc.Client(r, "lab", timeout=5)


def test_methods_are_real_functions_with_remote_names_docs_and_signatures(client):
    """Each remote method is a function carrying its remote name, doc and signature."""
    assert type(client).__name__ == "Lab" and type(client).__doc__ == "A small lab bench."
    assert isinstance(client, redisrpc.Client)
    add = type(client).add
    assert inspect.isfunction(add)
    assert (add.__name__, add.__doc__) == ("add", "Add a and b.")
    assert (
        str(inspect.signature(client.add))
        == "(a: float, b: float = 1.0, *, note: str = '') -> float"
    )
    assert str(inspect.signature(client.add)).startswith("(a")  # bound: no self
    assert isinstance(type(client).temperature, property)
    assert type(client).temperature.__doc__.startswith("Temperature in kelvin.")
    assert {
        "add",
        "div",
        "echo",
        "log",
        "lookup",
        "mark",
        "sleep",
        "temperature",
        "threshold",
    } <= set(dir(client))


def test_calls_properties_and_classic_alias(client, r, lab):
    """Calls return remote values; properties read and write remotely; RedisRPCClient is Client."""
    assert client.add(2, b=3) == 5
    assert client.temperature == 4.2
    assert client.threshold == 0.5
    client.threshold = 0.75
    assert lab.threshold == 0.75 and client.threshold == 0.75
    assert redisrpc.RedisRPCClient is redisrpc.Client
    classic = redisrpc.RedisRPCClient(r, "lab", timeout=5)
    assert classic.add(1) == 2.0


def test_values_travel_both_ways(client):
    """Tuples arrive as lists; bytes, NaN and arrays survive the round trip."""
    assert client.echo((1, (2, 3))) == [1, [2, 3]]
    assert client.echo(b"\x00\xff") == b"\x00\xff"
    assert np.isnan(client.echo(float("nan")))
    arr = np.arange(6, dtype="<i2").reshape(2, 3)
    back = client.echo(arr)
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)


def test_unencodable_argument_fails_locally_naming_its_type(client, r):
    """An argument with no encoding raises EncodingError before anything is sent."""
    with pytest.raises(redisrpc.EncodingError, match="object"):
        client.echo(object())
    assert r.llen("lab") == 0


def test_unencodable_return_value_raises_encoding_error(client, lab):
    """A return value the server cannot encode raises EncodingError naming its type.

    (A value with no JSON form travels as a handle instead: tests/test_lab_handles.py.)
    """
    lab.thing = lambda: {(1, 2): "a tuple key"}  # type: ignore[attr-defined]
    with pytest.raises(redisrpc.EncodingError, match="tuple"):
        redisrpc.Client(client._rpc_state.transport, "lab", timeout=5).thing()


def test_remote_exceptions_are_builtin_types_with_remote_tracebacks(client):
    """`except ZeroDivisionError` works; the remote traceback is shown, framed as remote."""
    with pytest.raises(ZeroDivisionError) as info:
        client.div(1, 0)
    exc = info.value
    assert isinstance(exc, redisrpc.RemoteException)
    assert exc.remote_type == "ZeroDivisionError" and str(exc) == "division by zero"
    text = "".join(traceback.format_exception(exc))
    assert "RemoteTraceback: from lab@" in text and "end of remote traceback" in text
    assert "in div" in text and "return a / b" in text
    assert text.index("return a / b") < text.index("RemoteZeroDivisionError: division by zero")
    with pytest.raises(KeyError):
        client.lookup("zzz")


def test_wrong_arguments_are_a_remote_type_error(client, lab):
    """Wrong arguments raise TypeError (remote) and run nothing."""
    with pytest.raises(TypeError):
        client.add(1, 2, 3)
    assert lab.log == []


def test_unknown_and_private_names_fail_locally(client, r):
    """Unknown names, `_` names and IPython probes raise AttributeError without Redis traffic."""
    client._rpc_state.transport = Boom()  # any Redis use would fail the test
    with pytest.raises(AttributeError, match=r"no method or property 'nope' \(known: add"):
        client.nope  # noqa: B018
    for name in [
        "_ipython_canary_method_should_not_exist_",
        "__wrapped__",
        "_private",
        "__length_hint__",
        "_repr_latex_",
        "_repr_json_",
        "_ipython_display_",
    ]:
        assert not hasattr(client, name), name
    for name in ["_repr_html_", "_repr_markdown_", "_repr_pretty_"]:
        if hasattr(client, name) and name != "_repr_pretty_":
            getattr(client, name)()  # rich reprs come from the cached description
    with pytest.raises(AttributeError):
        client.nope = 1
    with pytest.raises(AttributeError):
        client.temperature = 5  # read-only
    assert "Lab with 6 methods and 3 properties" in repr(client)
    str(inspect.signature(client.sleep))
    dir(client)


def test_repr_is_local_and_informative(client, r):
    """repr names the service, remote class, member counts and Redis location."""
    text = repr(client)
    assert text.startswith(
        "<redisrpc proxy 'lab': Lab with 6 methods and 3 properties on 127.0.0.1:"
    )
    undescribed = redisrpc.Client(r, "lab", describe=False)
    assert "(not described)" in repr(undescribed)


def test_describe_false_gives_dynamic_calls(r, serve, lab):
    """describe=False sends no __describe__; any public name is a plain remote call."""
    serve(lab, "lab")
    dynamic = redisrpc.Client(r, "lab", timeout=5, describe=False)
    assert dynamic.add(1, 2) == 3
    assert redisrpc.description(dynamic) is None
    with pytest.raises(AttributeError):
        dynamic.missing()  # remote AttributeError
    with pytest.raises(AttributeError):
        dynamic._private  # noqa: B018 - never remote


def test_refresh_picks_up_new_members(client, lab):
    """A proxy keeps its description until refresh(proxy) fetches the new one."""
    lab.calibrate = lambda: "calibrated"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        client.calibrate  # noqa: B018
    found = redisrpc.refresh(client)
    assert found is redisrpc.description(client)
    assert "calibrate" in {m["name"] for m in found["methods"]}
    assert client.calibrate() == "calibrated"


def test_with_timeout_returns_a_sibling_and_leaves_the_original(client):
    """with_timeout(proxy, s) changes only the returned proxy's timeout."""
    slow = redisrpc.with_timeout(client, 0.3)
    assert type(slow) is type(client)
    assert slow._rpc_state.timeout == 0.3 and client._rpc_state.timeout == 5
    assert slow.add(1) == 2
    with pytest.raises(redisrpc.TimeoutException):
        slow.sleep(1.5)
    assert client.sleep(0.1) == "slept"
    for bad in [0, -1, float("inf"), float("nan")]:
        with pytest.raises(ValueError):
            redisrpc.with_timeout(client, bad)


@pytest.mark.parametrize("bad", [0, -2, float("inf"), float("nan")])
def test_client_timeout_must_be_finite_and_positive(r, bad):
    """A client needs a positive, finite timeout."""
    with pytest.raises(ValueError, match="finite"):
        redisrpc.Client(r, "lab", timeout=bad, describe=False)


def test_default_timeout_is_finite():
    """The default per-call timeout is finite (30 s)."""
    assert redisrpc.DEFAULT_TIMEOUT == 30.0
    assert inspect.signature(redisrpc.Client).parameters["timeout"].default == 30.0


def test_timeout_with_no_server_withdraws_the_request(r):
    """No server: TimeoutException(started=False) close to the timeout, request withdrawn."""
    proxy = redisrpc.Client(r, "nobody", timeout=0.6, describe=False)
    t0 = time.monotonic()
    with pytest.raises(redisrpc.TimeoutException) as info:
        proxy.anything(1)
    elapsed = time.monotonic() - t0
    assert info.value.started is False and "withdrawn" in str(info.value)
    assert isinstance(info.value, TimeoutError)
    assert 0.5 <= elapsed < 3.0
    assert r.llen("nobody") == 0


def test_timeout_of_a_started_call_says_it_may_still_run(client, lab):
    """A taken but slow call: TimeoutException(started=True)."""
    with pytest.raises(redisrpc.TimeoutException) as info:
        redisrpc.with_timeout(client, 0.4).sleep(1.5)
    assert info.value.started is True and "may still be running" in str(info.value)
    assert "timed out after 0.4 s" in str(info.value) and "asked to cancel" in str(info.value)


def test_describing_a_missing_server_times_out(r):
    """Client() with describe=True against no server raises TimeoutException, not a hang."""
    t0 = time.monotonic()
    with pytest.raises(redisrpc.TimeoutException):
        redisrpc.Client(r, "nobody", timeout=0.5)
    assert time.monotonic() - t0 < 3.0


def test_withdrawn_request_never_runs_when_a_server_starts_later(r, serve, lab):
    """A call that timed out before any server took it is never executed afterwards."""
    proxy = redisrpc.Client(r, "lab", timeout=0.5, describe=False)
    with pytest.raises(redisrpc.TimeoutException):
        proxy.mark("late")
    serve(lab, "lab")
    assert proxy.add(1) == 2  # the server runs, and has drained the queue
    assert lab.log == ["add 1 1.0"]


def test_request_not_withdrawn_is_refused_by_its_deadline(r, serve, lab, monkeypatch):
    """Even when withdrawal fails (e.g. the client died), the deadline stops a late start."""
    proxy = redisrpc.Client(r, "lab", timeout=0.5, describe=False)
    monkeypatch.setattr(call_module, "withdrawing", _withdrawing_nothing)
    with pytest.raises(redisrpc.TimeoutException):
        proxy.mark("late")
    assert r.llen("lab") == 1  # still queued
    serve(lab, "lab")
    assert redisrpc.Client(r, "lab", timeout=5).add(1) == 2
    assert r.llen("lab") == 0
    assert lab.log == ["add 1 1.0"]


def _withdrawing_nothing(*args: Any, **kwargs: Any) -> Plan[bool]:
    """A withdrawal that never reaches Redis (as if the client had died first)."""
    return False
    yield  # a plan: a generator that yields no step


def test_request_with_past_deadline_is_neither_run_nor_answered(r, serve, lab):
    """A hand-built request whose deadline passed is not executed, and leaves no reply."""
    serve(lab, "lab")
    past = int(r.time()[0] * 1000) - 10_000
    r.rpush("lab", encode_request(Request("mark", ["x"], {}, "lab:rpc:old", "i", past)))
    assert redisrpc.Client(r, "lab", timeout=5).mark("y") is None  # served after it
    assert lab.log == ["mark y"] and r.exists("lab:rpc:old") == 0
    # An older server's TimeoutException reply still means "not started".
    info = ErrorInfo("redisrpc.TimeoutException", "deadline passed; not executed")
    error = redisrpc.client.proxy.error_from_reply(info, "lab")
    assert isinstance(error, redisrpc.TimeoutException) and error.started is False


def test_oversized_request_is_refused_locally(r, serve, lab):
    """A request over the server's advertised size limit fails before sending."""
    serve(lab, "lab", max_message_size=10_000)
    proxy = redisrpc.Client(r, "lab", timeout=5)
    with pytest.raises(redisrpc.MessageTooLargeError, match="10000"):
        proxy.echo("x" * 20_000)
    assert r.llen("lab") == 0
    assert proxy.echo("x" * 100) == "x" * 100


def test_proxy_shared_by_16_threads(client):
    """Sixteen threads share one proxy; every call gets its own answer."""
    errors: list[BaseException] = []
    results: dict[int, list[Any]] = {}

    def worker(i: int) -> None:
        try:
            results[i] = [client.echo([i, k]) for k in range(20)]
            with pytest.raises(ZeroDivisionError):
                client.div(i, 0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert results == {i: [[i, k] for k in range(20)] for i in range(16)}


def test_refresh_while_other_threads_call(client, lab):
    """Refreshing a proxy while other threads use it does not break their calls."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def caller() -> None:
        while not stop.is_set():
            try:
                assert client.add(1, 1) == 2
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(10):
        redisrpc.refresh(client)
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []


@pytest.mark.parametrize(
    "description",
    [
        {"class": "X", "methods": "oops", "properties": 5},
        {"class": "X", "methods": [{"nope": 1}, "str", None, {"name": 7}], "properties": [{}]},
        {
            "class": "__import__('os')",
            "methods": [
                {"name": "__init__", "params": []},
                {"name": "_rpc_call", "params": []},
                {"name": "__getattr__"},
                {"name": "os.system"},
                {"name": "ok", "params": "junk", "doc": 5},
            ],
            "properties": [{"name": "__class__"}, {"name": "temp", "annotation": 3}],
        },
    ],
)
def test_malformed_or_hostile_descriptions_cannot_break_the_proxy(r, description):
    """A junk description gives a usable proxy: only plain public names become members."""
    proxy = redisrpc.Client(r, "junk", timeout=1, describe=False)
    proxy._rpc_adopt(Reply(value=description))
    assert not hasattr(proxy, "missing")
    repr(proxy)
    members = {n for n in dir(type(proxy)) if not n.startswith("_")}
    assert members <= {"ok", "temp"}
    assert type(proxy).__init__ is redisrpc.Client.__init__
    assert type(proxy)._rpc_call is redisrpc.Client._rpc_call
    if "ok" in members:
        assert str(inspect.signature(proxy.ok)) == "(*args, **kwargs)"


def _local_part(text: str) -> list[str]:
    """The lines of a formatted traceback after the remote part."""
    cause = "The above exception was the direct cause of the following exception:"
    return text.rsplit(cause, maxsplit=1)[-1].splitlines()


def _assert_reads_as_remote(exc: BaseException, call_line: str, last: str) -> None:
    """Remote part once, then the caller's line as the only local frame, then the remote type."""
    text = "".join(traceback.format_exception(exc))
    assert text.count("RemoteTraceback") == 1, text  # the remote part is announced once
    assert text.count("end of remote traceback") == 1, text
    local = _local_part(text)
    files = [line for line in local if line.lstrip().startswith("File ")]
    assert len(files) == 1 and __file__ in files[0], text  # no redisrpc frame, proxy or client
    assert call_line in text.split("direct cause")[-1], text
    assert local[-1] == last, text


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 keeps the frames")
def test_remote_error_traceback_shows_the_remote_part_then_the_callers_line_only(client):
    """A remote builtin error: remote traceback once, the caller's line, the remote type."""
    with pytest.raises(ZeroDivisionError) as info:
        client.div(1, 0)
    _assert_reads_as_remote(
        info.value,
        "client.div(1, 0)",
        "redisrpc.errors.RemoteZeroDivisionError: division by zero",
    )


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 keeps the frames")
def test_an_instruments_own_error_arrives_under_its_remote_name(r, serve):
    """OverCurrentError from the simulated power supply is named on the traceback's last line."""
    serve(PowerSupply(), "psu")
    psu = redisrpc.Client(r, "psu", timeout=5)
    psu.connect_load(1, 1.0)
    psu.voltage1 = 5
    with pytest.raises(redisrpc.RemoteException) as info:
        psu.output_on(1)
    exc = info.value
    assert type(exc).__name__ == "OverCurrentError"
    assert exc.remote_type == "redisrpc.sim.instruments.OverCurrentError"
    _assert_reads_as_remote(
        exc, "psu.output_on(1)", f"redisrpc.sim.instruments.OverCurrentError: {exc.message}"
    )


class Sensor:
    """A sensor whose property getter and setter raise."""

    @property
    def reading(self) -> float:
        raise RuntimeError("sensor unplugged")

    @property
    def gain(self) -> int:
        return 1

    @gain.setter
    def gain(self, value: int) -> None:
        raise ValueError(f"gain {value} out of range")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 keeps the frames")
def test_remote_property_read_error_shows_no_library_frames(r, serve):
    """A property whose remote getter raises: the caller's line is the only local frame."""
    serve(Sensor(), "sensor")
    sensor = redisrpc.Client(r, "sensor", timeout=5)
    with pytest.raises(RuntimeError) as info:
        sensor.reading  # noqa: B018
    _assert_reads_as_remote(
        info.value, "sensor.reading", "redisrpc.errors.RemoteRuntimeError: sensor unplugged"
    )


def test_remote_property_set_error_shows_no_library_frames(r, serve):
    """Setting a property the server refuses: no proxy.py frame under the caller's line."""
    serve(Sensor(), "sensor")
    sensor = redisrpc.Client(r, "sensor", timeout=5)
    with pytest.raises(ValueError) as info:
        sensor.gain = 7
    text = "".join(traceback.format_exception(info.value))
    assert "in fset" not in text and "_rpc_call" not in text  # the generated setter's part
    _assert_reads_as_remote(
        info.value, "sensor.gain = 7", "redisrpc.errors.RemoteValueError: gain 7 out of range"
    )


def test_wrong_arguments_fail_at_once_with_pythons_wording_and_send_nothing(r, serve):
    """A busy server, a wrong call: TypeError at once, for the remote signature, nothing queued."""
    entered, release = threading.Event(), threading.Event()

    class Bench:
        def hold(self) -> str:
            entered.set()
            release.wait(10)
            return "held"

        def add(self, a: float, b: float = 1.0, *, note: str = "") -> float:
            return a + b

        def pair(self, x: int, y: int, /) -> int:
            return x + y

    serve(Bench(), "bench")
    bench = redisrpc.Client(r, "bench", timeout=20)
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(bench.hold()))
    worker.start()
    try:
        assert entered.wait(10)
        wrong = {
            (lambda: bench.add(1, 2, 3)): (
                "add() takes from 1 to 2 positional arguments but 3 were given"
            ),
            bench.add: "add() missing 1 required positional argument: 'a'",
            (lambda: bench.add(1, c=2)): "add() got an unexpected keyword argument 'c'",
            (lambda: bench.add(1, a=2)): "add() got multiple values for argument 'a'",
            (lambda: bench.pair(1)): "pair() missing 1 required positional argument: 'y'",
            (lambda: bench.pair(1, y=2)): (
                "pair() got some positional-only arguments passed as keyword arguments: 'y'"
            ),
        }
        for call, message in wrong.items():
            start = time.monotonic()
            with pytest.raises(TypeError) as info:
                call()
            assert time.monotonic() - start < 1.0  # not after waiting behind `hold`
            assert str(info.value) == message
            assert not isinstance(info.value, redisrpc.RedisRPCError)  # local, Python's own
            assert r.llen("bench") == 0  # nothing was sent
        tb = "".join(traceback.format_exception(info.value))
        assert "proxy.py" not in tb and "signature" not in tb
    finally:
        release.set()
        worker.join(10)
    assert results == ["held"]


def test_undescribed_proxies_check_nothing_locally(r, serve, lab):
    """Without a description the remote signature is unknown: the server judges the call."""
    serve(lab, "lab")
    dynamic = redisrpc.Client(r, "lab", describe=False, timeout=5)
    with pytest.raises(redisrpc.RemoteException) as info:
        dynamic.add(1, 2, 3)
    assert info.value.remote_type == "TypeError"
    wait_for(lambda: r.llen("lab") == 0)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 keeps the frames")
def test_async_proxy_errors_read_as_remote_and_wrong_calls_fail_before_awaiting(redis_url, serve):
    """The async proxy: remote errors (method, property) without library frames; arity at once."""
    serve(Sensor(), "sensor")
    serve(Lab(), "lab")

    async def main() -> list[BaseException]:
        lab = await redisrpc.AsyncClient(redis_url, "lab", timeout=5)
        sensor = await redisrpc.AsyncClient(redis_url, "sensor", timeout=5)
        caught: list[BaseException] = []
        for attempt in (lambda: lab.div(1, 0), lambda: sensor.reading):
            try:
                await attempt()
            except redisrpc.RemoteException as exc:
                caught.append(exc)
        try:
            lab.add(1, 2, 3)  # no await: the check comes before any coroutine
        except TypeError as exc:
            caught.append(exc)
        return caught

    div, reading, wrong = asyncio.run(main())
    for exc, last in (
        (div, "redisrpc.errors.RemoteZeroDivisionError: division by zero"),
        (reading, "redisrpc.errors.RemoteRuntimeError: sensor unplugged"),
    ):
        text = "".join(traceback.format_exception(exc))
        assert text.count("RemoteTraceback") == 1, text
        files = [ln for ln in _local_part(text) if ln.lstrip().startswith("File ")]
        assert all(__file__ in f for f in files), text
        assert text.rstrip().splitlines()[-1] == last
    assert str(wrong) == "add() takes from 1 to 2 positional arguments but 3 were given"


_KINDS = [
    "POSITIONAL_ONLY",
    "POSITIONAL_OR_KEYWORD",
    "VAR_POSITIONAL",
    "KEYWORD_ONLY",
    "VAR_KEYWORD",
]


class _Answering:
    """Stands in for a proxy: every call answers None (no Redis)."""

    def _rpc_call(self, name: str, args: Any, kwargs: Any) -> None:
        return None


@given(
    kinds=st.lists(st.tuples(st.sampled_from(_KINDS), st.booleans()), max_size=5),
    count=st.integers(0, 6),
    keywords=st.lists(st.sampled_from(["p0", "p1", "p4", "x"]), max_size=2, unique=True),
)
def test_the_argument_check_accepts_exactly_what_signature_bind_accepts(kinds, count, keywords):
    """A generated method's quick path for positional calls lets through only what bind() does."""
    params = [
        {"name": f"p{i}", "kind": kind, **({"default": 0} if default else {})}
        for i, (kind, default) in enumerate(kinds)
    ]
    method = proxy_module._method("C", {"name": "f", "params": params}, asynchronous=False)
    sig = signature_from_params(params)
    if proxy_module._arguments_check("f", {"params": params}) is None:
        assert sig == signature_from_params(None)  # invalid or catch-all: nothing to check
    args, kwargs = tuple(range(count)), dict.fromkeys(keywords, 1)
    try:
        sig.bind(*args, **kwargs)
        bound = True
    except TypeError:
        bound = False
    try:
        method(_Answering(), *args, **kwargs)
        accepted = True
    except TypeError:
        accepted = False
    assert accepted == bound
