"""Tests written against mutants of the fp16 checks that survived `make mutate` (issue 23):
workbench/precision/fp16safety.py and the range/underflow/normalization checks of workbench/precision/floating.py
(``tensor_problem``, ``fp16_range_blocks``, ``norm_variance_nodes``).

Each graph is built here by hand, so which node is a trap — and why — is known before the check runs; the
fp16 limits are written out (65504, 2^-24) rather than read from the module.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.precision import fp16safety as F
from workbench.precision.floating import fp16_range_blocks, norm_variance_nodes, tensor_problem

TINY = 2.0 ** -24


def _t(values, name="c", dtype=np.float32):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


# ------------------------------------------------------------------------------------------ tensor_problem
def test_tensor_problem_range():
    assert tensor_problem(_t([65504.0, -65504.0]), 0.01) is None  # exactly fp16 max fits
    assert tensor_problem(_t([1.0, 70000.0]), 0.01) == "|x| up to 7e+04 > fp16 max 65504"
    assert tensor_problem(_t([-1e9]), 0.01) == "|x| up to 1e+09 > fp16 max 65504"
    assert tensor_problem(_t([np.inf, np.nan, 1.0]), 0.01) is None  # only finite values are judged
    assert tensor_problem(_t([np.nan]), 0.01) is None
    assert tensor_problem(_t([]), 0.01) is None
    assert tensor_problem(_t([1e9], dtype=np.float64), 0.01) is None  # not float32: not this check's business
    assert tensor_problem(_t([70000], dtype=np.int64), 0.01) is None


def test_tensor_problem_underflow_fraction():
    vals = [1e-9] * 3 + [1.0] * 97 + [0.0] * 50  # 3 of 100 nonzero values below 2^-24; zeros do not count
    assert tensor_problem(_t(vals), 0.01) == f"3/100 nonzero values below {TINY:.3g} would become 0 in fp16"
    assert tensor_problem(_t(vals), 0.03) is None   # 3 % is not more than 3 %
    assert tensor_problem(_t(vals), 0.029) is not None
    assert tensor_problem(_t([TINY, 1.0]), 0.0) is None  # 2^-24 itself is representable
    assert tensor_problem(_t([TINY / 2, 1.0]), 0.0) == f"1/2 nonzero values below {TINY:.3g} would become 0 in fp16"
    assert tensor_problem(_t([-1e-9, 1.0]), 0.4) == f"1/2 nonzero values below {TINY:.3g} would become 0 in fp16"
    assert tensor_problem(_t([0.0, 0.0]), 0.0) is None
    assert tensor_problem(_t([1e-9, 1e5]), 0.0).startswith("|x| up to")  # range is reported first


def _model(nodes, inits=(), inputs=("x",), outputs=("y",), opset=17):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, [2, 4]) for i in inputs],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_range_blocks_initializers_constants_and_readers():
    big = _t([1e6], "big")
    tiny = _t([1e-9] * 10, "tiny")
    fine = _t([1.0], "fine")
    nodes = [helper.make_node("Mul", ["x", "big"], ["a"], name="mul_big"),
             helper.make_node("Add", ["a", "fine"], ["b"], name="add_fine"),
             helper.make_node("Constant", [], ["k"], name="const_k", value=_t([-1e30], "kv")),
             helper.make_node("Constant", [], ["ok"], name="const_ok", value=_t([2.0], "okv")),
             helper.make_node("Sub", ["b", "k"], ["c"], name="sub_k"),
             helper.make_node("Mul", ["c", "tiny"], ["d"], name="mul_tiny"),
             helper.make_node("Add", ["d", "big"], ["y"], name="add_big")]
    out = fp16_range_blocks(_model(nodes, [big, tiny, fine]))
    assert set(out) == {"mul_big", "const_k", "sub_k", "mul_tiny", "add_big"}
    assert out["mul_big"] == "reads 'big': |x| up to 1e+06 > fp16 max 65504"
    assert out["const_k"] == "Constant 'k': |x| up to 1e+30 > fp16 max 65504"
    assert out["sub_k"] == "reads 'k': |x| up to 1e+30 > fp16 max 65504"
    assert out["mul_tiny"].startswith("reads 'tiny': 10/10 nonzero values below")
    assert fp16_range_blocks(_model(nodes, [big, tiny, fine]), underflow_fraction=1.0).keys() == \
        {"mul_big", "const_k", "sub_k", "add_big"}


def _norm_graph(square="pow", tail=("Add", "Sqrt", "Div"), exponent=2.0):
    inits = [_t([exponent], "two"), _t([1e-5], "eps")]
    nodes = [helper.make_node("ReduceMean", ["x"], ["mu"], name="mean", axes=[-1]),
             helper.make_node("Sub", ["x", "mu"], ["d"], name="sub")]
    if square == "pow":
        nodes.append(helper.make_node("Pow", ["d", "two"], ["sq"], name="square"))
    elif square == "mul":
        nodes.append(helper.make_node("Mul", ["d", "d"], ["sq"], name="square"))
    else:
        nodes.append(helper.make_node("Mul", ["d", "x"], ["sq"], name="square"))
    nodes.append(helper.make_node("ReduceMean", ["sq"], ["var"], name="var", axes=[-1]))
    prev = "var"
    for k, op in enumerate(tail):
        ins = {"Add": [prev, "eps"], "Sqrt": [prev], "Reciprocal": [prev], "Div": ["d", prev], "Mul": ["d", prev],
               "Relu": [prev]}[op]
        nodes.append(helper.make_node(op, ins, [f"t{k}"], name=f"{op.lower()}{k}"))
        prev = f"t{k}"
    nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
    return _model(nodes, inits)


def test_norm_variance_path_by_hand():
    got = norm_variance_nodes(_norm_graph("pow"))
    assert set(got) == {"square", "var", "add0", "sqrt1", "div2"}
    assert got["square"] == "variance path of a normalization (Pow -> ReduceMean -> ...)"
    assert set(norm_variance_nodes(_norm_graph("mul"))) == {"square", "var", "add0", "sqrt1", "div2"}
    assert norm_variance_nodes(_norm_graph("mul"))["var"] == "variance path of a normalization (Mul -> ReduceMean -> ...)"
    assert norm_variance_nodes(_norm_graph("other")) == {}   # Mul(d, x) is not a square
    assert norm_variance_nodes(_norm_graph("pow", exponent=3.0)) == {}
    rms = norm_variance_nodes(_norm_graph("pow", tail=("Add", "Sqrt", "Reciprocal", "Mul")))
    assert set(rms) == {"square", "var", "add0", "sqrt1", "reciprocal2", "mul3"}
    stop = norm_variance_nodes(_norm_graph("pow", tail=("Add", "Relu")))
    assert set(stop) == {"square", "var", "add0"}  # the chain ends at an op outside the pattern
    # the chain stops at the first Div/Mul after Sqrt, not at an Add -> Div
    direct = norm_variance_nodes(_norm_graph("pow", tail=("Add", "Div", "Sqrt")))
    assert set(direct) == {"square", "var", "add0", "div1", "sqrt2"}


def test_norm_variance_with_a_constant_node_exponent_and_reduce_sum():
    nodes = [helper.make_node("Constant", [], ["two"], name="c2", value=_t([2.0], "v")),
             helper.make_node("Pow", ["x", "two"], ["sq"], name="square"),
             helper.make_node("ReduceSum", ["sq"], ["s"], name="sum", axes=[-1]),
             helper.make_node("Sqrt", ["s"], ["y"], name="root")]
    assert set(norm_variance_nodes(_model(nodes))) == {"square", "sum", "root"}
    nodes[2] = helper.make_node("ReduceMax", ["sq"], ["s"], name="sum", axes=[-1])
    assert norm_variance_nodes(_model(nodes)) == {}
    two_readers = [helper.make_node("Mul", ["x", "x"], ["sq"], name="square"),
                   helper.make_node("ReduceMean", ["sq"], ["v"], name="var", axes=[-1]),
                   helper.make_node("Sqrt", ["v"], ["y"], name="root"),
                   helper.make_node("Identity", ["v"], ["z"], name="other")]
    assert set(norm_variance_nodes(_model(two_readers, outputs=("y", "z")))) == {"square", "var"}


# ------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("vals,want", [([0.0, -1e9], True), ([-np.inf, 1.0], True), ([-65504.0 * 2, 3.0], True),
                                       ([-65504.0], False), ([1.0, 2.0], False), ([], False), ([1e9, -1e9], False),
                                       ([np.nan, -1e9], False), ([-1e9, 65504.0], True), ([70000.0], False)])
def test_mask_like(vals, want):
    assert F.mask_like(np.array(vals)) is want


def _mask_model(fill=-1e9, reader="Add", as_constant=False, extra_reader=None):
    nodes = []
    inits = []
    if as_constant:
        nodes.append(helper.make_node("Constant", [], ["mask"], name="cmask", value=_t([[0.0, fill, 0.0, fill]], "mv")))
    else:
        inits.append(_t([[0.0, fill, 0.0, fill]], "mask"))
    nodes.append(helper.make_node(reader, ["x", "mask"], ["s"], name="apply_mask"))
    if extra_reader:
        nodes.append(helper.make_node(extra_reader, ["mask", "x"], ["e"], name="extra"))
    nodes.append(helper.make_node("Softmax", ["s"], ["y"], name="softmax", axis=-1))
    return _model(nodes, inits, outputs=("y",) + (("e",) if extra_reader else ()))


def test_mask_constants_and_clamp():
    found = F.mask_constants(_mask_model())
    assert found == {"mask": {"min": -1e9, "readers": ["apply_mask"], "node": None}}
    assert F.mask_constants(_mask_model(as_constant=True))["mask"]["node"] == "cmask"
    assert F.mask_constants(_mask_model(reader="MatMul")) == {}  # read by a non-mask op: a weight, not a mask
    assert F.mask_constants(_mask_model(extra_reader="Conv")) == {}
    assert F.mask_constants(_mask_model(fill=-100.0)) == {}
    for as_constant in (False, True):
        p = _mask_model(as_constant=as_constant)
        changed = F.clamp_mask_constants(p)
        assert changed["mask"]["clamped_to"] == -1e4
        t = p.graph.initializer[0] if not as_constant else p.graph.node[0].attribute[0].t
        assert numpy_helper.to_array(t).tolist() == [[0.0, -1e4, 0.0, -1e4]]
        assert t.name == ("mask" if not as_constant else "mv")
    p = _mask_model()
    F.clamp_mask_constants(p, value=-300.0)
    assert numpy_helper.to_array(p.graph.initializer[0]).tolist() == [[0.0, -300.0, 0.0, -300.0]]
    untouched = _mask_model(reader="MatMul")
    before = untouched.SerializeToString()
    assert F.clamp_mask_constants(untouched) == {} and untouched.SerializeToString() == before


def test_mask_through_constant_of_shape():
    fill = helper.make_tensor("v", TensorProto.FLOAT, [1], [-3.4e38])
    nodes = [helper.make_node("Shape", ["x"], ["shp"], name="shape"),
             helper.make_node("ConstantOfShape", ["shp"], ["mask"], name="cos", value=fill),
             helper.make_node("Add", ["x", "mask"], ["y"], name="add")]
    p = _model(nodes)
    assert F.mask_constants(p)["mask"]["node"] == "cos"
    F.clamp_mask_constants(p)
    assert numpy_helper.to_array(p.graph.node[1].attribute[0].t).tolist() == [-1e4]


# ------------------------------------------------------------------------------------------ the safety table
def _row(df, node, check):
    r = df[(df.onnx_node == node) & (df.check == check)]
    assert len(r) == 1, (node, check, df[["onnx_node", "check"]].values.tolist())
    return r.iloc[0]


def test_safety_table_each_check_by_hand():
    inits = [_t([3.0], "three"), _t([2.0], "two"), _t([0.5], "half"), _t([1e6], "big"),
             _t([[0.0, -1e9, 0.0, -1e9]], "mask")]
    nodes = [helper.make_node("Pow", ["x", "three"], ["p3"], name="pow3"),
             helper.make_node("Pow", ["p3", "two"], ["p2"], name="pow2"),
             helper.make_node("Pow", ["p2", "half"], ["ph"], name="pow_half"),
             helper.make_node("Pow", ["ph", "x"], ["pv"], name="pow_var"),
             helper.make_node("ReduceSum", ["pv"], ["rs"], name="rsum", keepdims=1),
             helper.make_node("ReduceL2", ["rs"], ["rl"], name="rl2", keepdims=1),
             helper.make_node("ReduceSumSquare", ["rl"], ["rq"], name="rss", keepdims=1),
             helper.make_node("Mul", ["rq", "big"], ["mb"], name="mul_big"),
             helper.make_node("Add", ["mb", "mask"], ["am"], name="add_mask"),
             helper.make_node("Softmax", ["am"], ["sm"], name="sm_masked", axis=-1),
             helper.make_node("LogSoftmax", ["x"], ["ls"], name="sm_plain", axis=-1),
             helper.make_node("Exp", ["ls"], ["ex"], name="exp"),
             helper.make_node("LayerNormalization", ["ex", "two", "half"], ["ln"], name="ln", axis=-1),
             helper.make_node("Add", ["ln", "sm"], ["y"], name="")]
    df = F.fp16_safety(_model(nodes, inits, opset=17).SerializeToString())
    assert list(df.columns) == ["onnx_node", "op_type", "check", "value", "severity", "action", "detail"]
    r = _row(df, "pow3", "pow")
    assert (r.value, r.severity, r.op_type) == (3, "risk", "Pow")
    assert r.action == "converted to fp16 (keep_nodes=[...] to keep fp32)"
    assert r.detail == f"x^3.0 overflows fp16 once |x| > {65504.0 ** (1 / 3):.3g}"
    assert _row(df, "pow2", "pow").detail == "x^2 outside a normalization: overflows fp16 once |x| > 256"
    assert df[df.onnx_node == "pow_half"].empty  # x^0.5 cannot overflow
    assert _row(df, "pow_var", "pow").detail == "x^(non-constant) overflows fp16 once |x| > ?"
    assert (_row(df, "rsum", "reduce_sum").value, _row(df, "rsum", "reduce_sum").severity) == (1, "info")
    assert _row(df, "rl2", "reduce_sum").value == 3 and _row(df, "rss", "reduce_sum").value == 3
    assert _row(df, "rsum", "reduce_sum").detail == \
        "a long sum can pass 65504 in fp16 (backends usually accumulate in fp32)"
    rc = _row(df, "mul_big", "range_constant")
    assert (rc.value, rc.severity, rc.action) == (2, "handled", "keep fp32")
    assert rc.detail == "reads 'big': |x| up to 1e+06 > fp16 max 65504"
    mk = _row(df, "add_mask", "mask_constant")
    assert mk.action == "clamp 'mask' to -10000" and mk.value == 2
    assert mk.detail == "reads 'mask' (min -1e+09; fp16 min is -65504): an attention-mask fill value"
    assert df[(df.onnx_node == "add_mask") & (df.check == "range_constant")].empty  # a mask is not also a range row
    sm = _row(df, "sm_masked", "softmax")
    assert (sm.value, sm.action) == (2, "converted to fp16 (mask clamped)")
    assert sm.detail == "fp16-safe when its input is bounded; its input is masked with an out-of-range constant"
    sp = _row(df, "sm_plain", "softmax")
    assert (sp.value, sp.action, sp.detail) == (1, "converted to fp16", "fp16-safe when its input is bounded")
    ex = _row(df, "exp", "exp")
    assert (ex.value, ex.detail) == (3, "exp(x) overflows fp16 for x > 11.09")
    ln = _row(df, "ln", "layernorm")
    assert (ln.value, ln.action) == (2, "keep fp32")
    assert ln.detail == "normalization computes a variance (x^2) that overflows fp16 above 256"
    keep = "converted to fp16 (keep_nodes=[...] to keep fp32)"
    for node, check, value, action in [("pow3", "pow", 3, keep), ("pow2", "pow", 3, keep), ("pow_var", "pow", 3, keep),
                                       ("rsum", "reduce_sum", 1, "converted to fp16"), ("rl2", "reduce_sum", 3, keep),
                                       ("rss", "reduce_sum", 3, keep), ("exp", "exp", 3, keep)]:
        r = _row(df, node, check)
        assert (r.value, r.action) == (value, action), node
    sq = "a sum of squares: overflows fp16 once the sum passes 65504 (one element with |x| > 256 is enough)"
    assert _row(df, "rl2", "reduce_sum").detail == sq and _row(df, "rss", "reduce_sum").detail == sq
    assert df.attrs["legend"] == {"3": "risk left in fp16", "2": "handled by the fp16 recipe", "1": "information"}
    overlay = F.fp16_safety_overlay(_model(nodes, inits, opset=17).SerializeToString())
    assert overlay["pow3"] == 3.0 and overlay["sm_plain"] == 1.0 and overlay["mul_big"] == 2.0
    assert overlay == {str(k): float(v) for k, v in df.groupby("onnx_node")["value"].max().items()}
    s = F.fp16_safety_summary(df)
    assert s["findings"] == len(df) and s["handled"] == int((df.value == 2).sum())
    assert s["risks_left_in_fp16"] == sorted({"pow3", "pow2", "pow_var", "rl2", "rss", "exp"})
    assert s["by_check"]["pow"] == 3 and s["by_check"]["reduce_sum"] == 3 and s["by_check"]["softmax"] == 2


def test_safety_table_norm_nodes_are_handled_not_flagged():
    df = F.fp16_safety(_norm_graph("pow").SerializeToString())
    rows = df[df.check == "norm_variance"]
    assert set(rows.onnx_node) == {"square", "var", "add0", "sqrt1", "div2"}
    assert set(rows.value) == {2} and set(rows.action) == {"keep fp32"}
    assert set(rows.detail) == {"variance path of a normalization (Pow -> ReduceMean -> ...)"}
    assert df[(df.onnx_node == "square") & (df.check == "pow")].empty  # the norm's Pow is not a "pow" risk
    assert df[(df.onnx_node == "var") & (df.check == "reduce_sum")].empty
    assert _row(df, "mean", "reduce_sum").value == 1  # the mean outside the variance path is information


def test_safety_underflow_fraction_is_passed_through_and_unnamed_nodes_are_named_by_output():
    inits = [_t([1e-9] * 2 + [1.0] * 98, "w")]
    nodes = [helper.make_node("Mul", ["x", "w"], ["y"])]  # no name
    m = _model(nodes, inits)
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 100
    df = F.fp16_safety(m.SerializeToString())
    assert df.onnx_node.tolist() == ["y"] and df.check.tolist() == ["range_constant"]
    assert F.fp16_safety(m.SerializeToString(), underflow_fraction=0.02).empty
    assert F.fp16_safety(m.SerializeToString(), underflow_fraction=0.019).check.tolist() == ["range_constant"]


def test_empty_tables():
    df = F.fp16_safety(_model([helper.make_node("Relu", ["x"], ["y"], name="r")]).SerializeToString())
    assert df.empty and list(df.columns) == F.COLUMNS
    assert F.fp16_safety_summary(df) == {"findings": 0} and F.fp16_safety_summary(None) == {"findings": 0}
    assert F.fp16_safety_overlay(_model([helper.make_node("Relu", ["x"], ["y"], name="r")]).SerializeToString()) == {}


def test_upstream_constants_depth():
    nodes = [helper.make_node("Add", ["x", "c0"], ["a"], name="n1"),
             helper.make_node("Add", ["a", "c1"], ["b"], name="n2"),
             helper.make_node("Add", ["b", "c2"], ["y"], name="n3")]
    g = _model(nodes).graph
    assert F._upstream_consts(g, g.node[2], depth=1) == {"b", "c2", "a", "c1"}
    assert F._upstream_consts(g, g.node[2], depth=2) == {"b", "c2", "a", "c1", "x", "c0"}
    assert F._upstream_consts(g, g.node[2], depth=0) == {"b", "c2"}


def test_mask_like_boundary_and_integer_input():
    assert F.mask_like(np.array([-65504.0 * 2])) is True
    assert F.mask_like(np.array([np.nextafter(-65504.0, -np.inf)])) is True  # just past fp16's range
    assert F.mask_like(np.array([-70000, 0], dtype=np.int64)) is True  # any numeric input is read as float64


def test_softmax_mask_found_four_steps_up_not_five():
    mask = _t([[0.0, -1e9, 0.0, -1e9]], "mask")
    chain = [helper.make_node("Add", ["x", "mask"], ["m0"], name="apply")]
    for i in range(3):
        chain.append(helper.make_node("Identity", [f"m{i}"], [f"m{i + 1}"], name=f"id{i}"))
    chain.append(helper.make_node("Softmax", ["m3"], ["y"], name="sm", axis=-1))
    df = F.fp16_safety(_model(chain, [mask]).SerializeToString())
    assert _row(df, "sm", "softmax").value == 2  # the mask is 4 tensors up: seen
    chain.insert(-1, helper.make_node("Identity", ["m3"], ["m4"], name="id3"))
    chain[-1] = helper.make_node("Softmax", ["m4"], ["y"], name="sm", axis=-1)
    df = F.fp16_safety(_model(chain, [mask]).SerializeToString())
    assert _row(df, "sm", "softmax").value == 1  # 5 up: beyond the look-up depth


def test_norm_chain_stops_at_the_first_div_or_mul_after_the_root():
    assert set(norm_variance_nodes(_norm_graph("pow", tail=("Add", "Sqrt", "Div", "Mul")))) == \
        {"square", "var", "add0", "sqrt1", "div2"}
    assert set(norm_variance_nodes(_norm_graph("pow", tail=("Add", "Sqrt", "Mul", "Mul")))) == \
        {"square", "var", "add0", "sqrt1", "mul2"}
    assert set(norm_variance_nodes(_norm_graph("pow", tail=("Add", "Sqrt", "Reciprocal", "Mul", "Mul")))) == \
        {"square", "var", "add0", "sqrt1", "reciprocal2", "mul3"}


def test_exponent_from_a_non_constant_node_is_not_a_square():
    two = helper.make_tensor("v", TensorProto.FLOAT, [1], [2.0])
    nodes = [helper.make_node("Shape", ["x"], ["s1"], name="shape"),
             helper.make_node("Slice", ["s1", "st", "en"], ["s2"], name="slice"),
             helper.make_node("ConstantOfShape", ["s2"], ["e"], name="cos", value=two),
             helper.make_node("Pow", ["x", "e"], ["sq"], name="square"),
             helper.make_node("ReduceMean", ["sq"], ["y"], name="var", axes=[-1])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "st"), numpy_helper.from_array(np.array([1], np.int64), "en")]
    assert norm_variance_nodes(_model(nodes, inits)) == {}  # only initializers and Constant nodes are constants


def test_range_blocks_constant_node_with_tiny_values():
    nodes = [helper.make_node("Constant", [], ["k"], name="const_k", value=_t([1e-9] * 4, "kv")),
             helper.make_node("Mul", ["x", "k"], ["y"], name="mul_k")]
    out = fp16_range_blocks(_model(nodes))
    assert set(out) == {"const_k", "mul_k"} and out["const_k"].startswith("Constant 'k': 4/4 nonzero values")


# ------------------------------------------------------------------------------------------ integer constants
def _typed_model(nodes, inits, inputs, outputs, opsets=(("", 17),)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def test_integer_constants_are_neither_masks_nor_range_problems():
    """Slice bounds ``x[:, 1:]`` / ``x[:, ::-1]`` are exported as int64 Constants holding +-(2^63 - 1), and a
    ConstantOfShape can fill int64 values: fp16 conversion never touches integer tensors, so none of them is an
    fp16 finding, and clamping masks leaves them alone."""
    big = np.iinfo(np.int64).max

    def i64(name, v):
        return helper.make_node("Constant", [], [name], name=f"k_{name}", value=_t(v, name, np.int64))
    nodes = [i64("st", [1]), i64("en", [big]), i64("ax", [1]), i64("rst", [-1]), i64("ren", [-big]), i64("step", [-1]),
             helper.make_node("Slice", ["x", "st", "en", "ax"], ["y1"], name="tail"),
             helper.make_node("Slice", ["x", "rst", "ren", "ax", "step"], ["y2"], name="reverse"),
             helper.make_node("Shape", ["x"], ["shp"], name="shape"),
             helper.make_node("ConstantOfShape", ["shp"], ["fill"], name="cos_big", value=_t([100000], "v1", np.int64)),
             helper.make_node("ConstantOfShape", ["shp"], ["neg"], name="cos_neg", value=_t([-big], "v2", np.int64)),
             helper.make_node("Add", ["fill", "neg"], ["z"], name="add_int")]
    f, i = TensorProto.FLOAT, TensorProto.INT64
    p = _typed_model(nodes, [], [("x", f, [2, 4])], [("y1", f, [2, 3]), ("y2", f, [2, 4]), ("z", i, [2])])
    assert F.mask_constants(p) == {}
    assert len(F.fp16_safety(p)) == 0
    before = p.SerializeToString()
    assert F.clamp_mask_constants(p) == {} and p.SerializeToString() == before


def test_softmax_mask_behind_a_tensor_read_twice():
    """scores = x*x + (h + mask): the look-up meets ``x`` twice (Mul(x, x)) before it reaches the mask."""
    nodes = [helper.make_node("Mul", ["x", "x"], ["p"], name="square"),
             helper.make_node("Add", ["h", "mask"], ["w"], name="apply_mask"),
             helper.make_node("Add", ["p", "w"], ["s"], name="scores"),
             helper.make_node("Softmax", ["s"], ["y"], name="sm", axis=-1)]
    df = F.fp16_safety(_model(nodes, [_t([[0.0, -1e9, 0.0, -1e9]], "mask")], inputs=("x", "h")))
    assert _row(df, "sm", "softmax").value == 2 and _row(df, "sm", "softmax").action.endswith("(mask clamped)")


def test_unread_out_of_range_constants_are_no_finding():
    """Exports often carry unused initializers; one out of fp16 range is read by nothing, so nothing is kept fp32."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu"),
             helper.make_node("Constant", [], ["unused_k"], name="unused_const", value=_t([1e9], "kv"))]
    df = F.fp16_safety(_model(nodes, [_t([1e6], "unused"), _t([-1e9], "unused_mask")]))
    assert len(df) == 0


def test_pow_with_a_per_channel_exponent_is_not_reported_as_a_square():
    """Pow(x, [2, 3, 2, 3]) cubes half the channels: it is a risk, and not the x^2 (|x| > 256) one."""
    nodes = [helper.make_node("Pow", ["x", "e"], ["y"], name="pow_pc")]
    row = _row(F.fp16_safety(_model(nodes, [_t([[2.0, 3.0, 2.0, 3.0]], "e")])), "pow_pc", "pow")
    assert row.value == 3 and "x^2" not in row.detail and "256" not in row.detail


def test_a_mask_does_not_hide_the_range_constants_after_it():
    nodes = [helper.make_node("Add", ["x", "mask"], ["s"], name="apply_mask"),
             helper.make_node("Mul", ["s", "big"], ["y"], name="mul_big")]
    df = F.fp16_safety(_model(nodes, [_t([[0.0, -1e9, 0.0, -1e9]], "mask"), _t([1e6], "big")]))
    assert _row(df, "apply_mask", "mask_constant").value == 2
    assert _row(df, "mul_big", "range_constant").detail == "reads 'big': |x| up to 1e+06 > fp16 max 65504"


def test_a_weight_like_constant_does_not_hide_the_mask_after_it():
    """Two very negative constants: the first is read by a MatMul (a weight, not a mask), the second by an Add."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "mask"], ["y"], name="apply_mask")]
    p = _model(nodes, [_t(np.full((4, 4), -1e9), "w"), _t([[0.0, -1e9, 0.0, -1e9]], "mask")])
    assert set(F.mask_constants(p)) == {"mask"}
    df = F.fp16_safety(p)
    assert _row(df, "apply_mask", "mask_constant").value == 2 and _row(df, "mm", "range_constant").value == 2


def test_unnamed_node_without_outputs_is_named_by_its_op_type():
    """A custom sink op (no name, no outputs) reading an out-of-range constant: the row names its op type."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu"),
             helper.make_node("Sink", ["y", "big"], [], domain="com.example")]
    f = TensorProto.FLOAT
    p = _typed_model(nodes, [_t([1e6], "big")], [("x", f, [2, 4])], [("y", f, [2, 4])],
                     opsets=(("", 17), ("com.example", 1)))
    df = F.fp16_safety(p)
    assert df[["onnx_node", "op_type", "check"]].values.tolist() == [["Sink", "Sink", "range_constant"]]


def test_mask_like_int64_min():
    """np.abs(INT64_MIN) overflows to a negative int64; as float64 it is -9.2e18, far below fp16's range."""
    assert F.mask_like(np.array([np.iinfo(np.int64).min, 0], dtype=np.int64)) is True
