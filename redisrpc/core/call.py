"""One remote call as a plan: the state machine that the sync and asyncio clients both run.

:func:`calling` is the whole life of a call, written once:

1. encode the request, with its id and a deadline on the Redis clock;
2. push it and wait for its reply in slices (:class:`~redisrpc.core.plan.Send`,
   then :class:`~redisrpc.core.plan.Receive`), taking only a reply that
   carries the call's id from a server known to echo ids;
3. between slices, fail fast when the service is gone (every registered
   instance vanished) or was never there (a mistyped name);
4. at the timeout, withdraw the request if no server took it (it then never
   runs) and raise :class:`~redisrpc.TimeoutException`;
5. after a lost connection, withdraw the request or take a reply that arrived
   meanwhile (:class:`~redisrpc.core.plan.Recover`);
6. when the caller gives up (Ctrl-C, a cancelled task), withdraw the request
   before the interrupt goes on.

The plan returns the call's :class:`~redisrpc.core.protocol.Reply` (a value or a
remote error); turning a remote error into an exception is the client's
business. Every path can be tested by stepping the plan with no Redis
(``tests/test_call.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import MessageTooLargeError, RedisConnectionError, RedisRPCError
from .cancel import MARK_MARGIN, cancel_commands, running_calls
from .outcomes import gone, interrupted, lost, timed_out, unknown
from .ownlist import OwnList
from .plan import NOW, Plan, Receive, Recover, Send
from .protocol import (
    DEFAULT_MAX_BLOB_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    Framed,
    Reply,
    decode_reply,
    encode_blobbed_message,
    encode_plain_message,
    request_message,
)
from .registry import DEFAULT_PREFIX, counting_live, listing_names

__all__ = [
    "GONE_GRACE",
    "NOTE",
    "UNKNOWN_GRACE",
    "WAIT_SLICE",
    "Anonymous",
    "Call",
    "awaiting",
    "calling",
    "cancelling",
    "checking_gone",
    "checking_unknown",
    "closing",
    "encoded",
    "first_reply",
    "giving_up",
    "looking_around",
    "marks",
    "new_call_id",
    "recovering",
    "routed",
    "withdrawing",
]

log = logging.getLogger("redisrpc.client")

WAIT_SLICE = 1.0
"""The longest single wait for a reply, so long waits stay interruptible and checked."""
GONE_GRACE = 1.0
"""A default heartbeat period: how long a service with no live instance gets to reappear."""
UNKNOWN_GRACE = 3.0
"""How long a request to a name nothing is registered under may sit untaken before it fails."""

Anonymous = Literal["any", "errors", "none"]
"""Which replies without the call's id a call takes (see :class:`Call`)."""


def new_call_id() -> str:
    """A fresh, unguessable call id: this process's 96 random bits, then a counter (hex).

    No system call per call (``os.urandom`` was one); a forked child draws
    a prefix of its own, so parent and child never repeat each other's ids.
    """
    return _ids.prefix + format(next(_ids.counter), "08x")


class _Ids:
    __slots__ = ("counter", "prefix")

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = secrets.token_hex(12)
        self.counter = itertools.count(secrets.randbelow(1 << 30))  # next() is atomic


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.renew)


@dataclass(slots=True)
class Call:
    """Everything one call needs to know; made by the proxy, run by :func:`calling`.

    ``anonymous`` says which replies without the call's id are taken: any (a
    version 1 server, which does not echo ids), only errors (the first
    ``__describe__``, whose answer from a version 1 server is an error), or
    none (a version 2 server: anything else is forged or stray).
    ``shared_queue`` is the reply list shared by many calls (the asyncio
    client's multiplexer); without it the call has a reply list of its own.
    ``find_unknown`` makes a request that nothing registered takes fail fast,
    naming close matches, instead of waiting for its timeout. ``own`` is set by
    a driver that gives the call a reply list of its own: the plan then runs
    the list's plans for ``Send`` and ``Receive`` in place (their commands are
    what the driver sees), instead of yielding those steps to the driver.
    """

    service: str
    method: str
    args: Sequence[Any]
    kwargs: dict[str, Any]
    timeout: float
    reply_prefix: str
    call_id: str = field(default_factory=new_call_id)
    lock_token: str | None = None
    max_size: int = DEFAULT_MAX_MESSAGE_SIZE
    registry_prefix: str | None = None
    anonymous: Anonymous = "any"
    shared_queue: str | None = None
    find_unknown: bool = False
    limit: float | None = None
    """A hard limit in seconds; ``timeout`` measures silence, so progress extends it."""
    caller: str | None = None
    deadline: int | None = None
    """The request's deadline (epoch ms, Redis clock), once :func:`calling` set it."""
    binary: bool = False
    """Send bytes and arrays as raw blobs: the server speaks protocol 4 (PROTOCOL.md, "Blobs")."""
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE
    on_event: Callable[[str, Any], None] | None = None
    """Told of ``("progress", (done, total, message))`` and, while the call waits
    behind others, ``("waiting", [running calls])``; see :mod:`redisrpc.client.progress`."""
    own: OwnList | None = None

    @property
    def reply_queue(self) -> str:
        """Where the reply comes: the shared list, or the call's own."""
        return self.shared_queue or self.reply_prefix + self.call_id

    @property
    def label(self) -> str:
        """``service.method()``, as error messages name the call."""
        return f"{self.service}.{self.method}()"


def encoded(call: Call, reply_queue: str | None = None) -> bytes:
    """The request bytes of ``call``; MessageTooLargeError if over the server's limit.

    ``reply_queue`` is ``call.reply_queue``, when the caller has it at hand.
    """
    deadline = call.deadline
    # The request's JSON object made directly from the call (no Request in between).
    message = request_message(
        call.method,
        call.args,
        call.kwargs,
        call.reply_queue if reply_queue is None else reply_queue,
        call.call_id,
        deadline,
        call.lock_token,
        call.caller,
        None if deadline is None else deadline - int(call.timeout * 1000),  # sent
    )
    data = encode_plain_message(message)
    if data is None:  # bytes, arrays, NaN...: only such requests name a blob list
        # A blob list lives as long as the request may wait, and a margin (withdrawn calls too).
        data = encode_blobbed_message(
            message,
            call.binary,
            call.max_size,
            call.max_blob_size,
            call.reply_prefix + call.call_id + ":blobs",
            int((call.limit or call.timeout) * 1000) + _MARK_MARGIN_MS,  # ttl_ms
        )
    if len(data) > call.max_size:
        raise MessageTooLargeError(
            f"request for {call.method}() is {len(data)} bytes, over the server's limit of"
            f" {call.max_size}"
        )
    return data


def calling(
    call: Call, *, clock: Callable[[], float] = time.monotonic, now: int | None = None
) -> Plan[Reply]:
    """The plan of one call: see the module docstring.

    Returns the call's reply, or the first message of a streamed result (an
    item, or a final reply with ``stream`` set): the client then pulls the
    rest with :func:`awaiting`. ``now`` is the Redis clock estimate (epoch ms)
    when the driver has it at hand; without it the plan asks (:data:`NOW`).
    """
    # The plan owns its Call (made for this one call): setting fields copies nothing.
    call.deadline = ((yield NOW) if now is None else now) + int(call.timeout * 1000)
    queue = call.reply_queue  # a property: read once
    data = encoded(call, queue)
    wait = WAIT_SLICE if call.timeout > WAIT_SLICE else call.timeout
    start = clock()
    own = call.own
    first: bytes | Reply | None
    try:
        # A call with a list of its own runs the push's plan in place: one generator
        # driven, not a second plan driven by the driver inside this one, nor a Send made.
        if own is not None:
            first = yield from own.sending(call.service, data, queue, wait)
        else:
            first = yield Send(call.service, data, queue, call.call_id, wait)
    except RedisConnectionError as exc:
        return (yield from recovering(call, data, exc))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        yield from giving_up(call, data, exc)
        raise
    if first is not None:
        reply = _matched(call, first)
        if reply is not None and reply.interim != "progress":
            return reply  # the answer came with the push (most calls)
        first = reply  # stray (None, logged once) or progress: the wait takes it from here
    return (yield from awaiting(call, data, first, clock=clock, start=start))


def awaiting(
    call: Call,
    data: bytes | None,
    raw: bytes | Reply | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    start: float | None = None,
) -> Plan[Reply]:
    """Wait for the call's next message: its reply, or the next item of its stream.

    ``raw`` is a message already received (the answer to ``Send``). Progress
    messages go to ``call.on_event`` and restart the timeout, which measures
    silence; ``call.limit`` stays a hard limit. ``start`` is when the wait began
    (when the request was sent; now by default).
    """
    start = clock() if start is None else start
    request = b"" if data is None else data  # a running stream's request is long gone
    end = start + call.timeout
    hard_end = start + call.limit if call.limit is not None else float("inf")
    watch_unknown = call.find_unknown
    next_look = start + _LOOK_AFTER
    try:
        while True:
            reply = _matched(call, raw) if raw is not None else None
            if reply is not None:
                if reply.interim != "progress":
                    return reply
                end = min(hard_end, clock() + call.timeout)
                if call.on_event is not None:
                    call.on_event("progress", reply.value)
            elif clock() >= min(end, hard_end):
                withdrawn = yield from giving_up(call, data)
                raise timed_out(call, withdrawn, at_limit=clock() >= hard_end)
            elif call.registry_prefix is not None:
                raw = yield from checking_gone(call, request, call.registry_prefix)
                if raw is not None:
                    continue
            elif watch_unknown and clock() - start >= UNKNOWN_GRACE:
                watch_unknown = yield from checking_unknown(call, request)
            if call.on_event is not None and clock() >= next_look:
                next_look = clock() + WAIT_SLICE
                call.on_event("waiting", (yield from looking_around(call)))
            receive = Receive(call.reply_queue, call.call_id, _slice(min(end, hard_end), clock))
            own = call.own
            raw = (yield from own.receiving(receive)) if own is not None else (yield receive)
    except RedisConnectionError as exc:
        return (yield from recovering(call, request, exc))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        yield from giving_up(call, data, exc)
        raise


_MARK_MARGIN_MS = int(MARK_MARGIN * 1000)

NOTE = "redisrpc_note"
"""The attribute an interrupt gets: one line on what became of the interrupted call."""

_LOOK_AFTER = 0.5  # a call silent this long with a display attached shows what it waits for


def giving_up(call: Call, data: bytes | None, interrupt: BaseException | None = None) -> Plan[bool]:
    """The caller gives up: withdraw the request, and mark the call cancelled.

    Returns whether the request was withdrawn (it never runs). The mark keeps
    a server that already took the request from starting it, and stops it if
    it runs (see PROTOCOL.md, cancellation). With ``interrupt`` (Ctrl-C, a
    cancelled task) failures are logged, not raised, and a note on the
    interrupt says which of the two happened.
    """
    try:
        if data is None:  # a running stream: nothing to withdraw, only to cancel
            yield from cancelling(call)
            withdrawn = False
        else:
            withdrawn = yield from withdrawing(
                call.service, data, call.reply_queue, own=call.shared_queue is None, call=call
            )
    except RedisRPCError as exc:
        if interrupt is None:
            raise
        log.warning("could not withdraw or cancel the interrupted call %s: %s", call.label, exc)
        return False
    if interrupt is not None:
        note = interrupted(call, withdrawn)
        setattr(interrupt, NOTE, note)
        _add_note(interrupt, note)
    return withdrawn


def _add_note(exc: BaseException, note: str) -> None:
    add_note = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(note)


def looking_around(call: Call) -> Plan[list[dict[str, Any]]]:
    """What the service's instances are running now (for a call that waits behind them).

    Each entry gets ``mine``: whether it is this call (then it runs, not waits).
    """
    running = yield from running_calls(call.service)
    for entry in running:
        entry["mine"] = entry.get("id") == call.call_id
    return running


def closing(call: Call) -> Plan[None]:
    """Close a stream: mark the call cancelled (the server closes its generator)."""
    now = yield NOW
    yield marks(call, now) + ((("DEL", call.reply_queue),) if call.shared_queue is None else ())


def _slice(end: float, clock: Callable[[], float]) -> float:
    """Seconds for the next wait: at most one slice, at least 10 ms."""
    return max(0.01, min(WAIT_SLICE, end - clock()))


def _matched(call: Call, raw: bytes | Reply) -> Reply | None:
    """The reply if it answers this call; None (logged) for a stray or forged one."""
    try:
        reply = raw if isinstance(raw, Reply) else decode_reply(raw, max_size=call.max_size)
    except MessageTooLargeError:
        raise  # never decoded: a peer that breaks the limit it advertised must not flood us
    except RedisRPCError as exc:
        if call.anonymous == "any":
            raise  # a version 1 peer: the garbage is this call's answer
        log.warning("ignored an undecodable reply on %s: %s", call.reply_queue, exc)
        return None
    if reply.id == call.call_id:
        return reply
    if reply.id is None and (
        call.anonymous == "any" or (call.anonymous == "errors" and reply.error is not None)
    ):
        return reply
    log.warning(
        "ignored a reply on %s that does not answer %s (id %r)",
        call.reply_queue,
        call.label,
        reply.id,
    )
    return None


def withdrawing(
    service: str, data: bytes, reply_queue: str, *, own: bool = True, call: Call | None = None
) -> Plan[bool]:
    """Remove a request if still queued; True when it was (it will never run).

    The call's own reply list goes too; a shared one (multiplexed) is left
    alone. With ``call``, a request that a server already took is marked
    cancelled, so that server never starts it and stops it if it runs.
    """
    commands: list[tuple[Any, ...]] = [("LREM", service, 1, data)]
    if own:
        commands.append(("DEL", reply_queue))
    if isinstance(data, Framed) and data.key is not None:
        commands.append(("DEL", data.key))  # its blobs (a server that took it has popped them)
    removed, *_ = yield tuple(commands)
    if not removed and call is not None:
        yield from cancelling(call)
    return bool(removed)


def cancelling(call: Call) -> Plan[None]:
    """Mark a call that a server took as cancelled (see :func:`cancel_commands`)."""
    now = yield NOW
    yield marks(call, now)


def marks(call: Call, now: int) -> tuple[tuple[Any, ...], ...]:
    """The commands that mark ``call`` cancelled (:func:`.cancel.cancel_commands`).

    The mark lives until the request's deadline (after which no server starts
    it) and :data:`~redisrpc.core.cancel.MARK_MARGIN` more, in which a server
    running the call sees it; then it expires, so giving up leaves no key behind.
    """
    remaining = max(0, call.deadline - now) if call.deadline is not None else 0
    return cancel_commands(call.service, call.call_id, ttl_ms=remaining + int(MARK_MARGIN * 1000))


def checking_gone(call: Call, data: bytes, prefix: str) -> Plan[bytes | Reply | None]:
    """Between waits: raise ServerGoneError once every registered instance is gone.

    One round trip while the service is alive. It looks twice, a heartbeat
    apart: a Redis that just restarted lost the registry until the servers'
    next heartbeat, and those servers are not gone. On a gone service the
    request is withdrawn (it never runs), unless a reply is already waiting:
    that reply wins and is returned.
    """
    if (yield from counting_live(call.service, prefix=prefix)):
        return None
    yield GONE_GRACE
    if (yield from counting_live(call.service, prefix=prefix)):
        return None
    withdrawn = yield from withdrawing(call.service, data, call.reply_queue, own=False, call=call)
    if not withdrawn:
        # Taken: the last instance may have answered just before it went.
        last = Receive(call.reply_queue, call.call_id, 0.05)
        own = call.own
        raw: bytes | Reply | None = (
            (yield from own.receiving(last)) if own is not None else (yield last)
        )
        if raw is not None and _matched(call, raw) is not None:
            return raw
    if call.shared_queue is None:
        yield (("DEL", call.reply_queue),)
    raise gone(call, withdrawn)


def checking_unknown(call: Call, data: bytes) -> Plan[bool]:
    """Fail fast when no instance is registered under the name and nobody took the request.

    Raises :class:`~redisrpc.UnknownServiceError` (the request withdrawn, so
    it never runs) naming registered services with similar names. Returns
    whether to keep watching: False once a server took the request (an
    unregistered server, such as the original RedisRPC's, is serving it).
    """
    if (yield from counting_live(call.service, prefix=DEFAULT_PREFIX)):
        return False
    if not (yield from withdrawing(call.service, data, call.reply_queue, own=False, call=call)):
        return False
    names = yield from listing_names(prefix=DEFAULT_PREFIX)
    if call.shared_queue is None:
        yield (("DEL", call.reply_queue),)
    raise unknown(call, names, UNKNOWN_GRACE)


def recovering(call: Call, data: bytes, exc: RedisConnectionError) -> Plan[Reply]:
    """After a lost connection: the reply if one is waiting, else raise RedisConnectionError.

    One attempt on a fresh connection withdraws the request if it is still
    queued (``started=False``: it never runs).
    """
    try:
        now = yield NOW
        withdrawn, raw = yield Recover(
            call.service, data, call.reply_queue, call.call_id, marks(call, now)
        )
    except RedisRPCError:
        withdrawn, raw = False, None  # Redis is still out of reach
    if raw is not None:
        reply = _matched(call, raw)
        # A progress message is no reply: the call still runs (and is now marked cancelled).
        if reply is not None and reply.interim != "progress":
            return reply
    raise lost(call, exc, withdrawn)


def first_reply(handed: Iterator[Any]) -> Reply | None:
    """The reply among the messages a multiplexer handed a call, for the call's recovery.

    Taken in order, up to the reply: errors (a failed read the call already
    learnt of) and progress are no reply, and the reply may come after them.
    """
    for item in handed:
        if isinstance(item, Reply) and item.interim != "progress":
            return item
    return None


# The errors a call ends with when no reply comes.


def routed(raw: bytes, *, max_size: int, queue: str) -> Reply | None:
    """A reply popped from a list shared by many calls, to hand to its call by id.

    None (logged) for one that cannot be decoded: it answers nobody.
    """
    try:
        return decode_reply(raw, max_size=max_size)
    except RedisRPCError as exc:
        log.warning("dropped an undecodable reply on %s: %s", queue, exc)
        return None
