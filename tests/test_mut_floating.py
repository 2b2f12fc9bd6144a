"""fp16 / bf16 conversion recipes (workbench/precision/floating.py: convert_fp16, the recipes' apply and
default_keep, retype_to_bf16, the converter patch), tested through the public ``make_variant`` on small
graphs built here by hand (issue 23, mutation target ``fp16-convert``).

What each test knows before the recipe runs: which op types are on the fp32 list (onnxconverter-common's
``DEFAULT_OP_BLOCK_LIST`` plus LayerNormalization, docs/precision.md), which nodes the user keeps, which
constant does not fit fp16 (65504 written out), and the expected outputs, computed here with numpy in
float64. bf16 constants are checked against ``ml_dtypes.bfloat16`` applied to the fp32 originals.
"""
from __future__ import annotations

import importlib.metadata

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pandas  # noqa: F401 - imported once here (the recipe's fp16 safety table needs it), not in each mutant run
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnxconverter_common import float16

from workbench import load
from workbench.errors import UnsupportedError, WorkbenchError
from workbench.precision import RECIPES, make_variant

F32, F16, BF16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
RNG = np.random.default_rng(7)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)
SCALE = (RNG.random(3) + 0.5).astype(np.float32)
X = RNG.standard_normal((2, 4)).astype(np.float32)


def _converter_defaults() -> list[str]:
    return list(float16.DEFAULT_OP_BLOCK_LIST)


def _mlp(opset: int = 17, ln: bool = True) -> onnx.ModelProto:
    """x[2,4] -> MatMul(W) -> Add(B) -> Relu -> [LayerNormalization(SCALE)] -> y."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "B"], ["add"], name="add"),
             helper.make_node("Relu", ["add"], ["relu" if ln else "y"], name="relu")]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")]
    if ln:
        nodes.append(helper.make_node("LayerNormalization", ["relu", "S"], ["y"], name="ln", axis=-1, epsilon=1e-5))
        inits.append(numpy_helper.from_array(SCALE, "S"))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", F32, [2, 4])],
                          [helper.make_tensor_value_info("y", F32, [2, 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _np_mlp(x, ln=True):
    h = np.maximum(x.astype(np.float64) @ W.astype(np.float64) + B, 0)
    if not ln:
        return h
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + 1e-5) * SCALE


def _run(proto: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def _nodes(proto):
    return {n.name: n for n in proto.graph.node}


def _inits(proto):
    return {i.name: i for i in proto.graph.initializer}


def _casts(proto):
    """(input tensor, target type) of every Cast node."""
    return [(n.input[0], next(a.i for a in n.attribute if a.name == "to")) for n in proto.graph.node
            if n.op_type == "Cast"]


def _producer(proto, tensor):
    return next((n for n in proto.graph.node if tensor in n.output), None)


def _input_type(proto, node_name, idx=0):
    """Element type of a node's idx-th input as the converted graph declares it (Cast target, initializer,
    graph input)."""
    x = _nodes(proto)[node_name].input[idx]
    p = _producer(proto, x)
    if p is not None and p.op_type == "Cast":
        return next(a.i for a in p.attribute if a.name == "to")
    if x in _inits(proto):
        return _inits(proto)[x].data_type
    vi = {v.name: v for v in list(proto.graph.input) + list(proto.graph.value_info)}
    return vi[x].type.tensor_type.elem_type


# ------------------------------------------------------------------------------------------------ fp16
def test_fp16_default_placement_record_and_accuracy():
    src = _mlp()
    m = load(src, name="mlp")
    v = make_variant(m, "fp16")
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert v.precision == "fp16" and v.name == "mlp-fp16" and v.backend_flags == {"tf32": False}
    assert v.source_hash == m.hash and v.model.name == "mlp"
    # MatMul/Add/Relu compute in fp16; LayerNormalization (and its scale) stays fp32.
    inits = _inits(p)
    assert inits["W"].data_type == F16 and inits["B"].data_type == F16 and inits["S"].data_type == F32
    np.testing.assert_array_equal(numpy_helper.to_array(inits["W"]), W.astype(np.float16))
    assert _input_type(p, "mm") == F16 and _input_type(p, "ln") == F32
    # I/O stays fp32: one Cast to fp16 on the way in, one back to fp32 before the LayerNorm.
    assert p.graph.input[0].type.tensor_type.elem_type == F32 and p.graph.output[0].type.tensor_type.elem_type == F32
    assert sorted(t for _, t in _casts(p)) == [F32, F16]
    assert ("x", F16) in _casts(p)
    # the record
    r = v.recipe
    assert r["tool"] == "onnxconverter-common" and r["keep_io_types"] is True and r["keep_nodes"] == []
    assert r["kept_high_precision"] == ["ln"]
    assert r["kept_reasons"] == {"ln": "op type LayerNormalization is on the fp32 list"}
    assert r["op_block_list"] == list(dict.fromkeys(_converter_defaults() + ["LayerNormalization"]))
    assert r["node_block_list"] == [] and r["range_kept"] == {} and r["shape_kept"] == {}
    assert r["subgraph_kept"] == {} and r["validation_kept"] == {} and r["norm_kept"] == {}
    assert r["ort_check"] == "passed" and r["validation"]["passed"] is True
    assert r["converter_args"] == {"min_positive_val": 2.0 ** -24, "max_finite_val": 65504.0}
    assert r["opset_upgrade"] in (None, {}, False) or not r["opset_upgrade"]
    assert "fp16_safety" in r and "error" not in r["fp16_safety"]
    assert "retyped_tensors" not in r and "retyped_with" not in r
    # accuracy against numpy (fp16 matmul of unit-scale values: ~1e-2 relative)
    (y,) = _run(p, {"x": X})
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _np_mlp(X), atol=2e-2, rtol=2e-2)
    # the source model is untouched
    assert m.proto.graph.initializer[0].data_type == F32 and src.graph.initializer[0].data_type == F32


def test_fp16_default_keep_is_the_converter_list_plus_layernorm():
    want = list(dict.fromkeys(_converter_defaults() + ["LayerNormalization"]))
    assert RECIPES["fp16"].default_keep() == want
    assert RECIPES["bf16"].default_keep() == want
    assert "Resize" in want and "TopK" in want


def test_fp16_keep_nodes_and_op_types():
    v = make_variant(_mlp(), "fp16", keep_nodes=["mm"], keep_op_types=["Relu"])
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert v.name.endswith("-fp16-mixed")
    assert _inits(p)["W"].data_type == F32 and _inits(p)["B"].data_type == F16
    assert _input_type(p, "mm") == F32 and _input_type(p, "add", 1) == F16 and _input_type(p, "relu") == F32
    r = v.recipe
    assert r["keep_nodes"] == ["mm"] and r["keep_op_types"] == ["Relu"]
    assert r["kept_high_precision"] == ["ln", "mm", "relu"]
    assert r["kept_reasons"] == {"mm": "keep_nodes", "relu": "op type Relu is on the fp32 list",
                                 "ln": "op type LayerNormalization is on the fp32 list"}
    assert r["op_block_list"][-1] == "Relu" and r["op_block_list"].count("Relu") == 1
    assert r["node_block_list"] == ["mm"]
    (y,) = _run(p, {"x": X})
    np.testing.assert_allclose(y, _np_mlp(X), atol=2e-2, rtol=2e-2)


def test_fp16_keep_op_type_already_on_the_list_is_not_repeated():
    r = make_variant(_mlp(), "fp16", keep_op_types=["LayerNormalization"]).recipe
    assert r["op_block_list"].count("LayerNormalization") == 1


def test_fp16_without_keep_io_types_takes_and_returns_fp16():
    v = make_variant(_mlp(ln=False), "fp16", keep_io_types=False)
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert p.graph.input[0].type.tensor_type.elem_type == F16
    assert p.graph.output[0].type.tensor_type.elem_type == F16
    assert _casts(p) == []  # nothing is kept fp32, so no Cast at all
    assert v.recipe["keep_io_types"] is False and v.recipe["kept_high_precision"] == []
    (y,) = _run(p, {"x": X.astype(np.float16)})
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float64), _np_mlp(X, ln=False), atol=2e-2, rtol=2e-2)


def test_fp16_keep_norms_off_converts_layernorm_unless_the_user_keeps_it():
    v = make_variant(_mlp(opset=17), "fp16", keep_norms=False)
    r = v.recipe
    assert "LayerNormalization" not in r["op_block_list"] and r["kept_high_precision"] == []
    assert r["op_block_list"] == _converter_defaults()
    assert _inits(v.model.proto)["S"].data_type == F16
    (y,) = _run(v.model.proto, {"x": X})
    np.testing.assert_allclose(y, _np_mlp(X), atol=5e-2, rtol=5e-2)
    kept = make_variant(_mlp(), "fp16", keep_norms=False, keep_op_types=["LayerNormalization"]).recipe
    assert "LayerNormalization" in kept["op_block_list"] and kept["kept_high_precision"] == ["ln"]


def _decomposed_norm() -> onnx.ModelProto:
    """y = (x - mean) / sqrt(mean((x - mean)^2) + eps), exported op by op, then * 2 (a plain Mul)."""
    n = [helper.make_node("ReduceMean", ["x"], ["mu"], name="mean", axes=[-1]),
         helper.make_node("Sub", ["x", "mu"], ["d"], name="sub"),
         helper.make_node("Mul", ["d", "d"], ["sq"], name="square"),
         helper.make_node("ReduceMean", ["sq"], ["var"], name="var", axes=[-1]),
         helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
         helper.make_node("Sqrt", ["ve"], ["sd"], name="sqrt"),
         helper.make_node("Div", ["d", "sd"], ["nrm"], name="div"),
         helper.make_node("Mul", ["nrm", "two"], ["y"], name="scale")]
    g = helper.make_graph(n, "norm", [helper.make_tensor_value_info("x", F32, [2, 4])],
                          [helper.make_tensor_value_info("y", F32, [2, 4])],
                          [numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
                           numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_fp16_decomposed_norm_variance_path_stays_fp32():
    v = make_variant(_decomposed_norm(), "fp16")
    r = v.recipe
    path = ["add_eps", "div", "sqrt", "square", "var"]  # sorted by name
    assert r["kept_high_precision"] == path
    assert sorted(r["norm_kept"]) == path
    assert all(r["kept_reasons"][k].startswith("variance path of a normalization (Mul -> ReduceMean") for k in path)
    assert r["node_block_list"] == ["square", "var", "add_eps", "sqrt", "div"]
    assert _input_type(v.model.proto, "scale") == F16 and _input_type(v.model.proto, "square") == F32
    x = np.array([[300.0, -300.0, 250.0, -260.0], [1.0, 2.0, 3.0, 4.0]], np.float32)  # squares overflow fp16
    (y,) = _run(v.model.proto, {"x": x})
    xd = x.astype(np.float64)
    want = 2 * (xd - xd.mean(-1, keepdims=True)) / np.sqrt(xd.var(-1, keepdims=True) + 1e-5)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, want, atol=1e-2, rtol=1e-2)
    off = make_variant(_decomposed_norm(), "fp16", keep_norms=False).recipe
    assert off["norm_kept"] == {} and off["kept_high_precision"] == []


def _big_constant_model() -> onnx.ModelProto:
    """y = (x * 1e5) + (x @ W): 1e5 does not fit fp16 (max 65504)."""
    n = [helper.make_node("Mul", ["x", "big"], ["xb"], name="mul_big"),
         helper.make_node("MatMul", ["x", "Wsq"], ["xw"], name="mm"),
         helper.make_node("Add", ["xb", "xw"], ["y"], name="add")]
    g = helper.make_graph(n, "big", [helper.make_tensor_value_info("x", F32, [2, 4])],
                          [helper.make_tensor_value_info("y", F32, [2, 4])],
                          [numpy_helper.from_array(np.array(1e5, np.float32), "big"),
                           numpy_helper.from_array(np.eye(4, dtype=np.float32), "Wsq")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_fp16_out_of_range_constant_keeps_its_reader_fp32():
    x = np.full((2, 4), 0.5, np.float32)  # 0.5 * 1e5 = 5e4 fits; 1e5 itself does not
    v = make_variant(_big_constant_model(), "fp16")
    r = v.recipe
    assert r["kept_high_precision"] == ["mul_big"] and list(r["range_kept"]) == ["mul_big"]
    assert r["kept_reasons"]["mul_big"].startswith("reads 'big': |x| up to 1e+05 > fp16 max 65504")
    assert _inits(v.model.proto)["big"].data_type == F32 and _inits(v.model.proto)["Wsq"].data_type == F16
    (y,) = _run(v.model.proto, {"x": x})
    np.testing.assert_allclose(y, 0.5 * 1e5 + 0.5, rtol=1e-3)
    # range_check=False: the constant is clamped to 65504 by the converter; the record says nothing was kept
    off = make_variant(_big_constant_model(), "fp16", range_check=False)
    assert off.recipe["range_kept"] == {} and off.recipe["kept_high_precision"] == []
    assert numpy_helper.to_array(_inits(off.model.proto)["big"]) == np.float16(65504)
    (y2,) = _run(off.model.proto, {"x": x})
    assert abs(float(y2[0, 0]) - 0.5 * 1e5) > 1000  # the clamped value is visibly wrong


def test_fp16_underflow_fraction_option():
    tiny = np.array([1e-9, 1.0, 1.0, 1.0], np.float32)  # 1 of 4 nonzero values below 2^-24
    n = [helper.make_node("Mul", ["x", "t"], ["y"], name="mul_tiny")]
    g = helper.make_graph(n, "tiny", [helper.make_tensor_value_info("x", F32, [2, 4])],
                          [helper.make_tensor_value_info("y", F32, [2, 4])], [numpy_helper.from_array(tiny, "t")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    assert make_variant(proto, "fp16").recipe["kept_high_precision"] == ["mul_tiny"]
    assert make_variant(proto, "fp16", underflow_fraction=0.3).recipe["kept_high_precision"] == []
    assert make_variant(proto, "fp16", underflow_fraction="0.2").recipe["kept_high_precision"] == ["mul_tiny"]


def test_fp16_ort_check_option_and_unnamed_nodes():
    proto = _mlp(ln=False)
    for n in proto.graph.node:
        n.name = ""
    v = make_variant(proto, "fp16", ort_check=False)
    r = v.recipe
    assert r["ort_check"] == "skipped (ort_check=False)" and r["options"] == {"ort_check": False}
    assert r["named_unnamed_nodes"] == 3 and all(n.name for n in v.model.proto.graph.node)
    assert r["dropped_initializer_inputs"] in (0, [], None) or not r["dropped_initializer_inputs"]


def test_fp16_initializer_listed_as_graph_input_is_dropped():
    proto = _mlp(ln=False)
    proto.graph.input.append(helper.make_tensor_value_info("W", F32, [4, 3]))  # old exporters did this
    v = make_variant(proto, "fp16")
    assert [i.name for i in v.model.proto.graph.input] == ["x"]
    assert v.recipe["dropped_initializer_inputs"]
    (y,) = _run(v.model.proto, {"x": X})
    np.testing.assert_allclose(y, _np_mlp(X, ln=False), atol=2e-2, rtol=2e-2)


def test_fp16_of_an_fp16_model_is_refused():
    fp16 = make_variant(_mlp(ln=False), "fp16", keep_io_types=False).model.proto
    with pytest.raises(UnsupportedError, match="already holds float16"):
        make_variant(fp16, "fp16")


def test_modelopt_tool_goes_to_modelopt():
    try:
        import modelopt  # noqa: F401
        pytest.skip("ModelOpt installed: the refusal below does not apply")
    except ImportError:
        pass
    for prec in ("fp16", "bf16"):
        with pytest.raises(WorkbenchError, match="(?i)modelopt"):
            make_variant(_mlp(ln=False), prec, tool="modelopt")


def test_converter_sort_is_restored_after_a_conversion():
    before = float16.sort_topology
    proto = _mlp(ln=False)
    nodes = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(nodes))  # out of order: the recipe sorts before converting
    v = make_variant(proto, "fp16", keep_op_types=["Add"])
    assert float16.sort_topology is before
    # the converter's own function, not whatever an earlier conversion in this process left there
    assert (float16.sort_topology.__module__, float16.sort_topology.__name__) == (float16.__name__, "sort_topology")
    order = [n.name for n in v.model.proto.graph.node]
    assert order.index("mm") < order.index("add") < order.index("relu")
    (y,) = _run(v.model.proto, {"x": X})
    np.testing.assert_allclose(y, _np_mlp(X, ln=False), atol=2e-2, rtol=2e-2)


# --------------------------------------------------------------------------------------- shape math, If
def test_fp16_float_shape_math_stays_fp32():
    """Reshape x to [n/2 ... ] through float shape math: Shape -> Cast(float) -> Div -> Cast(int64)."""
    n = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
         helper.make_node("Cast", ["s"], ["sf"], name="to_float", to=F32),
         helper.make_node("Div", ["sf", "two"], ["half"], name="halve"),
         helper.make_node("Cast", ["half"], ["hi"], name="to_int", to=TensorProto.INT64),
         helper.make_node("Concat", ["hi", "neg1"], ["shp"], name="cat", axis=0),
         helper.make_node("Reshape", ["xm", "shp"], ["y"], name="reshape"),
         helper.make_node("Mul", ["x", "two"], ["xm"], name="mul")]
    g = helper.make_graph(n, "shape", [helper.make_tensor_value_info("x", F32, [4])],
                          [helper.make_tensor_value_info("y", F32, None)],
                          [numpy_helper.from_array(np.array([2.0], np.float32), "two"),
                           numpy_helper.from_array(np.array([-1], np.int64), "neg1")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    v = make_variant(proto, "fp16")
    r = v.recipe
    # the float chain from Shape's Cast to the int64 Cast (which reads the float 'half'); Shape reads x itself
    assert sorted(r["shape_kept"]) == ["halve", "to_float", "to_int"]
    assert r["kept_high_precision"] == ["halve", "to_float", "to_int"]
    assert r["kept_reasons"]["halve"] == r["shape_kept"]["halve"]
    assert _input_type(v.model.proto, "mul") == F16
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    (y,) = _run(v.model.proto, {"x": x})
    np.testing.assert_allclose(y, (2 * x).reshape(2, 2))


def _if_model() -> onnx.ModelProto:
    """y = If(c) then x * 3 else x * 5 (both read x from the outer scope), then + 1."""
    three = numpy_helper.from_array(np.array(3.0, np.float32), "k3")
    five = numpy_helper.from_array(np.array(5.0, np.float32), "k5")
    out = helper.make_tensor_value_info("b", F32, [2, 4])
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "k3"], ["b"], name="t_mul")], "then", [], [out], [three])
    else_g = helper.make_graph([helper.make_node("Mul", ["x", "k5"], ["b"], name="e_mul")], "else", [], [out], [five])
    n = [helper.make_node("If", ["c"], ["b_out"], name="branch", then_branch=then_g, else_branch=else_g),
         helper.make_node("Add", ["b_out", "one"], ["y"], name="plus")]
    g = helper.make_graph(n, "if", [helper.make_tensor_value_info("x", F32, [2, 4]),
                                    helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", F32, [2, 4])],
                          [numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_fp16_if_node_kept_by_the_user_keeps_its_bodies_fp32():
    v = make_variant(_if_model(), "fp16", keep_nodes=["branch"])
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    r = v.recipe
    assert r["kept_high_precision"] == ["branch"]
    assert r["subgraph_kept"] == {"branch": "If holds a subgraph: kept fp32 with its bodies (casts at the boundary)"}
    assert r["kept_reasons"]["branch"] == r["subgraph_kept"]["branch"]
    branch = _nodes(p)["branch"]
    bodies = {a.name: a.g for a in branch.attribute}
    assert all(i.data_type == F32 for b in bodies.values() for i in b.initializer)
    assert _input_type(p, "plus") == F16
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    for c, k in ((True, 3.0), (False, 5.0)):
        (y,) = _run(p, {"x": x, "c": np.array(c)})
        np.testing.assert_allclose(y, x.astype(np.float64) * k + 1, atol=1e-2, rtol=1e-2)


def test_fp16_if_node_whose_converted_body_fails_the_check_is_kept_with_both_reasons():
    """Converted, the then-branch multiplies the fp16 outer x by its fp32 constant: the strict check fails,
    the repair loop keeps the If fp32 and converts again (2 rounds)."""
    v = make_variant(_if_model(), "fp16")
    onnx.checker.check_model(v.model.proto, full_check=True)
    r = v.recipe
    sub = "If holds a subgraph: kept fp32 with its bodies (casts at the boundary)"
    assert r["subgraph_kept"] == {"branch": sub} and r["kept_high_precision"] == ["branch"]
    assert list(r["validation_kept"]) == ["branch"] and r["validation"]["rounds"] == 2
    assert r["kept_reasons"]["branch"] == f"{sub}; {r['validation_kept']['branch']}"
    assert "inconsistent type tensor(float16)" in r["kept_reasons"]["branch"]
    assert r["validation_kept"]["branch"].startswith("the fp16 graph failed the strict check")
    assert r["node_block_list"] == ["branch"]
    # a node after the If, kept by op type, still gets its own reason
    r2 = make_variant(_if_model(), "fp16", keep_op_types=["Add"]).recipe
    assert r2["kept_high_precision"] == ["branch", "plus"]
    assert r2["kept_reasons"]["plus"] == "op type Add is on the fp32 list"
    assert r2["kept_reasons"]["branch"].startswith(sub)
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    (y,) = _run(v.model.proto, {"x": x, "c": np.array(False)})
    np.testing.assert_allclose(y, x.astype(np.float64) * 5 + 1, atol=1e-2, rtol=1e-2)


# ------------------------------------------------------------------------------------------------ bf16
def _bf16(a):
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16)


def test_bf16_retypes_fp16_placement_and_reconverts_constants_from_fp32():
    big = np.array([1e5, 1e30], np.float32)  # beyond fp16: bf16 keeps fp32's range
    n = [helper.make_node("Constant", [], ["k"], name="const_k", value=numpy_helper.from_array(big, "kv")),
         helper.make_node("Mul", ["x", "k"], ["xk"], name="mul_k"),
         helper.make_node("Add", ["xk", "b"], ["xb"], name="add_b"),
         helper.make_node("Relu", ["xb"], ["y"], name="relu")]
    bvals = np.array([1e5, -7.0], np.float32)
    g = helper.make_graph(n, "bf", [helper.make_tensor_value_info("x", F32, [3, 2])],
                          [helper.make_tensor_value_info("y", F32, [3, 2])], [numpy_helper.from_array(bvals, "b")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    m = load(proto, name="bf")
    v = make_variant(m, "bf16")
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert v.precision == "bf16" and v.name == "bf-bf16" and v.backend_flags == {"tf32": False}
    assert v.source_hash == m.hash
    # opset raised to 22 (bf16 kernels), nothing fp16 left anywhere in the graph
    assert max(o.version for o in p.opset_import if o.domain in ("", "ai.onnx")) == 22
    assert v.recipe["opset_upgrade"]
    text = str(p)
    assert "FLOAT16" not in text.replace("BFLOAT16", "")
    # constants re-converted from the fp32 originals (not clamped to 65504 through fp16)
    binit = _inits(p)["b"]
    assert binit.data_type == BF16
    np.testing.assert_array_equal(numpy_helper.to_array(binit).astype(np.float32), _bf16(bvals).astype(np.float32))
    kt = next(a.t for a in _nodes(p)["const_k"].attribute if a.name == "value")
    assert kt.data_type == BF16
    np.testing.assert_array_equal(numpy_helper.to_array(kt).astype(np.float32), _bf16(big).astype(np.float32))
    # I/O fp32, a Cast to bf16 on the way in and back to fp32 on the way out
    assert p.graph.input[0].type.tensor_type.elem_type == F32 and p.graph.output[0].type.tensor_type.elem_type == F32
    assert ("x", BF16) in _casts(p) and sorted(t for _, t in _casts(p)) == [F32, BF16]
    r = v.recipe
    # retyped: b, the Constant's value, the input Cast's 'to', and the value_infos the converter typed fp16
    n_vi = sum(vi.type.tensor_type.elem_type == BF16 for vi in list(p.graph.value_info))
    assert r["retyped_tensors"] == 3 + n_vi
    assert r["retyped_with"] == f"ml_dtypes {ml_dtypes.__version__}"
    assert r["tool"] == "onnxconverter-common" and r["keep_io_types"] is True
    assert r["tool_version"] == importlib.metadata.version("onnxconverter-common")
    assert r["fp32_no_bf16_in_opset"] == [] and r["kept_high_precision"] == []
    assert r["range_kept"] == {}  # the fp16 range check does not apply to bf16
    assert "fp16_safety" not in r and "ort_check" not in r and "mask_clamped" in r
    # the reference evaluator computes in bf16: compare with numpy on bf16-rounded operands
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [3.0, -2.0]], np.float32)
    (y,) = ReferenceEvaluator(p).run(None, {"x": x})
    xk = (_bf16(x).astype(np.float64) * _bf16(big).astype(np.float64))
    want = np.maximum(xk + _bf16(bvals).astype(np.float64), 0)
    np.testing.assert_allclose(y.astype(np.float64), want, rtol=2e-2)


def test_bf16_keeps_layernorm_and_keep_nodes_fp32():
    v = make_variant(_mlp(), "bf16", keep_nodes=["mm"])
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert v.name.endswith("-bf16-mixed")
    inits = _inits(p)
    assert inits["W"].data_type == F32 and inits["S"].data_type == F32 and inits["B"].data_type == BF16
    r = v.recipe
    assert r["kept_high_precision"] == ["ln", "mm"]
    assert r["kept_reasons"] == {"mm": "keep_nodes", "ln": "op type LayerNormalization is on the fp32 list"}
    (y,) = ReferenceEvaluator(p).run(None, {"x": X})
    np.testing.assert_allclose(y, _np_mlp(X), atol=5e-2, rtol=5e-2)


def test_bf16_min_opset_option_keeps_ops_without_bf16_kernels():
    """Opset 17 types Conv for float/double/fp16 only: with min_opset=17 the Conv stays fp32."""
    w = RNG.standard_normal((2, 1, 3, 3)).astype(np.float32)
    n = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name="relu")]
    g = helper.make_graph(n, "conv", [helper.make_tensor_value_info("x", F32, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", F32, [1, 2, 4, 4])], [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    v17 = make_variant(proto, "bf16", min_opset=17)
    assert max(o.version for o in v17.model.proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    assert v17.recipe["fp32_no_bf16_in_opset"] == ["conv"]
    assert _input_type(v17.model.proto, "conv") == F32 and _input_type(v17.model.proto, "relu") == BF16
    onnx.checker.check_model(v17.model.proto, full_check=True)
    v22 = make_variant(proto, "bf16")
    assert v22.recipe["fp32_no_bf16_in_opset"] == [] and _input_type(v22.model.proto, "conv") == BF16


# ------------------------------------------------------------------------------- options and the record
def _mask_model() -> onnx.ModelProto:
    """Attention-style masking: softmax(x + mask) with mask = [0, 0, finfo(float32).min, 0]."""
    mask = np.array([0.0, 0.0, np.finfo(np.float32).min, 0.0], np.float32)
    n = [helper.make_node("Add", ["x", "mask"], ["xm"], name="add_mask"),
         helper.make_node("Softmax", ["xm"], ["y"], name="softmax", axis=-1)]
    g = helper.make_graph(n, "mask", [helper.make_tensor_value_info("x", F32, [2, 4])],
                          [helper.make_tensor_value_info("y", F32, [2, 4])], [numpy_helper.from_array(mask, "mask")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _np_softmax_masked(x):
    z = x.astype(np.float64).copy()
    z[:, 2] = -np.inf
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_fp16_mask_fill_is_clamped_to_minus_1e4_and_stays_fp16():
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    v = make_variant(_mask_model(), "fp16")
    r = v.recipe
    assert list(r["mask_clamped"]) == ["mask"] and r["mask_clamped"]["mask"]["clamped_to"] == -1e4
    assert r["kept_high_precision"] == [] and r["range_kept"] == {}
    np.testing.assert_array_equal(numpy_helper.to_array(_inits(v.model.proto)["mask"]),
                                  np.array([0, 0, -1e4, 0], np.float16))
    (y,) = _run(v.model.proto, {"x": x})
    np.testing.assert_allclose(y, _np_softmax_masked(x), atol=2e-3)
    # clamp_masks=False: the fill does not fit fp16, so the range check keeps its reader fp32 instead
    off = make_variant(_mask_model(), "fp16", clamp_masks=False)
    assert off.recipe["mask_clamped"] == {} and off.recipe["kept_high_precision"] == ["add_mask"]
    (y2,) = _run(off.model.proto, {"x": x})
    np.testing.assert_allclose(y2, _np_softmax_masked(x), atol=2e-3)
    # bf16 holds finfo(float32).min: nothing is clamped
    b = make_variant(_mask_model(), "bf16")
    assert b.recipe["mask_clamped"] == {}
    assert numpy_helper.to_array(_inits(b.model.proto)["mask"]).astype(np.float32)[2] < -1e38


def test_fp16_range_check_silences_the_converters_truncation_warnings_only_when_on():
    import warnings
    vals = np.ones(200, np.float32)
    vals[0] = 1e-9  # 1 of 200 values underflows: below the 1 % limit, so the converter truncates it (and warns)
    n = [helper.make_node("Mul", ["x", "t"], ["y"], name="mul")]
    g = helper.make_graph(n, "w", [helper.make_tensor_value_info("x", F32, [200])],
                          [helper.make_tensor_value_info("y", F32, [200])], [numpy_helper.from_array(vals, "t")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    for opts, warned in (({}, False), ({"range_check": False}, True)):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            v = make_variant(proto, "fp16", **opts)
        assert any("truncated" in str(w.message) for w in got) is warned, opts
        assert numpy_helper.to_array(_inits(v.model.proto)["t"])[0] == np.float16(2.0 ** -24)


def test_fp16_safety_check_option_and_record_fields():
    v = make_variant(_big_constant_model(), "fp16")
    r = v.recipe
    assert r["tool_version"] == importlib.metadata.version("onnxconverter-common")
    checks = r["fp16_safety"]
    assert isinstance(checks, dict) and "error" not in checks and checks
    assert r["validation"] == {"checks": ["onnx.checker(full_check=True)",
                                          "infer_shapes(strict_mode=True, check_type=True)"],
                               "passed": True, "rounds": 1, "problems_repaired": []}
    assert r["named_unnamed_nodes"] == 0 and r["dropped_initializer_inputs"] in (0, [])
    assert isinstance(r["repair_casts"], (int, list)) and isinstance(r["round_trip_casts_removed"], (int, list))
    off = make_variant(_big_constant_model(), "fp16", safety_check=False).recipe
    assert "fp16_safety" not in off and off["options"] == {"safety_check": False}


def test_fp16_custom_op_model_skips_the_ort_check_and_says_why():
    n = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("MyOp", ["r"], ["y"], name="custom", domain="com.example")]
    g = helper.make_graph(n, "custom", [helper.make_tensor_value_info("x", F32, [2, 4])],
                          [helper.make_tensor_value_info("y", F32, [2, 4])])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
                              ir_version=10)
    v = make_variant(proto, "fp16")
    assert v.recipe["ort_check"].startswith("skipped: ONNX Runtime cannot load the fp32 model either (ONNX Runtime "
                                            "cannot load the fp32 source graph: ")
    assert "MyOp" in v.recipe["ort_check"]  # ORT's own reason names the unknown op
    onnx.checker.check_model(v.model.proto, full_check=True)


def test_bf16_if_node_whose_converted_body_fails_the_check_is_kept():
    v = make_variant(_if_model(), "bf16")
    onnx.checker.check_model(v.model.proto, full_check=True)
    r = v.recipe
    assert r["kept_high_precision"] == ["branch"] and r["validation"]["rounds"] == 2
    assert r["validation_kept"]["branch"].startswith("the bf16 graph failed the strict check")
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    (y,) = ReferenceEvaluator(v.model.proto).run(None, {"x": x, "c": np.array(True)})
    np.testing.assert_allclose(y, x.astype(np.float64) * 3 + 1, atol=5e-2, rtol=2e-2)


def test_bf16_without_keep_io_types_takes_and_returns_bf16():
    v = make_variant(_mlp(ln=False), "bf16", keep_io_types=False)
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert p.graph.input[0].type.tensor_type.elem_type == BF16 and p.graph.output[0].type.tensor_type.elem_type == BF16
    assert _casts(p) == [] and v.recipe["keep_io_types"] is False
    np.testing.assert_array_equal(numpy_helper.to_array(_inits(p)["W"]).astype(np.float32), _bf16(W).astype(np.float32))
    (y,) = ReferenceEvaluator(p).run(None, {"x": _bf16(X)})
    np.testing.assert_allclose(y.astype(np.float64), _np_mlp(X, ln=False), atol=5e-2, rtol=5e-2)


def test_bf16_leaves_integer_constants_and_counts_what_it_retypes():
    """A Reshape's int64 shape Constant is not a float: it stays int64. retyped_tensors counts every tensor
    turned bf16: 2 initializers + graph input + output + typed intermediate tensors (keep_io_types=False)."""
    n = [helper.make_node("Constant", [], ["shape"], name="shape_k",
                          value=numpy_helper.from_array(np.array([3, 2], np.int64), "sv")),
         helper.make_node("MatMul", ["x", "W"], ["mm"], name="mm"),
         helper.make_node("Add", ["mm", "B"], ["a"], name="add"),
         helper.make_node("Reshape", ["a", "shape"], ["y"], name="reshape")]
    g = helper.make_graph(n, "cst", [helper.make_tensor_value_info("x", F32, [2, 4])],
                          [helper.make_tensor_value_info("y", F32, [3, 2])],
                          [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    v = make_variant(proto, "bf16", keep_io_types=False)
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    st = next(a.t for a in _nodes(p)["shape_k"].attribute if a.name == "value")
    assert st.data_type == TensorProto.INT64 and list(numpy_helper.to_array(st)) == [3, 2]
    assert _inits(p)["W"].data_type == BF16 and _inits(p)["B"].data_type == BF16
    n_vi = sum(vi.type.tensor_type.elem_type == BF16 for vi in p.graph.value_info)
    assert v.recipe["retyped_tensors"] == 2 + 2 + n_vi
    (y,) = ReferenceEvaluator(p).run(None, {"x": _bf16(X)})
    want = (_bf16(X).astype(np.float64) @ _bf16(W).astype(np.float64) + _bf16(B).astype(np.float64)).reshape(3, 2)
    np.testing.assert_allclose(y.astype(np.float64), want, atol=5e-2, rtol=3e-2)


@pytest.mark.parametrize("prec", ["fp16", "bf16"])
def test_tool_modelopt_hands_the_model_and_precision_to_modelopt_autocast(prec, tmp_path, monkeypatch):
    """ModelOpt is an optional extra, not installed here: a stand-in package ``modelopt`` (written into
    tmp_path, put first on sys.path) records the call to ``convert_to_mixed_precision`` and returns the model it
    was given unchanged. It checks the routing only: which model, precision and keep lists reach ModelOpt."""
    import importlib.util
    import sys
    if importlib.util.find_spec("modelopt") is not None:
        pytest.skip("the real ModelOpt is installed")
    pkg = tmp_path / "modelopt" / "onnx"
    pkg.mkdir(parents=True)
    (tmp_path / "modelopt" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "autocast.py").write_text(
        "import onnx\nCALLS = []\n"
        "def convert_to_mixed_precision(onnx_path, **kw):\n"
        "    CALLS.append(kw)\n    return onnx.load(onnx_path)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for k in [k for k in sys.modules if k.startswith("modelopt")]:
        monkeypatch.delitem(sys.modules, k)
    try:
        m = load(_mlp(ln=False), name="mo")
        v = make_variant(m, prec, tool="modelopt", keep_nodes=["mm"])
        from modelopt.onnx.autocast import CALLS
        assert CALLS == [{"low_precision_type": prec, "nodes_to_exclude": ["mm"], "op_types_to_exclude": None,
                          "keep_io_types": True}]
        assert v.precision == prec and v.name == f"mo-{prec}-mixed" and v.recipe["tool"] == "nvidia-modelopt"
        assert [n.name for n in v.model.proto.graph.node] == ["mm", "add", "relu"]
        assert v.source_hash == m.hash
    finally:
        for k in [k for k in sys.modules if k.startswith("modelopt")]:
            del sys.modules[k]


def _shared_weight_model() -> onnx.ModelProto:
    """W feeds a MatMul the user keeps fp32 and one that is converted: W must reach the converted one cast."""
    nodes = [helper.make_node("MatMul", ["x", "Wsh"], ["a"], name="mm_kept"),
             helper.make_node("MatMul", ["x", "Wsh"], ["b"], name="mm_half"),
             helper.make_node("Add", ["a", "b"], ["y"], name="sum")]
    g = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", F32, [2, 4])],
                          [helper.make_tensor_value_info("y", F32, [2, 4])],
                          [numpy_helper.from_array(np.eye(4, dtype=np.float32) * 3, "Wsh")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


@pytest.mark.parametrize("prec,low", [("fp16", F16), ("bf16", BF16)])
def test_shared_weight_is_cast_for_the_converted_reader_and_the_record_names_that_cast(prec, low):
    v = make_variant(_shared_weight_model(), prec, keep_nodes=["mm_kept"])
    p = v.model.proto
    onnx.checker.check_model(p, full_check=True)
    assert _inits(p)["Wsh"].data_type == F32
    w_cast = [n for n in p.graph.node if n.op_type == "Cast" and n.input[0] == "Wsh"]
    assert len(w_cast) == 1 and w_cast[0].attribute[0].i == low
    assert _nodes(p)["mm_half"].input[1] == w_cast[0].output[0]
    assert w_cast[0].name in v.recipe["repair_casts"]
    assert all(c in _nodes(p) and _nodes(p)[c].op_type == "Cast" for c in v.recipe["repair_casts"])
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    (y,) = ReferenceEvaluator(p).run(None, {"x": x})
    np.testing.assert_allclose(y, 6 * x.astype(np.float64), atol=5e-2, rtol=2e-2)


def test_a_failing_fp16_safety_table_is_recorded_not_fatal(monkeypatch):
    """The safety table is a report aid: if building it fails, the variant stands and the record says why."""
    import workbench.precision.fp16safety as safety

    def broken(model, **kw):
        raise RuntimeError("first line\nsafety table broke")
    monkeypatch.setattr(safety, "fp16_safety", broken)
    v = make_variant(_mlp(ln=False), "fp16")
    assert v.recipe["fp16_safety"] == {"error": "RuntimeError: safety table broke"}
    assert v.recipe["ort_check"] == "passed"


def test_bf16_record_says_unknown_ml_dtypes_version_when_the_package_has_none(monkeypatch):
    monkeypatch.delattr(ml_dtypes, "__version__")
    assert make_variant(_mlp(ln=False), "bf16").recipe["retyped_with"] == "ml_dtypes ?"


def test_fp16_loop_reading_an_out_of_range_initial_value_runs_fp32_with_its_body():
    """v = v0 * 0.5 three times (a Loop), y = v + x, with v0 = [1e5, 8]: 1e5 does not fit fp16, so the Loop is
    kept fp32 (its body too); the record gives both facts: the range reason and the subgraph reason."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"], name="b_id"),
         helper.make_node("Mul", ["v_in", "half"], ["v_out"], name="b_mul")], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", F32, [2])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", F32, [2])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    n = [helper.make_node("Loop", ["M", "", "v0"], ["v"], name="loop", body=body),
         helper.make_node("Add", ["v", "x"], ["y"], name="plus")]
    g = helper.make_graph(n, "lp", [helper.make_tensor_value_info("x", F32, [2])], [helper.make_tensor_value_info("y", F32, [2])],
                          [numpy_helper.from_array(np.array(3, np.int64), "M"),
                           numpy_helper.from_array(np.array([1e5, 8.0], np.float32), "v0")])
    v = make_variant(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), "fp16")
    onnx.checker.check_model(v.model.proto, full_check=True)
    r = v.recipe
    sub = "Loop holds a subgraph: kept fp32 with its bodies (casts at the boundary)"
    assert r["kept_high_precision"] == ["loop"] and r["subgraph_kept"] == {"loop": sub}
    assert r["range_kept"]["loop"].startswith("reads 'v0': |x| up to 1e+05 > fp16 max 65504")
    assert r["kept_reasons"]["loop"] == sub
    body_out = next(a.g for a in _nodes(v.model.proto)["loop"].attribute if a.name == "body")
    assert all(i.data_type == F32 for i in body_out.initializer)
    x = np.array([1.0, 2.0], np.float32)
    (y,) = _run(v.model.proto, {"x": x})
    np.testing.assert_allclose(y, np.array([1e5, 8.0]) * 0.5 ** 3 + x, rtol=1e-3)
