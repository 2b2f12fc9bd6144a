"""Graph viewer vs Netron in headless Chromium (Debian's /usr/bin/chromium through Playwright).

Rows:
* 10k-node chain (no name scopes, as in Netron's reported stalls): time from navigation to first
  paint and to interactive, our offline page vs Netron (PyPI package, served on 127.0.0.1). Ours opens
  with the automatic 200-node chunks collapsed; a second pair of rows opens ours with *every* node laid
  out and drawn (all chunks expanded), which is the like-for-like comparison of layout work.
* 100k-node scoped graph: expanding one group — in the browser (offline page, the JS shim answers)
  and on the Python side of the widget (``GraphPayload.visible``, what a click costs before the
  message goes out). Goal < 1 s.
* Bundle size (goal < 300 KB).

Netron notes: a cookie notice with an "Accept" button comes first (clicked as soon as it shows, inside
the timed window); Netron replaces ``window.eval`` so only locators are used; the graph is on screen
when ``<body>``'s class becomes ``default``. First paint for Netron = first ``.node`` element seen.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from workbench.graph import GraphPayload  # noqa: E402
from workbench.synthetic import chain_model  # noqa: E402
from workbench.widgets.graph_view import CSS, ESM, export_html  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _ours(browser, html: Path, timeout_s: float) -> tuple[float, float, int]:
    """(first paint s, interactive s, items drawn) from navigation start, our offline page."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        t = time.perf_counter()
        page.goto(html.as_uri(), wait_until="commit")
        page.wait_for_selector(".wbg-root[data-ready='1']", timeout=timeout_s * 1000)
        root = page.locator(".wbg-root")
        first = float(root.get_attribute("data-first-paint-ms")) / 1000
        # interactive: data-ready is set at the first paint, after the hit-test grid and the input
        # handlers exist; one more animation frame must also have run (the page is not blocked)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
        inter = time.perf_counter() - t
        return first, inter, int(root.get_attribute("data-items"))
    finally:
        page.close()


def _netron(browser, url: str, timeout_s: float) -> tuple[float, float, int]:
    """(first .node seen s, body class 'default' s, .node count) from page.goto start."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        t = time.perf_counter()
        page.goto(url, wait_until="commit")
        first = None
        accepted = False
        accept = page.get_by_role("button", name="Accept")
        deadline = t + timeout_s
        # light polling (every 100 ms) so the measurement does not slow the page it measures
        while time.perf_counter() < deadline:
            if not accepted and accept.count() and accept.first.is_visible():
                try:
                    accept.first.click(timeout=500)
                    accepted = True
                except Exception:
                    pass
            cls = page.locator("body").get_attribute("class") or ""
            if "default" in cls.split():
                done = time.perf_counter() - t
                return (first or done), done, page.locator(".node").count()
            if first is None and page.locator(".node").first.count() > 0:
                first = time.perf_counter() - t
            page.wait_for_timeout(100)
        raise TimeoutError(f"Netron did not finish in {timeout_s} s")
    finally:
        page.close()


def _median(xs):
    return statistics.median(xs), min(xs), max(xs)


def run(quick: bool) -> list[dict]:
    from playwright.sync_api import sync_playwright

    import netron

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} missing (apt-get install chromium)")
    reps = 1 if quick else 3
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    m10 = chain_model(10_000)
    onnx.save(m10, tmp / "chain10k.onnx")
    p10 = GraphPayload.from_model(tmp / "chain10k.onnx")
    collapsed = tmp / "chain10k.html"
    export_html(p10, collapsed)
    full = tmp / "chain10k_all.html"
    export_html(p10, full, expanded=list(p10.group_ids[1:]))

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            _ours(browser, collapsed, 60)  # warm-up (browser caches, JIT)
            ours = [_ours(browser, collapsed, 60) for _ in range(reps)]
            ours_all = [_ours(browser, full, 120) for _ in range(reps)]
            addr = netron.serve(str(tmp / "chain10k.onnx"), None, address=("127.0.0.1", 0), browse=False)
            try:
                url = f"http://{addr[0]}:{addr[1]}"
                net = [_netron(browser, url, 300) for _ in range(reps)]
            finally:
                netron.stop(addr)

            for k, metric in [(0, "first paint"), (1, "interactive")]:
                o, n = _median([r[k] for r in ours]), _median([r[k] for r in net])
                rows.append(dict(metric=f"10k-node chain: {metric}", unit="s", ours=o[0], peer=n[0], peer_name="netron",
                                 ratio=o[0] / n[0], goal="<= 0.5x netron", met=o[0] / n[0] <= 0.5,
                                 spread=f"ours {o[1]:.2f}–{o[2]:.2f}; netron {n[1]:.2f}–{n[2]:.2f}",
                                 notes=f"ours opens with {ours[0][2]} items (200-node chunks collapsed); "
                                       f"netron draws {net[0][2]} .node elements"))
            for k, metric in [(0, "first paint"), (1, "interactive")]:
                o, n = _median([r[k] for r in ours_all]), _median([r[k] for r in net])
                rows.append(dict(metric=f"10k-node chain, every node laid out: {metric}", unit="s", ours=o[0], peer=n[0],
                                 peer_name="netron", ratio=o[0] / n[0], goal="<= 0.5x netron", met=o[0] / n[0] <= 0.5,
                                 spread=f"ours {o[1]:.2f}–{o[2]:.2f}",
                                 notes=f"ours with all chunks expanded: {ours_all[0][2]} items laid out"))

            # 100k: expand one group
            m100 = chain_model(100_000, scoped=True)
            t = time.perf_counter()
            p100 = GraphPayload.from_model(m100, infer_shapes=False)
            build = time.perf_counter() - t
            times = []
            for k in range(max(3, reps)):
                t = time.perf_counter()
                v = p100.visible([f"/block{10 + k}"])
                times.append(time.perf_counter() - t)
            o = _median(times)
            rows.append(dict(metric="100k-node graph: expand one group (Python side of the widget)", unit="s", ours=o[0],
                             goal="< 1 s", met=o[0] < 1.0, spread=f"{o[1]:.3f}–{o[2]:.3f}",
                             notes=f"{len(v['items'])} items visible after expanding; payload built once in {build:.1f} s "
                                   "(no shape inference)"))
            big = tmp / "scoped100k.html"
            export_html(p100, big, expanded=[])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            try:
                page.goto(big.as_uri())
                page.wait_for_selector(".wbg-root[data-ready='1']", timeout=120_000)
                ts = []
                for k in range(max(3, reps)):
                    t = time.perf_counter()
                    page.evaluate(f"() => window.__wbgraph.toggle('/block{20 + k}')")
                    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
                    ts.append(time.perf_counter() - t)
                o = _median(ts)
                rows.append(dict(metric="100k-node graph: expand one group (browser, offline page)", unit="s", ours=o[0],
                                 goal="< 1 s", met=o[0] < 1.0, spread=f"{o[1]:.3f}–{o[2]:.3f}",
                                 notes="aggregation of 100k edges in JS + layout + draw, measured to the next frame"))
            finally:
                page.close()
        finally:
            browser.close()
    size = (ESM.stat().st_size + CSS.stat().st_size) / 1024
    rows.append(dict(metric="bundle size (graph_view.js + .css)", unit="KB", ours=round(size, 1), goal="< 300 KB",
                     met=size < 300, notes="esbuild --minify, no dependencies"))
    return rows


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r, default=str))
