"""Redis Sentinel: a master, a replica, three sentinels; calls go on after a failover."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel
from conftest import wait_for

import redisrpc
from redisrpc.core.transport import Transport, parse_sentinel_url
from redisrpc.errors import RedisRPCError, TransportError
from redisrpc.testing import RedisServer, free_port

MASTER = "themaster"


class Recorder:
    """Records every call it runs, so a call that ran twice shows."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.lock = threading.Lock()

    def record(self, n: int) -> int:
        with self.lock:
            self.seen.append(n)
        return n

    def slow(self, n: int) -> int:
        """Record, then take long enough for the master to die meanwhile."""
        self.record(n)
        time.sleep(0.5)
        return n


def counts_of(recorder: Recorder) -> Counter[int]:
    with recorder.lock:
        return Counter(recorder.seen)


class SentinelProcess:
    """One ``redis-server --sentinel`` on a free loopback port, watching ``MASTER``."""

    def __init__(self, master_port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="redisrpc-sentinel-"))
        self.port = free_port()
        config = self.dir / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"logfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 4000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        wait_for(lambda: _answers(client), timeout=10, message="sentinel answering")
        client.close()

    def master(self) -> dict[str, Any]:
        with redis.Redis(port=self.port, socket_timeout=1, decode_responses=True) as client:
            info: dict[str, Any] = client.sentinel_master(MASTER)
            return info

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


class Deployment:
    """A master, its replica and three sentinels on loopback."""

    def __init__(self) -> None:
        self.master = RedisServer().start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", "0")
        self.replica.args = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        self.sentinels = [SentinelProcess(self.master.port) for _ in range(3)]
        wait_for(self.ready, timeout=20, interval=0.1, message="sentinels know each other")

    def ready(self) -> bool:
        for sentinel in self.sentinels:
            info = sentinel.master()
            if int(info["num-other-sentinels"]) < 2 or int(info["num-slaves"]) < 1:
                return False
        with self.replica.client() as replica:
            return bool(replica.info("replication")["master_link_status"] == "up")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}"

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        self.replica.close()
        self.master.close()


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    made = Deployment()
    try:
        yield made
    finally:
        made.close()


def test_sentinel_urls_parse() -> None:
    """The sentinels, the master's name, its db and credentials come from the URL."""
    spec = parse_sentinel_url("redis+sentinel://u:pw@s1:26380,s2/mymaster/2?sentinel_password=x")
    assert spec["sentinels"] == [("s1", 26380), ("s2", 26379)]
    assert (spec["service_name"], spec["db"]) == ("mymaster", 2)
    assert (spec["username"], spec["password"], spec["sentinel_password"]) == ("u", "pw", "x")
    for bad in (
        "redis+sentinel://s1:26379",
        "redis+sentinel://s1/m/0/x",
        "redis+sentinel://s1/m?x=1",
    ):
        with pytest.raises(TransportError, match="invalid Redis URL"):
            Transport.of(bad)


def test_a_sentinel_managed_client_and_the_asyncio_client_reach_the_master(
    deployment: Deployment,
) -> None:
    """``Sentinel(...).master_for(name)`` and a URL both find the master; so does asyncio."""
    sentinel = redis.sentinel.Sentinel([("127.0.0.1", s.port) for s in deployment.sentinels])
    with redisrpc.Server(sentinel.master_for(MASTER), "rec", Recorder(), poll_interval=0.2):
        assert redisrpc.Client(deployment.url, "rec", timeout=5).record(1) == 1
        assert redisrpc.Client(sentinel.master_for(MASTER), "rec", timeout=5).record(2) == 2
        assert [s.name for s in redisrpc.discover(deployment.url)] == ["rec"]

        async def main() -> list[int]:
            client = await redisrpc.AsyncClient(deployment.url, "rec", timeout=5)
            return list(await asyncio.gather(*(client.record(n) for n in range(3, 8))))

        assert asyncio.run(main()) == [3, 4, 5, 6, 7]
        with deployment.master.client() as master:  # the plain key names, no hash tag
            assert master.exists("redisrpc:service:rec") == 1


def test_calls_go_on_after_the_master_is_killed(deployment: Deployment) -> None:
    """Kill the master mid-run: calls recover by themselves, none runs twice, none hangs.

    Each failed call fails with a redisrpc error within its timeout; the
    server finds the new master and registers there again, without a restart.
    """
    timeout = 3.0
    recorder = Recorder()
    server = redisrpc.Server(
        deployment.url, "rec", recorder, poll_interval=0.2, heartbeat=0.5
    ).start()
    client = redisrpc.Client(deployment.url, "rec", timeout=timeout)
    outcomes: list[tuple[int, float, float, BaseException | None]] = []  # n, start, took, error
    killed_at = 0.0
    n = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            n += 1
            started = time.monotonic()
            try:
                if n == 30:  # the master dies while this call runs
                    threading.Timer(0.2, deployment.master.kill).start()
                    killed_at = started + 0.2
                    client.slow(n)
                else:
                    assert client.record(n) == n
                error: BaseException | None = None
            except RedisRPCError as exc:
                error = exc
            outcomes.append((n, started, time.monotonic() - started, error))
            after = [o for o in outcomes if killed_at and o[1] >= killed_at]
            if len(after) >= 30 and all(o[3] is None for o in after[-20:]):
                break
            if error is not None:
                time.sleep(0.05)  # do not spin on a failing Redis
        assert killed_at, "the master was never killed"
        in_flight = outcomes[29]
        assert in_flight[0] == 30 and isinstance(in_flight[3], redisrpc.RedisConnectionError)
        assert in_flight[3].started is None  # it had run; Redis could not say so any more
        assert counts_of(recorder)[30] == 1  # it ran, once; its reply was lost with the master
        print(f"\nthe call in flight: {type(in_flight[3]).__name__}: {in_flight[3]}")
        recovered = next(o[1] + o[2] for o in outcomes if o[1] >= killed_at and o[3] is None)
        # The call in flight started before the kill: it counts among the failures.
        failed = [o for o in outcomes if o[3] is not None]
        counts = counts_of(recorder)
        print(
            f"\nfailover: {len(outcomes)} calls, {len(failed)} failed,"
            f" recovered {recovered - killed_at:.2f} s after the kill,"
            f" max failed-call time {max((o[2] for o in failed), default=0):.2f} s,"
            f" errors {Counter(type(o[3]).__name__ for o in failed)}"
        )
        assert recovered - killed_at < 10.0
        assert all(count == 1 for count in counts.values()), "a call ran twice"
        for _, _, took, error in failed:
            assert isinstance(error, RedisRPCError)
            assert took < timeout + 2.0
        for number, _, _, error in outcomes:
            if error is None:
                assert counts[number] == 1  # every call that succeeded ran once
        assert all(o[3] is None for o in outcomes[-20:])
        # The server registered again on the new master (its heartbeat rewrote the entry).
        wait_for(
            lambda: [s.name for s in redisrpc.discover(deployment.url)] == ["rec"],
            timeout=5,
            message="the server registered on the new master",
        )
        with deployment.replica.client() as new_master:
            assert new_master.info("replication")["role"] == "master"
    finally:
        server.stop(10)


def test_a_watch_goes_on_after_the_master_is_killed(deployment: Deployment) -> None:
    """The reader and the poller retry through a failover; a later change still arrives."""
    recorder = Recorder()
    server = redisrpc.Server(
        deployment.url, "rec", recorder, poll_interval=0.2, heartbeat=0.5
    ).start()
    try:
        proxy = redisrpc.Client(deployment.url, "rec")
        with redisrpc.watch(proxy, "seen", interval=0.1) as seen:
            assert seen.wait() == []
            deployment.master.kill()
            recorder.record(7)  # the instrument changes while Redis fails over
            wait_for(lambda: seen.latest == [7], timeout=30, message="the change after failover")
    finally:
        server.stop(10)


def test_a_master_demoted_under_its_clients_is_reported_as_lost(deployment: Deployment) -> None:
    """A master made a replica while connected (READONLY) is a lost master, sync and asyncio.

    As redis-py's Sentinel connections do: the connection is dropped (the next
    one asks the sentinels again) and the write fails with RedisConnectionError,
    not with a command error on a connection kept to the old master.
    """
    from redisrpc.core.aio_transport import AsyncTransport  # noqa: PLC0415

    transport = Transport.of(deployment.url)
    aio = AsyncTransport(transport)

    async def push() -> list[Any]:
        return await aio.execute(("RPUSH", "k", "v"))

    transport.execute(("RPUSH", "k", "v"))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(push())
        # Demoted by hand: the sentinels' own failover would also kill its clients.
        with deployment.master.client() as old:
            old.replicaof("127.0.0.1", deployment.replica.port)
        wait_for(
            lambda: _role(deployment.master) == "slave", timeout=5, message="the master demoted"
        )
        # Said by our direct read path (hiredis), or by redis-py's Sentinel connection
        # when it reads the reply itself (without the fast extra).
        with pytest.raises(redisrpc.RedisConnectionError, match=r"replica|previous master"):
            transport.execute(("RPUSH", "k", "v"))
        assert not any(conn._sock for conn in transport._made)  # type: ignore[attr-defined]
        with pytest.raises(redisrpc.RedisConnectionError):
            loop.run_until_complete(push())
    finally:
        loop.run_until_complete(aio.close())
        loop.close()
        transport.close()


def _role(server: RedisServer) -> str:
    with server.client() as client:
        return str(client.info("replication")["role"])
