"""The explorer in a real JupyterLab page, rendered by headless Chromium (``-m browser``).

Needs Debian's chromium, JupyterLab and the playwright package (``.[browser]``);
Playwright drives /usr/bin/chromium and never downloads a browser. Skipped
when any is missing, except under CI=true, where it must run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import ROOT, free_port

from redisrpc.instruments import LinearStage, bench
from redisrpc.sim.demo import Calculator

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = ROOT / "test-artifacts"

# What the layout must hold at any width: no visible button with its label cut ("G..."),
# nothing visible reaching past the explorer's right edge, the explorer inside its output.
NOTHING_CUT = """() => {
  const root = document.querySelector('.redisrpc-explorer');
  const out = root.closest('.jp-OutputArea-output') || root.parentElement;
  const edge = Math.min(root.getBoundingClientRect().right, out.getBoundingClientRect().right);
  const bad = [];
  if (root.getBoundingClientRect().right > out.getBoundingClientRect().right + 1)
    bad.push('explorer wider than its output');
  for (const el of root.querySelectorAll('*')) {
    if (el.offsetParent === null || el.getBoundingClientRect().width === 0) continue;
    const label = el.tagName + ' ' +
      (el.textContent || el.value || el.placeholder || '').trim().slice(0, 30);
    if (el.tagName === 'BUTTON' && el.scrollWidth > el.clientWidth + 1)
      bad.push('label cut: ' + label);
    if (el.getBoundingClientRect().right > edge + 1) bad.push('past the edge: ' + label);
  }
  return bad;
}"""
KERNEL = "redisrpc-browser"


def _chromium() -> str:
    """The path of Debian's chromium, or skip (fail under CI)."""
    binary = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    missing = [
        what
        for what, ok in [
            ("chromium", binary is not None),
            ("jupyterlab", importlib.util.find_spec("jupyterlab") is not None),
            ("playwright", importlib.util.find_spec("playwright") is not None),
        ]
        if not ok
    ]
    if missing:
        message = (
            f"browser test needs {', '.join(missing)} (pip install '.[browser]'; apt chromium)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert binary is not None
    return binary


def _write_lab_home(home: Path) -> dict[str, str]:
    """A private Jupyter home: our kernelspec, quiet lab settings; returns the environment."""
    spec = home / "data" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "redisrpc", "language": "python"})
    )
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = dict(os.environ)
    env.update(
        JUPYTER_PATH=str(home / "data"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


LONG_CALLS = [
    "import redisrpc\nexplorer = redisrpc.explore(refresh_interval=1.0)\n"
    'explorer.select("stage")\nexplorer',
    'stage = redisrpc.Client(None, "stage")\nstage.velocity = 8.0\nstage.home()\n'
    "stage.move_to(20)  # 2.5 s: a progress bar shows after half a second",
]


WATCH_CELL = (
    'import redisrpc\npsu = redisrpc.Client(None, "psu")\n'
    'volts = redisrpc.watch(psu, "voltage1", interval=0.5)\nvolts'
)


@pytest.fixture
def lab(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on a free port with three notebooks: explorer, long calls, a watch."""
    _chromium()
    root = tmp_path / "root"
    root.mkdir()
    for name, cells in [
        ("explore", ["import redisrpc\nredisrpc.explore(refresh_interval=1.0)"]),
        ("long-calls", LONG_CALLS),
        ("watch", [WATCH_CELL]),
    ]:
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        notebook.metadata["kernelspec"] = {
            "name": KERNEL,
            "display_name": "redisrpc",
            "language": "python",
        }
        nbformat.write(notebook, root / f"{name}.ipynb")
    env = _write_lab_home(tmp_path / "home")
    port, token = free_port(), secrets.token_hex(16)
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--LabApp.extension_manager=readonly",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()}")
                time.sleep(0.25)
        yield base, token
    finally:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@contextlib.contextmanager
def _page(*, width: int, height: int) -> Iterator[Any]:
    """A page of headless Chromium (Playwright) at this viewport; the browser closes after."""
    sync_playwright = importlib.import_module("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def _open(page: Any, base: str, token: str, name: str) -> None:
    """Open a notebook of the lab fixture, wait for its kernel, and run all its cells."""
    page.goto(f"{base}/lab/tree/{name}.ipynb?token={token}")
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session",
        timeout=90_000,
    )
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def test_long_call_shows_progress_and_the_explorer_cancels_a_running_call(lab, serve, redis_url):
    """A move shows a progress bar in its cell; another's move shows in the explorer; Cancel."""
    stage = LinearStage()
    serve(stage, "stage")
    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "long-calls-jupyterlab.png"
    colleague = (
        "import redisrpc\n"
        f"stage = redisrpc.Client({redis_url!r}, 'stage', timeout=60)\n"
        "stage.velocity = 1.0\n"
        "try:\n    stage.move_to(90)\n"
        "except redisrpc.CallCancelledError as exc:\n    print('cancelled:', exc)\n"
    )
    with _page(width=1400, height=1200) as page:
        _open(page, base, token, "long-calls")
        # The move's cell shows a tqdm bar (an ipywidgets progress bar) that reaches 100%.
        page.wait_for_selector(".jp-OutputArea .widget-hprogress", timeout=90_000)
        page.wait_for_function("() => document.body.textContent.includes('20/20')", timeout=60_000)
        # The explorer's own calls (waiting behind the move) draw no bars in whichever
        # cell runs: "Running now" shows them.
        assert "waiting behind" not in page.locator(".jp-OutputArea").last.text_content()
        # Someone else's long move shows under "Running now", with a Cancel button.
        other = subprocess.Popen(
            [sys.executable, "-c", colleague],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            mark = f":{other.pid} ·"  # the colleague's call, not a stale row of ours
            page.wait_for_function(
                "mark => document.querySelector('.redisrpc-explorer').textContent"
                ".replace(/\\u00a0/g, ' ').includes(mark)",
                arg=mark,
                timeout=60_000,
            )
            page.screenshot(path=str(shot), full_page=True)
            row = page.locator(".redisrpc-explorer .widget-hbox", has_text=f":{other.pid}")
            row.get_by_role("button", name="Cancel").click()
            out, _ = other.communicate(timeout=30)
        finally:
            if other.poll() is None:
                other.kill()
        assert out.startswith("cancelled:") and "cancelled by" in out
        assert stage.position < 90
        page.wait_for_function(
            "() => !document.querySelector('.redisrpc-explorer').textContent"
            ".includes('Running now')",
            timeout=30_000,
        )
    assert shot.stat().st_size > 10_000


def test_explorer_renders_live_servers_in_jupyterlab(lab, serve, redis_url):
    """The explorer in a JupyterLab page: servers, live values set by another process, a call,
    a compact error, the layout at 1600 and 400 px, and a server that goes."""
    names = ["calc", "fgen", "psu", "scope", "stage"]
    calc = serve(Calculator(), "calc")
    for name, obj in bench().items():
        serve(obj, name)
    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "explorer-jupyterlab.png"
    with _page(width=1400, height=1400) as page:
        _open(page, base, token, "explore")
        options = page.locator(".redisrpc-explorer select option")
        try:
            page.wait_for_function(
                "names => { const shown = Array.from(document.querySelectorAll("
                "'.redisrpc-explorer select option'))"
                ".map(o => o.textContent.replace(/\\u00a0/g, ' '));"
                " return names.every(n => shown.some(s => s.startsWith(n + ' · live'))); }",
                arg=names,
                timeout=90_000,
            )
        finally:
            page.screenshot(path=str(shot), full_page=True)
        # ipywidgets shows labels with non-breaking spaces
        labels = options.all_text_contents()
        assert [label.replace("\xa0", " ").split(" · ")[0] for label in labels] == names
        page.locator(".redisrpc-explorer select").select_option(label=labels[2])
        page.wait_for_function(
            "() => document.querySelector('.redisrpc-explorer').textContent"
            ".includes('PowerSupply')",
            timeout=60_000,
        )
        # Its properties are watched: read within an interval, and another process's
        # Set shows by itself.
        page.wait_for_function(
            "() => !document.querySelector('.redisrpc-explorer').textContent"
            ".includes('not read yet')",
            timeout=30_000,
        )
        setter = "import sys, redisrpc\nredisrpc.Client(sys.argv[1], 'psu').voltage2 = 7.25\n"
        subprocess.run(
            [sys.executable, "-c", setter, redis_url],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=True,
            timeout=60,
        )
        voltage2 = page.locator(".redisrpc-explorer .widget-hbox", has_text="voltage2")
        voltage2.filter(has_text="7.25").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "explorer-live-value.png"), full_page=True)
        # Call psu.measure(1) from its form, as a person would.
        page.get_by_text("measure(channel: int)").first.click()
        page.get_by_label("channel", exact=True).filter(visible=True).first.fill("1")
        page.get_by_role("button", name="Call").filter(visible=True).first.click()
        page.wait_for_function(
            "() => document.querySelector('.redisrpc-explorer').textContent"
            ".includes(\"{'voltage': 0.0, 'current': 0.0}\")",
            timeout=60_000,
        )
        assert "psu.measure(1)" in page.locator(".redisrpc-explorer input").evaluate_all(
            "inputs => inputs.map(i => i.value).join('\\n')"
        )
        page.screenshot(path=str(shot), full_page=True)
        # A property Set out of range: one error line, the traceback behind a toggle.
        row = page.locator(".redisrpc-explorer .widget-hbox", has_text="voltage1").last
        row.locator("input").fill("99")
        row.get_by_role("button", name="Set").click()
        page.wait_for_function(
            "() => document.querySelector('.redisrpc-explorer').textContent"
            ".includes('out of range')",
            timeout=60_000,
        )
        assert not page.get_by_text("remote traceback").first.is_visible()
        page.get_by_role("button", name="traceback").filter(visible=True).first.click()
        page.get_by_text("remote traceback").first.wait_for(state="visible", timeout=10_000)
        # The notebook alone (as on a laptop's half screen), without the lab's side panels.
        page.evaluate(
            "() => { window.jupyterapp.shell.collapseLeft();"
            " window.jupyterapp.shell.collapseRight(); }"
        )
        widths = []
        for width in (1600, 400):
            page.set_viewport_size({"width": width, "height": 1400})
            page.wait_for_timeout(500)  # the lab relayouts on resize
            row.scroll_into_view_if_needed()  # the rows with their buttons, and the error
            widths.append(ARTIFACTS / f"explorer-{width}px.png")
            page.screenshot(path=str(widths[-1]), full_page=True)
            cut = page.evaluate(NOTHING_CUT)
            assert cut == [], f"cut at {width} px: {cut}"
        # The calculator stops: it stays listed as gone, its buttons disabled.
        page.set_viewport_size({"width": 1000, "height": 1000})
        page.locator(".redisrpc-explorer select").select_option(label=labels[0])
        page.wait_for_function(
            "() => document.querySelector('.redisrpc-explorer').textContent.includes('Calculator')",
            timeout=60_000,
        )
        calc.stop(10)
        page.wait_for_function(
            "() => document.querySelector('.redisrpc-explorer').textContent"
            ".includes('calc is gone')",
            timeout=60_000,
        )
        # Its header in view (the page was scrolled down to the property rows above).
        page.locator(".redisrpc-explorer select").scroll_into_view_if_needed()
        page.get_by_text("calc is gone").first.scroll_into_view_if_needed()
        gone = ARTIFACTS / "explorer-gone.png"
        page.screenshot(path=str(gone), full_page=True)
        first = page.locator(".redisrpc-explorer select option").first.text_content() or ""
        assert "calc · gone, last seen" in first.replace("\xa0", " ")
        calls = page.locator(".redisrpc-explorer button", has_text="Call")
        assert calls.count() > 0 and all(b.is_disabled() for b in calls.all())
    assert shot.stat().st_size > 10_000
    assert all(path.stat().st_size > 10_000 for path in [*widths, gone])


def test_a_watched_value_in_a_cell_follows_a_change_made_by_another_process(lab, serve, redis_url):
    """`redisrpc.watch(...)` as a cell's last line: a live value that updates by itself."""
    serve(bench()["psu"], "psu")
    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "watch-cell.png"
    setter = (
        "import sys, redisrpc\nredisrpc.Client(sys.argv[1], 'psu').voltage1 = float(sys.argv[2])\n"
    )
    with _page(width=1000, height=500) as page:
        _open(page, base, token, "watch")
        live = page.locator(".redisrpc-live")
        live.filter(has_text="psu.voltage1").first.wait_for(timeout=90_000)
        live.filter(has_text="changed").first.wait_for(timeout=30_000)  # a first value
        for volts in ("3.75", "12.5"):
            subprocess.run(
                [sys.executable, "-c", setter, redis_url, volts],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                check=True,
                timeout=60,
            )
            live.filter(has_text=volts).first.wait_for(timeout=30_000)
        assert live.locator("svg polyline").count() == 1  # the live plot of a number
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5_000
