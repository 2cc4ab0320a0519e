"""The rows of a server's panel in the explorer: a call form per method, a row per property.

Also the buttons of its object tree (:func:`object_tree`): its parent and its children.

Each row builds its widgets from one described member and hands its work to
its host (the :class:`~redisrpc.notebook.explorer.Explorer`), which runs it
in a worker thread, records it and shows its code line. Rows never squeeze
their buttons: buttons keep a fixed width and values wrap onto the next line
instead, at any width. A row of a server that is gone is disabled
(:meth:`set_enabled`), not merely shown as such.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

import ipywidgets as widgets

from . import rst
from .display import member_signature
from .forms import (
    Field,
    build_call,
    call_code,
    fields_for,
    member_code,
    parse_value,
    setprop_code,
    variable_name,
)
from .outcome import PRE, Outcome

__all__ = [
    "BUTTON",
    "NOT_READ",
    "CallForm",
    "Host",
    "PropertyRow",
    "child_of",
    "named_entries",
    "object_tree",
    "shown",
    "value_text",
]

_SHOWN = 4000  # characters of a result shown
_MAX_ITEMS = 32  # items of a channel list shown as buttons
_SMALL = "color: #555; font-size: 85%; line-height: 1.2;"
NOT_READ = '<i style="color: #999;">not read yet</i>'
"""What a property's value shows until it is first read."""

Done = Callable[[bool, Any, float], None]


def BUTTON(width: str = "4.5em") -> widgets.Layout:  # noqa: N802 - reads as a constant
    """The layout of a row's button: a fixed width that flex never shrinks."""
    return widgets.Layout(width=width, min_width=width, flex="0 0 auto")


class Host(Protocol):
    """What a row needs from the explorer."""

    def submit(self, service: str, code: str, action: Callable[[Any], Any], done: Done) -> Any:
        """Run ``action(proxy)`` in a worker; then ``done(ok, value_or_error, seconds)``."""

    def is_gone(self, service: str) -> bool:
        """Whether ``service`` has no live instance now."""


def child_of(proxy: Any, path: str) -> Any:
    """The child proxy at a dotted ``path`` below ``proxy`` (``proxy`` itself for "")."""
    for segment in path.split(".") if path else ():
        proxy = proxy._rpc_child(segment)
    return proxy


def named_entries(found: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The entries of ``found[key]`` that have a name; none when it is no list.

    A description comes from the network: a malformed one (``"methods": null``
    from another language or version) must show as empty, not break the panel.
    """
    entries = found.get(key)
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]


def object_tree(
    name: str, path: str, found: dict[str, Any], select: Callable[[str, str], Any]
) -> list[widgets.Widget]:
    """The object tree around ``path`` of server ``name``: buttons for its parent and children.

    ``found`` is the description at ``path``; a click calls ``select(name, path)``.
    """
    buttons: list[widgets.Widget] = []
    if path:
        parent = path.rpartition(".")[0]
        up = widgets.Button(description=f"↑ {parent or name}", layout={"width": "auto"})
        up.on_click(lambda _: select(name, parent))
        buttons.append(up)
    children = [
        (o["name"], str(o.get("class") or "object")) for o in named_entries(found, "objects")
    ]
    items = found.get("items")
    if isinstance(items, int) and not isinstance(items, bool):
        children += [(str(i), "item") for i in range(min(items, _MAX_ITEMS))]
    for child, kind in children:
        target = f"{path}.{child}" if path else child
        button = widgets.Button(description=f"{child} ▸", tooltip=kind, layout={"width": "auto"})
        button.on_click(lambda _, target=target: select(name, target))
        buttons.append(button)
    if not buttons:
        return []
    title = widgets.HTML("<b>Objects</b>" if children else "")
    return [title, widgets.HBox(buttons, layout={"flex_flow": "row wrap"})]


def shown(value: Any) -> str:
    """``repr(value)``, cut to a few thousand characters."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + f"… ({len(text)} characters)"


def value_text(value: Any) -> str:
    """A value as the JSON literal a person would type back (repr when not JSON)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


class CallForm:
    """The form for one method: a field per parameter, Call, and its outcome."""

    def __init__(self, host: Host, service: str, entry: dict[str, Any], path: str = "") -> None:
        self.host = host
        self.service = service
        self.path = path
        self.method = str(entry["name"])
        self.fields: list[Field] = fields_for(entry)
        self.title = f"{self.method}{member_signature(entry)}"
        self.doc = str(entry.get("doc") or "")
        self.inputs: dict[str, widgets.Text] = {
            f.name: widgets.Text(
                value=f.default_text,
                placeholder=f.hint,
                description=(
                    "*" if f.kind == "VAR_POSITIONAL" else "**" * (f.kind == "VAR_KEYWORD")
                )
                + f.name,
                style={"description_width": "initial"},
                layout=widgets.Layout(width="auto", max_width="40em", min_width="0"),
            )
            for f in self.fields
        }
        self.button = widgets.Button(
            description="Call", button_style="primary", icon="play", layout=BUTTON("8em")
        )
        self.result = Outcome()
        doc = widgets.HTML(f'<pre style="{PRE} color: #555;">{rst.to_html(self.doc)}</pre>')
        self.widget = widgets.VBox(
            [doc, *self.inputs.values(), self.button, self.result.widget],
            layout=widgets.Layout(width="auto", min_width="0"),
        )
        self.button.on_click(lambda _: self.submit())
        self._running = False
        self._enabled = True

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable the form (its server came back or is gone)."""
        self._enabled = enabled
        for field in self.inputs.values():
            field.disabled = not enabled
        self.button.disabled = self._running or not enabled

    def submit(self) -> Future[Any] | None:
        """Check the inputs and start the call in a worker thread (None if not started)."""
        if not self._enabled or self._running:
            return None
        texts = {name: w.value for name, w in self.inputs.items()}
        try:
            args, kwargs = build_call(self.fields, texts)
        except ValueError as exc:
            self.result.fail(exc)
            return None
        code = call_code(self.service, member_code(self.path, self.method), args, kwargs)
        self._running = True
        self.button.disabled = True
        self.button.description = "Running…"
        self.button.icon = "hourglass-half"
        self.result.show(f"<i>running {html.escape(code)} …</i>")

        def call(proxy: Any) -> Any:
            return getattr(child_of(proxy, self.path), self.method)(*args, **kwargs)

        future: Future[Any] = self.host.submit(self.service, code, call, self._done)
        return future

    def _done(self, ok: bool, value: Any, seconds: float) -> None:
        self._running = False
        self.button.description = "Call"
        self.button.icon = "play"
        self.set_enabled(self._enabled and not self.host.is_gone(self.service))
        took = f'<span style="color: #777;"> · took {seconds:.3g} s</span>'
        if ok:
            self.result.show(f'<pre style="{PRE}">{html.escape(shown(value))}</pre>{took}')
        else:
            self.result.fail(value, after=took)


class PropertyRow:
    """One property: its name, its value (read by Get or watched live), a new value, Get, Set.

    ``reading`` shows the value as last read ("not read yet" before); ``value``
    is where a new value is typed for Set (hidden for read-only properties), so
    a live update never overwrites what someone is typing.
    """

    def __init__(self, host: Host, service: str, entry: dict[str, Any], path: str = "") -> None:
        self.host = host
        self.service = service
        self.path = path
        self.name = str(entry["name"])
        self.readonly = bool(entry.get("readonly"))
        note = entry.get("annotation") if isinstance(entry.get("annotation"), str) else ""
        note = ", ".join(x for x in (note, "read-only" if self.readonly else "") if x)
        doc = rst.to_text(str(entry.get("doc") or "").strip().split("\n")[0])
        self.label = widgets.HTML(
            f'<b style="{PRE}">{html.escape(self.name)}</b>'
            + (f' <span style="color: #777;">({html.escape(note)})</span>' if note else "")
            + (f'<div style="{_SMALL}">{html.escape(doc)}</div>' if doc else ""),
            layout=widgets.Layout(flex="1 1 14em", min_width="8em", width="auto"),
        )
        self.reading = widgets.HTML(
            NOT_READ, layout=widgets.Layout(flex="1 1 8em", min_width="4em", width="auto")
        )
        self.value = widgets.Text(
            placeholder="new value",
            tooltip=doc or None,
            layout=widgets.Layout(
                flex="1 1 8em",
                min_width="5em",
                width="auto",
                display="none" if self.readonly else None,
            ),
        )
        self.get_button = widgets.Button(description="Get", layout=BUTTON())
        self.set_button = widgets.Button(description="Set", disabled=self.readonly, layout=BUTTON())
        if self.readonly:
            self.set_button.layout.display = "none"
        self.status = Outcome()
        self.status.widget.layout.flex = "1 1 100%"  # its own line below the row
        self.widget = widgets.HBox(
            [
                self.label,
                self.reading,
                self.value,
                self.get_button,
                self.set_button,
                self.status.widget,
            ],
            layout=widgets.Layout(
                flex_flow="row wrap", align_items="center", width="100%", min_width="0"
            ),
        )
        self.get_button.on_click(lambda _: self.get())
        self.set_button.on_click(lambda _: self.set())
        self._enabled = True

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable Get and Set (its server came back or is gone)."""
        self._enabled = enabled
        self.get_button.disabled = not enabled
        self.set_button.disabled = self.readonly or not enabled
        self.value.disabled = not enabled

    def get(self) -> Future[Any] | None:
        """Read the property in a worker thread and show its value (None if disabled)."""
        if not self._enabled:
            return None
        code = f"{variable_name(self.service)}.{member_code(self.path, self.name)}"
        self.status.show("<i>reading…</i>")
        future: Future[Any] = self.host.submit(
            self.service,
            code,
            lambda proxy: getattr(child_of(proxy, self.path), self.name),
            self._got,
        )
        return future

    def set(self) -> Future[Any] | None:
        """Write the typed value (a JSON literal) in a worker thread (None if not started)."""
        if not self._enabled or self.readonly:
            return None
        try:
            value = parse_value(self.value.value)
        except ValueError as exc:
            self.status.fail(exc)
            return None
        code = setprop_code(self.service, member_code(self.path, self.name), value)
        self.status.show("<i>writing…</i>")
        future: Future[Any] = self.host.submit(
            self.service,
            code,
            lambda proxy: setattr(child_of(proxy, self.path), self.name, value),
            self._wrote,
        )
        return future

    def show_value(self, value: Any, *, at: float | None = None) -> None:
        """Show a value read (by Get, or by a watch at time ``at``)."""
        when = time.strftime("%H:%M:%S", time.localtime(at)) if at else ""
        text = value_text(value) if _is_plain(value) else repr(value)
        if len(text) > _SHOWN:
            text = text[:_SHOWN] + f"… ({len(text)} characters)"
        self.reading.value = (
            f'<div style="{PRE}" title="{html.escape(f"read at {when}" if when else "")}">'
            f"{html.escape(text)}</div>"
        )

    def _got(self, ok: bool, value: Any, seconds: float) -> None:
        if ok:
            self.show_value(value, at=time.time())
            self.status.clear()
        else:
            self.status.fail(value)

    def _wrote(self, ok: bool, value: Any, seconds: float) -> None:
        if ok:
            self.status.show('<span style="color: #1b5e20;">set</span>')
        else:
            self.status.fail(value)


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, dict))
