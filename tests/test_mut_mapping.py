"""Mapping backend layers to ONNX nodes (workbench.measure.mapping), rule by rule, on small real graphs.

Every graph is built with onnx.helper and is a valid ONNX model (checked with onnx.checker where it runs);
the expected node sets follow from the rules in mapping.py's module docstring, worked out by hand on each
graph's drawing in the comments. TensorRT names are format tests: literal strings in the formats trtexec /
TREx print (no TensorRT run).
"""
from __future__ import annotations

import onnx
import pandas as pd
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from workbench.measure.mapping import (PLUMBING_OPS, UNMAPPED, GraphIndex, name_nodes, ort_fused_nodes,
                                       ort_nchwc_sum, ort_nchwc_tensor, parse_trt_metadata, split_trt_layer_name,
                                       spread, strip_ort_suffix, strip_trt_profile_suffix, trt_layer_nodes)


def _vi(name, shape=(2,), t=T.FLOAT):
    return h.make_tensor_value_info(name, t, list(shape))


def _model(nodes, inputs=("x",), outputs=("y",), inits=(), opset=13):
    g = h.make_graph(nodes, "g", [_vi(i) for i in inputs], [_vi(o) for o in outputs], initializer=list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)], ir_version=8)


def _if(cond, out, then_nodes, else_nodes, name=""):
    then_g = h.make_graph(then_nodes, "then", [], [_vi(then_nodes[-1].output[0])])
    else_g = h.make_graph(else_nodes, "else", [], [_vi(else_nodes[-1].output[0])])
    return h.make_node("If", [cond], [out], name=name, then_branch=then_g, else_branch=else_g)


# ---------------------------------------------------------------------------------------------- names
def test_name_nodes_names_unnamed_nodes_by_op_and_index_and_resolves_clashes():
    # node 0 (Relu, unnamed) would be "Relu_0", which nodes 1 and 2 already use ("Relu_0", "Relu_0_")
    nodes = [h.make_node("Relu", ["x"], ["a"]), h.make_node("Neg", ["a"], ["b"], name="Relu_0"),
             h.make_node("Abs", ["b"], ["c"], name="Relu_0_"), h.make_node("Neg", ["c"], ["y"])]
    p = _model(nodes)
    out = name_nodes(p)
    assert out is p  # in place
    assert [n.name for n in p.graph.node] == ["Relu_0__", "Relu_0", "Relu_0_", "Neg_3"]
    onnx.checker.check_model(p)


def test_name_nodes_prefixes_subgraph_nodes_with_their_parent():
    # the If is unnamed (index 1 -> "If_1"); its branches' unnamed nodes get "If_1/<op>_<index in branch>";
    # a named node inside keeps its name; an If nested in a branch prefixes its own children with its name
    inner = _if("c", "t2", [h.make_node("Abs", ["x"], ["t3"])], [h.make_node("Neg", ["x"], ["t4"], name="keep")])
    nodes = [h.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="sum"),
             h.make_node("Greater", ["s", "x"], ["c0"], name="gt"),
             h.make_node("Identity", ["c0"], ["c"], name="cond")]
    nodes.insert(1, _if("c", "y", [h.make_node("Relu", ["x"], ["t1"]), inner],
                        [h.make_node("Sigmoid", ["x"], ["t5"])]))
    p = name_nodes(_model(nodes))
    top = p.graph.node[1]
    assert top.name == "If_1"
    att = {a.name: a.g for a in top.attribute}
    then_g, else_g = att["then_branch"], att["else_branch"]
    assert [n.name for n in then_g.node] == ["If_1/Relu_0", "If_1/If_1"]
    assert [n.name for n in else_g.node] == ["If_1/Sigmoid_0"]
    nested = then_g.node[1]
    natt = {a.name: a.g for a in nested.attribute}
    assert [n.name for n in natt["then_branch"].node] == ["If_1/If_1/Abs_0"]
    assert [n.name for n in natt["else_branch"].node] == ["keep"]


def test_name_nodes_walks_graph_list_attributes():
    # a GRAPHS attribute (list of bodies) on a custom-domain node: each body is named with the parent prefix
    b1 = h.make_graph([h.make_node("Relu", ["x"], ["u"])], "b1", [], [_vi("u")])
    b2 = h.make_graph([h.make_node("Neg", ["x"], ["v"]), h.make_node("Abs", ["v"], ["w"])], "b2", [], [_vi("w")])
    n = h.make_node("Multi", ["x"], ["y"], domain="custom", name="multi", bodies=[b1, b2])
    assert n.attribute[0].type == onnx.AttributeProto.GRAPHS
    p = name_nodes(_model([n]))
    g1, g2 = p.graph.node[0].attribute[0].graphs
    assert [x.name for x in g1.node] == ["multi/Relu_0"]
    assert [x.name for x in g2.node] == ["multi/Neg_0", "multi/Abs_1"]
    ix = GraphIndex.of(p)
    assert ix.parent == {"multi/Relu_0": "multi", "multi/Neg_0": "multi", "multi/Abs_1": "multi"}
    assert ix.order == {"multi": 0, "multi/Relu_0": 1, "multi/Neg_0": 2, "multi/Abs_1": 3}


# ---------------------------------------------------------------------------------------- GraphIndex
def _plumbed():
    """x -> relu -> Q -> DQ -> cast -> neg -> out_cast -> y ; weights w -> DQ_w feeding mm (constant)."""
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"], name="q"),
             h.make_node("DequantizeLinear", ["rq", "s", "z"], ["rd"], name="dq"),
             h.make_node("Cast", ["rd"], ["rc"], name="cast", to=T.FLOAT),
             h.make_node("Neg", ["rc"], ["n"], name="neg"),
             h.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"], name="dq_w"),
             h.make_node("Add", ["n", "w"], ["a"], name="add"),
             h.make_node("Cast", ["a"], ["y"], name="out_cast", to=T.FLOAT)]
    inits = [h.make_tensor("s", T.FLOAT, [], [0.1]), h.make_tensor("z", T.INT8, [], [0]),
             h.make_tensor("wq", T.INT8, [2], [1, 2])]
    return _model(nodes, inits=inits)


def test_graph_index_facts_of_a_plumbed_graph():
    p = _plumbed()
    onnx.checker.check_model(p, full_check=True)
    ix = GraphIndex.of(p)
    names = ["relu", "q", "dq", "cast", "neg", "dq_w", "add", "out_cast"]
    assert ix.order == {n: i for i, n in enumerate(names)}
    assert ix.op_type["dq_w"] == "DequantizeLinear" and ix.parent == {}
    assert ix.producer == {"r": "relu", "rq": "q", "rd": "dq", "rc": "cast", "n": "neg", "w": "dq_w", "a": "add",
                           "y": "out_cast"}
    assert ix.consumers["s"] == ["q", "dq", "dq_w"] and ix.consumers["rc"] == ["neg"] and "y" not in ix.consumers
    assert ix.inputs["add"] == ["n", "w"] and ix.outputs["q"] == ["rq"]
    assert ix.graph_outputs == {"y"}
    # nodes fed (transitively) by the graph input x; dq_w reads only initializers
    assert ix.dynamic == {"relu", "q", "dq", "cast", "neg", "add", "out_cast"}
    assert "relu" in ix and "nope" not in ix
    assert [ix.is_plumbing(n) for n in names] == [False, True, True, True, False, True, False, True]
    assert ix.is_plumbing("nope") is False
    assert PLUMBING_OPS == {"Cast", "QuantizeLinear", "DequantizeLinear", "CastLike"}


def test_canonical_follows_plumbing_both_ways_and_falls_back():
    ix = GraphIndex.of(_plumbed())
    assert ix.canonical("relu") == "relu"  # not plumbing: itself
    assert ix.canonical("q") == "relu"  # Q -> producer of what it quantizes
    assert ix.canonical("dq") == "neg"  # DQ -> first non-plumbing consumer, through the Cast
    assert ix.canonical("cast") == "neg"
    assert ix.canonical("dq_w") == "add"  # weight DQ: consumer
    assert ix.canonical("out_cast") == "add"  # graph output: no consumer -> producer
    assert ix.canonical("ghost") == "ghost"  # unknown names stay themselves
    assert ix.canonical("q") == "relu"  # cached answer is the same


def test_quantize_of_a_graph_input_falls_back_downstream_and_lone_plumbing_is_itself():
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
             h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
             h.make_node("Sigmoid", ["xd"], ["y"], name="sig")]
    ix = GraphIndex.of(_model(nodes, inits=[h.make_tensor("s", T.FLOAT, [], [0.1]), h.make_tensor("z", T.INT8, [], [0])]))
    assert ix.canonical("q_in") == "sig"  # no producer: downstream, through the DQ
    only = GraphIndex.of(_model([h.make_node("Cast", ["x"], ["c"], name="c1", to=T.FLOAT),
                                 h.make_node("CastLike", ["c", "x"], ["y"], name="c2")]))
    assert only.is_plumbing("c2")
    assert only.canonical("c1") == "c1" and only.canonical("c2") == "c2"  # nothing but plumbing around


def test_follow_is_breadth_first_over_plumbing_chains():
    # cast0's output feeds cast1 (plumbing, first in graph order) and relu_b; cast1 feeds relu_a.
    # Breadth first, relu_b (distance 1) wins over relu_a (distance 2) although cast1 comes first.
    nodes = [h.make_node("Cast", ["x"], ["c0"], name="cast0", to=T.FLOAT),
             h.make_node("Cast", ["c0"], ["c1"], name="cast1", to=T.FLOAT),
             h.make_node("Relu", ["c1"], ["ra"], name="relu_a"),
             h.make_node("Relu", ["c0"], ["rb"], name="relu_b"),
             h.make_node("Add", ["ra", "rb"], ["y"], name="add")]
    ix = GraphIndex.of(_model(nodes))
    assert ix.canonical("cast0") == "relu_b"
    assert ix.canonical("cast1") == "relu_a"
    # upstream: a Q behind two casts finds the producer two hops up
    nodes = [h.make_node("Abs", ["x"], ["a"], name="abs"),
             h.make_node("Cast", ["a"], ["b"], name="k1", to=T.FLOAT),
             h.make_node("Cast", ["b"], ["c"], name="k2", to=T.FLOAT),
             h.make_node("QuantizeLinear", ["c", "s"], ["y"], name="qq")]
    up = GraphIndex.of(_model(nodes, outputs=(), inits=[h.make_tensor("s", T.FLOAT, [], [0.5])]))
    assert up.canonical("qq") == "abs"
    assert up.canonical("k2") == "abs"  # Cast: downstream is all plumbing without an end -> upstream


def test_diamond_of_plumbing_reaches_the_consumer():
    # cast_a -> (cast_b, cast_c) -> cast_d -> relu: two plumbing paths meet again before the real consumer
    nodes = [h.make_node("Cast", ["x"], ["a"], name="cast_a", to=T.FLOAT),
             h.make_node("Cast", ["a"], ["b"], name="cast_b", to=T.FLOAT),
             h.make_node("Cast", ["a"], ["c"], name="cast_c", to=T.FLOAT),
             h.make_node("CastLike", ["b", "c"], ["d"], name="cast_d"),
             h.make_node("Relu", ["d"], ["y"], name="relu")]
    ix = GraphIndex.of(_model(nodes))
    assert ix.canonical("cast_a") == "relu"


def test_subgraph_nodes_lift_to_their_top_level_parent():
    nodes = [h.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="sum"),
             h.make_node("Greater", ["s", "zero"], ["c"], name="gt"),
             _if("c", "y", [h.make_node("Cast", ["x"], ["t1"], name="then_cast", to=T.FLOAT),
                            _if("c", "t2", [h.make_node("Abs", ["x"], ["t3"], name="deep")],
                                [h.make_node("Neg", ["x"], ["t4"], name="deep_else")], name="inner")],
                 [h.make_node("Sigmoid", ["x"], ["t5"], name="else_sig")], name="branch")]
    p = _model(nodes, inits=[h.make_tensor("zero", T.FLOAT, [], [0.0])])
    ix = GraphIndex.of(p)
    assert ix.parent == {"then_cast": "branch", "inner": "branch", "deep": "branch", "deep_else": "branch",
                         "else_sig": "branch"}
    # depth first, bodies in attribute order (onnx.helper sorts attributes by name: else_branch first)
    assert [n for n, _ in sorted(ix.order.items(), key=lambda kv: kv[1])] == [
        "sum", "gt", "branch", "else_sig", "then_cast", "inner", "deep_else", "deep"]
    # subgraph tensors are not main-graph producers / consumers
    assert set(ix.producer) == {"s", "c", "y"} and "t3" not in ix.producer and "x" in ix.consumers
    assert set(ix.inputs) == {"sum", "gt", "branch"}
    assert ix.canonical("deep") == "branch" and ix.canonical("then_cast") == "branch"  # a plumbing child too
    assert ix.dynamic == {"sum", "gt", "branch"}


def test_dynamic_skips_constant_subgraphs_and_initializer_inputs():
    # "w" is both a graph input and an initializer (IR < 4 style): it is a constant, not live data.
    # If nodes are dynamic even when their condition is constant (their bodies read outer tensors).
    nodes = [h.make_node("Neg", ["w"], ["wn"], name="wneg"),
             h.make_node("Add", ["x", "wn"], ["a"], name="add"),
             h.make_node("Constant", [], ["k"], name="const", value=h.make_tensor("kv", T.BOOL, [], [True])),
             _if("k", "b", [h.make_node("Identity", ["a"], ["t1"], name="ti")],
                 [h.make_node("Neg", ["a"], ["t2"], name="tn")], name="iff"),
             h.make_node("Mul", ["b", "wn"], ["y"], name="mul"),
             h.make_node("Relu", ["", "x"][1:], ["unused"], name="relu_x")]
    g = h.make_graph(nodes, "g", [_vi("x"), _vi("w")], [_vi("y")],
                     initializer=[h.make_tensor("w", T.FLOAT, [2], [1.0, 2.0])])
    ix = GraphIndex.of(h.make_model(g, opset_imports=[h.make_opsetid("", 13)]))
    assert ix.dynamic == {"add", "iff", "mul", "relu_x"}
    # an optional input left empty ("") is no tensor: no consumer / producer entry for ""
    opt = GraphIndex.of(_model([h.make_node("Clip", ["x", "", "mx"], ["y", ""][:1], name="clip")],
                               inits=[h.make_tensor("mx", T.FLOAT, [], [6.0])]))
    assert "" not in opt.consumers and set(opt.consumers) == {"x", "mx"} and opt.inputs["clip"] == ["x", "", "mx"]
    two = GraphIndex.of(_model([h.make_node("Split", ["x"], ["p", ""], name="split", num_outputs=2),
                                h.make_node("Neg", ["p"], ["y"], name="n")], opset=18))
    assert "" not in two.producer and two.producer == {"p": "split", "y": "n"}


def test_anchor_is_the_first_non_plumbing_node_in_graph_order():
    ix = GraphIndex.of(_plumbed())
    assert ix.anchor(["add", "neg"]) == "neg"  # graph order, not list order
    assert ix.anchor(["cast", "neg", "q"]) == "neg"
    assert ix.anchor(["ghost", "dq", "add"]) == "add"  # unknown names are ignored
    assert ix.anchor(["ghost"]) == UNMAPPED and ix.anchor([]) == UNMAPPED
    assert ix.anchor(["q", "dq"]) == "relu"  # all plumbing: the canonical node of the first (q)
    assert ix.anchor(["out_cast", "dq"]) == "neg"  # first in graph order is dq


def test_anchor_lifts_subgraph_nodes():
    nodes = [h.make_node("Relu", ["x"], ["c0"], name="pre"),
             h.make_node("Cast", ["c0"], ["c"], name="to_bool", to=T.BOOL),
             _if("c", "y", [h.make_node("Abs", ["x"], ["t1"], name="ta")],
                 [h.make_node("Neg", ["x"], ["t2"], name="tb")], name="branch")]
    ix = GraphIndex.of(_model(nodes))
    assert ix.anchor(["tb", "ta"]) == "branch"
    assert ix.anchor(["tb", "to_bool"]) == "branch"  # to_bool is plumbing, branch is not
    assert ix.anchor(["tb", "pre"]) == "pre"


# -------------------------------------------------------------------------------------- ORT names
@pytest.mark.parametrize("kernel,node", [
    ("Conv_3_token_12", "Conv_3"), ("mm_token_1_token_22", "mm"), ("fused Gemm_1", "Gemm_1"),
    ("InsertedPrecisionFreeCast_x_out", "x_out"), ("fused relu_token_4", "relu"), ("a_token_1b", "a_token_1b"),
    ("token_1", "token_1"), ("conv", "conv"), ("my fused Gemm", "my fused Gemm"),
])
def test_strip_ort_suffix(kernel, node):
    assert strip_ort_suffix(kernel) == node


@pytest.mark.parametrize("kernel,tensor", [
    ("r2_nchwc", "r2"), ("r2_nchwc_token_3", "r2"), ("fused r2_nchwc", "r2"), ("conv", None), ("nchwc", None),
    ("a_nchwc_b", None), ("x__nchwc", "x_"),
])
def test_ort_nchwc_tensor(kernel, tensor):
    assert ort_nchwc_tensor(kernel) == tensor


def _conv_chain():
    """x -> pre(Relu) -> conv(Conv, w) -> bn(BatchNormalization) -> act(Relu) -> post(Neg) -> y;
    plus wt(Transpose of w, constant) feeding conv2 on the side: act -> conv2 -> y2."""
    f = lambda n, v: h.make_tensor(n, T.FLOAT, [1], [v])  # noqa: E731
    nodes = [h.make_node("Relu", ["x"], ["p"], name="pre"),
             h.make_node("Conv", ["p", "w"], ["c"], name="conv"),
             h.make_node("BatchNormalization", ["c", "sc", "b", "m", "v"], ["bn_out"], name="bn"),
             h.make_node("Relu", ["bn_out"], ["r"], name="act"),
             h.make_node("Neg", ["r"], ["y"], name="post"),
             h.make_node("Transpose", ["w"], ["wt"], name="wt", perm=[0, 1, 2, 3]),
             h.make_node("Conv", ["r", "wt"], ["y2"], name="conv2")]
    g = h.make_graph(nodes, "g", [_vi("x", (1, 1, 2, 2))], [_vi("y", (1, 1, 2, 2)), _vi("y2", (1, 1, 2, 2))],
                     initializer=[h.make_tensor("w", T.FLOAT, [1, 1, 1, 1], [2.0]), f("sc", 1.0), f("b", 0.0),
                                  f("m", 0.0), f("v", 1.0)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 13)])


def test_fused_conv_covers_back_to_its_core_op_only():
    p = _conv_chain()
    onnx.checker.check_model(p, full_check=True)
    ix = GraphIndex.of(p)
    # a FusedConv writing act's output r, reading p and w: conv + bn + act (not pre: past the core Conv)
    assert ort_fused_nodes(["r"], ["p", "w"], ix, set(), "FusedConv") == ["conv", "bn", "act"]
    # without the stop tensors the walk still stops at pre: past the core only plumbing is taken
    assert ort_fused_nodes(["r"], [], ix, set(), "FusedConv") == ["conv", "bn", "act"]
    # no known core op (""): the walk goes back until the graph inputs
    assert ort_fused_nodes(["r"], [], ix, set(), "") == ["pre", "conv", "bn", "act"]
    # the stop tensor bn_out ends the walk there
    assert ort_fused_nodes(["r"], ["bn_out"], ix, set(), "FusedConv") == ["act"]
    # constants (wt is computed from the initializer w only) are folded: no kernel, not covered
    assert ort_fused_nodes(["y2"], [], ix, set(), "FusedConv") == ["conv2"]
    assert ort_fused_nodes(["nothing"], [], ix, set(), "Conv") == []


def test_fused_walk_respects_other_kernels_anchors_and_its_own_name():
    ix = GraphIndex.of(_conv_chain())
    # bn is another kernel's node: not covered and not walked through (conv behind it is not reached)
    assert ort_fused_nodes(["r"], ["p", "w"], ix, {"bn"}, "FusedConv") == ["act"]
    # a start node is covered even when it is an anchor (the kernel writes its output)
    assert ort_fused_nodes(["r"], ["p", "w"], ix, {"act"}, "FusedConv") == ["conv", "bn", "act"]
    # the kernel is named after bn (own): walked through although anchored
    assert ort_fused_nodes(["r"], ["p", "w"], ix, {"bn", "act"}, "FusedConv", own="bn") == ["conv", "bn", "act"]
    assert ort_fused_nodes(["r"], ["p", "w"], ix, {"bn", "act"}, "FusedConv", own="conv") == ["act"]


def _qdq_conv():
    """x -> qx(Q) -> dqx(DQ) -> conv(Conv, DQ'd weight) -> relu -> qy(Q) -> y (int8 QDQ as ORT's quantizer writes)."""
    s = h.make_tensor("s", T.FLOAT, [], [0.1])
    z = h.make_tensor("z", T.INT8, [], [0])
    wq = h.make_tensor("wq", T.INT8, [1, 1, 1, 1], [3])
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="qx"),
             h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dqx"),
             h.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], name="dqw"),
             h.make_node("Conv", ["xd", "wd"], ["c"], name="conv"),
             h.make_node("Relu", ["c"], ["r"], name="relu"),
             h.make_node("QuantizeLinear", ["r", "s", "z"], ["y"], name="qy")]
    g = h.make_graph(nodes, "g", [_vi("x", (1, 1, 2, 2))], [_vi("y", (1, 1, 2, 2), T.INT8)], initializer=[s, z, wq])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 13)])


def test_qlinear_conv_takes_the_input_dequantize_past_the_core():
    p = _qdq_conv()
    onnx.checker.check_model(p, full_check=True)
    ix = GraphIndex.of(p)
    # QLinearConv reads xq (and the weights): covers dqx (plumbing past the core), conv, relu, qy; not qx
    assert ort_fused_nodes(["y"], ["xq", "wq", "s", "z"], ix, set(), "QLinearConv") == ["dqx", "conv", "relu", "qy"]
    # past the core plumbing continues up to the graph input when nothing stops it (qx is plumbing too)
    assert ort_fused_nodes(["y"], [], ix, set(), "QLinearConv") == ["qx", "dqx", "conv", "relu", "qy"]
    # the walk from a plain Relu kernel (core Relu) stops after relu's plumbing-free inputs: conv is not plumbing
    assert ort_fused_nodes(["r"], [], ix, set(), "Relu") == ["relu"]


def test_gemm_and_matmul_cores_are_interchangeable():
    nodes = [h.make_node("Relu", ["x"], ["p"], name="pre"),
             h.make_node("MatMul", ["p", "w"], ["m"], name="mm"),
             h.make_node("Add", ["m", "b"], ["y"], name="bias")]
    p = _model(nodes, inits=[h.make_tensor("w", T.FLOAT, [2, 2], [1, 0, 0, 1]), h.make_tensor("b", T.FLOAT, [2], [1, 1])])
    p.graph.input[0].CopyFrom(_vi("x", (2, 2)))
    p.graph.output[0].CopyFrom(_vi("y", (2, 2)))
    onnx.checker.check_model(p, full_check=True)
    ix = GraphIndex.of(p)
    for op in ("FusedGemm", "Gemm", "FusedMatMul", "MatMul", "QGemm", "MatMulInteger", "DynamicQuantizeMatMul"):
        assert ort_fused_nodes(["y"], [], ix, set(), op) == ["mm", "bias"], op
    assert ort_fused_nodes(["y"], [], ix, set(), "Add") == ["bias"]
    assert ort_fused_nodes(["y"], [], ix, set(), "QLinearAdd") == ["bias"]
    assert ort_fused_nodes(["y"], [], ix, set(), "FusedConv") == ["pre", "mm", "bias"]  # no Conv: to the input


def test_nchwc_sum_takes_the_residual_add_and_its_single_activation():
    def graph(act="Relu", extra_consumer=False, op="Add"):
        nodes = [h.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                 h.make_node("Neg", ["x"], ["skip"], name="skipn"),
                 h.make_node(op, ["c", "skip"], ["s"], name="add"),
                 h.make_node(act, ["s"], ["y"], name="act")]
        if extra_consumer:
            nodes.append(h.make_node("Abs", ["s"], ["y3"], name="abs"))
        return GraphIndex.of(_model(nodes, inits=[h.make_tensor("w", T.FLOAT, [1, 1, 1, 1], [1.0])]))

    assert ort_nchwc_sum("c", graph(), set()) == ["add", "act"]
    assert ort_nchwc_sum("c", graph(op="Sum"), set()) == ["add", "act"]
    for act in ("Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid"):
        assert ort_nchwc_sum("c", graph(act), set()) == ["add", "act"], act
    assert ort_nchwc_sum("c", graph("Softmax"), set()) == ["add"]  # not an activation NCHWc fuses
    assert ort_nchwc_sum("c", graph(extra_consumer=True), set()) == ["add"]  # the sum is read twice
    assert ort_nchwc_sum("c", graph(), {"act"}) == ["add"]  # the activation has its own kernel
    assert ort_nchwc_sum("c", graph(), {"add"}) == []  # the add has its own kernel
    assert ort_nchwc_sum("c", graph(op="Mul"), set()) == []
    assert ort_nchwc_sum("nothing", graph(), set()) == []


def test_nchwc_sum_takes_only_the_first_free_add():
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             h.make_node("Add", ["c", "x"], ["s1"], name="add1"),
             h.make_node("Add", ["c", "x"], ["s2"], name="add2"),
             h.make_node("Relu", ["s2"], ["r2"], name="relu2"),
             h.make_node("Sum", ["s1", "r2"], ["y"], name="total")]
    ix = GraphIndex.of(_model(nodes, inits=[h.make_tensor("w", T.FLOAT, [1, 1, 1, 1], [1.0])]))
    assert ort_nchwc_sum("c", ix, set()) == ["add1"]  # s1 feeds a Sum: no activation; add2 not taken
    assert ort_nchwc_sum("c", ix, {"add1"}) == ["add2", "relu2"]


# ----------------------------------------------------------------------------------- TensorRT names
@pytest.mark.parametrize("name,stripped", [
    ("conv [profile 1]", "conv"), ("conv [profile 12]", "conv"), ("conv[profile 3]", "conv"),
    ("conv [profile x]", "conv [profile x]"), ("conv [profile 1] tail", "conv [profile 1] tail"), ("conv", "conv"),
])
def test_strip_trt_profile_suffix(name, stripped):
    assert strip_trt_profile_suffix(name) == stripped


def test_trt_metadata_entries_are_deduplicated_in_order_and_trimmed():
    md = "[ONNX Layer: b]\x1f[ONNX Layer:  a  | fn]\x1e[ONNX Layer: b]\x1f[ONNX Layer: ]\x1f[ONNX Layer: c|x]"
    assert parse_trt_metadata(md) == ["b", "a", "c"]
    assert parse_trt_metadata("no layer here") == []


@pytest.mark.parametrize("name,nodes,kind", [
    ("Reformatting CopyNode for Output Tensor 0 to conv2", ["conv2"], "reformat"),
    ("Reformatting CopyNode for Input Tensor 3 to PWN(a, b)", ["a", "b"], "reformat"),
    ("Reformatting CopyNode for Network Output out", [], "network-io"),
    ("Reformatting CopyNode for Network Input image [profile 2]", [], "network-io"),
    ("ForeignNode[/a/MatMul.../a/Add]", ["/a/MatMul", "/a/Add"], "foreign"),
    ("{ForeignNode[/only]}", ["/only"], "foreign"),
    ("{ForeignNode[...z]} [profile 1]", ["z"], "foreign"),
    ("  a + PWN(b, c) + d  ", ["a", "b", "c", "d"], "fused"),
    ("a +b", ["a +b"], "layer"),
    ("PWN(a, PWN(b, c))", ["a", "b", "c"], "pointwise"),
    ("PWN(a,b)", ["a,b"], "pointwise"),
    ("PWN(PWN(x), y) ", ["x", "y"], "pointwise"),
    ("PWN(/m/Mul_1, /m/Add)", ["/m/Mul_1", "/m/Add"], "pointwise"),
])
def test_trt_layer_name_formats_more(name, nodes, kind):
    """Format test: layer names as trtexec --dumpLayerInfo / TREx print them."""
    assert split_trt_layer_name(name) == (nodes, kind)


def test_trt_layer_nodes_prefers_metadata_and_widens_foreign_regions():
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"], name="/a/MatMul"),
             h.make_node("Add", ["m", "w2"], ["ad"], name="/a/Add"),
             h.make_node("ReduceSum", ["ad"], ["s"], keepdims=0, name="/a/Sum"),
             h.make_node("Greater", ["s", "zero"], ["c"], name="/a/Gt"),
             _if("c", "i", [h.make_node("Relu", ["ad"], ["t1"], name="/a/then_relu")],
                 [h.make_node("Neg", ["ad"], ["t2"], name="/a/else_neg")], name="/a/If"),
             h.make_node("Softmax", ["i"], ["y"], name="/a/Softmax")]
    ix = GraphIndex.of(_model(nodes))
    region = "{ForeignNode[/a/MatMul.../a/Softmax]}"
    # widened to every main-graph node between first and last in graph order (not the If's body nodes)
    assert trt_layer_nodes(region, None, ix) == (["/a/MatMul", "/a/Add", "/a/Sum", "/a/Gt", "/a/If", "/a/Softmax"],
                                                 "foreign")
    back = "{ForeignNode[/a/Softmax.../a/Sum]}"  # listed last-first: the same span, ordered
    assert trt_layer_nodes(back, None, ix) == (["/a/Sum", "/a/Gt", "/a/If", "/a/Softmax"], "foreign")
    # without ix: the two names as printed; with an unknown end: not widened, unknown names dropped
    assert trt_layer_nodes(region, None) == (["/a/MatMul", "/a/Softmax"], "foreign")
    assert trt_layer_nodes("{ForeignNode[/a/MatMul.../gone]}", None, ix) == (["/a/MatMul"], "foreign")
    # metadata is complete and wins over the name; names not in the graph are dropped with ix only
    md = "[ONNX Layer: /a/Add]\x1f[ONNX Layer: /gone]"
    assert trt_layer_nodes(region, md, ix) == (["/a/Add"], "foreign")
    assert trt_layer_nodes("x + y", md) == (["/a/Add", "/gone"], "fused")
    assert trt_layer_nodes("/a/Add + /gone", None, ix) == (["/a/Add"], "fused")
    assert trt_layer_nodes("/a/Add", "", ix) == (["/a/Add"], "layer")
    # a foreign region with one or three names is never widened
    assert trt_layer_nodes("{ForeignNode[/a/MatMul]}", None, ix) == (["/a/MatMul"], "foreign")
    assert trt_layer_nodes("{ForeignNode[/a/MatMul.../a/Gt.../a/Softmax]}", None, ix) == (
        ["/a/MatMul", "/a/Gt", "/a/Softmax"], "foreign")


# ------------------------------------------------------------------------------------------ spread
def test_spread_splits_each_layer_evenly_and_keeps_the_rest():
    ix = GraphIndex.of(_plumbed())
    df = pd.DataFrame([
        {"layer": "L1", "onnx_nodes": ["q", "dq", "neg"], "onnx_node": "neg", "time_ms": 3.0, "share": 0.6, "x": 1},
        {"layer": "L2", "onnx_nodes": [], "onnx_node": UNMAPPED, "time_ms": 1.5, "share": 0.3, "x": 2},
        {"layer": "L3", "onnx_nodes": None, "onnx_node": "add", "time_ms": 0.5, "share": 0.1, "x": 3},
        {"layer": "L4", "onnx_nodes": ["add", "out_cast"], "onnx_node": "add", "time_ms": 1.0, "share": 0.2, "x": 4},
    ])
    s = spread(df, ix)
    assert list(s.columns) == list(df.columns)
    assert s["layer"].tolist() == ["L1", "L1", "L1", "L2", "L3", "L4", "L4"]
    assert s["onnx_node"].tolist() == ["relu", "neg", "neg", UNMAPPED, "add", "add", "add"]
    assert [list(n) if n is not None else None for n in s["onnx_nodes"]] == [
        ["q"], ["dq"], ["neg"], [], None, ["add"], ["out_cast"]]
    assert s["time_ms"].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.5, 0.5, 0.5, 0.5])
    assert s["share"].tolist() == pytest.approx([0.2, 0.2, 0.2, 0.3, 0.1, 0.1, 0.1])
    assert s["x"].tolist() == [1, 1, 1, 2, 3, 4, 4]
    assert s["time_ms"].sum() == pytest.approx(df["time_ms"].sum())
    raw = spread(df)  # without an index: the covered node itself
    assert raw["onnx_node"].tolist() == ["q", "dq", "neg", UNMAPPED, "add", "add", "out_cast"]
    assert df["layer"].tolist() == ["L1", "L2", "L3", "L4"]  # the input is untouched


def test_follow_does_not_stop_at_an_already_seen_plumbing_node():
    # cast0 -> c0 -> (cast1, cast2); cast1 -> c1; cast2 -> c2; c2 is read by cast3 (CastLike of c1, c2: reached
    # through cast1 already) and then by relu. Breadth first from cast0, level 2 must still find relu after
    # skipping the seen cast3 (not give up on cast2's other consumers and walk on to "late").
    nodes = [h.make_node("Cast", ["x"], ["c0"], name="cast0", to=T.FLOAT),
             h.make_node("Cast", ["c0"], ["c1"], name="cast1", to=T.FLOAT),
             h.make_node("Cast", ["c0"], ["c2"], name="cast2", to=T.FLOAT),
             h.make_node("CastLike", ["c1", "c2"], ["c3"], name="cast3"),
             h.make_node("Relu", ["c2"], ["r"], name="relu"),
             h.make_node("Neg", ["c3"], ["n"], name="late"),
             h.make_node("Add", ["r", "n"], ["y"], name="add")]
    ix = GraphIndex.of(_model(nodes))
    assert ix.consumers["c2"] == ["cast3", "relu"]
    assert ix.canonical("cast0") == "relu"


def test_dynamic_ignores_empty_output_names():
    # split writes "p" and an unused optional output ""; clip reads only constants and an empty optional input "":
    # clip does not depend on the graph input
    nodes = [h.make_node("Split", ["x"], ["p", ""], name="split", num_outputs=2),
             h.make_node("Clip", ["w", "", "mx"], ["c"], name="clip"),
             h.make_node("Add", ["p", "c"], ["y"], name="add")]
    ix = GraphIndex.of(_model(nodes, inits=[h.make_tensor("w", T.FLOAT, [1], [1.0]),
                                            h.make_tensor("mx", T.FLOAT, [], [6.0])], opset=18))
    assert ix.dynamic == {"split", "add"}


def test_fused_walk_skips_empty_optional_inputs():
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             h.make_node("Clip", ["c", "", "mx"], ["y"], name="clip")]
    ix = GraphIndex.of(_model(nodes, inits=[h.make_tensor("w", T.FLOAT, [1, 1, 1, 1], [1.0]),
                                            h.make_tensor("mx", T.FLOAT, [], [6.0])]))
    assert ort_fused_nodes(["y"], [], ix, set(), "FusedConv") == ["conv", "clip"]


@pytest.mark.parametrize("name,nodes", [
    ("PWN(x, PWN(y, z), w)", ["x", "y", "z", "w"]),
    ("PWN(a PWN(b))", ["a", "b"]),
    ("PWN(a", ["a"]),
    ("PWN(PWN(PWN(a)))", ["a"]),
    ("PWN( a , b )", ["a", "b"]),
    ("PWN(f(x), y)", ["f(x)", "y"]),  # parentheses and commas inside a name stay in the name
    ("PWN(PWN(/m/Mul(1)), /m/g(a, b))", ["/m/Mul(1)", "/m/g(a, b)"]),
    ("PWN(a(b(c)), d)", ["a(b(c))", "d"]),
])
def test_pointwise_names_nested_and_unusual(name, nodes):
    assert split_trt_layer_name(name) == (nodes, "pointwise")


def test_fused_walk_visits_a_shared_producer_once_and_goes_on():
    # y = add(add2(sig(x), abs(x)), neg(abs(x))): abs is reached twice; the walk must still take sig after it
    nodes = [h.make_node("Abs", ["x"], ["d"], name="abs"), h.make_node("Sigmoid", ["x"], ["e"], name="sig"),
             h.make_node("Neg", ["d"], ["c"], name="neg"), h.make_node("Add", ["e", "d"], ["b"], name="add2"),
             h.make_node("Add", ["b", "c"], ["y"], name="add")]
    ix = GraphIndex.of(_model(nodes))
    assert ort_fused_nodes(["y"], [], ix, set(), "") == ["abs", "sig", "neg", "add2", "add"]
    assert ort_fused_nodes(["y"], [], ix, set()) == ["abs", "sig", "neg", "add2", "add"]  # op type left out


def test_fused_walk_past_the_core_skips_real_ops_but_keeps_looking_for_plumbing():
    # conv reads dq(q(x)) and a weight computed at run time by wrelu (not plumbing): past the core, wrelu is not
    # taken, the input's Q/DQ pair is
    s, z = h.make_tensor("s", T.FLOAT, [], [0.1]), h.make_tensor("z", T.INT8, [], [0])
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="qx"),
             h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dqx"),
             h.make_node("Relu", ["x"], ["w"], name="wrelu"),
             h.make_node("Conv", ["xd", "w"], ["c"], name="conv"),
             h.make_node("Relu", ["c"], ["y"], name="act")]
    ix = GraphIndex.of(_model(nodes, inits=[s, z]))
    assert ort_fused_nodes(["y"], [], ix, set(), "FusedConv") == ["qx", "dqx", "conv", "act"]


def test_nchwc_sum_whose_add_is_the_graph_output():
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], name="conv"), h.make_node("Add", ["c", "x"], ["y"], name="add")]
    ix = GraphIndex.of(_model(nodes, inits=[h.make_tensor("w", T.FLOAT, [1, 1, 1, 1], [1.0])]))
    assert ort_nchwc_sum("c", ix, set()) == ["add"]


def test_spread_of_an_empty_table_keeps_its_columns():
    df = pd.DataFrame(columns=["layer", "onnx_nodes", "onnx_node", "time_ms", "share"])
    out = spread(df)
    assert list(out.columns) == list(df.columns) and out.empty
