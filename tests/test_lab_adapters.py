"""Framework adapters against the real packages and their own simulated instruments.

Each test skips cleanly when its framework is not installed (``pip install -e '.[lab]'``).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import wait_for

import redisrpc
from redisrpc.server.adapters import make_view, register, unregister


@pytest.fixture
def quiet() -> Iterator[None]:
    """The frameworks warn about their own deprecations on import and use; not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def test_qcodes_parameters_are_callable_children_with_unit_label_and_validator(
    r: Any, serve: Any, quiet: None
) -> None:
    mock = pytest.importorskip("qcodes.instrument_drivers.mock_instruments")
    dmm = mock.DummyInstrument("dmm_lab_a", gates=["ch1", "ch2"])
    try:
        serve(dmm, "dmm")
        proxy = redisrpc.Client(r, "dmm")
        names = {n for n in dir(proxy) if not n.startswith("_")}
        assert {"ch1", "ch2", "IDN", "print_readable_snapshot", "snapshot"} <= names
        plumbing = {"add_parameter", "close_all", "record_instance", "remove_instance", "write"}
        assert not names & plumbing
        assert proxy.ch1() == 0
        assert proxy.ch1(3.0) is None
        assert dmm.ch1() == 3.0 and proxy.ch1() == 3.0 and proxy.ch1.get() == 3.0
        proxy.ch2.set(-5)
        assert dmm.ch2.get_latest() == -5
        assert (proxy.ch1.unit, proxy.ch1.label) == ("V", "Gate ch1")
        assert "-800<=v<=400" in proxy.ch1.validator
        assert "Gate ch1 [V]" in (proxy.ch1.__doc__ or "")
        assert "in V" in (type(proxy).ch1.__doc__ or "")  # the parent's ? shows the unit
        assert "value" in str(inspect.signature(proxy.ch1))
        with pytest.raises(ValueError, match="invalid"):
            proxy.ch1(1000)  # the validator runs remotely; nothing was set
        assert dmm.ch1() == 3.0
    finally:
        dmm.close()


def test_qcodes_channels_and_channel_lists_are_navigable(r: Any, serve: Any, quiet: None) -> None:
    mock = pytest.importorskip("qcodes.instrument_drivers.mock_instruments")
    chan = mock.DummyChannelInstrument("chan_lab_b")
    try:
        serve(chan, "chan")
        proxy = redisrpc.Client(r, "chan")
        assert {"A", "B", "channels"} <= set(dir(proxy))
        assert proxy.A.temperature() == 0
        proxy.A.temperature(4.2)
        assert chan.A.temperature() == 4.2
        assert proxy.A.temperature.unit == "K"
        assert len(proxy.channels) == 6
        assert proxy.channels[0].temperature() == 4.2  # ChanA, by index
        assert proxy.channels.names[:2] == ["ChanA", "ChanB"]
        assert "log_my_name" in dir(proxy.A)
    finally:
        chan.close()


def test_ophyd_motor_set_returns_a_status_handle_to_wait_on(
    r: Any, serve: Any, quiet: None
) -> None:
    sim = pytest.importorskip("ophyd.sim")
    motor = sim.SynAxis(name="motor", delay=0.2)
    serve(motor, "motor", workers=2)  # one worker may wait() while the other answers polls
    proxy = redisrpc.Client(r, "motor")
    assert {"readback", "setpoint", "velocity", "set", "read", "position"} <= set(dir(proxy))
    assert not {"subscribe", "stage", "destroy", "walk_components"} & set(dir(proxy))
    status = proxy.set(3.0)
    assert type(status).__name__ == "MoveStatus"
    assert {"wait", "done", "success", "progress"} <= set(dir(status))
    assert wait_for(lambda: status.done, timeout=5)
    status.wait(5)
    assert status.success and status.progress == 1.0
    assert proxy.position == 3.0 and motor.position == 3.0
    assert proxy.readback.get() == 3.0 and proxy.setpoint.get() == 3.0
    assert proxy.read()["motor"]["value"] == 3.0


def test_pymeasure_controls_are_properties_and_channels_children(
    r: Any, serve: Any, quiet: None
) -> None:
    instruments = pytest.importorskip("pymeasure.instruments")
    adapters = pytest.importorskip("pymeasure.adapters")

    class VoltageChannel(instruments.Channel):  # type: ignore[misc]
        """An output channel."""

        voltage = instruments.Channel.control("VOLT{ch}?", "VOLT{ch} %g", "Output voltage in V.")

    class Supply(instruments.Instrument):  # type: ignore[misc]
        """A simulated two-channel supply."""

        ch_1 = instruments.Instrument.ChannelCreator(VoltageChannel, 1)
        ch_2 = instruments.Instrument.ChannelCreator(VoltageChannel, 2)
        current = instruments.Instrument.measurement("CURR?", "Output current in A.")

        def __init__(self, adapter: Any) -> None:
            super().__init__(adapter, "Supply", includeSCPI=False)

    protocol = [("VOLT1 5", None), ("VOLT1?", "5"), ("CURR?", "0.25"), ("VOLT2?", "1.5")]
    supply = Supply(adapters.ProtocolAdapter(protocol))
    serve(supply, "supply")
    proxy = redisrpc.Client(r, "supply")
    names = set(dir(proxy))
    assert {"ch_1", "ch_2", "channels", "current"} <= names
    assert not {"ask", "write", "read", "adapter", "values"} & names  # the bus stays hidden
    assert type(proxy).current.__doc__.startswith("Output current in A.")
    proxy.ch_1.voltage = 5
    assert proxy.ch_1.voltage == 5.0
    assert proxy.current == 0.25
    assert proxy.channels[1].voltage == 1.5


def test_a_users_own_adapter_is_registered_with_the_hook(r: Any, serve: Any) -> None:
    class Motor:
        def __init__(self) -> None:
            self.position = 0.0
            self.torque_limit = 5.0

        def move(self, to: float) -> float:
            """Move to ``to`` mm."""
            self.position = to
            return to

        def dangerous(self) -> None:
            raise AssertionError("must stay hidden")

    class Stage:
        def __init__(self) -> None:
            self.x = Motor()

    class MotorAdapter:
        module = __name__

        def applies(self, obj: Any) -> bool:
            return isinstance(obj, Motor)

        def view(self, obj: Any) -> Any:
            return make_view(
                obj,
                doc="A motor.",
                methods={"move": obj.move},
                properties={"position": (lambda: obj.position, None, "Where it is, in mm.")},
                info={"unit": "mm"},
            )

    adapter = register(MotorAdapter())
    try:
        stage = Stage()
        serve(stage, "stage")
        proxy = redisrpc.Client(r, "stage")
        assert set(n for n in dir(proxy.x) if not n.startswith("_")) == {"move", "position"}
        assert proxy.x.move(2.5) == 2.5 and proxy.x.position == 2.5
        assert proxy.x.__doc__ == "A motor."
    finally:
        unregister(adapter)


def test_the_explorer_walks_a_qcodes_instrument_and_sets_a_parameter(
    r: Any, serve: Any, quiet: None
) -> None:
    """The explorer's tree: dmm -> ch1 (a Parameter) with set/get forms that reach the gate."""
    pytest.importorskip("ipywidgets")
    mock = pytest.importorskip("qcodes.instrument_drivers.mock_instruments")
    from redisrpc.notebook.explorer import Explorer  # noqa: PLC0415 - needs ipywidgets

    dmm = mock.DummyInstrument("dmm_lab_e", gates=["ch1", "ch2"])
    explorer = Explorer(r, refresh_interval=0, timeout=10)
    try:
        serve(dmm, "dmm")
        wait_for(lambda: explorer.refresh() and explorer.server_names == ["dmm"])
        explorer.select("dmm").result(10)
        children = [b.description for b in explorer.objects_box.children[1].children]
        assert {"ch1 ▸", "ch2 ▸"} <= set(children)
        explorer.select("dmm", "ch1").result(10)
        assert "dmm.ch1" in explorer.header.value and "Parameter" in explorer.header.value
        form = explorer.forms["set"]
        next(iter(form.inputs.values())).value = "2.5"
        form.submit().result(10)
        assert explorer.code.value == "dmm.ch1.set(2.5)" and dmm.ch1() == 2.5
        getter = explorer.forms["get"]
        getter.submit().result(10)
        assert "2.5" in getter.result.text
    finally:
        explorer.close()
        dmm.close()


def test_a_drivers_own_override_of_framework_plumbing_stays_hidden(
    r: Any, serve: Any, quiet: None
) -> None:
    """Real drivers override close/ask/write (QCoDeS's Galil, Keithley 2600; PyMeasure's
    HP34401A): the override is the same plumbing, never a remote call."""
    qcodes_instrument = pytest.importorskip("qcodes.instrument")
    hp = pytest.importorskip("pymeasure.instruments.hp")
    adapters = pytest.importorskip("pymeasure.adapters")
    closed: list[bool] = []

    class Controller(qcodes_instrument.Instrument):  # type: ignore[misc]
        def close(self) -> None:
            closed.append(True)
            super().close()

        def write_raw(self, cmd: str) -> None:
            raise AssertionError("the bus is not remote")

        def ask_raw(self, cmd: str) -> str:
            raise AssertionError("the bus is not remote")

        def home(self) -> str:
            """The driver's own operation."""
            return "homed"

    controller = Controller("ctrl_lab_override")
    meter = hp.HP34401A(adapters.ProtocolAdapter([]))  # nothing may be written to it
    try:
        serve(controller, "ctrl")
        serve(meter, "meter")
        ctrl, dmm = redisrpc.Client(r, "ctrl"), redisrpc.Client(r, "meter")
        assert ctrl.home() == "homed" and "reset" in dir(dmm)
        assert not {"close", "write_raw", "ask_raw"} & set(dir(ctrl))
        assert "write" not in dir(dmm)
        for proxy, name, args in ((ctrl, "close", []), (dmm, "write", ["*RST"])):
            with pytest.raises(redisrpc.RemoteException, match="no exposed member"):
                proxy._rpc_call(name, args, {})
        assert not closed
    finally:
        controller.close()


def test_a_qcodes_parameter_added_while_served_is_reachable(
    r: Any, serve: Any, quiet: None
) -> None:
    """In a notebook the instrument grows while its server runs in a thread: add_parameter."""
    mock = pytest.importorskip("qcodes.instrument_drivers.mock_instruments")
    parameters = pytest.importorskip("qcodes.parameters")
    dmm = mock.DummyInstrument("dmm_lab_grown", gates=["ch1"])
    try:
        serve(dmm, "dmm")
        assert "gain" not in dir(redisrpc.Client(r, "dmm"))
        dmm.add_parameter("gain", parameter_class=parameters.ManualParameter, initial_value=2.0)
        proxy = redisrpc.Client(r, "dmm")
        assert "gain" in dir(proxy)
        assert proxy.gain() == 2.0
        proxy.gain(5.0)
        assert dmm.gain() == 5.0
        dmm.remove_parameter("gain")
        assert "gain" not in dir(redisrpc.Client(r, "dmm"))
    finally:
        dmm.close()
