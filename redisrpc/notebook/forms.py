"""Call forms from described signatures: fields, JSON-literal inputs, and the equivalent code.

The explorer widget builds one text field per parameter of a described
method. This module holds everything about those fields that is not a
widget, so it is testable without Jupyter:

* :func:`fields_for` turns a description entry into :class:`Field` objects
  (default values pre-filled as JSON, annotations as hints);
* :func:`parse_value` reads what a person typed: a JSON literal (``5``,
  ``[1, 2]``, ``{"a": 1}``, ``"text"``, ``true``; Python's ``True``,
  ``False`` and ``None`` too), or else a bare word taken as a string;
* :func:`build_call` turns the typed texts into ``(args, kwargs)``;
* :func:`call_code` and :func:`setprop_code` give the equivalent Python line,
  :func:`member_code` how Python names a child's member, and
  :func:`connect_code` the line that makes the proxy those lines use.

Nothing here evaluates text: parsing is :func:`json.loads` only.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Field",
    "build_call",
    "call_code",
    "connect_code",
    "fields_for",
    "member_code",
    "parse_value",
    "python_literal",
    "setprop_code",
    "variable_name",
]

_PYTHON_CONSTANTS = {"True": True, "False": False, "None": None}
_JSONISH = re.compile(r"^\s*[\[{\"'0-9+\-.]")  # text that was clearly meant as a literal


@dataclass(frozen=True)
class Field:
    """One input of a call form."""

    name: str
    kind: str  # an inspect.Parameter kind name
    default_text: str  # the pre-filled text ("" when there is no JSON default)
    has_default: bool
    hint: str  # placeholder: annotation and non-JSON default

    @property
    def required(self) -> bool:
        """Whether the call fails when this field is left empty."""
        return not self.has_default and self.kind not in ("VAR_POSITIONAL", "VAR_KEYWORD")


def fields_for(entry: dict[str, Any]) -> list[Field]:
    """Return the form fields for one described method (``params`` of ``__describe__``)."""
    params = entry.get("params")
    if not isinstance(params, list):
        params = [
            {"name": "args", "kind": "VAR_POSITIONAL"},
            {"name": "kwargs", "kind": "VAR_KEYWORD"},
        ]
    fields = []
    for p in params:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            continue
        kind = str(p.get("kind", "POSITIONAL_OR_KEYWORD"))
        hints = []
        if isinstance(p.get("annotation"), str):
            hints.append(p["annotation"])
        default_text = ""
        if "default" in p:
            default_text = json.dumps(p["default"])
        elif "default_repr" in p:
            hints.append(f"default {p['default_repr']}")
        if kind == "VAR_POSITIONAL":
            hints.append("JSON list of extra arguments")
        elif kind == "VAR_KEYWORD":
            hints.append("JSON object of extra keyword arguments")
        has_default = "default" in p or "default_repr" in p
        fields.append(Field(p["name"], kind, default_text, has_default, "; ".join(hints)))
    return fields


def parse_value(text: str) -> Any:
    """Read one typed value: a JSON literal, True/False/None, or a bare word as a string.

    Raises ValueError for text that looks like a literal but is not valid
    JSON (``[1, 2``), so a typo is not silently sent as a string.
    """
    stripped = text.strip()
    if stripped in _PYTHON_CONSTANTS:
        return _PYTHON_CONSTANTS[stripped]
    try:
        return json.loads(stripped)
    except ValueError as exc:
        if _JSONISH.match(stripped):
            raise ValueError(f"{stripped[:60]!r} is not a valid JSON literal: {exc}") from None
        return text


_POSITIONAL_KINDS = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
_LEFT = object()  # a positional field left empty or at its default


def build_call(fields: list[Field], texts: dict[str, str]) -> tuple[list[Any], dict[str, Any]]:
    """Turn the typed texts into ``(args, kwargs)``, following the parameter kinds.

    A field left empty, or still holding its default, is omitted so the
    server applies its own default; after such a gap, later positionals go by
    keyword. When a later value can only go by position (positional-only, or
    extra ``*args``), a field left at the JSON default it shows is sent as
    that value: typing the same value would not change the field, so refusing
    would leave no way to make the call. Raises ValueError naming the field
    for a missing required value or unreadable text.
    """
    kwargs: dict[str, Any] = {}
    positional: list[tuple[Field, Any]] = []  # in order; _LEFT when left to the default
    extra: tuple[Field, list[Any]] | None = None
    for field in fields:
        text = texts.get(field.name, "")
        empty = not text.strip() or (field.has_default and text.strip() == field.default_text)
        if empty:
            if field.required:
                raise ValueError(f"{field.name} is required")
            if field.kind in _POSITIONAL_KINDS:
                positional.append((field, _LEFT))
            continue
        try:
            value = parse_value(text)
        except ValueError as exc:
            raise ValueError(f"{field.name}: {exc}") from None
        if field.kind in _POSITIONAL_KINDS:
            positional.append((field, value))
        elif field.kind == "VAR_POSITIONAL":
            if not isinstance(value, list):
                raise ValueError(f"{field.name}: give a JSON list, e.g. [1, 2]")
            extra = (field, value) if value else None
        elif field.kind == "VAR_KEYWORD":
            if not isinstance(value, dict):
                raise ValueError(f'{field.name}: give a JSON object, e.g. {{"key": 1}}')
            kwargs.update(value)
        else:
            kwargs[field.name] = value
    # Every positional up to the last value that can only go by position is sent by position.
    by_position, needed_by = 0, ""
    for i, (field, value) in enumerate(positional):
        if value is not _LEFT and field.kind == "POSITIONAL_ONLY":
            by_position, needed_by = i + 1, field.name
    if extra is not None:
        by_position, needed_by = len(positional), extra[0].name
    args: list[Any] = []
    named: dict[str, Any] = {}
    gap = False
    for i, (field, typed) in enumerate(positional):
        value = typed
        if typed is _LEFT:
            if i >= by_position:
                gap = True
                continue
            if not field.default_text:  # a default known by its repr only cannot be sent
                if extra is not None:
                    raise ValueError(f"{needed_by}: fill in {field.name} to pass extra arguments")
                raise ValueError(f"{needed_by} is positional: fill in {field.name} too")
            value = json.loads(field.default_text)
        if gap:
            named[field.name] = value
        else:
            args.append(value)
    if extra is not None:
        args.extend(extra[1])
    return args, {**named, **kwargs}


def python_literal(value: Any) -> str:
    """Python source for a JSON-like value (``float("nan")`` for non-finite floats)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return repr(value)


def variable_name(service: str) -> str:
    """A Python variable name for a proxy of ``service`` (``"lab:psu-1"`` -> ``lab_psu_1``)."""
    name = re.sub(r"\W", "_", service).strip("_") or "proxy"
    if name[0].isdigit():
        name = f"proxy_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


def call_code(service: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """The Python line equivalent to a call, e.g. ``calc.add(5, y=2)``."""
    parts = [python_literal(a) for a in args]
    for key, value in kwargs.items():
        key_text = key if key.isidentifier() and not keyword.iskeyword(key) else None
        parts.append(f"{key_text}={python_literal(value)}" if key_text else "")
    odd = {k: v for k, v in kwargs.items() if not (k.isidentifier() and not keyword.iskeyword(k))}
    parts = [p for p in parts if p]
    if odd:
        parts.append(f"**{python_literal(odd)}")
    return f"{variable_name(service)}.{method}({', '.join(parts)})"


def setprop_code(service: str, prop: str, value: Any) -> str:
    """The Python line equivalent to setting a property, e.g. ``psu.voltage1 = 5.0``."""
    return f"{variable_name(service)}.{prop} = {python_literal(value)}"


def member_code(path: str, member: str) -> str:
    """How Python names ``member`` of the child at ``path``: ``ch1.measure``, ``channels[0].v``."""
    parts = [f"[{s}]" if s.isdigit() else f".{s}" for s in path.split(".")] if path else []
    return ("".join(parts) + "." + member).lstrip(".")


def connect_code(service: str, url: str | None) -> str:
    """The line making the proxy that :func:`call_code` lines use, runnable as it is.

    ``url`` is the Redis's URL, or None for ``REDIS_URL`` (else localhost):
    ``import redisrpc; calc = redisrpc.Client("redis://host:6379/0", "calc")``.
    """
    # JSON's double-quoted strings are Python literals too, and read as in the README.
    where = "None" if url is None else json.dumps(url)
    return (
        f"import redisrpc; {variable_name(service)} = "
        f"redisrpc.Client({where}, {json.dumps(service)})"
    )
