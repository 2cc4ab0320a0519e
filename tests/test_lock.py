"""Sharing an instrument: the advisory lock (redisrpc.client.lock)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time

import pytest
from conftest import PYTHON, python_env, wait_for

import redisrpc
from redisrpc.aio import AsyncClient
from redisrpc.client.lock import Lock, digest, held_token, lock_info_async, lock_key, refusal
from redisrpc.core.protocol import Request, decode_reply, encode_request
from redisrpc.core.transport import Transport
from redisrpc.server.calls import RECHECK_AFTER
from redisrpc.testing import wait_for_async


class Stage:
    """A motorized stage that counts its moves."""

    def __init__(self) -> None:
        self.position = 0.0
        self.moves = 0

    def move(self, x: float) -> float:
        self.position = x
        self.moves += 1
        return x

    def lock(self) -> str:
        """A remote method that happens to be called lock."""
        return "remote lock"


def test_holder_runs_others_are_refused_with_holder_and_note(r, serve):
    """While A holds the lock, A's calls run and B's fail with LockedError naming A and the note."""
    stage = Stage()
    serve(stage, "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    b = redisrpc.Client(r, "stage", timeout=5)
    with redisrpc.lock(a, note="aligning the beam") as held:
        assert held.held
        assert a.move(3) == 3
        with pytest.raises(redisrpc.LockedError) as caught:
            b.move(4)
        assert "aligning the beam" in str(caught.value)
        assert caught.value.holder["note"] == "aligning the beam"
        assert caught.value.holder["pid"] > 0
        assert "token" not in caught.value.holder
        assert a.move(5) == 5
    assert stage.moves == 2 and stage.position == 5
    assert b.move(6) == 6  # released: B may call again
    assert r.exists(lock_key("stage")) == 0


def test_lock_info_shows_the_holder(r, serve):
    """lock_info() tells who holds the lock, their note and when it expires; None when free."""
    serve(Stage(), "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    b = redisrpc.Client(r, "stage", timeout=5)
    assert redisrpc.lock_info(b) is None
    with redisrpc.lock(a, ttl=20, note="scan 42"):
        info = redisrpc.lock_info(b)
        assert info is not None
        assert info["note"] == "scan 42"
        assert 0 < info["expires_in"] <= 20
        assert "token" not in info
        # Seconds, like every other time: within a minute of the Redis clock.
        assert isinstance(info["since"], float)
        assert abs(info["since"] - r.time()[0]) < 60
    assert redisrpc.lock_info(b) is None


def test_locked_server_can_still_be_described_and_pinged(r, serve):
    """A locked service still answers __describe__ and __ping__, so others can connect and look."""
    serve(Stage(), "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    with redisrpc.lock(a):
        c = redisrpc.Client(r, "stage", timeout=5)  # describes the service
        assert "move" in dir(c)
        assert c._rpc_call("__ping__", (), {}) == "pong"
        with pytest.raises(redisrpc.LockedError):
            c.move(1)


def _assert_abandoned_lock_expires(b: redisrpc.Client, note: str) -> None:
    """b is refused while the abandoned lock lasts, then the lock expires and b may call."""
    with pytest.raises(redisrpc.LockedError) as caught:
        b.move(2)
    assert caught.value.holder["note"] == note
    wait_for(
        lambda: redisrpc.lock_info(b) is None,
        interval=0.1,
        message=f"the abandoned lock {note!r} did not expire",
    )
    assert b.move(3) == 3


def test_lock_expires_when_its_holder_dies(r, redis_url, serve):
    """A holder process that dies without releasing frees the service after the ttl."""
    serve(Stage(), "stage")
    b = redisrpc.Client(r, "stage", timeout=5)
    code = (
        "import os, redisrpc\n"
        f"a = redisrpc.Client({redis_url!r}, 'stage', timeout=5)\n"
        "redisrpc.lock(a, ttl=1.0, note='crashing').acquire()\n"
        "a.move(1)\n"
        "os._exit(0)  # dies holding the lock\n"
    )
    subprocess.run([PYTHON, "-c", code], env=python_env(), check=True, timeout=30)
    _assert_abandoned_lock_expires(b, "crashing")


class Renewals:
    """Polls the lock's remaining time; true once it was renewed ``count`` times past ``span`` s."""

    def __init__(self, r, service: str, count: int, span: float) -> None:
        self.r, self.key, self.count, self.span = r, lock_key(service), count, span
        self.started = time.monotonic()
        self.renewed = 0
        self.last = r.pttl(self.key)

    def __call__(self) -> bool:
        left = self.r.pttl(self.key)
        assert left > 0, "the lock expired while its holder lived"
        self.renewed += left > self.last
        self.last = left
        return self.renewed >= self.count and time.monotonic() - self.started > self.span


def test_a_live_holder_keeps_the_lock_beyond_its_ttl(r, serve):
    """The holder renews the lock, so a sequence longer than the ttl stays exclusive."""
    serve(Stage(), "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    b = redisrpc.Client(r, "stage", timeout=5)
    with redisrpc.lock(a, ttl=0.6):
        wait_for(Renewals(r, "stage", count=3, span=0.9), message="no renewals")
        assert a.move(1) == 1
        with pytest.raises(redisrpc.LockedError):
            b.move(2)


def test_wait_takes_the_lock_once_it_is_released(r, serve):
    """lock(wait=...) waits for the holder to finish, then takes the lock."""
    serve(Stage(), "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    b = redisrpc.Client(r, "stage", timeout=5)
    held = redisrpc.lock(a).acquire()
    threading.Timer(0.5, held.release).start()
    started = time.monotonic()
    with redisrpc.lock(b, wait=10, note="next"):
        assert time.monotonic() - started >= 0.4
        assert b.move(2) == 2
        with pytest.raises(redisrpc.LockedError):
            a.move(3)


def test_wait_gives_up_with_the_holder_named(r, serve):
    """A wait that runs out raises LockedError carrying the holder's note."""
    serve(Stage(), "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    b = redisrpc.Client(r, "stage", timeout=5)
    with redisrpc.lock(a, note="long scan"):
        started = time.monotonic()
        with pytest.raises(redisrpc.LockedError) as caught:
            redisrpc.lock(b, wait=0.3).acquire()
        assert time.monotonic() - started >= 0.3
        assert caught.value.holder["note"] == "long scan"


def test_calls_under_an_expired_lock_are_refused(r, serve):
    """A caller whose lock expired is told so instead of running outside its sequence."""
    stage = Stage()
    serve(stage, "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    held = Lock(a, ttl=0.2, renew=False).acquire()
    wait_for(lambda: not r.exists(lock_key("stage")), message="the lock did not expire")
    with pytest.raises(redisrpc.LockedError, match="expired"):
        a.move(1)
    assert stage.moves == 0
    held.release()
    assert a.move(2) == 2


def test_a_late_release_never_frees_someone_elses_lock(r, serve):
    """Releasing an expired lock that another client took since leaves their lock alone."""
    serve(Stage(), "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    b = redisrpc.Client(r, "stage", timeout=5)
    stale = Lock(a, ttl=0.2, renew=False).acquire()
    wait_for(lambda: not r.exists(lock_key("stage")), message="the lock did not expire")
    with redisrpc.lock(b, note="mine now"):
        assert stale.release() is False
        assert redisrpc.lock_info(a)["note"] == "mine now"
        assert b.move(1) == 1


def test_lock_is_not_reentrant_on_one_proxy(r, serve):
    """Taking the lock twice through one proxy is a programming error, reported at once."""
    serve(Stage(), "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    with redisrpc.lock(a), pytest.raises(RuntimeError, match="already holds"):
        redisrpc.lock(a).acquire()


def test_sibling_proxies_and_rpc_lock_share_the_token(r, serve):
    """proxy._rpc_lock() is the lock too, and with_timeout siblings made inside carry it."""
    stage = Stage()
    serve(stage, "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    b = redisrpc.Client(r, "stage", timeout=5)
    with a._rpc_lock(note="via method"):
        assert redisrpc.with_timeout(a, 2).move(7) == 7
        with pytest.raises(redisrpc.LockedError):
            b.move(8)
    assert a.lock() == "remote lock"  # the remote method named lock is untouched


def test_refusal_rules():
    """The server's verdict: free runs, holder runs, others and garbage lock values refuse."""
    assert refusal(None, None, server="s") is None
    held = json.dumps({"digest": digest("t1"), "note": "n", "pid": 1}).encode()
    assert refusal("t1", held, server="s") is None
    other = refusal(None, held, server="s")
    assert other is not None and other.type == "redisrpc.LockedError"
    assert other.details == {"holder": {"note": "n", "pid": 1}}
    assert refusal("t2", held, server="s") is not None
    assert refusal("t1", None, server="s") is not None  # expired
    assert refusal(None, b"\xff garbage", server="s") is not None


def test_async_holder_runs_others_are_refused_until_release(r, serve):
    """`async with lock(proxy)`: its calls carry the token, others get LockedError, exit frees."""
    stage = Stage()
    serve(stage, "stage")

    async def main() -> None:
        a = await AsyncClient(r, "stage", timeout=5)
        b = await AsyncClient(r, "stage", timeout=5)
        assert await lock_info_async(b) is None
        async with redisrpc.lock(a, ttl=20, note="async scan") as held:
            assert held.held
            assert held_token(a) is not None
            assert await a.move(3) == 3
            assert await redisrpc.with_timeout(a, 2).move(4) == 4
            with pytest.raises(redisrpc.LockedError) as caught:
                await b.move(5)
            assert caught.value.holder["note"] == "async scan"
            info = await lock_info_async(b)
            assert info is not None and info["note"] == "async scan"
            assert 0 < info["expires_in"] <= 20
        assert not held.held
        assert held_token(a) is None
        assert await b.move(6) == 6

    asyncio.run(main())
    assert stage.moves == 3 and stage.position == 6
    assert r.exists(lock_key("stage")) == 0


def test_async_holder_keeps_the_lock_beyond_its_ttl(r, serve):
    """An asyncio task renews the lock, so a sequence longer than the ttl stays exclusive."""
    serve(Stage(), "stage")
    b = redisrpc.Client(r, "stage", timeout=5)

    async def main() -> None:
        a = await AsyncClient(r, "stage", timeout=5)
        async with redisrpc.lock(a, ttl=0.6):
            renewals = Renewals(r, "stage", count=3, span=0.9)
            await wait_for_async(renewals, message="no renewals")
            assert await a.move(1) == 1
            with pytest.raises(redisrpc.LockedError):
                await asyncio.to_thread(b.move, 2)

    asyncio.run(main())
    assert b.move(3) == 3


def test_async_lock_expires_when_the_holders_loop_stops(r, serve):
    """A lock taken in an event loop that ends without releasing it expires after its ttl."""
    serve(Stage(), "stage")
    b = redisrpc.Client(r, "stage", timeout=5)

    async def hold() -> None:
        a = await AsyncClient(r, "stage", timeout=5)
        await redisrpc.lock(a, ttl=3.0, note="abandoned").acquire_async()
        assert await a.move(1) == 1  # the loop ends here, and its renewal task with it

    asyncio.run(hold())
    _assert_abandoned_lock_expires(b, "abandoned")


def test_sync_and_async_forms_are_not_mixed_up(r):
    """Using the sync form on an async proxy, or the other way round, says what to use."""
    a = AsyncClient(r, "stage", timeout=5)
    s = redisrpc.Client(r, "stage", timeout=5, describe=False)
    with pytest.raises(TypeError, match="async with"), redisrpc.lock(a):
        pass
    with pytest.raises(TypeError, match="lock_info_async"):
        redisrpc.lock_info(a)

    async def main() -> None:
        with pytest.raises(TypeError, match="with"):
            async with redisrpc.lock(s):
                pass
        with pytest.raises(TypeError, match="lock_info"):
            await lock_info_async(s)

    asyncio.run(main())
    assert r.exists(lock_key("stage")) == 0


def test_the_lock_value_holds_a_digest_a_reader_cannot_replay(r, serve):
    """Whoever can GET <service>:lock sees only the token's digest; replaying it is refused."""
    stage = Stage()
    serve(stage, "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    with redisrpc.lock(a, note="mine"):
        token = held_token(a)
        assert token is not None
        stored = r.get(lock_key("stage"))
        assert token.encode() not in stored
        value = json.loads(stored)
        assert "token" not in value and value["digest"] == digest(token)
        # An intruder sends what it read as its token, by hand.
        for forged in (value["digest"], stored.decode()):
            request = {
                "function_call": {"name": "move", "args": [9], "kwargs": {}},
                "response_queue": "stage:rpc:intruder",
                "lock": forged,
            }
            r.rpush("stage", json.dumps(request))
            _, raw = r.blpop("stage:rpc:intruder", 5)
            assert json.loads(raw)["error"]["type"] == "redisrpc.LockedError"
        assert a.move(3) == 3  # the holder's calls still run
    assert stage.moves == 1 and stage.position == 3


@pytest.mark.parametrize(
    "stored",
    [
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError in a JSON parser
        b'{"digest": "x", "since": 1e308, "note": "far future"}',  # OverflowError in localtime
        b'{"digest": "x", "since": 99999999999999999999999, "note": "huge"}',
        b'{"digest": "x", "since": -1e300}',
        b"\xff\xfe not json",
    ],
    ids=["nested", "float-since", "int-since", "negative-since", "garbage"],
)
def test_a_garbage_lock_value_refuses_calls_and_the_server_serves_again(r, serve, stored):
    """Whatever is SET on the lock key: LockedError, the server lives; once fixed, it serves."""
    stage = Stage()
    server = serve(stage, "stage")
    a = redisrpc.Client(r, "stage", timeout=5)
    r.set(lock_key("stage"), stored)
    with pytest.raises(redisrpc.LockedError):
        a.move(1)
    info = redisrpc.lock_info(a)  # readers survive it too
    assert info is not None
    assert server.running
    r.delete(lock_key("stage"))
    assert a.move(2) == 2
    assert stage.moves == 1


class Slider:
    """``hold()`` waits for the test's word; ``move(x)`` moves at once. Records the moves."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.moved: list[float] = []

    def hold(self) -> str:
        self.holding.set()
        self.release.wait(10)
        time.sleep(4 * RECHECK_AFTER)  # longer than a reading a server takes as it is
        return "held"

    def move(self, x: float) -> float:
        self.moved.append(x)
        return x


def test_a_call_queued_before_the_lock_was_taken_is_refused_once_it_is_held(r, serve):
    """A batch taken while the service was free: a call of it that starts after someone took
    the lock (during a long call before it) is refused, as one popped then would be."""
    slider = Slider()
    serve(slider, "slider")
    proxy = redisrpc.Client(r, "slider", timeout=10)
    holder = redisrpc.Client(r, "slider", timeout=10)  # described now: locking calls nothing
    for i in range(30):  # fast calls: the server takes queued requests in batches from now on
        assert proxy.move(i) == i
    now = Transport.of(r).now_ms()

    def request(name: str, args: list[float], call_id: str) -> bytes:
        return encode_request(
            Request(name, args, {}, f"slider:rpc:{call_id}", call_id, now + 60_000, None, 3,
                    sent=now)
        )  # fmt: skip

    r.rpush("slider", request("hold", [], "long"), request("move", [100], "stranger"))
    wait_for(lambda: slider.holding.is_set() and r.llen("slider") == 0, message="one pop")
    with redisrpc.lock(holder, note="aligning"):
        slider.release.set()
        assert decode_reply(r.blpop(["slider:rpc:long"], timeout=10)[1]).value == "held"
        popped = r.blpop(["slider:rpc:stranger"], timeout=10)
        assert popped is not None
        refused = decode_reply(popped[1]).error
        assert refused is not None and refused.type.endswith("LockedError"), refused
        assert "aligning" in refused.message
    assert slider.moved == list(range(30))  # the stranger's move never ran
