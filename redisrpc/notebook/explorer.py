"""A Jupyter bench panel for the servers of a Redis: ``redisrpc.explore()``.

::

    import redisrpc
    redisrpc.explore()                      # REDIS_URL, or redisrpc.Explorer(redis.Redis(...))

The left pane lists the servers from the registry, live or gone (refreshed
every few seconds and on demand). Selecting one shows its docstring, the
object tree of its nested channels, a call form for each method, its
properties (read and set), what it runs now (elapsed time, progress, Cancel),
who holds its lock (Take, Release), and two lines of Python: the "In Python"
line that makes the proxy, and the code of the last thing done, so the two
run as written in a cell. A server that is gone stays listed as gone, with
its forms disabled, until it comes back. Calls run in worker threads, so the
kernel stays responsive during a long call. Pure Python on ipywidgets: no
front-end build, so it works in JupyterLab, Notebook 7 and VS Code; its
layout wraps instead of cutting at any width.

Everything shown about a server comes from its cached description, fetched
once when it is first selected (and again after it restarts); calls go
through :class:`redisrpc.Client`.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

import ipywidgets as widgets
import redis

from ..client.discovery import ServiceInfo, discover
from ..client.proxy import state_of
from ..client.sync import Client, description, refresh, with_progress
from ..core.registry import DEFAULT_PREFIX
from ..core.transport import Transport, masked_url, url_of
from . import rst
from .bench import Bench
from .forms import connect_code
from .outcome import PRE, CallRecord, Outcome, history_html
from .rows import CallForm, Done, PropertyRow, child_of, named_entries, object_tree, shown
from .watching import PropertyWatches

__all__ = ["CallForm", "CallRecord", "Explorer", "PropertyRow", "explore"]

LIVE_WITHIN = 3.0
"""A server whose last heartbeat is older than this many seconds shows as "last seen N s ago"."""
FORGET_GONE = 3600.0
"""Seconds a gone server stays listed (as gone) after its last heartbeat."""
_HISTORY = 50  # calls kept in the history
_RUNNING_EVERY = 1.0  # seconds between looks at what the selected server runs and its lock


class Explorer:
    """A bench panel listing the servers of a Redis, with forms to call and watch them.

    Args:
        redis: a redis-py client, a URL, or None for ``REDIS_URL``.
        prefix: the registry's key prefix.
        refresh_interval: seconds between automatic refreshes of the server
            list; 0 refreshes only on demand (the Refresh button, :meth:`refresh`).
        timeout: seconds each call from the widget waits for its reply.
        watch_interval: seconds between reads of the selected server's
            properties, watched with :func:`redisrpc.watch` (0: read on Get only).
    """

    def __init__(
        self,
        redis: redis.Redis | str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        refresh_interval: float = 5.0,
        timeout: float = 30.0,
        watch_interval: float = 1.0,
    ) -> None:
        self.transport = Transport.of(redis)
        # The Redis as the "In Python" line names it: None stands for REDIS_URL, as here.
        self.url: str | None = None
        if isinstance(redis, str):
            self.url = masked_url(redis)
        elif redis is not None:
            self.url = url_of(redis) or self.transport.location
        self.prefix = prefix
        self.refresh_interval = refresh_interval
        self.timeout = timeout
        self._watch_interval = watch_interval
        self.services: dict[str, ServiceInfo] = {}
        """The live services, by name."""
        self.gone: dict[str, ServiceInfo] = {}
        """Services listed earlier that have no live instance now, as last seen."""
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
        self._last_code: dict[str, str] = {}  # the code line of each server
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
        wrap = {"flex_flow": "row wrap", "align_items": "center", "width": "100%"}
        self.search = widgets.Text(
            placeholder="filter servers and methods",
            layout=widgets.Layout(width="auto", flex="1 1 12em", min_width="8em", max_width="24em"),
        )
        self.refresh_button = widgets.Button(
            description="Refresh",
            icon="refresh",
            layout=widgets.Layout(width="8em", min_width="8em", flex="0 0 auto"),
        )
        self.status = widgets.HTML(layout=widgets.Layout(flex="1 1 14em", min_width="0"))
        self.server_list = widgets.Select(
            options=[],
            rows=12,
            layout=widgets.Layout(width="auto", flex="0 1 20em", min_width="12em"),
        )
        self.header = widgets.HTML("<i>Select a server.</i>")
        self.banner = widgets.HTML()
        self.connect = widgets.HTML()
        self.code = widgets.Text(
            description="last",
            placeholder="the code of the last thing done to this server",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="auto", min_width="0"),
        )
        self.bench = Bench(self, self.transport, self._lock)
        self.live = PropertyWatches(self._lock, interval=self._watch_interval)
        self.lock_panel = self.bench.lock_panel
        self.running_box = self.bench.running.widget
        self.objects_box = widgets.VBox([])
        self.methods = widgets.Accordion(children=[], layout=widgets.Layout(width="auto"))
        self.props_box = widgets.VBox([], layout=widgets.Layout(width="100%", min_width="0"))
        self.read_all = widgets.Button(
            description="Read all", icon="download", layout=widgets.Layout(width="8em")
        )
        self.history_html = widgets.HTML(layout=widgets.Layout(width="auto", min_width="0"))
        self.detail = widgets.VBox(
            [
                self.header,
                self.banner,
                self.connect,
                self.code,
                self.lock_panel.widget,
                self.running_box,
                self.objects_box,
                self.methods,
                self.props_box,
                self.history_html,
            ],
            layout=widgets.Layout(flex="1 1 26em", min_width="0", padding="0 0 0 0.5em"),
        )
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.search, self.refresh_button, self.status], layout=wrap),
                widgets.HBox(
                    [self.server_list, self.detail], layout={**wrap, "align_items": "flex-start"}
                ),
            ],
            layout=widgets.Layout(width="100%", min_width="0"),
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
            live = {s.name: s for s in found}
            for name, service in self.services.items():
                if name not in live:
                    self.gone[name] = service  # stopped, or its heartbeat lapsed
            self.gone = {
                name: s
                for name, s in self.gone.items()
                if name not in live and now - s.last_seen < FORGET_GONE
            }
            self.services = live
            self._ages = {
                s.name: max(0.0, now - s.last_seen) for s in [*found, *self.gone.values()]
            }
            for name, (ids, _) in list(self._clients.items()):
                current = live.get(name)
                if current is not None and ids != {i.id for i in current.instances}:
                    del self._clients[name]  # restarted: describe it again
            if self.selected in live and self.selected not in self._clients:
                self._start_describe(self.selected)
            count = len(found)
            self.status.value = (
                f'<span style="color: #555;">{count} live server{"s" * (count != 1)}'
                f" on {html.escape(self.transport.location)} · {time.strftime('%H:%M:%S')}</span>"
            )
            self._apply_filter()
            self._apply_state()
        return found

    def is_gone(self, service: str) -> bool:
        """Whether ``service`` has no live instance now (its forms are then disabled)."""
        return service not in self.services

    def _label(self, name: str) -> str:
        age = self._ages.get(name, 0.0)
        service = self.services.get(name)
        if service is None:
            return f"{name} · gone, last seen {age:.0f} s ago"
        parts = [name, "live" if age < LIVE_WITHIN else f"last seen {age:.0f} s ago"]
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
            query in m["name"].lower() for m in named_entries(found, "methods")
        )

    def _apply_filter(self) -> None:
        with self._lock:
            query = self.search.value.strip().lower()
            every = sorted({**self.gone, **self.services}.items())
            options = [(self._label(n), n) for n, s in every if self._matches(s, query)]
            if options != list(self.server_list.options):
                keep = self.selected if any(n == self.selected for _, n in options) else None
                self._quiet = True
                try:
                    self.server_list.options = options
                    self.server_list.value = keep
                finally:
                    self._quiet = False
            for form in self.forms.values():
                visible = not query or query in form.method.lower() or self._matches_server(query)
                form.widget.layout.display = None if visible else "none"
            self.methods.children = [
                f.widget for f in self.forms.values() if f.widget.layout.display != "none"
            ]
            self.methods.titles = tuple(
                f.title for f in self.forms.values() if f.widget.layout.display != "none"
            )

    def _apply_state(self) -> None:
        """Disable everything that would call the selected server while it is gone."""
        with self._lock:
            name = self.selected
            gone = name is not None and self.is_gone(name)
            for form in self.forms.values():
                form.set_enabled(not gone)
            for row in self.properties.values():
                row.set_enabled(not gone)
            self.read_all.disabled = gone
            if gone and self.live.watches and not self._stop.is_set():
                self._pool.submit(self.live.stop)  # nothing to read until it comes back
            if name is not None:
                self.bench.set_enabled(name, not gone)
            self.banner.value = (
                '<div style="color: #b00020; margin: 4px 0; line-height: 1.35;">'
                f"<b>{html.escape(name)} is gone</b>"
                f" (no live instance; last seen {self._ages.get(name, 0.0):.0f} s ago):"
                " its forms are disabled until it comes back.</div>"
                if gone and name is not None
                else ""
            )

    def _matches_server(self, query: str) -> bool:
        service = self.services.get(self.selected or "")
        return service is not None and query in f"{service.name} {service.class_name}".lower()

    @property
    def server_names(self) -> list[str]:
        """The names of the servers in the list (live and gone), as filtered by the search box."""
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
        then its forms are built. A gone server shows what was known of it,
        disabled.
        """
        if (name, path) != (self.selected, self.path):
            self.live.stop()  # not under the lock: a closing watch may wait for its observer
        with self._lock:
            if name != self.selected:
                self.bench.select(name)
            self.selected = name
            self.path = path
            self.code.value = self._last_code.get(name, "")  # runs after its "In Python" line
            if self.server_list.value != name and name in self.server_names:
                self._quiet = True
                try:
                    self.server_list.value = name
                finally:
                    self._quiet = False
            self.header.value = f"<b>{html.escape(name)}</b> <i>describing…</i>"
            self._apply_state()
            if path or (self.is_gone(name) and name in self._clients):
                return self._track(self._pool.submit(self._describe, name))
            if self.is_gone(name):
                self.header.value = f"<b>{html.escape(name)}</b>"
                self._clear_panel()
                return self._track(self._pool.submit(lambda: None))
            return self._start_describe(name)

    def _start_describe(self, name: str) -> Future[Any]:
        with self._lock:
            running_now = self._describing.get(name)
            if running_now is not None and not running_now.done():
                return running_now
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
        # Client takes a transport as it is (Transport.of): the explorer's one pool. Its
        # calls show no progress bar: one would land in whichever cell runs at the time,
        # and "Running now" shows the explorer's calls with everyone else's.
        plain = Client(self.transport, name, timeout=self.timeout, describe=False)
        client = with_progress(plain, _no_bar)
        refresh(client)
        with self._lock:
            held = self.bench.locks.get(name)
            if held is not None:  # a lock taken through the proxy of before a restart
                state_of(client).lock = held[1]
            self._clients[name] = (ids, client)
        return client

    def _describe(self, name: str) -> None:
        path = self.path
        try:
            client = child_of(self._client(name), path)
        except Exception as exc:
            with self._lock:
                if self.selected == name:
                    failed = Outcome()
                    failed.fail(exc)
                    self.header.value = f"<b>{html.escape(name)}</b>{failed.text}"
            return
        with self._lock:
            if self.selected == name and self.path == path:
                self._show(name, client)

    def _clear_panel(self) -> None:
        self.connect.value = ""
        self.objects_box.children = []
        self.forms, self.properties = {}, {}
        self.props_box.children = []
        self._apply_filter()

    def _show(self, name: str, client: Client) -> None:
        found = description(client) or {}
        service = self.services.get(name) or self.gone.get(name)
        path = self.path
        shown_name = f"{name}.{path}" if path else name
        lines = [
            f'<div style="font-size: 120%;"><b>{html.escape(shown_name)}</b>:'
            f" {html.escape(str(found.get('class') or '?'))}</div>"
        ]
        if service is not None:
            hosts = ", ".join(f"{i.host} pid {i.pid}" for i in service.instances)
            lines.append(f'<div style="color: #777;">{html.escape(hosts)}</div>')
        doc = str(found.get("doc") or "")
        if doc:
            lines.append(f'<pre style="{PRE}">{rst.to_html(doc)}</pre>')
        self.header.value = "".join(lines)
        self.connect.value = (
            f'<div style="color: #555; {PRE}">In Python: '
            f"<code>{html.escape(connect_code(name, self.url))}</code></div>"
        )
        self.objects_box.children = object_tree(name, path, found, self.select)
        self.forms = {
            m["name"]: CallForm(self, name, m, path) for m in named_entries(found, "methods")
        }
        self.properties = {
            p["name"]: PropertyRow(self, name, p, path) for p in named_entries(found, "properties")
        }
        self.methods.selected_index = None
        props: list[widgets.Widget] = []
        if self.properties:
            props = [
                widgets.HTML("<b>Properties</b>"),
                self.read_all,
                *(row.widget for row in self.properties.values()),
            ]
        self.props_box.children = props
        self._apply_filter()
        self._apply_state()
        if self.properties and not self.is_gone(name):
            rows = list(self.properties.values())
            self._pool.submit(self._watch, name, path, client, rows)

    def _watch(self, name: str, path: str, proxy: Client, rows: list[PropertyRow]) -> None:
        """Watch the shown properties (a worker: opening watches talks to Redis)."""
        generation = self.live.stop()
        with self._lock:
            if (self.selected, self.path) != (name, path) or self.is_gone(name):
                return
        self.live.start(generation, proxy, rows)

    # -- what runs now, and the lock ------------------------------------------------

    def update_running(self) -> list[dict[str, Any]]:
        """Show what the selected server runs now, each call with a Cancel button."""
        return self.bench.update_running()

    def update_lock(self) -> dict[str, Any] | None:
        """Show who holds the selected server's lock (Take, Release); returns lock_info."""
        return self.bench.update_lock()

    def _tick_running(self) -> None:
        while not self._stop.wait(_RUNNING_EVERY):
            if self.selected is not None:
                self.update_running()
                self.update_lock()

    # -- calls ------------------------------------------------------------------

    def submit(
        self, service: str, code: str, action: Callable[[Any], Any], done: Done
    ) -> Future[Any]:
        """Run ``action(proxy)`` in a worker; then ``done(ok, value_or_error, seconds)``.

        ``code`` is the Python line doing the same: it becomes the code line
        (the last thing done) and the history entry.
        """
        with self._lock:
            self._last_code[service] = code
            if service == self.selected:
                self.code.value = code

        def run() -> Any:
            started = time.monotonic()
            try:
                value = action(self._client(service))
                ok = True
            except Exception as exc:
                value, ok = exc, False
            seconds = time.monotonic() - started
            summary = shown(value) if ok else f"{type(value).__name__}: {value}"
            with self._lock:
                self.history.insert(0, CallRecord(code, ok, summary[:200], seconds, time.time()))
                del self.history[_HISTORY:]
                self.history_html.value = history_html(self.history)
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
        """Stop refreshing, let calls in flight finish, release its locks, close the widgets."""
        self._stop.set()
        self.bench.closing = True
        self.live.stop()
        for ticker in (self._ticker, self._running_ticker):
            if ticker is not None and ticker is not threading.current_thread():
                ticker.join()
        self._pool.shutdown(wait=True)
        self.bench.release_all()
        with self._lock:
            _close_tree(self.widget)


def _no_bar(done: float, total: float | None, message: str) -> None:
    """The progress callback of the explorer's proxies: nothing (see ``Explorer._client``)."""


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def explore(redis: redis.Redis | str | None = None, **options: Any) -> Explorer:
    """Return an :class:`Explorer` on ``redis`` (None: ``REDIS_URL``); a notebook shows it."""
    return Explorer(redis, **options)
