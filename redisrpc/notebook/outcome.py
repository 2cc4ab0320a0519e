"""What an action in the explorer gave: a value, a note, or an error in one line; the history.

An error shows as one line, ``RemoteZeroDivisionError: float division by
zero``, with the remote traceback behind a "traceback" toggle, so a failed
property Set never pushes a page of text into its row. Everything shown is
HTML-escaped: messages and tracebacks come from the network. The history
(:class:`CallRecord`, :func:`history_html`) lists the last actions and what they gave.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from ..errors import RemoteException

__all__ = ["PRE", "CallRecord", "Outcome", "error_details", "error_line", "history_html"]

PRE = (
    "font-family: var(--jp-code-font-family, monospace); white-space: pre-wrap;"
    " overflow-wrap: break-word; margin: 2px 0; line-height: 1.35;"
)
"""The style of code and values: wrapped, never widening the row."""

_LINE = 160  # characters of a message shown on the error's line
_SHOWN = 4000  # characters of a traceback shown behind the toggle


def error_line(exc: BaseException) -> str:
    """The error's one line: its type and the first line of its message, cut to fit."""
    message = str(exc).strip().split("\n")[0]
    if len(message) > _LINE:
        message = message[: _LINE - 1] + "…"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def error_details(exc: BaseException) -> str:
    """The full message and, for a remote error, where it ran and its traceback."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RemoteException):
        if exc.remote_type:
            text += f"\n(remote type {exc.remote_type})"
        if exc.remote_traceback:
            where = f" from {exc.server}" if exc.server else ""
            text += f"\n\n── remote traceback{where} ──\n{exc.remote_traceback[-_SHOWN:]}"
    return text


class Outcome:
    """A line under a row for its last outcome; an error's details behind a toggle.

    ``line`` is the HTML of the one line, ``toggle`` the ToggleButton that
    shows ``details`` (hidden until pressed, and for outcomes with nothing
    more to say).
    """

    def __init__(self) -> None:
        self.line = widgets.HTML(layout=widgets.Layout(width="auto", min_width="0"))
        self.toggle = widgets.ToggleButton(
            description="traceback",
            icon="chevron-down",
            tooltip="show the whole error",
            layout=widgets.Layout(width="auto", flex="0 0 auto", display="none"),
        )
        self.details = widgets.HTML(layout=widgets.Layout(display="none", width="auto"))
        self.toggle.observe(self._flip, names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [self.line, self.toggle],
                    layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
                ),
                self.details,
            ],
            layout=widgets.Layout(width="100%", min_width="0"),
        )
        self.error: BaseException | None = None

    def _flip(self, change: dict[str, Any]) -> None:
        self.details.layout.display = None if change["new"] else "none"
        self.toggle.icon = "chevron-up" if change["new"] else "chevron-down"

    def _fold(self, details: str) -> None:
        self.toggle.value = False
        self.details.value = details
        self.details.layout.display = "none"
        self.toggle.layout.display = None if details else "none"

    def show(self, html_text: str) -> None:
        """Show a value or a note (HTML the caller escaped); no details."""
        self.error = None
        self.line.value = html_text
        self._fold("")

    def clear(self) -> None:
        """Show nothing."""
        self.show("")

    def fail(self, exc: BaseException, *, after: str = "") -> None:
        """Show ``exc`` in one red line (then ``after``, HTML); its details behind the toggle."""
        self.error = exc
        self.line.value = (
            f'<div style="color: #b00020; {PRE}">{html.escape(error_line(exc))}{after}</div>'
        )
        details = error_details(exc)
        more = details != f"{type(exc).__name__}: {exc}" or "\n" in str(exc).strip()
        self._fold(
            f'<pre style="{PRE} color: #b00020; max-height: 24em; overflow: auto;">'
            f"{html.escape(details)}</pre>"
            if more
            else ""
        )

    @property
    def text(self) -> str:
        """Everything shown or foldable, as HTML (for tests and logs)."""
        return str(self.line.value) + str(self.details.value)


@dataclass(frozen=True)
class CallRecord:
    """One action from the explorer: its code line, outcome and duration."""

    code: str
    ok: bool
    summary: str
    seconds: float
    at: float


def history_html(records: list[CallRecord], *, shown: int = 15) -> str:
    """The history: time, code line, result or error, duration (newest first), wrapping."""
    rows = "".join(
        '<div style="display: flex; flex-wrap: wrap; gap: 0 1em; line-height: 1.35;'
        ' margin: 2px 0;">'
        f'<span style="color: #777;">{time.strftime("%H:%M:%S", time.localtime(r.at))}</span>'
        f'<code style="{PRE}">{html.escape(r.code)}</code>'
        f'<span style="color: {"#1b5e20" if r.ok else "#b00020"}; overflow-wrap: break-word;'
        f' min-width: 0;">{"→" if r.ok else "✗"} {html.escape(r.summary[:120])}</span>'
        f'<span style="color: #777;">{r.seconds:.3g} s</span></div>'
        for r in records[:shown]
    )
    return f"<b>History</b>{rows}" if rows else ""
