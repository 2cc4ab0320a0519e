"""What a long call shows while it runs: progress bars, and what a queued call waits for.

A call whose server reports progress (:func:`redisrpc.progress`) shows a
``tqdm.auto`` bar by itself in Jupyter and in a terminal, once it has run
for half a second (fast calls do not flash a bar). A call that waits in the
queue behind another one says so: which call runs, who made it, for how
long. Both come from :class:`ProgressDisplay`, which the call plan tells of
events (:attr:`redisrpc.core.call.Call.on_event`).

``redisrpc.with_progress(proxy, callback)`` gives a proxy whose calls call
``callback(done, total, message)`` instead.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

__all__ = ["ProgressCallback", "ProgressDisplay", "Watcher", "callback_events", "interactive"]

ProgressCallback = Callable[[float, "float | None", str], Any]
"""``callback(done, total, message)``, called on each progress update of a call."""

DELAY = 0.5
"""Seconds a call runs before a bar or a waiting note appears."""


class Watcher(Protocol):
    """Told of a call's events (see :attr:`redisrpc.core.call.Call.on_event`); closed at its end."""

    def __call__(self, kind: str, value: Any) -> None: ...

    def close(self) -> None: ...


def interactive() -> bool:
    """Whether someone watches: a Jupyter kernel, or a terminal on stderr."""
    if "ipykernel" in sys.modules:
        return True
    stderr = sys.stderr
    known = _TTY.get(id(stderr))
    if known is not None and known[0] is stderr:
        return known[1]  # isatty() is a system call, which releases the GIL: once per stream
    try:
        tty = bool(stderr.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False
    _TTY.clear()
    _TTY[id(stderr)] = (stderr, tty)
    return tty


_TTY: dict[int, tuple[Any, bool]] = {}  # the current stderr, and whether it is a terminal


def callback_events(callback: ProgressCallback) -> Callable[[str, Any], None]:
    """Turn a user's progress callback into a call's event handler."""

    def on_event(kind: str, value: Any) -> None:
        if kind == "progress":
            done, total, message = _progress(value)
            callback(done, total, message)

    return on_event


def _progress(value: Any) -> tuple[float, float | None, str]:
    """(done, total, message) from a progress message's body; junk is read as 0 of unknown."""
    body = value if isinstance(value, dict) else {}
    done, total = _number(body.get("done")), _number(body.get("total"))
    return done or 0, total if total else None, str(body.get("message") or "")


def _number(value: Any) -> float | None:
    """A count as sent: whole numbers stay whole (a bar shows 5/10, not 5.0/10.0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return int(value) if float(value).is_integer() else float(value)


def _who(entry: dict[str, Any], now_s: float) -> str:
    since = entry.get("since")
    elapsed = f", running {now_s - since:.0f} s" if isinstance(since, (int, float)) else ""
    return f"{entry.get('method', '?')}() by {entry.get('caller') or 'someone'}{elapsed}"


class ProgressDisplay:
    """Shows one call's progress and waits, after :data:`DELAY` seconds.

    Call it with the plan's events; :meth:`close` when the call is over.
    ``file`` is where the bar goes (tqdm's default, stderr, or the notebook).
    """

    def __init__(
        self,
        label: str,
        *,
        file: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.file = file
        self.clock = clock
        self.start = clock()
        self.bar: Any = None
        self.waiting = ""

    def __call__(self, kind: str, value: Any) -> None:
        if self.clock() - self.start < DELAY:
            return
        if kind == "progress":
            done, total, message = _progress(value)
            bar = self._bar(total)
            if total is not None and bar.total != total:
                bar.total = total
            bar.n = done
            bar.set_description_str(f"{self.label} {message}".strip(), refresh=False)
            bar.refresh()
        elif kind == "waiting":
            others = [e for e in value if isinstance(e, dict) and not e.get("mine")]
            mine = any(isinstance(e, dict) and e.get("mine") for e in value)
            if others and not mine:
                now_s = time.time()
                text = "; ".join(_who(e, now_s) for e in others)
                self.waiting = f"{self.label} waiting behind {text}"
                bar = self._bar(None)
                bar.set_description_str(self.waiting)
            elif self.bar is not None and self.waiting:
                self.waiting = ""
                self.bar.set_description_str(self.label)

    def _bar(self, total: float | None) -> Any:
        if self.bar is None:
            from tqdm.auto import tqdm  # noqa: PLC0415 - only a long call needs it

            self.bar = tqdm(
                total=total,
                desc=self.label,
                file=self.file,
                leave=True,
                dynamic_ncols=True,
                unit="",  # the server's own units: mm, traces, points
            )
        return self.bar

    def close(self) -> None:
        """The call is over: close the bar, if one was shown."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
