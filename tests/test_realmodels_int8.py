"""int8 recipes valid across the real-model corpus (issues #13/#14): the classes of failure the corpus found,
each on a small synthetic graph that has it, then on the real model that brought it (skipped without the cache).

* ONNX Runtime's quantizer re-sorts the main graph by node inputs only, so an If whose branches read a main-graph
  tensor can land before that tensor's producer (silero_vad_op15: "Nodes in a graph must be topologically sorted").
* A Gemm bias of shape [1, N] (tf2onnx; ORT's MatMul+Add fusion) crashes ORT's int32-bias weight-scale adjustment
  ("truth value of an array ... is ambiguous", magika).
* A quantized Relu/Clip whose output a body reads: ORT folds it into the Q range and renames, so the body
  reads the unclipped tensor (cosine 0.74 on the synthetic graph) — kept float, with the reason.
* Every quantizable op inside If bodies: the variant quantizes nothing; it must say so (silero_vad_v6).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from workbench.errors import WorkbenchWarning
from workbench.precision import make_variant
from workbench.precision import quantize as Q
from workbench.precision.validity import strict_problems

REAL = Path(os.environ.get("WB_REALMODELS_CACHE", Path.home() / ".cache/trt-workbench/realmodels"))
RNG = np.random.default_rng(0)


def _run(proto, feeds):
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def _cos(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def if_reads_late_tensor() -> onnx.ModelProto:
    """``If(c)`` depends only on the input ``c`` but its branches read ``r = Relu(x @ w)``: ORT's sort (by node
    inputs) puts it first, before the MatMul that produces ``r``."""
    w = nh.from_array(RNG.normal(size=(8, 8)).astype(np.float32), "w")
    w2 = nh.from_array(RNG.normal(size=(8, 8)).astype(np.float32), "w2")
    out = lambda n: h.make_tensor_value_info(n, T.FLOAT, [4, 8])  # noqa: E731
    then_g = h.make_graph([h.make_node("Neg", ["r"], ["t"], name="then_neg")], "then", [], [out("t")])
    else_g = h.make_graph([h.make_node("Identity", ["r"], ["e"], name="else_id")], "else", [], [out("e")])
    nodes = [h.make_node("MatMul", ["x", "w"], ["a"], name="mm1"), h.make_node("Relu", ["a"], ["r"], name="relu"),
             h.make_node("If", ["c"], ["b"], name="If", then_branch=then_g, else_branch=else_g),
             h.make_node("MatMul", ["b", "w2"], ["y"], name="mm2")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [4, 8]), h.make_tensor_value_info("c", T.BOOL, [])],
                     [h.make_tensor_value_info("y", T.FLOAT, [4, 8])], initializer=[w, w2])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def gemm_row_bias() -> onnx.ModelProto:
    """Gemm with a bias C of shape [1, N] (legal: broadcast to (M, N)), as tf2onnx writes it."""
    w = nh.from_array(RNG.normal(size=(16, 6)).astype(np.float32), "w")
    c = nh.from_array(RNG.normal(size=(1, 6)).astype(np.float32), "c")
    g = h.make_graph([h.make_node("Gemm", ["x", "w", "c"], ["y"], name="gemm")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [4, 16])], [h.make_tensor_value_info("y", T.FLOAT, [4, 6])],
                     initializer=[w, c])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def only_inside_if() -> onnx.ModelProto:
    """The only MatMul sits inside an If branch (silero_vad_v6: the whole model is one If)."""
    w = nh.from_array(RNG.normal(size=(8, 8)).astype(np.float32), "w")
    out = lambda n: h.make_tensor_value_info(n, T.FLOAT, [4, 8])  # noqa: E731
    then_g = h.make_graph([h.make_node("MatMul", ["x", "w"], ["t"], name="then_mm")], "then", [], [out("t")])
    else_g = h.make_graph([h.make_node("Identity", ["x"], ["e"], name="else_id")], "else", [], [out("e")])
    g = h.make_graph([h.make_node("If", ["c"], ["y"], name="If", then_branch=then_g, else_branch=else_g)], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [4, 8]), h.make_tensor_value_info("c", T.BOOL, [])],
                     [out("y")], initializer=[w])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _calib(n=16):
    """Both branches taken (calibration sees the If output of each)."""
    return [{"x": RNG.normal(size=(4, 8)).astype(np.float32), "c": np.array(i % 2 == 0)} for i in range(n)]


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime-cpu"])
def test_int8_if_reading_a_later_tensor_is_valid_and_close(target):
    src = if_reads_late_tensor()
    calib = _calib()
    v = make_variant(src, "int8", calib=calib, progress=False, target=target)
    assert strict_problems(v.model.proto) == []
    r = v.recipe
    assert r["resorted_for_subgraphs"] is True  # ORT's own order was invalid: the recipe re-sorted it
    assert r["subgraphs"]["holders"] == ["If"] and r["subgraphs"]["nodes_inside"] == 2
    assert "main graph only" in r["subgraphs"]["action"]
    assert r["dequantize_nodes"] > 0 and r["validation"]["rounds"] == 1 and not r["validation_kept"]
    if target == "onnxruntime-cpu":  # Relu is quantized there: ORT folds it into the Q range and hands 'r' to the
        assert list(r["scope_kept"]) == ["relu"]  # MatMul, which the branches would read unclipped -> kept float
        assert "read inside an If/Loop/Scan body" in r["kept_reasons"]["relu"]
    else:
        assert r["scope_kept"] == {}
    for feeds in calib[:2]:  # both branches, on calibrated batches (a fresh draw can saturate int8)
        assert _cos(_run(v.model.proto, feeds)[0], _run(src, feeds)[0]) > 0.99


def test_flatten_gemm_bias_is_exact():
    src = gemm_row_bias()
    p = onnx.ModelProto()
    p.CopyFrom(src)
    assert Q.flatten_gemm_bias(p) == ["gemm"]
    assert [list(i.dims) for i in p.graph.initializer if i.name == "c"] == [[6]]
    x = RNG.normal(size=(4, 16)).astype(np.float32)
    np.testing.assert_array_equal(_run(p, {"x": x})[0], _run(src, {"x": x})[0])
    assert Q.flatten_gemm_bias(p) == []  # idempotent


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime-cpu"])
def test_int8_gemm_with_row_bias(target):
    src = gemm_row_bias()
    calib = [{"x": RNG.normal(size=(4, 16)).astype(np.float32)} for _ in range(16)]
    v = make_variant(src, "int8", calib=calib, progress=False, target=target)
    assert strict_problems(v.model.proto) == [] and v.recipe["gemm_bias_flattened"] == ["gemm"]
    # fp32 biases (TensorRT form): ORT's int32-bias weight-scale adjustment is pointless there and off
    assert v.recipe["extra_options"].get("QDQDisableWeightAdjustForInt32Bias") is (target == "tensorrt" or None)
    # a calibrated batch: a fresh draw can put an output outside the calibrated range, where int8 saturates
    # (a random-order run drew one with fp32 -19.4 against a calibrated +-10.4: cosine 0.96, not a recipe bug)
    x = calib[-1]["x"]
    assert _cos(_run(v.model.proto, {"x": x})[0], _run(src, {"x": x})[0]) > 0.99


def test_int8_bias_adjust_crash_falls_back_and_says_so(monkeypatch):
    """Without the flattening, ORT's adjustment crashes on the [1, N] bias: the recipe quantizes without the
    adjustment and records why (a class guard for any other shape ORT's code mishandles)."""
    monkeypatch.setattr(Q, "flatten_gemm_bias", lambda proto: [])
    calib = [{"x": RNG.normal(size=(4, 16)).astype(np.float32)} for _ in range(16)]
    v = make_variant(gemm_row_bias(), "int8", calib=calib, progress=False, target="onnxruntime-cpu")
    assert strict_problems(v.model.proto) == []
    assert "adjustment failed" in v.recipe["bias_adjust_disabled"] and "ambiguous" in v.recipe["bias_adjust_disabled"]
    assert v.recipe["extra_options"]["QDQDisableWeightAdjustForInt32Bias"] is True


def test_int8_that_quantizes_nothing_says_so():
    with pytest.warns(WorkbenchWarning, match="quantizes nothing: all 1 quantizable node.*MatMul.*inside If"):
        v = make_variant(only_inside_if(), "int8", calib=_calib(), progress=False, target="tensorrt")
    assert v.recipe["dequantize_nodes"] == 0 and "inside" in v.recipe["subgraphs"]["quantized_nothing"]


def test_int8_on_a_plain_graph_warns_nothing():
    calib = [{"x": RNG.normal(size=(4, 16)).astype(np.float32)} for _ in range(16)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", WorkbenchWarning)
        v = make_variant(gemm_row_bias(), "int8", calib=calib, progress=False)
    assert v.recipe["subgraphs"] is None and v.recipe["resorted_for_subgraphs"] is False


# ---------------------------------------------------------------------------------------------- real models
def _real(name):
    p, d = REAL / "models" / f"{name}.onnx", REAL / "data" / f"{name}.npz"
    if not (p.exists() and d.exists()):
        pytest.skip(f"real model {name} not in {REAL} (python realmodels/fetch.py)")
    return p, d


@pytest.mark.parametrize("name", ["silero_vad_op15", "magika_v3_3"])
@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt-rtx"])
def test_real_int8_valid(name, backend):
    path, data = _real(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        v = make_variant(path, "int8", calib=data, progress=False, backend=backend)
    assert strict_problems(v.model.proto) == []
    assert v.recipe["dequantize_nodes"] > 0
    if name == "magika_v3_3":
        assert v.recipe["gemm_bias_flattened"]  # the Dense_1 MatMul+Add, fused by ORT's pre-processing
    else:
        assert v.recipe["resorted_for_subgraphs"] and "/model/decoder/If_1" in v.recipe["subgraphs"]["holders"]
