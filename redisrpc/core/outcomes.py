"""How a call ends when no reply comes: the errors it raises, and the note on an interrupt.

Each names the call (``service.method()``) and says whether its request can
still run (``started``), so a user at the bench knows what happened.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from ..errors import RedisConnectionError, ServerGoneError, TimeoutException, UnknownServiceError

if TYPE_CHECKING:
    from .call import Call

__all__ = ["gone", "interrupted", "lost", "timed_out", "unknown"]


def interrupted(call: Call, withdrawn: bool) -> str:
    """The one line an interrupted caller is told about its call."""
    if withdrawn:
        return f"redisrpc: {call.label} was still queued; it was withdrawn and will never run"
    return f"redisrpc: {call.label} was running; the server was asked to cancel it"


def timed_out(call: Call, withdrawn: bool) -> TimeoutException:
    """The timeout error, once the request was withdrawn (never runs) or found taken."""
    if withdrawn:
        return TimeoutException(
            f"{call.label} timed out after {call.timeout:g} s: no server took the"
            " request, which was withdrawn and will never run",
            started=False,
        )
    return TimeoutException(
        f"{call.label} timed out after {call.timeout:g} s: a server took the request"
        " but did not answer in time (it may still be running)",
        started=True,
    )


def gone(call: Call, withdrawn: bool) -> ServerGoneError:
    """The error for a call whose service vanished: its request was withdrawn, or taken."""
    where = f"every registered instance of {call.service!r} is gone (crashed or stopped)"
    if withdrawn:
        return ServerGoneError(
            f"{where}: {call.label} was withdrawn before any server took it and will never run",
            started=False,
        )
    return ServerGoneError(
        f"{where} while {call.label} was running: it may have partly run, and no reply will come",
        started=True,
    )


def unknown(call: Call, names: list[str], grace: float) -> UnknownServiceError:
    """The error for a name that no live server is registered under."""
    close = difflib.get_close_matches(call.service, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    return UnknownServiceError(
        f"no live server is registered as {call.service!r} and none took the request for"
        f" {call.label} within {grace:g} s (it was withdrawn and will never run){hint}",
        suggestions=close,
    )


def lost(call: Call, exc: RedisConnectionError, withdrawn: bool) -> RedisConnectionError:
    """The error for a call whose connection failed and whose reply was not found."""
    if withdrawn:
        error = RedisConnectionError(
            f"{exc}; the request for {call.label} was withdrawn and will never run",
            started=False,
        )
    else:
        error = RedisConnectionError(
            f"{exc}; {call.label} may or may not have been delivered,"
            " and will not start after its deadline"
        )
    error.__cause__ = exc
    return error
