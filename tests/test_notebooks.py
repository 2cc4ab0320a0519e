"""Every tutorial notebook runs top to bottom on a fresh kernel against a real Redis."""

from __future__ import annotations

import json
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


def test_all_tutorials_present():
    """The four tutorial notebooks exist."""
    names = {p.stem for p in NOTEBOOKS}
    assert {"quickstart", "exploring", "instruments", "explorer"} <= names


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
    if path.stem == "exploring":
        raised = [o for o in found if o.get("output_type") == "error"]
        assert [o["ename"] for o in raised] == ["OverCurrentError"]  # the remote type's name
        assert "remote traceback" in "\n".join(raised[0]["traceback"]).lower()
