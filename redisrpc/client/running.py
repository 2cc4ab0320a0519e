"""What a service runs now, and cancelling it: for dashboards, the CLI and the explorer.

::

    for call in redisrpc.running(stage):     # method, caller, since, progress, id
        print(call["method"], call["caller"])
    redisrpc.cancel(stage, call["id"])       # stops it, whoever made it

Only calls running longer than 0.2 s are listed (servers publish them then).
"""

from __future__ import annotations

from typing import Any

from ..core.cancel import cancelling_running, running_calls
from .proxy import CALLER, state_of

__all__ = ["cancel", "running"]


def running(proxy: Any) -> list[dict[str, Any]]:
    """The calls ``proxy``'s service runs now, oldest first (a sync proxy; one round trip).

    Each is a dict with ``id``, ``method``, ``caller`` (``user@host:pid``),
    ``instance``, ``since`` (epoch seconds) and ``progress`` (the last report,
    or None).
    """
    state = state_of(proxy)
    result: list[dict[str, Any]] = state.transport.run(running_calls(state.name))
    return result


def cancel(proxy: Any, call_id: str) -> None:
    """Cancel the call ``call_id`` of ``proxy``'s service, whoever made it.

    Its server sees the mark within 0.2 s: ``redisrpc.cancelled()`` turns true
    there and the method's ``on_cancel`` hook runs; the call's caller gets
    :class:`~redisrpc.CallCancelledError` naming who cancelled it.
    """
    state = state_of(proxy)
    state.transport.run(cancelling_running(state.name, call_id, by=CALLER))
