"""The dashboard object without a browser: every button's public call, errors caught in the worker and
shown with message and hint, plots replaced on update, and every snippet it shows runs as-is in a
fresh namespace.

Each test gets its own dashboard and folder (no test relies on another having run first: the suite runs
in random order), and every dashboard names its backend, so no assertion changes on a machine with TensorRT."""
from __future__ import annotations

import os
import shutil
import threading

import pytest

from conftest import SAMPLES

FILES = ("digits_cnn.onnx", "digits_test.npz", "digits_calib.npz")


@pytest.fixture
def wbx(tmp_path):
    """A fresh dashboard on copies of the digits files, in its own folder (function scope: a shared one
    made test_build_profile_compare_report depend on running first in this module)."""
    import workbench as wb

    d = tmp_path / "dash"
    d.mkdir()
    for f in FILES:
        shutil.copy(SAMPLES / f, d / f)
    w = wb.Workbench(d / FILES[0], data=d / FILES[1], labels="label", calib=d / FILES[2], backend="onnxruntime",
                     graph=True)
    w.iterations.value, w.layer_iterations.value, w.limit.value = 10, 3, 64
    w.workdir = d
    return w


def _run_fresh(text: str, cwd) -> dict:
    """Execute a shown snippet exactly as a user pasting it into a new notebook would: a fresh namespace."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        ns: dict = {}
        exec(compile(text, "<pasted snippet>", "exec"), ns)  # noqa: S102 - the snippet under test
        return ns
    finally:
        os.chdir(old)


def test_errors_in_the_worker_show_message_and_hint(tmp_path):
    """No precision ticked, in the background worker: the WorkbenchError's message and hint are shown
    (inline and in the log), never an UnboundLocalError 'bug'."""
    import workbench as wb

    w = wb.Workbench(SAMPLES / FILES[0], graph=False, backend="onnxruntime")
    w.profile()  # background: nothing built yet
    w.wait(30)
    assert "nothing built yet" in w.errors.value and "hint: press Build first" in w.errors.value
    for b in w.precision_boxes.values():
        b.value = False
    w.build()
    w.wait(30)
    assert "no precision is ticked" in w.errors.value and "tick at least one precision" in w.errors.value
    assert "UnboundLocalError" not in w.errors.value and "a bug" not in w.errors.value
    assert w.errors.value.count("✖") == 2  # errors accumulate until cleared
    logged = "".join(o.get("text", "") for o in w.log_output.outputs)
    assert "no precision is ticked" in logged
    assert w.log_output.layout.min_height  # the log pane is visible, not 2 px tall
    w.clear_errors()
    assert w.errors.value == ""


def test_a_failing_call_in_the_worker_is_caught(tmp_path, monkeypatch):
    """An error raised by the library call itself inside the worker thread (not a settings check)."""
    import workbench as wb

    w = wb.Workbench(SAMPLES / FILES[0], graph=False, precisions=("fp32",), backend="onnxruntime")
    w.data.value = str(tmp_path / "missing.npz")
    w.build()
    w.wait(60)
    assert "build" in w.errors.value and "missing.npz" in w.errors.value, w.errors.value
    assert "UnboundLocalError" not in w.errors.value and "failed" in w.status.value
    w.clear_errors()

    def boom(*a, **k):
        raise ValueError("boom")

    monkeypatch.setattr(wb, "build_stage", boom)  # what the shown call `wb.build_stage` resolves to
    w.data.value = ""
    w.build()
    w.wait(60)
    assert "ValueError: boom (a bug: please report it)" in w.errors.value and "traceback" in w.errors.value
    assert not w.busy and not w.build_button.disabled


def test_build_profile_compare_report(wbx, tmp_path):
    assert all(len(f.data) == 0 for f in wbx.figures.values())
    wbx.build()  # in a worker thread
    wbx.wait(120)
    assert not wbx.busy and wbx.errors.value == "", wbx.errors.value
    code = wbx.code.value
    assert code.startswith("import workbench as wb\nm = wb.load(")
    assert "fr = wb.build_stage(m, ['fp32', 'fp16', 'int8'], 'onnxruntime'" in code
    assert "workbench.flow" not in code and "cancel" not in code  # public API only, widget-only args hidden
    assert list(wbx.result.builds.status) == ["ok", "ok", "ok"]
    assert len(wbx.figures["builds"].data) == 6
    # the first build's figure is a fresh one: no leftover "no builds" note, both panels' axes
    assert [a.text for a in wbx.figures["builds"].layout.annotations] == ["build time", "engine / ONNX size"]
    assert wbx.figures["builds"].layout.xaxis.domain != wbx.figures["builds"].layout.xaxis2.domain
    assert wbx.figures["builds"] in wbx._figure_boxes["builds"].children
    assert "digits_cnn-int8" in wbx.build_table.value

    wbx.profile(background=False)
    assert "wb.profile_stage(fr, iterations=10, layer_iterations=3)" in wbx.code.value
    assert "fr = wb.build_stage(" in wbx.code.value  # self-contained: the build is replayed
    lat = wbx.figures["latency"]
    assert sorted(t.name for t in lat.data if t.type == "bar") == ["fp16", "fp32", "int8"]
    assert not [a for a in lat.layout.annotations if a.text.startswith("no ")]  # the empty figure's note is gone
    assert "interleaved block" in wbx.latency_note.value
    # the automatic explanation of each variant's speed vs fp32, from the per-layer profiles
    assert "Why faster / slower than fp32" in wbx.why_speed.value and "digits_cnn-int8" in wbx.why_speed.value
    wbx.top_k.value = 3
    assert all(len(t.x) == 3 for t in wbx.figures["layers"].data)

    wbx.compare(background=False)
    assert wbx.errors.value == "", wbx.errors.value
    assert len([t for t in wbx.figures["pareto"].data if t.mode == "markers+text"]) == 3
    assert "top-1 (%)" in wbx.accuracy_table.value and "atol = 0.001" in wbx.accuracy_table.value

    opts = list(wbx.overlay.options)
    assert "time ms: digits_cnn-int8" in opts and "error (1 - cosine): digits_cnn-int8" in opts
    wbx.overlay.value = "time ms: digits_cnn-fp32"
    assert wbx.view.legend["label"] == "ms (digits_cnn-fp32)"
    wbx.overlay.value = "error (1 - cosine): digits_cnn-int8"
    assert wbx.view.legend["label"] == "1 - cosine (digits_cnn-int8)"
    assert wbx.errors.value == "", wbx.errors.value

    out = tmp_path / "dash.html"
    wbx.write_report(str(out), background=False)
    assert out.exists() and (tmp_path / "dash-records" / "flow.json").exists()
    assert "wb.write_report(fr," in wbx.code.value and "fr.save(" in wbx.code.value


def test_every_shown_snippet_runs_in_a_fresh_namespace(wbx, tmp_path):
    """Paste each snippet the dashboard showed into a new namespace: it runs and gives the same results."""
    wbx.build(background=False)
    wbx.profile(background=False)
    wbx.compare(background=False)
    wbx.overlay.value = "time ms: digits_cnn-fp32"
    wbx.write_report(str(tmp_path / "first.html"), background=False)
    assert wbx.errors.value == "", wbx.errors.value
    wbx.inspect()
    shown = dict(wbx.snippets)
    assert set(shown) >= {"inspect", "build", "profile", "accuracy", "report", "overlay"}
    for what, snip in shown.items():
        ns = _run_fresh(snip.text(), tmp_path)
        assert ns["m"].hash == wbx.model.hash, what
        if what == "inspect":
            assert ns["ins"].flops == pytest.approx(wb_inspect_flops(wbx))
            import workbench as wb  # the shape doctor's table (issue 13) is shown by the same snippet

            assert ns["doctor"].equals(wb.shapes.check(wbx.model)) and "shape doctor" in wbx.model_html.value
        else:
            assert list(ns["fr"].builds.status) == list(wbx.result.builds.status), what
        if what in ("profile", "report", "overlay"):
            assert set(ns["fr"].latency.variant) == set(wbx.result.latency.variant), what
        if what in ("accuracy", "report"):
            assert list(ns["fr"].accuracy.top1) == pytest.approx(list(wbx.result.accuracy.top1)), what
        if what == "overlay":
            assert ns["view"].legend["label"] == wbx.view.legend["label"]


def wb_inspect_flops(wbx) -> float:
    import workbench as wb

    return wb.inspect(wbx.model).flops


def test_edits_are_replayed_in_the_build_snippet(tmp_path):
    import workbench as wb

    for f in FILES:
        shutil.copy(SAMPLES / f, tmp_path / f)
    w = wb.Workbench(tmp_path / FILES[0], graph=True, precisions=("fp32",), backend="onnxruntime")
    label = w.edit_panel.status.value
    assert "original model, no edits yet" in label and "INVALID" not in label and "of 0" not in label
    w.edit_panel.op.value = "set_batch"
    w.edit_panel.fields["batch"].value = "4"
    assert w.edit_panel.apply() is not None
    edit_text = w.edit_panel.snippet.text()
    assert "h = wb.History(" in edit_text and "h.apply('set_batch', batch=4)" in edit_text
    ns = _run_fresh(edit_text, tmp_path)
    assert ns["h"].model.hash == w.model.hash
    assert w.edit_panel.undo() is not None
    ns = _run_fresh(w.edit_panel.snippet.text(), tmp_path)
    assert ns["h"].current.index == 0 and "h.undo()" in w.edit_panel.snippet.text()
    assert w.edit_panel.redo() is not None
    w.build(background=False)
    assert w.errors.value == "", w.errors.value
    text = w.code.value
    assert "m = wb.edit.set_batch(m, batch=4)" in text
    ns = _run_fresh(text, tmp_path)
    assert ns["m"].hash == w.model.hash and list(ns["fr"].builds.status) == ["ok"]


def test_second_action_while_busy_is_refused(wbx, monkeypatch):
    """While one action runs in the worker, every other button is refused with a message and nothing else
    starts. The running call is held on an event (a stand-in for `wb.build_stage` that waits, then calls
    the real one), so the test does not race a fast profile as the old one did."""
    import workbench as wb

    real, started, release = wb.build_stage, threading.Event(), threading.Event()

    def held_build_stage(*a, **k):
        started.set()
        assert release.wait(60), "test never released the build"
        return real(*a, **k)

    monkeypatch.setattr(wb, "build_stage", held_build_stage)
    for p, box in wbx.precision_boxes.items():
        box.value = p == "fp32"
    wbx.build()
    assert started.wait(60) and wbx.busy and wbx.build_button.disabled
    wbx.profile()
    wbx.compare()
    wbx.build()
    errors = wbx.errors.value
    assert errors.count("another action is running") == 3, errors
    assert wbx.busy and wbx.result is None  # nothing else started or finished
    release.set()
    wbx.wait(120)
    assert not wbx.busy and wbx.result is not None and list(wbx.result.builds.status) == ["ok"]
    assert wbx.errors.value == errors  # the build itself added no error
    wbx.clear_errors()


def test_default_backend_without_tensorrt_is_onnxruntime():
    """The dashboard's default backend where TensorRT cannot run (CPU machines, CI)."""
    from workbench.backends import get_backend
    from workbench.widgets.dashboard import _default_backend

    ok, why = get_backend("tensorrt").available()
    if ok:
        pytest.skip("TensorRT and a GPU are usable here: test_default_backend_with_tensorrt_is_tensorrt covers it")
    assert _default_backend() == "onnxruntime"


@pytest.mark.gpu
@pytest.mark.trt
def test_default_backend_with_tensorrt_is_tensorrt(trt_backend):
    """The GPU branch of the same choice: with TensorRT usable, the dashboard defaults to it."""
    import workbench as wb
    from workbench.widgets.dashboard import _default_backend

    assert _default_backend() == "tensorrt"
    assert wb.Workbench(SAMPLES / FILES[0], graph=False).backend.value == "tensorrt"


def test_fp16_safety_overlay_from_the_menu_before_any_build(wbx):
    """The graph tab's overlay menu offers the fp16-safety check of the current version at once (no build
    needed); its shown code loads the model and runs the one call, pasted into a fresh namespace."""
    assert "fp16 safety" in wbx.overlay.options
    wbx.overlay.value = "fp16 safety"
    assert wbx.errors.value == "", wbx.errors.value
    text = wbx.snippets["overlay"].text()
    assert "view.set_overlay(wb.fp16_safety(m)" in text and "build_stage" not in text
    ns = _run_fresh(text, wbx.workdir)
    assert ns["m"].hash == wbx.model.hash and ns["view"].legend == wbx.view.legend
    assert wbx.view.legend["label"].startswith("fp16 safety")
