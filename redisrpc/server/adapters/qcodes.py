"""QCoDeS: instruments, channels, channel lists and parameters, without the framework's plumbing.

* An instrument or channel shows its parameters and submodules as children,
  its functions and its driver's own public methods as methods, and
  ``snapshot``, ``print_readable_snapshot``, ``get_idn`` and ``invalidate_cache``;
  ``add_parameter``, ``close_all``, ``record_instance`` and the like stay hidden.
* A parameter is callable, as in QCoDeS: ``dmm.ch1()`` reads, ``dmm.ch1(3.0)``
  sets; ``get()``, ``set()`` and ``get_latest()`` too. Its unit, label and
  validator travel in the description (``info``) and as read-only attributes.
* A channel list (``ChannelList``/``ChannelTuple``) is indexable:
  ``chan.channels[0].temperature()`` (wire path ``"channels.0.temperature"``).
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import View, framework_names, make_view

__all__ = ["QcodesAdapter"]

_PLUMBING_MODULES = ("qcodes.instrument.", "qcodes.metadatable.", "qcodes.utils.")
_KEPT = ("snapshot", "print_readable_snapshot", "get_idn", "invalidate_cache")


def _is_plumbing(klass: type) -> bool:
    module = klass.__module__ or ""
    return module.startswith(_PLUMBING_MODULES) or module in ("builtins", "typing")


def _driver_methods(obj: Any) -> dict[str, Any]:
    """Public methods the driver itself defines (not QCoDeS's base classes), plus _KEPT.

    A driver's override of a base class's name (``close``, ``write_raw``, ``ask``, as
    many real drivers have) stays hidden too: it is the same plumbing, reimplemented.
    """
    plumbing = framework_names(type(obj), _is_plumbing)
    methods: dict[str, Any] = {}
    for klass in reversed(type(obj).__mro__):
        for name, raw in vars(klass).items():
            if name.startswith("_") or isinstance(raw, property):
                continue
            if (
                (name not in plumbing or name in _KEPT)
                and callable(raw)
                and not isinstance(raw, type)
            ):
                methods[name] = getattr(obj, name)
    return methods


class QcodesAdapter:
    """Serves QCoDeS instruments, instrument modules, channel lists and parameters."""

    module = "qcodes"

    def applies(self, obj: Any) -> bool:
        from qcodes.instrument import ChannelTuple, InstrumentBase  # noqa: PLC0415
        from qcodes.parameters import ParameterBase  # noqa: PLC0415

        return isinstance(obj, (InstrumentBase, ChannelTuple, ParameterBase))

    def view(self, obj: Any) -> View:
        from qcodes.instrument import ChannelTuple  # noqa: PLC0415
        from qcodes.parameters import ParameterBase  # noqa: PLC0415

        if isinstance(obj, ParameterBase):
            return _parameter(obj)
        if isinstance(obj, ChannelTuple):
            return make_view(
                obj,
                doc=f"{len(obj)} channels of {obj.full_name}, by index: channels[0] ...",
                items=list(obj),
                data={"names": [channel.short_name for channel in obj]},
                info={"names": [channel.short_name for channel in obj]},
            )
        return _instrument(obj)


def _instrument(obj: Any) -> View:
    def grown() -> dict[str, Any]:
        # Asked again at each scan: add_parameter, add_function and add_submodule work
        # while the instrument is served.
        return {**obj.functions, **obj.parameters, **obj.submodules}

    return make_view(
        obj,
        doc=inspect.getdoc(obj) or f"QCoDeS instrument {obj.full_name}",
        methods=_driver_methods(obj),
        live=grown,
        data={"name": obj.full_name},
        info={"framework": "qcodes", "name": obj.full_name},
    )


def _parameter(param: Any) -> View:
    settable = bool(getattr(param, "settable", True))
    gettable = bool(getattr(param, "gettable", True))
    unit = str(getattr(param, "unit", "") or "")
    label = str(getattr(param, "label", "") or "")
    vals = getattr(param, "vals", None)
    validator = repr(vals) if vals is not None else ""

    def call(*value: Any) -> Any:
        """Read the parameter with no argument; set it with one (as in QCoDeS)."""
        if not value:
            return param()
        param(*value)
        return None

    def get() -> Any:
        """Read the parameter from the instrument."""
        return param.get()

    def set(value: Any) -> None:
        """Set the parameter (checked by its validator first)."""
        param.set(value)

    def get_latest() -> Any:
        """The last value read or set, without asking the instrument."""
        return param.get_latest()

    methods: dict[str, Any] = {"get_latest": get_latest}
    if gettable:
        methods["get"] = get
    if settable:
        methods["set"] = set
    summary = f"{label or param.name} [{unit}]" if unit else (label or param.name)
    doc = f"{summary}\n\n{inspect.getdoc(param) or ''}".strip()
    info = {"unit": unit, "label": label, "validator": validator, "settable": settable}
    return make_view(
        param,
        doc=doc,
        methods=methods,
        data={"unit": unit, "label": label, "validator": validator, "name": param.full_name},
        call=call,
        info=info,
    )
