"""The explorer widget, driven from Python against a real Redis: list, select, call, properties."""

from __future__ import annotations

import subprocess
import threading
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
    """An Explorer on the test Redis that refreshes only on demand."""
    widget = Explorer(r, refresh_interval=0, timeout=10)
    yield widget
    widget.close()


def test_server_list_follows_servers(explorer, serve):
    """Servers appear on refresh when they start and drop out when they stop."""
    assert explorer.server_names == []
    calc = serve(Calculator(), "calc")
    serve(Calculator(), "other")
    listed(explorer, ["calc", "other"])
    assert explorer.server_list.options[0][0] == "calc · live"
    calc.stop(10)
    explorer.refresh()
    assert explorer.server_names == ["other"]
    assert "1 live server" in explorer.status.value


def test_killed_server_drops_out(r, redis_url):
    """A server process killed with SIGKILL drops out once its heartbeat lapses."""
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
        wait_for(lambda: widget.server_names == [], timeout=10)
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
    assert "5.0" in form.result.value
    assert form.code.value == "calc.add(5)"
    form.inputs["y"].value = "2.5"
    form.button.click()
    explorer.wait(10)
    assert "12.5" in form.result.value and form.code.value == "calc.add(5, 2.5)"
    assert [record.code for record in explorer.history] == ["calc.add(5, 2.5)", "calc.add(5)"]
    assert "calc.add(5)" in explorer.history_html.value


def test_call_form_shows_remote_error_and_traceback(explorer, serve):
    """A remote exception shows its type, message and the remote traceback."""
    serve(Calculator(), "calc")
    listed(explorer, ["calc"])
    explorer.select("calc")
    explorer.wait(10)
    form = explorer.forms["div"]
    form.inputs["x"].value = "0"
    form.button.click()
    explorer.wait(10)
    assert "RemoteZeroDivisionError" in form.result.value
    assert "remote traceback" in form.result.value and "self.acc /= x" in form.result.value
    assert explorer.history[0].ok is False


def test_call_form_rejects_bad_input_locally(explorer, serve):
    """A missing or malformed field is reported without a call."""
    serve(Calculator(), "calc")
    listed(explorer, ["calc"])
    explorer.select("calc")
    explorer.wait(10)
    form = explorer.forms["add"]
    assert form.submit() is None
    assert "x is required" in form.result.value
    form.inputs["x"].value = "[1,"
    assert form.submit() is None and "not a valid JSON literal" in form.result.value
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
    assert not form.button.disabled and "released" in form.result.value


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
    row.value.value = ""
    row.get()
    explorer.wait(10)
    assert row.value.value == "12.5"
    row.value.value = "99"
    row.set()
    explorer.wait(10)
    assert "out of range" in row.status.value and instruments["psu"].voltage1 == 12.5
    explorer.read_all.click()
    explorer.wait(10)
    assert explorer.properties["idn"].value.value == '"SIMLAB,PSU-2303,SN0001,1.4.2"'


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
    wait_for(lambda: "supply.ch2" in explorer.header.value and "Channel" in explorer.header.value)
    form = explorer.forms["measure"]
    form.submit().result(10)
    assert "2.0" in form.result.value and form.code.value == "supply.ch2.measure()"
    up = explorer.objects_box.children[1].children[0]
    assert up.description == "↑ supply"
    up.click()
    wait_for(lambda: "idn" in explorer.forms and explorer.path == "")
