"""Nested objects over the wire: dotted member paths, child descriptions and child proxies."""

from __future__ import annotations

import asyncio
import inspect
import json
import secrets
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import redisrpc
from redisrpc.core.protocol import Request, decode_reply, encode_request
from redisrpc.server.dispatch import Dispatcher
from redisrpc.server.paths import MAX_DEPTH


class Channel:
    """One output channel."""

    def __init__(self, index: int) -> None:
        self.index = index
        self._voltage = 0.0
        self._secret_ran = False
        self.limit = 10.0

    @property
    def voltage(self) -> float:
        """The set voltage, in V."""
        return self._voltage

    @voltage.setter
    def voltage(self, value: float) -> None:
        self._voltage = float(value)

    def measure(self, samples: int = 1) -> float:
        """Measure the output voltage."""
        return self._voltage + 0.001 * samples

    def _secret(self) -> str:
        self._secret_ran = True
        return "secret"


class Group:
    """A group of channels."""

    def __init__(self) -> None:
        self.left = Channel(10)

    def count(self) -> int:
        """How many channels."""
        return 1


@redisrpc.writable("note")
class Supply:
    """A two-channel supply."""

    MAX_MM = 25.0
    note = ""

    def __init__(self) -> None:
        self.ch1 = Channel(1)
        self.ch2 = Channel(2)
        self.channels = [Channel(3), Channel(4), Channel(5)]
        self.group = Group()

    def idn(self) -> str:
        """Identify."""
        return "supply"


def _dispatcher(obj: Any, **options: Any) -> Dispatcher:
    return Dispatcher(obj, "svc", ident="svc@test", max_message_size=1 << 20, **options)


def _call(dispatcher: Dispatcher, name: str, *args: Any) -> dict[str, Any]:
    raw = encode_request(Request(name, list(args), {}, "svc:rpc:1", secrets.token_hex(8)))
    _, data = dispatcher.handle(raw, now_ms=lambda: 0, check=lambda _: None, describe_extra=dict)
    assert data is not None
    return json.loads(data)  # type: ignore[no-any-return]


def test_dotted_names_reach_children_methods_and_properties() -> None:
    supply = Supply()
    d = _dispatcher(supply)
    assert _call(d, "ch1.measure", 2)["return_value"] == pytest.approx(0.002)
    assert _call(d, "__setprop__", "ch2.voltage", 5)["return_value"] is None
    assert supply.ch2.voltage == 5.0
    assert _call(d, "__getprop__", "ch2.voltage")["return_value"] == 5.0
    assert _call(d, "channels.1.measure")["return_value"] == pytest.approx(0.001)
    assert _call(d, "group.left.measure")["return_value"] == pytest.approx(0.001)
    assert _call(d, "__getprop__", "channels.2.index")["return_value"] == 5


def test_root_description_lists_children_and_child_descriptions_their_members() -> None:
    d = _dispatcher(Supply())
    root = _call(d, "__describe__")["return_value"]
    objects = {o["name"]: o for o in root["objects"]}
    assert objects["ch1"]["class"] == "Channel" and objects["ch1"]["doc"] == "One output channel."
    assert objects["channels"]["items"] == 3
    child = _call(d, "__describe__", "ch1")["return_value"]
    assert child["path"] == "ch1" and child["class"] == "Channel"
    assert {m["name"] for m in child["methods"]} == {"measure"}
    assert {p["name"] for p in child["properties"]} == {"voltage", "index", "limit"}
    listing = _call(d, "__describe__", "channels")["return_value"]
    assert listing["items"] == 3 and listing["methods"] == [] and listing["properties"] == []


@pytest.mark.parametrize(
    ("name", "args", "fragment"),
    [
        ("ch1._secret", [], "is private"),
        ("ch1.__class__", [], "is private"),
        ("__getprop__", ["ch1.__dict__"], "is private"),
        ("ch1.measure.__call__", [], "is private"),
        ("ch1.measure.real", [], "is a method"),
        ("ch1.index.real", [], "is a attribute"),
        ("ch1.voltage.real", [], "is a property"),
        ("channels.7.measure", [], "out of range"),
        ("channels.append", [], "no exposed member"),
        ("ch1.0", [], "has no items"),
        ("a.b.c.d.e.f.g.h.i", [], f"deeper than {MAX_DEPTH}"),
        ("ch1..measure", [], "is not a name"),
        ("ch1.measure ", [], "is not a name"),
        ("@" + "0" * 32 + ".wait", [], "released or expired"),
        ("__describe__", ["ch1._secret"], "is private"),
        ("__setprop__", ["MAX_MM", 99], "read-only"),
        ("__setprop__", ["ch1.limit", 99], "read-only"),
    ],
)
def test_hostile_paths_are_refused_and_nothing_private_runs(
    name: str, args: list[Any], fragment: str
) -> None:
    supply = Supply()
    d = _dispatcher(supply)
    reply = _call(d, name, *args)
    assert "error" in reply, reply
    assert fragment in reply["error"]["message"]
    assert not supply.ch1._secret_ran
    assert supply.MAX_MM == 25.0 and supply.ch1.limit == 10.0


def test_writable_marks_plain_attributes_that_callers_may_assign() -> None:
    supply = Supply()
    d = _dispatcher(supply)
    assert _call(d, "__setprop__", "note", "calibrated")["return_value"] is None
    assert supply.note == "calibrated"
    props = {p["name"]: p for p in _call(d, "__describe__")["return_value"]["properties"]}
    assert props["MAX_MM"]["readonly"] is True and props["note"]["readonly"] is False


_segment = st.one_of(
    st.sampled_from(["ch1", "channels", "0", "9", "_x", "__class__", "measure", "", "@"]),
    st.text(max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_segment, min_size=1, max_size=10), st.sampled_from(["call", "get", "describe"]))
def test_garbage_paths_never_run_anything_private(segments: list[str], how: str) -> None:
    supply = Supply()
    d = _dispatcher(supply)
    path = ".".join(segments)
    if how == "call":
        reply = _call(d, path)
    elif how == "get":
        reply = _call(d, "__getprop__", path)
    else:
        reply = _call(d, "__describe__", path)
    assert not supply.ch1._secret_ran
    if any(s.startswith("_") for s in segments):
        assert "error" in reply
    decode_reply(json.dumps(reply))  # always a well-formed reply


def test_child_proxies_explore_and_call_at_every_level(r: Any, serve: Any) -> None:
    supply = Supply()
    serve(supply, "psu")
    psu = redisrpc.Client(r, "psu")
    assert "ch1" in dir(psu) and "channels" in dir(psu)
    ch1 = psu.ch1
    assert ch1 is psu.ch1  # cached: described once
    assert "measure" in dir(ch1)
    assert str(inspect.signature(ch1.measure)) == "(samples: int = 1) -> float"
    assert ch1.measure.__doc__ == "Measure the output voltage."
    psu.ch1.voltage = 3.5
    assert supply.ch1.voltage == 3.5 and psu.ch1.voltage == 3.5
    assert psu.ch1.measure(samples=3) == pytest.approx(3.503)
    assert len(psu.channels) == 3
    assert [c.index for c in psu.channels] == [3, 4, 5]
    assert psu.channels[-1].index == 5
    assert psu.group.left.measure() == pytest.approx(0.001)
    assert "psu.ch1" in repr(ch1)
    with pytest.raises(AttributeError):
        psu.ch1 = 5  # a child is not assignable
    with pytest.raises(AttributeError):
        psu.MAX_MM = 99.0  # read-only by default
    assert supply.MAX_MM == 25.0
    with pytest.raises(IndexError):
        psu.channels[3]


def test_async_children_are_called_and_described_on_await(r: Any, serve: Any) -> None:
    serve(Supply(), "psu")

    async def main() -> None:
        psu = await redisrpc.AsyncClient(r, "psu")
        assert await psu.ch1.measure() == pytest.approx(0.001)
        ch2 = await psu.ch2
        assert "measure" in dir(ch2)
        assert await psu.channels[1].measure(2) == pytest.approx(0.002)

    asyncio.run(main())
