"""The sweep tab (widgets/sweep_panel.py): one public call, a table filled cell by cell, runnable shown code."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("ipywidgets")

from workbench.widgets.sweep_panel import SweepPanel  # noqa: E402

from conftest import SAMPLES  # noqa: E402


def test_panel_runs_the_shown_call_and_fills_in_per_cell(tmp_path, monkeypatch):
    shutil.copy(SAMPLES / "digits_cnn.onnx", tmp_path / "digits_cnn.onnx")
    monkeypatch.chdir(tmp_path)
    seen = []
    panel = SweepPanel(["digits_cnn.onnx"], precisions="fp32,fp16", out_dir="sw")
    original = panel._on_cell

    def spy(row):
        seen.append(panel.table.value.count("<tr>"))  # rows shown before this cell
        original(row)

    panel._on_cell = spy
    panel.run(background=False)
    assert panel.errors.value == ""
    assert seen == [0, 2]                          # header only, then header + first cell
    assert panel.table.value.count("<tr>") == 3 and "fp16" in panel.table.value
    assert "done: 2 cells" in panel.status.value and len(panel.figure_box.children) == 2
    code = panel.code.value
    assert code.startswith("import workbench as wb") and "wb.sweep(['digits_cnn.onnx']" in code
    ns = {}
    exec(compile(code, "<shown>", "exec"), ns)     # pasted into a fresh namespace, it runs
    assert ns["res"].reused == 2 and len(ns["res"].rows) == 2


def test_panel_shows_a_bad_input_as_a_message_not_a_bug(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel = SweepPanel(["x.onnx"], precisions="fp99")
    panel.run(background=False)
    assert "fp99" in panel.errors.value and "a bug" not in panel.errors.value
    panel.batches.value = "1,x"
    panel.run(background=False)
    assert "Run sweep" in panel.errors.value
