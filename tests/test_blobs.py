"""The binary side channel (protocol 4): bytes and arrays as raw blobs beside the JSON."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import numpy as np
import pytest
from conftest import wait_for

import redisrpc
from redisrpc.client.proxy import ProxyState
from redisrpc.core import protocol
from redisrpc.core.call import encoded
from redisrpc.core.ownlist import OwnList
from redisrpc.core.plan import Receive
from redisrpc.core.protocol import (
    Framed,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode_framed_reply,
    encode_framed_request,
    framed,
)
from redisrpc.errors import MessageTooLargeError


class Store:
    """Echoes what it gets, and says how it arrived."""

    def echo(self, value: Any) -> Any:
        return value

    def describe_array(self, a: Any) -> dict[str, Any]:
        return {
            "type": type(a).__name__,
            "writeable": bool(a.flags.writeable),
            "sum": float(a.sum()),
        }

    def make(self, n: int) -> Any:
        return np.arange(n, dtype="<u2")


def _elements(data: bytes) -> list[bytes]:
    """What a reply list holds after the RPUSH of ``data``: its JSON, then its blobs."""
    blobs = data.blobs if isinstance(data, Framed) else []
    return [bytes(data), *(bytes(b) for b in blobs)]


def test_a_64_mb_array_and_a_16_bit_image_round_trip_intact(r, serve):
    serve(Store(), "store")
    store = redisrpc.Client(r, "store", timeout=60)
    big = np.random.default_rng(1).random(8 * 1024 * 1024)  # 64 MiB of float64
    image = np.arange(2048 * 2048, dtype=np.uint16).reshape(2048, 2048)
    got = store.echo(big)
    assert got.dtype == big.dtype and np.array_equal(got, big)
    got_image = store.echo(image)
    assert got_image.dtype == np.uint16 and got_image.shape == (2048, 2048)
    assert np.array_equal(got_image, image)
    assert not got_image.flags.writeable  # zero-copy: a view of the received bytes
    # The server got read-only arrays too, and the blob lists are gone.
    assert store.describe_array(image[::2]) == {
        "type": "ndarray",
        "writeable": False,
        "sum": float(image[::2].sum()),
    }
    assert [k for k in r.keys("*") if b"blobs" in k] == []


def test_bytes_and_arrays_travel_as_blobs_not_base64(r, serve):
    serve(Store(), "store")
    store = redisrpc.Client(r, "store")
    value = {"b": b"\x00\x01" * 10, "a": np.arange(6, dtype=">i4").reshape(2, 3), "n": float("nan")}
    got = store.echo(value)
    assert got["b"] == value["b"]
    assert got["a"].dtype == np.dtype(">i4") and np.array_equal(got["a"], value["a"])
    assert np.isnan(got["n"])
    # The same request as the client sends it: the JSON holds blob references only.
    call = redisrpc.Client(r, "store")._rpc_state.call("echo", [value], {})
    data = encoded(call)
    assert isinstance(data, Framed) and len(data.blobs) == 2
    assert b"base64" not in data and data.startswith(b'{"blobs":2,"blob_key":"store:rpc:')


def test_version_1_2_3_callers_get_base64_json(r, serve):
    serve(Store(), "store")
    for version in (None, 2, 3):
        message: dict[str, Any] = {
            "function_call": {"name": "make", "args": [3]},
            "response_queue": f"store:rpc:v{version}",
        }
        if version is not None:
            message.update(protocol=version, id=f"i{version}")
        r.rpush("store", json.dumps(message))
        _, raw = r.blpop([f"store:rpc:v{version}"], timeout=10)
        reply = json.loads(raw)
        assert reply["return_value"] == {
            "__redisrpc__": "ndarray",
            "dtype": "<u2",
            "shape": [3],
            "base64": "AAABAAIA",
        }
        assert r.llen(f"store:rpc:v{version}") == 0  # nothing follows: no blobs


def test_a_protocol_4_caller_gets_the_json_then_its_blobs_in_one_push(r, serve):
    serve(Store(), "store")
    r.rpush(
        "store",
        json.dumps(
            {
                "function_call": {"name": "make", "args": [3]},
                "response_queue": "store:rpc:v4",
                "protocol": 4,
                "id": "x",
            }
        ),
    )
    _, raw = r.blpop(["store:rpc:v4"], timeout=10)
    assert raw.startswith(b'{"blobs":1,')
    assert json.loads(raw)["return_value"] == {
        "__redisrpc__": "ndarray",
        "dtype": "<u2",
        "shape": [3],
        "blob": 0,
    }
    assert r.lpop("store:rpc:v4") == b"\x00\x00\x01\x00\x02\x00"


def test_a_client_sends_base64_to_a_server_before_protocol_4():
    request = Request("echo", [b"abc", np.arange(3)], {}, "s:rpc:1", "1")
    data = encode_framed_request(request, binary=False, key="s:rpc:1:blobs", ttl_ms=1000)
    assert not isinstance(data, Framed) and b"base64" in data

    proxy = ProxyState("s", _NoTransport(), 5.0, description={"protocol": 3})
    assert proxy.call("echo", [b"x"], {}).binary is False
    proxy.description = {"protocol": 4}
    assert proxy.call("echo", [b"x"], {}).binary is True


class _NoTransport:
    location = "nowhere"


def test_blobs_cut_off_by_a_batch_are_popped_with_their_message():
    first = encode_framed_reply(Reply(value=[b"a", b"b", b"c"], id="1"), binary=True)
    second = encode_framed_reply(Reply(value=1, id="2"), binary=True)
    elements = _elements(first) + _elements(second)
    messages, missing = framed(elements[:2])
    assert missing == 2 and len(messages) == 1
    # The reader's plan pops exactly the rest, and hands out whole messages.
    own = OwnList()
    plan = own.plan(Receive("q", "1", 1.0))
    assert plan is not None
    step = plan.send(None)
    assert step[0][0] == "BLPOP"
    step = plan.send([[b"q", elements[0]], elements[1:2]])
    assert step == (("LPOP", "q", 2),)
    with pytest.raises(StopIteration) as done:
        plan.send([[elements[2], elements[3]]])
    assert decode_reply(done.value.value).value == [b"a", b"b", b"c"]
    rest, missing = framed(elements[4:])
    assert missing == 0 and decode_reply(rest[0]).value == 1


def test_sizes_are_checked_before_encoding(monkeypatch):
    def never(*_: Any) -> bytes:
        raise AssertionError("encoded although over the limit")

    monkeypatch.setattr(protocol.base64, "b64encode", never)
    request = Request("echo", [np.zeros(1000)], {}, "s:rpc:1", "1")
    with pytest.raises(MessageTooLargeError):
        encode_framed_request(request, binary=False, max_size=4000, key="k", ttl_ms=1)
    with pytest.raises(MessageTooLargeError):
        encode_framed_request(request, binary=True, max_blob_size=4000, key="k", ttl_ms=1)
    reply = encode_framed_reply(Reply(value=b"x" * 5000, id="1"), binary=False, max_size=4000)
    assert decode_reply(reply).error.type == "redisrpc.MessageTooLargeError"


def test_a_request_with_blobs_decodes_against_them_only():
    request = Request("echo", [b"abc"], {}, "s:rpc:1", "1")
    data = encode_framed_request(request, binary=True, key="s:rpc:1:blobs", ttl_ms=1)
    assert decode_request(Framed(bytes(data), [b"abc"]), queue="s").args == [b"abc"]
    with pytest.raises(redisrpc.ProtocolError):
        decode_request(bytes(data), queue="s")  # its blobs never came


def test_async_multiplexed_calls_carry_blobs(redis_url, serve):
    serve(Store(), "store")

    async def main() -> list[Any]:
        store = await redisrpc.AsyncClient(redis_url, "store")
        return await asyncio.gather(*(store.echo(np.full(1000, i)) for i in range(40)))

    results = asyncio.run(main())
    assert all(np.array_equal(got, np.full(1000, i)) for i, got in enumerate(results))


def test_max_blob_size_is_advertised_and_enforced(r, serve):
    serve(Store(), "store", max_blob_size=1000)
    store = redisrpc.Client(r, "store")
    assert redisrpc.description(store)["max_blob_size"] == 1000
    with pytest.raises(MessageTooLargeError, match="blobs of at least 2000 bytes"):
        store.make(1000)  # 2000 bytes of reply blobs


def test_a_client_refuses_blobs_over_the_servers_limit_before_sending(r, serve):
    serve(Store(), "store", max_blob_size=1000)
    store = redisrpc.Client(r, "store")
    with pytest.raises(MessageTooLargeError, match="limit of 1000"):
        store.echo(np.zeros(1000))
    assert r.llen("store") == 0 and r.keys("store:rpc:*") == []


class Camera:
    def frames(self, count: int) -> Any:
        for i in range(count):
            yield np.full((64, 64), i, dtype=np.uint16)
        return "done"


def test_stream_items_carry_their_arrays_as_blobs(r, serve):
    serve(Camera(), "cam")
    cam = redisrpc.Client(r, "cam")
    frames = cam.frames(100)  # more items than one receive takes: batches cut the blobs off
    got = list(frames)
    assert len(got) == 100 and frames.value == "done"
    assert all(f.shape == (64, 64) and (f == i).all() for i, f in enumerate(got))

    async def main() -> list[Any]:
        acam = await redisrpc.AsyncClient(r, "cam")
        return [f async for f in await acam.frames(70)]

    assert [int(f[0, 0]) for f in asyncio.run(main())] == list(range(70))


def test_a_withdrawn_request_leaves_no_blobs_behind(r):
    # Nothing serves "idle" (a described protocol 4 server that went away): the call times
    # out, its request is withdrawn, and its blob list goes with it.
    idle = redisrpc.Client(r, "idle", timeout=0.3, describe=False)
    redisrpc.client.sync.state_of(idle).description = {"protocol": 4}
    with pytest.raises(redisrpc.TimeoutException, match=r"never ran|withdrawn|not taken"):
        idle._rpc_call("echo", (np.zeros(100),), {})
    assert r.llen("idle") == 0 and r.keys("idle:rpc:*") == []


class _Opaque:
    """No JSON form: it comes back as a handle."""

    def name(self) -> str:
        return "opaque"


class Mixed:
    def both(self) -> dict[str, Any]:
        return {"trace": np.arange(5, dtype="<f4"), "thing": _Opaque(), "raw": b"\x01\x02"}


def test_blobs_and_handles_travel_in_one_reply(r, serve):
    serve(Mixed(), "mixed")
    mixed = redisrpc.Client(r, "mixed")
    got = mixed.both()
    assert np.array_equal(got["trace"], np.arange(5, dtype="<f4")) and got["raw"] == b"\x01\x02"
    assert got["thing"].name() == "opaque"


def test_a_request_whose_blobs_are_gone_gets_its_protocol_error_not_a_timeout(r, serve):
    # The request waits with no server; its blob list expires; then a server takes it.
    store = redisrpc.Client(r, "store", timeout=10, describe=False)
    redisrpc.client.sync.state_of(store).description = {"protocol": 4}

    def expire_then_serve() -> None:
        wait_for(lambda: r.llen("store") == 1, message="request not pushed")
        assert r.delete(*r.keys("store:rpc:*:blobs")) == 1
        serve(Store(), "store")

    helper = threading.Thread(target=expire_then_serve, daemon=True)
    helper.start()
    # The server's error reply must reach the caller (it names the call), not be ignored
    # until the call times out (which would raise TimeoutException).
    with pytest.raises(redisrpc.ProtocolError, match="blob"):
        store._rpc_call("echo", (b"abc",), {})
    helper.join(10)


def test_stream_items_honour_the_servers_max_blob_size(r, serve):
    serve(Camera(), "cam", max_blob_size=1000)
    cam = redisrpc.Client(r, "cam")
    # The stream fails on its first item, as a reply over the limit would.
    with pytest.raises(redisrpc.RedisRPCError, match="limit of 1000"):
        list(cam.frames(2))  # 8192 bytes of blobs an item
    assert r.keys("cam:rpc:*") == []


class Buffer:
    """Returns its one frame buffer, refilled by each call (as many cameras do)."""

    def __init__(self) -> None:
        self.frame = np.zeros(16)

    def snap(self, i: int) -> Any:
        self.frame[:] = i
        return self.frame


def test_each_reply_holds_the_array_as_returned_even_when_the_next_call_changes_it(r, serve):
    # A backlog is served in batches: the replies of a batch are pushed after all its calls ran.
    for i in range(100):
        message = {
            "function_call": {"name": "snap", "args": [i]},
            "response_queue": f"buf:rpc:{i}",
            "protocol": 4,
            "id": str(i),
        }
        r.rpush("buf", json.dumps(message))
    serve(Buffer(), "buf")
    got = []
    for i in range(100):
        popped = r.blpop([f"buf:rpc:{i}"], timeout=10)
        assert popped is not None
        messages, missing = framed([popped[1]])
        messages, _ = framed([popped[1], *r.lpop(f"buf:rpc:{i}", missing)])
        got.append(decode_reply(messages[0]).value)
    assert [int(frame[0]) for frame in got] == list(range(100))
    assert all((frame == frame[0]).all() for frame in got)
