"""A Jupyter widget to explore and call the live servers of a Redis: ``redisrpc.explore()``.

::

    import redisrpc
    redisrpc.explore()                      # REDIS_URL, or redisrpc.Explorer(redis.Redis(...))

The left pane lists the live servers from the registry (refreshed every few
seconds and on demand; dead servers drop out). Selecting one shows its
docstring, a call form for each method (one JSON-literal field per parameter,
defaults filled in), its properties (read and set), and "copy as code" lines
with the equivalent Python. Calls run in worker threads, so the kernel stays
responsive during a long call. Pure Python on ipywidgets: no front-end build,
so it works in JupyterLab, Notebook 7 and VS Code.

Everything shown about a server comes from its cached description, fetched
once when it is first selected (and again after it restarts); calls go
through :class:`redisrpc.Client`.
"""

from __future__ import annotations

import html
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import redis

from ..client.discovery import ServiceInfo, discover
from ..client.proxy import CALLER
from ..client.sync import Client, description
from ..core.cancel import cancelling_running, running_calls
from ..core.keys import queue_name
from ..core.registry import DEFAULT_PREFIX
from ..core.transport import Transport
from ..errors import RemoteException
from ..notebook import rst
from ..notebook.display import member_signature
from ..notebook.forms import (
    Field,
    build_call,
    call_code,
    fields_for,
    parse_value,
    setprop_code,
    variable_name,
)

__all__ = ["CallForm", "CallRecord", "Explorer", "PropertyRow", "explore"]

LIVE_WITHIN = 3.0
"""A server whose last heartbeat is older than this many seconds shows as "last seen N s ago"."""
_HISTORY = 50  # calls kept in the history
_RUNNING_EVERY = 1.0  # seconds between looks at what the selected server runs
_MAX_ITEMS = 32  # items of a channel list shown as buttons
_SHOWN = 4000  # characters of a result or traceback shown
_SMALL = "color: #555; font-size: 85%; line-height: 1.2;"
_PRE = "font-family: var(--jp-code-font-family, monospace); white-space: pre-wrap; margin: 2px 0;"


@dataclass(frozen=True)
class CallRecord:
    """One call made from the explorer: its code line, outcome and duration."""

    code: str
    ok: bool
    summary: str
    seconds: float
    at: float


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + f"… ({len(text)} characters)"


def _error_html(exc: BaseException) -> str:
    kind = type(exc).__name__
    if isinstance(exc, RemoteException) and exc.remote_type:
        kind = f"{kind} (remote {exc.remote_type})"
    text = f"{kind}: {exc}"
    if isinstance(exc, RemoteException) and exc.remote_traceback:
        where = f" from {exc.server}" if exc.server else ""
        tb = exc.remote_traceback[-_SHOWN:]
        text += f"\n\n── remote traceback{where} ──\n{tb}"
    return f'<pre style="{_PRE} color: #b00020;">{html.escape(text)}</pre>'


def _value_text(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


class CallForm:
    """The form for one method: a field per parameter, Call, result, and the code line."""

    def __init__(
        self, explorer: Explorer, service: str, entry: dict[str, Any], path: str = ""
    ) -> None:
        self.explorer = explorer
        self.service = service
        self.path = path
        self.method = str(entry["name"])
        self.fields: list[Field] = fields_for(entry)
        self.title = f"{self.method}{member_signature(entry)}"
        self.doc = str(entry.get("doc") or "")
        style = {"description_width": "initial"}
        self.inputs: dict[str, widgets.Text] = {
            f.name: widgets.Text(
                value=f.default_text,
                placeholder=f.hint,
                description=(
                    "*" if f.kind == "VAR_POSITIONAL" else "**" * (f.kind == "VAR_KEYWORD")
                )
                + f.name,
                style=style,
            )
            for f in self.fields
        }
        self.button = widgets.Button(description="Call", button_style="primary", icon="play")
        self.result = widgets.HTML()
        self.code = widgets.Text(description="code", style=style, layout={"width": "95%"})
        doc = widgets.HTML(f'<pre style="{_PRE} color: #555;">{rst.to_html(self.doc)}</pre>')
        self.widget = widgets.VBox(
            [doc, *self.inputs.values(), self.button, self.result, self.code]
        )
        self.button.on_click(lambda _: self.submit())

    def submit(self) -> Future[Any] | None:
        """Check the inputs and start the call in a worker thread (None if inputs are bad)."""
        texts = {name: w.value for name, w in self.inputs.items()}
        try:
            args, kwargs = build_call(self.fields, texts)
        except ValueError as exc:
            self.result.value = _error_html(exc)
            return None
        code = call_code(self.service, member_code(self.path, self.method), args, kwargs)
        self.code.value = code
        self.button.disabled = True
        self.button.description = "Running…"
        self.button.icon = "hourglass-half"
        self.result.value = f"<i>running {html.escape(code)} …</i>"

        def call(proxy: Client) -> Any:
            return getattr(child_of(proxy, self.path), self.method)(*args, **kwargs)

        return self.explorer._submit(self.service, code, call, self._done)

    def _done(self, ok: bool, value: Any, seconds: float) -> None:
        self.button.disabled = False
        self.button.description = "Call"
        self.button.icon = "play"
        took = f'<div style="color: #777;">took {seconds:.3g} s</div>'
        if ok:
            self.result.value = f'<pre style="{_PRE}">{html.escape(_shown(value))}</pre>{took}'
        else:
            self.result.value = _error_html(value) + took


class PropertyRow:
    """One property: its value field, Get and Set buttons."""

    def __init__(
        self, explorer: Explorer, service: str, entry: dict[str, Any], path: str = ""
    ) -> None:
        self.explorer = explorer
        self.service = service
        self.path = path
        self.name = str(entry["name"])
        self.readonly = bool(entry.get("readonly"))
        note = entry.get("annotation") if isinstance(entry.get("annotation"), str) else ""
        note = ", ".join(x for x in (note, "read-only" if self.readonly else "") if x)
        doc = rst.to_text(str(entry.get("doc") or "").strip().split("\n")[0])
        self.label = widgets.HTML(
            f'<b style="{_PRE}">{html.escape(self.name)}</b>'
            + (f' <span style="color: #777;">({html.escape(note)})</span>' if note else "")
            + (f'<div style="{_SMALL}">{html.escape(doc)}</div>' if doc else ""),
            layout={"width": "24em"},
        )
        self.value = widgets.Text(placeholder="not read yet", tooltip=doc or None)
        self.value.layout.width = "14em"
        self.get_button = widgets.Button(description="Get", layout={"width": "4.5em"})
        self.set_button = widgets.Button(
            description="Set", disabled=self.readonly, layout={"width": "4.5em"}
        )
        self.status = widgets.HTML()
        self.widget = widgets.HBox(
            [self.label, self.value, self.get_button, self.set_button, self.status],
            layout={"align_items": "center"},
        )
        self.get_button.on_click(lambda _: self.get())
        self.set_button.on_click(lambda _: self.set())

    def get(self) -> Future[Any]:
        """Read the property in a worker thread and show its value."""
        code = f"{variable_name(self.service)}.{member_code(self.path, self.name)}"
        self.status.value = "<i>reading…</i>"
        return self.explorer._submit(
            self.service,
            code,
            lambda proxy: getattr(child_of(proxy, self.path), self.name),
            self._got,
        )

    def set(self) -> Future[Any] | None:
        """Write the typed value (a JSON literal) in a worker thread."""
        try:
            value = parse_value(self.value.value)
        except ValueError as exc:
            self.status.value = _error_html(exc)
            return None
        code = setprop_code(self.service, member_code(self.path, self.name), value)
        self.explorer.code.value = code
        self.status.value = "<i>writing…</i>"
        return self.explorer._submit(
            self.service,
            code,
            lambda proxy: setattr(child_of(proxy, self.path), self.name, value),
            self._wrote,
        )

    def _got(self, ok: bool, value: Any, seconds: float) -> None:
        if ok:
            self.value.value = _value_text(value)
            self.status.value = ""
        else:
            self.status.value = _error_html(value)

    def _wrote(self, ok: bool, value: Any, seconds: float) -> None:
        self.status.value = '<span style="color: #1b5e20;">set</span>' if ok else _error_html(value)


class Explorer:
    """A widget listing the live servers of a Redis, with call forms for their methods.

    Args:
        redis: a redis-py client, a URL, or None for ``REDIS_URL``.
        prefix: the registry's key prefix.
        refresh_interval: seconds between automatic refreshes of the server
            list; 0 refreshes only on demand (the Refresh button, :meth:`refresh`).
        timeout: seconds each call from the widget waits for its reply.
    """

    def __init__(
        self,
        redis: redis.Redis | str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        refresh_interval: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        self.transport = Transport.of(redis)
        self.prefix = prefix
        self.refresh_interval = refresh_interval
        self.timeout = timeout
        self.services: dict[str, ServiceInfo] = {}
        self.history: list[CallRecord] = []
        self.forms: dict[str, CallForm] = {}
        self.properties: dict[str, PropertyRow] = {}
        self.selected: str | None = None
        self.path = ""
        """The child object of the selected server being shown (``"ch1"``); "" for its root."""
        self._clients: dict[str, tuple[frozenset[str], Client]] = {}
        self._describing: dict[str, Future[Any]] = {}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="redisrpc-explorer")
        self._pending: set[Future[Any]] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ages: dict[str, float] = {}
        self._running_rows: dict[str, widgets.HBox] = {}
        self._quiet = False  # set while the list is changed by code, not by a click
        self._build()
        self.refresh()
        self._ticker: threading.Thread | None = None
        if refresh_interval > 0:
            self._ticker = threading.Thread(
                target=self._tick, name="redisrpc-explorer-refresh", daemon=True
            )
            self._ticker.start()
        self._running_ticker = threading.Thread(
            target=self._tick_running, name="redisrpc-explorer-running", daemon=True
        )
        self._running_ticker.start()

    # -- layout ---------------------------------------------------------------

    def _build(self) -> None:
        self.search = widgets.Text(
            placeholder="filter servers and methods", layout={"width": "18em"}
        )
        self.refresh_button = widgets.Button(
            description="Refresh", icon="refresh", layout={"width": "8em"}
        )
        self.status = widgets.HTML()
        self.server_list = widgets.Select(options=[], rows=12, layout={"width": "20em"})
        self.header = widgets.HTML("<i>Select a server.</i>")
        self.running_box = widgets.VBox([])
        self.objects_box = widgets.VBox([])
        self.methods = widgets.Accordion(children=[])
        self.props_box = widgets.VBox([])
        self.read_all = widgets.Button(description="Read all", icon="download")
        self.code = widgets.Text(description="code", layout={"width": "95%"})
        self.history_html = widgets.HTML()
        self.detail = widgets.VBox(
            [
                self.header,
                self.running_box,
                self.objects_box,
                self.methods,
                self.props_box,
                self.history_html,
            ],
            layout={"flex": "1 1 auto", "padding": "0 0 0 1em"},
        )
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.search, self.refresh_button, self.status]),
                widgets.HBox([self.server_list, self.detail]),
            ]
        )
        self.widget.add_class("redisrpc-explorer")
        self.refresh_button.on_click(
            lambda _: self._stop.is_set() or self._pool.submit(self.refresh)
        )
        self.server_list.observe(self._on_select, names="value")
        self.search.observe(lambda _: self._apply_filter(), names="value")
        self.read_all.on_click(lambda _: [row.get() for row in self.properties.values()])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = repr(self)  # what a text-only front end shows
        return bundle

    def __repr__(self) -> str:
        return f"<redisrpc.Explorer on {self.transport.location}: {len(self.services)} servers>"

    # -- the server list ------------------------------------------------------

    def refresh(self) -> list[ServiceInfo]:
        """Read the registry now and update the server list; returns the live services."""
        try:
            found = discover(self.transport, prefix=self.prefix)
            now = self.transport.now_ms() / 1000.0
        except Exception as exc:  # shown in the widget: a refresh thread must not die
            with self._lock:
                self.status.value = (
                    f'<span style="color: #b00020;">{html.escape(type(exc).__name__)}:'
                    f" {html.escape(str(exc))}</span>"
                )
            return list(self.services.values())
        with self._lock:
            self.services = {s.name: s for s in found}
            self._ages = {s.name: max(0.0, now - s.last_seen) for s in found}
            for name, (ids, _) in list(self._clients.items()):
                current = self.services.get(name)
                if current is None or ids != {i.id for i in current.instances}:
                    del self._clients[name]  # gone or restarted: describe it again
            if self.selected in self.services and self.selected not in self._clients:
                self._start_describe(self.selected)
            count = len(found)
            self.status.value = (
                f'<span style="color: #555;">{count} live server{"s" * (count != 1)}'
                f" on {html.escape(self.transport.location)} · {time.strftime('%H:%M:%S')}</span>"
            )
            self._apply_filter()
        return found

    def _label(self, service: ServiceInfo) -> str:
        age = self._ages.get(service.name, 0.0)
        parts = [service.name, "live" if age < LIVE_WITHIN else f"last seen {age:.0f} s ago"]
        if len(service.instances) > 1:
            parts.append(f"{len(service.instances)} instances")
        if service.queue_depth:
            parts.append(f"{service.queue_depth} queued")
        return " · ".join(parts)

    def _matches(self, service: ServiceInfo, query: str) -> bool:
        if not query:
            return True
        text = f"{service.name} {service.class_name} {service.summary}".lower()
        if query in text:
            return True
        cached = self._clients.get(service.name)
        found = description(cached[1]) if cached else None
        return found is not None and any(
            query in str(m.get("name", "")).lower()
            for m in found.get("methods", [])
            if isinstance(m, dict)
        )

    def _apply_filter(self) -> None:
        with self._lock:
            query = self.search.value.strip().lower()
            shown = [s for s in self.services.values() if self._matches(s, query)]
            options = [(self._label(s), s.name) for s in shown]
            if options != list(self.server_list.options):
                keep = self.selected if any(n == self.selected for _, n in options) else None
                self._quiet = True
                try:
                    self.server_list.options = options
                    self.server_list.value = keep
                finally:
                    self._quiet = False
            if self.selected is not None and self.selected not in self.services:
                self.header.value = (
                    f"<b>{html.escape(self.selected)}</b> <i>is gone (no live instance).</i>"
                )
            for form in self.forms.values():
                visible = not query or query in form.method.lower() or self._matches_server(query)
                form.widget.layout.display = None if visible else "none"
            self.methods.children = [
                f.widget for f in self.forms.values() if f.widget.layout.display != "none"
            ]
            self.methods.titles = tuple(
                f.title for f in self.forms.values() if f.widget.layout.display != "none"
            )

    def _matches_server(self, query: str) -> bool:
        service = self.services.get(self.selected or "")
        return service is not None and query in f"{service.name} {service.class_name}".lower()

    @property
    def server_names(self) -> list[str]:
        """The names of the servers in the list, as filtered by the search box."""
        return [name for _, name in self.server_list.options]

    def _tick(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            self.refresh()

    # -- one server -------------------------------------------------------------

    def _on_select(self, change: dict[str, Any]) -> None:
        if self._quiet or change["new"] is None:
            return
        self.select(change["new"])

    def select(self, name: str, path: str = "") -> Future[Any]:
        """Show server ``name`` (or its child object at ``path``, e.g. ``"ch1"``).

        The server, and each child, is described once, in a worker thread;
        then its forms are built.
        """
        with self._lock:
            self.selected = name
            self.path = path
            if self.server_list.value != name and name in self.server_names:
                self._quiet = True
                try:
                    self.server_list.value = name
                finally:
                    self._quiet = False
            self.header.value = f"<b>{html.escape(name)}</b> <i>describing…</i>"
            if path:
                return self._track(self._pool.submit(self._describe, name))
            return self._start_describe(name)

    def _start_describe(self, name: str) -> Future[Any]:
        with self._lock:
            running = self._describing.get(name)
            if running is not None and not running.done():
                return running
            future = self._track(self._pool.submit(self._describe, name))
            self._describing[name] = future
            return future

    def _client(self, name: str) -> Client:
        with self._lock:
            cached = self._clients.get(name)
            if cached is not None:
                return cached[1]
            service = self.services.get(name)
            ids = frozenset(i.id for i in service.instances) if service else frozenset()
        # Client takes a transport as it is (Transport.of): the explorer's one pool.
        client = Client(self.transport, name, timeout=self.timeout)
        with self._lock:
            self._clients[name] = (ids, client)
        return client

    def _describe(self, name: str) -> None:
        path = self.path
        try:
            client = child_of(self._client(name), path)
        except Exception as exc:
            with self._lock:
                if self.selected == name:
                    self.header.value = f"<b>{html.escape(name)}</b>" + _error_html(exc)
            return
        with self._lock:
            if self.selected == name and self.path == path:
                self._show(name, client)

    def _show(self, name: str, client: Client) -> None:
        found = description(client) or {}
        service = self.services.get(name)
        path = self.path
        shown = f"{name}.{path}" if path else name
        lines = [
            f'<div style="font-size: 120%;"><b>{html.escape(shown)}</b>:'
            f" {html.escape(str(found.get('class') or '?'))}</div>"
        ]
        if service is not None:
            hosts = ", ".join(f"{i.host} pid {i.pid}" for i in service.instances)
            lines.append(f'<div style="color: #777;">{html.escape(hosts)}</div>')
        doc = str(found.get("doc") or "")
        if doc:
            lines.append(f'<pre style="{_PRE}">{rst.to_html(doc)}</pre>')
        connect = f'{variable_name(name)} = redisrpc.Client(redis, "{name}")'
        lines.append(
            f'<div style="color: #555;">In Python: <code>{html.escape(connect)}</code></div>'
        )
        self.header.value = "".join(lines)
        self.objects_box.children = self._objects(name, path, found)
        self.forms = {
            str(m["name"]): CallForm(self, name, m, path)
            for m in found.get("methods", [])
            if isinstance(m, dict) and isinstance(m.get("name"), str)
        }
        self.properties = {
            str(p["name"]): PropertyRow(self, name, p, path)
            for p in found.get("properties", [])
            if isinstance(p, dict) and isinstance(p.get("name"), str)
        }
        self.methods.selected_index = None
        props: list[widgets.Widget] = []
        if self.properties:
            props = [
                widgets.HTML("<b>Properties</b>"),
                self.read_all,
                *(row.widget for row in self.properties.values()),
                self.code,
            ]
        self.props_box.children = props
        self._apply_filter()

    def _objects(self, name: str, path: str, found: dict[str, Any]) -> list[widgets.Widget]:
        """The object tree around ``path``: its parent, its children and its items."""
        buttons: list[widgets.Widget] = []
        if path:
            parent = path.rpartition(".")[0]
            up = widgets.Button(description=f"↑ {parent or name}", layout={"width": "auto"})
            up.on_click(lambda _: self.select(name, parent))
            buttons.append(up)
        children = [
            (str(o["name"]), str(o.get("class") or "object"))
            for o in found.get("objects", [])
            if isinstance(o, dict) and isinstance(o.get("name"), str)
        ]
        items = found.get("items")
        if isinstance(items, int) and not isinstance(items, bool):
            children += [(str(i), "item") for i in range(min(items, _MAX_ITEMS))]
        for child, kind in children:
            target = f"{path}.{child}" if path else child
            button = widgets.Button(
                description=f"{child} ▸", tooltip=kind, layout={"width": "auto"}
            )
            button.on_click(lambda _, target=target: self.select(name, target))
            buttons.append(button)
        if not buttons:
            return []
        title = widgets.HTML("<b>Objects</b>" if children else "")
        return [title, widgets.HBox(buttons, layout={"flex_flow": "row wrap"})]

    # -- what runs now -----------------------------------------------------------

    def update_running(self) -> list[dict[str, Any]]:
        """Show what the selected server runs now, each call with a Cancel button.

        Calls show once they have run 0.2 s (servers publish them then), with
        who made them, for how long, and their progress. Returns the calls.
        """
        name = self.selected
        if name is None:
            return []
        try:
            calls = self.transport.run(
                running_calls(queue_name(name, cluster=self.transport.cluster))
            )
        except Exception:  # a refresh thread must not die; the status line shows Redis errors
            return []
        now = time.time()
        with self._lock:
            if self.selected != name:
                return calls
            rows: dict[str, widgets.HBox] = {}
            for call in calls:
                call_id = str(call.get("id"))
                row = self._running_rows.get(call_id) or self._running_row(name, call_id)
                row.children[0].value = _running_html(call, now)
                rows[call_id] = row
            self._running_rows = rows
            title = [widgets.HTML("<b>Running now</b>")] if rows else []
            self.running_box.children = [*title, *rows.values()]
        return calls

    def _running_row(self, service: str, call_id: str) -> widgets.HBox:
        button = widgets.Button(
            description="Cancel", icon="stop", button_style="danger", layout={"width": "7em"}
        )
        button.on_click(lambda _: self._pool.submit(self.cancel, service, call_id))
        return widgets.HBox([widgets.HTML(), button])

    def cancel(self, service: str, call_id: str) -> None:
        """Cancel a running call of ``service`` (its caller is told who cancelled it)."""
        queue = queue_name(service, cluster=self.transport.cluster)
        self.transport.run(cancelling_running(queue, call_id, by=CALLER))
        self.update_running()

    def _tick_running(self) -> None:
        while not self._stop.wait(_RUNNING_EVERY):
            if self.selected is not None:
                self.update_running()

    # -- calls ------------------------------------------------------------------

    def _submit(self, service: str, code: str, action: Any, done: Any) -> Future[Any]:
        """Run ``action(proxy)`` in a worker; then ``done(ok, value_or_error, seconds)``."""

        def run() -> Any:
            started = time.monotonic()
            try:
                value = action(self._client(service))
                ok = True
            except Exception as exc:
                value, ok = exc, False
            seconds = time.monotonic() - started
            summary = _shown(value) if ok else f"{type(value).__name__}: {value}"
            with self._lock:
                self.history.insert(0, CallRecord(code, ok, summary[:200], seconds, time.time()))
                del self.history[_HISTORY:]
                self._show_history()
                done(ok, value, seconds)
            return value

        return self._track(self._pool.submit(run))

    def _track(self, future: Future[Any]) -> Future[Any]:
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._untrack)
        return future

    def _untrack(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _show_history(self) -> None:
        rows = "".join(
            f'<tr><td style="color: #777;">{time.strftime("%H:%M:%S", time.localtime(r.at))}</td>'
            f"<td><code>{html.escape(r.code)}</code></td>"
            f'<td style="color: {"#1b5e20" if r.ok else "#b00020"};">'
            f"{'→' if r.ok else '✗'} {html.escape(r.summary[:120])}</td>"
            f'<td style="color: #777;">{r.seconds:.3g} s</td></tr>'
            for r in self.history[:15]
        )
        self.history_html.value = f"<b>History</b><table>{rows}</table>" if rows else ""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every call and description in flight is done; True if none is left."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = set(self._pending)
            if not pending:
                return True
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            wait_futures(pending, timeout=left)

    def close(self) -> None:
        """Stop refreshing, let calls in flight finish, and close the widgets."""
        self._stop.set()
        for ticker in (self._ticker, self._running_ticker):
            if ticker is not None and ticker is not threading.current_thread():
                ticker.join()
        self._pool.shutdown(wait=True)
        with self._lock:
            _close_tree(self.widget)


def child_of(proxy: Any, path: str) -> Any:
    """The child proxy at a dotted ``path`` below ``proxy`` (``proxy`` itself for "")."""
    for segment in path.split(".") if path else ():
        proxy = proxy._rpc_child(segment)
    return proxy


def member_code(path: str, member: str) -> str:
    """How Python names ``member`` of the child at ``path``: ``ch1.measure``, ``channels[0].v``."""
    parts = [f"[{s}]" if s.isdigit() else f".{s}" for s in path.split(".")] if path else []
    return ("".join(parts) + "." + member).lstrip(".")


def _running_html(call: dict[str, Any], now: float) -> str:
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
    return f'<span style="color: #333;">{text}</span>'


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def explore(redis: redis.Redis | str | None = None, **options: Any) -> Explorer:
    """Return an :class:`Explorer` on ``redis`` (None: ``REDIS_URL``); a notebook shows it."""
    return Explorer(redis, **options)
