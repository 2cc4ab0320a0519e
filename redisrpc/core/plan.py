"""Plans: Redis logic written once, as generators, and the two loops that drive them.

A :data:`Plan` is a generator that yields *steps* and returns a result. A
step says what to do, never how; the sync and asyncio clients only carry the
steps out (the idea of httpx's auth flows). So a call, a lock or a registry
query is written once, and every path through it can be tested by stepping
the generator by hand, with no Redis at all.

The steps:

* a tuple of commands -- sent in one round trip; the plan gets their replies
  (an error reply raises :class:`~redisrpc.errors.CommandError` into the plan);
* :data:`NOW` -- the plan gets the Redis clock estimate, in epoch ms;
* a number -- pause that many seconds;
* :class:`Each` -- several exchanges, each in one hash slot (a cluster sends
  each to its node; a single Redis gets them in one write);
* :class:`Send`, :class:`Receive`, :class:`Recover` -- a call's own steps
  (see :mod:`redisrpc.core.call`): how a request travels and its reply
  comes back is the driver's business (one reply list per call for the sync
  client; one shared, multiplexed list for the asyncio client). A driver
  that gives a call a list of its own hands the call that list's plans
  (:class:`~redisrpc.core.ownlist.OwnList`, ``Call.own``): the call's plan
  then runs its Send and Receive in place, and the driver sees their commands.

Steps are plain records, made new for each step and never changed: they are
not frozen dataclasses, whose ``__init__`` sets each field through
``object.__setattr__`` (a ``Send`` cost three times as much to make, on
every call).

An exception raised while a step is carried out (a lost connection, Ctrl-C, a
cancelled task) is thrown into the plan at that step, so a plan handles its
own failures, once, for both drivers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["NOW", "Each", "Plan", "Receive", "Recover", "Send", "drive", "drive_async"]

T = TypeVar("T")

Plan = Generator[Any, Any, T]
"""Redis logic for either client: a generator that yields steps and returns a result."""

NOW = "now"
"""The step that asks for the Redis clock estimate (epoch ms)."""


@dataclass(slots=True)
class Send:
    """Push ``data`` on ``service``'s list and wait up to ``wait`` s for the call's reply.

    The plan gets the reply (bytes, or an already decoded
    :class:`~redisrpc.core.protocol.Reply`), or None if none came in time.
    """

    service: str
    data: bytes
    reply_queue: str
    call_id: str
    wait: float


@dataclass(slots=True)
class Receive:
    """Wait up to ``wait`` s more for the call's reply (as :class:`Send`, without the push)."""

    reply_queue: str
    call_id: str
    wait: float


@dataclass(slots=True)
class Recover:
    """After a lost connection, on a fresh one: withdraw the request, take a waiting reply.

    The plan gets ``(withdrawn, reply or None)``: ``withdrawn`` is True when
    the request was still queued and is now gone (it will never run). If
    Redis cannot be reached, the error is thrown into the plan. ``marks`` are
    commands sent along (the call's cancel mark).
    """

    service: str
    data: bytes
    reply_queue: str
    call_id: str
    marks: tuple[tuple[Any, ...], ...] = ()


def _advance(plan: Plan[T], reply: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Resume ``plan`` with a reply or an error: (False, next step) or (True, its result)."""
    try:
        return False, (plan.send(reply) if error is None else plan.throw(error))
    except StopIteration as done:
        return True, done.value


def drive(plan: Plan[T], handle: Callable[[Any], Any]) -> T:
    """Run ``plan`` to its end, carrying out each step with ``handle`` (blocking).

    Whatever ``handle`` raises, KeyboardInterrupt included, is thrown into the
    plan at the step that raised it.
    """
    reply: Any = None
    error: BaseException | None = None
    send, throw = plan.send, plan.throw
    while True:
        try:  # _advance, written out: a frame less per step, on every call's path
            step = send(reply) if error is None else throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        try:
            reply, error = handle(step), None
        except BaseException as exc:  # the plan decides: recover, withdraw, or re-raise
            reply, error = None, exc


async def drive_async(plan: Plan[T], handle: Callable[[Any], Awaitable[Any]]) -> T:
    """The asyncio form of :func:`drive`.

    A cancelled task's CancelledError is thrown into the plan too; the steps
    the plan takes after that (withdrawing its request) are shielded, so a
    cancelled call still cleans up after itself.
    """
    reply: Any = None
    error: BaseException | None = None
    cancelled = False
    while True:
        done, step = _advance(plan, reply, error)
        if done:
            return step  # type: ignore[no-any-return]
        try:
            if cancelled:
                reply = await asyncio.shield(_awaited(handle, step))
            else:
                reply = await handle(step)
            error = None
        except BaseException as exc:
            cancelled = cancelled or isinstance(exc, asyncio.CancelledError)
            reply, error = None, exc


async def _awaited(handle: Callable[[Any], Awaitable[Any]], step: Any) -> Any:
    return await handle(step)


@dataclass(slots=True)
class Each:
    """Several exchanges, perhaps on different cluster nodes; the plan gets each one's replies.

    Each exchange (a tuple of commands) keeps to one hash slot. A single
    Redis gets them all in one write, as one exchange would be; a cluster
    transport sends each to the node that owns its slot.
    """

    exchanges: tuple[tuple[tuple[Any, ...], ...], ...]
