"""The six workshop notebooks as an attendee runs them: JupyterLab 4 (127.0.0.1, started like `make lab`,
on a copy of notebooks/ next to sample_models/) in Debian's Chromium driven by Playwright, *Run All* on
each notebook, then, on the rendered page:

* no error output in any cell;
* every graph view (notebook cells and the dashboard's Graph tab) has its whole graph inside its
  visible canvas, with labels of at least 10 px when drawn;
* no figure shows a stale "no ..." note of an empty figure next to data.

Screenshots (one per notebook, plus the dashboard's Graph tab) go to ``$WB_ARTIFACTS`` when set, else
to pytest's temporary folder, never into the repository. ``WB_QUICK=1`` keeps the iteration counts low.
"""
from __future__ import annotations

import shutil
import time

import pytest

from _browser import jupyter_server
from conftest import ROOT, SAMPLES

NAMES = ["01_load_and_inspect", "02_visualize", "03_edit_with_graphsurgeon", "04_build_precisions",
         "05_profile_layers", "06_accuracy_int8_mixed"]
VIEWPORT = {"width": 1440, "height": 900}

pytestmark = pytest.mark.browser


# fixtures `browser` (Chromium, one per module) and `artifacts` (screenshot folder): tests/conftest.py
@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser):
    """JupyterLab started as `make lab` does: the notebook folder is the server root (the notebooks find
    ../sample_models), on a copy of notebooks/ next to sample_models/; WB_QUICK=1."""
    pytest.importorskip("jupyterlab", reason="jupyterlab not installed")
    tmp = tmp_path_factory.mktemp("nblab")
    work = tmp / "repo"
    shutil.copytree(SAMPLES, work / "sample_models", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (work / "notebooks").mkdir()
    for name in NAMES:
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", work / "notebooks")
    with jupyter_server(work / "notebooks", tmp / "run", env={"WB_QUICK": "1"}) as (url, token, _log):
        yield url, token, work


NB = "window.jupyterapp.shell.currentWidget"
KERNEL_READY = (f"window.jupyterapp && window.jupyterapp.shell && {NB} && {NB}.sessionContext && {NB}.sessionContext.session && "
                f"{NB}.sessionContext.session.kernel && {NB}.sessionContext.session.kernel.status === 'idle'")
ALL_DONE = f"""() => {{
  const nb = {NB};
  if (!nb || !nb.content) return false;
  const cells = nb.content.widgets.filter((c) => c.model.type === 'code');
  const k = nb.sessionContext.session && nb.sessionContext.session.kernel;
  return k && k.status === 'idle' && cells.length > 0 && cells.every((c) => c.model.executionCount !== null);
}}"""
PENDING = f"""() => {NB}.content.widgets.filter((c) => c.model.type === 'code').map((c, i) => [i, c.model.executionCount,
  c.model.sharedModel.getSource().slice(0, 60)]).filter(([i, n]) => n === null)"""
ERRORS = f"""() => {NB}.content.widgets.filter((c) => c.model.type === 'code').flatMap((c, i) =>
  c.model.outputs.toJSON().filter((o) => o.output_type === 'error').map((o) => `cell ${{i}}: ${{o.ename}}: ${{o.evalue}}`))"""
# Every graph view whose root is on screen: its graph box inside its canvas (2 px tolerance).
GRAPHS = """() => (window.__wbgraphs || []).map((g, k) => {
  const roots = document.querySelectorAll('.wbg-root');
  const b = g.visibleBox();
  const shown = b.canvas.right - b.canvas.left > 8 && b.canvas.bottom - b.canvas.top > 8;
  const inside = b.graph.left >= b.canvas.left - 2 && b.graph.right <= b.canvas.right + 2 &&
                 b.graph.top >= b.canvas.top - 2 && b.graph.bottom <= b.canvas.bottom + 2;
  return {k, shown, inside, nodes: g.nodeCount, drawn: g.drawnCount, scale: b.scale, fits: b.fits, box: b};
})"""
# A plotly figure with data and an empty-figure note ("no builds", "no latency measured", ...).
STALE = """(empty) => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap((p) => {
  const notes = Array.from(p.querySelectorAll('.annotation-text')).map((a) => a.textContent);
  const data = p.querySelectorAll('g.trace path, g.trace.scatter path.point, .hm image, g.heatmaplayer image').length;
  return data > 0 ? notes.filter((t) => empty.includes(t)) : [];
})"""


def _empty_notes() -> list[str]:
    """The notes of every empty figure (what must never sit next to data)."""
    import pandas as pd

    from workbench import plots

    e = pd.DataFrame()
    figs = [plots.latency_figure(e), plots.layer_figure(e), plots.layer_heatmap(e), plots.op_share_figure(e),
            plots.pareto_figure(e, e), plots.layer_error_figure(e), plots.build_figure(e)]
    return sorted({a.text for f in figs for a in f.layout.annotations})


def _open(page, url: str, token: str, name: str) -> None:
    # a fresh workspace per notebook (?reset): only this notebook is open, as after a double-click
    page.goto(f"{url}/lab/workspaces/wb-{name}/tree/{name}.ipynb?reset&token={token}", timeout=120_000)
    page.wait_for_function(KERNEL_READY, timeout=120_000)


CURRENT = "window.jupyterapp.shell.currentWidget.node"


def _check_graphs(page, where: str) -> list[dict]:
    graphs = page.evaluate(GRAPHS)
    for g in graphs:
        if g["shown"]:
            assert g["inside"], f"{where}: graph {g['k']} not inside its canvas: {g['box']}"
            assert g["fits"] >= 1 and g["drawn"] > 0, f"{where}: graph {g['k']} never fitted / drawn: {g}"
    return graphs


@pytest.mark.parametrize("name", NAMES)
def test_run_all_in_jupyterlab(lab, browser, artifacts, name):
    url, token, work = lab
    page = browser.new_page(viewport=VIEWPORT)
    js_errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda e: js_errors.append(str(e)))
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    try:
        t0 = time.monotonic()
        _open(page, url, token, name)
        print(f"{name}: opened, kernel idle after {time.monotonic() - t0:.1f} s", flush=True)
        t0 = time.monotonic()
        # not awaited: the command's promise settles only when every cell has run (bounded below)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        try:
            page.wait_for_function(ALL_DONE, timeout=420_000, polling=1000)
        except Exception:
            pending = page.evaluate(PENDING)
            raise AssertionError(f"{name}: Run All did not finish; cells without a result: {pending}") from None
        ran = time.monotonic() - t0
        print(f"{name}: Run All finished after {ran:.1f} s", flush=True)
        errors = page.evaluate(ERRORS)
        assert not errors, f"{name}: error outputs after Run All: {errors}"
        # every graph view: scroll it into view (a view drawn while off-screen fits when it appears)
        roots = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .wbg-root")
        n = roots.count()
        for k in range(n):
            if roots.nth(k).is_visible():
                roots.nth(k).scroll_into_view_if_needed()
                page.wait_for_timeout(400)
                _check_graphs(page, f"{name} view {k}")
        # the dashboard's Graph tab (notebook 04): hidden during Run All, fitted when selected
        tabs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .lm-TabBar-tab", has_text="Graph")
        if tabs.count():
            tabs.first.scroll_into_view_if_needed()
            tabs.first.click()
            page.wait_for_timeout(800)
            graphs = _check_graphs(page, f"{name} dashboard Graph tab")
            assert any(g["shown"] and g["inside"] for g in graphs)
            page.screenshot(path=str(artifacts / f"notebook_{name}_dashboard_graph.png"))
        stale = page.evaluate(STALE, _empty_notes())
        assert not stale, f"{name}: stale empty-figure notes next to data: {stale}"
        labels = [int(v) for v in page.eval_on_selector_all(".wbg-root", "rs => rs.map(r => r.dataset.labelPx || '0')")]
        assert all(v == 0 or v >= 10 for v in labels), labels
        page.screenshot(path=str(artifacts / f"notebook_{name}.png"), full_page=False)
        # anywidget rejects a model whose front-end init takes > 2 s (a fixed AbortSignal.timeout(2000) in
        # its runtime): on a loaded machine plotly's 4 MB widget bundle can take longer. The widgets still
        # render (checked above); any other page error fails the test.
        slow_init = [e for e in js_errors if e == "[anywidget] Failed to initialize model."]
        if slow_init:
            print(f"{name}: {len(slow_init)} anywidget model(s) took > 2 s to initialize (machine load)")
        others = [e for e in js_errors if e not in slow_init]
        assert not others, others
        print(f"{name}: Run All {ran:.1f} s, {n} graph view(s)")
    except Exception:
        page.screenshot(path=str(artifacts / f"notebook_{name}_failure.png"))
        print("browser console:", *console[-40:], sep="\n")
        raise
    finally:
        try:  # free the kernel's memory (best effort, bounded)
            page.evaluate(f"Promise.race([{NB}.sessionContext.shutdown(), new Promise(r => setTimeout(r, 10000))])")
        except Exception:  # noqa: BLE001
            pass
        page.close()
