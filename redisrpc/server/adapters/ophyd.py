"""ophyd: devices, their components and signals, and status objects as handles.

* A device shows its components as children (``motor.readback.get()``) and
  ``read``, ``describe``, ``read_configuration``, ``describe_configuration``,
  ``trigger``, ``set``, ``stop`` and ``summary``, plus ``position`` where it has
  one; subscriptions, staging and the component machinery stay hidden.
* A signal shows ``get``, ``put``, ``set``, ``read``, ``describe``, its
  ``limits`` and ``connected``.
* ``set()`` and ``trigger()`` return a status: it comes back as a handle the
  caller can ``wait()`` on or poll (``done``, ``success``, ``progress``).
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import PropertySpec, View, make_view

__all__ = ["OphydAdapter"]

_DEVICE_METHODS = (
    "read",
    "describe",
    "read_configuration",
    "describe_configuration",
    "trigger",
    "set",
    "stop",
    "summary",
)
_SIGNAL_METHODS = ("get", "put", "set", "read", "describe", "trigger")


class OphydAdapter:
    """Serves ophyd devices, signals and status objects."""

    module = "ophyd"

    def applies(self, obj: Any) -> bool:
        import ophyd  # noqa: PLC0415
        from ophyd.status import StatusBase  # noqa: PLC0415

        return isinstance(obj, (ophyd.Device, ophyd.Signal, StatusBase))

    def view(self, obj: Any) -> View:
        import ophyd  # noqa: PLC0415

        if isinstance(obj, ophyd.Device):
            return _device(obj)
        if isinstance(obj, ophyd.Signal):
            return _signal(obj)
        return _status(obj)


def _pick(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names if callable(getattr(obj, name, None))}


def _device(device: Any) -> View:
    properties: dict[str, PropertySpec] = {
        "connected": (lambda: bool(device.connected), None, "Whether every signal is connected.")
    }
    if isinstance(inspect.getattr_static(type(device), "position", None), property):
        properties["position"] = (lambda: device.position, None, "The current position.")
    return make_view(
        device,
        doc=inspect.getdoc(device) or f"ophyd device {device.name}",
        methods=_pick(device, _DEVICE_METHODS),
        properties=properties,
        children={name: getattr(device, name) for name in device.component_names},
        data={"name": device.name},
        info={"framework": "ophyd", "name": device.name},
    )


def _signal(signal: Any) -> View:
    properties: dict[str, PropertySpec] = {
        "connected": (lambda: bool(signal.connected), None, "Whether the signal is connected."),
        "limits": (lambda: list(signal.limits), None, "(low, high); (0, 0) means none."),
    }
    return make_view(
        signal,
        doc=inspect.getdoc(signal) or f"ophyd signal {signal.name}",
        methods=_pick(signal, _SIGNAL_METHODS),
        properties=properties,
        data={"name": signal.name},
        info={"framework": "ophyd", "name": signal.name},
    )


def _status(status: Any) -> View:
    def wait(timeout: float | None = None) -> None:
        """Block until the action finishes (or raise its failure); ``timeout`` in seconds."""
        status.wait(timeout)

    def exception() -> str | None:
        """Why the action failed, as text, or None."""
        exc = status.exception(timeout=0) if status.done else None
        return None if exc is None else f"{type(exc).__name__}: {exc}"

    def progress() -> float | None:
        # A move reports where it is between start and target; other statuses only done or not.
        if status.done:
            return 1.0
        start: Any = getattr(status, "start_pos", None)
        target: Any = getattr(status, "target", None)
        device: Any = getattr(status, "device", None)
        try:
            where = device.position
            span = float(target) - float(start)
            return None if span == 0 else max(0.0, min(1.0, (float(where) - float(start)) / span))
        except (AttributeError, TypeError, ValueError):
            return None

    return make_view(
        status,
        doc=(
            f"A running action ({type(status).__name__}): wait() for it, or poll done,"
            " success and progress."
        ),
        methods={"wait": wait, "exception": exception},
        properties={
            "done": (lambda: bool(status.done), None, "Whether the action has finished."),
            "success": (lambda: bool(status.success), None, "Whether it finished well."),
            "elapsed": (lambda: float(status.elapsed), None, "Seconds since it started."),
            "progress": (progress, None, "Fraction done (0..1) where known, else None."),
        },
        info={"framework": "ophyd"},
    )
