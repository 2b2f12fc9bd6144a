"""Tests for workbench/precision/validity.py (issue 23 mutation target ``validity``): the strict checks, the
checker-message -> node mapping, hiding If/Loop bodies from a converter, float shape math, the repair loop.

Graphs are built by hand, so which node is invalid, which tensors only compute shapes and which names a body
reads from outside are known before the function runs. Checker messages are produced by onnx itself on these
graphs (not copied from the code); the message formats ``failing_nodes`` reads are the ones onnx and ONNX
Runtime print (``node name: X)``, ``of node: name: X``, ``node X (``, ``Node (X)``).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from workbench.errors import WorkbenchError
from workbench.precision import validity as V

F32, F16 = T.FLOAT, T.FLOAT16


def _vi(name, t=F32, shape=(2, 3)):
    return h.make_tensor_value_info(name, t, list(shape))


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = h.make_graph(nodes, "g", list(inputs), list(outputs), initializer=list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def _run(m, feeds):
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


W16 = nh.from_array(np.ones((2, 3), np.float16), "w16")
W32 = nh.from_array(np.ones((2, 3), np.float32), "w32")
X = np.arange(6, dtype=np.float32).reshape(2, 3) - 2


def _clash(name="bad"):
    """Add(fp32 x, fp16 w16): a type clash both the checker and strict inference reject."""
    return _model([h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node("Add", ["r", "w16"], ["y"], name=name)],
                  [_vi("x")], [_vi("y")], [W16])


# ---------------------------------------------------------------------------------------------- strict_problems
def test_valid_model_has_no_problems():
    m = _model([h.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x")], [_vi("y")])
    assert V.strict_problems(m) == []


def test_type_clash_is_one_problem_naming_the_node():
    probs = V.strict_problems(_clash())
    assert len(probs) == 1  # the same message from strict inference is not repeated
    assert probs[0].startswith("onnx.checker: ") and "bad" in probs[0] and "\n" not in probs[0]
    assert V.failing_nodes(probs[0], _clash()) == ["bad"]


def test_problem_only_strict_inference_with_data_propagation_finds():
    """Reshape [6] to Shape(x) = [2, 3], output declared [3, 2]: the checker does not propagate the shape values."""
    nodes = [h.make_node("Shape", ["x"], ["s"], name="shape"), h.make_node("Reshape", ["z", "s"], ["y"], name="reshape")]
    m = _model(nodes, [_vi("x"), _vi("z", F32, (6,))], [_vi("y", F32, (3, 2))])
    onnx.checker.check_model(m, full_check=True)  # passes
    probs = V.strict_problems(m)
    assert len(probs) == 1 and probs[0].startswith("strict shape inference: ") and "(2) vs (3)" in probs[0]
    assert V.failing_nodes(probs[0], m) == ["reshape"]


def test_output_declared_with_another_type_is_a_problem_of_both_checks():
    m = _model([h.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x")], [_vi("y", F16)])
    probs = V.strict_problems(m)
    assert probs and probs[0].startswith("onnx.checker: ")


def test_long_messages_are_cut_to_600_characters():
    name = "n" * 1000
    probs = V.strict_problems(_clash(name))
    text = probs[0][len("onnx.checker: "):]
    assert len(text) == 600 and text.endswith("...") and text.startswith(text[:20])
    assert V._one_line(ValueError("a\n  b\tc"), 600) == "a b c"
    assert V._one_line(ValueError("x" * 600)) == "x" * 600  # exactly the limit: not cut
    assert V._one_line(ValueError("x" * 601)) == "x" * 597 + "..."
    assert V._one_line(ValueError("abcdefgh"), 6) == "abc..."


# ---------------------------------------------------------------------------------------------- failing_nodes
def _chain():
    """x -> src_a -> cast1 -> cast2 -> src_b -> y, plus src_c reading x."""
    nodes = [h.make_node("Relu", ["x"], ["a"], name="src_a"),
             h.make_node("Identity", ["a"], ["c1"], name="cast1"),
             h.make_node("Identity", ["c1"], ["c2"], name="cast2"),
             h.make_node("Neg", ["c2"], ["b"], name="src_b"),
             h.make_node("Relu", ["x"], ["c"], name="src_c"),
             h.make_node("Add", ["b", "c"], ["y"], name="src_add")]
    return _model(nodes, [_vi("x")], [_vi("y")])


@pytest.mark.parametrize("msg", ["(op_type:Neg, node name: src_b): bad", "Error of node: name: src_b type",
                                 "node src_b (Neg) failed", "Non-zero status code returned while running Node (src_b)"])
def test_failing_nodes_reads_every_message_format(msg):
    assert V.failing_nodes(msg, _chain()) == ["src_b"]


def test_failing_nodes_order_dedup_strip_and_unknown_names():
    msg = ("(op_type:Neg, node name: src_b): x; (op_type:Relu, node name: src_a): y; "
           "(op_type:Neg, node name: src_b): again; (op_type:Foo, node name: nowhere): z; node  src_c (x)")
    assert V.failing_nodes(msg, _chain()) == ["src_b", "src_a"]
    assert V.failing_nodes("(op_type:Relu, node name:  src_a ): y", _chain()) == ["src_a"]  # spaces stripped
    assert V.failing_nodes("no node here", _chain()) == []


def test_inserted_node_maps_to_nearest_source_nodes_consumers_first():
    cands = {"src_a", "src_b", "src_c", "src_add"}
    assert V.failing_nodes("(op_type:Identity, node name: cast1): x", _chain(), cands) == ["src_b"]
    assert V.failing_nodes("(op_type:Identity, node name: cast2): x", _chain(), cands) == ["src_b"]
    assert V.failing_nodes("(op_type:Neg, node name: src_b): x", _chain(), cands) == ["src_b"]  # a source node itself
    # src_add's consumers: none; its producers: src_b and src_c (sorted)
    assert V.failing_nodes("(op_type:Add, node name: src_add): x", _chain(), {"src_b", "src_c"}) == ["src_b", "src_c"]
    assert V.failing_nodes("(op_type:Relu, node name: src_a): x", _chain(), {"src_c"}) == []  # not reachable


def test_nearest_walks_at_most_four_steps_each_way():
    nodes = [h.make_node("Relu", ["x"], ["t0"], name="src_in")]
    for i in range(6):
        nodes.append(h.make_node("Identity", [f"t{i}"], [f"t{i + 1}"], name=f"ins{i}"))
    nodes.append(h.make_node("Neg", ["t6"], ["y"], name="src_out"))
    m = _model(nodes, [_vi("x")], [_vi("y")])
    c = {"src_in", "src_out"}
    assert V._nearest(m, "ins2", c) == ["src_out"]  # 4 steps forward: ins3, ins4, ins5, src_out
    assert V._nearest(m, "ins1", c) == ["src_in"]   # src_out is 5 steps away; src_in 2 back
    assert V._nearest(m, "ins0", c) == ["src_in"]
    assert V._nearest(m, "nowhere", c) == []
    nodes2 = [h.make_node("Relu", ["x"], ["t0"], name="src_in")]
    for i in range(10):
        nodes2.append(h.make_node("Identity", [f"t{i}"], [f"t{i + 1}"], name=f"ins{i}"))
    nodes2.append(h.make_node("Neg", ["t10"], ["y"], name="src_out"))
    m2 = _model(nodes2, [_vi("x")], [_vi("y")])
    assert V._nearest(m2, "ins4", c) == []  # 5 steps back, 6 forward
    assert V._nearest(m2, "ins3", c) == ["src_in"]
    assert V._nearest(m2, "ins3", c, depth=7) == ["src_out"]


def test_nearest_follows_branches_and_visits_nodes_once():
    """A diamond: ins -> (p, q) -> join -> src; with candidates only at depth 3 both paths lead to it."""
    nodes = [h.make_node("Relu", ["x"], ["i"], name="ins"), h.make_node("Identity", ["i"], ["p"], name="p"),
             h.make_node("Identity", ["i"], ["q"], name="q"), h.make_node("Add", ["p", "q"], ["j"], name="join"),
             h.make_node("Neg", ["j"], ["y"], name="src")]
    m = _model(nodes, [_vi("x")], [_vi("y")])
    assert V._nearest(m, "ins", {"src", "x_other"}) == ["src"]
    assert V._nearest(m, "ins", {"p", "q"}) == ["p", "q"]


def _if(name, then_nodes, then_out, else_nodes, else_out, outs=("o",)):
    tg = h.make_graph(then_nodes, f"{name}_then", [], [_vi(then_out)])
    eg = h.make_graph(else_nodes, f"{name}_else", [], [_vi(else_out)])
    return h.make_node("If", ["cond"], list(outs), name=name, then_branch=tg, else_branch=eg)


def _if_model():
    inner = _if("inner_if", [h.make_node("Neg", ["r"], ["ti"], name="deep_neg")], "ti",
                [h.make_node("Identity", ["r"], ["ei"], name="deep_id")], "ei", outs=("io",))
    outer = _if("outer_if", [inner, h.make_node("Relu", ["io"], ["t"], name="then_relu")], "t",
                [h.make_node("Sigmoid", ["w32"], ["e"], name="else_sig")], "e")
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"), outer, h.make_node("Add", ["o", "r"], ["y"], name="add")]
    return _model(nodes, [_vi("x"), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("y")], [W32])


def test_failing_nodes_maps_names_in_nested_bodies_to_the_main_graph_holder():
    m = _if_model()
    for inner in ("deep_neg", "deep_id", "inner_if", "then_relu", "else_sig"):
        assert V.failing_nodes(f"(op_type:X, node name: {inner}): bad", m) == ["outer_if"]


# ---------------------------------------------------------------------------------------------- hide / restore
def test_hide_and_restore_round_trip_is_exact_and_runs():
    m = _if_model()
    assert V.strict_problems(m) == []
    original = m.SerializeToString()
    hidden = V.hide_subgraphs(m)
    assert [(x.name, x.op_type, x.domain, x.n_inputs, x.outer) for x in hidden] == [
        ("outer_if", "If", "", 1, ["cond", "r", "w32"])]  # sorted outer-scope reads at any depth (inner If: cond)
    assert [a.name for a in hidden[0].graph_attrs] == ["else_branch", "then_branch"]  # helper sorts attributes
    n = m.graph.node[1]
    assert (n.op_type, n.domain, list(n.input), len(n.attribute)) == ("OpaqueIf", V.OPAQUE_DOMAIN,
                                                                      ["cond", "cond", "r", "w32"], 0)
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 17), (V.OPAQUE_DOMAIN, 1)]
    V.restore_subgraphs(m, hidden)
    m.graph.node[1].ClearField("domain")  # restored as an explicit "" (the same default domain)
    assert m.SerializeToString() == original
    for c in (True, False):
        (y,) = _run(m, {"x": X, "cond": np.array(c)})
        expect = np.maximum(-np.maximum(X, 0), 0) if c else 1 / (1 + np.exp(-1.0)) * np.ones_like(X)
        np.testing.assert_allclose(y, expect + np.maximum(X, 0), rtol=1e-6)


def test_hide_keeps_other_attributes_only_named_nodes_and_adds_the_domain_once():
    m = _if_model()
    m.graph.node.append(_if("second_if", [h.make_node("Neg", ["y"], ["t2"], name="n2")], "t2",
                            [h.make_node("Identity", ["y"], ["e2"], name="i2")], "e2", outs=("o2",)))
    m.graph.node[1].attribute.append(h.make_attribute("keep_me", 7))
    assert V.hide_subgraphs(m, set()) == []
    assert len(m.opset_import) == 1
    hidden = V.hide_subgraphs(m, {"outer_if", "second_if"})
    assert [x.name for x in hidden] == ["outer_if", "second_if"]
    assert [(a.name, a.i) for a in m.graph.node[1].attribute] == [("keep_me", 7)]
    assert sum(o.domain == V.OPAQUE_DOMAIN for o in m.opset_import) == 1
    m2 = _if_model()
    m2.opset_import.append(h.make_opsetid(V.OPAQUE_DOMAIN, 1))
    V.hide_subgraphs(m2, {"outer_if"})
    assert sum(o.domain == V.OPAQUE_DOMAIN for o in m2.opset_import) == 1
    V.restore_subgraphs(m2, V.hide_subgraphs(_if_model()))  # records of another model: names match, domain not
    assert [o.domain for o in m2.opset_import] == [""]


def test_restore_makes_bodies_read_the_renamed_outer_inputs():
    """A converter put a Cast in front of the opaque node's extra input r (renamed r_fp32): the bodies read it;
    a body output that is the outer tensor itself gets an Identity so the output name stays local."""
    tg = h.make_graph([], "then", [], [_vi("r")])  # the then branch returns the outer tensor r itself
    eg = h.make_graph([h.make_node("Neg", ["r"], ["e"], name="e_neg")], "else", [], [_vi("e")])
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("If", ["cond"], ["y"], name="if", then_branch=tg, else_branch=eg)]
    m = _model(nodes, [_vi("x"), h.make_tensor_value_info("cond", T.BOOL, [])], [_vi("y")])
    hidden = V.hide_subgraphs(m)
    assert hidden[0].outer == ["r"]
    opaque = m.graph.node[1]
    m.graph.node.insert(1, h.make_node("Identity", ["r"], ["r_fp32"], name="cast_like"))
    assert list(opaque.input) == ["cond", "r"]
    opaque.input[1] = "r_fp32"
    V.restore_subgraphs(m, hidden)
    n = m.graph.node[2]
    assert (n.op_type, n.domain, list(n.input)) == ("If", "", ["cond"])
    then_b, else_b = (next(a.g for a in n.attribute if a.name == b) for b in ("then_branch", "else_branch"))
    assert list(else_b.node[0].input) == ["r_fp32"]
    assert [(x.op_type, list(x.input), list(x.output)) for x in then_b.node] == [("Identity", ["r_fp32"], ["r__wb_out"])]
    assert [o.name for o in then_b.output] == ["r__wb_out"] and then_b.node[0].name == "r__wb_out_identity"
    assert V.strict_problems(m) == []
    for c in (True, False):
        np.testing.assert_allclose(_run(m, {"x": X, "cond": np.array(c)})[0], (1 if c else -1) * np.maximum(X, 0))


def test_restore_renames_inside_nested_bodies_and_only_renamed_names():
    m = _if_model()
    hidden = V.hide_subgraphs(m)
    assert list(m.graph.node[1].input) == ["cond", "cond", "r", "w32"]
    m.graph.node[1].input[2] = "r_new"  # r renamed, w32 not
    V.restore_subgraphs(m, hidden)
    outer = m.graph.node[1]
    br = {a.name: a.g for a in outer.attribute}
    inner = br["then_branch"].node[0]
    assert [list(a.g.node[0].input) for a in inner.attribute] == [["r_new"], ["r_new"]]
    assert list(br["else_branch"].node[0].input) == ["w32"]


def test_loop_bodies_with_graphs_attribute_type_are_hidden():
    body = h.make_graph([h.make_node("Identity", ["c_in"], ["c_out"], name="b_id"),
                         h.make_node("Add", ["v_in", "w32"], ["v_out"], name="b_add")], "body",
                        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c_in", T.BOOL, []),
                         _vi("v_in")], [h.make_tensor_value_info("c_out", T.BOOL, []), _vi("v_out")])
    nodes = [h.make_node("Loop", ["n", "", "x"], ["y"], name="loop", body=body)]
    m = _model(nodes, [_vi("x"), h.make_tensor_value_info("n", T.INT64, [])], [_vi("y")], [W32])
    hidden = V.hide_subgraphs(m)
    assert hidden[0].outer == ["w32"] and hidden[0].n_inputs == 3
    assert list(m.graph.node[0].input) == ["n", "", "x", "w32"]
    V.restore_subgraphs(m, hidden)
    assert list(m.graph.node[0].input) == ["n", "", "x"] and V.strict_problems(m) == []
    (y,) = _run(m, {"x": X, "n": np.array(3, np.int64)})
    np.testing.assert_allclose(y, X + 3)


# ---------------------------------------------------------------------------------------------- shape math
def _shape_math():
    nodes = [h.make_node("Shape", ["x"], ["shp"], name="shape"),
             h.make_node("Cast", ["shp"], ["shp_f"], name="to_float", to=F32),
             h.make_node("Div", ["shp_f", "two"], ["half_f"], name="div"),
             h.make_node("Floor", ["half_f"], ["half_fl"], name="floor"),
             h.make_node("Cast", ["half_fl"], ["half"], name="to_int", to=T.INT64),
             h.make_node("Concat", ["half", "minus1"], ["newshape"], name="concat", axis=0),
             h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("Reshape", ["r", "newshape"], ["y"], name="reshape")]
    inits = [nh.from_array(np.array([2.0, 1.0], np.float32), "two"), nh.from_array(np.array([-1], np.int64), "minus1")]
    return _model(nodes, [_vi("x", F32, (8, 2))], [h.make_tensor_value_info("y", F32, None)], inits)


COMPUTES = "computes a shape/index/size value (float math between Shape and a shape input)"
CASTS = "casts a shape/index value"


def test_shape_math_nodes_by_hand():
    assert V.shape_compute_nodes(_shape_math()) == {"to_float": CASTS, "div": COMPUTES, "floor": COMPUTES,
                                                    "to_int": CASTS, "concat": COMPUTES}


def test_a_value_that_is_also_a_graph_output_or_unused_or_read_by_a_body_is_not_shape_math():
    m = _shape_math()
    m.graph.output.append(h.make_tensor_value_info("half_fl", F32, None))
    assert set(V.shape_compute_nodes(m)) == {"to_int", "concat"}
    m = _shape_math()
    m.graph.node.append(h.make_node("Neg", ["half_f"], ["unused"], name="dangling"))  # its output: no reader
    assert set(V.shape_compute_nodes(m)) == {"floor", "to_int", "concat"}
    m = _shape_math()
    tg = h.make_graph([h.make_node("Identity", ["half_fl"], ["t"], name="t_id")], "then", [], [_vi("t", F32, (2,))])
    eg = h.make_graph([h.make_node("Identity", ["two"], ["e"], name="e_id")], "else", [], [_vi("e", F32, (2,))])
    m.graph.node.append(h.make_node("If", ["c"], ["o"], name="if", then_branch=tg, else_branch=eg))
    assert set(V.shape_compute_nodes(m)) == {"to_int", "concat"}


def test_integer_cast_reader_makes_float_math_shape_math_but_a_float_cast_does_not():
    nodes = [h.make_node("Shape", ["x"], ["s"], name="shape"), h.make_node("Cast", ["s"], ["sf"], name="tof", to=F32),
             h.make_node("Mul", ["sf", "sf"], ["sq"], name="mul"),
             h.make_node("Cast", ["sq"], ["y"], name="to_i", to=T.INT32)]
    m = _model(nodes, [_vi("x")], [h.make_tensor_value_info("y", T.INT32, None)])
    assert V.shape_compute_nodes(m) == {"tof": CASTS, "mul": COMPUTES}  # to_i writes a graph output
    nodes[3] = h.make_node("Cast", ["sq"], ["y"], name="to_d", to=T.DOUBLE)
    m = _model(nodes, [_vi("x")], [h.make_tensor_value_info("y", T.DOUBLE, None)])
    assert V.shape_compute_nodes(m) == {}
    nodes[3] = h.make_node("Cast", ["sq"], ["y"], name="to_b", to=T.BOOL)
    m = _model(nodes, [_vi("x")], [h.make_tensor_value_info("y", T.BOOL, None)])
    assert V.shape_compute_nodes(m) == {"tof": CASTS, "mul": COMPUTES}


def test_every_reader_must_be_a_shape_use_and_every_output_shape_only():
    m = _shape_math()
    m.graph.node.insert(7, h.make_node("Add", ["r", "half_fl"], ["r2"], name="add"))  # a data use of half_fl
    m.graph.node[-1].input[0] = "r2"
    assert set(V.shape_compute_nodes(m)) == {"to_int", "concat"}
    # Split with two outputs: one feeds a shape input, the other data: not shape math
    nodes = [h.make_node("Shape", ["x"], ["s"], name="shape"), h.make_node("Cast", ["s"], ["sf"], name="tof", to=F32),
             h.make_node("Split", ["sf"], ["s0", "s1"], name="split", axis=0, num_outputs=2),
             h.make_node("Cast", ["s0"], ["s0i"], name="s0i", to=T.INT64),
             h.make_node("Neg", ["s1"], ["y2"], name="neg"),
             h.make_node("Reshape", ["x", "s0i"], ["y"], name="reshape")]
    m2 = _model(nodes, [_vi("x", F32, (6, 1))], [h.make_tensor_value_info("y", F32, None),
                                                  h.make_tensor_value_info("y2", F32, None)], opset=18)
    assert V.shape_compute_nodes(m2) == {"s0i": CASTS}


def test_node_without_outputs_and_empty_output_names_are_skipped():
    m = _shape_math()
    tk = h.make_node("TopK", ["r", "k"], ["vals", ""], name="topk")  # indices output left empty
    m.graph.node.insert(7, tk)
    m.graph.initializer.append(nh.from_array(np.array([1], np.int64), "k"))
    m.graph.output.append(h.make_tensor_value_info("vals", F32, None))
    assert set(V.shape_compute_nodes(m)) == {"to_float", "div", "floor", "to_int", "concat"}
    nodes = [h.make_node("Shape", ["x"], ["s"], name="shape"), h.make_node("Cast", ["s"], ["sf"], name="tof", to=F32),
             h.make_node("Dropout", ["sf"], ["d", ""], name="drop"),
             h.make_node("Cast", ["d"], ["di"], name="toi", to=T.INT64),
             h.make_node("Reshape", ["x", "di"], ["y"], name="reshape")]
    m2 = _model(nodes, [_vi("x")], [h.make_tensor_value_info("y", F32, None)])
    assert V.shape_compute_nodes(m2) == {"tof": CASTS, "drop": COMPUTES, "toi": CASTS}


# ---------------------------------------------------------------------------------------------- repair loop
def _converter(bad_until_kept: dict[str, str]):
    """convert(extra): a model whose nodes named in ``bad_until_kept`` clash (fp16 weight) until kept."""
    calls: list[dict] = []

    def convert(extra):
        calls.append(extra)
        nodes = [h.make_node("Relu", ["x"], ["r0"], name="relu")]
        prev = "r0"
        for i, name in enumerate(bad_until_kept):
            nodes.append(h.make_node("Add", [prev, "w32" if name in extra else "w16"], [f"a{i}"], name=name))
            prev = f"a{i}"
        nodes.append(h.make_node("Identity", [prev], ["y"], name="out"))
        extra["scribble"] = "the converter may write into its argument"
        return _model(nodes, [_vi("x")], [_vi("y")], [W16, W32])
    return convert, calls


def test_repair_loop_keeps_the_named_nodes_until_valid():
    convert, calls = _converter({"add_a": "", "add_b": ""})
    proto, log = V.repair_loop(convert, "fp16")
    assert V.strict_problems(proto) == []
    assert log.rounds == len(calls) == 3  # the checker names the first clash only: one node per round
    assert calls[0] == {"scribble": "the converter may write into its argument"}  # got a copy, not the state
    assert set(log.kept) == {"add_a", "add_b"}
    assert all(v.startswith("the fp16 graph failed the strict check here: onnx.checker: ") for v in log.kept.values())
    assert len(log.problems) == 2 and "add_a" in log.problems[0] and "add_b" in log.problems[1]
    assert log.to_json() == {"rounds": 3, "kept": log.kept, "problems": log.problems}
    js = log.to_json()
    js["kept"]["x"] = "y"
    js["problems"].append("z")
    assert "x" not in log.kept and len(log.problems) == 2


def test_repair_loop_valid_at_once():
    convert, calls = _converter({})
    proto, log = V.repair_loop(convert, "bf16")
    assert log.to_json() == {"rounds": 1, "kept": {}, "problems": []}


def test_repair_loop_with_candidates_maps_inserted_nodes():
    def convert(extra):  # ins_cast was inserted by the recipe; keeping its consumer "out" removes the clash
        w = "w32" if "out" in extra else "w16"
        nodes = [h.make_node("Relu", ["x"], ["r0"], name="relu"), h.make_node("Add", ["r0", w], ["a"], name="ins_cast"),
                 h.make_node("Identity", ["a"], ["y"], name="out")]
        return _model(nodes, [_vi("x")], [_vi("y")], [W16, W32])
    proto, log = V.repair_loop(convert, "int8", candidates={"out", "relu"})
    assert list(log.kept) == ["out"] and log.rounds == 2
    with pytest.raises(WorkbenchError, match="could not produce"):  # without candidates: ins_cast kept, no help
        V.repair_loop(lambda extra: convert({}), "int8")


def test_repair_loop_gives_up_when_no_new_node_is_named():
    def convert(extra):
        return _clash("stubborn")  # keeping it changes nothing
    with pytest.raises(WorkbenchError, match="could not produce a valid graph") as e:
        V.repair_loop(convert, "fp16")
    assert "stubborn" in str(e.value)

    def nameless(extra):
        m = _clash()
        m.graph.output[0].type.tensor_type.elem_type = T.INT64  # an output problem naming no node
        m.graph.node[1].input[1] = "w32"
        return m
    with pytest.raises(WorkbenchError, match="could not produce a valid graph"):
        V.repair_loop(nameless, "fp16")


def test_repair_loop_stops_after_max_rounds():
    names = {f"add_{i}": "" for i in range(5)}
    convert, calls = _converter(names)

    def one_at_a_time(extra):  # the checker names only the first clash: one new node per round
        return convert(extra)
    with pytest.raises(WorkbenchError):
        V.repair_loop(one_at_a_time, "fp16", max_rounds=3)
    assert len(calls) == 3
    convert2, calls2 = _converter(names)
    proto, log = V.repair_loop(convert2, "fp16", max_rounds=6)
    assert log.rounds == 6 and len(log.kept) == 5 and V.strict_problems(proto) == []
    convert3, calls3 = _converter(names)
    with pytest.raises(WorkbenchError):
        V.repair_loop(convert3, "fp16", max_rounds=5)
    assert len(calls3) == 5


# ---------------------------------------------------------------------------------------------- second round
def test_an_unknown_name_before_a_known_one_does_not_hide_it():
    msg = "(op_type:Foo, node name: nowhere): z; (op_type:Neg, node name: src_b): x"
    assert V.failing_nodes(msg, _chain()) == ["src_b"]


def test_restore_leaves_a_node_that_was_not_hidden_alone():
    m = _if_model()
    hidden = V.hide_subgraphs(_if_model())  # records of another copy: same names, but m's If is not opaque
    before = m.SerializeToString()
    V.restore_subgraphs(m, hidden)
    assert m.SerializeToString() == before


def test_custom_node_with_a_graphs_attribute_round_trips_with_renames():
    """A GRAPHS-typed attribute (a list of bodies, as custom ops may hold) is hidden and restored like a GRAPH
    one, and every body in the list reads the renamed outer input."""
    bodies = [h.make_graph([h.make_node("Neg", ["r"], [f"o{i}"], name=f"b{i}_neg")], f"b{i}", [], [_vi(f"o{i}")])
              for i in range(2)]
    node = h.make_node("MultiBody", ["x"], ["y"], name="multi", domain="my.ops")
    node.attribute.append(h.make_attribute("bodies", bodies))
    m = _model([h.make_node("Relu", ["x"], ["r"], name="relu"), node], [_vi("x")], [_vi("y")])
    m.opset_import.append(h.make_opsetid("my.ops", 1))
    hidden = V.hide_subgraphs(m)
    assert hidden[0].outer == ["r"] and len(m.graph.node[1].attribute) == 0
    m.graph.node[1].input[1] = "r_fp32"
    V.restore_subgraphs(m, hidden)
    n = m.graph.node[1]
    assert (n.op_type, n.domain, list(n.input)) == ("MultiBody", "my.ops", ["x"])
    assert [list(g.node[0].input) for g in n.attribute[0].graphs] == [["r_fp32"], ["r_fp32"]]


def test_reads_of_every_body_holder_count():
    """Two If nodes read two different shape-math tensors from their bodies: neither producer is shape math."""
    m = _shape_math()
    for name, t in (("if1", "half_fl"), ("if2", "half_f")):
        tg = h.make_graph([h.make_node("Identity", [t], [f"{name}_t"], name=f"{name}_tid")], "then", [],
                          [_vi(f"{name}_t", F32, (2,))])
        eg = h.make_graph([h.make_node("Identity", ["two"], [f"{name}_e"], name=f"{name}_eid")], "else", [],
                          [_vi(f"{name}_e", F32, (2,))])
        m.graph.node.append(h.make_node("If", ["c"], [f"{name}_o"], name=name, then_branch=tg, else_branch=eg))
    assert set(V.shape_compute_nodes(m)) == {"to_int", "concat"}


def test_node_without_outputs_does_not_stop_the_scan():
    m = _shape_math()
    m.graph.node.append(h.make_node("Sink", ["r"], [], name="sink", domain="my.ops"))  # visited first (reversed)
    assert set(V.shape_compute_nodes(m)) == {"to_float", "div", "floor", "to_int", "concat"}


def test_an_empty_first_output_does_not_make_the_node_shape_math():
    nodes = [h.make_node("Shape", ["x"], ["s"], name="shape"), h.make_node("Cast", ["s"], ["sf"], name="tof", to=F32),
             h.make_node("TwoOut", ["sf"], ["", "o2"], name="two", domain="my.ops"),
             h.make_node("Relu", ["o2"], ["y"], name="relu")]
    m = _model(nodes, [_vi("x")], [h.make_tensor_value_info("y", F32, None)])
    assert V.shape_compute_nodes(m) == {}


def test_a_shape_use_first_and_a_data_use_after_is_not_shape_math():
    nodes = [h.make_node("Shape", ["x"], ["s"], name="shape"), h.make_node("Cast", ["s"], ["sf"], name="tof", to=F32),
             h.make_node("Floor", ["sf"], ["fl"], name="floor"),
             h.make_node("Cast", ["fl"], ["fli"], name="toi", to=T.INT64),
             h.make_node("Tile", ["x", "fli"], ["t"], name="tile"),   # shape use of fli ...
             h.make_node("Cast", ["fli"], ["back"], name="back", to=F32),
             h.make_node("Add", ["back", "sf"], ["y2"], name="add")]  # ... and a data use (through a float Cast)
    m = _model(nodes, [_vi("x")], [h.make_tensor_value_info("t", F32, None), h.make_tensor_value_info("y2", F32, None)])
    # floor feeds only an integer Cast (a shape use by itself); fli is also read as data, so toi is not shape math
    assert V.shape_compute_nodes(m) == {"floor": COMPUTES}


LONG = "reshape_" + "r" * 100


def _two_problem_model(fixed: bool):
    """Output y1 declared without a shape (the checker stops there) and y2 = Reshape(z, Shape(x)) declared [3, 2]
    while Shape(x) = [2, 3] (only strict inference with data propagation sees it): two different problems."""
    nodes = [h.make_node("Shape", ["x"], ["s"], name="shape"), h.make_node("Reshape", ["z", "s"], ["y2"], name=LONG),
             h.make_node("Relu", ["x"], ["y1"], name="relu")]
    y1 = _vi("y1") if fixed else h.make_tensor_value_info("y1", F32, None)
    return _model(nodes, [_vi("x"), _vi("z", F32, (6,))], [y1, _vi("y2", F32, (2, 3) if fixed else (3, 2))])


def test_two_different_problems_are_both_reported_and_joined_in_the_log():
    probs = V.strict_problems(_two_problem_model(False))
    assert len(probs) == 2 and probs[0].startswith("onnx.checker: ") and probs[1].startswith("strict shape inference:")
    proto, log = V.repair_loop(lambda extra: _two_problem_model(LONG in extra), "fp16")
    assert log.problems == [f"{probs[0]} | {probs[1]}"]
    reason = log.kept[LONG]
    text = f"{probs[0]} | {probs[1]}"
    assert len(text) > 300 and reason == "the fp16 graph failed the strict check here: " + text[:300]


def test_repair_loop_default_is_twelve_rounds():
    convert, calls = _converter({f"add_{i}": "" for i in range(13)})
    with pytest.raises(WorkbenchError):
        V.repair_loop(convert, "fp16")
    assert len(calls) == 12
