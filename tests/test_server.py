"""The server: dispatch with handle() on fakeredis, and the serving loop on a real redis-server."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import textwrap
import threading
import time
from typing import Any

import fakeredis
import pytest
from conftest import PYTHON, python_env, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

import redisrpc
from redisrpc.core.protocol import Request, decode_reply, encode_request
from redisrpc.core.transport import Transport
from redisrpc.server import dispatch


class MyError(Exception):
    """A user-defined error."""


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@redisrpc.writable("level")  # plain attributes are read-only unless marked
class Device:
    """A device under test."""

    def __init__(self) -> None:
        self.level = 3
        self.calls: list[str] = []
        self._hidden = "secret"

    def add(self, a: int, b: int = 1) -> int:
        """Add two numbers."""
        self.calls.append("add")
        return a + b

    def fail(self) -> None:
        self.calls.append("fail")
        raise KeyError("missing")

    def fail_custom(self) -> None:
        raise MyError("custom")

    def fail_badly(self) -> None:
        raise BadStr()

    def unencodable(self) -> object:
        return object()

    def big(self, n: int) -> str:
        return "x" * n

    def echo(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [list(args), kwargs]

    @property
    def mode(self) -> str:
        """Read-only mode."""
        return "auto"

    @property
    def speed(self) -> float:
        return self._speed if hasattr(self, "_speed") else 1.0

    @speed.setter
    def speed(self, value: float) -> None:
        self._speed = value

    def _private(self) -> None:
        self.calls.append("_private")


def _request(name: str, args: Any = None, kwargs: Any = None, **extra: Any) -> bytes:
    call: dict[str, Any] = {"name": name}
    if args is not None:
        call["args"] = args
    if kwargs is not None:
        call["kwargs"] = kwargs
    return json.dumps({"function_call": call, "response_queue": "dev:rpc:q", **extra}).encode()


@pytest.fixture
def device() -> Device:
    """A fresh Device."""
    return Device()


@pytest.fixture
def server(fake: Any, device: Device) -> redisrpc.Server:
    """A Server for the device on fakeredis, never run: handle() only."""
    return redisrpc.Server(fake, "dev", device, handle_signals=False)


def _handle(server: redisrpc.Server, raw: bytes) -> dict[str, Any]:
    queue, data = server.handle(raw)
    assert queue == "dev:rpc:q" and data is not None
    return json.loads(data)


def test_handle_calls_the_method_and_echoes_the_id(server, device):
    """A valid request runs the method once and replies its value with the request's id."""
    reply = _handle(server, _request("add", [2], {"b": 5}, id="abc"))
    assert reply == {"return_value": 7, "id": "abc", "protocol": redisrpc.PROTOCOL_VERSION}
    assert device.calls == ["add"] and server.calls == 1


def test_v1_request_with_null_args_is_answered(server):
    """The original client's `"args": null, "kwargs": null` calls with no arguments."""
    raw = (
        b'{"function_call": {"name": "mode_is", "args": null, "kwargs": null},'
        b' "response_queue": "dev:rpc:q"}'
    )
    assert "no exposed member 'mode_is'" in _handle(server, raw)["error"]["message"]
    raw = raw.replace(b"mode_is", b"echo")
    assert _handle(server, raw)["return_value"] == [[], {}]


def test_exception_in_method_gives_type_message_and_user_traceback(server):
    """A raising method gives its type, message and a traceback from the method's frame."""
    reply = _handle(server, _request("fail"))
    error = reply["error"]
    assert (error["type"], error["message"]) == ("KeyError", "'missing'")
    assert reply["exception"] == "KeyError(\"'missing'\")"
    assert "return_value" not in reply
    assert 'raise KeyError("missing")' in error["traceback"]
    assert "in fail" in error["traceback"]
    # The dispatcher's frames are not the user's.
    assert "redisrpc/server.py" not in error["traceback"]
    assert error["server"] == server.ident


def test_user_defined_exception_type_is_qualified(server):
    """Exceptions outside builtins are named module.Class."""
    assert _handle(server, _request("fail_custom"))["error"]["type"] == f"{__name__}.MyError"


def test_exception_with_broken_str_still_gets_a_reply(server):
    """An exception whose str() raises is reported, and handle() does not raise."""
    error = _handle(server, _request("fail_badly"))["error"]
    assert error["type"].endswith("BadStr") and "str() failed" in error["message"]


def test_wrong_arguments_give_type_error(server, device):
    """Calling with wrong arguments gives a TypeError reply and runs nothing."""
    error = _handle(server, _request("add", [1, 2, 3]))["error"]
    assert error["type"] == "TypeError" and "add()" in error["message"]
    error = _handle(server, _request("add", [], {"nope": 1}))["error"]
    assert error["type"] == "TypeError"
    assert device.calls == []


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("missing", "no exposed member 'missing'"),
        ("_private", "private"),
        ("_hidden", "private"),
        ("__class__", "private"),
        ("__init__", "private"),
        ("os.system", "no exposed member 'os'"),
        ("add; import os", "not a valid method name"),
        ("__import__('os')", "not a valid method name"),
        ("", "not a valid method name"),
    ],
)
def test_unknown_private_and_invalid_names_are_refused(server, device, name, fragment):
    """Only exposed public names run; everything else is an AttributeError reply."""
    error = _handle(server, _request(name))["error"]
    assert error["type"] == "AttributeError" and fragment in error["message"]
    assert error["traceback"] == ""
    assert device.calls == []


def test_properties_travel_as_builtin_calls(server, device):
    """__getprop__ reads, __setprop__ writes; read-only and method names are refused."""
    assert _handle(server, _request("__getprop__", ["mode"]))["return_value"] == "auto"
    assert _handle(server, _request("__getprop__", ["level"]))["return_value"] == 3
    assert _handle(server, _request("__setprop__", ["speed", 2.5]))["return_value"] is None
    assert device.speed == 2.5
    assert _handle(server, _request("__setprop__", ["level", 9]))["return_value"] is None
    assert device.level == 9
    refused = {
        "mode": _request("__setprop__", ["mode", "manual"]),
        "method": _request("__getprop__", ["add"]),
        "private": _request("__getprop__", ["_hidden"]),
        "noname": _request("__getprop__", []),
        "arity": _request("__setprop__", ["speed"]),
        "notstr": _request("__getprop__", [3]),
    }
    types = {k: _handle(server, raw)["error"]["type"] for k, raw in refused.items()}
    assert types == {
        "mode": "AttributeError",
        "method": "AttributeError",
        "private": "AttributeError",
        "noname": "TypeError",
        "arity": "TypeError",
        "notstr": "TypeError",
    }
    assert device.mode == "auto"


def test_calling_a_property_or_attribute_is_a_type_error(server):
    """A property name is not callable as a method."""
    error = _handle(server, _request("level"))["error"]
    assert error["type"] == "TypeError" and "property" in error["message"]


def test_ping_and_describe_are_builtin(server):
    """__ping__ answers pong; __describe__ describes the object with the server's identity."""
    assert _handle(server, _request("__ping__"))["return_value"] == "pong"
    description = _handle(server, _request("__describe__"))["return_value"]
    assert description["class"] == "Device" and description["name"] == "dev"
    assert description["server"] == server.ident
    assert description["max_message_size"] == server.max_message_size
    assert "_private" not in {m["name"] for m in description["methods"]}


def test_allow_list_limits_calls_and_description(fake, device):
    """Server(expose=[...]) serves only the listed names."""
    server = redisrpc.Server(fake, "dev", device, expose=["add"], handle_signals=False)
    assert _handle(server, _request("add", [1]))["return_value"] == 2
    assert _handle(server, _request("fail"))["error"]["type"] == "AttributeError"
    assert [m["name"] for m in server.describe()["methods"]] == ["add"]


def test_member_added_after_start_is_callable(server, device):
    """The object may grow a method after the server was built."""
    device.late = lambda: "late"  # type: ignore[attr-defined]
    assert _handle(server, _request("late"))["return_value"] == "late"


def test_unencodable_and_oversized_return_values_become_errors(fake, device):
    """A value with no JSON form travels as a handle; one too big is MessageTooLargeError."""
    server = redisrpc.Server(fake, "dev", device, max_message_size=1000, handle_signals=False)
    reply = _handle(server, _request("unencodable"))
    assert reply["return_value"]["__redisrpc__"] == "handle" and reply["handles"] is True
    error = _handle(server, _request("big", [5000]))["error"]
    assert error["type"] == "redisrpc.MessageTooLargeError" and "1000" in error["message"]
    assert _handle(server, _request("big", [10]))["return_value"] == "x" * 10


@pytest.mark.parametrize(
    "raw",
    [
        b'{"response_queue": "dev:rpc:q", "function_call": ',  # not JSON
        b'{"response_queue": "dev:rpc:q", "function_call": "\xff"}',  # bad UTF-8
        b'{"response_queue": "dev:rpc:q", "function_call": []}',  # wrong shape
        b'{"response_queue": "dev:rpc:q", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_malformed_request_with_a_queue_is_answered_with_protocol_error(server, raw):
    """A malformed request is answered with redisrpc.ProtocolError when its queue is readable."""
    error = _handle(server, raw)["error"]
    assert error["type"] == "redisrpc.ProtocolError" and error["server"] == server.ident


def test_oversized_request_is_answered_with_message_too_large(fake, device):
    """A request over the limit is refused unparsed, answered on its salvaged queue."""
    server = redisrpc.Server(fake, "dev", device, max_message_size=200, handle_signals=False)
    error = _handle(server, _request("add", ["x" * 500]))["error"]
    assert error["type"] == "redisrpc.MessageTooLargeError"
    assert device.calls == []


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage",
        b"[1, 2]",
        b'{"function_call": {"name": "add"}, "response_queue": "victim"}',
        b'{"function_call": {"name": "add"}, "response_queue": "other:rpc:q"}',
    ],
)
def test_malformed_request_without_usable_queue_is_dropped(server, device, raw, caplog):
    """No reply queue following the prefix rule: logged and dropped, never written elsewhere."""
    assert server.handle(raw) == (None, None)
    assert device.calls == []
    assert "bad request" in caplog.text


def test_request_past_its_deadline_is_not_executed_nor_answered(server, device):
    """A deadline already passed on the Redis clock: the method never runs, no reply is written."""
    past = server.transport.now_ms() - 5_000
    assert server.handle(_request("add", [1], deadline=past, id="late")) == (None, None)
    assert device.calls == []
    future = server.transport.now_ms() + 60_000
    assert _handle(server, _request("add", [1], deadline=future))["return_value"] == 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.builds(lambda s: s.encode(), st.text(max_size=200)))
def test_handle_never_raises(raw):
    """Whatever arrives, handle() returns instead of raising."""
    server = redisrpc.Server(fakeredis.FakeRedis(), "dev", Device(), handle_signals=False)
    queue, data = server.handle(raw)
    assert (queue is None) == (data is None)


# -- the real loop ---------------------------------------------------------------------------


def _call(r: Any, service: str, name: str, *args: Any, timeout: float = 5) -> Any:
    """Call like a bare client: RPUSH a request, BLPOP the reply."""
    queue = f"{service}:rpc:{time.monotonic_ns()}-{threading.get_ident()}"
    r.rpush(service, encode_request(Request(name, list(args), {}, queue)))
    popped = r.blpop([queue], timeout=timeout)
    assert popped is not None, f"no reply to {name}"
    return decode_reply(popped[1])


def test_run_blocks_and_stop_from_another_thread_ends_it(r, device):
    """run() serves in its thread until stop() is called from another."""
    server = redisrpc.Server(r, "dev", device, poll_interval=0.1)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        assert _call(r, "dev", "add", 1, 2).value == 3
        assert server.running
    finally:
        server.stop(10)
    thread.join(10)
    assert not thread.is_alive() and not server.running


def test_server_never_deletes_its_queue_on_start(r, serve, device):
    """Requests pushed before the server starts are served, not flushed."""
    queue = "dev:rpc:early"
    r.rpush("dev", encode_request(Request("add", [40, 2], {}, queue)))
    serve(device, "dev")
    popped = r.blpop([queue], timeout=5)
    assert popped is not None and decode_reply(popped[1]).value == 42


def test_loop_survives_malformed_messages_and_loses_no_request(r, serve, device):
    """Garbage between good requests is answered or dropped; every good request is served."""
    r.rpush(
        "dev",
        b"\xff\xfe not json",
        b'{"response_queue": "dev:rpc:bad", "function_call": 5}',
        encode_request(Request("add", [1], {}, "dev:rpc:good1")),
        b"[" * 50_000,
        encode_request(Request("add", [2], {}, "dev:rpc:good2")),
    )
    serve(device, "dev")
    bad = r.blpop(["dev:rpc:bad"], timeout=5)
    assert bad is not None and decode_reply(bad[1]).error.type == "redisrpc.ProtocolError"
    for queue, value in [("dev:rpc:good1", 2), ("dev:rpc:good2", 3)]:
        popped = r.blpop([queue], timeout=5)
        assert popped is not None and decode_reply(popped[1]).value == value


def test_replies_expire(r, serve, device):
    """A reply list nobody reads gets the server's TTL, so it cannot pile up."""
    serve(device, "dev", reply_ttl=30)
    r.rpush("dev", encode_request(Request("add", [1], {}, "dev:rpc:unread")))
    _call(r, "dev", "__ping__")  # the first reply has been written by now
    ttl = r.pttl("dev:rpc:unread")
    assert 0 < ttl <= 30_000


def test_a_reply_redis_refuses_is_logged_and_serving_goes_on(r, serve, device, caplog):
    """Replies go unacknowledged, yet one Redis refuses is logged within about a second."""
    serve(device, "dev")
    assert _call(r, "dev", "add", 1).value == 2  # that turn's replies were acknowledged
    r.set("dev:rpc:taken", "not a list")  # RPUSH onto it fails with WRONGTYPE
    refused = encode_request(Request("add", [1], {}, "dev:rpc:taken"))
    with caplog.at_level("WARNING", logger="redisrpc.server"):

        def logged() -> bool:
            r.rpush("dev", refused)
            return "could not reply on 'dev:rpc:taken'" in caplog.text

        wait_for(logged, timeout=5, interval=0.1, message="the refused reply was not logged")
    assert "WRONGTYPE" in caplog.text
    assert _call(r, "dev", "add", 2).value == 3


class Slow:
    """Records how many calls run at once."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.guard = threading.Lock()

    def work(self, seconds: float) -> int:
        with self.guard:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(seconds)
        with self.guard:
            self.active -= 1
        return 1


def test_one_call_at_a_time_per_server(r, serve):
    """Concurrent callers are served one after another by a single server."""
    slow = Slow()
    serve(slow, "slow")
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(_call(r, "slow", "work", 0.05)))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [x.value for x in results] == [1] * 6
    assert slow.peak == 1


def test_two_servers_on_one_queue_share_the_load(r, serve):
    """Two servers on one list both take requests, and each request is answered exactly once."""
    a, b = Slow(), Slow()
    server_a = serve(a, "shared")
    server_b = serve(b, "shared")
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(_call(r, "shared", "work", 0.1)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [x.value for x in results] == [1] * 8
    assert server_a.calls > 0 and server_b.calls > 0
    assert server_a.calls + server_b.calls == 8
    assert r.llen("shared") == 0


_SERVER_SCRIPT = textwrap.dedent(
    """
    import sys, time, logging
    import redisrpc

    class Slow:
        def work(self, seconds):
            print("working", flush=True)
            time.sleep(seconds)
            return "done"

    logging.basicConfig(level=logging.INFO)
    server = redisrpc.Server(sys.argv[1], "sig", Slow(), poll_interval=0.2)
    print("ready", flush=True)
    server.run()
    print("clean exit after", server.calls, flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_a_server_process_after_the_current_call(r, redis_url, sig):
    """SIGTERM or SIGINT mid-call: the call completes, its reply is sent, the process exits 0."""
    proc = subprocess.Popen(
        [PYTHON, "-c", _SERVER_SCRIPT, redis_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=python_env(),
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        r.rpush("sig", encode_request(Request("work", [1.0], {}, "sig:rpc:1")))
        assert proc.stdout.readline().strip() == "working"
        proc.send_signal(sig)
        popped = r.blpop(["sig:rpc:1"], timeout=10)
        assert popped is not None and decode_reply(popped[1]).value == "done"
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "clean exit after 1" in out
    assert signal.Signals(sig).name in err
    assert "Traceback" not in err
    # The queue itself is left alone.
    r.rpush("sig", b"later")
    assert r.lrange("sig", 0, -1) == [b"later"]


def test_context_manager_serves_in_a_thread(r, device):
    """`with Server(...)` serves in the background and stops on exit."""
    with redisrpc.Server(r, "dev", device, poll_interval=0.1) as server:
        assert _call(r, "dev", "add", 5).value == 6
        assert "running" in repr(server)
    assert not server.running and "stopped" in repr(server)


def test_server_refuses_an_empty_name(r, device):
    """A service needs a name."""
    with pytest.raises(ValueError, match="non-empty"):
        redisrpc.Server(r, "", device)


def test_an_idle_server_with_a_long_poll_interval_logs_nothing(r, redis_url, device, caplog):
    """A poll interval longer than the socket timeout is a long wait, not a Redis failure.

    Socket timeout 1 s, poll interval 2 s, watched for 3 s: no "did not answer
    in time ... retrying" warning, and the server still answers.
    """
    transport = Transport.of(redis_url, socket_timeout=1.0)
    with (
        caplog.at_level(logging.WARNING, logger="redisrpc"),
        redisrpc.Server(transport, "idle", device, poll_interval=2.0),
    ):
        time.sleep(3.0)  # the behaviour under test is what happens while waiting
        client = redisrpc.Client(redis_url, "idle", timeout=10)
        assert client.add(1, 2) == 3
    warnings = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert warnings == []


class Other:
    """Not a Device."""

    def add(self, a: int, b: int = 1) -> int:
        """Add, differently."""
        return a + b + 1000


def test_a_server_refuses_to_join_a_service_of_another_class(r, serve, device):
    """A second class under a live service's name raises ServiceConflictError and never serves."""
    serve(device, "calc")
    intruder = redisrpc.Server(r, "calc", Other(), poll_interval=0.1)
    with pytest.raises(redisrpc.ServiceConflictError, match="share=True") as caught:
        intruder.start()
    assert caught.value.serving == (f"{__name__}.Device",)
    assert not intruder.running
    with pytest.raises(redisrpc.ServiceConflictError):
        intruder.run()
    (service,) = redisrpc.discover(r)
    assert len(service.instances) == 1
    client = redisrpc.Client(r, "calc", timeout=10)
    assert {client.add(1, 2) for _ in range(10)} == {3}  # only the Device answers


def test_share_joins_a_service_of_another_class_deliberately(r, serve, device):
    """share=True lets a different class join; the same class never needs it."""
    serve(device, "calc")
    serve(Device(), "calc")  # the same class: no conflict
    serve(Other(), "calc", share=True)
    (service,) = wait_for(
        lambda: [s for s in redisrpc.discover(r) if len(s.instances) == 3], timeout=10
    )
    assert service.name == "calc"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_queue_key_of_the_wrong_type_does_not_stop_the_server(r, serve, device, caplog, workers):
    """`SET dev oops` (WRONGTYPE on every pop): logged, backed off; once deleted, it serves."""
    server = serve(device, "dev", workers=workers)
    proxy = redisrpc.Client(r, "dev", timeout=5)
    assert proxy.add(1) == 2
    r.delete("dev")
    r.set("dev", "oops")
    wait_for(lambda: "serving failed" in caplog.text, message="the failure was not logged")
    wait_for(lambda: caplog.text.count("serving failed") >= 2, message="no second attempt")
    assert server.running
    r.delete("dev")
    assert proxy.add(2) == 3
    assert server.running and device.calls == ["add", "add"]


def test_a_dead_callers_request_leaves_no_reply_key(r, serve, device):
    """A request queued by a caller whose deadline passed: not run, and no reply key is left."""
    now = redisrpc.core.transport.Transport.of(r).now_ms()
    r.rpush("dev", encode_request(Request("add", [1], {}, "dev:rpc:dead", "d1", now - 1)))
    serve(device, "dev")
    assert _call(r, "dev", "__ping__").value == "pong"  # served after the dead caller's request
    assert r.llen("dev") == 0 and device.calls == []
    assert r.exists("dev:rpc:dead") == 0


def test_a_reply_ready_after_the_deadline_is_not_written(r, serve):
    """A call that finishes after its caller's deadline ran, but leaves no reply key behind."""

    class Slow:
        def __init__(self) -> None:
            self.done = threading.Event()

        def work(self) -> str:
            time.sleep(0.4)
            self.done.set()
            return "late"

    slow = Slow()
    serve(slow, "slow")
    now = redisrpc.core.transport.Transport.of(r).now_ms()
    r.rpush("slow", encode_request(Request("work", [], {}, "slow:rpc:w", "w1", now + 150)))
    assert slow.done.wait(5)
    assert _call(r, "slow", "__ping__").value == "pong"  # the turn that would have replied is over
    assert r.exists("slow:rpc:w") == 0


def test_a_request_id_already_run_is_not_run_again(server, device):
    """The same request taken twice (a replay): run once; the replay is neither run nor answered."""
    raw = _request("add", [1], id="once", deadline=server.transport.now_ms() + 60_000)
    assert _handle(server, raw)["return_value"] == 2
    assert server.handle(raw) == (None, None)
    assert device.calls == ["add"]
    # Without a deadline too (ids are remembered up to a bound).
    raw = _request("add", [5], id="no-deadline")
    assert _handle(server, raw)["return_value"] == 6
    assert server.handle(raw) == (None, None)
    assert device.calls == ["add", "add"]


def test_run_ids_are_forgotten_once_their_deadline_passed_and_beyond_the_bound(monkeypatch):
    """The memory of ids run stays bounded; what it forgets, the deadline check still refuses."""
    monkeypatch.setattr(dispatch, "REMEMBERED_IDS", 8)
    monkeypatch.setattr(dispatch, "_SWEEP_EVERY", 4)
    device = Device()
    dispatcher = dispatch.Dispatcher(device, "dev", ident="t", max_message_size=10_000)
    clock = [1_000]

    def handle(call_id: str, deadline: int) -> tuple[str | None, bytes | None]:
        raw = _request("add", [1], id=call_id, deadline=deadline)
        return dispatcher.handle(
            raw, now_ms=lambda: clock[0], check=lambda request: None, describe_extra=dict
        )

    for i in range(3):
        assert handle(f"short{i}", 2_000)[0] == "dev:rpc:q"
    assert handle("long", 60_000)[0] == "dev:rpc:q"
    clock[0] = 3_000  # the three short deadlines passed; the sweep (every 4th call) forgets them
    for i in range(4):
        assert handle(f"new{i}", 60_000)[0] == "dev:rpc:q"
    assert set(dispatcher._ran) == {"long", "new0", "new1", "new2", "new3"}
    assert handle("short0", 2_000) == (None, None)  # forgotten, and still refused: too late
    assert handle("long", 60_000) == (None, None)  # remembered: a replay
    for i in range(8):
        handle(f"more{i}", 60_000)
    assert list(dispatcher._ran) == [f"more{i}" for i in range(8)]  # the oldest went first
    assert device.calls == ["add"] * 16


def test_a_busy_server_looks_at_every_id_run_only_once_per_as_many_new_ones(monkeypatch):
    """Ids within their deadlines filling over half the memory (a busy server) are all looked
    at once, then again only after as many new ids: not at every sweep (25 us a call)."""
    monkeypatch.setattr(dispatch, "REMEMBERED_IDS", 8)
    monkeypatch.setattr(dispatch, "_SWEEP_EVERY", 1)
    dispatcher = dispatch.Dispatcher(Device(), "dev", ident="t", max_message_size=10_000)
    clock = [1_000]
    looked: list[int] = []
    rebuild = dispatch.OrderedDict

    def counting(items: Any = ()) -> Any:  # a full look rebuilds the memory from every id
        made = rebuild(items)
        looked.append(len(made))
        return made

    monkeypatch.setattr(dispatch, "OrderedDict", counting)

    def handle(call_id: str, deadline: int) -> None:
        raw = _request("add", [1], id=call_id, deadline=deadline)
        dispatcher.handle(
            raw, now_ms=lambda: clock[0], check=lambda request: None, describe_extra=dict
        )

    for i in range(40):
        handle(f"busy{i}", 60_000)
    # Over half full from the fifth id on; each look keeps 5 to 8 ids, so the next waits as long.
    assert 4 <= len(looked) <= 8, looked
    assert list(dispatcher._ran) == [f"busy{i}" for i in range(32, 40)]
    handle("busy39", 60_000)  # a replay is still refused: nothing run twice
    assert dispatcher.calls == 40


def test_the_description_is_computed_once_until_the_object_changes(monkeypatch):
    """__describe__ rescans the object only when its members or attribute types changed."""
    scans = []
    real = dispatch.exposed_members
    monkeypatch.setattr(
        dispatch, "exposed_members", lambda *a, **k: scans.append(1) or real(*a, **k)
    )

    class Thing:
        def ping(self) -> str:
            return "pong"

    thing = Thing()
    dispatcher = dispatch.Dispatcher(thing, "thing", ident="t", max_message_size=1000)
    first = dispatcher.describe({"server": "a"})
    scanned = len(scans)
    assert dispatcher.describe({"server": "b"})["server"] == "b"
    assert dispatcher.describe({})["methods"] == first["methods"]
    assert len(scans) == scanned  # not scanned again
    thing.gain = 1.5  # a new public attribute
    names = [p["name"] for p in dispatcher.describe({})["properties"]]
    assert names == ["gain"] and len(scans) == scanned + 1
    thing.gain = "now text"  # its type changed: its annotation does
    assert dispatcher.describe({})["properties"][0]["annotation"] == "str"
    Thing.extra = lambda self: 1  # a method added to the class
    assert "extra" in [m["name"] for m in dispatcher.describe({})["methods"]]


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("add", [2], {"b": 5}),
        ("add", [2], {}),
        ("add", [], {}),  # a TypeError from the call itself
        ("echo", [1, "x", [2]], {"k": None}),
        ("fail", [], {}),
        ("fail_custom", [], {}),
        ("unencodable", [], {}),  # a handle
        ("big", [20_000], {}),  # over the reply limit
        ("mode", [], {}),  # a property called as a method
        ("level", [], {}),  # an attribute called as a method
        ("_private", [], {}),
        ("nothing", [], {}),
    ],
)
def test_a_call_of_a_method_replies_as_invoke_would(name, args, kwargs):
    """handle's shortcut for methods of the root: invoke's value or error, in the same reply."""

    def reply(shortcut: bool) -> dict[str, Any]:
        dispatcher = dispatch.Dispatcher(Device(), "dev", ident="t", max_message_size=10_000)
        if not shortcut:  # a member lookup that never finds one: every call takes invoke
            dispatcher.members = type("Missing", (dict,), {"get": lambda self, key: None})(
                dispatcher.members
            )
        raw = _request(name, args, kwargs, id="i")
        queue, data = dispatcher.handle(
            raw, now_ms=lambda: 0, check=lambda request: None, describe_extra=dict
        )
        assert queue == "dev:rpc:q" and data is not None
        message = json.loads(data)
        message.get("error", {}).pop("traceback", None)
        if isinstance(message.get("return_value"), dict):  # a handle: its id is random
            message["return_value"] = message["return_value"]["class"]
        return message

    assert reply(shortcut=True) == reply(shortcut=False)
