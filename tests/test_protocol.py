"""The wire format as pure functions: no Redis, no I/O."""

from __future__ import annotations

import contextlib
import enum
import json
import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from redisrpc.core import protocol
from redisrpc.core.protocol import (
    BUILTIN_CALLS,
    MAX_NESTING,
    PROTOCOL_VERSION,
    TAG,
    ErrorInfo,
    Framed,
    Reply,
    Request,
    decode_reply,
    decode_request,
    decode_value,
    encode_framed_reply,
    encode_framed_request,
    encode_reply,
    encode_request,
    encode_value,
    is_valid_name,
    reply_queue_prefix,
    salvage_response_queue,
)
from redisrpc.errors import EncodingError, MessageTooLargeError, ProtocolError


def _raw(message: object) -> bytes:
    return json.dumps(message).encode()


def test_request_round_trip_keeps_every_field():
    """encode_request then decode_request gives back the same request."""
    req = Request("add", [5, "x"], {"k": [1, 2]}, "calc:rpc:abc", "abc", 1234, "tok")
    back = decode_request(encode_request(req), queue="calc")
    expected = Request(
        "add", [5, "x"], {"k": [1, 2]}, "calc:rpc:abc", "abc", 1234, "tok", PROTOCOL_VERSION
    )
    assert back == expected


def test_encoded_request_has_the_v1_keys_and_omits_unset_extensions():
    """A request is a v1 object plus only the optional keys that are set."""
    message = json.loads(encode_request(Request("val", [], {}, "calc:rpc:1")))
    assert message == {
        "function_call": {"name": "val", "args": [], "kwargs": {}},
        "response_queue": "calc:rpc:1",
        "protocol": PROTOCOL_VERSION,
    }


@pytest.mark.parametrize("call", [{"name": "val"}, {"name": "val", "args": None, "kwargs": None}])
def test_absent_or_null_args_mean_empty(call):
    """The original Python client sends null args/kwargs; absent or null means empty."""
    req = decode_request(_raw({"function_call": call, "response_queue": "c:rpc:1"}), queue="c")
    assert (req.args, req.kwargs, req.protocol, req.id, req.deadline) == ([], {}, 1, None, None)


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        ([1, 2], "JSON object"),
        ({"function_call": {"name": "a"}}, "response_queue"),
        ({"function_call": {"name": "a"}, "response_queue": ""}, "response_queue"),
        ({"function_call": {"name": "a"}, "response_queue": "other:rpc:1"}, "c:rpc:"),
        ({"function_call": {"name": "a"}, "response_queue": "c:rpc:" + "x" * 500}, "400"),
        ({"function_call": "add", "response_queue": "c:rpc:1"}, "function_call"),
        ({"function_call": {"name": 3}, "response_queue": "c:rpc:1"}, "name"),
        ({"function_call": {"name": "a", "args": {}}, "response_queue": "c:rpc:1"}, "args"),
        ({"function_call": {"name": "a", "kwargs": []}, "response_queue": "c:rpc:1"}, "kwargs"),
        ({"function_call": {"name": "a"}, "response_queue": "c:rpc:1", "id": 5}, "'id'"),
        (
            {"function_call": {"name": "a"}, "response_queue": "c:rpc:1", "deadline": "1"},
            "deadline",
        ),
        (
            {"function_call": {"name": "a"}, "response_queue": "c:rpc:1", "deadline": True},
            "deadline",
        ),
        ({"function_call": {"name": "a"}, "response_queue": "c:rpc:1", "lock": 1}, "lock"),
    ],
)
def test_malformed_requests_raise_protocol_error_saying_what_is_wrong(message, fragment):
    """Each shape violation is a ProtocolError whose message names the problem."""
    with pytest.raises(ProtocolError, match=None) as info:
        decode_request(_raw(message), queue="c")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b'{"function_call": \xff\xfe}', "UTF-8"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    ],
)
def test_undecodable_requests_raise_protocol_error(raw, fragment):
    """Non-JSON, bad UTF-8 and absurd nesting are ProtocolErrors, never crashes."""
    with pytest.raises(ProtocolError) as info:
        decode_request(raw, queue="c")
    assert fragment in str(info.value)


def test_nesting_limit_is_fixed():
    """Up to MAX_NESTING levels decode; one more is a ProtocolError, for requests and replies."""
    deepest = "[" * MAX_NESTING + "1" + "]" * MAX_NESTING
    too_deep = "[" * (MAX_NESTING + 1) + "1" + "]" * (MAX_NESTING + 1)
    args = "[" * (MAX_NESTING - 2) + "1" + "]" * (MAX_NESTING - 2)  # the request's two levels
    ok = f'{{"function_call": {{"name": "f", "args": {args}}}, "response_queue": "c:rpc:1"}}'
    assert decode_request(ok.encode(), queue="c").name == "f"
    assert decode_value(deepest.encode()) is not None
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode_value(too_deep.encode())
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode_reply(f'{{"return_value": {too_deep}}}'.encode())
    objects = '{"a":' * (MAX_NESTING + 1) + "1" + "}" * (MAX_NESTING + 1)
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode_value(objects.encode())


def test_oversized_request_is_refused_before_parsing():
    """A request over max_size raises MessageTooLargeError (a ProtocolError)."""
    raw = encode_request(Request("add", ["x" * 1000], {}, "c:rpc:1"))
    with pytest.raises(MessageTooLargeError, match="exceeds the limit of 100"):
        decode_request(raw, queue="c", max_size=100)
    assert issubclass(MessageTooLargeError, ProtocolError)


def test_salvage_finds_only_a_prefixed_reply_queue():
    """A broken message still yields its reply queue, but only one the service may write to."""
    assert salvage_response_queue(b'{"response_queue": "c:rpc:9", oops', "c") == "c:rpc:9"
    assert salvage_response_queue(b'{"response_queue": "victim", oops', "c") is None
    assert salvage_response_queue(b"garbage", "c") is None
    assert salvage_response_queue(b'{"response_queue": "c:rpc:\xff"', "c") is None


def test_reply_queue_prefix_and_names():
    """Reply queues start with '<service>:rpc:'; names are plain identifiers only."""
    assert reply_queue_prefix("calc") == "calc:rpc:"
    assert is_valid_name("add") and is_valid_name("_private") and is_valid_name("a1_b")
    for bad in [
        "",
        "os.system",
        "add; import os",
        "__import__('os')",
        "a b",
        "1a",
        3,
        None,
        "x" * 201,
        "add\n",
    ]:
        assert not is_valid_name(bad), bad
    assert {"__describe__", "__getprop__", "__setprop__", "__ping__"} == BUILTIN_CALLS


def test_success_reply_has_no_exception_key():
    """v1 clients test for 'exception': a success reply must not carry it at all."""
    message = json.loads(encode_reply(Reply(value=[1, 2], id="i")))
    assert message == {"return_value": [1, 2], "protocol": PROTOCOL_VERSION, "id": "i"}
    assert decode_reply(json.dumps(message)).value == [1, 2]


def test_error_reply_reads_like_a_repr_for_v1_and_structured_for_v2():
    """An error reply has a v1 'exception' string and a v2 'error' object."""
    info = ErrorInfo("KeyError", "'x'", "Traceback ...", "calc@h:1")
    message = json.loads(encode_reply(Reply(error=info)))
    assert message["exception"] == "KeyError(\"'x'\")"
    assert message["error"] == {
        "type": "KeyError",
        "message": "'x'",
        "traceback": "Traceback ...",
        "server": "calc@h:1",
    }
    assert "return_value" not in message
    assert decode_reply(json.dumps(message)).error == info


def test_v1_replies_decode():
    """Replies of the original servers: bare exception string, or return_value."""
    assert decode_reply(b'{"exception": "ZeroDivisionError()"}').error == ErrorInfo(
        "", "ZeroDivisionError()"
    )
    assert decode_reply(b'{"return_value": null}').value is None
    # A v1 peer may write "exception": null next to a value; its own client reads success.
    assert decode_reply(b'{"return_value": 3, "exception": null}') == Reply(value=3)


@pytest.mark.parametrize("raw", [b"[]", b"{}", b'{"id": "x"}', b"nope"])
def test_malformed_replies_raise_protocol_error(raw):
    """A reply that is not an object with return_value/exception is a ProtocolError."""
    with pytest.raises(ProtocolError):
        decode_reply(raw)


def test_unencodable_return_value_becomes_an_error_naming_its_type():
    """encode_reply turns an unencodable value into a redisrpc.EncodingError reply."""
    reply = decode_reply(encode_reply(Reply(value={"f": object()}, id="i")))
    assert reply.error is not None and reply.id == "i"
    assert reply.error.type == "redisrpc.EncodingError"
    assert "object" in reply.error.message


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(object(), "object"), ({(1, 2): 3}, "tuple"), (np.array([object()]), "object")],
)
def test_unencodable_values_raise_encoding_error_naming_the_type(value, type_name):
    """A value with no encoding raises EncodingError (a TypeError) that names its type."""
    with pytest.raises(EncodingError) as info:
        encode_value(value)
    assert type_name in str(info.value)
    assert isinstance(info.value, TypeError)


def test_circular_and_deep_values_raise_encoding_error():
    """Self-referencing and absurdly nested values are EncodingErrors, not crashes."""
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(EncodingError):
        encode_value(loop)
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(EncodingError):
        encode_value(deep)


def test_tuples_and_sets_travel_as_lists():
    """Tuples become lists; sets become lists."""
    assert decode_value(encode_value((1, (2, 3)))) == [1, [2, 3]]
    assert sorted(decode_value(encode_value({3, 1}))) == [1, 3]


def test_bytes_are_tagged_base64():
    """Bytes travel as {"__redisrpc__": "bytes", "base64": ...} and come back as bytes."""
    raw = encode_value(b"\x00\x01\xff")
    assert json.loads(raw) == {TAG: "bytes", "base64": "AAH/"}
    assert decode_value(raw) == b"\x00\x01\xff"
    assert decode_value(encode_value(bytearray(b"ab"))) == b"ab"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_tagged_and_strict_json(value):
    """NaN and infinities travel as tagged strings, so strict JSON parsers accept them."""
    raw = encode_value({"x": [value, np.float32(value)]})
    assert b"NaN" not in raw and b"Infinity" not in raw
    back = decode_value(raw)["x"]
    for item in back:
        assert (math.isnan(item) and math.isnan(value)) or item == value


@pytest.mark.parametrize("dtype", ["<f8", "<i4", "|u1", "<c16", ">i2", "|b1"])
def test_ndarrays_round_trip_with_dtype_and_shape(dtype):
    """Arrays travel as dtype, shape and base64 C-order bytes; they come back equal."""
    arr = (np.arange(12).reshape(3, 4) % 5).astype(dtype)[:, ::2]  # not contiguous
    message = json.loads(encode_value(arr))
    assert (message[TAG], message["dtype"], message["shape"]) == ("ndarray", arr.dtype.str, [3, 2])
    back = decode_value(json.dumps(message))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    back[0, 0] = 1  # a writable copy, not a view of the message


def test_numpy_scalars_travel_as_numbers():
    """NumPy scalars become plain JSON numbers."""
    assert json.loads(encode_value([np.int64(3), np.float64(0.5), np.bool_(True)])) == [
        3,
        0.5,
        True,
    ]


@pytest.mark.parametrize(
    "tagged",
    [
        {TAG: "bytes", "base64": "!!!"},
        {TAG: "bytes"},
        {TAG: "float", "value": "lots"},
        {TAG: "ndarray", "dtype": "<f8", "shape": [3], "base64": "AAAA"},
        {TAG: "ndarray", "dtype": "O", "shape": [1], "base64": "AAAAAAAAAAA="},
        {TAG: "ndarray", "dtype": "nonsense", "shape": [1], "base64": ""},
    ],
)
def test_malformed_tagged_values_raise_protocol_error(tagged):
    """Broken or dangerous tagged values (object arrays) are refused with ProtocolError."""
    with pytest.raises(ProtocolError):
        decode_value(json.dumps({"v": tagged}))


def test_unknown_tags_stay_plain_dicts():
    """A dict with an unknown tag is user data and comes back unchanged."""
    value = {TAG: "future-type", "x": 1}
    assert decode_value(encode_value(value)) == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


@given(json_values)
def test_any_json_value_with_bytes_and_floats_round_trips(value):
    """Every value built from JSON types, bytes and any float survives encode/decode."""
    assert _same(decode_value(encode_value(value)), value)


@given(st.binary(max_size=300))
def test_decode_request_never_raises_anything_but_protocol_error(raw):
    """Random bytes give a Request or a ProtocolError, nothing else."""
    with contextlib.suppress(ProtocolError):
        decode_request(raw, queue="c")


def test_a_zero_dimensional_array_keeps_its_shape():
    """np.array(7.0) travels with shape [] and comes back 0-d, not 1-d."""
    encoded = json.loads(encode_value(np.array(7.0)))
    assert encoded["shape"] == []
    back = decode_value(encode_value(np.array(7.0)))
    assert back.shape == () and back == 7.0
    strided = np.arange(12.0).reshape(3, 4)[:, ::2]  # not contiguous: still encoded C-order
    assert np.array_equal(decode_value(encode_value(strided)), strided)


@pytest.mark.parametrize(
    "value",
    [
        {TAG: "bytes", "base64": "AAEC"},
        {TAG: "ndarray"},
        {TAG: {TAG: 1}, "other": [b"x", {TAG: None}]},
        [{"a": {TAG: "float", "value": "nan"}}],
        {TAG: "dict", "items": []},
        {TAG: 1, 2: "int key"},
    ],
)
def test_a_plain_dict_using_the_tag_key_round_trips(value):
    """A user's dict with the key __redisrpc__ is escaped, never read as a tagged value."""
    back = decode_value(encode_value(value))
    if isinstance(value, dict) and 2 in value:
        assert back == {TAG: 1, "2": "int key"}  # keys become strings, as JSON makes them
    else:
        assert back == value


_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=5)
    | st.sampled_from(["bytes", "float", "ndarray", "dict", "nan"])
)
_json_tree = st.recursive(
    _json_leaf | st.binary(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(st.sampled_from([TAG, "base64", "value", "items", "x"]), kids, max_size=3)
    ),
    max_leaves=20,
)


@given(_json_tree)
def test_values_with_tag_keys_round_trip(value):
    """Any nesting of dicts that use tag-like keys, bytes and scalars decodes to itself."""
    assert decode_value(encode_value(value)) == value


@pytest.mark.parametrize("protocol", range(6))
def test_the_reply_queue_of_a_pickled_request_is_salvaged(protocol):
    """The original RedisRPC's pickled request: its reply queue is found in the raw bytes."""
    import pickle  # noqa: PLC0415 - only to build what old clients send; never loaded

    message = {"function_call": {"name": "add", "args": [1]}, "response_queue": "calc:rpc:ab12"}
    raw = pickle.dumps(message, protocol=protocol)
    assert salvage_response_queue(raw, "calc") == "calc:rpc:ab12"
    assert salvage_response_queue(raw, "other") is None


def test_decode_reply_checks_its_size_before_decoding():
    """decode_reply(max_size=...) refuses a long reply before any decoding."""
    raw = encode_reply(Reply(value="x" * 1000))
    assert decode_reply(raw, max_size=len(raw)).value == "x" * 1000
    with pytest.raises(MessageTooLargeError):
        decode_reply(raw, max_size=len(raw) - 1)
    with pytest.raises(MessageTooLargeError):
        decode_reply(b"\xff" * 2000, max_size=1024)  # not even valid: refused for its size


def test_a_message_of_too_many_tiny_values_is_refused_before_decoding():
    """Values cost Python far more than their JSON: their count is checked on the raw bytes."""
    limit = 64 * 1024
    many = encode_request(Request("f", [[[]] * 20_000], {}, "c:rpc:1"))
    assert len(many) < limit
    with pytest.raises(MessageTooLargeError, match="values"):
        decode_request(many, queue="c", max_size=limit)
    with pytest.raises(MessageTooLargeError, match="values"):
        decode_reply(encode_reply(Reply(value=[0] * 30_000)), max_size=limit)
    # Commas and brackets inside strings are text, not values.
    text = encode_request(Request("f", ["[1,{2}," * 8000], {}, "c:rpc:1"))
    assert decode_request(text, queue="c", max_size=limit).args == ["[1,{2}," * 8000]
    escaped = encode_request(Request("f", ['\\",[' * 8000], {}, "c:rpc:1"))
    assert decode_request(escaped, queue="c", max_size=limit).args == ['\\",[' * 8000]


def test_the_reply_queue_of_an_oversized_request_is_found_after_its_arguments():
    """redisrpc writes response_queue after the arguments: salvage looks at the end too."""
    raw = encode_request(Request("f", ["x" * 10_000], {}, "c:rpc:tail"))
    assert salvage_response_queue(raw, "c") == "c:rpc:tail"


@pytest.mark.parametrize("dtype", ["<M8[ns]", "<m8[s]", "V4", "i4,f8"])
def test_arrays_of_dtypes_outside_the_list_are_refused_both_ways(dtype):
    """Only the dtypes PROTOCOL.md lists travel; others are refused, never reinterpreted."""
    arr = np.zeros(2, dtype=dtype)
    with pytest.raises(EncodingError):
        encode_value(arr)
    raw = {TAG: "ndarray", "dtype": np.dtype(dtype).str, "shape": [2], "base64": "AAAAAAAAAAA="}
    with pytest.raises(ProtocolError):
        decode_value(json.dumps(raw))
    assert decode_value(encode_value(np.array(["ab", "c"]))).tolist() == ["ab", "c"]


@contextlib.contextmanager
def _without_orjson() -> Iterator[None]:
    """The json module only, as where the "fast" extra is not installed."""
    saved = protocol._orjson
    protocol._orjson = None
    try:
        yield
    finally:
        protocol._orjson = saved


@pytest.mark.skipif(protocol._orjson is None, reason="orjson (the fast extra) is not installed")
@given(json_values | st.sets(st.integers(), max_size=3) | st.integers(min_value=2**63))
def test_orjson_and_the_json_module_agree(value):
    """Both encoders give messages that both decoders read alike (NaN tagged, big ints exact)."""
    fast = encode_value(value)
    with _without_orjson():
        plain = encode_value(value)
        assert _same(decode_value(fast), decode_value(plain))
    assert _same(decode_value(plain), decode_value(fast))
    assert _same(decode_value(fast), list(value) if isinstance(value, set) else value)
    json.loads(fast)  # strict JSON (no NaN literals)


@pytest.mark.parametrize("fast", [True, False])
@given(json_values | st.sets(st.integers(), max_size=3) | st.just({TAG: "x"}))
def test_a_call_request_is_the_bytes_of_the_full_encoding(fast, value):
    """The shortcut for plain values gives the full encoder's bytes, with either JSON module."""
    request = Request("f", [value], {"k": value}, "c:rpc:1", "id1", 5, caller="me@host:1")
    with contextlib.nullcontext() if fast else _without_orjson():
        try:
            full: bytes | Exception = encode_request(request)
        except EncodingError as exc:
            full = exc
        try:
            sent: bytes | Exception = encode_framed_request(
                request, binary=False, key="c:rpc:1:blobs", ttl_ms=1
            )
        except EncodingError as exc:
            sent = exc
    assert sent == full if isinstance(full, bytes) else type(sent) is type(full)


@pytest.mark.parametrize("fast", [True, False])
@given(json_values | st.just({TAG: "x"}) | st.just([None, {"a": math.inf}]))
def test_a_reply_is_the_bytes_of_the_full_encoding(fast, value):
    """Replies too: the shortcut (None and floats included) gives the full encoder's bytes."""
    reply = Reply(value=value, id="id1")
    with contextlib.nullcontext() if fast else _without_orjson():
        full = encode_reply(reply)
        sent = encode_framed_reply(reply, binary=False)
    assert sent == full


@pytest.mark.skipif(protocol._orjson is None, reason="orjson (the fast extra) is not installed")
def test_none_takes_the_one_call_encoding_and_nan_beside_it_does_not():
    """orjson writes None and NaN alike as null: only a value with NaN or inf needs the tags."""
    for value in (None, {"a": None, "b": [1.5, None]}, [None, (2.0, "x")]):
        assert (
            protocol._plain_dumps({"v": value})
            == json.dumps({"v": value}).replace(" ", "").encode()
        )
    for value in ([None, [math.nan]], {"a": None, "b": -math.inf}, (None, math.inf)):
        assert protocol._plain_dumps({"v": value}) is None


class _Level(enum.Enum):
    UNKNOWN = math.nan


@pytest.mark.parametrize("fast", [True, False])
def test_nan_beside_none_is_tagged_wherever_it_hides(fast):
    """In a set, a numpy scalar or a tuple, next to a None: tagged, never sent as null."""
    with contextlib.nullcontext() if fast else _without_orjson():
        back = decode_value(encode_value([None, {math.nan}, np.float32("inf"), (None, math.nan)]))
        with pytest.raises(EncodingError):  # an enum is refused, not sent as null
            encode_value([None, _Level.UNKNOWN])
    assert back[0] is None and math.isnan(back[1][0]) and back[2] == math.inf
    assert back[3][0] is None and math.isnan(back[3][1])


@pytest.mark.skipif(protocol._orjson is None, reason="orjson (the fast extra) is not installed")
@pytest.mark.parametrize(
    "value", [{1: 2}, "\ud800", object(), [np.float64("nan"), np.int64(3)], {TAG: "x", "a": [1]}]
)
def test_orjson_falls_back_or_refuses_as_the_json_module(value):
    """What orjson cannot encode goes to the json module: same message, same error."""
    try:
        fast: bytes | Exception = encode_value(value)
    except EncodingError as exc:
        fast = exc
    with _without_orjson():
        try:
            plain: bytes | Exception = encode_value(value)
        except EncodingError as exc:
            plain = exc
    assert type(fast) is type(plain)
    if isinstance(fast, bytes):
        assert isinstance(plain, bytes)
        assert _same(decode_value(fast), decode_value(plain))


@pytest.mark.skipif(protocol._orjson is None, reason="orjson (the fast extra) is not installed")
@pytest.mark.parametrize("shift", [-25, -19, -10, -1, 0, 5])
def test_big_integers_stay_exact_across_the_digit_scans_chunks(shift):
    """The scan that sends long numbers to the json module sees one at any chunk boundary."""
    big = 2**70 + 1  # 22 digits: orjson alone would make it a float
    boundary = protocol._SCAN_CHUNK - protocol._LONG_NUMBER  # where the second chunk starts
    pad = boundary + shift - len('["')
    raw = ('["' + "x" * pad + f'",{big}]').encode()
    assert raw.index(str(big).encode()) == boundary + shift + 2
    assert decode_value(raw) == ["x" * pad, big]


def _decoded(raw: bytes, route: Callable[[bytes], Request]) -> Request | Exception:
    try:
        return route(raw)
    except ProtocolError as exc:
        return exc


_VALID_CALL = {"name": "f", "args": [1], "kwargs": {}}
_request_fields = st.fixed_dictionaries(
    {
        "function_call": st.just(_VALID_CALL)
        | st.fixed_dictionaries(
            {"name": st.text(max_size=5) | st.integers()},
            optional={
                "args": st.none() | st.lists(json_values, max_size=3) | st.integers(),
                "kwargs": st.none() | st.dictionaries(st.text(max_size=3), json_values, max_size=2),
            },
        )
        | st.integers(),
        "response_queue": st.sampled_from(["c:rpc:1", "c:rpc:1", "c:rpc:", "d:rpc:1", "", 7]),
    },
    optional={
        "id": st.none() | st.text(max_size=3) | st.just("x" * 129) | st.integers(),
        "deadline": st.none() | st.integers() | st.booleans() | st.text(max_size=2),
        "lock": st.none() | st.text(max_size=3) | st.integers(),
        "protocol": st.integers(0, 9) | st.booleans() | st.text(max_size=2) | st.none(),
        "caller": st.text(max_size=3) | st.just("c" * 300) | st.integers() | st.none(),
        "sent": st.integers() | st.booleans() | st.none() | st.text(max_size=2),
        "other": json_values,
    },
)


def _full(raw: bytes) -> Request:
    return protocol._decode_request(raw, "c", 1 << 20)


def _fast(raw: bytes) -> Request:
    return decode_request(raw, queue="c", max_size=1 << 20)


@pytest.mark.skipif(protocol._orjson is None, reason="orjson (the fast extra) is not installed")
@given(_request_fields | json_values)
def test_the_request_shortcut_decodes_as_the_full_route(message):
    """decode_request's shortcut for plain requests gives the full route's request or error."""
    raw = encode_value(message)  # bytes and non-finite floats tagged: the full route's
    _assert_both_routes_agree(raw)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"caller": "c" * 300},
        {"caller": 5},
        {"protocol": True},
        {"protocol": "5"},
        {"sent": True},
        {"sent": 5.0},
        {"id": "x" * 128},
        {"id": "x" * 129},
        {"deadline": True},
        {"deadline": 5.5},
        {"lock": 3},
        {"function_call": {"name": "f"}},
        {"function_call": {"name": "f", "args": None, "kwargs": None}},
        {"response_queue": "c:rpc:" + "x" * 395},
        {"response_queue": "c:rpc:" + "x" * 394},
    ],
)
def test_the_request_shortcut_decodes_edge_fields_as_the_full_route(extra):
    """Each field at the edge of what the shortcut takes: the full route's request or error."""
    raw = json.dumps({"function_call": _VALID_CALL, "response_queue": "c:rpc:1", **extra}).encode()
    _assert_both_routes_agree(raw)


def _assert_both_routes_agree(raw: bytes) -> None:
    """The shortcut gives the full route's request (field types included) or its error."""
    general, fast = _decoded(raw, _full), _decoded(raw, _fast)
    if isinstance(general, Exception):
        assert type(fast) is type(general) and str(fast) == str(general)
    else:
        assert fast == general
        assert [type(v) for v in _fields_of(fast)] == [type(v) for v in _fields_of(general)]


def _fields_of(request: object) -> list[object]:
    return [getattr(request, name) for name in Request.__slots__]  # type: ignore[attr-defined]


@pytest.mark.skipif(protocol._orjson is None, reason="the shortcut needs orjson (the fast extra)")
def test_the_request_shortcut_takes_the_clients_requests():
    """A request as the client encodes it decodes by the shortcut, as by the full route."""
    request = Request("add", [1, "x"], {"k": 2.5}, "c:rpc:ab", "ab", 123, "tok", 5, "me@h:1", 99)
    raw = encode_request(request)
    calls = []
    full = protocol._decode_request
    try:
        protocol._decode_request = lambda *a: calls.append(a) or full(*a)  # type: ignore[assignment]
        fast = decode_request(raw, queue="c")
    finally:
        protocol._decode_request = full  # type: ignore[assignment]
    assert not calls  # the shortcut decided
    assert fast == full(raw, "c", protocol.DEFAULT_MAX_MESSAGE_SIZE)


@pytest.mark.parametrize("fast", [True, False])
@given(
    json_values | st.sets(st.integers(), max_size=3) | st.just({TAG: "x"}) | st.just(np.arange(3)),
    st.none() | st.text(max_size=8),
)
def test_a_value_reply_is_the_bytes_of_the_full_encoding(fast, value, call_id):
    """The shortcut for a plain return value gives encode_framed_reply's bytes, or leaves it."""
    with contextlib.nullcontext() if fast else _without_orjson():
        short = protocol.encode_value_reply(value, call_id)
        for binary in (True, False):
            try:
                full: bytes | Exception = protocol.encode_framed_reply(
                    Reply(value, id=call_id), binary=binary
                )
            except EncodingError as exc:
                full = exc
            if short is not None:
                assert short == full
                assert type(full) is bytes  # no blobs: the shortcut never drops any


def _decoded_reply(raw: bytes, max_size: int | None) -> Reply | tuple[type[Exception], str]:
    try:
        return decode_reply(raw, max_size=max_size)
    except (ProtocolError, MessageTooLargeError) as exc:
        return type(exc), str(exc)


def _same_reply(a: Reply | tuple[type[Exception], str], b: object) -> bool:
    if isinstance(a, Reply) and isinstance(b, Reply):
        return _same(a.value, b.value) and (a.error, a.id, a.interim, a.stream, a.extra) == (
            b.error,
            b.id,
            b.interim,
            b.stream,
            b.extra,
        )
    return a == b


_SHORT_REPLIES = [
    b'{"return_value":2,"protocol":4,"id":"0123456789abcdef0123456789abcdef"}',
    b'{"return_value":123456789012345678901234,"id":"i"}',
    b'{"return_value":-9223372036854775809}',
    b'{"return_value":18446744073709551615}',
    b'{"return_value":[18446744073709551616],"id":"i"}',
    b'{"return_value":{"a":123456789012345678901234}}',
    b'{"return_value":1.5,"id":"i"}',
    b'{"return_value":1e400}',
    b'{"return_value":NaN}',
    b'{"return_value":"1234567890123456789012345"}',
    b'{"return_value":"\\ud800"}',
    b'{"return_value":1,"return_value":2}',
    b'{"return_value":{"__redisrpc__":"bytes","base64":"AAE="}}',
    b'{"__redisrpc__":"bytes","base64":"AAE="}',
    b'{"return_value":[1,2],"stream":true,"id":"i","output":"hi"}',
    b'{"progress":{"done":1,"total":2,"message":""},"id":"i"}',
    b'{"exception":"E()","error":{"type":"E","message":"m"},"id":"i"}',
    b'{"exception":null}',
    b'{"id":"i"}',
    b"[1,2]",
    b'"x"',
    b"{",
    b"\xff",
]


@pytest.mark.parametrize("raw", _SHORT_REPLIES)
@pytest.mark.parametrize("max_size", [None, 1 << 20, 40])
def test_a_short_replys_quick_decoding_is_the_full_paths(raw, max_size):
    """Short plain replies skip the digit scan and the counts: same reply, same errors.

    A Framed message with no blobs takes the full path (_checked, _loads).
    """
    assert len(raw) <= MAX_NESTING
    assert _same_reply(_decoded_reply(raw, max_size), _decoded_reply(Framed(raw, []), max_size))


@given(st.dictionaries(st.sampled_from(["return_value", "id", "stream", "x"]), json_values))
def test_any_short_replys_quick_decoding_is_the_full_paths(message):
    raw = encode_value(message)  # bytes and NaN tagged
    assert _same_reply(_decoded_reply(raw, 1 << 20), _decoded_reply(Framed(raw, []), 1 << 20))
