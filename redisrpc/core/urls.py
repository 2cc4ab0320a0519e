"""Where Redis is, as a URL: the default, URLs for display, and Sentinel and Cluster URLs.

:func:`resolve_url` picks the URL (the one given, else ``REDIS_URL``, else
:data:`DEFAULT_URL`); :func:`masked_url` and :func:`url_of` give URLs to show
(passwords masked). redis-py reads ``redis://``, ``rediss://`` and ``unix://``
itself; :func:`parse_sentinel_url` and :func:`parse_cluster_url` read the
``redis+sentinel://`` and ``redis+cluster://`` forms it lacks, and
:func:`_client_of_url` turns any of them into the redis-py client (for a
cluster, a :class:`_LazyCluster` not contacted yet) that
:meth:`Transport.of <redisrpc.core.transport.Transport.of>` builds on.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
import redis.cluster
import redis.connection
import redis.sentinel

__all__ = [
    "DEFAULT_URL",
    "masked_url",
    "parse_cluster_url",
    "parse_sentinel_url",
    "resolve_url",
    "url_of",
]


DEFAULT_URL = "redis://localhost:6379/0"


def resolve_url(url: str | None = None) -> str:
    """Return ``url``, else the ``REDIS_URL`` environment variable, else the local default."""
    return url or os.environ.get("REDIS_URL") or DEFAULT_URL


_SECRET_OPTION = re.compile(r"([?&][A-Za-z_]*password=)[^&#]*")


def masked_url(url: str) -> str:
    """``url`` with its passwords (if any) shown as ``***``: for display, never for connecting.

    The user's password ends at the netloc's last ``@`` (as redis-py and the
    Sentinel and Cluster parsers read it, so a password may hold an ``@``),
    and ``?sentinel_password=`` is a password too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    auth, at, hosts = rest[:end].rpartition("@")
    netloc = f"{auth.partition(':')[0]}:***@{hosts}" if at and ":" in auth else rest[:end]
    return f"{scheme}://{netloc}" + _SECRET_OPTION.sub(r"\1***", rest[end:])


def url_of(client: Any) -> str | None:
    """A URL reaching the same Redis as a redis-py client, its password masked (:func:`masked_url`).

    For the code lines a notebook shows (``redisrpc.Client("redis://host:6379/0", "calc")``).
    None for what no plain URL describes (Sentinel-managed and cluster clients, transports).
    """
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, redis.ConnectionPool) or isinstance(
        pool, redis.sentinel.SentinelConnectionPool
    ):
        return None
    kwargs = pool.connection_kwargs
    user, password = kwargs.get("username"), kwargs.get("password")
    auth = f"{user or ''}:***@" if password else (f"{user}@" if user else "")
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix://{auth}{kwargs['path']}?db={db}"
    tls = issubclass(pool.connection_class, redis.connection.SSLConnection)
    host = str(kwargs.get("host", "localhost"))
    host = f"[{host}]" if ":" in host else host
    return f"{'rediss' if tls else 'redis'}://{auth}{host}:{kwargs.get('port', 6379)}/{db}"


# -- Sentinel and Cluster URLs -------------------------------------------------


def _split_hosts(
    url: str, scheme: str
) -> tuple[str | None, str | None, list[tuple[str, int]], str, dict[str, str]]:
    """(user, password, [(host, port)...], path, query) of ``scheme://[user:pw@]h:p[,h:p]/path?q``."""
    rest = url[len(scheme) + 3 :]
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    user: str | None = None
    password: str | None = None
    if at:
        name, colon, secret = auth.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    addresses: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon:
            host, port = port, ""
        host = host.strip("[]")
        if not host:
            raise ValueError(f"no host in {part!r}")
        addresses.append((host, int(port) if port else 26379 if "sentinel" in scheme else 6379))
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    return user, password, addresses, path if slash else "", options


def parse_sentinel_url(url: str) -> dict[str, Any]:
    """Parse ``redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME[/db]``.

    Returns ``sentinels`` (a list of (host, port)), ``service_name``, and the
    master's connection settings (``db``, ``username``, ``password``,
    ``ssl`` for ``rediss+sentinel``). The query may give ``sentinel_username``
    and ``sentinel_password`` when the sentinels themselves require them. The
    default sentinel port is 26379.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise ValueError("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    user, password, sentinels, path, query = _split_hosts(url, scheme)
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("a Sentinel URL names the master: redis+sentinel://host:port/MASTER[/db]")
    unknown = set(query) - {"sentinel_username", "sentinel_password"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}")
    return {
        "sentinels": sentinels,
        "service_name": unquote(parts[0]),
        "db": int(parts[1]) if len(parts) == 2 else 0,
        "username": user,
        "password": password,
        "ssl": scheme == "rediss+sentinel",
        "sentinel_username": query.get("sentinel_username"),
        "sentinel_password": query.get("sentinel_password"),
    }


def parse_cluster_url(url: str) -> dict[str, Any]:
    """Parse ``redis+cluster://[user:password@]host:port[,host:port...]``: the startup nodes.

    Returns ``nodes`` (a list of (host, port)) and ``username``,
    ``password``, ``ssl`` (``rediss+cluster``). A cluster has only db 0.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("redis+cluster", "rediss+cluster"):
        raise ValueError("a Cluster URL starts with redis+cluster:// or rediss+cluster://")
    user, password, nodes, path, query = _split_hosts(url, scheme)
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    if query:
        raise ValueError(f"unknown option(s) {sorted(query)}")
    return {
        "nodes": nodes,
        "username": user,
        "password": password,
        "ssl": scheme == "rediss+cluster",
    }


def _client_of_url(url: str, *, connect_timeout: float) -> redis.Redis | redis.cluster.RedisCluster:
    """The redis-py client a URL describes (plain, Sentinel-managed, or a cluster)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme.endswith("+sentinel"):
        spec = parse_sentinel_url(url)
        sentinel_kwargs: dict[str, Any] = {
            # A silent sentinel must not hang the search for the master.
            "socket_timeout": connect_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        if spec["sentinel_password"] is not None:
            sentinel_kwargs["password"] = spec["sentinel_password"]
            sentinel_kwargs["username"] = spec["sentinel_username"]
        manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            spec["sentinels"],
            sentinel_kwargs=sentinel_kwargs,
            db=spec["db"],
            username=spec["username"],
            password=spec["password"],
            ssl=spec["ssl"],
        )
        master: redis.Redis = manager.master_for(spec["service_name"])  # type: ignore[no-untyped-call]
        return master
    if scheme.endswith("+cluster"):
        spec = parse_cluster_url(url)
        return _LazyCluster(spec)  # type: ignore[return-value]
    return redis.Redis.from_url(url)


class _LazyCluster:
    """Startup nodes and settings of a cluster not contacted yet (Transport.of connects lazily)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
