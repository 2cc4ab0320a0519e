"""Redis Cluster: services spread over nodes, each service's keys in one slot, MOVED followed."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.cluster
from conftest import run_cli, wait_for

import redisrpc
from redisrpc.core import keys
from redisrpc.core.cluster import ClusterTransport, exchange_slot
from redisrpc.core.transport import Transport, parse_cluster_url
from redisrpc.errors import TransportError
from redisrpc.testing import RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")


class Echo:
    """Answers with its own name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def who(self) -> str:
        return self.name

    def add(self, a: int, b: int) -> int:
        return a + b


class Cluster:
    """Three master nodes on loopback, made into one cluster by redis-cli."""

    def __init__(self) -> None:
        self.nodes = [
            RedisServer(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            )
            for _ in range(3)
        ]

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *self.addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_for(self.ready, timeout=20, message="cluster not ok on every node")
        return self

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(self.addresses)

    def ready(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                info = client.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
                if len(client.execute_command("CLUSTER", "SLOTS")) < 3:
                    return False
        return True

    def owner(self, key: str) -> RedisServer:
        slot = redis.cluster.key_slot(key.encode())
        for node in self.nodes:
            with node.client() as client:
                if _owns(client, slot):
                    return node
        raise AssertionError(f"no node owns slot {slot}")

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def _owns(client: redis.Redis, slot: int) -> bool:
    me = client.execute_command("CLUSTER", "MYID").decode()
    for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return bool(primary[2].decode() == me)
    return False


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    try:
        yield made.start()
    finally:
        made.close()


def test_cluster_urls_parse() -> None:
    """``redis+cluster://`` gives the startup nodes and credentials."""
    spec = parse_cluster_url("redis+cluster://u:p%40w@h1:7000,h2:7001,h3")
    assert spec["nodes"] == [("h1", 7000), ("h2", 7001), ("h3", 6379)]
    assert (spec["username"], spec["password"], spec["ssl"]) == ("u", "p@w", False)
    with pytest.raises(TransportError, match="only database 0"):
        Transport.of("redis+cluster://h1:7000/3")


def test_queue_names_tag_services_only_on_a_cluster() -> None:
    """Plain key names stay those of the original RedisRPC; a cluster adds one hash tag."""
    assert keys.queue_name("calc") == "calc"
    assert keys.queue_name("calc", cluster=True) == "{calc}"
    assert keys.queue_name("{calc}", cluster=True) == "{calc}"
    queue = keys.queue_name("calc", cluster=True)
    derived = [
        queue,
        keys.lock_key(queue),
        keys.reply_queue_prefix(queue) + "abc",
        keys.cancel_key(queue, "id"),
        keys.cancels_key(queue),
        keys.running_key(queue),
        keys.service_key("redisrpc", queue),
        keys.instance_key("redisrpc", keys.instance_id(queue, "h:1:ff", cluster=True)),
    ]
    assert len({redis.cluster.key_slot(k.encode()) for k in derived}) == 1


def test_an_exchange_across_slots_is_refused() -> None:
    """Every command of one exchange must hash to one slot: a mix is an error, not a guess."""
    assert exchange_slot([("GET", "{a}:x"), ("BLPOP", "{a}:y", 1), ("TIME",)]) is not None
    assert exchange_slot([("PING",)]) is None
    lock = keys.lock_key("{a}")
    assert exchange_slot([("EVAL", "return 1", 1, lock, "token")]) == exchange_slot(
        [("GET", "{a}:x")]
    )
    with pytest.raises(TransportError, match="spans"):
        exchange_slot([("EVAL", "return 1", 2, lock, "b")])
    with pytest.raises(TransportError, match="spans Redis Cluster hash slots"):
        exchange_slot([("GET", "a"), ("GET", "b")])


def test_twenty_services_spread_over_the_nodes_are_served_discovered_locked_and_called(
    cluster: Cluster,
) -> None:
    """Twenty services on a three-master cluster: each found, locked and called on its node."""
    names = [f"svc{i}" for i in range(20)]
    servers = [
        redisrpc.Server(cluster.url, name, Echo(name), poll_interval=0.2).start() for name in names
    ]
    try:
        owners = {cluster.owner(keys.queue_name(n, cluster=True)).port for n in names}
        assert len(owners) == 3  # the services really spread over every node

        found = wait_for(
            lambda: (s := redisrpc.discover(cluster.url)) and len(s) == 20 and s,
            timeout=10,
            message="all twenty services discovered",
        )
        assert sorted(s.name for s in found) == sorted(names)  # without the hash tag
        assert all(len(s.instances) == 1 and s.class_name == "Echo" for s in found)

        for name in names:
            client = redisrpc.Client(cluster.url, name, timeout=5)
            assert client.who() == name
            with redisrpc.lock(client, note="cluster test") as held:
                assert held.held
                assert client.add(2, 3) == 5
                info = redisrpc.lock_info(client)
                assert info is not None and info["note"] == "cluster test"
            assert redisrpc.lock_info(client) is None
            other = redisrpc.Client(cluster.url, name, timeout=5)
            assert other.add(1, 1) == 2
    finally:
        for server in servers:
            server.stop(10)
    wait_for(lambda: not redisrpc.discover(cluster.url), message="services deregistered")


def test_a_redis_cluster_client_works_sync_and_async(cluster: Cluster) -> None:
    """A redis-py RedisCluster object is accepted; the asyncio client routes the same way."""
    host, port = cluster.addresses[0].split(":")
    rc = redis.cluster.RedisCluster(host=host, port=int(port))
    server = redisrpc.Server(rc, "mixed", Echo("mixed"), poll_interval=0.2).start()
    try:
        transport = Transport.of(rc)
        assert isinstance(transport, ClusterTransport)
        assert redisrpc.Client(rc, "mixed", timeout=5).add(20, 22) == 42

        async def main() -> Any:
            client = await redisrpc.AsyncClient(cluster.url, "mixed", timeout=5)
            return await asyncio.gather(*(client.add(i, i) for i in range(10)))

        assert asyncio.run(main()) == [2 * i for i in range(10)]
    finally:
        server.stop(10)
        rc.close()


def _migrate(cluster: Cluster, queue: str, *, finish: bool) -> RedisServer:
    """Move every key of ``queue``'s slot to another node; ``finish`` hands the slot over."""
    slot = redis.cluster.key_slot(queue.encode())
    source = cluster.owner(queue)
    target = next(n for n in cluster.nodes if n is not source)
    with source.client() as src, target.client() as dst:
        src_id = src.execute_command("CLUSTER", "MYID").decode()
        dst_id = dst.execute_command("CLUSTER", "MYID").decode()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while batch := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *batch)
        if finish:
            for node in cluster.nodes:
                with node.client() as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    return target


def test_a_migrating_slot_is_followed_with_asking(cluster: Cluster) -> None:
    """While a service's slot is half moved (its keys already gone), ASK is followed."""
    name = "asker"
    queue = keys.queue_name(name, cluster=True)
    server = redisrpc.Server(cluster.url, name, Echo(name), poll_interval=0.2).start()
    client = redisrpc.Client(cluster.url, name, timeout=5)
    try:
        assert client.who() == name
        target = _migrate(cluster, queue, finish=False)
        assert cluster.owner(queue) is not target  # still the source's, keys elsewhere
        for i in range(5):
            assert client.add(i, 1) == i + 1
    finally:
        server.stop(10)


def test_a_moved_slot_is_followed(cluster: Cluster) -> None:
    """After a service's slot moves to another node, MOVED is followed and calls go on."""
    name = "mover"
    queue = keys.queue_name(name, cluster=True)
    server = redisrpc.Server(cluster.url, name, Echo(name), poll_interval=0.2).start()
    client = redisrpc.Client(cluster.url, name, timeout=5)
    try:
        assert client.who() == name
        target = _migrate(cluster, queue, finish=True)
        assert cluster.owner(queue) is target
        for i in range(5):
            assert client.add(i, 1) == i + 1
        with redisrpc.lock(client):
            assert client.who() == name
    finally:
        server.stop(10)


def test_the_cli_lists_and_calls_on_a_cluster(cluster: Cluster) -> None:
    """``redisrpc list`` and ``redisrpc call`` take a ``redis+cluster://`` URL."""
    with redisrpc.Server(cluster.url, "clied", Echo("clied"), poll_interval=0.2):
        wait_for(lambda: redisrpc.discover(cluster.url), message="the server registered")
        listed = run_cli("list", "--url", cluster.url)
        assert listed.returncode == 0, listed.stderr
        assert "clied" in listed.stdout and "Echo" in listed.stdout
        called = run_cli("call", "--url", cluster.url, "clied", "add", "40", "2")
        assert called.returncode == 0, called.stderr
        assert called.stdout.strip() == "42"


def test_a_watched_value_follows_changes_on_a_cluster(cluster: Cluster) -> None:
    """The leases, the poller key and the stream share the service's slot; sync and asyncio."""
    echo = Echo("watched")
    server = redisrpc.Server(cluster.url, "watched", echo, poll_interval=0.2).start()
    try:
        with redisrpc.watch(redisrpc.Client(cluster.url, "watched"), "name", interval=0.05) as name:
            assert name.wait() == "watched"
            echo.name = "renamed"  # the instrument changes by itself
            wait_for(lambda: name.latest == "renamed", message="the change arrives")

        async def main() -> Any:
            proxy = await redisrpc.AsyncClient(cluster.url, "watched", timeout=5)
            async with redisrpc.watch(proxy, "name", interval=0.05) as watched:
                async for value in watched:
                    return value

        assert asyncio.run(main()) == "renamed"
    finally:
        server.stop(10)
