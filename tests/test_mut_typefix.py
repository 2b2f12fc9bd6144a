"""Tests for workbench/precision/typefix.py (issue 23 mutation target ``typefix``): the float-type repair after a
float16 conversion (``repair_float_types``) and the removal of fp32 -> low -> fp32 Cast pairs
(``drop_round_trip_casts``).

Every graph is built here by hand in the state a converter leaves it (a converted fp16 node reading an fp32
initializer, a kept fp32 node reading an fp16 tensor, ...), so where a Cast is needed is known before the
repair runs. Each result must pass the full checker with strict type inference and, where ONNX Runtime's CPU
provider has the kernels, compute what numpy computes on the same inputs.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from workbench.precision.typefix import drop_round_trip_casts, repair_float_types
from workbench.precision.validity import strict_problems

F16, F32, BF16 = T.FLOAT16, T.FLOAT, T.BFLOAT16


def _vi(name, t, shape=(2, 3)):
    return h.make_tensor_value_info(name, t, None if shape is None else list(shape))


def _model(nodes, inputs, outputs, inits=(), value_info=(), opset=17, ir=None):
    g = h.make_graph(nodes, "g", list(inputs), list(outputs), initializer=list(inits), value_info=list(value_info))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    if ir is not None:
        m.ir_version = ir
    return m


def _run(m, feeds):
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def _types(m):
    """Element type of every tensor after strict inference (inputs, value_info, outputs, initializers)."""
    inf = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    t = {vi.name: vi.type.tensor_type.elem_type for vi in
         list(inf.graph.input) + list(inf.graph.value_info) + list(inf.graph.output)}
    t.update({i.name: i.data_type for i in inf.graph.initializer})
    return t


def _node(m, name):
    return next(n for n in m.graph.node if n.name == name)


def _cast_to(n):
    return next(a.i for a in n.attribute if a.name == "to")


W = np.arange(6, dtype=np.float32).reshape(2, 3) / 4  # exact in fp16
X = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5)


# ---------------------------------------------------------------------------------------------- repair
def test_shared_fp32_initializer_gets_one_cast_for_converted_readers():
    """W stays fp32 for the kept node; the two converted (fp16) readers share one Cast of it."""
    nodes = [h.make_node("Add", ["x", "W"], ["a"], name="add16"),
             h.make_node("Mul", ["a", "W"], ["b"], name="mul16"),
             h.make_node("Cast", ["b"], ["b32"], name="up", to=F32),
             h.make_node("Sub", ["b32", "W"], ["y"], name="sub32")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F32)], [nh.from_array(W, "W")])
    added = repair_float_types(m, {"sub32", "up"})
    assert added == ["W__wb_cast_float16_node"]
    cast = _node(m, "W__wb_cast_float16_node")
    assert list(cast.input) == ["W"] and list(cast.output) == ["W__wb_cast_float16"] and _cast_to(cast) == F16
    assert list(_node(m, "add16").input) == ["x", "W__wb_cast_float16"]
    assert list(_node(m, "mul16").input) == ["a", "W__wb_cast_float16"]
    assert list(_node(m, "sub32").input) == ["b32", "W"]  # the kept node reads the fp32 original
    assert strict_problems(m) == []
    names = [n.name for n in m.graph.node]
    assert names.index("W__wb_cast_float16_node") < names.index("add16")
    vi = {v.name: v.type.tensor_type for v in m.graph.value_info}
    assert vi["W__wb_cast_float16"].elem_type == F16
    assert [d.dim_value for d in vi["W__wb_cast_float16"].shape.dim] == [2, 3]  # the shape is kept
    (y,) = _run(m, {"x": X.astype(np.float16)})
    np.testing.assert_allclose(y, (X + W) * W - W, rtol=1e-3, atol=1e-3)


def test_kept_node_reading_an_fp16_tensor_gets_an_fp32_cast():
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu16"),
             h.make_node("Sigmoid", ["r"], ["y"], name="sig32")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F32)])
    added = repair_float_types(m, {"sig32"})
    assert added == ["r__wb_cast_float_node"]
    assert list(_node(m, "sig32").input) == ["r__wb_cast_float"]
    assert _cast_to(_node(m, "r__wb_cast_float_node")) == F32
    assert _types(m)["y"] == F32 and strict_problems(m) == []
    (y,) = _run(m, {"x": X.astype(np.float16)})
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-np.maximum(X, 0))), rtol=1e-3)


def test_consistent_graph_is_left_alone():
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node("Neg", ["r"], ["y"], name="neg")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F16)])
    before = m.SerializeToString()
    assert repair_float_types(m, set()) == []
    assert m.SerializeToString() == before


def test_attribute_typed_output_meets_fp16_and_cast_nodes_are_not_recast():
    """A Cast(to=FLOAT) a converter left behind writes fp32 into an fp16 Add: the Add's input gets a Cast;
    the Cast node itself reads whatever it reads (a Cast accepts any type)."""
    nodes = [h.make_node("Cast", ["x"], ["c"], name="to32", to=F32),
             h.make_node("Add", ["c", "x"], ["y"], name="add16")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F16)])
    added = repair_float_types(m, set())
    assert added == ["c__wb_cast_float16_node"]
    assert list(_node(m, "to32").input) == ["x"]
    assert list(_node(m, "add16").input) == ["c__wb_cast_float16", "x"]
    assert strict_problems(m) == []
    (y,) = _run(m, {"x": X.astype(np.float16)})
    np.testing.assert_allclose(y, 2 * X, rtol=1e-3)


def test_integer_inputs_and_empty_optional_inputs_are_not_touched():
    idx = nh.from_array(np.array([1, 0], np.int64), "idx")
    scales = nh.from_array(np.array([1, 1, 2], np.float32), "scales")
    nodes = [h.make_node("Gather", ["W", "idx"], ["g"], name="gather16", axis=0),
             h.make_node("Unsqueeze", ["g", "ax"], ["u"], name="unsq"),
             h.make_node("Resize", ["u", "", "scales"], ["y"], name="resize16", mode="nearest")]
    ax = nh.from_array(np.array([0], np.int64), "ax")
    m = _model(nodes, [], [_vi("y", F16, (1, 2, 6))], [nh.from_array(W, "W"), idx, scales, ax])
    added = repair_float_types(m, set())
    # W (fp32 data of a converted Gather) is cast; the int64 indices, the empty roi and Resize's scales
    # (fixed tensor(float) in the schema: no fp16 allowed) are not
    assert added == ["W__wb_cast_float16_node"]
    assert list(_node(m, "gather16").input) == ["W__wb_cast_float16", "idx"]
    assert list(_node(m, "resize16").input) == ["u", "", "scales"]
    assert strict_problems(m) == []
    (y,) = _run(m, {})
    np.testing.assert_allclose(y, np.repeat(W[[1, 0]][None], 2, axis=-1).astype(np.float16))


def test_variadic_inputs_beyond_the_formal_list_are_cast_too():
    """Concat has one variadic formal input: the third actual input still has type parameter T."""
    nodes = [h.make_node("Concat", ["x", "x", "W"], ["y"], name="cat16", axis=0)]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F16, (6, 3))], [nh.from_array(W, "W")])
    assert repair_float_types(m, set()) == ["W__wb_cast_float16_node"]
    assert list(_node(m, "cat16").input) == ["x", "x", "W__wb_cast_float16"]
    assert strict_problems(m) == []


def test_graph_output_keeps_its_declared_type_through_an_output_cast():
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu16"), h.make_node("Neg", ["r"], ["y"], name="neg16")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F32)])
    added = repair_float_types(m, set())
    assert added == ["y__wb_output_cast"]
    assert list(_node(m, "neg16").output) == ["y__wb_uncast"]
    oc = _node(m, "y__wb_output_cast")
    assert list(oc.input) == ["y__wb_uncast"] and list(oc.output) == ["y"] and _cast_to(oc) == F32
    assert m.graph.node[-1].name == "y__wb_output_cast"
    assert m.graph.output[0].type.tensor_type.elem_type == F32
    assert {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info}["y__wb_uncast"] == F16
    assert strict_problems(m) == []
    (y,) = _run(m, {"x": X.astype(np.float16)})
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, -np.maximum(X, 0), rtol=1e-3)


def test_declared_outputs_override_and_readers_of_an_output_follow_the_rename():
    """declared_outputs says y must be fp16 though the graph declares fp32; a node reading the output y
    reads the renamed tensor."""
    nodes = [h.make_node("Relu", ["x"], ["y"], name="relu32"), h.make_node("Neg", ["y"], ["z"], name="neg32")]
    m = _model(nodes, [_vi("x", F32)], [_vi("y", F32), _vi("z", F32)])
    added = repair_float_types(m, {"relu32", "neg32"}, declared_outputs={"y": F16})
    assert added == ["y__wb_output_cast"]
    assert list(_node(m, "neg32").input) == ["y__wb_uncast"]
    assert m.graph.output[0].type.tensor_type.elem_type == F16 and m.graph.output[1].type.tensor_type.elem_type == F32
    assert strict_problems(m) == []
    y, z = _run(m, {"x": X})
    assert y.dtype == np.float16 and z.dtype == np.float32
    np.testing.assert_allclose(z, -np.maximum(X, 0))


def test_non_float_output_is_never_cast():
    nodes = [h.make_node("Shape", ["x"], ["y"], name="shape")]
    m = _model(nodes, [_vi("x", F16)], [h.make_tensor_value_info("y", T.INT64, [2])])
    assert repair_float_types(m, set(), declared_outputs={"y": F32}) == []


@pytest.mark.parametrize("op", ["Sin", "Where"])
def test_op_without_a_bf16_signature_falls_back_to_fp32(op):
    """At opset 13, Sin (since 7) and Where (since 9) have no bfloat16 type; Relu has."""
    cond = nh.from_array(np.array([[True, False, True]] * 2), "cond")
    ins = ["cond", "r", "r"] if op == "Where" else ["r"]
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node(op, ins, ["s"], name="op"),
             h.make_node("Neg", ["s"], ["y"], name="neg"),
             h.make_node("Add", ["i", "i"], ["i2"], name="int_add")]  # no float input: nothing to fall back from
    m = _model(nodes, [_vi("x", BF16), h.make_tensor_value_info("i", T.INT64, [2])],
               [_vi("y", BF16), h.make_tensor_value_info("i2", T.INT64, [2])], [cond], opset=13)
    fallback: list[str] = []
    added = repair_float_types(m, set(), low=BF16, fallback=fallback)
    assert fallback == ["op"]
    assert added == ["r__wb_cast_float_node", "s__wb_cast_bfloat16_node"]
    assert _node(m, "op").input[-1] == "r__wb_cast_float"
    assert list(_node(m, "neg").input) == ["s__wb_cast_bfloat16"]
    t = _types(m)
    assert (t["r"], t["s"], t["y"]) == (BF16, F32, BF16)
    assert strict_problems(m) == []


def test_fallback_list_is_optional():
    nodes = [h.make_node("Sin", ["x"], ["y"], name="sin")]
    m = _model(nodes, [_vi("x", BF16)], [_vi("y", BF16)], opset=13)
    assert repair_float_types(m, set(), low=BF16) == ["x__wb_cast_float_node", "y__wb_output_cast"]
    assert strict_problems(m) == []


def test_blocked_node_with_no_low_kernel_is_not_a_fallback():
    nodes = [h.make_node("Sin", ["x"], ["y"], name="sin")]
    m = _model(nodes, [_vi("x", F32)], [_vi("y", F32)], opset=13)
    fallback: list[str] = []
    assert repair_float_types(m, {"sin"}, low=BF16, fallback=fallback) == []
    assert fallback == []


def _if_node(name, outer, out):
    then_g = h.make_graph([h.make_node("Neg", [outer], ["t"], name=f"{name}_neg")], "then", [], [_vi("t", F32)])
    else_g = h.make_graph([h.make_node("Identity", [outer], ["e"], name=f"{name}_id")], "else", [], [_vi("e", F32)])
    return h.make_node("If", ["cond"], [out], name=name, then_branch=then_g, else_branch=else_g)


def test_kept_if_node_inputs_are_cast_and_its_output_type_comes_from_output_types():
    """A kept (fp32) If reads an fp16 tensor in its bodies only; ONNX's per-node inference cannot type its
    output, so output_types gives it (fp32): the fp16 reader after it gets a Cast."""
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu16"),
             h.make_node("Identity", ["r"], ["r2"], name="id16"),
             _if_node("if32", "r2", "o"),
             h.make_node("Add", ["o", "r"], ["y"], name="add16")]
    m = _model(nodes, [_vi("x", F16), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("y", F16)])
    added = repair_float_types(m, {"if32"}, output_types={"o": F32})
    # If's own inputs (cond: bool) need no cast; the fp32 output o is cast for the fp16 Add
    assert added == ["o__wb_cast_float16_node"]
    assert list(_node(m, "add16").input) == ["o__wb_cast_float16", "r"]
    m2 = _model([h.make_node("Relu", ["x"], ["r"], name="relu16"), _if_node("if32", "r", "o"),
                 h.make_node("Add", ["o", "r"], ["y"], name="add16")],
                [_vi("x", F16), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("y", F16)])
    assert repair_float_types(m2, {"if32"}) == []  # without output_types nothing is known about o
    m3 = _model([h.make_node("Relu", ["x"], ["r"], name="relu16"), _if_node("if32", "r", "o"),
                 h.make_node("Add", ["o", "r"], ["y"], name="add16")],
                [_vi("x", F16), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("y", F16)])
    assert repair_float_types(m3, {"if32"}, output_types={"o": 0}) == []  # 0 = unknown, not a type


def test_converted_if_node_inputs_are_left_to_its_bodies():
    """A converted If (not kept) whose extra float input would clash is not touched: its bodies decide."""
    then_g = h.make_graph([h.make_node("Add", ["x", "W"], ["t"], name="t_add")], "then", [], [_vi("t", F16, None)])
    else_g = h.make_graph([h.make_node("Identity", ["x"], ["e"], name="e_id")], "else", [], [_vi("e", F16, None)])
    node = h.make_node("If", ["cond"], ["y"], name="if16", then_branch=then_g, else_branch=else_g)
    m = _model([node], [_vi("x", F16), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("y", F16)],
               [nh.from_array(W, "W")])
    assert repair_float_types(m, set()) == []


def test_unknown_op_is_passed_through():
    nodes = [h.make_node("Frob", ["x", "W"], ["f"], name="custom", domain="my.ops"),
             h.make_node("Relu", ["x"], ["y"], name="relu16")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F16)], [nh.from_array(W, "W")])
    m.opset_import.append(h.make_opsetid("my.ops", 1))
    assert repair_float_types(m, set()) == []
    assert list(_node(m, "custom").input) == ["x", "W"]


def test_initializer_listed_as_input_declares_the_initializer_type_and_value_info_follows():
    """IR 3 style: W is an initializer and a graph input declared fp16 (wrong); value_info for r says fp32
    but the converted Relu makes fp16: both are rewritten to what the graph holds/produces."""
    nodes = [h.make_node("Add", ["x", "W"], ["a"], name="add16"), h.make_node("Relu", ["a"], ["r"], name="relu16"),
             h.make_node("Neg", ["r"], ["y"], name="neg16")]
    m = _model(nodes, [_vi("x", F16), _vi("W", F16), _vi("other", F32)], [_vi("y", F16)],
               [nh.from_array(W, "W")], [_vi("r", F32)], ir=3)
    repair_float_types(m, set())
    ins = {i.name: i.type.tensor_type.elem_type for i in m.graph.input}
    assert ins == {"x": F16, "W": F32, "other": F32}
    assert {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info}["r"] == F16
    assert list(_node(m, "add16").input) == ["x", "W__wb_cast_float16"]


def test_value_info_without_a_known_type_keeps_it():
    nodes = [h.make_node("Frob", ["x"], ["f"], name="custom", domain="my.ops"),
             h.make_node("Relu", ["x"], ["y"], name="relu16")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F16)], value_info=[_vi("f", F32)])
    m.opset_import.append(h.make_opsetid("my.ops", 1))
    repair_float_types(m, set())
    assert {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info} == {"f": F32}


def test_nodes_are_put_back_in_topological_order():
    """The output Cast is appended last; a graph whose output is read by a later node stays sorted."""
    nodes = [h.make_node("Relu", ["x"], ["y"], name="relu16"), h.make_node("Neg", ["y"], ["z"], name="neg16")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F32), _vi("z", F16)])
    repair_float_types(m, set())
    order = [n.name for n in m.graph.node]
    assert order.index("relu16") < order.index("neg16") and order.index("relu16") < order.index("y__wb_output_cast")
    assert strict_problems(m) == []
    y, z = _run(m, {"x": X.astype(np.float16)})
    np.testing.assert_allclose(z, -np.maximum(X, 0), rtol=1e-3)


# ---------------------------------------------------------------------------------------------- round trips
def _rt_model(extra_nodes=(), outputs=None, inputs=None):
    """x -> Relu(kept, fp32) -> Cast fp16 (u) -> Cast fp32 (v) -> Sigmoid (kept)."""
    nodes = [h.make_node("Relu", ["x"], ["t"], name="relu"),
             h.make_node("Cast", ["t"], ["u"], name="down", to=F16),
             h.make_node("Cast", ["u"], ["v"], name="up", to=F32),
             h.make_node("Sigmoid", ["v"], ["y"], name="sig"), *extra_nodes]
    return _model(nodes, inputs or [_vi("x", F32)], outputs or [_vi("y", F32)],
                  value_info=[_vi("t", F32), _vi("u", F16), _vi("v", F32)])


def test_round_trip_pair_is_removed_and_the_reader_reads_fp32():
    m = _rt_model()
    removed = drop_round_trip_casts(m)
    assert removed == ["up", "down"]
    assert [n.name for n in m.graph.node] == ["relu", "sig"]
    assert list(_node(m, "sig").input) == ["t"]
    assert {v.name for v in m.graph.value_info} == {"t", "v"}  # u (gone) dropped
    assert strict_problems(m) == []
    x = np.array([[1e-5, 2049.0, -3.0], [70000.0, 1.0, 0.0]], np.float32)  # values fp16 would round: now exact
    np.testing.assert_array_equal(_run(m, {"x": x})[0], 1 / (1 + np.exp(-np.maximum(x, 0))))


def test_first_cast_kept_when_another_node_reads_the_fp16_tensor():
    m = _rt_model([h.make_node("Neg", ["u"], ["z"], name="neg16")], outputs=[_vi("y", F32), _vi("z", F16)])
    assert drop_round_trip_casts(m) == ["up"]
    assert [n.name for n in m.graph.node] == ["relu", "down", "sig", "neg16"]
    assert strict_problems(m) == []


def test_first_cast_kept_when_its_output_is_a_graph_output():
    m = _rt_model(outputs=[_vi("y", F32), _vi("u", F16)])
    assert drop_round_trip_casts(m) == ["up"]
    assert "down" in {n.name for n in m.graph.node} and strict_problems(m) == []


def test_not_a_round_trip_is_kept():
    for first_to, src_t in ((BF16, F32), (F16, F16)):  # low is fp16: bf16 down is not it; source already fp16
        nodes = [h.make_node("Cast", ["x"], ["u"], name="down", to=first_to),
                 h.make_node("Cast", ["u"], ["v"], name="up", to=F32), h.make_node("Relu", ["v"], ["y"], name="relu")]
        m = _model(nodes, [_vi("x", src_t)], [_vi("y", F32)])
        assert drop_round_trip_casts(m) == []
        assert len(m.graph.node) == 3
    nodes = [h.make_node("Relu", ["x"], ["u"], name="relu16"), h.make_node("Cast", ["u"], ["v"], name="up", to=F32),
             h.make_node("Cast", ["v"], ["w"], name="to_int", to=T.INT32)]
    m = _model(nodes, [_vi("x", F16)], [h.make_tensor_value_info("w", T.INT32, [2, 3])])
    assert drop_round_trip_casts(m) == []  # up's producer is not a Cast; to_int is not a Cast to fp32


def test_bf16_round_trip_with_low_bf16():
    nodes = [h.make_node("Cast", ["x"], ["u"], name="down", to=BF16), h.make_node("Cast", ["u"], ["v"], name="up", to=F32),
             h.make_node("Relu", ["v"], ["y"], name="relu")]
    m = _model(nodes, [_vi("x", F32)], [_vi("y", F32)])
    assert drop_round_trip_casts(m) == []  # default low: fp16
    assert drop_round_trip_casts(m, low=BF16) == ["up", "down"]
    assert [list(n.input) for n in m.graph.node] == [["x"]]


def test_round_trip_to_a_graph_output_is_written_by_the_producer():
    m = _rt_model(outputs=[_vi("v", F32)])
    del m.graph.node[3]  # no Sigmoid: v is the graph output
    assert drop_round_trip_casts(m) == ["up", "down"]
    assert [(n.name, list(n.output)) for n in m.graph.node] == [("relu", ["v"])]
    assert "t" not in {v.name for v in m.graph.value_info}
    assert strict_problems(m) == []
    np.testing.assert_array_equal(_run(m, {"x": X})[0], np.maximum(X, 0))


def test_round_trip_of_a_graph_input_to_an_output_uses_an_identity():
    nodes = [h.make_node("Cast", ["x"], ["u"], name="down", to=F16), h.make_node("Cast", ["u"], ["v"], name="up", to=F32)]
    m = _model(nodes, [_vi("x", F32)], [_vi("v", F32)])
    assert drop_round_trip_casts(m) == ["up", "down"]
    (ident,) = m.graph.node
    assert (ident.op_type, list(ident.input), list(ident.output), ident.name) == ("Identity", ["x"], ["v"],
                                                                                  "up__wb_identity")
    assert strict_problems(m) == []
    x = np.array([[1e-5, 2049.0, 70000.0], [1.0, 2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(_run(m, {"x": x})[0], x)


def test_round_trip_whose_fp32_tensor_is_also_an_output_uses_an_identity():
    m = _rt_model(outputs=[_vi("t", F32), _vi("v", F32)])
    del m.graph.node[3]
    assert drop_round_trip_casts(m) == ["up", "down"]
    assert [(n.op_type, list(n.input), list(n.output)) for n in m.graph.node] == [("Relu", ["x"], ["t"]),
                                                                                  ("Identity", ["t"], ["v"])]
    assert strict_problems(m) == []
    t, v = _run(m, {"x": X})
    np.testing.assert_array_equal(t, v)


def test_two_outputs_from_one_fp32_tensor_one_written_one_identity():
    nodes = [h.make_node("Relu", ["x"], ["t"], name="relu"),
             h.make_node("Cast", ["t"], ["u"], name="down", to=F16),
             h.make_node("Cast", ["u"], ["v1"], name="up1", to=F32),
             h.make_node("Cast", ["u"], ["v2"], name="up2", to=F32)]
    m = _model(nodes, [_vi("x", F32)], [_vi("v1", F32), _vi("v2", F32)], value_info=[_vi("t", F32)])
    assert drop_round_trip_casts(m) == ["up1", "up2", "down"]
    assert [(n.op_type, list(n.input), list(n.output)) for n in m.graph.node] == [("Relu", ["x"], ["v1"]),
                                                                                  ("Identity", ["v1"], ["v2"])]
    assert strict_problems(m) == []
    v1, v2 = _run(m, {"x": X})
    np.testing.assert_array_equal(v1, np.maximum(X, 0))
    np.testing.assert_array_equal(v2, np.maximum(X, 0))


def test_read_and_output_round_trips_compose():
    """t's round trip feeds both a reader and the graph output: the reader reads the output tensor."""
    nodes = [h.make_node("Relu", ["x"], ["t"], name="relu"),
             h.make_node("Cast", ["t"], ["u"], name="down", to=F16),
             h.make_node("Cast", ["u"], ["v"], name="up_read", to=F32),
             h.make_node("Cast", ["u"], ["o"], name="up_out", to=F32),
             h.make_node("Neg", ["v"], ["y"], name="neg")]
    m = _model(nodes, [_vi("x", F32)], [_vi("o", F32), _vi("y", F32)], value_info=[_vi("t", F32)])
    assert drop_round_trip_casts(m) == ["up_read", "up_out", "down"]
    assert [(n.name, list(n.input), list(n.output)) for n in m.graph.node] == [("relu", ["x"], ["o"]),
                                                                               ("neg", ["o"], ["y"])]
    assert strict_problems(m) == []
    o, y = _run(m, {"x": X})
    np.testing.assert_array_equal(y, -np.maximum(X, 0))


def test_subgraph_reads_are_renamed_and_keep_the_fp16_cast_alive():
    """An If body reads v (outer scope): it reads t afterwards. Another body reads u: down stays."""
    then_g = h.make_graph([h.make_node("Neg", ["v"], ["tt"], name="then_neg")], "then", [], [_vi("tt", F32, None)])
    else_g = h.make_graph([h.make_node("Identity", ["v"], ["ee"], name="else_id")], "else", [], [_vi("ee", F32, None)])
    nodes = [h.make_node("Relu", ["x"], ["t"], name="relu"),
             h.make_node("Cast", ["t"], ["u"], name="down", to=F16),
             h.make_node("Cast", ["u"], ["v"], name="up", to=F32),
             h.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    m = _model(nodes, [_vi("x", F32), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("y", F32)],
               value_info=[_vi("t", F32)])
    assert drop_round_trip_casts(m) == ["up", "down"]
    ifn = _node(m, "if")
    assert list(ifn.attribute[0].g.node[0].input) == ["t"] and list(ifn.attribute[1].g.node[0].input) == ["t"]
    assert strict_problems(m) == []
    for c in (True, False):
        (y,) = _run(m, {"x": X, "cond": np.array(c)})
        np.testing.assert_array_equal(y, (-1 if c else 1) * np.maximum(X, 0))

    then2 = h.make_graph([h.make_node("Cast", ["u"], ["tt"], name="then_up", to=F32)], "then", [], [_vi("tt", F32, None)])
    else2 = h.make_graph([h.make_node("Identity", ["v"], ["ee"], name="else_id")], "else", [], [_vi("ee", F32, None)])
    nodes2 = [*nodes[:3], h.make_node("If", ["cond"], ["y"], name="if", then_branch=then2, else_branch=else2)]
    m2 = _model(nodes2, [_vi("x", F32), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("y", F32)],
               value_info=[_vi("t", F32)])
    assert drop_round_trip_casts(m2) == ["up"]  # u is read inside a body: its Cast stays
    assert "down" in {n.name for n in m2.graph.node} and strict_problems(m2) == []


def test_subgraph_read_of_the_fp32_tensor_forces_an_identity_for_an_output():
    then_g = h.make_graph([h.make_node("Neg", ["t"], ["tt"], name="then_neg")], "then", [], [_vi("tt", F32, None)])
    else_g = h.make_graph([h.make_node("Identity", ["t"], ["ee"], name="else_id")], "else", [], [_vi("ee", F32, None)])
    nodes = [h.make_node("Relu", ["x"], ["t"], name="relu"),
             h.make_node("Cast", ["t"], ["u"], name="down", to=F16),
             h.make_node("Cast", ["u"], ["v"], name="up", to=F32),
             h.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    m = _model(nodes, [_vi("x", F32), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("v", F32), _vi("y", F32)],
               value_info=[_vi("t", F32)])
    assert drop_round_trip_casts(m) == ["up", "down"]
    assert [(n.op_type, list(n.output)) for n in m.graph.node] == [("Relu", ["t"]), ("Identity", ["v"]), ("If", ["y"])]
    assert strict_problems(m) == []


def test_nothing_removed_leaves_value_info():
    nodes = [h.make_node("Relu", ["x"], ["y"], name="relu")]
    m = _model(nodes, [_vi("x", F32)], [_vi("y", F32)], value_info=[_vi("z", F32)])
    assert drop_round_trip_casts(m) == []
    assert [v.name for v in m.graph.value_info] == ["z"]


def test_cast_value_info_carries_shapes_inferred_from_initializer_values():
    """Reshape's output shape comes from its constant shape input: the Cast in front of the kept reader
    records it (per-node inference sees the initializer's values)."""
    shape = nh.from_array(np.array([3, 2], np.int64), "shape")
    nodes = [h.make_node("Reshape", ["x", "shape"], ["r"], name="reshape16"),
             h.make_node("Sigmoid", ["r"], ["y"], name="sig32")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F32, (3, 2))], [shape])
    assert repair_float_types(m, {"sig32"}) == ["r__wb_cast_float_node"]
    vi = {v.name: v.type.tensor_type for v in m.graph.value_info}
    assert vi["r__wb_cast_float"].elem_type == F32
    assert [d.dim_value for d in vi["r__wb_cast_float"].shape.dim] == [3, 2]
    assert strict_problems(m) == []


# ---------------------------------------------------------------------------------------------- second round
def test_custom_domain_op_named_like_a_standard_op_is_not_given_the_standard_schema():
    """my.ops::Relu is not ONNX's Relu: nothing is known about its types, so its fp32 input is not cast."""
    nodes = [h.make_node("Relu", ["x", "W"], ["f"], name="custom_relu", domain="my.ops"),
             h.make_node("Relu", ["x"], ["y"], name="relu16")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F16)], [nh.from_array(W, "W")])
    m.opset_import.append(h.make_opsetid("my.ops", 1))
    fallback: list[str] = []
    assert repair_float_types(m, set(), fallback=fallback) == []
    assert list(_node(m, "custom_relu").input) == ["x", "W"] and fallback == []


def test_unknown_op_is_not_a_fallback():
    nodes = [h.make_node("Frob", ["x"], ["f"], name="custom", domain="my.ops"),
             h.make_node("Relu", ["x"], ["y"], name="relu16")]
    m = _model(nodes, [_vi("x", BF16)], [_vi("y", BF16)], opset=13)
    m.opset_import.append(h.make_opsetid("my.ops", 1))
    fallback: list[str] = []
    assert repair_float_types(m, set(), low=BF16, fallback=fallback) == []
    assert fallback == []


def test_scatternd_updates_share_the_data_type_parameter_not_the_indices_type():
    """ScatterND(data: T, indices: int64, updates: T): fp32 updates of a converted node are cast to fp16."""
    idx = nh.from_array(np.array([[1]], np.int64), "idx")
    upd = nh.from_array(np.full((1, 3), 7.0, np.float32), "upd")
    nodes = [h.make_node("ScatterND", ["x", "idx", "upd"], ["y"], name="scatter16")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F16)], [idx, upd])
    assert repair_float_types(m, set()) == ["upd__wb_cast_float16_node"]
    assert list(_node(m, "scatter16").input) == ["x", "idx", "upd__wb_cast_float16"]
    assert strict_problems(m) == []
    (y,) = _run(m, {"x": X.astype(np.float16)})
    np.testing.assert_allclose(y, np.array([X[0], [7.0, 7.0, 7.0]]), rtol=1e-3)


def _loop(name, v_in):
    body = h.make_graph([h.make_node("Identity", ["c_in"], ["c_out"], name=f"{name}_id"),
                         h.make_node("Neg", ["v_in"], ["v_out"], name=f"{name}_neg")], "body",
                        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c_in", T.BOOL, []),
                         _vi("v_in", F32)], [h.make_tensor_value_info("c_out", T.BOOL, []), _vi("v_out", F32)])
    return h.make_node("Loop", ["n", "", v_in], ["lo"], name=name, body=body)


def test_kept_loop_gets_its_loop_carried_input_cast_a_converted_one_does_not():
    m = _model([h.make_node("Relu", ["x"], ["r"], name="relu16"), _loop("loop32", "r")],
               [_vi("x", F16), h.make_tensor_value_info("n", T.INT64, [])], [_vi("lo", F32)])
    assert repair_float_types(m, {"loop32"}, output_types={"lo": F32}) == ["r__wb_cast_float_node"]
    assert list(_node(m, "loop32").input) == ["n", "", "r__wb_cast_float"]
    assert strict_problems(m) == []
    (y,) = _run(m, {"x": X.astype(np.float16), "n": np.array(3, np.int64)})
    np.testing.assert_allclose(y, -np.maximum(X, 0), rtol=1e-3)
    m2 = _model([_loop("loop16", "x")], [_vi("x", F32), h.make_tensor_value_info("n", T.INT64, [])], [_vi("lo", F32)])
    assert repair_float_types(m2, set(), output_types={"lo": F32}) == []  # a converted holder: its bodies decide
    assert list(_node(m2, "loop16").input) == ["n", "", "x"]


def test_an_empty_optional_input_before_a_clashing_one_does_not_stop_the_casts():
    mx = nh.from_array(np.array(1.0, np.float32), "mx")
    nodes = [h.make_node("Clip", ["x", "", "mx"], ["y"], name="clip16")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F16)], [mx])
    assert repair_float_types(m, set()) == ["mx__wb_cast_float16_node"]
    assert list(_node(m, "clip16").input) == ["x", "", "mx__wb_cast_float16"]
    assert strict_problems(m) == []
    (y,) = _run(m, {"x": X.astype(np.float16)})
    np.testing.assert_allclose(y, np.minimum(X, 1.0))


def test_sequence_typed_value_info_is_left_a_sequence():
    nodes = [h.make_node("SequenceConstruct", ["x", "x"], ["seq"], name="mkseq"),
             h.make_node("SequenceAt", ["seq", "zero"], ["y"], name="at")]
    seq_vi = h.make_tensor_sequence_value_info("seq", F16, [2, 3])
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F16)], [nh.from_array(np.array(0, np.int64), "zero")], [seq_vi])
    repair_float_types(m, set())
    (vi,) = m.graph.value_info
    assert vi.type.HasField("sequence_type") and vi.type.sequence_type.elem_type.tensor_type.elem_type == F16
    assert strict_problems(m) == []


def test_a_body_output_that_names_the_removed_cast_output_is_renamed():
    """The then-branch returns the outer tensor v itself (no node): after the round trip is removed it returns t."""
    then_g = h.make_graph([], "then", [], [_vi("v", F32)])
    else_g = h.make_graph([h.make_node("Neg", ["v"], ["e"], name="else_neg")], "else", [], [_vi("e", F32)])
    nodes = [h.make_node("Relu", ["x"], ["t"], name="relu"),
             h.make_node("Cast", ["t"], ["u"], name="down", to=F16),
             h.make_node("Cast", ["u"], ["v"], name="up", to=F32),
             h.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    m = _model(nodes, [_vi("x", F32), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("y", F32)],
               value_info=[_vi("t", F32)])
    assert drop_round_trip_casts(m) == ["up", "down"]
    ifn = _node(m, "if")
    br = {a.name: a.g for a in ifn.attribute}
    # (a body output naming an outer tensor is outside strict ONNX; the rename keeps it pointing at a live tensor)
    assert [o.name for o in br["then_branch"].output] == ["t"] and list(br["else_branch"].node[0].input) == ["t"]
    assert {n.name for n in m.graph.node} == {"relu", "if"}


def _if_reading(name, t):
    et = F16 if t == "u" else F32
    tg = h.make_graph([h.make_node("Identity", [t], [f"{name}_t"], name=f"{name}_tid")], "then", [], [_vi(f"{name}_t", et)])
    eg = h.make_graph([h.make_node("Identity", [t], [f"{name}_e"], name=f"{name}_eid")], "else", [], [_vi(f"{name}_e", et)])
    return h.make_node("If", ["cond"], [f"{name}_o"], name=name, then_branch=tg, else_branch=eg)


def test_the_fp16_tensor_read_by_the_first_of_two_bodies_keeps_its_cast():
    nodes = [h.make_node("Relu", ["x"], ["t"], name="relu"),
             h.make_node("Cast", ["t"], ["u"], name="down", to=F16),
             h.make_node("Cast", ["u"], ["v"], name="up", to=F32),
             h.make_node("Sigmoid", ["v"], ["y"], name="sig"), _if_reading("if1", "u"), _if_reading("if2", "x")]
    outs = [_vi("y", F32), _vi("if1_o", F16), _vi("if2_o", F32)]
    m = _model(nodes, [_vi("x", F32), h.make_tensor_value_info("cond", T.BOOL, [])], outs,
               value_info=[_vi("t", F32), _vi("u", F16)])
    assert drop_round_trip_casts(m) == ["up"]
    assert "down" in {n.name for n in m.graph.node} and strict_problems(m) == []


def test_the_fp16_tensor_read_by_another_node_and_a_body_keeps_its_cast():
    nodes = [h.make_node("Relu", ["x"], ["t"], name="relu"),
             h.make_node("Cast", ["t"], ["u"], name="down", to=F16),
             h.make_node("Cast", ["u"], ["v"], name="up", to=F32),
             h.make_node("Neg", ["u"], ["z"], name="neg16"),
             h.make_node("Sigmoid", ["v"], ["y"], name="sig"), _if_reading("if1", "u")]
    outs = [_vi("y", F32), _vi("z", F16), _vi("if1_o", F16)]
    m = _model(nodes, [_vi("x", F32), h.make_tensor_value_info("cond", T.BOOL, [])], outs,
               value_info=[_vi("t", F32), _vi("u", F16)])
    assert drop_round_trip_casts(m) == ["up"]
    assert "down" in {n.name for n in m.graph.node} and strict_problems(m) == []


def test_a_cast_to_fp32_that_is_not_a_round_trip_does_not_stop_the_search():
    nodes = [h.make_node("Shape", ["x"], ["s"], name="shape"), h.make_node("Cast", ["s"], ["sf"], name="sf32", to=F32),
             h.make_node("Relu", ["x"], ["t"], name="relu"),
             h.make_node("Cast", ["t"], ["u"], name="down", to=F16),
             h.make_node("Cast", ["u"], ["v"], name="up", to=F32),
             h.make_node("Sigmoid", ["v"], ["y"], name="sig")]
    m = _model(nodes, [_vi("x", F32)], [_vi("y", F32), h.make_tensor_value_info("sf", F32, [2])],
               value_info=[_vi("t", F32)])
    assert drop_round_trip_casts(m) == ["up", "down"]
    assert strict_problems(m) == []


def test_outputs_left_out_of_declared_outputs_keep_the_graph_declared_type():
    nodes = [h.make_node("Relu", ["x"], ["y"], name="relu16"), h.make_node("Neg", ["y"], ["z"], name="neg16")]
    m = _model(nodes, [_vi("x", F16)], [_vi("y", F32), _vi("z", F32)])
    # z is not in declared_outputs: it keeps the type the graph declares for it (fp32), so both get a cast back
    assert repair_float_types(m, set(), declared_outputs={"y": F32}) == ["y__wb_output_cast", "z__wb_output_cast"]
    assert [o.type.tensor_type.elem_type for o in m.graph.output] == [F32, F32]
    assert strict_problems(m) == []
