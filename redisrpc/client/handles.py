"""Client side of handles: proxies for remote values JSON cannot hold, released when dropped.

A reply flagged ``"handles": true`` holds tagged handles (see
:mod:`redisrpc.server.handles`); :func:`unwrap` replaces each with a proxy of
the same kind as the one that made the call (sync or asyncio), typed from the
description the handle carries. Its calls travel as paths under the handle.

When the last proxy of a handle is dropped, its :class:`HandleRef` is
collected and a background thread sends ``__release__`` for it (batched; no
reply is awaited). Network I/O never runs inside the garbage collector. An
asyncio proxy's handles are not released this way (its transport belongs to
an event loop); the server drops them after its time and count bounds.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from dataclasses import replace
from typing import Any

from ..core.protocol import RELEASE, TAG, Request, encode_request, reply_queue_prefix

__all__ = ["HandleRef", "unwrap"]

log = logging.getLogger("redisrpc.client")

_pending: queue.SimpleQueue[tuple[Any, str, str]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


class HandleRef:
    """Owned by a handle's proxy state (and its twins'); its collection releases the handle."""

    __slots__ = ("handle", "service", "transport")

    def __init__(self, transport: Any, service: str, handle: str) -> None:
        self.transport = transport
        self.service = service
        self.handle = handle

    def __del__(self) -> None:
        # Only a queue put here: the collector may run anywhere, even inside the transport.
        try:
            if not _is_async(self.transport):
                _pending.put((self.transport, self.service, self.handle))
                _ensure_thread()
        except Exception:  # interpreter shutdown: the server's bounds drop it
            return


def _is_async(transport: Any) -> bool:
    from ..core.aio_transport import AsyncTransport  # noqa: PLC0415 - avoid an import cycle

    return isinstance(transport, AsyncTransport)


def _ensure_thread() -> None:
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_release_loop, name="redisrpc-release", daemon=True)
            _thread.start()


def _release_loop() -> None:
    while True:
        batch = [_pending.get()]
        while len(batch) < 500:
            try:
                batch.append(_pending.get_nowait())
            except queue.Empty:
                break
        groups: dict[tuple[int, str], tuple[Any, list[str]]] = {}
        for transport, service, handle in batch:
            groups.setdefault((id(transport), service), (transport, []))[1].append(handle)
        for (_, service), (transport, handles) in groups.items():
            release(transport, service, handles)


def release(transport: Any, service: str, handles: list[str]) -> None:
    """Send one ``__release__`` for ``handles`` (fire and forget; failures are logged)."""
    request = Request(
        RELEASE,
        list(handles),
        {},
        reply_queue_prefix(service) + "release-" + secrets.token_hex(4),
        secrets.token_hex(16),
    )
    try:
        transport.execute(("RPUSH", service, encode_request(request)))
    except Exception as exc:  # the server's bounds drop them anyway
        log.debug("could not release %d handles of %s: %s", len(handles), service, exc)


def _proxy_for(parent: Any, tagged: dict[str, Any]) -> Any:
    """A proxy of the handle in ``tagged``, built like ``parent``'s (a ProxyState)."""
    from .aio import AsyncClient  # noqa: PLC0415 - both clients import this module's users
    from .proxy import build_proxy_class  # noqa: PLC0415
    from .sync import Client  # noqa: PLC0415

    handle = tagged.get("id")
    description = tagged.get("description")
    if not isinstance(handle, str) or not handle.startswith("@"):
        return tagged
    base: type[Any] = AsyncClient if _is_async(parent.transport) else Client
    state = replace(
        parent,
        path=handle,
        description=description if isinstance(description, dict) else None,
        children={},
        handle=HandleRef(parent.transport, parent.name, handle),
    )
    proxy = object.__new__(base)
    object.__setattr__(proxy, "_rpc_state", state)
    if state.description is not None:
        object.__setattr__(proxy, "__class__", build_proxy_class(base, state.description))
    return proxy


def unwrap(parent: Any, value: Any) -> Any:
    """``value`` with every tagged handle replaced by its proxy."""
    if isinstance(value, dict):
        if value.get(TAG) == "handle":
            return _proxy_for(parent, value)
        return {k: unwrap(parent, v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(parent, v) for v in value]
    return value
