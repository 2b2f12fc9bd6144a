"""The graph viewer's overlay menu, entry "fp16 safety", drawn by Chromium (issue 14: the fp16-safety
overlay wired into the viewer).

Through the public path a user takes: ``GraphView(m).with_overlay_menu()``, pick "fp16 safety" (the menu
runs ``view.set_overlay(wb.fp16_safety(m)..., reduce="max", note=...)`` and shows that code), then the same view as a
page (``view.to_html``) in /usr/bin/chromium. Every node ``fp16_safety`` flags must be filled with the
colour of its worst finding (read back from the canvas pixels at the node), no unflagged node may carry
an overlay colour, and clicking a flagged node shows why in the details panel. Models: MiniLM from the real-model cache (249 nodes: LayerNorm, Softmax, the attention
mask, a ReduceL2 risk) and the sample transformer block.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SAMPLES
from _browser import open_page, shot  # fixtures `browser`, `page`: tests/conftest.py

pytestmark = pytest.mark.browser

MINILM = Path.home() / ".cache" / "trt-workbench" / "realmodels" / "models" / "minilm_dynamo.onnx"


def _rgb(hex_color: str) -> list[int]:
    return [int(hex_color[k:k + 2], 16) for k in (1, 3, 5)]


PIXEL_JS = """([x, y]) => {
  const c = document.querySelector('.wbg-root canvas.wbg-canvas');
  const r = c.getBoundingClientRect();
  const d = c.getContext('2d').getImageData(Math.round((x - r.left) * c.width / r.width),
                                            Math.round((y - r.top) * c.height / r.height), 1, 1).data;
  return [d[0], d[1], d[2]];
}"""


def _model_path(which: str) -> Path:
    if which == "minilm":
        if not MINILM.exists():
            pytest.skip(f"{MINILM} not in the real-model cache (python realmodels/fetch.py)")
        return MINILM
    return SAMPLES / "transformer_block.onnx"


@pytest.mark.parametrize("which", ["minilm", "transformer_block"])
def test_the_fp16_safety_menu_entry_colours_exactly_the_flagged_nodes(page, which, tmp_path):
    import workbench as wb
    from workbench.widgets.graph_view import FP16_SAFETY_COLORS, FP16_SAFETY_LABELS, GraphView

    m = wb.load(_model_path(which))
    flagged = wb.fp16_safety_overlay(m)  # node -> worst finding (1 info, 2 handled, 3 risk)
    assert flagged and {1, 2, 3} >= set(flagged.values())
    view = GraphView(m)
    box = view.with_overlay_menu()
    assert "fp16 safety" in box.menu.options
    box.menu.value = "fp16 safety"
    assert "view.set_overlay(wb.fp16_safety(m)" in box.code.value and "wb.load(" in box.code.value
    assert [i["label"] for i in view.legend["items"]] == FP16_SAFETY_LABELS

    out = tmp_path / f"{which}_fp16.html"
    view.to_html(out)
    open_page(page, out)
    legend = page.locator(".wbg-legend").inner_text()
    assert all(label in legend for label in FP16_SAFETY_LABELS)
    # a scale where boxes are a few pixels tall and carry no text: the pixel at a box's centre is its fill
    for _ in range(12):
        s = page.evaluate("() => window.__wbgraph.scale")
        if s > 0.35:
            page.get_by_role("button", name="−").click()
        elif s < 0.15:
            page.get_by_role("button", name="+").click()
        else:
            break
    assert 0.15 <= page.evaluate("() => window.__wbgraph.scale") <= 0.35
    colours = [_rgb(c) for c in FP16_SAFETY_COLORS]  # info, handled, risk

    def fill(name: str) -> list[int]:
        assert page.evaluate("(n) => window.__wbgraph.center(n)", name), name
        page.wait_for_timeout(60)
        return page.evaluate(PIXEL_JS, [page.evaluate("(n) => window.__wbgraph.screenPos(n)", name)[k]
                                        for k in ("x", "y")])

    seen = {}
    for name, score in flagged.items():
        seen[name] = fill(name)
        assert seen[name] == colours[int(score) - 1], (name, score, seen[name])
    # why: the worst node's findings (check, action, reason) in the details panel, under its value
    worst = max(flagged, key=flagged.get)
    table = wb.fp16_safety(m)
    assert page.evaluate("(n) => window.__wbgraph.center(n)", worst)
    page.wait_for_timeout(60)
    pos = page.evaluate("(n) => window.__wbgraph.screenPos(n)", worst)
    page.mouse.click(pos["x"], pos["y"])
    page.wait_for_function("(n) => document.querySelector('.wbg-d-name')?.textContent === n", arg=worst)
    note = page.locator(".wbg-d-note").inner_text()
    for r in table[table.onnx_node == worst].itertuples():
        assert r.check in note and r.detail in note, (r.check, note)
    assert f"{flagged[worst]:g}" in page.locator(".wbg-d-overlay").inner_text()
    shot(page, f"fp16_overlay_{which}.png")
    ops = [it["name"] for it in page.evaluate("() => window.__wbgraph.items()") if it["kind"] == "op"]
    others = [n for n in ops if n not in flagged]
    assert others
    for name in others[:: max(1, len(others) // 40)]:  # up to ~40 unflagged nodes across the graph
        assert fill(name) not in colours, name
    # the menu's "none" clears the colours again
    box.menu.value = "none"
    assert view.legend is None and "view.clear_overlay()" in box.code.value
