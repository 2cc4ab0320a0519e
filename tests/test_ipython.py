"""IPython and help(): completion, `?`, help() and signatures of a proxy, with no Redis traffic."""

from __future__ import annotations

import inspect
import pydoc
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import redisrpc

IPython = pytest.importorskip("IPython")
from IPython.core.completer import provisionalcompleter  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402


class Spectrometer:
    """A pretend spectrometer."""

    def __init__(self) -> None:
        self.integration_ms = 100

    def acquire(self, frames: int = 1, *, dark: bool = False) -> list[float]:
        """Acquire a spectrum.

        Averages ``frames`` exposures.
        """
        return [0.0] * frames

    def shutter(self, open_: bool) -> None:
        """Open or close the shutter."""

    def set_grating(self, lines_per_mm: int) -> None:
        """Select a grating."""

    @property
    def temperature(self) -> float:
        """Detector temperature in kelvin."""
        return 230.0


class Recorder:
    """Stands in for the proxy's transport (its only way to Redis) and records any use."""

    def __init__(self) -> None:
        self.used: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.used.append(name)
        raise AssertionError(f"the proxy used Redis: .{name}")


@pytest.fixture
def proxy(r: redis.Redis, serve: Any) -> Iterator[Any]:
    """A described proxy whose server is then stopped and whose Redis records any use."""
    server = serve(Spectrometer(), "spec")
    client = redisrpc.Client(r, "spec", timeout=5)
    server.stop(10)
    real = client._rpc_state.transport
    recorder = Recorder()
    client._rpc_state.transport = recorder
    yield client
    client._rpc_state.transport = real
    assert recorder.used == [], f"Redis was used: {recorder.used}"


@pytest.fixture
def shell(proxy: Any) -> Iterator[Any]:
    """The IPython shell with the proxy as `spec` in its namespace."""
    ip = InteractiveShell.instance()
    ip.user_ns["spec"] = proxy
    saved = ip.Completer.use_jedi
    yield ip
    ip.Completer.use_jedi = saved
    ip.user_ns.pop("spec", None)


def _complete(ip: Any, text: str) -> list[Any]:
    with provisionalcompleter():
        return list(ip.Completer.completions(text, len(text)))


@pytest.mark.parametrize("use_jedi", [True, False])
def test_tab_completion_lists_remote_members(shell, use_jedi):
    """Tab after `spec.` offers the remote methods and properties, with jedi on and off."""
    shell.Completer.use_jedi = use_jedi
    names = {c.text.lstrip(".") for c in _complete(shell, "spec.")}
    assert {"acquire", "shutter", "set_grating", "temperature", "integration_ms"} <= names
    assert not any(n.startswith("_rpc") for n in names)
    prefixed = {c.text.lstrip(".") for c in _complete(shell, "spec.s")}
    assert prefixed == {"set_grating", "shutter"}


def test_jedi_completion_shows_the_remote_signature(shell):
    """With jedi, completing a method shows its remote signature and offers its parameters."""
    shell.Completer.use_jedi = True
    (completion,) = _complete(shell, "spec.acq")
    assert completion.text == "acquire" and completion.type == "function"
    assert "frames: int=1" in completion.signature and "dark: bool=False" in completion.signature
    params = {c.text for c in _complete(shell, "spec.acquire(")}
    assert {"frames=", "dark="} <= params


def test_completing_past_a_property_never_reads_it(shell):
    """`spec.temperature.<Tab>` does not read the remote property."""
    for use_jedi in (True, False):
        shell.Completer.use_jedi = use_jedi
        _complete(shell, "spec.temperature.")


def test_question_mark_shows_signature_and_doc(shell, capsys):
    """`spec.acquire?` shows the remote signature and docstring."""
    info = shell.object_inspect("spec.acquire")
    assert info["found"] and info["docstring"].startswith("Acquire a spectrum.")
    assert info["definition"].endswith("(frames: int = 1, *, dark: bool = False) -> list[float]")
    shell.run_cell("spec.acquire?")
    out = capsys.readouterr().out
    assert "Averages ``frames`` exposures." in out and "dark: bool" in out
    text = shell.object_inspect_text("spec")
    assert "A pretend spectrometer." in text and "Spectrometer" in text


def test_help_shows_the_remote_object(proxy):
    """help() (pydoc) lists remote methods with signatures and docs, and properties."""
    text = pydoc.render_doc(proxy, renderer=pydoc.plaintext)
    assert "class Spectrometer" in text
    assert "A pretend spectrometer." in text
    assert "acquire(frames: int = 1, *, dark: bool = False) -> list[float]" in text
    assert "Acquire a spectrum." in text
    assert "self" not in text  # no `self` on any remote method
    # The client's constructor and the proxy machinery are not the remote object's.
    for plumbing in ("__init__", "__getattr__", "__setattr__", "describe: ", "timeout: ", "_rpc"):
        assert plumbing not in text, plumbing
    assert "temperature" in text and "Detector temperature in kelvin." in text
    method = pydoc.render_doc(proxy.set_grating, renderer=pydoc.plaintext)
    assert "set_grating(lines_per_mm: int) -> None" in method
    assert "Select a grating." in method


def test_signature_dir_and_repr_are_local(proxy):
    """inspect.signature, dir() and repr need no network."""
    assert str(inspect.signature(proxy.shutter)) == "(open_: bool) -> None"
    assert {"acquire", "shutter", "set_grating", "temperature"} <= set(dir(proxy))
    assert repr(proxy).startswith("<redisrpc proxy 'spec': Spectrometer with 3 methods")
    assert proxy.acquire.__name__ == "acquire"
    assert proxy.acquire.__doc__.startswith("Acquire a spectrum.")


def test_display_probes_stay_local(shell, capsys):
    """Displaying the proxy in IPython (rich repr probes) sends nothing to Redis."""
    shell.run_cell("spec")
    shell.run_cell("spec.acquire")
    out = capsys.readouterr().out
    assert "redisrpc proxy 'spec'" in out


def test_no_redis_commands_reach_the_server(r, serve):
    """Measured on the redis-server itself: introspection after the description sends nothing."""
    server = serve(Spectrometer(), "spec")
    client = redisrpc.Client(r, "spec", timeout=5)
    server.stop(10)
    ip = InteractiveShell.instance()
    ip.user_ns["spec"] = client
    r.config_resetstat()
    try:
        for use_jedi in (True, False):
            ip.Completer.use_jedi = use_jedi
            _complete(ip, "spec.")
            _complete(ip, "spec.acquire(")
        ip.object_inspect("spec.acquire")
        pydoc.render_doc(client, renderer=pydoc.plaintext)
        inspect.signature(client.acquire)
        repr(client)
        dir(client)
        assert not hasattr(client, "_repr_latex_")
        stats = r.info("commandstats")
    finally:
        ip.user_ns.pop("spec", None)
    assert set(stats) <= {"cmdstat_config|resetstat", "cmdstat_config", "cmdstat_info"}, stats


def test_question_marks_show_the_remote_definition_not_library_code(shell):
    """`?` names no redisrpc file as the definition; `??` shows signature and docs, no wrapper."""
    for level in (0, 1):
        info = shell.object_inspect("spec.acquire", detail_level=level)
        assert info["found"]
        assert "redisrpc" not in (info["file"] or ""), info["file"]
        assert not info["source"], info["source"]  # never the generic wrapper's body
        assert info["docstring"].startswith("Acquire a spectrum.")
        assert info["definition"].endswith(
            "(frames: int = 1, *, dark: bool = False) -> list[float]"
        )
    direct = shell.inspector.info(type(shell.user_ns["spec"]).acquire, detail_level=1)
    assert "redisrpc" not in (direct["file"] or "") and not direct["source"]
    assert "self" not in direct["definition"]


class Motor:
    """A motor stage."""

    def move(self, mm: float) -> float:
        """Move by ``mm``."""
        if mm > 10:
            raise ValueError(f"{mm} mm is past the end stop")
        return mm


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 keeps the frames")
def test_ipython_shows_a_remote_error_once_then_the_callers_cell(r, serve, capsys):
    """In IPython: the remote traceback once, the cell line, no library frames, the remote type."""
    serve(Motor(), "stage")
    ip = InteractiveShell.instance()
    ip.user_ns["stage"] = redisrpc.Client(r, "stage", timeout=5)
    try:
        capsys.readouterr()
        ip.run_cell("stage.move(20)")
        out = _plain(capsys.readouterr().out)
        ip.run_cell("stage.move(1, 2)")
        wrong = _plain(capsys.readouterr().out)
    finally:
        ip.user_ns.pop("stage", None)
    assert out.count("Remote traceback from stage@") == 1, out
    assert "RemoteTraceback" not in out and out.count("(most recent call last)") == 2, out
    assert "end of remote traceback" in out
    assert "stage.move(20)" in out
    local = out.split("end of remote traceback")[1]
    assert "redisrpc" not in local.replace("RemoteValueError", ""), local
    assert out.rstrip().splitlines()[-1] == "RemoteValueError: 20 mm is past the end stop", out
    assert "TypeError: move() takes 1 positional argument but 2 were given" in wrong
    assert "redisrpc" not in wrong, wrong


def test_pytest_shows_a_remote_error_without_library_frames(r, serve):
    """pytest's report of a remote error: the test's line, the remote part, the remote type."""
    serve(Motor(), "stage")
    stage = redisrpc.Client(r, "stage", timeout=5)
    with pytest.raises(ValueError) as info:
        stage.move(20)
    report = str(info.getrepr(style="long", chain=True))
    assert "stage.move(20)" in report
    assert "proxy.py" not in report and "sync.py" not in report, report
    assert "RemoteValueError: 20 mm is past the end stop" in report
