"""PyMeasure: instruments and their channels, controls as properties.

Controls and measurements (``Instrument.control``, ``measurement``,
``setting``) are properties (``psu.ch_1.voltage = 5``); channels are children
(``psu.ch_1``, and ``psu.channels[0]`` by index); the driver's own methods and
``reset``, ``clear``, ``shutdown`` and ``check_errors`` are methods. The raw
I/O (``ask``, ``write``, ``read``, ``values``, ...) and the adapter stay
hidden: remote callers use the driver, not the bus.
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import PropertySpec, View, framework_names, make_view

__all__ = ["PymeasureAdapter"]

_KEPT_METHODS = ("reset", "clear", "shutdown", "check_errors")
_KEPT_PROPERTIES = ("id",)


def _base(klass: type) -> bool:
    return (klass.__module__ or "").startswith("pymeasure.instruments.") and klass.__name__ in (
        "CommonBase",
        "Instrument",
        "Channel",
        "SCPIMixin",
    )


def _forward(obj: Any, name: str, raw: property) -> PropertySpec:
    setter = (lambda value: setattr(obj, name, value)) if raw.fset is not None else None
    return (lambda: getattr(obj, name), setter, inspect.getdoc(raw) or "")


class PymeasureAdapter:
    """Serves PyMeasure instruments and channels."""

    module = "pymeasure"

    def applies(self, obj: Any) -> bool:
        from pymeasure.instruments.common_base import CommonBase  # noqa: PLC0415

        return isinstance(obj, CommonBase)

    def view(self, obj: Any) -> View:
        from pymeasure.instruments.common_base import CommonBase  # noqa: PLC0415

        methods: dict[str, Any] = {}
        properties: dict[str, PropertySpec] = {}
        # A driver's override of a base class's name (HP34401A's ``write``) is still the bus.
        hidden = framework_names(type(obj), _base)
        for klass in reversed(type(obj).__mro__):
            if klass is object:
                continue
            base = _base(klass)
            for name, raw in vars(klass).items():
                if name.startswith("_"):
                    continue
                if isinstance(raw, property):
                    if not base or name in _KEPT_PROPERTIES:
                        properties[name] = _forward(obj, name, raw)
                elif (
                    callable(raw)
                    and not isinstance(raw, (type, staticmethod, classmethod))
                    and ((not base and name not in hidden) or name in _KEPT_METHODS)
                ):
                    methods[name] = getattr(obj, name)
        children = {
            name: value
            for name, value in vars(obj).items()
            if not name.startswith("_") and isinstance(value, CommonBase) and name != "parent"
        }
        channels = list(getattr(obj, "channels", {}).values())
        if channels:
            children["channels"] = channels
        return make_view(
            obj,
            doc=inspect.getdoc(obj) or f"PyMeasure instrument {getattr(obj, 'name', '')}",
            methods=methods,
            properties=properties,
            children=children,
            data={"name": str(getattr(obj, "name", ""))},
            info={"framework": "pymeasure"},
        )
