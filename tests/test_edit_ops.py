"""workbench.edit operations on the sample models and the onnx wheel's light models.

Round trips: where an edit is meant to keep outputs (fold constants, cleanup, toposort, bypassing an
Identity, Min+Max → Clip, LayerNorm fusion, simplify) ONNX Runtime outputs on synthetic inputs are
compared with tight tolerances. Pattern models are built here with onnx.helper (small, real ONNX).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
import workbench.edit as ed
from workbench.data import synthetic_inputs
from workbench.edit import ops
from workbench.errors import EditError, UsageError


def run(model: wb.Model, feeds: dict) -> dict[str, np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.proto_with_data().SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {k: v for k, v in feeds.items() if k in names})))


def assert_same_outputs(a: wb.Model, b: wb.Model, feeds: dict, *, rtol=1e-5, atol=1e-6) -> None:
    ra, rb = run(a, feeds), run(b, feeds)
    assert list(ra) == list(rb)
    for k in ra:
        np.testing.assert_allclose(rb[k], ra[k], rtol=rtol, atol=atol, err_msg=k)


def node(m: wb.Model, name: str) -> onnx.NodeProto:
    return next(n for n in m.graph.node if n.name == name)


# ---------------------------------------------------------------------------------------------- pattern models
def minmax_model(opset: int, order: str = "max_min") -> wb.Model:
    lo = numpy_helper.from_array(np.array(-0.5, np.float32), "lo")
    hi = numpy_helper.from_array(np.array(0.75, np.float32), "hi")
    if order == "max_min":
        nodes = [helper.make_node("Max", ["x", "lo"], ["a"], name="max"), helper.make_node("Min", ["a", "hi"], ["b"], name="min")]
    else:
        nodes = [helper.make_node("Min", ["x", "hi"], ["a"], name="min"), helper.make_node("Max", ["a", "lo"], ["b"], name="max")]
    nodes.append(helper.make_node("Relu", ["b"], ["y"], name="relu"))
    g = helper.make_graph(nodes, "minmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], [lo, hi])
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8))


def layernorm_model(opset: int) -> wb.Model:
    """x → MatMul → decomposed LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add) → y."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
             numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "beta")]
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), "axes"))
        rm = lambda i, o, n: helper.make_node("ReduceMean", [i, "axes"], [o], name=n)  # noqa: E731
    else:
        rm = lambda i, o, n: helper.make_node("ReduceMean", [i], [o], name=n, axes=[-1])  # noqa: E731
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
        rm("h", "mean", "ln/mean"),
        helper.make_node("Sub", ["h", "mean"], ["d"], name="ln/sub"),
        helper.make_node("Pow", ["d", "two"], ["sq"], name="ln/pow"),
        rm("sq", "var", "ln/var"),
        helper.make_node("Add", ["var", "eps"], ["ve"], name="ln/add_eps"),
        helper.make_node("Sqrt", ["ve"], ["std"], name="ln/sqrt"),
        helper.make_node("Div", ["d", "std"], ["n"], name="ln/div"),
        helper.make_node("Mul", ["n", "gamma"], ["s"], name="ln/mul"),
        helper.make_node("Add", ["s", "beta"], ["y"], name="ln/add"),
    ]
    g = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 8, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 8, 32])], inits)
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8))


# ---------------------------------------------------------------------------------------------- registry / code
def test_registry_schema_and_render_call():
    assert {"remove_node", "fold_constants", "cleanup", "toposort", "extract", "replace_pattern",
            "insert_qdq", "set_input", "set_batch", "rename", "simplify", "add_outputs"} <= set(ed.REGISTRY)
    for name, spec in ed.REGISTRY.items():
        assert getattr(ed, name) is spec.fn and spec.summary
    assert ed.render_call("fold_constants", {}) == "wb.edit.fold_constants(m)"
    assert ed.render_call("remove_node", {"node": "a", "mode": "delete"}) == "wb.edit.remove_node(m, node='a', mode='delete')"
    assert ed.render_call("extract", {"inputs": ("a",), "outputs": ["b"]}) == "wb.edit.extract(m, inputs=['a'], outputs=['b'])"
    with pytest.raises(UsageError, match="no parameter"):
        ed.render_call("cleanup", {"bogus": 1})
    with pytest.raises(UsageError, match="unknown edit operation"):
        ops.get_op("fold_constant")
    with pytest.raises(UsageError, match="needs parameter"):
        ops.normalize_params("remove_node", {})
    with pytest.raises(UsageError, match="not finite"):
        ops.normalize_params("insert_qdq", {"tensor": "t", "scale": float("nan")})
    assert ops.parse_dims("Nx3x224x224") == ["N", 3, 224, 224] and ops.parse_dims("max_len,?,8") == ["max_len", None, 8]
    with pytest.raises(UsageError, match="bad dimension"):
        ops.parse_dims("1x2.5")


# ---------------------------------------------------------------------------------------------- output-preserving
def test_fold_constants_cleanup_light_squeezenet_preserve_outputs(light):
    m = wb.load(light("squeezenet"))
    before = m.hash
    folded = ed.fold_constants(m)
    assert m.hash == before and len(m.graph.node) == 105  # input untouched
    assert "ConstantOfShape" not in {n.op_type for n in folded.graph.node}
    assert len(folded.graph.node) < len(m.graph.node)
    assert folded.parent_hash == m.hash
    cleaned = ed.cleanup(folded, remove_unused_graph_inputs=True)
    assert ed.validate(cleaned).ok
    feeds = synthetic_inputs(m)
    assert_same_outputs(m, cleaned, feeds)


def test_fold_constants_sample_transformer(sample):
    m = wb.load(sample("transformer_block.onnx"))
    f = ed.fold_constants(m)
    assert "Constant" not in {n.op_type for n in f.graph.node}
    assert_same_outputs(m, f, synthetic_inputs(m, "x:2x8x64"), rtol=1e-5, atol=1e-5)


def test_cleanup_removes_dead_branch_and_keeps_unused_inputs_unless_asked(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    p = m.proto_with_data()
    p.graph.node.append(helper.make_node("Relu", ["image"], ["dead"], name="dead_relu"))
    p.graph.input.append(helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1]))
    dirty = wb.load(p)
    c = ed.cleanup(dirty)
    assert "dead_relu" not in {n.name for n in c.graph.node}
    assert "unused" in c.input_names  # pitfall: kept by default
    c2 = ed.cleanup(dirty, remove_unused_graph_inputs=True)
    assert c2.input_names == ["image"]
    assert_same_outputs(m, c2, synthetic_inputs(m, "image:4x1x8x8"))


def test_toposort_repairs_unsorted_graph(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    p = m.proto_with_data()
    nodes = list(p.graph.node)[::-1]
    del p.graph.node[:]
    p.graph.node.extend(nodes)
    shuffled = wb.load(p)
    assert not ed.validate(shuffled).ok
    fixed = ed.toposort(shuffled)
    assert ed.validate(fixed).ok
    assert_same_outputs(m, fixed, synthetic_inputs(m, "image:2x1x8x8"))


def test_insert_identity_then_bypass_round_trip(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    t = node(m, "/features/relu2/Relu").output[0]
    with_id = ed.insert_node(m, t, "Identity", name="probe")
    assert len(with_id.graph.node) == len(m.graph.node) + 1
    assert node(with_id, "probe").input == [t]
    back = ed.remove_node(with_id, "probe")
    assert len(back.graph.node) == len(m.graph.node)
    feeds = synthetic_inputs(m, "image:3x1x8x8")
    assert_same_outputs(m, with_id, feeds, rtol=0, atol=0)
    assert_same_outputs(m, back, feeds, rtol=0, atol=0)


def test_identity_on_graph_output_keeps_interface(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    a = ed.insert_node(m, "logits", "Identity")
    assert a.output_names == ["logits"] and node(a, "logits_identity").output == ["logits"]
    b = ed.remove_node(a, "logits_identity")
    assert b.output_names == ["logits"] and ed.validate(b).ok
    assert_same_outputs(m, b, synthetic_inputs(m, "image:2x1x8x8"), rtol=0, atol=0)


@pytest.mark.parametrize("opset,order", [(13, "max_min"), (13, "min_max"), (9, "max_min")])
def test_min_max_to_clip(opset, order):
    m = minmax_model(opset, order)
    c = ed.replace_pattern(m, "min_max_to_clip")
    ops_after = [n.op_type for n in c.graph.node]
    assert ops_after.count("Clip") == 1 and "Min" not in ops_after and "Max" not in ops_after
    assert ed.validate(c).ok
    x = {"x": np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32) * 2}
    assert_same_outputs(m, c, x, rtol=0, atol=0)


@pytest.mark.parametrize("opset", [17, 18])
def test_layernorm_fusion(opset):
    m = layernorm_model(opset)
    f = ed.replace_pattern(m, "layernorm")
    assert [n.op_type for n in f.graph.node] == ["MatMul", "LayerNormalization"]
    assert ed.validate(f).ok
    x = {"x": np.random.default_rng(2).standard_normal((3, 8, 32)).astype(np.float32)}
    assert_same_outputs(m, f, x, rtol=1e-4, atol=1e-4)


def test_layernorm_needs_opset_17_and_missing_pattern_is_an_error():
    old = wb.load(_with_opset(layernorm_model(17), 13))
    with pytest.raises(EditError, match="opset >= 17"):
        ed.replace_pattern(old, "layernorm")
    with pytest.raises(EditError, match="not found"):
        ed.replace_pattern(layernorm_model(17), "min_max_to_clip")


def _with_opset(m: wb.Model, opset: int) -> onnx.ModelProto:
    p = m.proto_with_data()
    p.opset_import[0].version = opset
    return p


def test_simplify_onnxslim_preserves_outputs(sample):
    pytest.importorskip("onnxslim")
    m = wb.load(sample("transformer_block.onnx"))
    s = ed.simplify(m)
    assert ed.validate(s).ok
    assert_same_outputs(m, s, synthetic_inputs(m, "x:2x8x64"), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- structure edits
def test_replace_op_and_set_attrs(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    r = ed.replace_op(m, "/classifier/relu/Relu", "LeakyRelu", attrs={"alpha": 0.2})
    n = node(r, "/classifier/relu/Relu")
    assert n.op_type == "LeakyRelu" and helper.get_attribute_value(n.attribute[0]) == pytest.approx(0.2)
    s = ed.set_attrs(r, "/classifier/relu/Relu", attrs={"alpha": 0.3})
    assert helper.get_attribute_value(node(s, "/classifier/relu/Relu").attribute[0]) == pytest.approx(0.3)
    assert ed.validate(s).ok
    with pytest.raises(EditError, match="no attribute"):
        ed.set_attrs(s, "/classifier/relu/Relu", remove=["beta"])
    with pytest.raises(EditError, match="no node named"):
        ed.replace_op(m, "/classifier/relu/Rel", "Relu")


def test_insert_qdq_per_tensor(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    t = node(m, "/features/relu1/Relu").output[0]
    q = ed.insert_qdq(m, t, scale=0.05)
    types = [n.op_type for n in q.graph.node]
    assert types.count("QuantizeLinear") == 1 and types.count("DequantizeLinear") == 1
    assert ed.validate(q).ok
    dq_out = next(n for n in q.graph.node if n.op_type == "DequantizeLinear").output[0]
    feeds = synthetic_inputs(m, "image:2x1x8x8")
    x = run(ed.add_outputs(m, [t]), feeds)[t]
    got = run(ed.add_outputs(q, [dq_out]), feeds)[dq_out]
    expected = np.clip(np.round(x / np.float32(0.05)), -128, 127).astype(np.float32) * np.float32(0.05)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # consumers now read the fake-quantized tensor
    assert not np.array_equal(got, x)
    with pytest.raises(EditError, match="axis"):
        ed.insert_qdq(m, t, scale=[0.1, 0.2])


def test_rename_tensors_and_nodes(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    r = ed.rename(m, tensors={"logits": "scores"}, nodes={"/classifier/fc2/Gemm": "head"})
    assert r.output_names == ["scores"] and node(r, "head").output == ["scores"]
    d = ed.diff_models(m, r)
    assert {("renamed", "tensor", "scores"), ("renamed", "node", "head")} <= set(zip(d.change, d.kind, d.onnx_node.fillna(d.tensor)))
    with pytest.raises(EditError, match="taken"):
        ed.rename(m, tensors={"logits": "image"})


def test_set_input_shape_and_set_batch(sample):
    m = wb.load(sample("transformer_block.onnx"))
    s = ed.set_input(m, "x", shape=[2, 8, 64])
    assert ed.validate(s).ok
    dims = [d.dim_value for d in s.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [2, 8, 64]
    out = run(s, {"x": np.zeros((2, 8, 64), np.float32)})
    assert out["y"].shape == (2, 8, 64)
    d = wb.load(sample("digits_cnn.onnx"))
    fixed = ed.set_batch(d, 4)
    assert fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert fixed.graph.output[0].type.tensor_type.shape.dim[0].dim_value == 4
    dyn = ed.set_batch(fixed, "batch")
    assert dyn.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert ed.validate(dyn).ok and ed.validate(fixed).ok


def test_extract_subgraph_matches_intermediate_outputs(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    a = node(m, "/features/pool/MaxPool").output[0]
    b = node(m, "/classifier/flatten/Flatten").output[0]
    probed = ed.add_outputs(m, [a, b])
    assert probed.output_names == ["logits", a, b]
    feeds = synthetic_inputs(m, "image:2x1x8x8")
    ref = run(probed, feeds)
    sub = ed.extract(m, [a], [b])
    assert sub.input_names == [a] and sub.output_names == [b]
    assert "/features/conv1/Conv" not in {n.name for n in sub.graph.node}  # upstream nodes are gone
    assert ed.validate(sub).ok
    np.testing.assert_allclose(run(sub, {a: ref[a]})[b], ref[b], rtol=1e-6, atol=1e-6)
    with pytest.raises(EditError, match="depends on"):
        ed.extract(m, [b], ["logits", a])  # a lies upstream of b: it needs the original input


def test_light_densenet_fold_and_extract(light):
    m = wb.load(light("densenet121"))
    f = ed.cleanup(ed.fold_constants(m))
    assert len(f.graph.node) < len(m.graph.node) and ed.validate(f).ok


def test_export_over_protobuf_limit_is_a_clear_error(sample, monkeypatch):
    m = wb.load(sample("digits_cnn.onnx"))
    monkeypatch.setattr(ops, "PROTOBUF_LIMIT", 1000)
    with pytest.raises(EditError, match="2 GB protobuf limit"):
        ed.toposort(m)


def test_bad_parameters_are_clear_errors(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    with pytest.raises(EditError, match="not a graph input"):
        ed.set_input(m, "logits", shape=[1, 10])
    with pytest.raises(EditError, match="unknown ONNX dtype"):
        ed.set_input(m, "image", dtype="float99")
    with pytest.raises(EditError, match="no tensor named"):
        ed.insert_node(m, "nope", "Identity")
    rc = wb.load(sample("resize_concat.onnx"))
    with pytest.raises(EditError, match="cannot bypass"):
        ed.remove_node(rc, "/Concat")  # two data inputs


def test_simplify_onnxsim_missing_is_a_clear_error(sample):
    try:
        import onnxsim  # noqa: F401
        pytest.skip("onnxsim is installed here")
    except ImportError:
        pass
    with pytest.raises(EditError, match="pip install onnxsim"):
        ed.simplify(wb.load(sample("digits_cnn.onnx")), tool="onnxsim")


def test_delete_node_whose_outputs_are_unused(sample):
    base = wb.load(sample("digits_cnn.onnx"))
    m = ed.add_outputs(base, [node(base, "/features/gap/GlobalAveragePool").output[0]])
    d = ed.remove_node(m, "/classifier/fc2/Gemm", mode="delete")
    assert "logits" not in d.output_names and "/classifier/fc2/Gemm" not in {n.name for n in d.graph.node}
    assert "/classifier/fc1/Gemm" not in {n.name for n in d.graph.node}  # its now-unused producers went too
    assert ed.validate(d).ok


def test_operations_never_mutate_their_input(sample):
    m = wb.load(sample("digits_cnn.onnx"))
    before = m.proto.SerializeToString(deterministic=True)
    relu = node(m, "/features/relu1/Relu").output[0]
    calls = [("remove_node", {"node": "/classifier/relu/Relu"}), ("replace_op", {"node": "/features/relu1/Relu", "op_type": "Sigmoid"}),
             ("set_attrs", {"node": "/classifier/flatten/Flatten", "attrs": {"axis": 1}}), ("insert_node", {"tensor": relu}),
             ("insert_qdq", {"tensor": relu, "scale": 0.1}), ("rename", {"tensors": {"image": "x"}}),
             ("set_input", {"name": "image", "shape": [1, 1, 8, 8]}), ("set_batch", {"batch": 3}),
             ("extract", {"inputs": [relu], "outputs": ["logits"]}), ("add_outputs", {"tensors": [relu]}),
             ("fold_constants", {}), ("cleanup", {"remove_unused_graph_inputs": True}), ("toposort", {})]
    for name, params in calls:
        out = ed.REGISTRY[name].fn(m, **params)
        assert out is not m and out.parent_hash == m.hash, name
        assert m.proto.SerializeToString(deterministic=True) == before, name
        assert ed.validate(out).ok, (name, ed.validate(out).reasons)
