"""The call plan stepped by hand, with no Redis: every path of a call, once for both clients."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
from conftest import ROOT, wait_for
from servable import Thing

import redisrpc
from redisrpc.client.proxy import CALLER, ProxyState
from redisrpc.client.sync import _Direct
from redisrpc.core.call import UNKNOWN_GRACE, Call, calling, encoded, new_call_id
from redisrpc.core.plan import NOW, Receive, Recover, Send, drive
from redisrpc.core.protocol import (
    Reply,
    Request,
    decode_request,
    encode_framed_request,
    encode_progress,
    encode_reply,
)

SERVICE = "svc"


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(**options: Any) -> Call:
    base: dict[str, Any] = {
        "service": SERVICE,
        "method": "add",
        "args": (1,),
        "kwargs": {},
        "timeout": 5.0,
        "reply_prefix": "svc:rpc:",
        "call_id": "c1",
        "anonymous": "none",
    }
    base.update(options)
    return Call(**base)


def marks(call_id: str = "c1", service: str = SERVICE, ttl_ms: int = 8000) -> tuple[Any, ...]:
    """The cancel mark and the counter bump that go with every withdrawal."""
    return (
        ("SET", f"{service}:cancel:{call_id}", b"1", "PX", ttl_ms),
        ("INCR", f"{service}:cancels"),
        ("PEXPIRE", f"{service}:cancels", ttl_ms),
    )


def start(call: Call, clock: Clock) -> tuple[Any, Send]:
    plan = calling(call, clock=clock)
    assert next(plan) is NOW
    send = plan.send(1_000_000)
    assert isinstance(send, Send)
    return plan, send


def finish(plan: Any, reply: Any) -> Any:
    with pytest.raises(StopIteration) as done:
        plan.send(reply)
    return done.value.value


def test_request_carries_id_deadline_and_reply_queue():
    """The pushed request names the call's id, its own reply list and a Redis-clock deadline."""
    plan, send = start(make(), Clock())
    request = decode_request(send.data, queue=SERVICE)
    assert request.id == "c1" and request.deadline == 1_005_000
    assert send.reply_queue == "svc:rpc:c1" == request.response_queue
    assert 0 < send.wait <= 1.0
    reply = finish(plan, encode_reply(Reply(value=2, id="c1")))
    assert reply.value == 2


def test_a_proxys_call_carries_its_settings():
    """ProxyState.call (built positionally, for speed) fills each field of the Call it makes."""

    class Place:
        location = "redis://here"

    state = ProxyState("svc", Place(), 7.0, {"protocol": 4}, max_size=999, max_blob_size=99)
    state.lock.token, state.limit = "tok", 70.0
    on_event = print
    call = state.call("add", (1,), {"k": 2}, on_event=on_event)
    assert (call.service, call.method, call.args, call.kwargs) == ("svc", "add", (1,), {"k": 2})
    assert (call.timeout, call.reply_prefix, call.lock_token) == (7.0, "svc:rpc:", "tok")
    assert (call.max_size, call.max_blob_size, call.limit) == (999, 99, 70.0)
    assert (call.registry_prefix, call.anonymous, call.binary) == (None, "none", True)
    assert (call.shared_queue, call.find_unknown, call.deadline) == (None, False, None)
    assert call.caller == CALLER and call.on_event is on_event and len(call.call_id) == 32
    assert state.call("add", (), {}).call_id != call.call_id


def test_a_driver_that_knows_the_redis_clock_skips_the_now_step():
    """Given ``now``, the plan's first step is the push, with the deadline from that clock."""
    plan = calling(make(), clock=Clock(), now=2_000_000)
    send = next(plan)
    assert isinstance(send, Send)
    assert decode_request(send.data, queue=SERVICE).deadline == 2_005_000
    assert finish(plan, encode_reply(Reply(value=2, id="c1"))).value == 2


def test_progress_with_the_push_is_reported_and_the_wait_goes_on():
    """A progress message answers the push: the call reports it and waits for its reply."""
    events: list[Any] = []
    plan, _ = start(make(on_event=lambda kind, value: events.append((kind, value))), Clock())
    step = plan.send(encode_progress("c1", 1, 4, "homing"))
    assert isinstance(step, Receive) and step.call_id == "c1"
    assert events == [("progress", {"done": 1, "total": 4, "message": "homing"})]
    assert finish(plan, encode_reply(Reply(value=2, id="c1"))).value == 2


def test_forged_or_stray_replies_are_ignored_and_the_real_one_taken():
    """A reply without the call's id (or undecodable) from a v2 peer is skipped, not returned."""
    clock = Clock()
    plan, _ = start(make(), clock)
    for junk in [b'"forged by intruder"', encode_reply(Reply(value=666)), b"\xff{"]:
        step = plan.send(junk)
        assert isinstance(step, Receive) and step.call_id == "c1"
    step = plan.send(encode_reply(Reply(value=666, id="other")))
    assert isinstance(step, Receive)
    assert finish(plan, encode_reply(Reply(value=2, id="c1"))).value == 2


def test_version_one_peer_reply_without_id_is_taken():
    """A version 1 server echoes no id: its reply is the call's."""
    plan, _ = start(make(anonymous="any"), Clock())
    assert finish(plan, b'{"return_value": 7, "exception": null}').value == 7


def test_first_describe_takes_an_anonymous_error_but_not_an_anonymous_value():
    """`__describe__` to an unknown peer: a v1 error answers it, a value without id does not."""
    plan, _ = start(make(anonymous="errors"), Clock())
    assert isinstance(plan.send(b'{"return_value": {"class": "Fake"}}'), Receive)
    reply = finish(plan, b'{"exception": "no such method", "return_value": null}')
    assert reply.error is not None


def test_timeout_withdraws_and_reports_not_started():
    """No reply by the timeout: LREM + DEL, then TimeoutException(started=False)."""
    clock = Clock()
    plan, send = start(make(timeout=2.0), clock)
    clock.now += 2.5
    step = plan.send(None)
    assert step == (("LREM", SERVICE, 1, send.data), ("DEL", "svc:rpc:c1"))
    with pytest.raises(redisrpc.TimeoutException) as info:
        plan.send([1, 0])
    assert info.value.started is False


def test_timeout_of_a_taken_request_reports_started():
    """LREM found nothing: a server took it, so started=True."""
    clock = Clock()
    plan, _ = start(make(timeout=2.0), clock)
    clock.now += 2.5
    plan.send(None)
    assert plan.send([0, 0]) is NOW  # taken: mark it cancelled, until its deadline and a margin
    assert plan.send(1_002_500) == marks(ttl_ms=3000)
    with pytest.raises(redisrpc.TimeoutException) as info:
        plan.send(["OK", 1, 1])
    assert info.value.started is True


def test_gone_service_is_checked_twice_then_withdrawn():
    """A registering service with no live instance, twice a heartbeat apart: ServerGoneError."""
    clock = Clock()
    plan, send = start(make(registry_prefix="redisrpc"), clock)
    assert plan.send(None) is NOW  # counting live instances
    assert plan.send(1_000_500)[0][0] == "ZCOUNT"
    assert plan.send([0]) == 1.0  # a heartbeat's grace
    assert plan.send(None) is NOW
    plan.send(1_001_500)
    assert plan.send([0]) == (("LREM", SERVICE, 1, send.data),)
    assert plan.send([1]) == (("DEL", "svc:rpc:c1"),)
    with pytest.raises(redisrpc.ServerGoneError) as info:
        plan.send([1])
    assert info.value.started is False


def test_unknown_service_fails_fast_with_close_matches():
    """Nothing registered and nothing took the request: withdrawn, and 'did you mean'."""
    clock = Clock()
    plan, send = start(make(service="stgae", find_unknown=True, anonymous="errors"), clock)
    step = plan.send(None)  # the first slice: too early to judge
    assert isinstance(step, Receive)
    clock.now += UNKNOWN_GRACE
    assert plan.send(None) is NOW
    plan.send(1_003_000)
    assert plan.send([0]) == (("LREM", "stgae", 1, send.data),)
    assert plan.send([1]) is NOW  # listing the live service names
    plan.send(1_003_000)
    assert plan.send([[b"stage", b"psu"]]) == (("DEL", send.reply_queue),)
    with pytest.raises(redisrpc.UnknownServiceError, match="did you mean 'stage'") as info:
        plan.send([1])
    assert info.value.started is False and info.value.suggestions == ["stage"]


def test_lost_connection_recovers_a_waiting_reply():
    """The connection drops: one Recover step; a reply that arrived meanwhile is the result."""
    plan, send = start(make(), Clock())
    assert plan.throw(redisrpc.RedisConnectionError("reset")) is NOW
    step = plan.send(1_000_000)
    assert step == Recover(SERVICE, send.data, "svc:rpc:c1", "c1", marks())
    assert finish(plan, (False, encode_reply(Reply(value=3, id="c1")))).value == 3


def test_lost_connection_recovering_only_a_progress_message_is_lost():
    """Recover found the call's progress (it still runs), not its reply: that is no result."""
    plan, _ = start(make(), Clock())
    plan.throw(redisrpc.RedisConnectionError("reset"))
    plan.send(1_000_000)
    with pytest.raises(redisrpc.RedisConnectionError) as info:
        plan.send((False, encode_progress("c1", 1, 2, "half")))
    assert info.value.started is None and "may or may not" in str(info.value)


def test_lost_connection_with_the_request_still_queued_never_runs():
    """Recover withdrew the request: RedisConnectionError(started=False)."""
    plan, _ = start(make(), Clock())
    plan.throw(redisrpc.RedisConnectionError("reset"))
    plan.send(1_000_000)
    with pytest.raises(redisrpc.RedisConnectionError) as info:
        plan.send((True, None))
    assert info.value.started is False and "withdrawn" in str(info.value)


def test_lost_connection_with_redis_still_gone_is_unknown():
    """Recover itself fails: started=None, and the deadline still guards a late start."""
    plan, _ = start(make(), Clock())
    plan.throw(redisrpc.RedisConnectionError("reset"))
    plan.send(1_000_000)
    with pytest.raises(redisrpc.RedisConnectionError) as info:
        plan.throw(redisrpc.RedisConnectionError("refused"))
    assert info.value.started is None and "deadline" in str(info.value)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, asyncio.CancelledError])
def test_interrupt_withdraws_the_request_then_goes_on(interrupt):
    """Ctrl-C or a cancelled task while waiting: the request is withdrawn, the interrupt raised."""
    plan, send = start(make(), Clock())
    step = plan.throw(interrupt())
    assert step == (("LREM", SERVICE, 1, send.data), ("DEL", "svc:rpc:c1"))
    with pytest.raises(interrupt) as info:
        plan.send([1, 1])
    if sys.version_info >= (3, 11):
        assert "withdrawn and will never run" in info.value.__notes__[0]


def test_multiplexed_call_leaves_the_shared_list_alone():
    """On a shared reply list, giving up withdraws the request but never deletes the list."""
    clock = Clock()
    plan, send = start(make(shared_queue="svc:rpc:shared"), clock)
    assert send.reply_queue == "svc:rpc:shared"
    assert decode_request(send.data, queue=SERVICE).id == "c1"
    clock.now += 10
    assert plan.send(None) == (("LREM", SERVICE, 1, send.data),)


def test_oversized_request_is_refused_before_sending():
    """A request over the server's advertised limit never leaves the client."""
    plan = calling(make(args=("x" * 2000,), max_size=1024), clock=Clock())
    next(plan)
    with pytest.raises(redisrpc.MessageTooLargeError):
        plan.send(1_000_000)


# Against a real redis-server.


def test_forged_reply_in_a_waiting_calls_list_is_not_its_result(r, serve):
    """Another user pushes replies into a waiting call's list: the call still gets its own."""
    client = redisrpc.Client(r, "svc", timeout=10, describe=False)
    thing = Thing()
    server = serve(thing, "svc")
    client._rpc_refresh()  # described: the server echoes ids
    server.stop(10)
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(client.incr()))
    worker.start()
    queued = wait_for(lambda: r.lrange("svc", 0, -1), timeout=5)
    reply_queue = decode_request(queued[0], queue="svc").response_queue
    r.rpush(reply_queue, b'"forged by intruder"', b'{"return_value": "forged", "id": "x"}')
    serve(thing, "svc")
    worker.join(10)
    assert result == [1]


def test_mistyped_service_fails_within_seconds_naming_the_close_match(r, serve):
    """Client(None, 'stgae') with 'stage' served: UnknownServiceError quickly, nothing left."""
    serve(Thing(), "stage")
    with pytest.raises(redisrpc.UnknownServiceError, match="did you mean 'stage'"):
        redisrpc.Client(r, "stgae", timeout=30)
    assert r.llen("stgae") == 0 and r.keys("stgae:*") == []


def test_original_constructor_transport_keyword(r, serve):
    """transport='json' (the original RedisRPC's examples pass it) works; pickle is refused."""
    serve(Thing(), "svc")
    assert redisrpc.Client(r, "svc", timeout=5, transport="json").incr() == 1
    with pytest.raises(ValueError, match="JSON only"):
        redisrpc.Client(r, "svc", transport="pickle")
    with pytest.raises(ValueError, match="JSON only"):
        redisrpc.AsyncClient(r, "svc", transport="pickle")


class Gate:
    """A served object whose hold() blocks until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.count = 0

    def hold(self) -> None:
        self.entered.set()
        self.release.wait(30)

    def incr(self) -> int:
        self.count += 1
        return self.count


def test_ctrl_c_on_a_queued_call_withdraws_it_and_it_never_runs(r, redis_url, serve):
    """SIGINT to a client process whose call waits behind a busy server: it never runs."""
    gate = Gate()
    serve(gate, "svc")
    busy = redisrpc.Client(r, "svc", timeout=30)
    blocker = threading.Thread(target=busy.hold)
    blocker.start()
    assert gate.entered.wait(10)  # the server is busy
    script = textwrap.dedent(
        f"""
        import redisrpc, sys
        proxy = redisrpc.Client({redis_url!r}, "svc", timeout=30, describe=False)
        print("ready", flush=True)
        try:
            proxy.incr()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    wait_for(lambda: r.llen("svc") == 1, timeout=5)  # its request waits in the queue
    child.send_signal(signal.SIGINT)
    assert child.stdout.readline().strip() == "interrupted"
    assert child.wait(10) == 0
    assert r.llen("svc") == 0  # withdrawn
    gate.release.set()
    blocker.join(10)
    assert busy.incr() == 1  # the server was free after hold(): the interrupted incr never ran
    assert r.keys("svc:rpc:*") == []


def test_a_reply_over_the_advertised_limit_is_refused_before_decoding():
    """A reply larger than the server's advertised limit raises, and is never decoded."""
    plan, _ = start(make(max_size=1024), Clock())
    huge = b'{"return_value": [' + b"0," * 5000 + b'0], "id": "c1"}'
    with pytest.raises(redisrpc.MessageTooLargeError):
        plan.send(huge)


def test_a_flood_in_the_reply_list_does_not_blow_up_the_client(r, serve):
    """A 4 MiB reply of tiny values pushed at a client whose server says 64 KiB: refused at once."""
    thing = Thing()
    serve(thing, "svc", max_message_size=64 * 1024)
    client = redisrpc.Client(r, "svc", timeout=10)
    result: list[BaseException] = []

    def call() -> None:
        try:
            client.sleep(3)
        except BaseException as exc:
            result.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    (running,) = wait_for(lambda: redisrpc.running(client), timeout=5)
    r.rpush(f"svc:rpc:{running['id']}", b'{"return_value": [' + b"0," * (2 * 1024 * 1024) + b"0]}")
    worker.join(10)
    assert isinstance(result[0], redisrpc.MessageTooLargeError)


def test_call_ids_are_unique_and_a_forked_child_draws_its_own():
    """Ids are a random per-process prefix plus a counter; a child never repeats its parent's."""
    ids = {new_call_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    prefixes = {i[:24] for i in ids}
    assert len(prefixes) == 1
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write_end, new_call_id().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child not in ids and child[:24] not in prefixes


class _Redis:
    """Answers a call's commands from a script of pops, recording every step (no Redis)."""

    def __init__(self, clock: Clock, pops: list[Any], *, lost: bool = False) -> None:
        self.clock, self.pops, self.lost = clock, list(pops), lost
        self.seen: list[Any] = []

    def step(self, step: Any) -> Any:
        self.seen.append(step)
        if step is NOW:
            return 1_000_000
        if not isinstance(step, tuple):
            return None  # a pause
        if self.lost:
            self.lost = False
            raise redisrpc.RedisConnectionError("lost")
        replies: list[Any] = []
        for command in step:
            if command[0] in ("BLPOP", "LPOP"):
                self.clock.now += 1.0 if command[0] == "BLPOP" else 0.0
                replies.append(self.pops.pop(0) if self.pops else None)
            else:
                replies.append(1)
        return replies

    def execute(self, *commands: Any) -> Any:
        return self.step(commands)

    def run(self, plan: Any) -> Any:
        return drive(plan, self.step)

    def rescue(self, plan: Any) -> Any:
        self.seen.append("rescue")
        return drive(plan, self.step)


def _run_call(in_place: bool, pops: list[Any], *, lost: bool = False) -> tuple[Any, list[Any]]:
    clock = Clock()
    redis = _Redis(clock, pops, lost=lost)
    direct = _Direct(redis)  # type: ignore[arg-type]
    call = make(own=direct if in_place else None)
    try:
        result: Any = drive(calling(call, clock=clock), direct.step)
    except redisrpc.RedisRPCError as exc:
        result = (type(exc), str(exc))
    # What Redis was asked, whichever route: the commands, in order.
    return result, [step for step in redis.seen if isinstance(step, tuple) or step == "rescue"]


_REPLY = encode_reply(Reply(value=3, id="c1"))
_FRAMED = b'{"blobs":2,' + encode_reply(Reply(value=[1], id="c1"))[1:]


@pytest.mark.parametrize(
    ("pops", "lost"),
    [
        ([["q", _REPLY]], False),  # the answer with the push (most calls)
        ([["q", _FRAMED], [b"a", b"b"]], False),  # with blobs, popped after it
        ([None, ["q", encode_progress("c1", 1, 2, "")], [_REPLY]], False),  # a batch
        ([None, ["q", b"junk"], None, ["q", _REPLY], None], False),
        ([None, ["q", _FRAMED], [b"a"], [b"b"]], False),  # blobs cut off by the batch
        ([], False),  # the timeout: withdrawn
        ([_REPLY], True),  # a lost connection: the reply taken on a fresh one
    ],
)
def test_a_calls_own_list_run_in_place_sends_what_the_driver_would(pops, lost):
    """Call.own runs its list's Send and Receive plans in the call's plan: same commands, result."""
    assert _run_call(True, pops, lost=lost) == _run_call(False, pops, lost=lost)


@pytest.mark.parametrize("lock", [None, "token"])
@pytest.mark.parametrize("deadline", [None, 1_000_000])
@pytest.mark.parametrize("args", [(1,), ("x", None, 2.5), ([1, {"a": b"\x00"}],)])
def test_a_calls_request_is_the_bytes_of_its_request_encoded(lock, deadline, args):
    """encoded() builds the request's JSON object from the call itself, as Request would give it."""
    call = make(args=args, kwargs={"k": 1}, lock_token=lock, deadline=deadline, caller="me@h:1")
    request = Request(
        "add", list(args), {"k": 1}, "svc:rpc:c1", "c1", deadline, lock=lock, caller="me@h:1"
    )
    if deadline is not None:
        request.sent = deadline - 5000
    expected = encode_framed_request(request, binary=False, key="svc:rpc:c1:blobs", ttl_ms=8000)
    assert encoded(call) == expected
