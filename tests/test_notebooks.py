"""Every tutorial notebook runs top to bottom on a fresh kernel against a real Redis."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "redisrpc-test"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def kernel_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec running this interpreter, found first on JUPYTER_PATH (works in any venv)."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "redisrpc tests", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return KERNEL


def run(path: Path, kernel: str) -> nbformat.NotebookNode:
    """Execute a notebook in its own directory and return it with outputs."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=120,
        startup_timeout=60,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    """All outputs of all code cells, in order."""
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


TUTORIALS = {
    "quickstart",
    "exploring",
    "instruments",
    "explorer",
    "long-calls",
    "lab-objects",
    "real-setup",
    "measurement-loop",
    "sharing-and-safety",
}


def test_all_tutorials_present():
    """Every tutorial notebook the README lists exists, and the README lists every one."""
    names = {p.stem for p in NOTEBOOKS}
    assert names >= TUTORIALS
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{name}.ipynb`" in readme for name in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs(path):
    """Notebooks are committed without outputs or execution counts."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, redis_url, kernel_here):
    """The notebook executes without an unexpected error, using REDIS_URL."""
    for package in (
        nbformat.read(path, as_version=4).metadata.get("redisrpc", {}).get("requires", [])
    ):
        pytest.importorskip(package)  # e.g. lab-objects needs qcodes and ophyd (the lab extra)
    notebook = run(path, kernel_here)
    found = outputs(notebook)
    text = "".join(o.get("text", "") for o in found if o.get("output_type") == "stream")
    assert f"Using Redis at {redis_url}" in text
    for cell in notebook.cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if "raises-exception" not in cell.metadata.get("tags", []):
            assert not errors, errors
    kinds = {mime for o in found for mime in o.get("data", {})}
    if path.stem == "instruments":
        assert "image/png" in kinds  # the acquired trace was plotted
    if path.stem == "explorer":
        assert WIDGET_VIEW in kinds
        assert "psu.measure(1)" in text
        assert "watched voltage1: 4.2" in text  # the watch followed the change
    if path.stem == "lab-objects":
        assert "[dmm] dmm:" in text  # the remote print, shown here
        assert "MoveStatus" in text and "True True 2.0 2.0" in text
    if path.stem == "real-setup":
        check_real_setup(text)
    if path.stem == "measurement-loop":
        assert "image/png" in kinds  # the live plot
        check_saved_sweep(text)
        watched = cell_outputs(notebook, "amplitude = redisrpc.watch(")
        assert any(WIDGET_VIEW in o.get("data", {}) for o in watched)  # the live value
        assert "the watch shows 0.7 Vpp" in text  # it followed a change made by another process
    if path.stem == "sharing-and-safety":
        check_sharing_and_safety(text)
    if path.stem == "exploring":
        raised = [o for o in found if o.get("output_type") == "error"]
        assert [o["ename"] for o in raised] == ["OverCurrentError"]  # the remote type's name
        assert "remote traceback" in "\n".join(raised[0]["traceback"]).lower()


def cell_outputs(notebook: nbformat.NotebookNode, start: str) -> list[dict]:
    """The outputs of the one code cell whose source starts with ``start``."""
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith(start)]
    return list(cell.outputs)


def check_real_setup(text: str) -> None:
    """The server ran in its own process, answered, was listed, and stopped cleanly."""
    served = re.search(r"served by \S+ process (\d+)", text)
    kernel = re.search(r"this kernel is process (\d+)", text)
    assert served and kernel and served.group(1) != kernel.group(1)
    assert "RemoteValueError - position 150 mm is out of range" in text
    assert re.search(r"^nb\d+:stage +LinearStage +1 ", text, re.M)  # `redisrpc list`
    assert "server exited with code 0" in text and "stopping after the current call" in text
    assert "still registered: False" in text
    assert "ServerGoneError - every registered instance" in text


def check_saved_sweep(text: str) -> None:
    """The sweep's data, settings and figure were saved, and the settings are the scope's."""
    saved = [Path(p) for p in re.findall(r"^saved (\S+) \(\d+ bytes\)$", text, re.M)]
    assert {p.name for p in saved} == {"sweep.csv", "sweep.json", "sweep.png"}
    folder = saved[0].parent
    try:
        metadata = json.loads((folder / "sweep.json").read_text())
        rows = (folder / "sweep.csv").read_text().splitlines()
        assert rows[0] == "set_vpp,measured_vpp,std_vpp" and len(rows) == 13
        assert metadata["instruments"]["scope"]["volts_per_div"] == 0.25
        assert metadata["instruments"]["scope"]["idn"].startswith("SIMLAB,DSO")
        assert metadata["instruments"]["fgen"]["waveform"] == "sine"
        assert metadata["instruments"]["fgen"]["frequency"] == 1000.0
        assert metadata["repeats"] == 5
        clipped = [float(row.split(",")[1]) for row in rows[-3:]]
        assert all(abs(v - 2.0) < 0.05 for v in clipped)  # the screen's full scale
        assert (folder / "sweep.png").stat().st_size > 1000
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert "changed during the sweep: {'fgen.amplitude': (0.2, 2.4)}" in text


def check_sharing_and_safety(text: str) -> None:
    """The lock refused Bob and Carol, the servers refused what they do not serve, the
    interrupted moves stopped the stage, and no hand-made message ran anything."""
    assert "Bob was refused:" in text and "locked by" in text and "'aligning the beam'" in text
    assert "Bob could not take it:" in text and "Bob has the lock now" in text
    assert re.search(r"Bob got the lock after [1-3]\.\d s", text)
    assert "Carol was refused:" in text and "has expired or was released" in text
    assert "readonly  methods: read_power; properties: power_mw (read-only)" in text
    assert "has no exposed member 'set_diode_current'" in text
    assert "property 'power_mw' is read-only" in text
    assert "reached its limit of 1 s" in text and "asked to cancel" in text
    assert "their command exited with 1" in text and "CallCancelledError" in text
    refusals = re.findall(r"^.{42} -> (\w+): ", text, re.M)
    assert refusals == ["AttributeError"] * 4 + ["TypeError"]
