"""The dashboard in a real browser: JupyterLab (started here, 127.0.0.1, random port, token) and
Debian's Chromium driven by Playwright. Opens a dashboard notebook, runs it, clicks Build, waits for the
build plot to render, and saves screenshots to ``$WB_ARTIFACTS`` (else pytest's temporary folder)."""
from __future__ import annotations

import re
import shutil

import pytest

from _browser import jupyter_server
from conftest import SAMPLES

CELL = '''\
import workbench as wb
wbx = wb.Workbench("sample_models/digits_cnn.onnx", data="sample_models/digits_test.npz", labels="label",
                   calib="sample_models/digits_calib.npz", backend="onnxruntime")
wbx.iterations.value = 20
wbx.tabs.selected_index = 3  # Build
wbx'''

pytestmark = pytest.mark.browser


@pytest.fixture
def lab(tmp_path, browser):
    """JupyterLab on a folder with the samples and one dashboard notebook: (url, token, log path)."""
    pytest.importorskip("jupyterlab", reason="jupyterlab not installed")
    nbformat = pytest.importorskip("nbformat")
    work = tmp_path / "lab"
    shutil.copytree(SAMPLES, work / "sample_models", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nbformat.write(nb, str(work / "dashboard.ipynb"))
    with jupyter_server(work, tmp_path / "run", timeout=90) as server:
        yield server


def test_dashboard_build_renders_plot(lab, browser, artifacts):
    base, token, log = lab
    shot = artifacts / "dashboard_build.png"
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    try:
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
        page.screenshot(path=str(artifacts / "dashboard_profile.png"))
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
        page.screenshot(path=str(artifacts / "dashboard_graph.png"))
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
        page.screenshot(path=str(artifacts / "dashboard_error.png"))
    finally:
        page.close()
    assert shot.stat().st_size > 10_000
