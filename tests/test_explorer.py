"""The explorer widget, driven from Python against a real Redis: list, select, call, properties."""

from __future__ import annotations

import html
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import PYTHON, free_port, python_env, wait_for

import redisrpc
from redisrpc.instruments import bench
from redisrpc.notebook.explorer import Explorer


class Calculator:
    """A calculator with one register."""

    def __init__(self) -> None:
        self.acc = 0.0
        self.release = threading.Event()

    def add(self, x: float, y: float = 0.0) -> float:
        """Add x and y to the register and return it."""
        self.acc += x + y
        return self.acc

    def div(self, x: float) -> float:
        """Divide the register by x."""
        self.acc /= x
        return self.acc

    def block(self) -> str:
        """Wait until the test releases it."""
        self.release.wait(10)
        return "released"


def listed(explorer: Explorer, names: list[str]) -> None:
    """Refresh until the list shows ``names`` (servers register from their own thread)."""
    wait_for(lambda: explorer.refresh() is not None and explorer.server_names == names)


@pytest.fixture
def explorer(r) -> Iterator[Explorer]:
    """An Explorer on the test Redis that refreshes and reads properties only on demand.

    No live watching (the tests of it make their own): a property's reading then
    changes only by Get, as the Get/Set tests assert.
    """
    widget = Explorer(r, refresh_interval=0, watch_interval=0, timeout=10)
    yield widget
    widget.close()


def test_server_list_follows_servers(explorer, serve):
    """Servers appear on refresh when they start and show as gone when they stop."""
    assert explorer.server_names == []
    calc = serve(Calculator(), "calc")
    serve(Calculator(), "other")
    listed(explorer, ["calc", "other"])
    assert explorer.server_list.options[0][0] == "calc · live"
    calc.stop(10)
    explorer.refresh()
    assert explorer.server_names == ["calc", "other"]
    assert explorer.server_list.options[0][0].startswith("calc · gone, last seen ")
    assert explorer.server_list.options[1][0] == "other · live"
    assert explorer.is_gone("calc") and not explorer.is_gone("other")
    assert "1 live server" in explorer.status.value


def test_killed_server_shows_as_gone(r, redis_url):
    """A server process killed with SIGKILL shows as gone once its heartbeat lapses."""
    code = (
        "import sys, redisrpc\n"
        "redisrpc.Server(sys.argv[1], 'doomed', object(), heartbeat=0.2).run()\n"
    )
    proc = subprocess.Popen([PYTHON, "-c", code, redis_url], env=python_env())
    widget = Explorer(r, refresh_interval=0.2)
    try:
        wait_for(lambda: widget.server_names == ["doomed"])
        proc.kill()
        proc.wait(10)
        wait_for(lambda: widget.is_gone("doomed"), timeout=10)
        assert widget.server_names == ["doomed"]
        assert widget.server_list.options[0][0].startswith("doomed · gone, last seen ")
    finally:
        widget.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_select_fills_methods_and_properties(explorer, serve):
    """Selecting a server shows its class, docstring, call forms and property rows."""
    for name, obj in bench().items():
        serve(obj, name)
    listed(explorer, ["fgen", "psu", "scope", "stage"])
    explorer.select("psu")
    assert explorer.wait(10)
    assert "PowerSupply" in explorer.header.value and "over-current" in explorer.header.value
    # reST roles in the docstring read as what they name
    assert "<code>clear_trip()</code>" in explorer.header.value
    assert ":meth:" not in explorer.header.value and ":class:" not in explorer.header.value
    assert {"output_on", "measure", "connect_load"} <= set(explorer.forms)
    assert set(explorer.properties) >= {"voltage1", "current_limit2", "idn"}
    assert explorer.methods.titles[list(explorer.forms).index("measure")] == (
        "measure(channel: int) -> dict[str, float]"
    )
    assert explorer.properties["idn"].set_button.disabled
    assert not explorer.properties["voltage1"].set_button.disabled


def test_call_form_calls_and_shows_result(explorer, serve):
    """Filling the form and clicking Call shows the result, the code line and a history entry."""
    serve(Calculator(), "calc")
    listed(explorer, ["calc"])
    explorer.select("calc")
    explorer.wait(10)
    form = explorer.forms["add"]
    assert form.inputs["y"].value == "0.0"  # default filled in
    form.inputs["x"].value = "5"
    form.button.click()
    assert explorer.wait(10)
    assert "5.0" in form.result.text
    assert explorer.code.value == "calc.add(5)"
    form.inputs["y"].value = "2.5"
    form.button.click()
    explorer.wait(10)
    assert "12.5" in form.result.text and explorer.code.value == "calc.add(5, 2.5)"
    assert [record.code for record in explorer.history] == ["calc.add(5, 2.5)", "calc.add(5)"]
    assert "calc.add(5)" in explorer.history_html.value


def test_call_form_shows_remote_error_in_one_line_with_the_traceback_behind_a_toggle(
    explorer, serve
):
    """A remote exception shows as one line; its remote traceback only when toggled open."""
    serve(Calculator(), "calc")
    listed(explorer, ["calc"])
    explorer.select("calc")
    explorer.wait(10)
    form = explorer.forms["div"]
    form.inputs["x"].value = "0"
    form.button.click()
    explorer.wait(10)
    result = form.result
    assert "RemoteZeroDivisionError: float division by zero" in result.line.value
    assert "self.acc /= x" not in result.line.value and "\n" not in result.line.value
    assert "remote traceback" in result.details.value and "self.acc /= x" in result.details.value
    assert result.details.layout.display == "none" and result.toggle.layout.display is None
    result.toggle.value = True
    assert result.details.layout.display is None
    result.toggle.value = False
    assert result.details.layout.display == "none"
    assert explorer.history[0].ok is False
    form.inputs["x"].value = "2"
    form.button.click()
    explorer.wait(10)
    assert result.toggle.layout.display == "none" and result.details.value == ""


def test_call_form_rejects_bad_input_locally(explorer, serve):
    """A missing or malformed field is reported without a call."""
    serve(Calculator(), "calc")
    listed(explorer, ["calc"])
    explorer.select("calc")
    explorer.wait(10)
    form = explorer.forms["add"]
    assert form.submit() is None
    assert "x is required" in form.result.text
    form.inputs["x"].value = "[1,"
    assert form.submit() is None and "not a valid JSON literal" in form.result.text
    assert explorer.history == []


def test_long_call_does_not_block(explorer, serve):
    """A call runs in a worker: submit returns at once, the button shows it is running."""
    calc = Calculator()
    serve(calc, "calc")
    listed(explorer, ["calc"])
    explorer.select("calc")
    explorer.wait(10)
    form = explorer.forms["block"]
    future = form.submit()
    assert future is not None and not future.done()
    assert form.button.disabled and form.button.description == "Running…"
    explorer.refresh()  # the widget keeps working meanwhile
    calc.release.set()
    assert future.result(10) == "released"
    explorer.wait(10)
    assert not form.button.disabled and "released" in form.result.text


def test_property_get_and_set(explorer, serve):
    """Properties read and write through the widget; range errors show; code lines are set."""
    instruments = bench()
    serve(instruments["psu"], "psu")
    listed(explorer, ["psu"])
    explorer.select("psu")
    explorer.wait(10)
    row = explorer.properties["voltage1"]
    row.value.value = "12.5"
    row.set()
    explorer.wait(10)
    assert instruments["psu"].voltage1 == 12.5
    assert explorer.code.value == "psu.voltage1 = 12.5"
    assert "not read yet" in row.reading.value
    row.get()
    explorer.wait(10)
    assert ">12.5<" in row.reading.value and "not read yet" not in row.reading.value
    row.value.value = "99"
    row.set()
    explorer.wait(10)
    assert "out of range" in row.status.line.value and instruments["psu"].voltage1 == 12.5
    assert "remote traceback" in row.status.details.value
    assert "remote traceback" not in row.status.line.value
    # buttons keep their width however long the error: it sits on its own line below
    assert row.get_button.layout.min_width == row.get_button.layout.width == "4.5em"
    assert row.get_button.layout.flex == "0 0 auto" and row.status.widget.layout.flex == "1 1 100%"
    explorer.read_all.click()
    explorer.wait(10)
    idn = explorer.properties["idn"]
    assert html.escape('"SIMLAB,PSU-2303,SN0001,1.4.2"') in idn.reading.value
    assert idn.value.layout.display == "none" and idn.set_button.layout.display == "none"


def test_search_filters_servers_and_methods(explorer, serve):
    """The search box filters the server list, by name or method, and the method forms."""
    for name, obj in bench().items():
        serve(obj, name)
    serve(Calculator(), "calc")
    listed(explorer, ["calc", "fgen", "psu", "scope", "stage"])
    explorer.select("scope")
    explorer.wait(10)
    explorer.search.value = "STAG"  # case-insensitive
    assert explorer.server_names == ["stage"]
    explorer.search.value = "acquire"  # a method of the described scope
    assert explorer.server_names == ["scope"]
    assert explorer.methods.titles == ("acquire() -> Any",)
    explorer.search.value = ""
    assert len(explorer.server_names) == 5 and len(explorer.methods.children) > 1


def test_restarted_server_is_described_again(explorer, serve, r):
    """After a server restarts with another object, selecting it shows the new description."""
    first = serve(Calculator(), "svc")
    listed(explorer, ["svc"])
    explorer.select("svc")
    explorer.wait(10)
    assert "add" in explorer.forms
    first.stop(10)
    serve(bench()["stage"], "svc")
    wait_for(lambda: explorer.refresh() and explorer.wait(10) and "move_to" in explorer.forms)
    assert "add" not in explorer.forms


def test_unreachable_redis_shows_error():
    """With no Redis to talk to, the status line says so instead of raising."""
    widget = Explorer(f"redis://127.0.0.1:{free_port()}/0", refresh_interval=0)
    try:
        assert "RedisConnectionError" in widget.status.value
        assert widget.server_names == []
    finally:
        widget.close()


def test_explore_helper_and_lazy_export(redis_url):
    """redisrpc.explore() builds an Explorer on REDIS_URL; it renders as a widget."""
    widget = redisrpc.explore(refresh_interval=0)
    try:
        assert isinstance(widget, redisrpc.Explorer)
        bundle = widget._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
    finally:
        widget.close()


class Slow:
    """Moves slowly, reporting progress, until cancelled."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def move(self, steps: int) -> int:
        """Take ``steps`` 50 ms steps."""
        for i in range(steps):
            if redisrpc.cancelled():
                self.cancelled.set()
                return i
            redisrpc.progress(i, steps, "moving")
            self.cancelled.wait(0.05)
        return steps


def test_running_calls_show_with_progress_and_cancel_stops_them(explorer, serve, r):
    """A long call of the selected server shows (caller, progress); its Cancel button stops it."""
    slow = Slow()
    serve(slow, "slow")
    listed(explorer, ["slow"])
    explorer.select("slow").result(10)
    caller = redisrpc.Client(r, "slow", timeout=30)
    outcome: list[BaseException] = []

    def move() -> None:
        try:
            caller.move(400)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=move)
    worker.start()
    calls = wait_for(explorer.update_running, timeout=5)
    assert calls[0]["method"] == "move"
    row = explorer.running_box.children[1]
    assert "move()" in row.children[0].value and "moving" in row.children[0].value
    row.children[1].click()  # Cancel
    assert slow.cancelled.wait(3)
    worker.join(5)
    assert isinstance(outcome[0], redisrpc.CallCancelledError)
    wait_for(lambda: not explorer.update_running() and not explorer.running_box.children)


def test_a_description_with_null_member_lists_shows_and_filters(explorer, serve, monkeypatch):
    """A server describing ``"methods": null`` (another language, a bug): no panel breaks."""
    import redisrpc.server.dispatch  # noqa: PLC0415 - the serving side's description

    real = redisrpc.server.dispatch.describe

    def malformed(*args: object, **kwargs: object) -> dict[str, object]:
        return {**real(*args, **kwargs), "methods": None, "properties": None, "objects": None}

    monkeypatch.setattr(redisrpc.server.dispatch, "describe", malformed)
    serve(Calculator(), "odd")
    listed(explorer, ["odd"])
    explorer.select("odd").result(10)  # raised TypeError in the worker: stuck at "describing…"
    assert "Calculator" in explorer.header.value and "describing" not in explorer.header.value
    assert explorer.forms == {} and explorer.properties == {}
    explorer.search.value = "add"  # searched the null method list: TypeError
    assert explorer.server_names == []
    explorer.search.value = ""
    assert explorer.server_names == ["odd"]


class _HourBehind:
    """The ``time`` module of a host whose wall clock is an hour behind Redis's."""

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    @staticmethod
    def time() -> float:
        return time.time() - 3600


def test_running_calls_of_a_server_whose_clock_is_behind_still_show(explorer, serve, monkeypatch):
    """A server on a host whose clock is an hour behind: its long call shows, run for seconds."""
    import redisrpc.server.calls  # noqa: PLC0415 - the serving side's clock, skewed

    monkeypatch.setattr(redisrpc.server.calls, "time", _HourBehind())
    calc = Calculator()
    serve(calc, "calc")
    listed(explorer, ["calc"])
    explorer.select("calc").result(10)
    caller = redisrpc.Client(explorer.transport, "calc", timeout=30)
    worker = threading.Thread(target=caller.block)
    worker.start()
    try:
        calls = wait_for(explorer.update_running, timeout=5, message="the long call not shown")
        assert calls[0]["method"] == "block"
        text = explorer.running_box.children[1].children[0].value
        assert " · 0 s" in text or " · 1 s" in text, text
    finally:
        calc.release.set()
        worker.join(10)


class Channel:
    """One output channel."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.volts = 0.0

    def measure(self) -> float:
        """Measure the channel's voltage."""
        return self.volts + self.number


class TwoChannels:
    """A supply with two channel objects."""

    def __init__(self) -> None:
        self.ch1 = Channel(1)
        self.ch2 = Channel(2)

    def idn(self) -> str:
        """Identify."""
        return "two channels"


def test_the_object_tree_expands_a_channel_and_calls_its_methods(explorer, serve):
    """Children show as buttons; a child's own forms call through its path."""
    serve(TwoChannels(), "supply")
    listed(explorer, ["supply"])
    explorer.select("supply").result(10)
    buttons = explorer.objects_box.children[1].children
    assert [b.description for b in buttons] == ["ch1 ▸", "ch2 ▸"]
    buttons[1].click()
    # The header changes before the forms are built: wait for the form itself.
    wait_for(lambda: "supply.ch2" in explorer.header.value and "measure" in explorer.forms)
    assert "Channel" in explorer.header.value
    form = explorer.forms["measure"]
    form.submit().result(10)
    assert "2.0" in form.result.text and explorer.code.value == "supply.ch2.measure()"
    up = explorer.objects_box.children[1].children[0]
    assert up.description == "↑ supply"
    up.click()
    wait_for(lambda: "idn" in explorer.forms and explorer.path == "")


class Register:
    """A register with a property."""

    def __init__(self) -> None:
        self._level = 1.0

    @property
    def level(self) -> float:
        """The level."""
        return self._level

    @level.setter
    def level(self, value: float) -> None:
        self._level = value

    def add(self, x: float) -> float:
        """Add x to the level."""
        self._level += x
        return self._level


def test_gone_server_disables_its_forms_until_it_comes_back(explorer, serve):
    """A stopped server shows as gone: its Call, Get, Set and Cancel are disabled and do nothing."""
    first = serve(Register(), "reg")
    listed(explorer, ["reg"])
    explorer.select("reg").result(10)
    form, row = explorer.forms["add"], explorer.properties["level"]
    assert not form.button.disabled and not row.get_button.disabled and not row.set_button.disabled
    explorer.bench.running.update("reg", [{"id": "c1", "method": "add", "since": 0.0}])
    cancel_button = explorer.running_box.children[1].children[1]
    assert not cancel_button.disabled
    first.stop(10)
    explorer.refresh()
    # Every Cancel still shown is disabled; the panel's own poll may have redrawn it
    # meanwhile, so a row drawn now must come disabled too.
    assert all(row.children[1].disabled for row in explorer.bench.running.rows.values())
    explorer.bench.running.update("reg", [{"id": "c1", "method": "add", "since": 0.0}])
    cancel_button = explorer.running_box.children[1].children[1]
    assert explorer.is_gone("reg") and "reg is gone" in explorer.banner.value
    assert form.button.disabled and all(f.disabled for f in form.inputs.values())
    assert row.get_button.disabled and row.set_button.disabled and explorer.read_all.disabled
    assert cancel_button.disabled and explorer.lock_panel.take_button.disabled
    form.inputs["x"].value = "1"
    assert form.submit() is None and row.get() is None and row.set() is None
    assert explorer.history == []  # nothing was even tried
    # Selecting it again shows what was known of it, still disabled.
    explorer.select("reg").result(10)
    assert "add" in explorer.forms and explorer.forms["add"].button.disabled
    second = Register()
    serve(second, "reg")
    wait_for(lambda: explorer.refresh() and explorer.wait(10) and not explorer.is_gone("reg"))
    form = explorer.forms["add"]
    assert not form.button.disabled and explorer.banner.value == ""
    form.inputs["x"].value = "2"
    form.submit().result(10)
    assert second.level == 3.0


def test_code_line_is_the_last_thing_done(explorer, serve, r):
    """Every Call, Get, Set, Cancel and lock Take/Release puts its own line in the code box."""
    serve(Register(), "reg")
    listed(explorer, ["reg"])
    explorer.select("reg").result(10)
    form, row = explorer.forms["add"], explorer.properties["level"]
    form.inputs["x"].value = "2"
    form.submit().result(10)
    assert explorer.code.value == "reg.add(2)"
    row.get().result(10)
    assert explorer.code.value == "reg.level" and ">3.0<" in row.reading.value
    row.value.value = "7.5"
    row.set().result(10)
    assert explorer.code.value == "reg.level = 7.5"
    explorer.bench.take_lock().result(10)
    assert explorer.code.value == (
        "reg_lock = redisrpc.lock(reg, note='taken in the explorer').acquire()"
    )
    explorer.bench.release_lock().result(10)
    assert explorer.code.value == "reg_lock.release()"
    explorer.bench.cancel("reg", "no-such-call").result(10)
    assert explorer.code.value == "redisrpc.cancel(reg, 'no-such-call')"
    assert [h.code for h in explorer.history][:3] == [
        "redisrpc.cancel(reg, 'no-such-call')",
        "reg_lock.release()",
        "reg_lock = redisrpc.lock(reg, note='taken in the explorer').acquire()",
    ]


def test_in_python_line_and_code_line_run_as_written(explorer, serve, redis_url, r):
    """The "In Python" line plus the code line, exec'd in a fresh namespace, do it again."""
    reg = Register()
    serve(reg, "reg")
    listed(explorer, ["reg"])
    explorer.select("reg").result(10)
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    connect = f'import redisrpc; reg = redisrpc.Client("redis://127.0.0.1:{port}/0", "reg")'
    assert connect in html.unescape(explorer.connect.value)
    form = explorer.forms["add"]
    form.inputs["x"].value = "2"
    form.submit().result(10)
    assert reg.level == 3.0
    exec(f"{connect}\n{explorer.code.value}", {})  # the point of the test: the shown code runs
    assert reg.level == 5.0
    row = explorer.properties["level"]
    row.value.value = "0.25"
    row.set().result(10)
    reg.level = 9.0
    exec(f"{connect}\n{explorer.code.value}", {})
    assert reg.level == 0.25


def test_in_python_line_names_the_explorers_redis(redis_url, serve):
    """Given a URL the line shows it; given nothing, None (REDIS_URL, as the explorer used)."""
    serve(Register(), "reg")
    for target, shown in [(redis_url, f'"{redis_url}"'), (None, "None")]:
        widget = Explorer(target, refresh_interval=0)
        try:
            listed(widget, ["reg"])
            widget.select("reg").result(10)
            line = html.unescape(widget.connect.value)
            assert f'reg = redisrpc.Client({shown}, "reg")' in line
            namespace: dict[str, object] = {}
            exec(line.split("<code>")[1].split("</code>")[0], namespace)
            assert namespace["reg"].level == 1.0  # type: ignore[attr-defined]
        finally:
            widget.close()


def test_lock_holder_is_shown_and_taken_and_released(explorer, serve, r):
    """The lock line names the holder; Take makes the explorer's calls run under it; Release."""
    reg = Register()
    serve(reg, "reg")
    listed(explorer, ["reg"])
    explorer.select("reg").result(10)
    panel = explorer.lock_panel
    assert explorer.update_lock() is None and "Lock: free" in panel.holder.value
    assert not panel.take_button.disabled and panel.release_button.disabled
    panel.take_button.click()
    explorer.wait(10)
    info = explorer.update_lock()
    assert info is not None and info["note"] == "taken in the explorer"
    assert "this explorer" in panel.holder.value and "taken in the explorer" in panel.holder.value
    assert panel.take_button.disabled and not panel.release_button.disabled
    other = redisrpc.Client(r, "reg", timeout=5)
    with pytest.raises(redisrpc.LockedError):
        other.add(1)
    form = explorer.forms["add"]
    form.inputs["x"].value = "1"
    form.submit().result(10)  # the explorer's own calls carry its token
    assert reg.level == 2.0
    panel.release_button.click()
    explorer.wait(10)
    assert explorer.update_lock() is None and "Lock: free" in panel.holder.value
    assert other.add(1) == 3.0
    # Someone else takes it: the line names them, Take is disabled, the tick shows it.
    with redisrpc.lock(other, note="aligning"):
        wait_for(lambda: "aligning" in panel.holder.value, timeout=5)
        assert "this explorer" not in panel.holder.value and panel.take_button.disabled
        assert panel.release_button.disabled
    wait_for(lambda: "Lock: free" in panel.holder.value, timeout=5)


def test_a_failed_take_shows_the_holder_in_one_line(explorer, serve, r):
    """Taking a lock someone else holds shows LockedError in one line under the lock line."""
    serve(Register(), "reg")
    listed(explorer, ["reg"])
    explorer.select("reg").result(10)
    with redisrpc.lock(redisrpc.Client(r, "reg"), note="mine"):
        explorer.bench.take_lock().result(10)
        line = html.unescape(explorer.lock_panel.outcome.line.value)
        assert "LockedError: 'reg' is locked by" in line and "'mine'" in line
        assert "reg" not in explorer.bench.locks


def test_code_line_follows_the_selected_server(explorer, serve):
    """Each server keeps its own last line, so it runs after that server's "In Python" line."""
    serve(Register(), "reg")
    serve(Calculator(), "calc")
    listed(explorer, ["calc", "reg"])
    explorer.select("reg").result(10)
    explorer.properties["level"].get().result(10)
    assert explorer.code.value == "reg.level"
    explorer.select("calc").result(10)
    assert explorer.code.value == ""
    explorer.select("reg").result(10)
    assert explorer.code.value == "reg.level"


@redisrpc.writable("level")
class Sensor:
    """A sensor with a settable level and a reading that can fail."""

    def __init__(self) -> None:
        self.level = 1.0
        self.broken = threading.Event()

    @property
    def reading(self) -> float:
        """The reading; raises while broken."""
        if self.broken.is_set():
            raise ValueError("sensor disconnected")
        return self.level * 2


def _shows(row, text: str) -> bool:
    return f">{text}<" in row.reading.value


def test_property_values_update_by_themselves_when_another_process_sets_them(r, redis_url, serve):
    """Selected, its values show within one interval; another process's Set shows unasked."""
    sensor = Sensor()
    serve(sensor, "sensor")
    widget = Explorer(r, refresh_interval=0, watch_interval=1.0)
    try:
        listed(widget, ["sensor"])
        widget.select("sensor").result(10)
        shown_at = time.monotonic()
        row = widget.properties["level"]
        wait_for(lambda: _shows(row, "1.0"), timeout=5)
        assert time.monotonic() - shown_at < 1.0 + 0.5  # one interval, and a little slack
        assert "not read yet" not in widget.properties["reading"].reading.value
        code = "import sys, redisrpc\nredisrpc.Client(sys.argv[1], 'sensor').level = 42.5\n"
        subprocess.run([PYTHON, "-c", code, redis_url], env=python_env(), check=True, timeout=60)
        set_at = time.monotonic()
        wait_for(lambda: _shows(row, "42.5") and _shows(widget.properties["reading"], "85.0"))
        assert time.monotonic() - set_at < 2 * 1.0 + 0.5
        assert widget.history == []  # nobody clicked Get
    finally:
        widget.close()
    assert widget.live.watches == {}


def test_a_watched_value_that_fails_shows_one_line_and_recovers(r, serve):
    """A property the server cannot read shows its error compactly, then its value again."""
    sensor = Sensor()
    serve(sensor, "sensor")
    widget = Explorer(r, refresh_interval=0, watch_interval=0.2)
    try:
        listed(widget, ["sensor"])
        widget.select("sensor").result(10)
        row = widget.properties["reading"]
        wait_for(lambda: _shows(row, "2.0"))
        sensor.broken.set()
        wait_for(lambda: "sensor disconnected" in row.status.line.value)
        assert "RemoteValueError: sensor disconnected" in row.status.line.value
        assert "remote traceback" in row.status.details.value
        assert row.status.details.layout.display == "none"
        sensor.level = 3.0
        sensor.broken.clear()
        wait_for(lambda: _shows(row, "6.0") and row.status.line.value == "")
    finally:
        widget.close()


def test_watches_follow_the_selection_and_close_when_it_is_gone(r, serve):
    """Only the selected server's properties are watched; a gone server's watches close."""
    first, second = Sensor(), Register()
    serve(first, "sensor")
    reg_server = serve(second, "reg")
    widget = Explorer(r, refresh_interval=0, watch_interval=0.2)
    try:
        listed(widget, ["reg", "sensor"])
        widget.select("sensor").result(10)
        wait_for(lambda: set(widget.live.watches) == {"level", "reading"})
        old_row = widget.properties["level"]
        wait_for(lambda: _shows(old_row, "1.0"))
        widget.select("reg").result(10)
        wait_for(lambda: set(widget.live.watches) == {"level"})
        new_row = widget.properties["level"]
        first.level = 5.0
        second.level = 6.0
        wait_for(lambda: _shows(new_row, "6.0"))  # the watched one changed...
        assert _shows(old_row, "1.0")  # ...the row of before did not
        reg_server.stop(10)
        widget.refresh()
        wait_for(lambda: widget.live.watches == {})
        assert new_row.get_button.disabled
    finally:
        widget.close()
