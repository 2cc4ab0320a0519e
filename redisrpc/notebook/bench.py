"""What the selected server is doing now, in the explorer: its running calls and its lock.

* :class:`Bench`: both panels and the actions behind their buttons (Cancel
  through :func:`redisrpc.cancel`, Take and Release through :class:`redisrpc.Lock`);
* :class:`RunningPanel`: "Running now", each call with who made it, how long
  it has run, its progress, and a Cancel button;
* :class:`LockPanel`: who holds the service's advisory lock
  (:func:`redisrpc.lock`), with Take and Release buttons.

Both are refreshed by the explorer on its running-calls tick (every second)
and disabled while the server is gone. Each action runs through the explorer's
``submit``, so each click also gets its code line and history entry.
"""

from __future__ import annotations

import contextlib
import html
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

import ipywidgets as widgets

from ..client.lock import Lock, describe_holder, lock_info
from ..client.proxy import LockCell, state_of
from ..client.running import cancel, running
from ..client.sync import Client
from ..core.transport import Transport
from .forms import variable_name
from .outcome import Outcome
from .rows import BUTTON, Done

__all__ = ["LOCK_NOTE", "Bench", "LockPanel", "RunningPanel", "holder_text", "running_html"]

LOCK_NOTE = "taken in the explorer"
"""The note of a lock the explorer takes (others see it in LockedError and lock_info)."""


def running_html(call: dict[str, Any], now: float) -> str:
    """One running call: method, caller, elapsed time and progress."""
    since = call.get("since")
    elapsed = f"{max(0.0, now - since):.0f} s" if isinstance(since, (int, float)) else "?"
    text = f"<code>{html.escape(str(call.get('method', '?')))}()</code>"
    text += f" by {html.escape(str(call.get('caller') or 'someone'))} · {elapsed}"
    progress = call.get("progress")
    if isinstance(progress, dict):
        done, total = progress.get("done"), progress.get("total")
        if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
            text += f" · {100 * done / total:.0f}%"
        message = progress.get("message")
        if message:
            text += f" · {html.escape(str(message))}"
    return f'<span style="color: #333; overflow-wrap: break-word;">{text}</span>'


class RunningPanel:
    """Running now: a row per running call, each with a Cancel button.

    ``on_cancel(service, call_id)`` is called when a Cancel is clicked.
    ``rows`` maps call ids to their rows (an HBox: the text, then Cancel).
    """

    def __init__(self, on_cancel: Callable[[str, str], Any]) -> None:
        self.on_cancel = on_cancel
        self.widget = widgets.VBox([], layout=widgets.Layout(width="100%", min_width="0"))
        self.rows: dict[str, widgets.HBox] = {}
        self._enabled = True

    def update(self, service: str, calls: list[dict[str, Any]], now: float | None = None) -> None:
        """Show ``calls`` (as :func:`redisrpc.running` returns them) of ``service``.

        ``now`` is the Redis clock in epoch seconds, the clock of each call's ``since``.
        """
        now = time.time() if now is None else now
        rows: dict[str, widgets.HBox] = {}
        for call in calls:
            call_id = str(call.get("id"))
            row = self.rows.get(call_id) or self._row(service, call_id)
            row.children[0].value = running_html(call, now)
            rows[call_id] = row
        self.rows = rows
        title = [widgets.HTML("<b>Running now</b>")] if rows else []
        self.widget.children = [*title, *rows.values()]

    def _row(self, service: str, call_id: str) -> widgets.HBox:
        button = widgets.Button(
            description="Cancel",
            icon="stop",
            button_style="danger",
            disabled=not self._enabled,
            layout=BUTTON("7em"),
        )
        button.on_click(lambda _: self.on_cancel(service, call_id))
        text = widgets.HTML(layout=widgets.Layout(flex="1 1 16em", min_width="0"))
        return widgets.HBox(
            [text, button],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center", width="100%"),
        )

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable every Cancel button (the server came back or is gone)."""
        self._enabled = enabled
        for row in self.rows.values():
            row.children[1].disabled = not enabled

    def clear(self) -> None:
        """Show no calls (another server was selected)."""
        self.rows = {}
        self.widget.children = []


def holder_text(info: dict[str, Any] | None, *, mine: bool) -> str:
    """The lock line: free, held by this explorer, or by whom, since when, why, for how long."""
    if info is None:
        return '<span style="color: #555;">Lock: free</span>'
    who = describe_holder(info)
    if mine:
        who = f"this explorer: {who}"
    expires = info.get("expires_in")
    if isinstance(expires, (int, float)):
        who += f" · expires in {expires:.0f} s unless renewed"
    return (
        '<span style="color: #8a4b00; overflow-wrap: break-word;">'
        f"Lock held by {html.escape(who)}</span>"
    )


class LockPanel:
    """Who holds the selected service's lock, with Take and Release.

    ``on_take()`` and ``on_release()`` are called on clicks; ``outcome``
    shows a failed take (``LockedError``: someone else was faster) in one line.
    """

    def __init__(self, on_take: Callable[[], Any], on_release: Callable[[], Any]) -> None:
        self.holder = widgets.HTML(layout=widgets.Layout(flex="1 1 16em", min_width="0"))
        self.take_button = widgets.Button(
            description="Take lock", icon="lock", layout=BUTTON("8em"), disabled=True
        )
        self.release_button = widgets.Button(
            description="Release", icon="unlock", layout=BUTTON("8em"), disabled=True
        )
        self.outcome = Outcome()
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [self.holder, self.take_button, self.release_button],
                    layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
                ),
                self.outcome.widget,
            ],
            layout=widgets.Layout(width="100%", min_width="0"),
        )
        self.take_button.on_click(lambda _: on_take())
        self.release_button.on_click(lambda _: on_release())
        self.info: dict[str, Any] | None = None

    def update(self, info: dict[str, Any] | None, *, mine: bool, enabled: bool) -> None:
        """Show the holder (:func:`redisrpc.lock_info`); Take when free, Release when ours."""
        self.info = info
        self.holder.value = holder_text(info, mine=mine)
        self.take_button.disabled = not enabled or info is not None
        self.release_button.disabled = not mine


class BenchHost(Protocol):
    """What :class:`Bench` needs from the explorer."""

    selected: str | None

    def is_gone(self, service: str) -> bool:
        """Whether ``service`` has no live instance now."""

    def submit(
        self, service: str, code: str, action: Callable[[Any], Any], done: Done
    ) -> Future[Any]:
        """Run ``action(proxy)`` in a worker, with ``code`` as its code line."""


class Bench:
    """The running calls and the lock of the selected server: the panels and their actions.

    ``guard`` is the explorer's lock, held while widgets change.
    ``locks`` maps each service whose lock this explorer holds to the
    :class:`~redisrpc.Lock` and the token cell its calls carry.
    """

    def __init__(self, host: BenchHost, transport: Transport, guard: threading.RLock) -> None:
        self.host = host
        self.transport = transport
        self.guard = guard
        self.running = RunningPanel(self._cancel_clicked)
        self.lock_panel = LockPanel(self._take_clicked, self._release_clicked)
        self.locks: dict[str, tuple[Lock, LockCell]] = {}
        self._plain: dict[str, Client] = {}
        self.closing = False

    def plain_client(self, name: str) -> Client:
        """An undescribed proxy of ``name`` (nothing sent to make it): running calls, locks."""
        with self.guard:
            client = self._plain.get(name)
            if client is None:
                client = self._plain[name] = Client(self.transport, name, describe=False)
            return client

    def select(self, name: str) -> None:
        """Another server was selected: show nothing of the last one."""
        self.running.clear()
        self.lock_panel.update(None, mine=name in self.locks, enabled=False)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable Cancel and Take (the server came back or is gone)."""
        self.running.set_enabled(enabled)
        info = self.lock_panel.info
        self.lock_panel.update(info, mine=name in self.locks, enabled=enabled)

    def update_running(self) -> list[dict[str, Any]]:
        """Show what the selected server runs now (calls that ran 0.2 s); returns the calls."""
        name = self.host.selected
        if name is None:
            return []
        try:
            calls = running(self.plain_client(name))
            # Elapsed times on the Redis clock, as servers publish them: not this host's clock.
            now = self.transport.now_ms() / 1000.0
        except Exception:  # a refresh thread must not die; the status line shows Redis errors
            return []
        with self.guard:
            if self.host.selected == name:
                self.running.update(name, calls, now)
                self.running.set_enabled(not self.host.is_gone(name))
        return calls

    def update_lock(self) -> dict[str, Any] | None:
        """Show who holds the selected server's lock; returns :func:`redisrpc.lock_info`."""
        name = self.host.selected
        if name is None:
            return None
        try:
            info = lock_info(self.plain_client(name))
        except Exception:  # a refresh thread must not die
            return self.lock_panel.info
        with self.guard:
            if self.host.selected == name:
                enabled = not self.host.is_gone(name)
                self.lock_panel.update(info, mine=name in self.locks, enabled=enabled)
        return info

    def cancel(self, service: str, call_id: str) -> Future[Any]:
        """Cancel a running call of ``service`` (its caller is told who cancelled it)."""
        return self.host.submit(
            service,
            f"redisrpc.cancel({variable_name(service)}, {call_id!r})",
            lambda proxy: cancel(proxy, call_id),
            self._cancelled,
        )

    def _cancelled(self, ok: bool, value: Any, seconds: float) -> None:
        self.update_running()

    def take_lock(self) -> Future[Any] | None:
        """Take the selected server's advisory lock; the explorer's calls then run under it."""
        name = self.host.selected
        if name is None or self.host.is_gone(name) or name in self.locks:
            return None
        var = variable_name(name)

        def take(proxy: Client) -> None:
            held = Lock(proxy, note=LOCK_NOTE).acquire()
            with self.guard:
                self.locks[name] = (held, state_of(proxy).lock)

        code = f"{var}_lock = redisrpc.lock({var}, note={LOCK_NOTE!r}).acquire()"
        return self.host.submit(name, code, take, self._locked)

    def release_lock(self) -> Future[Any] | None:
        """Release the lock this explorer holds on the selected server."""
        name = self.host.selected
        with self.guard:
            held = self.locks.pop(name, None) if name is not None else None
        if name is None or held is None:
            return None
        code = f"{variable_name(name)}_lock.release()"
        return self.host.submit(name, code, lambda proxy: held[0].release(), self._locked)

    def _locked(self, ok: bool, value: Any, seconds: float) -> None:
        if ok:
            self.lock_panel.outcome.clear()
        else:
            self.lock_panel.outcome.fail(value)
        self.update_lock()

    def _cancel_clicked(self, service: str, call_id: str) -> None:
        if not self.closing:
            self.cancel(service, call_id)

    def _take_clicked(self) -> None:
        if not self.closing:
            self.take_lock()

    def _release_clicked(self) -> None:
        if not self.closing:
            self.release_lock()

    def release_all(self) -> None:
        """Release every lock this explorer holds (it is closing)."""
        with self.guard:
            held, self.locks = list(self.locks.values()), {}
        for taken, _ in held:
            with contextlib.suppress(Exception):  # closing must finish; the ttl frees it anyway
                taken.release()
