"""Redis Cluster: each exchange routed to the node that owns its hash slot.

:func:`command_keys` knows where each command keeps its keys, and
:func:`exchange_slot` finds an exchange's one slot (refusing one whose keys
span slots). :func:`_routing` follows MOVED and ASK redirections for one
exchange, resending only the commands Redis redirected, as a generator that
:class:`ClusterTransport` (and :class:`~redisrpc.core.aio_transport.AsyncTransport`,
for asyncio) drives. A :class:`ClusterTransport` is a
:class:`~redisrpc.core.transport.Transport` that keeps redis-py's slot map and
one plain :class:`~redisrpc.core.transport.Transport` per node.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.exceptions as rexc
from redis.crc import key_slot

from ..errors import CommandError, RedisConnectionError, TransportError
from .clock import RedisClock
from .plan import Each, Plan, drive
from .transport import RESCUE_TIMEOUT, Transport, _translation
from .urls import _LazyCluster
from .wire import _arg_bytes, _word

__all__ = ["ClusterTransport", "command_keys", "exchange_slot"]

T = TypeVar("T")


# -- Cluster routing -------------------------------------------------------------

# Commands redisrpc sends that name no key (routed to any primary).
_KEYLESS = frozenset(
    {
        "PING",
        "ECHO",
        "TIME",
        "CLIENT",
        "ASKING",
        "WAIT",
        "WAITAOF",
        "INFO",
        "ROLE",
        "CLUSTER",
        "SCRIPT",
        "FUNCTION",
        "READONLY",
        "READWRITE",
        "DBSIZE",
        "COMMAND",
        "CONFIG",
        "HELLO",
    }
)
_ALL_KEYS = frozenset({"DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH", "SINTER", "SUNION"})
_ALL_BUT_LAST = frozenset({"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})
_TWO_KEYS = frozenset(
    {"RPOPLPUSH", "LMOVE", "BRPOPLPUSH", "BLMOVE", "RENAME", "RENAMENX", "SMOVE", "COPY"}
)
_NUMKEYS_AT = {
    "EVAL": 2,
    "EVALSHA": 2,
    "EVAL_RO": 2,
    "EVALSHA_RO": 2,
    "FCALL": 2,
    "FCALL_RO": 2,
    "LMPOP": 1,
    "ZMPOP": 1,
    "SINTERCARD": 1,
    "BLMPOP": 2,
    "BZMPOP": 2,
}


def command_keys(command: Sequence[Any]) -> list[Any]:
    """The keys ``command`` touches, by the command's own key layout.

    Covers the commands redisrpc sends and the usual others; any other
    command is taken to have its key first (as most do).
    """
    if not command:
        return []
    name = _word(command[0])
    args = list(command[1:])
    if name in _KEYLESS:
        return []
    if name in _ALL_KEYS:
        return args
    if name in _ALL_BUT_LAST:
        return args[:-1]
    if name in _TWO_KEYS:
        return args[:2]
    if name in ("MSET", "MSETNX"):
        return args[::2]
    if name in _NUMKEYS_AT:
        at = _NUMKEYS_AT[name] - 1
        count = int(_arg_bytes(args[at]))
        return args[at + 1 : at + 1 + count]
    if name in ("XREAD", "XREADGROUP"):
        words = [_word(a) if isinstance(a, (str, bytes)) else "" for a in args]
        rest = args[words.index("STREAMS") + 1 :]
        return rest[: len(rest) // 2]
    return args[:1]


def exchange_slot(commands: Sequence[Sequence[Any]]) -> int | None:
    """The one hash slot of an exchange's keys (None: no keys); raises if they span slots.

    A cluster runs each exchange on one node, so every key of an exchange
    must hash to one slot: redisrpc names a service's keys with one hash tag
    (:mod:`redisrpc.core.keys`) so its exchanges always do.
    """
    slot: int | None = None
    for command in commands:
        for key in command_keys(command):
            this = key_slot(_arg_bytes(key))
            if slot is None:
                slot = this
            elif this != slot:
                raise TransportError(
                    f"one exchange spans Redis Cluster hash slots {slot} and {this}"
                    f" ({_word(command[0])} {key!r}): its keys need one hash tag"
                )
    return slot


_REDIRECTS = 5
"""How many MOVED/ASK redirections one exchange follows before giving up."""

# Connection settings of a RedisCluster worth copying to our own node connections.
_NODE_SETTINGS = (
    "username",
    "password",
    "credential_provider",
    "ssl",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_ca_certs",
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "client_name",
    "protocol",
)


def _redirection(reply: Any) -> tuple[bool, str, int] | None:
    """(asking, host, port) when ``reply`` is a MOVED or ASK redirection, else None."""
    cause = reply.__cause__ if isinstance(reply, TransportError) else None
    if not isinstance(cause, rexc.AskError):
        return None
    return not isinstance(cause, rexc.MovedError), str(cause.host), int(cause.port)


_Batch = tuple[tuple[str, int] | None, bool, list[Sequence[Any]]]


def _routing(commands: Sequence[Sequence[Any]]) -> Generator[_Batch, list[Any], list[Any]]:
    """Send an exchange, then resend only its redirected commands where Redis points.

    Yields (node or None for the slot's owner, asking, commands) and gets
    their replies (error replies included). A redirected command did not run,
    so it is sent once more; one that answered ran, and is never resent (a
    server's reply push and its blocked pop may be split by a slot moving).
    Returns the replies in order; raises CommandError if any is an error.
    """
    replies: list[Any] = [None] * len(commands)
    pending = list(range(len(commands)))
    node: tuple[str, int] | None = None
    asking = False
    for _ in range(_REDIRECTS):
        got = yield node, asking, [commands[i] for i in pending]
        moved: list[int] = []
        targets = set()
        for index, reply in zip(pending, got, strict=True):
            replies[index] = reply
            where = _redirection(reply)
            if where is not None:
                moved.append(index)
                targets.add(where)
        if not moved:
            break
        if len(targets) > 1:
            break  # redirected to several nodes at once: report, do not guess
        pending = moved
        asking, host, port = targets.pop()
        node = (host, port)
    first = next((r for r in replies if isinstance(r, TransportError)), None)
    if first is not None:
        raise CommandError(str(first), replies=replies)
    return replies


def _asking(commands: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """``commands`` each after ASKING (which holds for the next command only)."""
    return [c for command in commands for c in (("ASKING",), command)]


def _once(commands: tuple[Any, ...]) -> Plan[list[Any]]:
    replies: list[Any] = yield commands
    return replies


class ClusterTransport(Transport):
    """A :class:`Transport` for a Redis Cluster: each exchange goes to the node owning its slot.

    Every exchange keeps to one hash slot (:func:`exchange_slot` checks it;
    :mod:`redisrpc.core.keys` tags each service's keys so it does), and is
    sent in one write on one connection of that node, as on a single Redis.
    The slot map comes from redis-py's cluster machinery
    (``RedisCluster``'s nodes manager). A MOVED reply sends the exchange on to
    the named node and refreshes the map; ASK sends it once, after ASKING, to
    the importing node; a lost node refreshes the map before the next
    exchange. Only the commands Redis redirected are sent again (a
    redirected command did not run); those that answered ran, and are not.

    Commands are never sent quietly here: the replies are what tell a
    redirection.
    """

    cluster = True

    def __init__(
        self, client: Any, *, socket_timeout: float = 10.0, connect_timeout: float = 5.0
    ) -> None:
        settings: dict[str, Any]
        if isinstance(client, _LazyCluster):
            spec = client.spec
            self._startup: list[tuple[str, int]] = list(spec["nodes"])
            settings = {k: spec[k] for k in ("username", "password") if spec[k] is not None}
            if spec["ssl"]:
                settings["ssl"] = True
        elif isinstance(client, redis.cluster.RedisCluster):
            self._startup = [(n.host, int(n.port)) for n in client.get_nodes()]  # type: ignore[no-untyped-call]
            given = client.nodes_manager.connection_kwargs
            settings = {k: given[k] for k in _NODE_SETTINGS if given.get(k) is not None}
        else:
            raise TypeError(f"not a Redis Cluster client: {client!r}")
        if not self._startup:
            raise TransportError("a Redis Cluster needs at least one startup node")
        self._settings = settings
        self.socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self.location = "cluster " + ",".join(f"{h}:{p}" for h, p in self._startup)
        self._clock = RedisClock()
        self._clock_lock = threading.Lock()
        self._map: redis.cluster.RedisCluster | None = None
        self._map_lock = threading.Lock()
        self._stale = False
        self._nodes: dict[str, Transport] = {}

    # -- the slot map ---------------------------------------------------------

    def _slots(self) -> redis.cluster.RedisCluster:
        """The cluster map, built on first use and refreshed once marked stale."""
        with self._map_lock:
            try:
                if self._map is None:
                    self._map = redis.cluster.RedisCluster(
                        startup_nodes=[
                            redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                            for h, p in self._startup
                        ],
                        socket_timeout=self._connect_timeout,
                        socket_connect_timeout=self._connect_timeout,
                        **self._settings,
                    )
                    self._stale = False
                elif self._stale:
                    self._map.nodes_manager.initialize()
                    self._stale = False
            except (rexc.RedisError, rexc.RedisClusterException, OSError) as exc:
                raise _translation(exc, self.location) from exc
            return self._map

    def node_of(self, slot: int | None) -> Transport:
        """The transport of the primary that owns ``slot`` (None: any primary)."""
        cluster = self._slots()
        try:
            if slot is None:
                node = cluster.get_default_node()  # type: ignore[no-untyped-call]
            else:
                node = cluster.nodes_manager.get_node_from_slot(slot)
        except rexc.RedisClusterException as exc:  # the slot is not covered (yet)
            self._stale = True
            raise RedisConnectionError(f"Redis Cluster at {self.location}: {exc}") from exc
        return self._node_at(node.host, int(node.port))

    def _node_at(self, host: str, port: int) -> Transport:
        name = f"{host}:{port}"
        node = self._nodes.get(name)
        if node is None:
            with self._map_lock:
                node = self._nodes.get(name)
                if node is None:
                    client = redis.Redis(host=host, port=port, **self._settings)
                    node = Transport(
                        client,
                        socket_timeout=self.socket_timeout,
                        connect_timeout=self._connect_timeout,
                    )
                    self._nodes[name] = node
        return node

    def primaries(self) -> list[Transport]:
        """The transport of every primary node, as the map has them now."""
        cluster = self._slots()
        primaries = cluster.get_primaries()  # type: ignore[no-untyped-call]
        return [self._node_at(n.host, int(n.port)) for n in primaries]

    # -- exchanges --------------------------------------------------------------

    def execute(self, *commands: Sequence[Any], quiet: int = 0) -> list[Any]:
        """As :meth:`Transport.execute`, on the node that owns the exchange's hash slot.

        Raises :class:`~redisrpc.TransportError` at once if the exchange's
        keys span slots. ``quiet`` is ignored: every command is answered.
        """
        slot = exchange_slot(commands)
        routing = _routing(commands)
        try:
            where, asking, batch = next(routing)
            while True:
                if where is None:
                    node = self.node_of(slot)
                else:
                    node = self._node_at(*where)
                    self._stale = self._stale or not asking  # MOVED: the map is out of date
                try:
                    got = node.execute(*_asking(batch) if asking else batch)
                except CommandError as exc:
                    got = exc.replies
                except RedisConnectionError:
                    self._stale = True  # the node may have failed over: refresh first
                    raise
                where, asking, batch = routing.send(got[1::2] if asking else got)
        except StopIteration as done:
            result: list[Any] = done.value
            return result

    def execute_each(self, exchanges: Sequence[Sequence[Sequence[Any]]]) -> list[list[Any]]:
        """Each exchange on its own slot's node (one round trip each)."""
        return [self.execute(*exchange) if exchange else [] for exchange in exchanges]

    def rescue(self, plan: Plan[T], *, timeout: float = RESCUE_TIMEOUT) -> T:
        """As :meth:`Transport.rescue`: each exchange on a new connection of its node."""

        def one(step: Any) -> Any:
            if isinstance(step, tuple):
                node = self.node_of(exchange_slot(step))
                return node.rescue(_once(step), timeout=timeout)
            if isinstance(step, Each):
                return [one(exchange) for exchange in step.exchanges]
            return self.step(step)

        return drive(plan, one)

    def close(self) -> None:
        """Close every node's connections and the map's."""
        for node in list(self._nodes.values()):
            node.close()
        with self._map_lock:
            if self._map is not None:
                self._map.close()
                self._map = None
