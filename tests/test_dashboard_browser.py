"""The dashboard in a real browser: JupyterLab (started here, 127.0.0.1, random port, token) and
Debian's Chromium driven by Playwright. Opens a dashboard notebook, runs it, clicks Build, waits for the
build plot to render, and saves screenshots to ``$WB_ARTIFACTS`` (else pytest's temporary folder)."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import SAMPLES

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

CELL = '''\
import workbench as wb
wbx = wb.Workbench("sample_models/digits_cnn.onnx", data="sample_models/digits_test.npz", labels="label",
                   calib="sample_models/digits_calib.npz", backend="onnxruntime")
wbx.iterations.value = 20
wbx.tabs.selected_index = 3  # Build
wbx'''

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout} s")


@pytest.fixture
def lab(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed")
    pytest.importorskip("jupyterlab", reason="jupyterlab not installed")
    nbformat = pytest.importorskip("nbformat")
    work = tmp_path / "lab"
    shutil.copytree(SAMPLES, work / "sample_models", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nbformat.write(nb, str(work / "dashboard.ipynb"))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
                             "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                             "--LabApp.extension_manager=readonly",
                             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, 90)
        except (RuntimeError, TimeoutError) as e:
            log.flush()
            tail = (tmp_path / "lab.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"{e}\n--- JupyterLab log ---\n{tail}") from None
        yield f"http://127.0.0.1:{port}", token, tmp_path / "lab.log"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_dashboard_build_renders_plot(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token, log = lab
    ARTIFACTS = Path(os.environ["WB_ARTIFACTS"]) if os.environ.get("WB_ARTIFACTS") else tmp_path / "screenshots"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard_build.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{base}/lab/tree/dashboard.ipynb?token={token}", timeout=90_000)
            page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext.session && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
                                   timeout=90_000)
            page.wait_for_function("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                                   " === 'idle'", timeout=90_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # the dashboard renders with its Build tab selected
            build = page.locator("button.jupyter-button", has_text=re.compile(r"^\s*Build\s*$"))
            build.wait_for(state="visible", timeout=120_000)
            status = page.locator(".widget-html-content", has_text="ready")
            status.first.wait_for(timeout=30_000)
            build.click()
            page.locator(".widget-html-content", has_text="build: done").first.wait_for(timeout=180_000)
            bars = page.locator(".js-plotly-plot g.trace.bars path")
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot g.trace.bars path').length >= 6",
                                   timeout=60_000)
            assert bars.count() >= 6  # 3 precisions x (build time, size)
            assert page.locator(".js-plotly-plot .legendtext", has_text="int8").count() >= 1
            assert page.locator(".widget-html-content", has_text="digits_cnn-int8").count() >= 1  # build table
            errors = page.locator(".widget-html-content", has_text="✖")
            assert errors.count() == 0, errors.first.inner_text()
            page.locator(".js-plotly-plot g.trace.bars").first.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot))
            # Profile: the latency plot updates in place (a FigureWidget)
            page.locator(".lm-TabBar-tab", has_text="Profile").first.click()
            page.locator("button.jupyter-button", has_text=re.compile(r"^\s*Profile\s*$")).click()
            page.locator(".widget-html-content", has_text="profile: done").first.wait_for(timeout=180_000)
            page.wait_for_function("Array.from(document.querySelectorAll('.js-plotly-plot')).some(p => "
                                   "p.offsetParent !== null && p.querySelectorAll('g.trace.bars path').length >= 3)",
                                   timeout=60_000)
            assert page.locator(".widget-html-content", has_text="✖").count() == 0
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "dashboard_profile.png"))
            # the empty figures' "no ... profile" notes are gone once results arrived
            page.wait_for_function("!Array.from(document.querySelectorAll('.js-plotly-plot .annotation-text'))"
                                   ".some(a => a.closest('.js-plotly-plot').offsetParent !== null && /^no /.test(a.textContent))", timeout=10_000)
            # Graph tab: laid out while hidden, fitted (both dimensions) when selected
            page.locator(".lm-TabBar-tab", has_text="Graph").first.click()
            page.wait_for_function("(window.__wbgraphs || []).some(g => g.fits >= 1 && g.visibleBox().canvas.right"
                                   " - g.visibleBox().canvas.left > 100)", timeout=30_000)
            boxes = page.evaluate("(window.__wbgraphs || []).map(g => g.visibleBox())"
                                  ".filter(b => b.canvas.right - b.canvas.left > 100)")
            assert boxes
            for b in boxes:
                c, g = b["canvas"], b["graph"]
                assert c["left"] - 2 <= g["left"] and g["right"] <= c["right"] + 2, b
                assert c["top"] - 2 <= g["top"] and g["bottom"] <= c["bottom"] + 2, b
            page.locator(".wbg-root").first.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "dashboard_graph.png"))
            # an error in the worker: message and hint shown, not an UnboundLocalError "bug"
            page.locator(".lm-TabBar-tab", has_text="Build").first.click()
            for box in page.locator(".widget-checkbox input[type=checkbox]").all():
                if box.is_visible() and box.is_checked():
                    box.uncheck()
            build.click()
            page.locator(".wb-error", has_text="no precision is ticked").first.wait_for(timeout=30_000)
            err = page.locator(".wb-error").first.inner_text()
            assert "hint: tick at least one precision" in err and "UnboundLocalError" not in err, err
            page.locator(".wb-error").first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "dashboard_error.png"))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
