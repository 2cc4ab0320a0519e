"""A watched value as a live Jupyter widget: what ``redisrpc.watch(...)`` displays as.

::

    volts = redisrpc.watch(psu, "voltage1")
    volts                  # psu.voltage1  1.5  changed 12:03:04  ▁▂▅▇ (numbers)

The widget follows the watch's values (see :meth:`redisrpc.Watch.observe`):
the value, when it last changed, the error of a failed read in one line, and
for numbers a small step plot of the recent changes (an inline SVG, so no
plotting library and no front-end build are needed). It is pure ipywidgets.
"""

from __future__ import annotations

import html
import math
import time
from collections import deque
from numbers import Real
from typing import Any

import ipywidgets as widgets

from ..client.watch import Watch

__all__ = ["LiveValue", "format_value", "sparkline"]

_POINTS = 120  # changes kept for the plot
_WIDTH, _HEIGHT = 160, 28


def format_value(value: Any) -> str:
    """A short text of a value: numbers to 6 significant digits, arrays by shape and dtype."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, Real):
        number = float(value)
        return f"{number:.6g}" if isinstance(value, float) else str(value)
    shape = getattr(value, "shape", None)
    if shape is not None and getattr(value, "dtype", None) is not None:
        return f"array{tuple(shape)} {value.dtype}"
    text = repr(value)
    return text if len(text) <= 120 else text[:119] + "…"


def sparkline(points: list[tuple[float, float]], now: float) -> str:
    """An SVG step plot of (time, value) points, held at the last value until ``now``."""
    finite = [(t, v) for t, v in points if math.isfinite(v)]
    if not finite:
        return ""
    start = finite[0][0]
    span = max(now - start, 1e-9)
    low = min(v for _, v in finite)
    high = max(v for _, v in finite)
    rise = (high - low) or 1.0

    def xy(t: float, v: float) -> str:
        x = (t - start) / span * (_WIDTH - 2) + 1
        y = _HEIGHT - 2 - (v - low) / rise * (_HEIGHT - 4)
        return f"{x:.1f},{y:.1f}"

    steps: list[str] = []
    for index, (t, v) in enumerate(finite):
        if index:
            steps.append(xy(t, finite[index - 1][1]))
        steps.append(xy(t, v))
    steps.append(xy(now, finite[-1][1]))
    return (
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="recent values">'
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5"'
        f' points="{" ".join(steps)}"/>'
        "</svg>"
        # The scale: the plot has no axes, so its range is said beside it.
        f'<span style="font-size:80%;opacity:.7;margin-left:.4em">'
        f"{html.escape(format_value(low))} to {html.escape(format_value(high))}</span>"
    )


class LiveValue:
    """The live display of one :class:`~redisrpc.Watch` (``widget`` is the ipywidget)."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self._points: deque[tuple[float, float]] = deque(maxlen=_POINTS)
        name = widgets.HTML(f"<b>{html.escape(watch.label)}</b>")
        self.value = widgets.HTML(layout=widgets.Layout(min_width="6em"))
        self.status = widgets.HTML()
        self.plot = widgets.HTML()
        self.widget = widgets.HBox(
            [name, self.value, self.plot, self.status],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center", grid_gap="0 1em"),
        )
        self.widget.add_class("redisrpc-live")
        self._forget = watch.observe(self.update)
        self.update(watch)

    def update(self, watch: Watch) -> None:
        """Show the watch's newest value or error (called from its reader)."""
        if watch.closed:
            self.status.value = "<i>closed</i>"
            self._forget()
            return
        if watch.values == 0:
            self.value.value = "<i>waiting for the first value…</i>"
            return
        latest = watch.latest
        self.value.value = f"<code>{html.escape(format_value(latest))}</code>"
        changed = time.strftime("%H:%M:%S", time.localtime(watch.updated or time.time()))
        if watch.error is not None:
            message = f"{type(watch.error).__name__}: {watch.error}".splitlines()[0][:160]
            self.status.value = (
                f'<span style="color:#b00020" title="{html.escape(str(watch.error))}">'
                f"read failed at {changed}: {html.escape(message)}</span>"
            )
            return
        self.status.value = f'<span style="opacity:.7">changed {changed}</span>'
        if isinstance(latest, Real) and not isinstance(latest, bool):
            self._points.append((watch.updated or time.time(), float(latest)))
            self.plot.value = sparkline(list(self._points), time.time())

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
