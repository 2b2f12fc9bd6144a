"""bf16/fp8 (and int8 with a histogram calibrator) valid on the real-model corpus (issue #14: "every recipe
produces a checker-valid model"). Each class of failure the corpus found is first reproduced on a small
synthetic graph, so CI catches the class without the cache:

* an all-zero (constant) weight channel: ONNX Runtime's fp8 weight scale is the channel's std / std(E4M3) = 0,
  and 0/0 is NaN ("Initializer '..._quantized' has nan.", silero_vad_op15/lstm's STFT basis, channels 129/257);
  the recipe keeps the node reading that weight float, with the reason, and quantizes the rest.
* every quantizable op inside If bodies: the histogram calibrators (entropy/percentile/distribution — fp8
  always uses distribution) see no tensor and crash ("Histogram has not been collected", silero_vad_v6); the
  recipe does not call the quantizer and warns that the variant quantizes nothing, as int8/minmax did.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from realmodels import corpus
from test_realmodels_int8 import only_inside_if  # the If-only graph, one definition for both files
from realmodels.corpus import select
from workbench.errors import WorkbenchWarning
from workbench.precision import make_variant
from workbench.precision.validity import strict_problems

RNG = np.random.default_rng(0)


def zero_channel_convs() -> onnx.ModelProto:
    """Conv ``c1`` whose weight has an all-zero output channel (like an STFT sine basis at DC), then a plain Conv."""
    w1 = RNG.normal(size=(4, 1, 3)).astype(np.float32)
    w1[1] = 0.0
    w2 = RNG.normal(size=(2, 4, 3)).astype(np.float32)
    g = h.make_graph([h.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1]),
                      h.make_node("Conv", ["a", "w2"], ["y"], name="c2", pads=[1, 1])], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2, 1, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 2, 16])],
                     initializer=[nh.from_array(w1, "w1"), nh.from_array(w2, "w2")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _run(proto, feeds):
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def _cos(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_fp8_zero_weight_channel_keeps_that_node_float_and_says_why():
    src = zero_channel_convs()
    calib = [{"x": RNG.normal(size=(2, 1, 16)).astype(np.float32)} for _ in range(16)]
    v = make_variant(src, "fp8", calib=calib, progress=False)
    assert strict_problems(v.model.proto) == []
    r = v.recipe
    assert list(r["nan_kept"]) == ["c1"]
    why = r["kept_reasons"]["c1"]
    assert "NaN" in why and "1 constant channel(s) along axis 0 (1 all zero), e.g. [1]" in why
    assert "c1" in r["kept_high_precision"] and "c2" not in r["kept_high_precision"]
    assert r["dequantize_nodes"] > 0  # c2 is still quantized
    feeds = calib[0]
    assert _cos(_run(v.model.proto, feeds), _run(src, feeds)) > 0.98


def test_int8_zero_weight_channel_needs_no_guard():
    """int8's min/max scale handles a zero channel itself: nothing is kept float there."""
    calib = [{"x": RNG.normal(size=(2, 1, 16)).astype(np.float32)} for _ in range(16)]
    v = make_variant(zero_channel_convs(), "int8", calib=calib, progress=False)
    assert strict_problems(v.model.proto) == [] and v.recipe["nan_kept"] == {}


@pytest.mark.parametrize("prec,method", [("fp8", "distribution"), ("int8", "entropy"), ("int8", "percentile"),
                                         ("int8", "distribution"), ("int8", "minmax")])
def test_histogram_calibration_with_nothing_to_quantize_warns_not_crashes(prec, method):
    src = only_inside_if()
    calib = [{"x": RNG.normal(size=(4, 8)).astype(np.float32), "c": np.array(i % 2 == 0)} for i in range(16)]
    with pytest.warns(WorkbenchWarning, match=f"the {prec} variant.*quantizes nothing: all 1 quantizable node.*inside If"):
        v = make_variant(src, prec, calib=calib, progress=False, calibration_method=method)
    assert strict_problems(v.model.proto) == []
    assert v.recipe["dequantize_nodes"] == 0 and v.recipe["quantizer_skipped"]
    for feeds in calib[:2]:  # both branches: the model is unchanged, so exact
        np.testing.assert_array_equal(_run(v.model.proto, feeds), _run(src, feeds))


# ---------------------------------------------------------------------------------------------- real models
CI = select("ci")


@pytest.fixture(scope="module")
def cache():
    missing = [m.name for m in CI if not (m.path.exists() and m.data.exists())]
    if missing:
        pytest.skip(f"real models {missing} not in {corpus.cache_dir()} (python realmodels/fetch.py)")
    return corpus.cache_dir()


@pytest.mark.parametrize("prec,method", [("bf16", None), ("fp8", None), ("int8", "percentile")])
@pytest.mark.parametrize("m", CI, ids=[m.name for m in CI])
def test_real_recipe_valid(cache, m, prec, method):
    kw = {"calibration_method": method} if method else {}
    if prec != "bf16":
        kw.update(calib=m.data, num_calib=16, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        v = make_variant(m.path, prec, **kw)
    assert strict_problems(v.model.proto) == []
    if prec == "fp8" and m.name == "silero_vad_op15":  # the STFT basis has two all-zero sine channels
        assert list(v.recipe["nan_kept"]) == ["/model/stft/Conv"]
        assert "2 constant channel(s) along axis 0 (2 all zero)" in v.recipe["kept_reasons"]["/model/stft/Conv"]
    if prec != "bf16":
        assert v.recipe["dequantize_nodes"] > 0
