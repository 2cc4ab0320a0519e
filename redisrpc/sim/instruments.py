"""Simulated lab instruments for demos, tutorials and tests.

A small bench that behaves like real drivers: SI units in every docstring,
range checks that raise :class:`ValueError`, an over-current trip that raises
:class:`OverCurrentError`, an oscilloscope that sees the function generator's
signal, and a linear stage whose moves take real time::

    bench = redisrpc.instruments.bench()      # {"psu", "fgen", "scope", "stage"}
    for name, obj in bench.items():
        redisrpc.Server(redis, name, obj).start()

``redisrpc demo`` serves this bench. Only :meth:`Oscilloscope.acquire` and
:meth:`Oscilloscope.time_axis` need numpy, imported when they are called.
"""

from __future__ import annotations

import importlib
import random
import threading
import time
from collections.abc import Generator
from typing import Any

from ..server.calls import cancelled, progress
from ..server.exposure import expose

__all__ = [
    "FunctionGenerator",
    "InstrumentError",
    "LinearStage",
    "Oscilloscope",
    "OverCurrentError",
    "PowerSupply",
    "bench",
]

_PSU_MAX_VOLTAGE = 30.0
_PSU_MAX_CURRENT = 3.0
_WAVEFORMS = ("sine", "square", "triangle", "sawtooth")
_SCOPE_DIVISIONS = 10  # horizontal divisions on the screen
_SCOPE_VERTICAL_DIVISIONS = 8
_STAGE_TRAVEL_MM = 100.0


class InstrumentError(RuntimeError):
    """An instrument refused or aborted an operation (its state is unchanged or safe)."""


class OverCurrentError(InstrumentError):
    """The over-current protection tripped: the channel's output was switched off."""


def _numpy() -> Any:
    """Import numpy on first use, so the core package works without it."""
    try:
        return importlib.import_module("numpy")
    except ImportError as exc:  # pragma: no cover - numpy is in the notebook extra
        raise InstrumentError(
            "the oscilloscope needs numpy: pip install 'redisrpc[notebook]'"
        ) from exc


def _check_range(name: str, value: Any, low: float, high: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in {unit}, not {type(value).__name__}")
    number = float(value)
    if not (low <= number <= high):
        raise ValueError(f"{name} {number:g} {unit} is out of range [{low:g}, {high:g}] {unit}")
    return number


class _Channel:
    __slots__ = ("current_limit", "load_ohms", "output", "tripped", "voltage")

    def __init__(self) -> None:
        self.voltage = 0.0
        self.current_limit = 1.0
        self.output = False
        self.tripped = False
        self.load_ohms: float | None = None  # None: open circuit


class PowerSupply:
    """Simulated two-channel bench power supply, 0-30 V and 0-3 A per channel.

    Set ``voltage1``/``voltage2`` and ``current_limit1``/``current_limit2``,
    connect a simulated load with :meth:`connect_load`, then :meth:`output_on`.
    When the load would draw more than the current limit, the over-current
    protection trips: the output switches off and the call raises
    :class:`OverCurrentError`; :meth:`clear_trip` re-arms the channel.
    """

    def __init__(self) -> None:
        self._channels = (_Channel(), _Channel())
        self._lock = threading.Lock()

    def _channel(self, channel: int) -> _Channel:
        if channel not in (1, 2):
            raise ValueError(f"channel must be 1 or 2, not {channel!r}")
        return self._channels[channel - 1]

    def _protect(self, channel: int) -> None:
        """Trip the channel if its load draws more than the limit."""
        ch = self._channel(channel)
        if not ch.output or ch.load_ohms is None:
            return
        demand = ch.voltage / ch.load_ohms
        if demand > ch.current_limit:
            ch.output = False
            ch.tripped = True
            raise OverCurrentError(
                f"channel {channel}: load draws {demand:.3g} A at {ch.voltage:g} V, over the"
                f" {ch.current_limit:g} A limit; output switched off (clear_trip({channel}) to"
                " re-arm)"
            )

    def _set_voltage(self, channel: int, volts: float) -> None:
        with self._lock:
            self._channel(channel).voltage = _check_range(
                f"channel {channel} voltage", volts, 0.0, _PSU_MAX_VOLTAGE, "V"
            )
            self._protect(channel)

    def _set_limit(self, channel: int, amps: float) -> None:
        with self._lock:
            self._channel(channel).current_limit = _check_range(
                f"channel {channel} current limit", amps, 0.0, _PSU_MAX_CURRENT, "A"
            )
            self._protect(channel)

    @property
    def idn(self) -> str:
        """Identification string: maker, model, serial number, firmware."""
        return "SIMLAB,PSU-2303,SN0001,1.4.2"

    @property
    def voltage1(self) -> float:
        """Channel 1 output voltage set point in volts (0 to 30 V)."""
        return self._channels[0].voltage

    @voltage1.setter
    def voltage1(self, volts: float) -> None:
        self._set_voltage(1, volts)

    @property
    def voltage2(self) -> float:
        """Channel 2 output voltage set point in volts (0 to 30 V)."""
        return self._channels[1].voltage

    @voltage2.setter
    def voltage2(self, volts: float) -> None:
        self._set_voltage(2, volts)

    @property
    def current_limit1(self) -> float:
        """Channel 1 over-current trip level in amperes (0 to 3 A)."""
        return self._channels[0].current_limit

    @current_limit1.setter
    def current_limit1(self, amps: float) -> None:
        self._set_limit(1, amps)

    @property
    def current_limit2(self) -> float:
        """Channel 2 over-current trip level in amperes (0 to 3 A)."""
        return self._channels[1].current_limit

    @current_limit2.setter
    def current_limit2(self, amps: float) -> None:
        self._set_limit(2, amps)

    def connect_load(self, channel: int, ohms: float | None) -> None:
        """Connect a resistive load of ``ohms`` (> 0) to a channel; None disconnects it.

        Raises OverCurrentError when the output is on and the load draws too much.
        """
        with self._lock:
            ch = self._channel(channel)
            ch.load_ohms = None if ohms is None else _check_range("load", ohms, 1e-3, 1e9, "ohm")
            self._protect(channel)

    def output_on(self, channel: int) -> None:
        """Switch a channel's output on.

        Raises InstrumentError while the channel is tripped, and
        OverCurrentError when the connected load draws more than the limit.
        """
        with self._lock:
            ch = self._channel(channel)
            if ch.tripped:
                raise InstrumentError(
                    f"channel {channel} is tripped by over-current; call clear_trip({channel})"
                )
            ch.output = True
            self._protect(channel)

    def output_off(self, channel: int) -> None:
        """Switch a channel's output off."""
        with self._lock:
            self._channel(channel).output = False

    def clear_trip(self, channel: int) -> None:
        """Re-arm a channel after an over-current trip (the output stays off)."""
        with self._lock:
            self._channel(channel).tripped = False

    def measure(self, channel: int) -> dict[str, float]:
        """Measure a channel's output: ``{"voltage": V, "current": A}``.

        With the output off, or tripped, both read 0.
        """
        with self._lock:
            ch = self._channel(channel)
            if not ch.output:
                return {"voltage": 0.0, "current": 0.0}
            current = 0.0 if ch.load_ohms is None else ch.voltage / ch.load_ohms
            return {"voltage": ch.voltage, "current": round(current, 6)}

    def status(self) -> dict[str, dict[str, Any]]:
        """Every channel's set points, output state and trip state, keyed "1" and "2"."""
        with self._lock:
            return {
                str(i): {
                    "voltage": ch.voltage,
                    "current_limit": ch.current_limit,
                    "output": ch.output,
                    "tripped": ch.tripped,
                    "load_ohms": ch.load_ohms,
                }
                for i, ch in enumerate(self._channels, start=1)
            }


class FunctionGenerator:
    """Simulated single-channel function generator, 1 mHz to 10 MHz, up to 10 Vpp.

    The signal is ``offset + amplitude/2 * shape(frequency * t)``; an
    :class:`Oscilloscope` linked to this generator sees it when ``output`` is on.
    """

    def __init__(self) -> None:
        self._frequency = 1000.0
        self._amplitude = 1.0
        self._offset = 0.0
        self._waveform = "sine"
        self._output = False

    @property
    def idn(self) -> str:
        """Identification string: maker, model, serial number, firmware."""
        return "SIMLAB,FG-1010,SN0002,2.0.1"

    @property
    def frequency(self) -> float:
        """Signal frequency in hertz (0.001 Hz to 10 MHz)."""
        return self._frequency

    @frequency.setter
    def frequency(self, hertz: float) -> None:
        self._frequency = _check_range("frequency", hertz, 1e-3, 1e7, "Hz")

    @property
    def amplitude(self) -> float:
        """Peak-to-peak amplitude in volts (0.001 to 10 Vpp)."""
        return self._amplitude

    @amplitude.setter
    def amplitude(self, volts: float) -> None:
        self._amplitude = _check_range("amplitude", volts, 1e-3, 10.0, "Vpp")

    @property
    def offset(self) -> float:
        """DC offset in volts (-5 to 5 V)."""
        return self._offset

    @offset.setter
    def offset(self, volts: float) -> None:
        self._offset = _check_range("offset", volts, -5.0, 5.0, "V")

    @property
    def waveform(self) -> str:
        """Waveform shape: "sine", "square", "triangle" or "sawtooth"."""
        return self._waveform

    @waveform.setter
    def waveform(self, shape: str) -> None:
        if shape not in _WAVEFORMS:
            raise ValueError(f"waveform must be one of {', '.join(_WAVEFORMS)}, not {shape!r}")
        self._waveform = shape

    @property
    def output(self) -> bool:
        """Whether the output is on (off: the output is 0 V)."""
        return self._output

    @output.setter
    def output(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise TypeError(f"output must be true or false, not {on!r}")
        self._output = on

    def apply(
        self, waveform: str, frequency: float, amplitude: float, offset: float = 0.0
    ) -> dict[str, Any]:
        """Set shape (see ``waveform``), frequency (Hz), amplitude (Vpp) and offset (V) at once.

        Nothing changes unless every value is in range. Returns the new settings.
        """
        trial = FunctionGenerator()
        trial.waveform = waveform
        trial.frequency = frequency
        trial.amplitude = amplitude
        trial.offset = offset
        self._waveform, self._frequency = trial._waveform, trial._frequency
        self._amplitude, self._offset = trial._amplitude, trial._offset
        return self.settings()

    def settings(self) -> dict[str, Any]:
        """All settings as a dict (units: Hz, Vpp, V)."""
        return {
            "waveform": self._waveform,
            "frequency": self._frequency,
            "amplitude": self._amplitude,
            "offset": self._offset,
            "output": self._output,
        }

    def _level(self, t: Any) -> Any:
        """The output voltage at times ``t`` (seconds; a numpy array)."""
        np = _numpy()
        if not self._output:
            return np.zeros_like(t)
        phase = (t * self._frequency) % 1.0
        if self._waveform == "sine":
            shape = np.sin(2 * np.pi * phase)
        elif self._waveform == "square":
            shape = np.where(phase < 0.5, 1.0, -1.0)
        elif self._waveform == "triangle":
            shape = 1.0 - 4.0 * np.abs(phase - 0.5)
        else:
            shape = 2.0 * phase - 1.0
        return self._offset + self._amplitude / 2.0 * shape


class Oscilloscope:
    """Simulated digital oscilloscope with an 8-bit ADC, reading a linked function generator.

    The screen is 10 horizontal divisions of ``timebase`` seconds and 8
    vertical divisions of ``volts_per_div`` volts; samples beyond the screen
    clip, as on a real scope. :meth:`acquire` returns one triggered record.
    """

    def __init__(self, source: FunctionGenerator | None = None, *, seed: int | None = None) -> None:
        self._source = source
        self._timebase = 500e-6
        self._volts_per_div = 0.2
        self._points = 1000
        self._trigger_level = 0.0
        self._noise = 0.01
        self._random = random.Random(seed)

    @property
    def idn(self) -> str:
        """Identification string: maker, model, serial number, firmware."""
        return "SIMLAB,DSO-1104,SN0003,3.1.0"

    @property
    def timebase(self) -> float:
        """Horizontal scale in seconds per division (1 ns to 10 s; 10 divisions)."""
        return self._timebase

    @timebase.setter
    def timebase(self, seconds: float) -> None:
        self._timebase = _check_range("timebase", seconds, 1e-9, 10.0, "s/div")

    @property
    def volts_per_div(self) -> float:
        """Vertical scale in volts per division (1 mV to 10 V; 8 divisions, centred on 0 V)."""
        return self._volts_per_div

    @volts_per_div.setter
    def volts_per_div(self, volts: float) -> None:
        self._volts_per_div = _check_range("volts_per_div", volts, 1e-3, 10.0, "V/div")

    @property
    def points(self) -> int:
        """Samples per acquisition (10 to 100000)."""
        return self._points

    @points.setter
    def points(self, count: int) -> None:
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"points must be an integer, not {count!r}")
        self._points = int(_check_range("points", count, 10, 100_000, "samples"))

    @property
    def trigger_level(self) -> float:
        """Rising-edge trigger level in volts."""
        return self._trigger_level

    @trigger_level.setter
    def trigger_level(self, volts: float) -> None:
        self._trigger_level = _check_range("trigger_level", volts, -50.0, 50.0, "V")

    @property
    def noise(self) -> float:
        """RMS noise of the simulated front end in volts (0 to 1 V)."""
        return self._noise

    @noise.setter
    def noise(self, volts: float) -> None:
        self._noise = _check_range("noise", volts, 0.0, 1.0, "V")

    def time_axis(self) -> Any:
        """Sample times in seconds of an acquisition, as a numpy float64 array."""
        np = _numpy()
        return np.linspace(0.0, self._timebase * _SCOPE_DIVISIONS, self._points, endpoint=False)

    def _trigger_offset(self) -> float:
        """Time of the first rising crossing of the trigger level, or a free-running start."""
        np = _numpy()
        source = self._source
        if source is None or not source.output:
            return self._random.random()
        period = 1.0 / source.frequency
        probe = np.linspace(0.0, period, 2001)
        levels = source._level(probe)
        crossing = np.nonzero(
            (levels[:-1] < self._trigger_level) & (levels[1:] >= self._trigger_level)
        )[0]
        if crossing.size == 0:
            return self._random.random() * period  # no edge at this level: untriggered
        return float(probe[crossing[0]])

    def stream(self, count: int, interval: float = 0.1) -> Generator[Any, None, int]:
        """Acquire ``count`` records, one every ``interval`` seconds, as a stream.

        Each record reaches the caller as it is taken (``for trace in
        scope.stream(10): ...``); returns the number of records taken.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a whole number of records, not {count!r}")
        taken = 0
        for _ in range(count):
            yield self.acquire()
            taken += 1
            time.sleep(max(0.0, float(interval)))
        return taken

    def acquire(self) -> Any:
        """Acquire one record: the input voltage in volts, as a numpy float64 array.

        The record has ``points`` samples over 10 divisions of ``timebase``,
        starts at the trigger, carries the front-end noise, is quantised by
        the 8-bit ADC and clipped to the screen (+-4 divisions).
        """
        np = _numpy()
        t = self.time_axis()
        start = self._trigger_offset()
        signal = self._source._level(t + start) if self._source is not None else np.zeros_like(t)
        rng = np.random.default_rng(self._random.getrandbits(32))
        signal = signal + rng.normal(0.0, self._noise, t.shape) if self._noise else signal
        full_scale = self._volts_per_div * _SCOPE_VERTICAL_DIVISIONS / 2.0
        lsb = 2.0 * full_scale / 255.0
        return np.clip(np.round(signal / lsb) * lsb, -full_scale, full_scale)

    def measure_vpp(self) -> float:
        """Acquire and return the peak-to-peak voltage in volts."""
        trace = self.acquire()
        return float(trace.max() - trace.min())

    def measure_frequency(self) -> float:
        """Acquire and return the frequency in hertz from the rising edges on screen.

        Raises InstrumentError when there is no signal above the noise, or
        fewer than two periods on screen.
        """
        trace = self.acquire()
        low, high = float(trace.min()), float(trace.max())
        # Hysteresis (a Schmitt trigger at 30 % and 70 %) keeps noise from counting as edges.
        below, above = low + 0.3 * (high - low), low + 0.7 * (high - low)
        rising: list[int] = []
        armed = False
        for i, value in enumerate(trace.tolist()):
            if value <= below:
                armed = True
            elif value >= above and armed:
                rising.append(i)
                armed = False
        if high - low < 12 * self._noise + 0.1 * self._volts_per_div:
            raise InstrumentError("no signal above the noise; is the generator's output on?")
        if len(rising) < 3:
            raise InstrumentError("fewer than two periods on screen; increase the timebase")
        dt = self._timebase * _SCOPE_DIVISIONS / self._points
        return float((len(rising) - 1) / ((rising[-1] - rising[0]) * dt))


class LinearStage:
    """Simulated motorised linear stage with 100 mm of travel.

    Moves block for the real travel time (distance / ``velocity``), as a
    driver that waits for "in position" does, reporting progress
    (:func:`redisrpc.progress`) as they go. Targets outside the travel raise
    :class:`ValueError` without moving. :meth:`stop` halts a move where it is;
    a caller who cancels a move (Ctrl-C) stops the stage the same way.
    """

    def __init__(self) -> None:
        self._position = 0.0
        self._velocity = 20.0
        self._homed = False
        self._halt = threading.Event()

    @property
    def idn(self) -> str:
        """Identification string: maker, model, serial number, firmware."""
        return "SIMLAB,LS-100,SN0004,1.0.7"

    @property
    def position(self) -> float:
        """Current position in millimetres (0 to 100 mm)."""
        return round(self._position, 6)

    @property
    def homed(self) -> bool:
        """Whether :meth:`home` ran since power-up (moves need it)."""
        return self._homed

    @property
    def velocity(self) -> float:
        """Move speed in millimetres per second (0.1 to 50 mm/s)."""
        return self._velocity

    @velocity.setter
    def velocity(self, mm_per_s: float) -> None:
        self._velocity = _check_range("velocity", mm_per_s, 0.1, 50.0, "mm/s")

    def _travel(self, target: float) -> float:
        """Move to ``target`` in 50 ms steps; InstrumentError if stopped on the way."""
        self._halt.clear()
        start, distance = self._position, target - self._position
        duration = abs(distance) / self._velocity
        began = time.monotonic()
        while True:
            elapsed = time.monotonic() - began
            fraction = 1.0 if duration <= 0 else min(1.0, elapsed / duration)
            self._position = start + distance * fraction
            if fraction < 1.0 and (self._halt.is_set() or cancelled()):
                raise InstrumentError(f"move stopped at {self.position:.3f} mm")
            done = round(abs(self._position - start), 3)
            progress(done, round(abs(distance), 3), f"at {self._position:.1f} mm")
            if fraction >= 1.0:
                return duration
            self._halt.wait(min(0.05, duration - elapsed))

    def stop(self) -> None:
        """Stop a move where it is (a cancelled move calls this too)."""
        self._halt.set()

    @expose(on_cancel="stop")
    def home(self) -> float:
        """Drive to the 0 mm home switch and zero the position; returns seconds taken."""
        duration = self._travel(0.0)
        self._homed = True
        return duration

    @expose(on_cancel="stop")
    def move_to(self, position: float) -> float:
        """Move to an absolute ``position`` in mm and wait until there; returns the new position.

        Raises InstrumentError before :meth:`home`, ValueError outside 0-100 mm.
        """
        if not self._homed:
            raise InstrumentError("the stage is not homed; call home() first")
        target = _check_range("position", position, 0.0, _STAGE_TRAVEL_MM, "mm")
        self._travel(target)
        return self.position

    @expose(on_cancel="stop")
    def move_by(self, distance: float) -> float:
        """Move by ``distance`` mm (negative: towards home); returns the new position."""
        if isinstance(distance, bool) or not isinstance(distance, (int, float)):
            raise TypeError(f"distance must be a number in mm, not {distance!r}")
        return self.move_to(self._position + float(distance))


def bench(*, seed: int | None = None) -> dict[str, object]:
    """Return a fresh, linked bench: ``psu``, ``fgen``, ``scope`` (reading ``fgen``), ``stage``."""
    fgen = FunctionGenerator()
    return {
        "psu": PowerSupply(),
        "fgen": fgen,
        "scope": Oscilloscope(fgen, seed=seed),
        "stage": LinearStage(),
    }
