"""The dashboard object without a browser: every button's public call, inline errors, in-place plots."""
from __future__ import annotations

import shutil

import pytest

from conftest import SAMPLES

FILES = ("digits_cnn.onnx", "digits_test.npz", "digits_calib.npz")


@pytest.fixture(scope="module")
def wbx(tmp_path_factory):
    import workbench as wb

    d = tmp_path_factory.mktemp("dash")
    for f in FILES:
        shutil.copy(SAMPLES / f, d / f)
    w = wb.Workbench(d / FILES[0], data=d / FILES[1], labels="label", calib=d / FILES[2], backend="onnxruntime",
                     graph=True)
    w.iterations.value, w.layer_iterations.value, w.limit.value = 10, 3, 64
    w.workdir = d
    return w


def test_actions_before_build_fail_inline(tmp_path_factory):
    import workbench as wb

    w = wb.Workbench(SAMPLES / FILES[0], graph=False)
    w.profile(background=False)
    assert "nothing built yet" in w.errors.value and "press Build first" in w.errors.value
    w.precision_boxes["fp32"].value = w.precision_boxes["fp16"].value = w.precision_boxes["int8"].value = False
    w.build(background=False)
    assert "tick at least one precision" in w.errors.value
    assert w.errors.value.count("✖") == 2  # errors accumulate until cleared
    w.clear_errors()
    assert w.errors.value == ""


def test_build_profile_compare_report(wbx, tmp_path):
    assert all(len(f.data) == 0 for f in wbx.figures.values())
    wbx.build()  # in a worker thread
    wbx.wait(120)
    assert not wbx.busy and wbx.errors.value == "", wbx.errors.value
    assert "build_stage(model, ['fp32', 'fp16', 'int8'], 'onnxruntime'" in wbx.code.value
    assert list(wbx.result.builds.status) == ["ok", "ok", "ok"]
    assert len(wbx.figures["builds"].data) == 6
    assert "digits_cnn-int8" in wbx.build_table.value

    wbx.profile(background=False)
    assert "profile_stage(fr, iterations=10, layer_iterations=3)" in wbx.code.value
    lat = wbx.figures["latency"]
    assert sorted(t.name for t in lat.data if t.type == "bar") == ["fp16", "fp32", "int8"]
    assert not lat.layout.annotations  # the empty figure's note is gone
    wbx.top_k.value = 3
    assert all(len(t.x) == 3 for t in wbx.figures["layers"].data)

    wbx.compare(background=False)
    assert wbx.errors.value == "", wbx.errors.value
    assert len([t for t in wbx.figures["pareto"].data if t.mode == "markers+text"]) == 3
    assert "top1" in wbx.accuracy_table.value

    opts = list(wbx.overlay.options)
    assert "time ms: digits_cnn-int8" in opts and "error (1 - cosine): digits_cnn-int8" in opts
    wbx.overlay.value = "time ms: digits_cnn-fp32"
    assert wbx.view.legend["label"] == "ms (digits_cnn-fp32)"
    wbx.overlay.value = "none"

    out = tmp_path / "dash.html"
    wbx.write_report(str(out), background=False)
    assert out.exists() and (tmp_path / "dash-records" / "flow.json").exists()
    assert "write_report(fr," in wbx.code.value


def test_second_action_while_busy_is_refused(wbx):
    wbx.profile()
    wbx.compare()  # refused: the profile is still running
    wbx.wait(120)
    assert "another action is running" in wbx.errors.value
    wbx.clear_errors()
