"""The explorer's live property values: the selected server's property rows, watched.

While a server (or one of its channels) is selected, each of its property
rows is watched with :func:`redisrpc.watch`; every new value, or the error
the server reported reading it, updates the row by itself, whoever changed
it. The watches close when the selection changes, when the server is gone
and when the explorer closes, so a server stops being polled once nobody
looks at it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from typing import Any

from ..client.watch import Watch, watch
from .rows import PropertyRow

__all__ = ["PropertyWatches"]


class PropertyWatches:
    """The watches of the rows shown now; :meth:`start` replaces them, :meth:`stop` ends them.

    ``guard`` is the explorer's lock, held while a row changes. ``interval``
    is the seconds between reads (0: nothing is watched).
    """

    def __init__(self, guard: threading.RLock, *, interval: float) -> None:
        self.guard = guard
        self.interval = interval
        self.watches: dict[str, Watch] = {}
        """The open watches, by property name."""
        self._generation = 0  # a value from a watch of an earlier selection is dropped
        self._errors: dict[str, BaseException] = {}  # the watch errors shown, by property

    def start(self, generation: int, proxy: Any, rows: Iterable[PropertyRow]) -> None:
        """Watch each row's property through ``proxy``, after the stop that gave ``generation``.

        Does nothing if another stop came since (the selection changed again).
        """
        if self.interval <= 0:
            return
        opened: dict[str, Watch] = {}
        for row in rows:
            with self.guard:
                if generation != self._generation:
                    break
            try:
                # No wait for a first value: it updates the row when it comes.
                watched = watch(proxy, row.name, interval=self.interval, wait=0)
            except Exception as exc:  # not watchable, or Redis refused: Get still works
                with self.guard:
                    if generation == self._generation:
                        row.status.fail(exc)
                continue
            opened[row.name] = watched
            update = functools.partial(self._update, generation, row)
            watched.observe(update)
            if watched.values:  # it came before the observer: show it now
                update(watched)
        with self.guard:
            current = generation == self._generation
            if current:
                self.watches.update(opened)
        if not current:  # the selection changed meanwhile
            for watched in opened.values():
                watched.close()

    def _update(self, generation: int, row: PropertyRow, watched: Watch) -> None:
        """Show a watch's newest value or error in its row (from the watch's thread)."""
        with self.guard:
            if generation != self._generation:
                return
            error = watched.error
            shown = self._errors.get(row.name)
            if error is not None:
                # The same error again each interval: leave the line (and an open toggle) be.
                if shown is None or row.status.error is not shown or str(shown) != str(error):
                    row.status.fail(error)
                    self._errors[row.name] = error
                return
            row.show_value(watched.latest, at=watched.updated)
            if shown is not None:
                del self._errors[row.name]
                if row.status.error is shown:
                    row.status.clear()  # readable again; a failed Set of the user's stays

    def stop(self) -> int:
        """Close every watch (another server was selected, it is gone, or the explorer closes).

        Returns the new generation, for the :meth:`start` that follows.
        """
        with self.guard:
            self._generation += 1
            generation = self._generation
            closing, self.watches = list(self.watches.values()), {}
            self._errors = {}
        for watched in closing:  # outside the guard: a closing watch may wait for its observer
            watched.close()
        return generation
