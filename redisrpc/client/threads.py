"""Many threads on one sync proxy: one shared reply list, one reader thread, pushes coalesced.

The sync client's calls each wait on a reply list of their own, which costs
every call a connection, a blocking pop and several GIL releases: threads
that share a proxy then convoy on the GIL. When calls overlap, the client
hands them to a :class:`ThreadMultiplexer` instead, the threaded twin of the
asyncio client's :class:`~redisrpc.client.aio.Multiplexer`:

* it carries out the same call plan (:func:`redisrpc.core.call.calling`);
  only the :class:`~redisrpc.core.plan.Send`, :class:`~redisrpc.core.plan.Receive`
  and :class:`~redisrpc.core.plan.Recover` steps differ;
* requests queued while a push is in flight go out together in the next
  RPUSH (the thread that finds no push running sends them all);
* one reader thread pops the shared reply list in batches (a message with
  its blobs) and hands each reply to its call by id;
* a call made while no other is in flight takes the direct path (its own
  list), which is the quickest for one thread alone.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..core.call import first_reply, routed
from ..core.ownlist import blob_commands, framing
from ..core.plan import Plan, Receive, Recover, Send, drive
from ..core.transport import Transport
from ..errors import RedisConnectionError, RedisRPCError

__all__ = ["Flight", "ThreadMultiplexer"]

log = logging.getLogger("redisrpc.client")

_READ_SLICE = 1.0  # the reader's longest wait; it stops once no call waits
_READ_BATCH = 256


class Flight:
    """How many calls of one proxy are in flight, and the multiplexer the overlapping ones share."""

    __slots__ = ("calls", "lock", "mux")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards making the multiplexer
        # One entry per call in flight. A list's append and pop are atomic, so counting
        # takes no lock (two lock round trips were 4% of a call): two calls that start
        # together may both see the other and both be multiplexed, which is only the
        # longer route, never a wrong one.
        # A call appends on its way in (another one is in flight when the list then holds
        # more than its entry: it is multiplexed) and pops on its way out.
        self.calls: list[None] = []
        self.mux: ThreadMultiplexer | None = None


class _Box:
    """What one call waits on: the replies handed to it, or the error of its push or read."""

    __slots__ = ("replies",)

    def __init__(self) -> None:
        self.replies: queue.SimpleQueue[Any] = queue.SimpleQueue()


class ThreadMultiplexer:
    """The calls of many threads on one shared reply list (see the module docstring)."""

    def __init__(self, transport: Transport, service: str, reply_queue: str, *, max_size: int):
        self.transport = transport
        self.service = service
        self.reply_queue = reply_queue
        self.max_size = max_size
        self.lock = threading.Lock()
        self.boxes: dict[str, _Box] = {}
        self.outbox: dict[str, bytes] = {}  # call id -> request, not pushed yet
        self.pushing = False
        self.reader: threading.Thread | None = None

    def step(self, step: Any) -> Any:
        """Carry out one step of a multiplexed call's plan (blocking)."""
        if isinstance(step, Send):
            return self._send(step)
        if isinstance(step, Receive):
            return self._wait(step.call_id, step.wait)
        if isinstance(step, Recover):
            return self._recover(step)
        return self.transport.step(step)

    def forget(self, call_id: str) -> None:
        """The call is over: drop what the multiplexer kept for it."""
        with self.lock:
            self.boxes.pop(call_id, None)
            self.outbox.pop(call_id, None)

    # -- pushes ---------------------------------------------------------------

    def _send(self, step: Send) -> Any:
        box = _Box()
        with self.lock:
            self.boxes[step.call_id] = box
            # The reader first: starting it waits for the thread, and Ctrl-C there must not
            # leave a push claimed that nobody makes (every later call would wait in vain).
            self._start_reader()
            self.outbox[step.call_id] = step.data
            lead = not self.pushing
            self.pushing = True
        if lead:
            self._push_all()
        # No wait for the push itself (one wakeup less per call): a failed push
        # reaches the call as its first "reply", an error raised at this step.
        # The reader runs while the box is registered (or has put its error in it).
        return self._next(box, step.wait)

    def _push_all(self) -> None:
        """Push what is queued, and what was queued meanwhile, until nothing is left."""
        while True:
            with self.lock:
                batch, self.outbox = self.outbox, {}
                if not batch:
                    self.pushing = False
                    return
            try:
                blobs = tuple(c for data in batch.values() for c in blob_commands(data))
                self.transport.execute(*blobs, ("RPUSH", self.service, *batch.values()))
            except RedisRPCError as exc:
                self._fail(batch, exc)
            except BaseException as exc:  # interrupted mid-push: whether it went out is unknown
                self._fail(batch, RedisConnectionError(f"the push was interrupted: {exc!r}"))
                self._hand_over_pushes()
                raise

    def _hand_over_pushes(self) -> None:
        """After an interrupted push, push what other threads queued meanwhile from a new thread.

        Ctrl-C reaches the main thread only, so the calls of other threads go on:
        their requests were never written, and failing them would report them as
        perhaps delivered. The interrupted thread leaves with its interruption;
        the push stays claimed for the new thread. Only if even that cannot start
        (a second interruption) do the queued calls fail, as the push's did.
        """
        try:
            threading.Thread(
                target=self._push_all, name=f"redisrpc-push-{self.service}", daemon=True
            ).start()
        except BaseException:
            with self.lock:
                rest, self.outbox, self.pushing = self.outbox, {}, False
            self._fail(rest, RedisConnectionError("the push was interrupted"))
            raise

    def _fail(self, batch: dict[str, bytes], error: BaseException) -> None:
        """Every call of a batch whose push failed learns of it at its wait (then recovers)."""
        with self.lock:
            boxes = [self.boxes.get(call_id) for call_id in batch]
        for box in boxes:
            if box is not None:
                box.replies.put(error)

    # -- replies --------------------------------------------------------------

    def _wait(self, call_id: str, wait: float) -> Any:
        """The next reply (or error) handed to the call, or None after ``wait`` seconds."""
        box = self.boxes[call_id]
        with self.lock:
            self._start_reader()
        return self._next(box, wait)

    @staticmethod
    def _next(box: _Box, wait: float) -> Any:
        """What was handed to ``box`` next (raised if an error), or None after ``wait`` s."""
        try:
            item = box.replies.get(timeout=wait)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def _start_reader(self) -> None:
        """Start the reader if calls wait and none runs (called with the lock held)."""
        if self.reader is None and self.boxes:
            self.reader = threading.Thread(
                target=self._reading, name=f"redisrpc-reader-{self.service}", daemon=True
            )
            self.reader.start()

    def _reading(self) -> None:
        """Pop replies while calls wait, and hand each to its call."""
        while True:
            with self.lock:
                if not self.boxes:
                    self.reader = None
                    return
            try:
                blocked, more = self.transport.execute(
                    ("BLPOP", self.reply_queue, _READ_SLICE),
                    ("LPOP", self.reply_queue, _READ_BATCH),
                )
                elements = ([blocked[1]] if blocked else []) + (more or [])
                messages = drive(
                    framing(self.reply_queue, elements, self._deliver),
                    lambda commands: self.transport.execute(*commands),
                )
            except RedisRPCError as exc:
                # Every waiting call learns of it at its step; its plan then recovers.
                with self.lock:
                    boxes = list(self.boxes.values())
                    self.reader = None
                for box in boxes:
                    box.replies.put(exc)
                return
            for raw in messages:
                self._deliver(raw)

    def _deliver(self, raw: bytes) -> None:
        reply = routed(raw, max_size=self.max_size, queue=self.reply_queue)
        box = self.boxes.get(reply.id or "") if reply is not None else None
        if box is not None:
            box.replies.put(reply)  # else: a reply to a call that already gave up, or garbage

    # -- recovery -------------------------------------------------------------

    def _recover(self, step: Recover) -> tuple[bool, Any]:
        """Withdraw the request on a fresh connection; a reply already handed over wins.

        When no reader runs (the last one failed, and this call learnt of it), the
        replies it left on the shared list are popped here and handed over, as a
        call with a list of its own pops its own: this call's may be among them.
        This thread holds the reader's place meanwhile, so no reader pops alongside
        (a stream's items stay in order).
        """
        with self.lock:
            read = self.reader is None
            if read:
                self.reader = threading.current_thread()
        try:
            removed, messages = self.transport.rescue(
                _withdrawing(step, self.reply_queue if read else None, self._deliver)
            )
            for raw in messages:
                self._deliver(raw)
        finally:
            if read:
                with self.lock:
                    self.reader = None
                    self._start_reader()
        box = self.boxes.get(step.call_id)
        return removed, None if box is None else first_reply(_handed(box))


def _handed(box: _Box) -> Iterator[Any]:
    """What was handed to ``box`` and not taken yet, in order (taken as it is read)."""
    while True:
        try:
            yield box.replies.get_nowait()
        except queue.Empty:
            return


def _withdrawing(
    step: Recover, shared: str | None, deliver: Callable[[bytes], None]
) -> Plan[tuple[bool, list[bytes]]]:
    """Withdraw the request and, with ``shared``, pop the replies waiting there.

    Returns whether it was withdrawn and the replies popped not yet handed to ``deliver``.
    """
    pop = () if shared is None else (("LPOP", shared, _READ_BATCH),)
    removed, *popped = yield (("LREM", step.service, 1, step.data), *pop)
    if not removed and step.marks:
        yield step.marks
    if shared is None:
        return bool(removed), []
    return bool(removed), (yield from framing(shared, popped[0] or [], deliver))
