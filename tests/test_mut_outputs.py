"""Fast behavioural tests for workbench.compare.outputs (mutation target `outputs`, tools/mutate.py).

Real ONNX Runtime engines of small graphs built with onnx.helper: a reference ``y = x @ W`` (class scores)
plus ``z = sum(x)``, and "variants" whose weights are perturbed by a known amount. Every expected metric
(top-1, agreement, top-k overlap, max |error|, cosine) is recomputed here with numpy from the same inputs.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

import workbench as wb
from workbench.backends import get_backend
from workbench.backends.base import BuildOptions
from workbench.compare.outputs import COLUMNS, Comparison, as_batches, compare_engines, compare_outputs
from workbench.errors import DataError, UsageError
from workbench.variant import Variant

from conftest import DrawnBars

QUIET = BuildOptions(progress=False)
RNG = np.random.default_rng(7)
W = RNG.standard_normal((4, 3)).astype(np.float32)
X = RNG.standard_normal((10, 4)).astype(np.float32)
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


def _model(w, name="m", with_z=True, z_first=False):
    nodes = [h.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    outs = [h.make_tensor_value_info("y", T.FLOAT, ["n", 3])]
    if with_z:
        nodes.append(h.make_node("ReduceSum", ["x", "ax"], ["z"], name="rs", keepdims=0))
        z = h.make_tensor_value_info("z", T.FLOAT, ["n"])
        outs = [z, *outs] if z_first else [*outs, z]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["n", 4])], outs,
                     initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1], np.int64), "ax")])
    return wb.load(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), name=name)


def _engine(w, precision="fp32", name="m", **kw):
    return get_backend("onnxruntime").build(Variant(model=_model(w, name, **kw), precision=precision), None, QUIET)


def _batches():
    return [{"x": X[:6]}, {"x": X[6:]}]


def _topk(scores, k):
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


# function-scoped on purpose: mutmut credits a test with the functions its own setup calls, so the
# comparison is built inside every test that reads it
@pytest.fixture
def engines():
    ref = _engine(W)
    close = _engine(W + 0.01, "fp16")
    far = _engine(W[:, ::-1].copy(), "int8")  # class columns reversed: predictions change
    return ref, close, far


@pytest.fixture
def cmp(engines):
    ref, close, far = engines
    return compare_engines(ref, [close, far], _batches(), labels=LABELS, topk=2, progress=False)


def test_metrics_against_numpy(cmp, engines):
    ref_y, close_y, far_y = X @ W, X @ (W + 0.01), X @ W[:, ::-1]
    assert cmp.samples == 10 and cmp.label_output == "y" and cmp.topk == 2
    assert cmp.reference == "m-fp32 (reference)" and cmp.variants == ["m-fp16", "m-int8"]
    assert cmp.reference_info == {"precision": "fp32", "backend": "onnxruntime"}
    assert list(cmp.metrics.columns) == COLUMNS
    assert cmp.value(cmp.reference, "top1") == pytest.approx(np.mean(ref_y.argmax(1) == LABELS))
    assert cmp.value("m-int8", "top1") == pytest.approx(np.mean(far_y.argmax(1) == LABELS))
    assert cmp.value("m-int8", "top1_agreement") == pytest.approx(np.mean(far_y.argmax(1) == ref_y.argmax(1)))
    overlap = [len(set(a) & set(b)) / 2 for a, b in zip(_topk(ref_y, 2), _topk(far_y, 2))]
    assert cmp.value("m-int8", "topk_agreement") == pytest.approx(np.mean(overlap))
    assert cmp.value("m-fp16", "max_abs", "y") == pytest.approx(np.abs(close_y - ref_y).max(), rel=1e-4)
    cos = float(np.dot(ref_y.ravel(), far_y.ravel()) / np.linalg.norm(ref_y) / np.linalg.norm(far_y))
    assert cmp.value("m-int8", "cosine", "y") == pytest.approx(cos, rel=1e-5)
    assert cmp.value("m-int8", "max_abs", "z") == 0.0  # z does not depend on W
    # the variants' rows carry their own precision and backend; the reference has only its top-1 row
    m = cmp.metrics
    assert set(m[m.variant == "m-int8"].precision) == {"int8"} and set(m.backend) == {"onnxruntime"}
    assert m[m.variant == cmp.reference].metric.tolist() == ["top1"]
    assert set(m[(m.variant == "m-fp16") & (m.output == "z")].metric) >= {"max_abs", "cosine", "snr_db"}
    assert cmp.built["m-int8"] is engines[2].variant


def test_value_lookup(cmp):
    assert cmp.value("m-fp16", "cosine") == cmp.value("m-fp16", "cosine", "y")  # the first (label) output
    with pytest.raises(KeyError):
        cmp.value("m-fp16", "nope")
    with pytest.raises(KeyError):
        cmp.value("m-fp16", "cosine", "nope")
    with pytest.raises(KeyError):
        cmp.value("ghost", "cosine")


def test_summary_and_verdicts(cmp):
    s = cmp.summary().set_index("variant")
    ref_top1 = cmp.value(cmp.reference, "top1")
    assert list(s.index) == [cmp.reference, "m-fp16", "m-int8"]
    assert s.loc[cmp.reference, "precision"] == "fp32" and s.loc[cmp.reference, "top1_delta"] == 0.0
    assert math.isnan(s.loc[cmp.reference, "cosine_min"])
    far = s.loc["m-int8"]
    assert far["top1_delta"] == pytest.approx(100 * (cmp.value("m-int8", "top1") - ref_top1))
    assert far["topk_agreement"] == cmp.value("m-int8", "topk_agreement")
    assert far["cosine_min"] == pytest.approx(min(cmp.value("m-int8", "cosine", o) for o in ("y", "z")))
    assert far["snr_db_min"] == pytest.approx(min(cmp.value("m-int8", "snr_db", o) for o in ("y", "z")))
    assert far["max_abs"] == pytest.approx(max(cmp.value("m-int8", "max_abs", o) for o in ("y", "z")))
    assert far["nan_count"] == 0 and far["inf_count"] == 0 and far["precision"] == "int8"
    assert s.loc["m-fp16", "backend"] == "onnxruntime"
    v_far, v_close = cmp.verdict("m-int8"), cmp.verdict("m-fp16")
    assert not v_far.passed and far["passed"] == v_far.passed and far["rule"] == v_far.rule and far["why"] == v_far.why
    assert v_far.tolerance.name == "int8" and v_close.tolerance.name == "fp16"
    # the top-1 clause uses the drop vs the reference, in points
    assert any("top-1" in f or "top1" in f for f in v_far.failed) == (
        100 * (ref_top1 - cmp.value("m-int8", "top1")) > v_far.tolerance.top1_drop_max)
    vs = cmp.verdicts()
    assert list(vs.columns) == ["variant", "precision", "passed", "rule", "why"]
    assert vs.to_dict("records") == [{"variant": n, "precision": p, "passed": cmp.verdict(n).passed,
                                      "rule": cmp.verdict(n).rule, "why": cmp.verdict(n).why}
                                     for n, p in (("m-fp16", "fp16"), ("m-int8", "int8"))]
    with pytest.raises(KeyError):
        cmp.verdict("ghost")


def test_to_json(cmp):
    j = cmp.to_json()
    json.dumps(j, allow_nan=False)
    assert j["reference"] == cmp.reference and j["reference_precision"] == "fp32"
    assert j["reference_backend"] == "onnxruntime"
    assert (j["samples"], j["atol"], j["rtol"], j["topk"], j["label_output"]) == (10, 1e-3, 1e-3, 2, "y")
    assert j["skipped"] == {} and "layerwise" not in j and "bisections" not in j
    assert list(j["variants"]) == [cmp.reference, "m-fp16", "m-int8"]
    ref = j["variants"][cmp.reference]
    assert ref == {"precision": "fp32", "backend": "onnxruntime", "outputs": {}, "top1": cmp.value(cmp.reference, "top1")}
    far = j["variants"]["m-int8"]
    assert far["precision"] == "int8" and far["backend"] == "onnxruntime"
    assert far["verdict"] == cmp.verdict("m-int8").to_json()
    assert far["top1"] == cmp.value("m-int8", "top1") and far["topk_agreement"] == cmp.value("m-int8", "topk_agreement")
    assert far["top1_agreement"] == cmp.value("m-int8", "top1_agreement")
    assert set(far["outputs"]) == {"y", "z"} and far["outputs"]["z"]["max_abs"] == 0.0
    assert "top1" not in far["outputs"]["y"]
    assert far["outputs"]["y"]["err_p99"] == pytest.approx(cmp.value("m-int8", "err_p99", "y"))


def test_comparison_without_labels(engines):
    ref, close, _ = engines
    c = compare_engines(ref, [close, close], {"x": X}, progress=False)  # one feed dict, a name taken twice
    assert c.samples == 10 and c.label_output is None and c.variants == ["m-fp16", "m-fp16'"]
    assert "top1" not in set(c.metrics.metric)
    s = c.summary()
    assert "top1" not in s.columns and list(s.variant) == [c.reference, "m-fp16", "m-fp16'"]
    assert c.verdict("m-fp16").passed
    j = c.to_json()
    assert j["label_output"] is None and "top1" not in j["variants"]["m-fp16"]
    # the reference engine among the variants: its own outputs, so exactly equal
    same = compare_engines(ref, [ref], _batches(), progress=False)
    assert same.variants == ["m-fp32"] and same.value("m-fp32", "max_abs", "y") == 0.0
    assert same.value("m-fp32", "cosine", "y") == pytest.approx(1.0)


def test_atol_rtol_reach_the_accumulators(engines):
    ref, close, _ = engines
    err = float(np.abs(X @ (W + 0.01) - X @ W).max())
    loose = compare_engines(ref, [close], _batches(), atol=10 * err, rtol=0.0, progress=False)
    tight = compare_engines(ref, [close], _batches(), atol=err / 10, rtol=0.0, progress=False)
    assert loose.value("m-fp16", "allclose", "y") and not tight.value("m-fp16", "allclose", "y")
    assert (loose.atol, loose.rtol, tight.atol) == (10 * err, 0.0, err / 10)
    by_rtol = compare_engines(ref, [close], _batches(), atol=0.0, rtol=1e6, progress=False)
    assert by_rtol.value("m-fp16", "allclose", "y") and by_rtol.rtol == 1e6


def test_label_output_choice_and_refusals(engines):
    ref, close, _ = engines
    zf = _engine(W, z_first=True)
    c = compare_engines(zf, [zf], _batches(), labels=LABELS, progress=False)
    assert c.label_output == "y"  # z (rank 1) is skipped for class scores
    c2 = compare_engines(ref, [close], _batches(), labels=LABELS, label_output="y", progress=False)
    assert c2.label_output == "y" and c2.topk == 5
    with pytest.raises(DataError, match="not an output"):
        compare_engines(ref, [close], _batches(), labels=LABELS, label_output="q", progress=False)
    no_scores = _engine(W, name="nz")
    mz = _model(W, "oz")
    del mz.proto.graph.output[0]  # only z (rank 1) left
    only_z = get_backend("onnxruntime").build(Variant(model=wb.load(mz.proto, name="oz"), precision="fp32"), None, QUIET)
    with pytest.raises(DataError, match="class scores"):
        compare_engines(only_z, [only_z], _batches(), labels=LABELS, progress=False)
    with pytest.raises(DataError, match="labels for"):
        compare_engines(ref, [close], _batches(), labels=LABELS[:9], progress=False)
    with pytest.raises(DataError, match="no data"):
        compare_engines(ref, [close], [], progress=False)
    no_z = _engine(W, name="noz", with_z=False)
    with pytest.raises(DataError, match="lacks output"):
        compare_engines(ref, [no_z], _batches(), progress=False)
    assert compare_engines(no_z, [no_scores], _batches(), progress=False).variants == ["nz-fp32"]


def test_output_shape_change_is_refused(engines):
    ref, _, _ = engines
    w5 = RNG.standard_normal((4, 5)).astype(np.float32)
    wide = _engine(w5, name="wide")
    with pytest.raises(DataError, match="keep output shapes"):
        compare_engines(ref, [wide], _batches(), progress=False)


def test_compare_outputs_top_level(tmp_path):
    m = _model(W, "top")
    with pytest.raises(UsageError):
        compare_outputs(m, " , ", progress=False)
    with pytest.raises(UsageError):
        compare_outputs(m, "fp17", progress=False)
    data = {"x": X}
    c = compare_outputs(m, " FP16 ", data=[data], progress=False)
    assert c.variants == ["top-fp16"] and c.samples == 10 and c.skipped == {}
    assert c.reference == "top-fp32 (reference)"
    assert c.value("top-fp16", "cosine", "y") > 0.999
    v = Variant(model=_model(W + 0.5, "top"), precision="fp32")
    c2 = compare_outputs(m, [v], data=[data], labels=LABELS, atol=0.25, rtol=0.0, topk=1, progress=False)
    assert c2.variants == ["top-fp32"] and c2.topk == 1 and c2.atol == 0.25 and c2.rtol == 0.0
    assert c2.value("top-fp32", "max_abs", "y") == pytest.approx(np.abs(X @ (W + 0.5) - X @ W).max(), rel=1e-5)
    assert c2.label_output == "y"
    np.savez(tmp_path / "d.npz", x=X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c3 = compare_outputs(m, "int8", data=str(tmp_path / "d.npz"), batch_size=5, limit=10, progress=False)
    assert any("calibrated on the evaluation data" in str(w.message) for w in caught)
    assert c3.samples == 10 and c3.variants == ["top-int8"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c4 = compare_outputs(m, "int8", data=str(tmp_path / "d.npz"), calib=str(tmp_path / "d.npz"),
                             limit=4, progress=False)
    assert not any("calibrated on the evaluation data" in str(w.message) for w in caught) and c4.samples == 4
    be = get_backend("onnxruntime")
    unsupported = [p for p in ("fp8", "bf16", "fp16", "int8") if not be.supports(p)[0]]
    if unsupported:
        p = unsupported[0]
        with pytest.warns(UserWarning, match=f"skipping {p}"):
            c5 = compare_outputs(m, ["fp16", p], data=[data], calib=[data], progress=False)
        assert list(c5.skipped) == [p] and c5.skipped[p] == be.supports(p)[1] and c5.variants == ["top-fp16"]


def test_as_batches_batch_size_and_limit(tmp_path):
    m = _model(W, "ab")
    np.savez(tmp_path / "d.npz", x=X)
    b = as_batches(m, str(tmp_path / "d.npz"), batch_size=4)
    assert [len(f["x"]) for f in b] == [4, 4, 2] and [len(f["x"]) for f in b] == [4, 4, 2]  # re-iterable
    np.testing.assert_array_equal(np.concatenate([f["x"] for f in b]), X)
    assert [len(f["x"]) for f in as_batches(m, str(tmp_path / "d.npz"), batch_size=4, limit=5)] == [4, 1]
    syn = as_batches(m, None, shapes="x:2x4")
    assert len(syn) == 1 and syn[0]["x"].shape == (2, 4)


def test_summary_skips_a_variant_without_rows():
    import pandas as pd

    rows = [("r (reference)", "fp32", "b", "y", "cosine", 1.0)]
    c = Comparison(metrics=pd.DataFrame(rows, columns=COLUMNS), reference="r (reference)", variants=["gone"],
                   samples=1, reference_info={"precision": "fp32", "backend": "b"})
    s = c.summary()
    assert list(s.variant) == ["r (reference)"] and s.loc[0, "backend"] == "b"
    assert c.verdicts().empty and list(c.verdicts().columns) == ["variant", "precision", "passed", "rule", "why"]


def _hand(rows, variants, label_output=None):
    import pandas as pd

    return Comparison(metrics=pd.DataFrame(rows, columns=COLUMNS), reference="r (reference)", variants=variants,
                      samples=4, label_output=label_output, reference_info={"precision": "fp32", "backend": "b"})


def test_summary_and_verdict_count_nan_and_inf_over_outputs():
    rows = []
    for o, nan, inf in (("y", 2, 0), ("z", 1, 1)):
        rows += [("v", "fp16", "b", o, "cosine", 1.0), ("v", "fp16", "b", o, "snr_db", 80.0),
                 ("v", "fp16", "b", o, "max_abs", 0.0), ("v", "fp16", "b", o, "nan_count", nan),
                 ("v", "fp16", "b", o, "inf_count", inf)]
    c = _hand(rows, ["gone", "v"])  # a variant without rows first: skipped, the next one still listed
    s = c.summary()
    assert list(s.variant) == ["r (reference)", "v"]
    assert s.loc[1, "nan_count"] == 3 and s.loc[1, "inf_count"] == 1 and not s.loc[1, "passed"]
    v = c.verdict("v")
    assert v.failed == ("3 NaN / 1 Inf in the output",) and not v.passed
    clean = _hand([r if r[4] not in ("nan_count", "inf_count") else (*r[:5], 0) for r in rows], ["v"])
    assert clean.verdict("v").passed and clean.summary().loc[1, "nan_count"] == 0
    only_inf = _hand([r if r[4] != "nan_count" else (*r[:5], 0) for r in rows], ["v"])
    assert only_inf.verdict("v").failed == ("0 NaN / 1 Inf in the output",)


def test_top1_drop_is_in_points():
    rows = [("r (reference)", "fp32", "b", "y", "top1", 0.90)]
    for m, val in (("cosine", 1.0), ("snr_db", 80.0), ("nan_count", 0), ("inf_count", 0), ("top1", 0.85),
                   ("topk_agreement", 1.0)):
        rows.append(("v", "int8", "b", "y", m, val))
    c = _hand(rows, ["v"], label_output="y")
    v = c.verdict("v")
    assert v.failed == ("top-1 drop 5 pt > 1 pt",) and c.summary().loc[1, "top1_delta"] == pytest.approx(-5.0)


def test_progress_bar(engines, capsys):
    ref, close, _ = engines
    capsys.readouterr()
    compare_engines(ref, [close], _batches())
    assert "compare" in capsys.readouterr().err  # shown by default
    compare_engines(ref, [close], _batches(), progress=False)
    assert "compare" not in capsys.readouterr().err


def test_default_tolerances(engines):
    ref, close, _ = engines
    c = compare_engines(ref, [close], _batches(), progress=False)
    assert (c.atol, c.rtol, c.topk) == (1e-3, 1e-3, 5)



# ------------------------------------------------------------------------------------------ session 27: survivors
class _Drawn(DrawnBars):
    """The bars a user sees, by description."""

    def take(self) -> tuple[dict[str, list[str]], str]:
        """({description: the n/total counts drawn}, the raw text), and empty the buffer."""
        import re

        text = super().take()
        bars: dict[str, list[str]] = {}
        for frame in text.split("\r"):
            m = re.match(r"(.+?): +\d+%\|.*?\| (\d+/\d+) \[", frame)
            if m:
                bars.setdefault(m.group(1), []).append(m.group(2))
        return bars, text


def _under_mutmut() -> bool:
    import os

    return bool(os.environ.get("MUTANT_UNDER_TEST"))


def test_compare_outputs_bars_batches_and_progress_flag(tmp_path, monkeypatch):
    """By default the calibration of the int8 variant and the comparison draw their bars (the comparison: one step
    per batch, 10 samples in batches of 4 = 3), and both are erased at the end; progress=False draws nothing."""
    drawn = _Drawn(monkeypatch)
    m = _model(W, "top")
    np.savez(tmp_path / "d.npz", x=X)
    calib = [{"x": X}]
    compare_outputs(m, "int8", data=str(tmp_path / "d.npz"), calib=calib, batch_size=4)
    bars, text = drawn.take()
    assert set(bars) == {"calibrating top (minmax)", "compare"}
    assert bars["compare"][0] == "0/3" and bars["compare"][-1] == "3/3"
    assert "\n" not in text and text.endswith("\r")  # leave=False: erased, the cursor back at the line start
    compare_outputs(m, "int8", data=str(tmp_path / "d.npz"), calib=calib, batch_size=4, progress=False)
    assert drawn.take() == ({}, "")


def test_build_variant_engine_passes_everything_to_the_build(monkeypatch):
    from workbench.compare.outputs import build_variant_engine
    from workbench.errors import ShapeSpecError

    m = _model(W, "bv")
    be = get_backend("onnxruntime")
    var, eng = build_variant_engine(m, "fp32", be, shapes="x:3x4", progress=False)
    assert eng.backend is be and var.precision == "fp32"  # the caller's backend object builds it
    assert eng.record.shapes == {"x": {"min": [3, 4], "opt": [3, 4], "max": [3, 4]}}
    with pytest.raises(ShapeSpecError, match="fixes it to 4"):
        build_variant_engine(m, "fp32", be, shapes="x:3x5", progress=False)
    # recipe options reach make_variant: 4 of the 10 calibration samples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "calibrating on only 4 samples"
        drawn = _Drawn(monkeypatch)
        var, _ = build_variant_engine(m, "int8", "onnxruntime", calib=[{"x": X}], num_calib=4)
        assert var.recipe["calibration"]["num_samples"] == 4
        assert list(drawn.take()[0]) == ["calibrating bv (minmax)"]  # a bar by default
        build_variant_engine(m, "int8", "onnxruntime", calib=[{"x": X}], num_calib=4, progress=False)
        assert drawn.take() == ({}, "")


def test_compare_outputs_reads_a_path_and_needs_an_input(tmp_path):
    import onnx

    from workbench.errors import ModelLoadError

    path = tmp_path / "m.onnx"
    onnx.save(_model(W, "m").proto, path)
    c = compare_outputs(str(path), "fp16", data=[{"x": X}], progress=False)
    assert c.samples == 10 and c.variants == ["m-fp16"] and c.value("m-fp16", "cosine", "y") > 0.999
    k = h.make_node("Constant", [], ["y"], name="k", value=numpy_helper.from_array(np.ones(2, np.float32), "v"))
    g = h.make_graph([k], "noin", [], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    no_inputs = wb.load(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), name="noin")
    with pytest.raises(ModelLoadError, match="has no inputs: compare needs at least one input"):
        compare_outputs(no_inputs, "fp16", progress=False)


def test_compare_outputs_skips_an_unsupported_precision_and_goes_on():
    """fp8 (upper case in the string: names are case-insensitive) cannot run on ONNX Runtime CPU: it is skipped
    under its canonical name with the backend's reason, and fp16 after it is still compared."""
    m = _model(W, "top")
    be = get_backend("onnxruntime")
    ok, why = be.supports("fp8")
    assert not ok  # ONNX Runtime's backend declares fp8 unsupported on any provider without an FP8 GPU
    with pytest.warns(UserWarning, match="skipping fp8 on onnxruntime: ") as caught:
        c = compare_outputs(m, "FP8, fp16", data=[{"x": X}], progress=False)
    assert c.skipped == {"fp8": why} and c.variants == ["top-fp16"]
    # the only warning: fp8 is not built, so nothing was calibrated on the evaluation data
    assert [str(w.message) for w in caught] == [f"skipping fp8 on onnxruntime: {why}"]


def test_compare_outputs_warnings_point_at_the_caller(tmp_path):
    """Both warnings name the line that called compare_outputs (not the @captures_native_log wrapper in
    workbench/logs.py). Skipped under mutmut, whose trampoline adds a frame between caller and function."""
    if _under_mutmut():
        pytest.skip("mutmut's trampoline adds a stack frame: stacklevel cannot be observed there")
    m = _model(W, "top")
    np.savez(tmp_path / "d.npz", x=X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare_outputs(m, "fp8,int8", data=str(tmp_path / "d.npz"), progress=False)
    msgs = {str(w.message).split(":")[0]: w for w in caught}
    assert str(msgs["int8/fp8 calibrated on the evaluation data itself (no calib= given)"].message) == (
        "int8/fp8 calibrated on the evaluation data itself (no calib= given): accuracy is optimistic")
    for key in ("int8/fp8 calibrated on the evaluation data itself (no calib= given)", "skipping fp8 on onnxruntime"):
        assert msgs[key].filename == __file__, (key, msgs[key].filename)


def test_compare_outputs_calibration_warning_text():
    m = _model(W, "top")
    with pytest.warns(UserWarning) as caught:
        compare_outputs(m, "int8", data=[{"x": X}], progress=False)
    assert "int8/fp8 calibrated on the evaluation data itself (no calib= given): accuracy is optimistic" in [
        str(w.message) for w in caught]


def test_compare_outputs_defaults_and_shapes():
    """Default atol / rtol / topk; ``shapes`` fixes the synthetic batch (3 samples), and a map that does not fit
    the model is refused by the FP32 reference build even when every variant is skipped."""
    from workbench.errors import ShapeSpecError

    m = _model(W, "top")
    c = compare_outputs(m, "fp16", data=[{"x": X}], progress=False)
    assert (c.atol, c.rtol, c.topk) == (1e-3, 1e-3, 5)
    assert compare_outputs(m, "fp16", shapes="x:3x4", progress=False).samples == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipping fp8
        with pytest.raises(ShapeSpecError, match="fixes it to 4"):
            compare_outputs(m, "fp8", data=[{"x": X}], shapes="x:3x5", progress=False)


def test_compare_outputs_label_output_reaches_the_comparison():
    """Two class-score outputs: y (x @ W) first, y2 (x @ W reversed) second; label_output='y2' scores y2."""
    nodes = [h.make_node("MatMul", ["x", "w"], ["y"], name="mm"), h.make_node("MatMul", ["x", "w2"], ["y2"], name="mm2")]
    g = h.make_graph(nodes, "two", [h.make_tensor_value_info("x", T.FLOAT, ["n", 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["n", 3]), h.make_tensor_value_info("y2", T.FLOAT, ["n", 3])],
                     initializer=[numpy_helper.from_array(W, "w"), numpy_helper.from_array(W[:, ::-1].copy(), "w2")])
    m = wb.load(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), name="two")
    c = compare_outputs(m, "fp16", data=[{"x": X}], labels=LABELS, label_output="y2", progress=False)
    assert c.label_output == "y2"
    assert c.value(c.reference, "top1") == pytest.approx(np.mean((X @ W[:, ::-1]).argmax(1) == LABELS))
    assert compare_outputs(m, "fp16", data=[{"x": X}], labels=LABELS, progress=False).label_output == "y"


def test_per_output_passed_uses_the_variants_precision_tolerance():
    """An int8 variant at ~20 dB SNR: within int8's tolerance (cosine >= 0.98, SNR >= 14 dB), outside the generic
    one (0.999, 30 dB). The per-output ``passed`` metric follows int8's."""
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(W.shape).astype(np.float32)
    ref_y = X.astype(np.float64) @ W
    d = X.astype(np.float64) @ noise
    scale = math.sqrt((ref_y ** 2).sum() / (d ** 2).sum() / 100)  # error energy = ref energy / 100: 20 dB
    w_var = (W + scale * noise).astype(np.float32)
    var_y = X.astype(np.float64) @ w_var
    snr = 10 * math.log10((ref_y ** 2).sum() / ((var_y - ref_y) ** 2).sum())
    cos = float((ref_y * var_y).sum() / np.linalg.norm(ref_y) / np.linalg.norm(var_y))
    assert 14 < snr < 30 and 0.98 < cos < 0.999
    c = compare_engines(_engine(W), [_engine(w_var, "int8", name="v")], _batches(), progress=False)
    assert c.value("v-int8", "snr_db", "y") == pytest.approx(snr, abs=1e-3)
    assert c.value("v-int8", "passed", "y") and c.verdict("v-int8").passed


def test_samples_are_counted_on_the_models_batch_axis():
    """A recurrent-state input (2, N, 4): the batch is axis 1, so two feeds of N = 5 and 3 are 8 samples."""
    g = h.make_graph([h.make_node("Mul", ["s", "k"], ["y"], name="mul")], "state",
                     [h.make_tensor_value_info("s", T.FLOAT, [2, "N", 4])], [h.make_tensor_value_info("y", T.FLOAT, [2, "N", 4])],
                     initializer=[numpy_helper.from_array(np.float32(2.0), "k")])
    model = wb.load(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), name="state")
    eng = get_backend("onnxruntime").build(Variant(model=model, precision="fp32"), None, QUIET)
    feeds = [{"s": np.ones((2, 5, 4), np.float32)}, {"s": np.ones((2, 3, 4), np.float32)}]
    assert compare_engines(eng, [eng], feeds, progress=False).samples == 8


def _lw_pair():
    """Reference x -> Mul(2) "mul" -> Relu "relu" -> Add(b) "add" = y, plus Shape(x) (int64: skipped). The variant
    computes the Mul as a Div by 0.5 under other names (no name or structure pairs m1 or r: unmatched) and adds
    b + 0.01, so y (same name) differs by exactly 0.01 everywhere."""
    f = T.FLOAT
    two, half = numpy_helper.from_array(np.float32(2.0), "two"), numpy_helper.from_array(np.float32(0.5), "half")
    b = numpy_helper.from_array(np.full((4,), 1.0, np.float32), "b")
    b2 = numpy_helper.from_array(np.full((4,), 1.01, np.float32), "b")
    io = ([h.make_tensor_value_info("x", f, ["n", 4])], [h.make_tensor_value_info("y", f, ["n", 4])])
    ref = h.make_graph([h.make_node("Mul", ["x", "two"], ["m1"], name="mul"), h.make_node("Relu", ["m1"], ["r"], name="relu"),
                        h.make_node("Add", ["r", "b"], ["y"], name="add"), h.make_node("Shape", ["x"], ["s"], name="shape")],
                       "ref", *io, [two, b])
    var = h.make_graph([h.make_node("Div", ["x", "half"], ["q1"], name="div"), h.make_node("Relu", ["q1"], ["q2"], name="v_relu"),
                        h.make_node("Add", ["q2", "b"], ["y"], name="v_add")], "var", *io, [half, b2])
    op = [h.make_opsetid("", 17)]
    model = wb.load(h.make_model(ref, opset_imports=op), name="lw")
    return model, Variant(model=model.derive(h.make_model(var, opset_imports=op), name="lw-fp16"), precision="fp16")


def test_to_json_carries_the_layerwise_frames_and_bisections():
    """What `workbench compare --layerwise/--bisect --json` writes: per variant the frame's bookkeeping, its
    unmatched tensors and skip counts, and one record per node (NaN as null); the bisection's own JSON."""
    from workbench.compare.layerwise import first_divergence, layerwise

    model, var = _lw_pair()
    data = [{"x": X}]
    ref_e = get_backend("onnxruntime").build(Variant(model=model, precision="fp32"), None, QUIET)
    var_e = get_backend("onnxruntime").build(var, None, QUIET)
    cmp = compare_engines(ref_e, [var_e], data, progress=False)
    df = layerwise(model, var, data=data, metric="max_abs", threshold=1e-3, progress=False)
    cmp.layerwise["lw-fp16"] = df
    b = first_divergence(model, var, data=data, metric="max_abs", threshold=1e-3, progress=False)
    cmp.bisections["lw-fp16"] = b
    j = json.loads(json.dumps(cmp.to_json(), allow_nan=False))
    lw = j["layerwise"]["lw-fp16"]
    assert [u["tensor"] for u in lw["unmatched"]] == ["m1", "r"] and lw["unmatched"] == df.attrs["unmatched"]
    assert lw["skipped"] == {"not a float tensor": 1}
    assert lw["first_divergent"] == "add" and lw["metric"] == "max_abs" and lw["threshold"] == 1e-3
    assert lw["counts"] == {"compared": 1, "unmatched": 2, "skipped": 1} and lw["samples"] == 10
    (node,) = lw["nodes"]
    assert "variant" not in node and "precision" not in node
    assert (node["onnx_node"], node["tensor"], node["diverged"]) == ("add", "y", True)
    assert node["max_abs"] == pytest.approx(0.01, rel=1e-4) and node["mean_abs"] == pytest.approx(0.01, rel=1e-4)
    assert j["bisections"] == {"lw-fp16": json.loads(json.dumps(b.to_json()))}
    assert j["bisections"]["lw-fp16"]["first_divergent"] == "add"


def test_to_json_of_a_debug_tensor_frame():
    """A frame in layerwise_debug_tensors' format (TensorRT's own tensors: no unmatched/skipped bookkeeping,
    NaN metrics on a tensor TensorRT did not mark) gives empty lists, and NaN becomes null."""
    import pandas as pd

    ref_e = _engine(W)
    cmp = compare_engines(ref_e, [_engine(W + 0.01, "fp16")], _batches(), progress=False)
    df = pd.DataFrame([{"variant": "m-fp16", "precision": "fp16", "backend": "tensorrt", "order": 0, "onnx_node": "mm",
                        "op_type": "MatMul", "tensor": "y", "match": "not marked by TensorRT", "max_abs": math.nan,
                        "diverged": False, "first_divergent": False}])
    df.attrs.update(first_divergent=None, metric="cosine", threshold=0.999, source="tensorrt-debug-tensors")
    cmp.layerwise["m-fp16"] = df
    lw = json.loads(json.dumps(cmp.to_json(), allow_nan=False))["layerwise"]["m-fp16"]
    assert lw["unmatched"] == [] and lw["skipped"] == {} and lw["first_divergent"] is None
    assert lw["nodes"][0]["max_abs"] is None and lw["nodes"][0]["match"] == "not marked by TensorRT"


def test_verdict_reads_top1_only_with_a_label_output_and_a_top1_row():
    """A Comparison assembled by hand (or filtered): with labels but no top1 row for the variant, the verdict has no
    top-1 clause instead of failing; without a label output a stray top1 row is not a top-1 clause either."""
    rows = [("r (reference)", "fp32", "b", "y", "top1", 0.90)]
    rows += [("v", "int8", "b", "y", m, val) for m, val in (("cosine", 1.0), ("snr_db", 80.0), ("nan_count", 0),
                                                            ("inf_count", 0))]
    assert _hand(rows, ["v"], label_output="y").verdict("v").passed
    stray = rows + [("v", "int8", "b", "y", "top1", 0.10)]  # an 80-point drop, were it read
    v = _hand(stray, ["v"]).verdict("v")
    assert v.passed and v.failed == () and "top-1" not in v.rule
