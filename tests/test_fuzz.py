"""Hostile input: garbage thrown at a live server never kills it or loses a valid request."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import redisrpc
from redisrpc.core.protocol import Reply, Request, decode_reply, decode_request, encode_request

SERVICE = "fz"
QUEUE = f"{SERVICE}:rpc:garbage"
LIMIT = 64 * 1024  # the fuzzed server's maximum message size

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


class Target:
    """The fuzzed object: public methods and a private secret."""

    def __init__(self) -> None:
        self._secret = "untouched"
        self.calls = 0

    def echo(self, *args: Any, **kwargs: Any) -> list[Any]:
        self.calls += 1
        return [list(args), kwargs]

    def blob(self, n: int) -> str:
        self.calls += 1
        return "x" * n


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)

names = st.sampled_from(
    [
        "echo",
        "missing",
        "_secret",
        "__class__",
        "__init__",
        "__dict__",
        "__getprop__",
        "__setprop__",
        "__describe__",
        "__ping__",
        "__import__",
        "eval",
        "echo.__globals__",
        "__class__.__subclasses__",
        "x" * 500,
        "",
        "é",
        "echo\x00",
    ]
) | st.text(max_size=30)


def request_shaped() -> st.SearchStrategy[bytes]:
    """Request-like objects with the right reply queue and wrong types in every other field."""
    call = st.fixed_dictionaries(
        {},
        optional={"name": names | json_values, "args": json_values, "kwargs": json_values},
    )
    message = st.fixed_dictionaries(
        {"response_queue": st.just(QUEUE), "function_call": call | json_values},
        optional={
            "id": json_values,
            "deadline": json_values,
            "lock": json_values,
            "protocol": json_values,
        },
    )
    return message.map(lambda m: json.dumps(m).encode())


def raw_request(name: bytes = b"echo", args: bytes = b"[]", kwargs: bytes = b"{}") -> bytes:
    """A request built from raw JSON pieces, with the garbage reply queue first."""
    return b'{"response_queue":"%s","function_call":{"name":"%s","args":%s,"kwargs":%s}}' % (
        QUEUE.encode(),
        name,
        args,
        kwargs,
    )


def bombs() -> st.SearchStrategy[bytes]:
    """Huge strings, deep nesting, huge numbers, many arguments, long names."""
    many_kwargs = st.integers(1, 5_000).map(lambda n: json.dumps({f"k{i}": i for i in range(n)}))
    return st.one_of(
        st.integers(1, 4 * LIMIT).map(lambda n: raw_request(args=b'["%s"]' % (b"x" * n))),
        st.integers(1, 200_000).map(lambda n: raw_request(args=b"[" * n + b"]" * n)),
        st.integers(1, 20_000).map(lambda n: raw_request(args=b"[%s]" % (b"9" * n))),
        st.integers(1, 20_000).map(lambda n: raw_request(args=b"[%s0]" % (b"0," * n))),
        many_kwargs.map(lambda k: raw_request(kwargs=k.encode())),
        st.integers(1, 3_000).map(lambda n: raw_request(name=b"a" * n)),
    )


def invalid_utf8() -> st.SearchStrategy[bytes]:
    """A request whose method name contains bytes that are not UTF-8."""
    return st.binary(min_size=1, max_size=50).map(lambda b: raw_request(name=b"\xff" + b))


@pytest.fixture
def target(r, serve):
    """A live server on the private redis-server with a small message size limit."""
    obj = Target()
    server = serve(obj, SERVICE, max_message_size=LIMIT)
    return obj, server


def throw(r, server, garbage: bytes) -> None:
    """Push garbage then a valid request; the valid one must be answered correctly."""
    probe = secrets.token_hex(8)
    reply_queue = f"{SERVICE}:rpc:{probe}"
    pipe = r.pipeline(transaction=False)
    pipe.delete(QUEUE)
    pipe.rpush(SERVICE, garbage)
    pipe.rpush(SERVICE, encode_request(Request("echo", [probe], {}, reply_queue, probe)))
    pipe.execute()
    popped = r.blpop([reply_queue], timeout=10)
    assert popped is not None, f"valid request lost behind {garbage[:100]!r}"
    reply = decode_reply(popped[1])
    assert reply.error is None and reply.value == [[probe], {}]
    for raw in r.lrange(QUEUE, 0, -1):
        checked(raw)  # whatever the server answered is a well-formed reply
    assert server.running


def checked(raw: bytes) -> Reply:
    """Decode a reply: whatever the server accepted and echoed decodes here too.

    The wire format's fixed nesting limit makes that independent of how deep
    this thread's stack is (hypothesis runs tests deep in its own frames).
    """
    return decode_reply(raw)


def answered(r) -> Reply | None:
    """The one reply the server sent to the garbage's reply queue."""
    replies = r.lrange(QUEUE, 0, -1)
    assert len(replies) == 1, "a message that names a valid reply queue must be answered"
    return checked(replies[0])


@FUZZ
@given(garbage=st.binary(max_size=3000))
def test_random_bytes(r, target, garbage):
    """Arbitrary bytes never kill the server, and the request behind them is answered."""
    throw(r, target[1], garbage)


@FUZZ
@given(garbage=json_values.map(lambda v: json.dumps(v).encode()))
def test_json_that_is_not_a_request(r, target, garbage):
    """Valid JSON of the wrong shape never kills the server."""
    throw(r, target[1], garbage)


def _expired_but_valid(r, garbage: bytes) -> bool:
    """Whether ``garbage`` is a well-formed request whose caller's deadline already passed."""
    try:
        request = decode_request(garbage, queue=SERVICE, max_size=LIMIT)
    except redisrpc.RedisRPCError:
        return False  # malformed: answered with an error, deadline or not
    return request.deadline is not None and request.deadline < r.time()[0] * 1000


@FUZZ
@given(garbage=request_shaped())
@example(garbage=json.dumps({"response_queue": QUEUE, "function_call": {}, "deadline": 0}).encode())
@example(
    garbage=json.dumps(
        {"response_queue": QUEUE, "function_call": {"name": "echo"}, "deadline": 0}
    ).encode()
)
def test_wrong_types_in_every_field(r, target, garbage):
    """Request-shaped messages with wrong field types get a reply, and never touch privates."""
    obj, server = target
    throw(r, server, garbage)
    if _expired_but_valid(r, garbage):
        # Its caller's deadline has passed: by design no reply, which nobody would read.
        assert r.llen(QUEUE) == 0
    else:
        answered(r)
    assert obj._secret == "untouched"


@FUZZ
@given(garbage=bombs())
@example(garbage=raw_request(args=b"[%s]" % (b"9" * 5000)))  # once killed the server
@example(garbage=raw_request(args=b"[" * 1986 + b"]" * 1986))
def test_bombs(r, target, garbage):
    """Huge, deep, numerous and oversized inputs are answered (an error where due)."""
    throw(r, target[1], garbage)
    reply = answered(r)
    if len(garbage) > LIMIT:
        assert reply is not None and reply.error is not None
        assert reply.error.type == "redisrpc.MessageTooLargeError"


@FUZZ
@given(garbage=invalid_utf8())
def test_invalid_utf8(r, target, garbage):
    """Bytes that are not UTF-8 get a ProtocolError reply."""
    throw(r, target[1], garbage)
    reply = answered(r)
    assert reply is not None and reply.error is not None
    assert reply.error.type == "redisrpc.ProtocolError"


def test_private_and_unknown_names_are_refused(r, target):
    """Private, dunder, dotted and unknown names are refused; nothing private is read or set."""
    obj, _ = target
    calc = redisrpc.Client(r, SERVICE, timeout=5, describe=False)
    for name, args in [
        ("_secret", []),
        ("__init__", []),
        ("__class__", []),
        ("__getprop__", ["_secret"]),
        ("__getprop__", ["__dict__"]),
        ("__setprop__", ["_secret", "changed"]),
        ("echo.__globals__", []),
        ("missing", []),
    ]:
        with pytest.raises(AttributeError):
            calc._rpc_call(name, args, {})
    assert obj._secret == "untouched"
    assert obj.calls == 0


def test_garbage_is_logged(r, target, caplog):
    """A bad request leaves a warning in the server's log naming what was wrong."""
    with caplog.at_level(logging.WARNING, logger="redisrpc.server"):
        throw(r, target[1], b"not json at all")
    assert any("bad request" in rec.getMessage() for rec in caplog.records)


def test_size_limit_is_clear_on_both_sides(r, target):
    """Past the limit the client refuses to send, and the server refuses big return values."""
    obj, _ = target
    echo = redisrpc.Client(r, SERVICE, timeout=5)
    with pytest.raises(redisrpc.MessageTooLargeError, match="over the server's limit"):
        echo.echo("x" * (LIMIT + 1))
    assert obj.calls == 0
    with pytest.raises(redisrpc.MessageTooLargeError, match="over the limit"):
        echo.blob(LIMIT + 1)
    assert obj.calls == 1  # it ran; only its too-large answer was replaced by the error
