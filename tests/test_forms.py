"""Call forms: fields from described signatures, JSON-literal inputs, and the code line."""

from __future__ import annotations

import pytest

from redisrpc.notebook.forms import (
    build_call,
    call_code,
    fields_for,
    parse_value,
    setprop_code,
    variable_name,
)
from redisrpc.server.exposure import describe, exposed_members

_SENTINEL = object()


class Sample:
    def plain(self, a, b=2, *, c="x", d=None):
        """A method with defaults."""

    def positional(self, x, y=1, /, z=3):
        """Positional-only parameters."""

    def varargs(self, first, *rest, **options):
        """Variadic parameters."""

    def odd_default(self, when=_SENTINEL):
        """A default with no JSON form."""

    def ramp(self, start=0, stop=10, /):
        """Positional-only parameters, all with defaults."""

    def measure(self, channel, averages=1, *extra):
        """A default before extra positional arguments."""


@pytest.fixture(scope="module")
def methods():
    """The described methods of Sample, by name."""
    payload = describe(Sample(), exposed_members(Sample()), name="sample")
    return {m["name"]: m for m in payload["methods"]}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("2.5e3", 2500.0),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ('"quoted"', "quoted"),
        ("true", True),
        ("True", True),
        ("None", None),
        ("null", None),
        ("sine", "sine"),
        ("two words", "two words"),
    ],
)
def test_parse_value(text, value):
    """JSON literals and Python constants parse; a bare word is a string."""
    assert parse_value(text) == value


@pytest.mark.parametrize("text", ["[1, 2", "{'a': 1}", "1.2.3", '"open'])
def test_parse_value_rejects_broken_literals(text):
    """Text that looks like a literal but is not valid JSON is an error, not a string."""
    with pytest.raises(ValueError, match="not a valid JSON literal"):
        parse_value(text)


def test_fields_prefill_json_defaults(methods):
    """Defaults that travel as JSON pre-fill the field; others appear in the hint."""
    fields = {f.name: f for f in fields_for(methods["plain"])}
    assert fields["a"].required and fields["a"].default_text == ""
    assert fields["b"].default_text == "2" and not fields["b"].required
    assert fields["c"].default_text == '"x"' and fields["c"].kind == "KEYWORD_ONLY"
    assert fields["d"].default_text == "null"
    odd = fields_for(methods["odd_default"])[0]
    assert odd.default_text == "" and "default <object object" in odd.hint and not odd.required


def test_build_call_omits_defaults_and_switches_to_keywords(methods):
    """Untouched defaults are left to the server; after a gap, later positionals go by keyword."""
    fields = fields_for(methods["plain"])
    texts = {f.name: f.default_text for f in fields}
    assert build_call(fields, {**texts, "a": "1"}) == ([1], {})
    assert build_call(fields, {**texts, "a": "1", "b": "5"}) == ([1, 5], {})
    assert build_call(fields, {**texts, "a": "1", "b": "", "d": "[3]"}) == ([1], {"d": [3]})
    with pytest.raises(ValueError, match="a is required"):
        build_call(fields, texts)
    with pytest.raises(ValueError, match=r"b: .*not a valid JSON"):
        build_call(fields, {**texts, "a": "1", "b": "[oops"})


def test_build_call_positional_only_and_varargs(methods):
    """Positional-only fields cannot be skipped; *args takes a list, **kwargs an object."""
    fields = fields_for(methods["positional"])
    assert build_call(fields, {"x": "1", "y": "", "z": "4"}) == ([1], {"z": 4})
    assert build_call(fields, {"x": "1", "y": "2", "z": "4"}) == ([1, 2, 4], {})
    fields = fields_for(methods["varargs"])
    assert build_call(fields, {"first": "0", "rest": "[1, 2]", "options": '{"k": "v"}'}) == (
        [0, 1, 2],
        {"k": "v"},
    )
    with pytest.raises(ValueError, match="JSON list"):
        build_call(fields, {"first": "0", "rest": "3"})
    with pytest.raises(ValueError, match="JSON object"):
        build_call(fields, {"first": "0", "options": "[1]"})


def test_a_default_shown_in_its_field_is_sent_when_a_later_value_goes_by_position(methods):
    """A positional left at the default its field shows is sent when a later one needs it.

    Typing that same value changes nothing (it still equals the default), so refusing
    ("fill in start too") would leave no way to make the call.
    """
    fields = fields_for(methods["ramp"])
    assert build_call(fields, {"start": "0", "stop": "5"}) == ([0, 5], {})
    assert build_call(fields, {"start": "0", "stop": "10"}) == ([], {})
    fields = fields_for(methods["measure"])
    texts = {"channel": "2", "averages": "1"}
    assert build_call(fields, {**texts, "extra": "[7, 8]"}) == ([2, 1, 7, 8], {})
    assert build_call(fields, {**texts, "extra": "[]"}) == ([2], {})
    odd = fields_for(
        {"params": [*methods["odd_default"]["params"], {"name": "more", "kind": "VAR_POSITIONAL"}]}
    )
    with pytest.raises(ValueError, match="more: fill in when to pass extra arguments"):
        build_call(odd, {"when": "", "more": "[1]"})


def test_code_lines():
    """The code line is valid Python equivalent to the call."""
    assert call_code("calc", "add", [5, 2.5], {}) == "calc.add(5, 2.5)"
    assert call_code("lab:psu-1", "set", ["a", None], {"on": True}) == (
        "lab_psu_1.set('a', None, on=True)"
    )
    assert call_code("x", "f", [], {"class": 1, "ok": [1.0, float("inf")]}) == (
        "x.f(ok=[1.0, float(\"inf\")], **{'class': 1})"
    )
    assert setprop_code("psu", "voltage1", 5.0) == "psu.voltage1 = 5.0"
    assert variable_name("3d") == "proxy_3d" and variable_name("class") == "class_"
    compile(call_code("lab:psu-1", "set", ["a", {"b": [1]}], {"c": False}), "<code>", "eval")
