"""A call's own steps for a call with a reply list of its own, as small plans.

Both clients carry these out for calls that have a reply list each (the
asyncio client's multiplexer has its own); see :class:`OwnList`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .plan import Plan, Receive, Recover, Send

__all__ = ["RECEIVE_BATCH", "OwnList"]


class OwnList:
    """A call's own steps for a call with a reply list of its own, as small plans.

    Both clients carry these out for such calls (the asyncio client's
    multiplexer does its own): ``Send`` is the push and the first wait in one
    round trip; a ``Receive`` takes every message already there (a stream's
    items come in batches) and hands out the rest on the next ones;
    ``Recover`` withdraws the request and takes a waiting reply (run on a
    fresh connection by the driver).
    """

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer: deque[bytes] = deque()

    def plan(self, step: Any) -> Plan[Any] | None:
        """The plan for ``step``, or None when it is not a call's own step."""
        if isinstance(step, Send):
            return self._sending(step)
        if isinstance(step, Receive):
            return self._receiving(step)
        if isinstance(step, Recover):
            return self._recovering(step)
        return None

    def _sending(self, step: Send) -> Plan[bytes | None]:
        _, popped = yield (
            ("RPUSH", step.service, step.data),
            ("BLPOP", step.reply_queue, step.wait),
        )
        return popped[1] if popped else None

    def _receiving(self, step: Receive) -> Plan[bytes | None]:
        if not self.buffer:
            popped, more = yield (
                ("BLPOP", step.reply_queue, step.wait),
                ("LPOP", step.reply_queue, RECEIVE_BATCH),
            )
            self.buffer.extend(([popped[1]] if popped else []) + (more or []))
        return self.buffer.popleft() if self.buffer else None

    def _recovering(self, step: Recover) -> Plan[tuple[bool, Any]]:
        removed, popped = yield (("LREM", step.service, 1, step.data), ("LPOP", step.reply_queue))
        if not removed and step.marks:
            yield step.marks
        return bool(removed), popped


RECEIVE_BATCH = 64
"""The most messages one wait takes from a call's own reply list (a stream's window)."""
