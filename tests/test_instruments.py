"""The simulated bench: range checks, the over-current trip, the scope seeing the generator."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
from conftest import PYTHON, python_env

import redisrpc
from redisrpc.instruments import (
    FunctionGenerator,
    InstrumentError,
    LinearStage,
    Oscilloscope,
    OverCurrentError,
    PowerSupply,
    bench,
)


def test_bench_is_fresh_and_linked():
    """bench() returns the four named instruments, new each time, the scope reading the fgen."""
    first, second = bench(), bench()
    assert sorted(first) == ["fgen", "psu", "scope", "stage"]
    assert first["psu"] is not second["psu"]
    first["fgen"].output = True
    first["fgen"].amplitude = 2.0
    first["scope"].volts_per_div = 0.5
    assert first["scope"].measure_vpp() == pytest.approx(2.0, abs=0.15)
    assert second["scope"].measure_vpp() < 0.1  # its own generator is still off


def test_psu_range_checks_name_the_unit():
    """Out-of-range set points raise ValueError naming the limit and unit, and change nothing."""
    psu = PowerSupply()
    psu.voltage1 = 12
    with pytest.raises(ValueError, match=r"31 V is out of range \[0, 30\] V"):
        psu.voltage1 = 31
    with pytest.raises(ValueError, match="A"):
        psu.current_limit2 = 3.5
    with pytest.raises(TypeError):
        psu.voltage2 = "5"
    with pytest.raises(ValueError, match="channel must be 1 or 2"):
        psu.output_on(3)
    assert psu.voltage1 == 12.0
    assert psu.current_limit2 == 1.0


def test_psu_over_current_trips_and_rearms():
    """A load drawing more than the limit trips the output off; clear_trip re-arms it."""
    psu = PowerSupply()
    psu.voltage1 = 5.0
    psu.current_limit1 = 1.0
    psu.connect_load(1, 10.0)
    psu.output_on(1)
    assert psu.measure(1) == {"voltage": 5.0, "current": 0.5}
    with pytest.raises(OverCurrentError, match=r"0\.75 A at 7\.5 V"):
        psu.voltage1 = 7.5  # 0.75 A is fine... until the limit drops below it
        psu.current_limit1 = 0.5
    status = psu.status()["1"]
    assert status["output"] is False and status["tripped"] is True
    assert psu.measure(1)["current"] == 0.0
    with pytest.raises(InstrumentError, match="tripped"):
        psu.output_on(1)
    psu.clear_trip(1)
    psu.connect_load(1, None)
    psu.output_on(1)
    assert psu.measure(1) == {"voltage": 7.5, "current": 0.0}


def test_fgen_apply_is_all_or_nothing():
    """apply() changes nothing when one value is out of range."""
    fgen = FunctionGenerator()
    with pytest.raises(ValueError, match="waveform"):
        fgen.apply("noise", 10.0, 1.0)
    with pytest.raises(ValueError, match="Vpp"):
        fgen.apply("square", 10.0, 20.0)
    assert fgen.settings()["waveform"] == "sine" and fgen.frequency == 1000.0
    assert fgen.apply("square", 50.0, 2.0, 0.5)["frequency"] == 50.0


@pytest.mark.parametrize("waveform", ["sine", "square", "triangle", "sawtooth"])
def test_scope_sees_generator_frequency_and_amplitude(waveform):
    """The scope's trace has the generator's frequency and peak-to-peak amplitude."""
    fgen = FunctionGenerator()
    scope = Oscilloscope(fgen, seed=1)
    fgen.apply(waveform, 2000.0, 1.5)
    fgen.output = True
    scope.volts_per_div = 0.5
    trace = scope.acquire()
    assert trace.shape == (scope.points,) and trace.dtype == np.float64
    assert scope.measure_frequency() == pytest.approx(2000.0, rel=0.02)
    assert scope.measure_vpp() == pytest.approx(1.5, abs=0.15)


def test_scope_clips_to_screen_and_triggers():
    """Samples beyond +-4 divisions clip; a triggered sine starts near the trigger level."""
    fgen = FunctionGenerator()
    scope = Oscilloscope(fgen, seed=2)
    fgen.amplitude = 4.0
    fgen.output = True
    scope.noise = 0.0
    scope.volts_per_div = 0.1
    trace = scope.acquire()
    assert trace.max() == pytest.approx(0.4) and trace.min() == pytest.approx(-0.4)
    scope.volts_per_div = 1.0
    start = scope.acquire()[:3]
    assert abs(start[0]) < 0.1 and start[2] > start[0]  # rising through 0 V
    assert len(scope.time_axis()) == scope.points


def test_scope_without_signal_raises():
    """Measuring a frequency with the generator off raises InstrumentError."""
    scope = bench()["scope"]
    with pytest.raises(InstrumentError, match="no signal"):
        scope.measure_frequency()


def test_stage_moves_take_real_time():
    """A move blocks for distance / velocity and refuses targets outside the travel."""
    stage = LinearStage()
    with pytest.raises(InstrumentError, match="home"):
        stage.move_to(1.0)
    stage.home()
    stage.velocity = 50.0
    started = time.monotonic()
    assert stage.move_to(10.0) == 10.0
    assert time.monotonic() - started >= 0.19  # 10 mm at 50 mm/s
    with pytest.raises(ValueError, match="mm"):
        stage.move_by(95.0)
    assert stage.position == 10.0


def test_bench_served_over_redis(r, serve):
    """Served, the scope returns a numpy trace and the trip arrives as a RemoteException."""
    instruments = bench(seed=3)
    for name, obj in instruments.items():
        serve(obj, name)
    fgen = redisrpc.Client(r, "fgen", timeout=10)
    scope = redisrpc.Client(r, "scope", timeout=10)
    psu = redisrpc.Client(r, "psu", timeout=10)
    fgen.frequency = 5000.0
    fgen.output = True
    trace = scope.acquire()
    assert isinstance(trace, np.ndarray) and trace.shape == (1000,)
    assert scope.measure_frequency() == pytest.approx(5000.0, rel=0.02)
    psu.voltage2 = 10.0
    psu.connect_load(2, 5.0)
    with pytest.raises(redisrpc.RemoteException) as info:
        psu.output_on(2)
    assert info.value.remote_type == "redisrpc.sim.instruments.OverCurrentError"
    assert "over the 1 A limit" in str(info.value)
    with pytest.raises(ValueError, match="out of range"):
        psu.voltage1 = -1.0


def test_instruments_import_without_numpy():
    """The instruments module, and redisrpc itself, import without numpy."""
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "import redisrpc, redisrpc.instruments as i\n"
        "b = i.bench(); b['psu'].voltage1 = 3\n"
        "print(b['psu'].voltage1)"
    )
    out = subprocess.run(
        [PYTHON, "-c", code],
        check=False,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3.0"
