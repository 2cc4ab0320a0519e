"""The exposure rule, the __describe__ payload and signatures rebuilt from it."""

from __future__ import annotations

import functools
import inspect
import json
import os

import pytest

import redisrpc
from redisrpc.client.signature import signature_from_params
from redisrpc.core.protocol import PROTOCOL_VERSION, decode_value, encode_value
from redisrpc.server.exposure import describe, exposed_members


class Instrument:
    """A pretend lab instrument."""

    mode = "fast"
    Nested = dict  # a class: a namespace, not an operation
    os_module = os

    def __init__(self) -> None:
        self.gain = 2.5
        self._secret = 1
        self.blob = object()  # not a plain data value: not exposed

    def measure(
        self,
        channel: int,
        /,
        samples: int = 10,
        *extra: float,
        unit: str = "V",
        scale: float = 1.0,
        **opts: object,
    ) -> list[float]:
        """Measure a channel.

        Returns the samples.
        """
        return [scale] * samples

    def configure(self, when=object()):  # noqa: B008 - a default JSON cannot carry
        return when

    @property
    def temperature(self) -> float:
        """Sensor temperature in kelvin."""
        return 4.2

    @property
    def setpoint(self) -> float:
        """Target temperature."""
        return self._setpoint

    @setpoint.setter
    def setpoint(self, value: float) -> None:
        self._setpoint = value

    @functools.cached_property
    def expensive(self) -> int:
        raise AssertionError("describing must never read a cached_property")

    @staticmethod
    def version() -> str:
        """The firmware version."""
        return "1.0"

    def _helper(self) -> None:
        pass

    def __call__(self) -> None:
        pass


def test_public_methods_properties_and_plain_data_are_exposed():
    """Without marks: public methods, properties and plain data; nothing private or exotic."""
    members = exposed_members(Instrument())
    assert sorted(members) == [
        "configure",
        "gain",
        "measure",
        "mode",
        "setpoint",
        "temperature",
        "version",
    ]
    assert members["measure"].kind == "method"
    assert members["version"].kind == "method"
    assert (members["temperature"].kind, members["temperature"].readonly) == ("property", True)
    assert (members["setpoint"].kind, members["setpoint"].readonly) == ("property", False)
    assert members["gain"].kind == "attribute"


def test_exposing_never_reads_properties():
    """Classification is static: a property that raises when read is still listed."""

    class Touchy:
        @property
        def boom(self) -> int:
            raise AssertionError("read")

    assert exposed_members(Touchy())["boom"].kind == "property"
    describe(Touchy(), exposed_members(Touchy()), name="t")


def test_allow_list_limits_and_cannot_open_private_names():
    """expose=[...] limits the members; private and dotted names stay closed even if listed."""
    members = exposed_members(
        Instrument(), allow=["measure", "_helper", "__call__", "os_module.system", "missing"]
    )
    assert list(members) == ["measure"]


def test_marked_members_only_once_any_member_is_marked():
    """With @expose on some members only those are exposed, with their options."""

    class Stage:
        @redisrpc.expose
        def move(self, x: float) -> None:
            """Move."""

        def dangerous(self) -> None:
            pass

        @redisrpc.expose(readonly=True, tags={"admin", "safe"})
        @property
        def limit(self) -> float:
            return 1.0

        @redisrpc.expose(tags=["admin"])
        def reset(self) -> None:
            pass

    members = exposed_members(Stage())
    assert sorted(members) == ["limit", "move", "reset"]
    assert members["limit"].readonly and members["limit"].tags == ["admin", "safe"]
    assert members["reset"].tags == ["admin"]
    payload = describe(Stage(), members, name="stage")
    reset = next(m for m in payload["methods"] if m["name"] == "reset")
    assert reset["tags"] == ["admin"]


def _payload(obj: object = None) -> dict:
    obj = obj if obj is not None else Instrument()
    return describe(obj, exposed_members(obj), name="lab", extra={"server": "lab@h:1"})


def test_description_is_plain_json_with_class_doc_and_members():
    """The payload survives the wire unchanged and names class, module, doc and members."""
    payload = _payload()
    assert decode_value(encode_value(payload)) == payload
    assert json.loads(json.dumps(payload)) == payload
    assert payload["protocol"] == PROTOCOL_VERSION
    assert (payload["name"], payload["class"], payload["module"]) == ("lab", "Instrument", __name__)
    assert payload["doc"] == "A pretend lab instrument."
    assert payload["server"] == "lab@h:1"
    assert payload["library"] == f"redisrpc {redisrpc.__version__}"
    assert sorted(m["name"] for m in payload["methods"]) == ["configure", "measure", "version"]
    assert sorted(p["name"] for p in payload["properties"]) == [
        "gain",
        "mode",
        "setpoint",
        "temperature",
    ]


def test_parameters_are_structured():
    """Each parameter has name, kind, JSON default and default text, and annotation text."""
    measure = next(m for m in _payload()["methods"] if m["name"] == "measure")
    assert measure["doc"] == "Measure a channel.\n\nReturns the samples."
    assert measure["returns"] == "list[float]"
    assert measure["params"] == [
        {"name": "channel", "kind": "POSITIONAL_ONLY", "annotation": "int"},
        {
            "name": "samples",
            "kind": "POSITIONAL_OR_KEYWORD",
            "default": 10,
            "default_repr": "10",
            "annotation": "int",
        },
        {"name": "extra", "kind": "VAR_POSITIONAL", "annotation": "float"},
        {
            "name": "unit",
            "kind": "KEYWORD_ONLY",
            "default": "V",
            "default_repr": "'V'",
            "annotation": "str",
        },
        {
            "name": "scale",
            "kind": "KEYWORD_ONLY",
            "default": 1.0,
            "default_repr": "1.0",
            "annotation": "float",
        },
        {"name": "opts", "kind": "VAR_KEYWORD", "annotation": "object"},
    ]


def test_non_json_default_travels_as_text_only():
    """A default JSON cannot carry is described by its repr, never by a value."""
    configure = next(m for m in _payload()["methods"] if m["name"] == "configure")
    (when,) = configure["params"]
    assert "default" not in when
    assert when["default_repr"].startswith("<object object at")
    assert "returns" not in configure


def test_properties_describe_doc_annotation_and_read_only():
    """Properties carry doc, return annotation and read-only; data attributes their type."""
    props = {p["name"]: p for p in _payload()["properties"]}
    assert props["temperature"] == {
        "name": "temperature",
        "readonly": True,
        "kind": "property",
        "doc": "Sensor temperature in kelvin.",
        "annotation": "float",
    }
    assert props["setpoint"]["readonly"] is False
    assert props["gain"] == {
        "name": "gain",
        "readonly": True,  # plain attributes: read-only unless @redisrpc.writable names them
        "kind": "attribute",
        "doc": "",
        "annotation": "float",
    }


def test_builtin_without_signature_is_marked_unknown():
    """A callable with no signature is described as (*args, **kwargs), signature_known false."""

    class Holder:
        def __init__(self) -> None:
            self.smallest = min

    (entry,) = _payload(Holder())["methods"]
    assert entry["signature_known"] is False
    assert [p["kind"] for p in entry["params"]] == ["VAR_POSITIONAL", "VAR_KEYWORD"]


class _Exploding:
    """A callable descriptor whose __get__ raises."""

    def __get__(self, obj: object, owner: object = None) -> object:
        raise RuntimeError("cannot get me")

    def __call__(self) -> None:
        pass


def test_one_odd_member_cannot_break_the_description():
    """A member that fails to describe is listed with an error; the others are intact."""

    class Odd:
        broken = _Exploding()

        def fine(self, x: int) -> int:
            """Fine."""
            return x

        @property
        def weird(self) -> int:
            return 1

    Odd.weird.fget.__signature__ = "not a signature"  # type: ignore[union-attr]
    payload = _payload(Odd())
    methods = {m["name"]: m for m in payload["methods"]}
    assert "RuntimeError: cannot get me" in methods["broken"]["error"]
    assert methods["broken"]["signature_known"] is False
    assert methods["fine"]["doc"] == "Fine."
    (weird,) = payload["properties"]
    assert weird["name"] == "weird" and "error" in weird and weird["readonly"] is True


def test_signature_rebuilt_from_params_matches_the_original():
    """signature_from_params gives back the signature the server described, as text."""
    measure = next(m for m in _payload()["methods"] if m["name"] == "measure")
    sig = signature_from_params(measure["params"], measure["returns"])
    original = inspect.signature(Instrument().measure, eval_str=True)
    assert str(sig) == str(original)
    assert list(sig.parameters) == list(original.parameters)
    assert sig.parameters["samples"].default == 10


def test_signature_text_is_never_evaluated(tmp_path):
    """Annotations and default texts that look like code are shown, never run."""
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    sig = signature_from_params(
        [{"name": "x", "kind": "POSITIONAL_OR_KEYWORD", "annotation": code, "default_repr": code}],
        code,
    )
    str(sig)
    repr(sig.parameters["x"].default)
    assert code in str(sig)
    assert not marker.exists()


@pytest.mark.parametrize(
    "params",
    [
        None,
        "x",
        [{"name": "x"}],
        [{"name": "x", "kind": "SIDEWAYS"}],
        [{"kind": "KEYWORD_ONLY"}],
        [{"name": "a", "kind": "KEYWORD_ONLY"}, {"name": "b", "kind": "POSITIONAL_ONLY"}],
        [{"name": "not an identifier", "kind": "KEYWORD_ONLY"}],
    ],
)
def test_invalid_params_fall_back_to_args_kwargs(params):
    """A description the client cannot use gives (*args, **kwargs), never an exception."""
    assert str(signature_from_params(params)) == "(*args, **kwargs)"
