"""Tests for workbench/precision/smooth.py (issue 23 mutation target ``smooth``): SmoothQuant for the transformer
int8 recipe.

The expected scales are computed here from the paper's formula (arXiv:2211.10438) on the calibration arrays
the test controls: ``s_j = max|X_j|^a / max|W_j|^(1-a)``, clipped to [1e-4, 1e4]; the smoothed graph must
compute the same outputs as the original on ONNX Runtime (``X @ W = (X / s) @ (s W)``).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from workbench.precision.smooth import activation_channel_max, apply_smoothquant, smooth_groups
from workbench.precision.validity import strict_problems

RNG = np.random.default_rng(0)
WQ = RNG.normal(size=(3, 2)).astype(np.float32)
WK = RNG.normal(size=(3, 2)).astype(np.float32) * np.array([[1.0], [4.0], [0.5]], np.float32)
BIAS = np.array([0.0, 5.0, -0.5], np.float32)  # channel 1 is the outlier channel


def _attention_like(extra_nodes=(), extra_inits=(), outputs=("q", "k", "res")):
    """a = x + bias; q = a @ WQ; k = a @ WK; res = a + a (a residual reader of the same activation)."""
    nodes = [h.make_node("Add", ["x", "bias"], ["a"], name="add_bias"),
             h.make_node("MatMul", ["a", "wq"], ["q"], name="mm_q"),
             h.make_node("MatMul", ["a", "wk"], ["k"], name="mm_k"),
             h.make_node("Add", ["a", "a"], ["res"], name="residual"), *extra_nodes]
    inits = [nh.from_array(BIAS, "bias"), nh.from_array(WQ, "wq"), nh.from_array(WK, "wk"), *extra_inits]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["n", 3])],
                     [h.make_tensor_value_info(o, T.FLOAT, [None, None]) for o in outputs], initializer=inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _run(m, feeds):
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


def _batches(n=3):
    return [{"x": RNG.normal(size=(4, 3)).astype(np.float32) * (i + 1)} for i in range(n)]


def _inits(m):
    return {i.name: nh.to_array(i) for i in m.graph.initializer}


# ---------------------------------------------------------------------------------------------- groups
def test_groups_by_activation_with_private_constant_weights():
    m = _attention_like()
    groups = smooth_groups(m)
    assert {x: [n.name for n in ns] for x, ns in groups.items()} == {"a": ["mm_q", "mm_k"]}
    assert {x: [n.name for n in ns] for x, ns in smooth_groups(m, ["mm_k"]).items()} == {"a": ["mm_k"]}
    assert smooth_groups(m, []) == {}


@pytest.mark.parametrize("case", ["shared_weight", "weight_is_input", "activation_is_constant", "3d_weight",
                                  "fp16_weight", "gemm"])
def test_matmuls_that_are_not_smoothed(case):
    extra, inits = [], []
    if case == "shared_weight":  # wq is also read by another node: scaling it would change that node
        extra = [h.make_node("Identity", ["wq"], ["wq_copy"], name="id")]
    elif case == "weight_is_input":
        extra = [h.make_node("MatMul", ["a", "x_t"], ["z"], name="mm_dyn"), h.make_node("Relu", ["x"], ["x_t"], name="r")]
    elif case == "activation_is_constant":
        extra = [h.make_node("MatMul", ["c", "wc"], ["z"], name="mm_const")]
        inits = [nh.from_array(np.ones((2, 3), np.float32), "c"), nh.from_array(np.ones((3, 2), np.float32), "wc")]
    elif case == "3d_weight":
        extra = [h.make_node("MatMul", ["a", "w3"], ["z"], name="mm_3d")]
        inits = [nh.from_array(np.ones((1, 3, 2), np.float32), "w3")]
    elif case == "fp16_weight":
        extra = [h.make_node("MatMul", ["a", "w16"], ["z"], name="mm_16")]
        inits = [nh.from_array(np.ones((3, 2), np.float16), "w16")]
    else:
        extra = [h.make_node("Gemm", ["a", "wg"], ["z"], name="gemm")]
        inits = [nh.from_array(np.ones((3, 2), np.float32), "wg")]
    m = _attention_like(extra, inits)
    groups = {x: [n.name for n in ns] for x, ns in smooth_groups(m).items()}
    if case == "shared_weight":
        assert groups == {"a": ["mm_k"]}
    else:
        assert groups == {"a": ["mm_q", "mm_k"]}


def test_matmul_with_an_unexpected_input_count_is_skipped():
    m = _attention_like()
    m.graph.node[1].input.append("extra")
    assert [n.name for n in smooth_groups(m)["a"]] == ["mm_k"]


# ---------------------------------------------------------------------------------------------- channel max
def test_channel_max_over_batches_by_numpy():
    m = _attention_like()
    batches = _batches()
    amax = activation_channel_max(m, ["a", "q", "x"], batches)
    a_all = np.concatenate([b["x"] + BIAS for b in batches])
    np.testing.assert_allclose(amax["a"], np.abs(a_all).max(axis=0), rtol=1e-6)
    np.testing.assert_allclose(amax["q"], np.abs(a_all @ WQ).max(axis=0), rtol=1e-5)  # q is a graph output too
    np.testing.assert_allclose(amax["x"], np.abs(np.concatenate([b["x"] for b in batches])).max(axis=0))
    assert amax["a"].dtype == np.float32
    assert len(m.graph.output) == 3  # the model passed in is not changed


def test_channel_max_of_a_3d_tensor_reduces_all_but_the_last_axis():
    m = _attention_like()
    m.graph.input[0].type.tensor_type.shape.dim.insert(0, onnx.TensorShapeProto.Dimension(dim_param="b"))
    xs = [RNG.normal(size=(2, 5, 3)).astype(np.float32) for _ in range(2)]
    amax = activation_channel_max(m, ["a"], [{"x": x} for x in xs])
    np.testing.assert_allclose(amax["a"], np.abs(np.concatenate(xs) + BIAS).reshape(-1, 3).max(axis=0), rtol=1e-6)


def test_channel_max_skips_scalars_and_empty_tensors():
    m = _attention_like([h.make_node("ReduceMax", ["a"], ["amax_all"], name="rmax", keepdims=0)])
    amax = activation_channel_max(m, ["amax_all", "a"], [{"x": np.ones((2, 3), np.float32)}])
    assert set(amax) == {"a"}  # a scalar has no channel axis
    amax = activation_channel_max(_attention_like(), ["a"], [{"x": np.ones((0, 3), np.float32)}])
    assert amax == {}  # a zero-row batch gives nothing (and no error)
    amax = activation_channel_max(_attention_like(), ["a"], [{"x": np.ones((0, 3), np.float32)},
                                                             {"x": np.full((1, 3), -2.0, np.float32)}])
    np.testing.assert_allclose(amax["a"], np.abs(np.full(3, -2.0) + BIAS))
    assert activation_channel_max(_attention_like(), ["a"], []) == {}


# ---------------------------------------------------------------------------------------------- apply
def _expected_scales(batches, ws, alpha):
    a = np.abs(np.concatenate([b["x"] + BIAS for b in batches])).max(axis=0)
    wmax = np.max([np.abs(w).max(axis=1) for w in ws], axis=0)
    s = np.maximum(a, 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha)
    return np.clip(s, 1e-4, 1e4).astype(np.float32)


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_smoothquant_scales_weights_inserts_one_mul_and_keeps_the_function(alpha):
    m = _attention_like()
    src = onnx.ModelProto()
    src.CopyFrom(m)
    batches = _batches()
    rec = apply_smoothquant(m, batches, alpha=alpha)
    s = _expected_scales(batches, [WQ, WK], alpha)
    inits = _inits(m)
    np.testing.assert_allclose(inits["wq"], WQ * s[:, None], rtol=1e-6)
    np.testing.assert_allclose(inits["wk"], WK * s[:, None], rtol=1e-6)
    np.testing.assert_allclose(inits["a__wb_smooth_inv"], 1 / s, rtol=1e-6)
    assert inits["wq"].dtype == inits["a__wb_smooth_inv"].dtype == np.float32
    muls = [n for n in m.graph.node if n.op_type == "Mul"]
    assert [(n.name, list(n.input), list(n.output)) for n in muls] == [
        ("a__wb_smooth_mul", ["a", "a__wb_smooth_inv"], ["a__wb_smoothed"])]
    order = [n.name for n in m.graph.node]
    assert order == ["add_bias", "a__wb_smooth_mul", "mm_q", "mm_k", "residual"]
    assert [list(n.input) for n in m.graph.node if n.op_type == "MatMul"] == [["a__wb_smoothed", "wq"],
                                                                              ["a__wb_smoothed", "wk"]]
    assert list(m.graph.node[-1].input) == ["a", "a"]  # the residual still reads the original activation
    assert rec == {"applied": True, "alpha": alpha, "tensors": 1, "matmuls": ["mm_q", "mm_k"],
                   "max_channel_scale_ratio": round(float(s.max() / s.min()), 3),
                   "method": "SmoothQuant (arXiv:2211.10438): X @ W = (X / s) @ (s W), s_j = max|X_j|^a / "
                             "max|W_j|^(1-a)"}
    assert strict_problems(m) == []
    x = {"x": RNG.normal(size=(5, 3)).astype(np.float32)}
    ref, out = _run(src, x), _run(m, x)
    for k in ("q", "k", "res"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-5)


def test_uniform_channels_record_a_ratio_of_one_and_default_alpha_is_half():
    w = np.ones((3, 2), np.float32)
    g = h.make_graph([h.make_node("Relu", ["x"], ["a"], name="relu"), h.make_node("MatMul", ["a", "w"], ["y"], name="mm")],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, [2, 3])], [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[nh.from_array(w, "w")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    rec = apply_smoothquant(m, [{"x": np.full((2, 3), 4.0, np.float32)}])
    assert rec["alpha"] == 0.5 and rec["max_channel_scale_ratio"] == 1.0
    np.testing.assert_allclose(_inits(m)["w"], np.full((3, 2), 2.0))  # s = 4^0.5 / 1^0.5


def test_scales_are_clipped_and_zero_channels_floored():
    """A channel that is always 0 gets max(0, 1e-5); a 1e12 outlier channel's scale is clipped at 1e4."""
    w = np.array([[1.0, 1.0], [1e-3, 1e-3], [1.0, 2.0]], np.float32)
    g = h.make_graph([h.make_node("Relu", ["x"], ["a"], name="relu"), h.make_node("MatMul", ["a", "w"], ["y"], name="mm")],
                     "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 3])], [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[nh.from_array(w, "w")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    rec = apply_smoothquant(m, [{"x": np.array([[0.0, 1e12, 9.0]], np.float32)}], alpha=0.5)
    s = np.array([np.sqrt(1e-5) / 1.0, 1e4, 3.0 / np.sqrt(2.0)], np.float32)
    np.testing.assert_allclose(_inits(m)["a__wb_smooth_inv"], 1 / s, rtol=1e-5)
    assert rec["max_channel_scale_ratio"] == round(float(s.max() / s.min()), 3)
    m2 = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    apply_smoothquant(m2, [{"x": np.array([[1e-30, 1e-30, 1e-30]], np.float32)}], alpha=1.0)  # s = 1e-5: clipped up
    np.testing.assert_allclose(_inits(m2)["a__wb_smooth_inv"], np.full(3, 1e4), rtol=1e-5)


def test_no_group_is_not_applied_and_changes_nothing():
    g = h.make_graph([h.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2, 3])], [h.make_tensor_value_info("y", T.FLOAT, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    before = m.SerializeToString()
    assert apply_smoothquant(m, _batches()) == {"applied": False,
                                                "reason": "no MatMul with a private constant 2-D weight"}
    assert m.SerializeToString() == before
    m = _attention_like()
    assert apply_smoothquant(m, _batches(), nodes=["residual"])["applied"] is False


def test_only_the_named_nodes_are_smoothed_and_an_unmeasured_activation_is_skipped():
    m = _attention_like()
    batches = _batches()
    rec = apply_smoothquant(m, batches, nodes=["mm_k"])
    s = _expected_scales(batches, [WK], 0.5)
    assert rec["matmuls"] == ["mm_k"] and rec["tensors"] == 1
    np.testing.assert_allclose(_inits(m)["wk"], WK * s[:, None], rtol=1e-6)
    np.testing.assert_array_equal(_inits(m)["wq"], WQ)
    assert [n.name for n in m.graph.node] == ["add_bias", "mm_q", "a__wb_smooth_mul", "mm_k", "residual"]
    m = _attention_like()
    rec = apply_smoothquant(m, [])  # no batch: nothing measured, nothing smoothed
    assert rec["applied"] is True and rec["tensors"] == 0 and rec["matmuls"] == [] and rec["max_channel_scale_ratio"] == 1.0
    assert [n.name for n in m.graph.node] == ["add_bias", "mm_q", "mm_k", "residual"]
    np.testing.assert_array_equal(_inits(m)["wq"], WQ)


def test_two_activations_each_get_their_mul_before_their_first_reader():
    w2 = RNG.normal(size=(3, 3)).astype(np.float32)
    extra = [h.make_node("Relu", ["res"], ["b"], name="relu_b"), h.make_node("MatMul", ["b", "w2"], ["z"], name="mm_b")]
    m = _attention_like(extra, [nh.from_array(w2, "w2")], outputs=("q", "k", "z"))
    src = onnx.ModelProto()
    src.CopyFrom(m)
    rec = apply_smoothquant(m, _batches())
    assert rec["tensors"] == 2 and rec["matmuls"] == ["mm_q", "mm_k", "mm_b"]
    assert [n.name for n in m.graph.node] == ["add_bias", "a__wb_smooth_mul", "mm_q", "mm_k", "residual", "relu_b",
                                              "b__wb_smooth_mul", "mm_b"]
    assert strict_problems(m) == []
    x = {"x": RNG.normal(size=(5, 3)).astype(np.float32)}
    ref, out = _run(src, x), _run(m, x)
    for k in ("q", "k", "z"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-4, atol=1e-5)


def test_an_unsmoothable_matmul_before_the_others_does_not_stop_the_search():
    for w in (np.ones((1, 3, 2), np.float32), np.ones((3, 2), np.float16)):  # 3-D; not float32
        m = _attention_like()
        m.graph.initializer.append(nh.from_array(w, "wbad"))
        m.graph.node.insert(1, h.make_node("MatMul", ["a", "wbad"], ["z"], name="mm_bad"))
        assert {x: [n.name for n in ns] for x, ns in smooth_groups(m).items()} == {"a": ["mm_q", "mm_k"]}


def test_channel_max_of_a_1d_tensor_and_of_an_int8_tensor():
    """A 1-D tensor is one row of channels; |-128| of an int8 tensor is 128 (numpy's int8 abs would wrap)."""
    nodes = [h.make_node("ReduceMax", ["a"], ["col_max"], name="rmax", axes=[0], keepdims=0),
             h.make_node("Cast", ["x"], ["x8"], name="to_int8", to=T.INT8)]
    m = _attention_like(nodes)  # opset 17: ReduceMax takes axes as an attribute
    x = np.array([[-128.0, 3.0, 5.0], [2.0, -7.0, 1.0]], np.float32)
    amax = activation_channel_max(m, ["col_max", "x8"], [{"x": x}])
    np.testing.assert_allclose(amax["col_max"], np.abs((x + BIAS).max(axis=0)))
    np.testing.assert_array_equal(amax["x8"], [128.0, 7.0, 5.0])


def test_mul_placement_ignores_matmuls_reading_a_similarly_named_tensor():
    """A MatMul that is not smoothed reads 'a_input_tensor' (the smoothed tensor's name + 13 characters) before
    a is computed: the Mul for a must still go right before a's first smoothed reader."""
    nodes = [h.make_node("MatMul", ["a_input_tensor", "wdyn"], ["p"], name="mm_dyn"),
             h.make_node("Add", ["x", "bias"], ["a"], name="add_bias"),
             h.make_node("MatMul", ["a", "wq"], ["q"], name="mm_q")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info(n, T.FLOAT, s) for n, s in
                                  (("x", [4, 3]), ("a_input_tensor", [4, 3]), ("wdyn", [3, 2]))],
                     [h.make_tensor_value_info(o, T.FLOAT, [4, 2]) for o in ("p", "q")],
                     initializer=[nh.from_array(BIAS, "bias"), nh.from_array(WQ, "wq")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    rec = apply_smoothquant(m, _batches_for(m))
    assert rec["matmuls"] == ["mm_q"]
    assert [n.name for n in m.graph.node] == ["mm_dyn", "add_bias", "a__wb_smooth_mul", "mm_q"]
    assert strict_problems(m) == []


def _batches_for(m):
    return [{i.name: RNG.normal(size=[d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in m.graph.input} for _ in range(2)]


def test_an_activation_with_no_measured_values_is_skipped_and_the_next_one_smoothed():
    """b = x[0:0] is empty in every batch (no channel maximum): its MatMul is left alone, a's is smoothed."""
    w2 = RNG.normal(size=(3, 2)).astype(np.float32)
    nodes = [h.make_node("Slice", ["x", "zero", "zero", "zero"], ["b"], name="empty_rows"),
             h.make_node("MatMul", ["b", "w2"], ["zb"], name="mm_empty")]
    m = _attention_like(nodes, [nh.from_array(w2, "w2"), nh.from_array(np.array([0], np.int64), "zero")],
                        outputs=("q", "k", "zb"))
    nodes_now = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes_now[-2:] + nodes_now[:-2])  # the empty activation's group comes first
    batches = _batches()
    rec = apply_smoothquant(m, batches)
    assert rec["matmuls"] == ["mm_q", "mm_k"] and rec["tensors"] == 1
    np.testing.assert_array_equal(_inits(m)["w2"], w2)
    np.testing.assert_allclose(_inits(m)["wq"], WQ * _expected_scales(batches, [WQ, WK], 0.5)[:, None], rtol=1e-6)
