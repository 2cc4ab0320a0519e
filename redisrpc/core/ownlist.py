"""A call's own steps for a call with a reply list of its own, as small plans.

Both clients carry these out for calls that have a reply list each (the
asyncio client's multiplexer has its own); see :class:`OwnList`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from .plan import Plan, Receive, Recover, Send
from .protocol import Framed, blob_count, framed

__all__ = ["RECEIVE_BATCH", "OwnList", "blob_commands", "completed", "framing"]


class OwnList:
    """A call's own steps for a call with a reply list of its own, as small plans.

    The call's plan runs the ``Send`` and ``Receive`` plans in place when its
    driver hands it the list (:attr:`~redisrpc.core.call.Call.own`, both
    clients' direct drivers do); a driver runs the plan of a step yielded to
    it (:meth:`plan`), as it does ``Recover``'s, on a fresh connection. (The
    asyncio client's multiplexer has steps of its own.) ``Send`` is the push
    and the first wait in one round trip; a ``Receive`` takes every message
    already there (a stream's items come in batches) and hands out the rest
    on the next ones; ``Recover`` withdraws the request and takes a waiting reply.
    """

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        # Made by the first Receive that takes a batch: most calls never wait past their Send.
        self.buffer: deque[bytes] | None = None

    def plan(self, step: Any) -> Plan[Any] | None:
        """The plan for ``step``, or None when it is not a call's own step."""
        if isinstance(step, Send):
            return self.sending(step.service, step.data, step.reply_queue, step.wait)
        if isinstance(step, Receive):
            return self.receiving(step)
        if isinstance(step, Recover):
            return self._recovering(step)
        return None

    def sending(
        self, service: str, data: bytes, reply_queue: str, wait: float
    ) -> Plan[bytes | None]:
        """A :class:`Send`'s push and first wait, in one round trip: the message, or None.

        Takes the step's fields, not a Send: a call with a list of its own makes none.
        """
        push = ("RPUSH", service, data), ("BLPOP", reply_queue, wait)
        popped = (yield (*blob_commands(data), *push) if type(data) is not bytes else push)[-1]
        if not popped:
            return None
        message: bytes = popped[1]
        if not blob_count(message):
            return message  # no blobs follow it: no plan to run for them (most calls)
        return (yield from completed(reply_queue, [message]))

    def receiving(self, step: Receive) -> Plan[bytes | None]:
        """The next message (from the batch a wait took), or None when none came in time."""
        buffer = self.buffer
        if not buffer:
            popped, more = yield (
                ("BLPOP", step.reply_queue, step.wait),
                ("LPOP", step.reply_queue, RECEIVE_BATCH),
            )
            elements = ([popped[1]] if popped else []) + (more or [])
            buffer = self.buffer = deque((yield from framing(step.reply_queue, elements)))
        return buffer.popleft() if buffer else None

    def _recovering(self, step: Recover) -> Plan[tuple[bool, Any]]:
        removed, popped = yield (("LREM", step.service, 1, step.data), ("LPOP", step.reply_queue))
        if not removed and step.marks:
            yield step.marks
        return bool(removed), (yield from completed(step.reply_queue, [popped] if popped else []))


def blob_commands(data: bytes) -> tuple[tuple[Any, ...], ...]:
    """The commands that write a request's blobs to its blob list (none for a plain request).

    Sent before the request's RPUSH, in the same round trip: a server that
    pops the request finds its blobs there.
    """
    if not isinstance(data, Framed) or not data.blobs or data.key is None:
        return ()
    return (("RPUSH", data.key, *data.blobs), ("PEXPIRE", data.key, max(1, data.ttl_ms)))


def completed(queue: str, elements: list[bytes]) -> Plan[bytes | None]:
    """The one message popped (``elements``: none, or its JSON), with the blobs that follow it."""
    if not elements:
        return None
    if not blob_count(elements[0]):
        return elements[0]
    return (yield from framing(queue, elements))[0]


def framing(
    queue: str, elements: list[bytes], deliver: Callable[[bytes], None] | None = None
) -> Plan[list[bytes]]:
    """The messages among ``elements`` popped from ``queue``, each with its blobs.

    One RPUSH wrote each message with its blobs, so the blobs a batch cut off
    from its last message are there: they are popped. On a shared list
    (``deliver`` given) the whole messages before that one are handed to
    ``deliver`` first, and are not returned: failing to take the rest must not
    lose them.
    """
    messages, missing = framed(elements)
    if missing:
        if deliver is not None:
            for raw in messages[:-1]:
                deliver(raw)
            del messages[:-1]
        yield from _taking_rest(queue, messages[-1], missing)
    return messages


def _taking_rest(queue: str, message: bytes, missing: int) -> Plan[None]:
    """Pop the blobs of ``message`` that a batch cut off (one RPUSH wrote them: they are there)."""
    (rest,) = yield (("LPOP", queue, missing),)
    if isinstance(message, Framed):
        message.blobs.extend(rest or [])


RECEIVE_BATCH = 64
"""The most messages one wait takes from a call's own reply list (a stream's window)."""
