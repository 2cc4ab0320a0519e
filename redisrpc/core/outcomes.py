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


def timed_out(call: Call, withdrawn: bool, *, at_limit: bool = False) -> TimeoutException:
    """The timeout error, once the request was withdrawn (never runs) or found taken.

    ``at_limit``: the call reached its hard ``limit`` (progress kept it alive past its
    timeout), rather than ``timeout`` seconds of silence.
    """
    if at_limit and call.limit is not None:
        what = f"{call.label} reached its limit of {call.limit:g} s"
    else:
        what = f"{call.label} timed out after {call.timeout:g} s"
    if withdrawn:
        return TimeoutException(
            f"{what}: no server took the request, which was withdrawn and will never run",
            started=False,
        )
    return TimeoutException(
        f"{what}: a server took the request but did not answer in time; it was asked to"
        " cancel the call (which may still be running if the method ignores cancellation)",
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
