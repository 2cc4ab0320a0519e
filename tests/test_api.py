"""The public API: exactly the intended names, all importable, and __all__ in every module."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import redisrpc

# Add a name here when it becomes public, in the same change that exports it.
PUBLIC = {
    "DEFAULT_TIMEOUT",
    "PROTOCOL_VERSION",
    "AsyncClient",
    "CallCancelledError",
    "Client",
    "CommandError",
    "EmbeddedRedis",
    "EncodingError",
    "InstanceInfo",
    "Lock",
    "LockedError",
    "MessageTooLargeError",
    "ProtocolError",
    "RedisConnectionError",
    "RedisRPCClient",
    "RedisRPCError",
    "RedisRPCServer",
    "RemoteException",
    "RemoteTraceback",
    "Server",
    "ServerGoneError",
    "ServiceConflictError",
    "ServiceInfo",
    "TimeoutException",
    "TransportError",
    "UnknownServiceError",
    "Watch",
    "__version__",
    "cancel",
    "cancelled",
    "description",
    "discover",
    "ensure_redis",
    "expose",
    "lock",
    "lock_info",
    "lock_info_async",
    "progress",
    "refresh",
    "running",
    "watch",
    "with_progress",
    "with_timeout",
    "writable",
}
NOTEBOOK = {"Explorer", "explore"}  # only where ipywidgets is installed

PACKAGE = Path(redisrpc.__file__).parent


def test_all_is_exactly_the_intended_set():
    """redisrpc.__all__ lists the public names, no more, no fewer, without duplicates."""
    names = set(redisrpc.__all__)
    assert len(names) == len(redisrpc.__all__)
    assert names - NOTEBOOK == PUBLIC


def test_every_public_name_is_importable():
    """`from redisrpc import *` works and binds every name in __all__."""
    namespace: dict[str, object] = {}
    exec("from redisrpc import *", namespace)  # a fixed string: the star import under test
    for name in redisrpc.__all__:
        assert getattr(redisrpc, name) is namespace[name], name


def test_classic_names_are_aliases():
    """RedisRPCClient/RedisRPCServer are the classic names of Client/Server."""
    assert redisrpc.RedisRPCClient is redisrpc.Client
    assert redisrpc.RedisRPCServer is redisrpc.Server
    assert issubclass(redisrpc.RemoteException, redisrpc.RedisRPCError)
    assert issubclass(redisrpc.TimeoutException, redisrpc.RedisRPCError)


def test_every_module_declares_all():
    """Each module of every subpackage has a literal __all__ whose names it defines."""
    modules = list(pkgutil.walk_packages([str(PACKAGE)], prefix="redisrpc."))
    assert {"redisrpc.core.transport", "redisrpc.client.sync", "redisrpc.server.loop"} <= {
        m.name for m in modules
    }
    for info in modules:
        relative = info.name.removeprefix("redisrpc.").replace(".", "/")
        path = PACKAGE / (f"{relative}/__init__.py" if info.ispkg else f"{relative}.py")
        tree = ast.parse(path.read_text())
        declared = [
            node
            for node in tree.body
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            and any(
                isinstance(t, ast.Name) and t.id == "__all__"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
        ]
        assert declared, f"{path} has no __all__"
        if info.name == "redisrpc.__main__":
            continue  # importing it would run the command line
        module = importlib.import_module(info.name)
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"


def test_public_modules_keep_their_paths():
    """The documented modules outside the top level still import from their old paths."""
    assert redisrpc.aio.set_property is importlib.import_module("redisrpc.client.aio").set_property
    instruments = importlib.import_module("redisrpc.instruments")
    assert callable(instruments.bench)
