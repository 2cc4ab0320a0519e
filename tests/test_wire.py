"""Wire compatibility: hand-built JSON as other languages send it, redis-cli, the original server.

Nothing here uses redisrpc to build requests: messages are written out as
literal JSON and pushed with plain redis-py or redis-cli, exactly as a Ruby,
PHP or old Python RedisRPC peer would.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import redisrpc


def _example_calculator() -> type:
    """The calculator of examples/calculator/calc.py (the classic RedisRPC example)."""
    path = Path(__file__).resolve().parent.parent / "examples" / "calculator" / "calc.py"
    spec = importlib.util.spec_from_file_location("calculator_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Calculator  # type: ignore[no-any-return]


class Calculator(_example_calculator()):  # type: ignore[misc]
    """The example calculator, plus an echo that records what arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def echo(self, *args: Any, **kwargs: Any) -> Any:
        self.seen.append([args, kwargs])
        return [list(args), kwargs]


@pytest.fixture
def calc() -> Calculator:
    """A fresh calculator."""
    return Calculator()


def _push_and_wait(r: redis.Redis, raw: str, queue: str, timeout: float = 5) -> dict[str, Any]:
    r.rpush("calc", raw.encode())
    popped = r.blpop([queue], timeout=timeout)
    assert popped is not None, "no reply"
    return json.loads(popped[1])


def test_hand_built_v1_requests_get_v1_readable_replies(r, serve, calc):
    """The exact v1 request shape is served; replies have return_value and no exception key."""
    serve(calc, "calc")
    reply = _push_and_wait(
        r,
        '{"function_call": {"name": "add", "args": [5], "kwargs": {}},'
        ' "response_queue": "calc:rpc:AbCdEfGhIj"}',
        "calc:rpc:AbCdEfGhIj",
    )
    assert reply["return_value"] == 5.0 and "exception" not in reply
    # The original Python client sends null for absent args and kwargs.
    reply = _push_and_wait(
        r,
        '{"function_call": {"name": "val", "args": null, "kwargs": null},'
        ' "response_queue": "calc:rpc:n1"}',
        "calc:rpc:n1",
    )
    assert reply["return_value"] == 5.0 and "exception" not in reply
    # Ruby's client sends only name and args.
    reply = _push_and_wait(
        r,
        '{"function_call": {"name": "mul", "args": [3]}, "response_queue": "calc:rpc:rb"}',
        "calc:rpc:rb",
    )
    assert reply["return_value"] == 15.0


def test_v1_error_reply_has_an_exception_string(r, serve, calc):
    """An error reply carries the v1 'exception' string an old client raises as is."""
    serve(calc, "calc")
    reply = _push_and_wait(
        r,
        '{"function_call": {"name": "div", "args": [0], "kwargs": {}},'
        ' "response_queue": "calc:rpc:e1"}',
        "calc:rpc:e1",
    )
    assert reply["exception"] == "ZeroDivisionError('float division by zero')"
    assert "return_value" not in reply


def test_hand_built_v2_request_with_every_optional_key(r, serve, calc):
    """id, deadline (Redis clock) and protocol are honoured; the reply echoes the id."""
    serve(calc, "calc")
    seconds, micros = r.time()
    deadline = seconds * 1000 + micros // 1000 + 30_000
    reply = _push_and_wait(
        r,
        '{"function_call": {"name": "echo", "args": [[1, 2], {"__redisrpc__": "bytes",'
        ' "base64": "AAE="}], "kwargs": {"k": {"__redisrpc__": "float", "value": "inf"}}},'
        f' "response_queue": "calc:rpc:v2", "id": "req-7", "deadline": {deadline},'
        ' "protocol": 2}',
        "calc:rpc:v2",
    )
    assert reply == {
        "return_value": [
            [[1, 2], {"__redisrpc__": "bytes", "base64": "AAE="}],
            {"k": {"__redisrpc__": "float", "value": "inf"}},
        ],
        "id": "req-7",
        "protocol": redisrpc.PROTOCOL_VERSION,
    }
    assert calc.seen == [[([1, 2], b"\x00\x01"), {"k": float("inf")}]]


def test_hand_built_error_reply_v2_fields(r, serve, calc):
    """A v2 error reply has error.type, message, traceback and server."""
    serve(calc, "calc")
    reply = _push_and_wait(
        r,
        '{"function_call": {"name": "nosuch", "args": []}, "response_queue": "calc:rpc:x",'
        ' "id": "e", "protocol": 2}',
        "calc:rpc:x",
    )
    assert reply["id"] == "e"
    assert reply["error"]["type"] == "AttributeError"
    assert reply["error"]["server"].startswith("calc@")
    assert set(reply["error"]) >= {"type", "message", "traceback", "server"}


def test_redis_cli_session_from_protocol_md(redis_proc, r, serve, calc):
    """The redis-cli session of PROTOCOL.md works as written."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    serve(calc, "calc")

    def run(*args: str) -> list[str]:
        done = subprocess.run(
            [cli, "-p", str(redis_proc.port), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.splitlines()

    request = (
        '{"function_call": {"name": "add", "args": [5], "kwargs": {}},'
        ' "response_queue": "calc:rpc:cli1"}'
    )
    assert request in Path(__file__).parent.parent.joinpath("PROTOCOL.md").read_text()
    assert run("RPUSH", "calc", request) == ["1"]
    queue, reply = run("BLPOP", "calc:rpc:cli1", "5")
    assert queue == "calc:rpc:cli1"
    assert json.loads(reply) == {"return_value": 5.0, "protocol": redisrpc.PROTOCOL_VERSION}
    run(
        "RPUSH",
        "calc",
        '{"function_call": {"name": "div", "args": [0]}, "response_queue": "calc:rpc:cli2"}',
    )
    queue, reply = run("BLPOP", "calc:rpc:cli2", "5")
    assert json.loads(reply)["exception"] == "ZeroDivisionError('float division by zero')"


# -- our client against the ORIGINAL server ---------------------------------------------------


class _OriginalServer:
    """The original RedisRPC server loop, re-implemented minimally (getattr dispatch)."""

    def __init__(self, r: redis.Redis, queue: str, obj: Any) -> None:
        self.r, self.queue, self.obj = r, queue, obj
        self.requests: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            popped = self.r.blpop([self.queue], timeout=0.1)
            if popped is None:
                continue
            request = json.loads(popped[1])
            self.requests.append(request)
            call = request["function_call"]
            try:
                value = getattr(self.obj, call["name"])(
                    *(call.get("args") or []), **(call.get("kwargs") or {})
                )
                response = {"return_value": value}
            except Exception as exc:
                response = {"exception": repr(exc)}
            self.r.rpush(request["response_queue"], json.dumps(response))


@pytest.fixture
def original(r: redis.Redis, calc: Calculator) -> Iterator[_OriginalServer]:
    """An original-style server for the calculator on 'calc'."""
    server = _OriginalServer(r, "calc", calc)
    server.thread.start()
    yield server
    server.stop.set()
    server.thread.join(5)


def test_our_client_falls_back_to_dynamic_calls_on_an_original_server(r, original, calc):
    """No __describe__ on the original server: the proxy stays dynamic and calls still work."""
    proxy = redisrpc.Client(r, "calc", timeout=5)
    assert redisrpc.description(proxy) is None
    assert "(not described)" in repr(proxy)
    proxy.clr()
    proxy.add(5)
    proxy.sub(3)
    proxy.mul(4)
    proxy.div(2)
    assert proxy.val() == 4
    assert calc.acc == 4
    first = original.requests[0]
    assert first["function_call"]["name"] == "__describe__"
    assert first["response_queue"].startswith("calc:rpc:")


def test_original_server_errors_become_remote_exceptions(r, original):
    """An original server's bare exception string becomes a RemoteException with that text."""
    proxy = redisrpc.Client(r, "calc", timeout=5, describe=False)
    with pytest.raises(redisrpc.RemoteException) as info:
        proxy.div(0)
    assert str(info.value) == "ZeroDivisionError('float division by zero')"
    assert info.value.remote_type == ""
    with pytest.raises(redisrpc.RemoteException, match="AttributeError"):
        proxy.nosuch()


# -- injection attempts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "__class__",
        "__init__",
        "__dict__",
        "__getattribute__",
        "os.system",
        "acc.__class__",
        "add; import os",
        "__import__('os')",
        "__import__('os').system('touch PWNED')",
        "add(1); __import__('os')",
        "eval",
        "exec",
        "add\n",
        "",
    ],
)
def test_hostile_method_names_are_refused(r, serve, calc, name):
    """Dunder, dotted and code-like names are refused with AttributeError; nothing runs."""
    serve(calc, "calc")
    raw = json.dumps(
        {"function_call": {"name": name, "args": ["x"]}, "response_queue": "calc:rpc:i"}
    )
    reply = _push_and_wait(r, raw, "calc:rpc:i")
    assert reply["error"]["type"] == "AttributeError"
    assert calc.seen == [] and calc.acc == 0.0


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("__getprop__", ["__class__"]),
        ("__getprop__", ["__dict__"]),
        ("__getprop__", ["acc.__class__"]),
        ("__setprop__", ["__class__", "x"]),
        ("__setprop__", ["__dict__", {}]),
        ("__setprop__", ["echo", "x"]),
    ],
)
def test_hostile_property_access_is_refused(r, serve, calc, name, args):
    """Built-in property calls cannot reach private attributes or replace methods."""
    serve(calc, "calc")
    raw = json.dumps(
        {"function_call": {"name": name, "args": args}, "response_queue": "calc:rpc:p"}
    )
    reply = _push_and_wait(r, raw, "calc:rpc:p")
    assert "exception" in reply
    assert type(calc) is Calculator and callable(calc.echo)


def test_code_in_arguments_is_only_data(r, serve, calc, tmp_path):
    """Strings that look like Python code travel as data and are never evaluated."""
    serve(calc, "calc")
    marker = tmp_path / "pwned"
    payloads = [
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
        f"'); __import__('pathlib').Path({str(marker)!r}).touch(); ('",
        "__import__('os').system('touch " + str(marker) + "')",
        "cos\nsystem\n(S'touch " + str(marker) + "'\ntR.",  # a pickle
    ]
    raw = json.dumps(
        {
            "function_call": {"name": "echo", "args": payloads, "kwargs": {"k": payloads[0]}},
            "response_queue": "calc:rpc:c",
        }
    )
    reply = _push_and_wait(r, raw, "calc:rpc:c")
    assert reply["return_value"] == [payloads, {"k": payloads[0]}]
    raw = json.dumps(
        {
            "function_call": {"name": "add", "args": [1], "kwargs": {payloads[0]: 1}},
            "response_queue": "calc:rpc:k",
        }
    )
    assert _push_and_wait(r, raw, "calc:rpc:k")["error"]["type"] == "TypeError"
    assert not marker.exists()
    assert calc.acc == 0.0


@pytest.mark.parametrize("queue", ["victim", "calc", "other:rpc:x", "calc:rpcx"])
def test_reply_queue_outside_the_prefix_is_never_written(r, serve, calc, queue):
    """A response_queue outside '<service>:rpc:' cannot make the server touch another key."""
    r.set("victim", "keep me")
    serve(calc, "calc")
    raw = json.dumps({"function_call": {"name": "add", "args": [1]}, "response_queue": queue})
    r.rpush("calc", raw)
    # A well-formed request after it proves the server went past the hostile one.
    assert (
        _push_and_wait(
            r,
            '{"function_call": {"name": "val"}, "response_queue": "calc:rpc:after"}',
            "calc:rpc:after",
        )["return_value"]
        == 0.0
    )
    assert r.get("victim") == b"keep me" and r.ttl("victim") == -1
    assert r.llen("calc") == 0
    assert calc.acc == 0.0


def test_a_pickled_request_gets_a_protocol_error_reply(r, serve, calc):
    """The original client's pickled request: answered with redisrpc.ProtocolError, not ignored."""
    import pickle  # noqa: PLC0415 - only to build what old clients send; never loaded

    serve(calc, "calc")
    message = {"function_call": {"name": "add", "args": [1]}, "response_queue": "calc:rpc:pk"}
    r.rpush("calc", pickle.dumps(message))
    popped = r.blpop(["calc:rpc:pk"], timeout=5)
    assert popped is not None, "no reply"
    error = json.loads(popped[1])["error"]
    assert error["type"] == "redisrpc.ProtocolError" and "UTF-8" in error["message"]
    assert calc.seen == []


def test_server_accepts_the_original_transport_keyword(r, calc):
    """Server(..., transport='json') as in the original examples; 'pickle' is refused clearly."""
    server = redisrpc.Server(r, "calc", calc, transport="json", register=False)
    assert server.name == "calc"
    with pytest.raises(ValueError, match="pickle"):
        redisrpc.Server(r, "calc", calc, transport="pickle")
