"""Fast behavioural tests for workbench.precision.quantize's own graph logic (mutation target `quantize`,
tools/mutate.py): the Sum -> Add rewrite (checked numerically with ONNX Runtime against the original graph),
the NaN-weight reason, and the traceback test the recipe uses to tell where ORT's quantizer failed."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

from workbench.precision.quantize import _failed_in, _nan_reason, sums_to_adds


def _sum_model(n_inputs=3, domain=""):
    ins = [f"x{i}" for i in range(n_inputs)]
    nodes = [h.make_node("Sum", ins, ["s"], name="sum", domain=domain), h.make_node("Relu", ["s"], ["y"], name="relu")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info(x, T.FLOAT, [2, 3]) for x in ins],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 3])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _run(p, feeds):
    return ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_sum_of_three_becomes_a_chain_of_adds():
    p = _sum_model(3)
    rng = np.random.default_rng(0)
    feeds = {f"x{i}": rng.standard_normal((2, 3)).astype(np.float32) for i in range(3)}
    before = _run(p, feeds)
    assert sums_to_adds(p) == ["sum"]
    ops = [(n.op_type, n.name, list(n.input), list(n.output)) for n in p.graph.node]
    assert ops == [("Add", "sum", ["x0", "x1"], ["s__sum1"]), ("Add", "sum__add2", ["s__sum1", "x2"], ["s"]),
                   ("Relu", "relu", ["s"], ["y"])]
    onnx.checker.check_model(p, full_check=True)
    np.testing.assert_array_equal(_run(p, feeds), before)


def test_sum_of_two_is_one_add_and_other_sums_stay():
    p = _sum_model(2)
    assert sums_to_adds(p) == ["sum"]
    assert [(n.op_type, n.name, list(n.output)) for n in p.graph.node] == [("Add", "sum", ["s"]),
                                                                         ("Relu", "relu", ["y"])]
    one = _sum_model(1)
    assert sums_to_adds(one) == [] and one.graph.node[0].op_type == "Sum"
    other = _sum_model(2, domain="com.example")
    assert sums_to_adds(other) == [] and other.graph.node[0].op_type == "Sum"
    ai = _sum_model(2, domain="ai.onnx")
    assert sums_to_adds(ai) == ["sum"] and ai.graph.node[0].op_type == "Add"
    none = _sum_model(2)
    none.graph.node[0].op_type = "Max"
    assert sums_to_adds(none) == [] and [n.op_type for n in none.graph.node] == ["Max", "Relu"]


def test_two_sums_keep_their_order():
    p = _sum_model(2)
    p.graph.node.append(h.make_node("Sum", ["y", "x0", "x1"], ["z"], name="sum2"))
    p.graph.output.append(h.make_tensor_value_info("z", T.FLOAT, [2, 3]))
    assert sums_to_adds(p) == ["sum", "sum2"]
    assert [n.name for n in p.graph.node] == ["sum", "relu", "sum2", "sum2__add2"]
    assert p.graph.node[-1].output[0] == "z" and p.graph.node[-2].output[0] == "z__sum1"


def _saved(tmp_path, arr, name="w"):
    g = h.make_graph([h.make_node("Identity", [name], ["y"])], "g", [], [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[numpy_helper.from_array(arr.astype(np.float32), name)])
    path = tmp_path / "m.onnx"
    onnx.save(h.make_model(g), str(path))
    return path


def test_nan_reason_names_the_constant_channels(tmp_path):
    w = np.arange(24, dtype=np.float32).reshape(4, 6)
    w[1] = 0.0   # an all-zero channel along axis 0
    w[3] = 5.0   # a constant, non-zero one
    r = _nan_reason(_saved(tmp_path, w), "w", "fp8")
    assert r.startswith("ONNX Runtime's fp8 quantizer wrote NaN into this node's weight")
    assert "; weight 'w' [4, 6] has 2 constant channel(s) along axis 0 (1 all zero), e.g. [1, 3]; kept float" in r
    # no constant row along axis 0, but constant columns along the last axis
    cols = np.arange(12, dtype=np.float32).reshape(3, 4)
    cols[:, 2] = 7.0
    r2 = _nan_reason(_saved(tmp_path, cols), "w", "int8")
    assert "has 1 constant channel(s) along axis 1 (0 all zero), e.g. [2]" in r2 and "int8 quantizer" in r2
    wide = np.zeros((2, 8), np.float32)
    wide[0] = 1.0
    assert "e.g. [0, 1]" in _nan_reason(_saved(tmp_path, wide), "w", "fp8")
    many = np.ones((6, 3), np.float32)
    assert "6 constant channel(s) along axis 0 (0 all zero), e.g. [0, 1, 2, 3]" in _nan_reason(
        _saved(tmp_path, many), "w", "fp8")
    assert "; weight 'w' is constant;" in _nan_reason(_saved(tmp_path, np.full(5, 2.0)), "w", "fp8")
    plain = _nan_reason(_saved(tmp_path, np.arange(5.0)), "w", "fp8")
    assert plain.endswith("0/0 is NaN); kept float")
    assert _nan_reason(_saved(tmp_path, w), "other", "fp8") == plain  # no such initializer: no detail
    varied = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert _nan_reason(_saved(tmp_path, varied), "w", "fp8") == plain


def _raise_in_inner():
    def inner():
        raise ValueError("boom")
    inner()


def test_failed_in_reads_the_traceback_and_its_causes():
    try:
        _raise_in_inner()
    except ValueError as e:
        assert _failed_in(e, "inner") and _failed_in(e, "_raise_in_inner")
        assert not _failed_in(e, "outer")
    try:
        try:
            _raise_in_inner()
        except ValueError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as w:
        assert _failed_in(w, "inner")  # found on the cause's traceback
        assert not _failed_in(w, "nowhere")
    try:
        try:
            _raise_in_inner()
        except ValueError:
            raise KeyError("during handling")  # noqa: B904 - implicit context on purpose
    except KeyError as k:
        assert _failed_in(k, "inner")  # found on the context's traceback
    assert not _failed_in(ValueError("never raised"), "inner")  # no traceback at all


# ---------------------------------------------------------------------------- default_target / fp8 / fp8 method
def test_default_target_per_backend_names_the_backend_and_the_form():
    from workbench.precision.quantize import default_target, resolve_target

    for backend in ("onnxruntime", "onnxruntime-cpu", "ort", "cpu"):
        target, why = default_target(backend)
        assert target == "onnxruntime-cpu", backend
        assert why.startswith(f"backend {backend!r}: ONNX Runtime CPU fuses uint8-activation Q/DQ into its integer "
                              "kernels (QLinearConv"), why
        assert why.endswith("symmetric int8 activations fall back to slower paths"), why
        assert resolve_target("int8", {"backend": backend}) == (target, why)
    for backend in ("tensorrt", "tensorrt-rtx", "onnxruntime-cuda"):
        target, why = default_target(backend)
        assert target == "tensorrt"
        assert why == f"backend {backend!r}: symmetric int8 Q/DQ (zero point 0), the form TensorRT fuses"
    for backend in (None, ""):
        target, why = default_target(backend)
        assert target == "tensorrt" and why.startswith("no backend given: symmetric int8 Q/DQ")
        assert why.endswith("(TensorRT form, portable to ORT)")


def test_fp8_supported_follows_this_onnxruntime(monkeypatch):
    import enum

    import onnxruntime.quantization as oq

    from workbench.precision.quantize import fp8_supported

    assert fp8_supported() == (hasattr(oq.QuantType, "QFLOAT8E4M3FN"), "")
    if hasattr(oq.QuantType, "QFLOAT8E4M3FN"):
        assert fp8_supported() == (True, "")

    class OldQuantType(enum.Enum):  # an onnxruntime from before float8 (1.15): only the integer types
        QInt8 = 0
        QUInt8 = 1

    monkeypatch.setattr(oq, "QuantType", OldQuantType)
    assert fp8_supported() == (False, "this onnxruntime has no QuantType.QFLOAT8E4M3FN")


def test_fp8_through_ort_calibrates_with_distribution_modelopt_keeps_its_method():
    import pytest

    from workbench.errors import UsageError
    from workbench.precision.base import Request
    from workbench.precision.quantize import Fp8Recipe

    r = Fp8Recipe()
    for tool in ("auto", "onnxruntime"):
        assert r._method(Request(calibration_method="minmax", tool=tool)) == "distribution"
        assert r._method(Request(calibration_method="distribution", tool=tool)) == "distribution"
        for bad in ("entropy", "percentile"):
            with pytest.raises(UsageError, match="distribution"):
                r._method(Request(calibration_method=bad, tool=tool))
    for method in ("entropy", "minmax", "percentile"):
        assert r._method(Request(calibration_method=method, tool="modelopt")) == method


def _gemm_model(shared: bool):
    """y = A x W + C ([1, 4] bias); shared: a second Gemm and an Identity output read the same C."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "W")
    c = numpy_helper.from_array(rng.normal(size=(1, 4)).astype(np.float32), "C")
    nodes = [h.make_node("Gemm", ["a", "W", "C"], ["y"], name="g1")]
    outs = [h.make_tensor_value_info("y", T.FLOAT, None)]
    if shared:
        nodes += [h.make_node("Gemm", ["a", "W", "C"], ["y2"], name="g2"), h.make_node("Identity", ["C"], ["c_out"])]
        outs += [h.make_tensor_value_info("y2", T.FLOAT, None), h.make_tensor_value_info("c_out", T.FLOAT, None)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("a", T.FLOAT, ["n", 3])], outs, initializer=[w, c])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _run_all(p, feeds):
    return ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_flatten_gemm_bias_in_place_when_only_one_gemm_reads_it_else_a_copy_each():
    from workbench.precision.quantize import flatten_gemm_bias

    a = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    one = _gemm_model(False)
    before = _run_all(one, {"a": a})
    assert flatten_gemm_bias(one) == ["g1"]
    assert [i.name for i in one.graph.initializer] == ["W", "C"] and list(one.graph.initializer[1].dims) == [4]
    np.testing.assert_allclose(_run_all(one, {"a": a})[0], before[0], rtol=1e-6)

    two = _gemm_model(True)
    before = _run_all(two, {"a": a})
    assert flatten_gemm_bias(two) == ["g1", "g2"]
    inits = {i.name: list(i.dims) for i in two.graph.initializer}
    assert inits["C"] == [1, 4]  # the Identity still reads the 2-D bias
    assert two.graph.node[0].input[2] != two.graph.node[1].input[2]
    assert all(inits[n.input[2]] == [4] for n in two.graph.node[:2])
    after = _run_all(two, {"a": a})
    assert after[2].shape == (1, 4)
    for b, c in zip(before, after):
        np.testing.assert_allclose(c, b, rtol=1e-6)


# ---------------------------------------------------------------------------- resolve_target: forced forms, aliases
def test_resolve_target_forced_forms_alias_and_empty_values():
    import pytest

    from workbench.errors import UsageError
    from workbench.precision.quantize import resolve_target

    for precision in ("int8", "fp8"):  # the TensorRT form is a valid choice for both
        assert resolve_target(precision, {"target": "tensorrt"}) == ("tensorrt", "asked for (target='tensorrt')")
        assert resolve_target(precision, {"target": "tensorrt", "backend": "onnxruntime"})[0] == "tensorrt"
    assert resolve_target("int8", {"target": "onnxruntime-cpu"}) == ("onnxruntime-cpu",
                                                                      "asked for (target='onnxruntime-cpu')")
    # qdq_form is the alias for callers whose own `target` means something else: it wins over `target`
    assert resolve_target("int8", {"qdq_form": "onnxruntime-cpu", "target": "gpu-7"}) == (
        "onnxruntime-cpu", "asked for (target='onnxruntime-cpu')")
    assert resolve_target("int8", {"qdq_form": "tensorrt", "target": "gpu-7", "backend": "ort"})[0] == "tensorrt"
    # None / "" (a widget's empty field) mean "auto": the backend decides
    for empty in (None, ""):
        target, why = resolve_target("int8", {"target": empty, "backend": "ort"})
        assert target == "onnxruntime-cpu" and why.startswith("backend 'ort': ONNX Runtime CPU"), why
        assert resolve_target("int8", {"qdq_form": empty, "target": empty})[0] == "tensorrt"
    assert resolve_target("fp8", {}) == ("tensorrt", "fp8: Q/DQ in the TensorRT form (ONNX Runtime CPU has no fp8 "
                                                     "kernels)")
    with pytest.raises(UsageError, match=r"unknown fp8 target 'onnxruntime-cpu'; choose 'auto', 'tensorrt'$"):
        resolve_target("fp8", {"target": "onnxruntime-cpu"})
    with pytest.raises(UsageError, match=r"or 'onnxruntime-cpu'$"):
        resolve_target("int8", {"target": "TensorRT"})


# ---------------------------------------------------------------------------- transformer detection / placement
def _vi(name, shape, elem=T.FLOAT):
    return h.make_tensor_value_info(name, elem, shape)


def _ops_model(nodes, inputs, outputs, inits=(), opset=17):
    g = h.make_graph(nodes, "g", [_vi(n, s) for n, s in inputs], [_vi(n, s) for n, s in outputs],
                     initializer=[numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in inits])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    onnx.checker.check_model(m, full_check=True)
    return m


_NO_TF = "no attention pattern (Softmax + activation MatMul) or LayerNorm found"


def test_looks_like_transformer_counts_activation_matmuls_only():
    from workbench.precision.quantize import looks_like_transformer

    w = np.eye(4)
    # attention core: softmax(x) @ relu(v), both MatMul inputs computed by nodes
    attn = _ops_model([h.make_node("Softmax", ["x"], ["s"], name="sm"), h.make_node("Relu", ["v"], ["vr"], name="r"),
                       h.make_node("MatMul", ["s", "vr"], ["y"], name="mm")],
                      [("x", [4, 4]), ("v", [4, 4])], [("y", [4, 4])])
    assert looks_like_transformer(attn) == (True, "Softmax and 1 activation x activation MatMul(s) (attention)")
    # a classifier head: a weight MatMul then Softmax is no attention, with the weight on either side, as an
    # initializer or as a Constant node's output
    for a, b in (("x", "W"), ("W", "x")):
        head = _ops_model([h.make_node("MatMul", [a, b], ["z"], name="fc"), h.make_node("Softmax", ["z"], ["y"])],
                          [("x", [4, 4])], [("y", [4, 4])], inits=[("W", w)])
        assert looks_like_transformer(head) == (False, _NO_TF), (a, b)
    const = _ops_model([h.make_node("Constant", [], ["W"], value=numpy_helper.from_array(np.eye(4, dtype=np.float32))),
                        h.make_node("MatMul", ["x", "W"], ["z"], name="fc"), h.make_node("Softmax", ["z"], ["y"])],
                       [("x", [4, 4])], [("y", [4, 4])])
    assert looks_like_transformer(const) == (False, _NO_TF)
    # an activation x activation MatMul without Softmax (a bilinear layer) is not attention either
    bilinear = _ops_model([h.make_node("MatMul", ["x", "v"], ["y"])], [("x", [4, 4]), ("v", [4, 4])], [("y", [4, 4])])
    assert looks_like_transformer(bilinear) == (False, _NO_TF)


def test_looks_like_transformer_layernorm_needs_matmuls():
    from workbench.precision.quantize import looks_like_transformer

    ln_inits = [("W", np.eye(4)), ("g", np.ones(4)), ("b", np.zeros(4))]
    ln_mm = _ops_model([h.make_node("LayerNormalization", ["x", "g", "b"], ["n"]),
                        h.make_node("MatMul", ["n", "W"], ["y"])], [("x", [2, 4])], [("y", [2, 4])], inits=ln_inits)
    assert looks_like_transformer(ln_mm) == (True, "LayerNormalization next to MatMuls")
    ln_gemm = _ops_model([h.make_node("LayerNormalization", ["x", "g", "b"], ["n"]),
                          h.make_node("Gemm", ["n", "W"], ["y"])], [("x", [2, 4])], [("y", [2, 4])], inits=ln_inits)
    assert looks_like_transformer(ln_gemm) == (False, _NO_TF)
    mlp = _ops_model([h.make_node("MatMul", ["x", "W"], ["z"]), h.make_node("Relu", ["z"], ["y"])],
                     [("x", [2, 4])], [("y", [2, 4])], inits=[("W", np.eye(4))])
    assert looks_like_transformer(mlp) == (False, _NO_TF)


def _sample(name):
    from pathlib import Path

    return onnx.load(str(Path(__file__).resolve().parents[1] / "sample_models" / f"{name}.onnx"))


def test_resolve_placement_on_the_bundled_models():
    import pytest

    from workbench.errors import UsageError
    from workbench.precision.quantize import resolve_placement

    tf, cnn = _sample("transformer_block"), _sample("digits_cnn")
    # two encoder layers, each with Q x K^T and attention x V: 4 activation x activation MatMuls
    assert resolve_placement(tf, "auto") == ("transformer", "Softmax and 4 activation x activation MatMul(s) "
                                                            "(attention)")
    assert resolve_placement(cnn, "auto") == ("cnn", _NO_TF)
    # asked for: kept whatever the graph looks like
    assert resolve_placement(tf, "cnn") == ("cnn", "asked for (placement='cnn')")
    assert resolve_placement(cnn, "transformer") == ("transformer", "asked for (placement='transformer')")
    for bad in ("CNN", "Transformer", "", "mlp"):
        with pytest.raises(UsageError, match="unknown placement"):
            resolve_placement(cnn, bad)


# ---------------------------------------------------------------------------- If/Loop bodies: summary and reads
def _if_model():
    """mm0 -> pre (Relu) -> r, read inside two If nodes (one nesting a third If); the bodies hold 8 nodes,
    3 of them MatMuls (then_mm, else_mm, inner_mm) and 1 Relu (then_relu)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "w")
    o = lambda n: _vi(n, [4, 8])  # noqa: E731
    then1 = h.make_graph([h.make_node("MatMul", ["r", "w"], ["t1"], name="then_mm"),
                          h.make_node("Relu", ["t1"], ["t"], name="then_relu")], "then1", [], [o("t")])
    else1 = h.make_graph([h.make_node("MatMul", ["r", "w"], ["e1"], name="else_mm"),
                          h.make_node("Identity", ["e1"], ["e"], name="else_id")], "else1", [], [o("e")])
    inner_then = h.make_graph([h.make_node("MatMul", ["r", "w"], ["u1"], name="inner_mm")], "ithen", [], [o("u1")])
    inner_else = h.make_graph([h.make_node("Identity", ["r"], ["u2"], name="inner_id")], "ielse", [], [o("u2")])
    then2 = h.make_graph([h.make_node("If", ["c"], ["v1"], name="inner", then_branch=inner_then,
                                      else_branch=inner_else)], "then2", [], [o("v1")])
    else2 = h.make_graph([h.make_node("Identity", ["r"], ["v2"], name="else2_id")], "else2", [], [o("v2")])
    nodes = [h.make_node("MatMul", ["x", "w"], ["a"], name="mm0"), h.make_node("Relu", ["a"], ["r"], name="pre"),
             h.make_node("If", ["c"], ["b"], name="If", then_branch=then1, else_branch=else1),
             h.make_node("If", ["c"], ["d"], name="If2", then_branch=then2, else_branch=else2),
             h.make_node("Add", ["b", "d"], ["s"], name="add"), h.make_node("MatMul", ["s", "w"], ["y"], name="mm_out")]
    g = h.make_graph(nodes, "g", [_vi("x", [4, 8]), _vi("c", [], T.BOOL)], [o("y")], initializer=[w])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)
    return m


_ACTION = ("left float: Q/DQ is placed in the main graph only (ONNX Runtime's QDQ quantizer does not enter "
           "If/Loop/Scan bodies); the main graph is re-sorted with outer-scope reads as dependencies (ONNX Runtime's "
           "own sort ignores them)")


def test_subgraph_summary_counts_nodes_inside_every_body():
    from workbench.precision.quantize import TENSORRT_OP_TYPES, subgraph_summary

    m = _if_model()
    assert subgraph_summary(m, TENSORRT_OP_TYPES) == {
        "holders": ["If", "If2"], "nodes_inside": 8, "quantizable_inside": {"MatMul": 3}, "action": _ACTION}
    assert subgraph_summary(m, ("MatMul", "Relu", "Identity"))["quantizable_inside"] == {
        "MatMul": 3, "Relu": 1, "Identity": 3}
    assert subgraph_summary(m, ("Conv",))["quantizable_inside"] == {}
    assert subgraph_summary(_sum_model(2), TENSORRT_OP_TYPES) is None  # no subgraphs at all


def test_scope_producers_maps_body_reads_to_their_main_graph_producer():
    from workbench.precision.quantize import scope_producers

    # r from the Relu; the weight and the nested If's condition are initializer / graph input
    assert scope_producers(_if_model()) == {"r": ("pre", "Relu"), "w": ("", ""), "c": ("", "")}
    assert scope_producers(_sum_model(2)) == {}


def _renamed(m, drop: str, rename: dict[str, str]):
    """m without node `drop`, with node outputs renamed per `rename` (what ORT's QDQ quantizer does when it folds
    a quantized Relu into the Q range: the node before it takes over the Relu's output name)."""
    q = onnx.ModelProto()
    q.CopyFrom(m)
    keep = [n for n in q.graph.node if n.name != drop]
    for n in keep:
        for i, x in enumerate(n.output):
            n.output[i] = rename.get(x, x)
    del q.graph.node[:]
    q.graph.node.extend(keep)
    return q


def test_scope_changes_names_the_source_node_whose_output_a_body_now_reads_from_elsewhere():
    from workbench.precision.quantize import scope_changes, scope_producers

    m = _if_model()
    reads = scope_producers(m)
    assert scope_changes(reads, m) == {}  # nothing changed
    folded = _renamed(m, "pre", {"a": "r"})  # Relu folded: mm0 now writes r
    assert scope_changes(reads, folded) == {
        "pre": "its output 'r' is read inside an If/Loop/Scan body; the quantizer replaced Relu 'pre' there with "
               "MatMul 'mm0' (it folds a quantized activation into the Q range, which the body does not see)"}
    gone = _renamed(m, "pre", {})  # nothing writes r any more
    assert scope_changes(reads, gone) == {
        "pre": "its output 'r' is read inside an If/Loop/Scan body; the quantizer replaced Relu 'pre' there with "
               "nothing '' (it folds a quantized activation into the Q range, which the body does not see)"}
    # a body reading an initializer whose name a DequantizeLinear now writes: no source node to keep float
    dq = onnx.ModelProto()
    dq.CopyFrom(m)
    dq.graph.node.insert(0, h.make_node("DequantizeLinear", ["w_q", "w_s"], ["w"], name="w_DequantizeLinear"))
    assert scope_changes(reads, dq) == {}


def test_int8_cpu_form_keeps_a_relu_float_when_a_body_reads_its_output():
    """Real ORT quantization (ONNX Runtime CPU form, where Relu is quantized and folded): the Relu whose output
    the If bodies read is kept float and says why; the recipe's subgraph record counts the bodies."""
    from workbench.precision import make_variant

    m = _if_model()
    rng = np.random.default_rng(4)
    calib = [{"x": rng.normal(size=(4, 8)).astype(np.float32), "c": np.array(i % 2 == 0)} for i in range(16)]
    v = make_variant(m, "int8", calib=calib, progress=False, target="onnxruntime-cpu", min_samples=1,
                     preprocess=False)  # the bodies exactly as built (ORT's optimizer would drop an Identity)
    r = v.recipe
    assert list(r["scope_kept"]) == ["pre"]
    assert r["scope_kept"]["pre"].startswith("its output 'r' is read inside an If/Loop/Scan body; the quantizer "
                                             "replaced Relu 'pre' there with MatMul 'mm0'")
    assert r["kept_reasons"]["pre"] == r["scope_kept"]["pre"]
    # ORT-CPU form quantizes Relu too: 3 MatMuls and 1 Relu inside bodies stay float
    # (ORT's pre-processing may reorder the main graph: the holders in any order)
    assert sorted(r["subgraphs"]["holders"]) == ["If", "If2"] and r["subgraphs"]["nodes_inside"] == 8
    assert r["subgraphs"]["quantizable_inside"] == {"MatMul": 3, "Relu": 1}
    # the kept Relu still writes r itself, so the bodies read the clipped tensor
    prod = {o: n for n in v.model.proto.graph.node for o in n.output}
    assert prod["r"].name == "pre" and prod["r"].op_type == "Relu"
    for feeds in calib[:2]:  # both branches: same outputs as the float model up to int8 noise
        ref, got = _run(m, feeds), _run(v.model.proto, feeds)
        cos = float(np.dot(ref.ravel(), got.ravel()) / (np.linalg.norm(ref) * np.linalg.norm(got)))
        assert cos > 0.99, cos


def test_int8_with_every_quantizable_node_inside_bodies_says_so():
    import pytest

    from workbench.errors import WorkbenchWarning
    from workbench.precision import make_variant

    w = numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")
    then_g = h.make_graph([h.make_node("MatMul", ["x", "w"], ["t"], name="then_mm")], "then", [], [_vi("t", [4, 8])])
    else_g = h.make_graph([h.make_node("Identity", ["x"], ["e"], name="else_id")], "else", [], [_vi("e", [4, 8])])
    g = h.make_graph([h.make_node("Relu", ["x0"], ["x"], name="pre"),
                      h.make_node("If", ["c"], ["y"], name="gate", then_branch=then_g, else_branch=else_g)], "g",
                     [_vi("x0", [4, 8]), _vi("c", [], T.BOOL)], [_vi("y", [4, 8])], initializer=[w])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    calib = [{"x0": np.ones((4, 8), np.float32), "c": np.array(True)}] * 4
    with pytest.warns(WorkbenchWarning, match=r"quantizes nothing: all 1 quantizable node\(s\) \(MatMul\) are inside "
                                              r"If/Loop/Scan bodies \(gate\), which stay float"):
        v = make_variant(m, "int8", calib=calib, progress=False, target="tensorrt", min_samples=1)
    assert v.recipe["subgraphs"]["holders"] == ["gate"] and v.recipe["subgraphs"]["nodes_inside"] == 2


# ---------------------------------------------------------------------------- records on a quantized graph
def test_initializer_consumers_lists_the_quantizable_readers_of_each_weight():
    from workbench.precision.quantize import _initializer_consumers

    m = _ops_model([h.make_node("Conv", ["x", "W", "B"], ["c"], name="conv"),
                    h.make_node("Flatten", ["c"], ["f"], name="flat"),
                    h.make_node("MatMul", ["f", "W2"], ["m1"], name="mm"),
                    h.make_node("MatMul", ["f", "W2"], ["m2"], name="mm2"),
                    h.make_node("Add", ["m1", "A"], ["s"], name="add"), h.make_node("Add", ["s", "m2"], ["y"])],
                   [("x", [1, 1, 3, 3])], [("y", [1, 2])],
                   inits=[("W", np.ones((2, 1, 3, 3))), ("B", np.zeros(2)), ("W2", np.ones((2, 2))), ("A", np.ones(2))])
    assert _initializer_consumers(m, ("Conv", "MatMul")) == {"W": ["conv"], "B": ["conv"], "W2": ["mm", "mm2"]}
    assert _initializer_consumers(m, ("Add",)) == {"A": ["add"]}


def _qdq_graph():
    """A hand-made QDQ graph in ONNX Runtime's layout: x -> Q -> DQ, w_q -> DQ, MatMul on both DQs (int8),
    then LayerNorm, two Softmaxes and a Reshape by a Constant shape in float."""
    f32 = lambda n, a: numpy_helper.from_array(np.asarray(a, np.float32), n)  # noqa: E731
    inits = [f32("xs", 0.1), numpy_helper.from_array(np.array(0, np.int8), "xz"),
             numpy_helper.from_array(np.ones((4, 4), np.int8), "wq"), f32("ws", 0.05),
             numpy_helper.from_array(np.array(0, np.int8), "wz"), f32("g", np.ones(4)), f32("b", np.zeros(4))]
    nodes = [h.make_node("Constant", [], ["shp"], name="shape_c",
                         value=numpy_helper.from_array(np.array([-1], np.int64))),
             h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="x_q"),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="x_dq"),
             h.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="w_dq"),
             h.make_node("MatMul", ["xd", "wd"], ["a"], name="mm"),
             h.make_node("LayerNormalization", ["a", "g", "b"], ["n"], name="ln"),
             h.make_node("Softmax", ["n"], ["s1"], name="sm1"), h.make_node("Softmax", ["s1"], ["s2"], name="sm2"),
             h.make_node("Reshape", ["s2", "shp"], ["y"], name="rs")]
    g = h.make_graph(nodes, "g", [_vi("x", [2, 4])], [_vi("y", [8])], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)
    return m


def test_float_op_summary_counts_ops_without_a_dequantized_input_most_first():
    from workbench.precision.quantize import _float_op_summary

    m = _qdq_graph()
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    assert _run(m, {"x": x}).shape == (8,)  # a runnable graph
    # by hand: mm reads two DequantizeLinear outputs (int8); ln, sm1, sm2, rs compute in float;
    # Q / DQ / Constant are not compute ops. Most frequent first, ties in graph order.
    assert list(_float_op_summary(m).items()) == [("Softmax", 2), ("LayerNormalization", 1), ("Reshape", 1)]


def test_kept_nodes_are_quantizable_or_excluded_nodes_whose_data_and_weight_stay_float():
    from workbench.precision.quantize import _kept_nodes

    f32 = lambda n, a: numpy_helper.from_array(np.asarray(a, np.float32), n)  # noqa: E731
    i8 = lambda n, a: numpy_helper.from_array(np.asarray(a, np.int8), n)  # noqa: E731
    i32 = lambda n, a: numpy_helper.from_array(np.asarray(a, np.int32), n)  # noqa: E731
    inits = [f32("xs", 0.1), i8("xz", 0), i8("wq", np.ones((2, 1, 1, 1))), f32("ws", 0.05), i8("wz", 0),
             f32("W2", np.ones((2, 2, 1, 1))), i32("bq", [1, 2]), f32("bs", 0.005), i32("bz", 0), f32("A", np.ones(1))]
    nodes = [h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="x_q"),
             h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="x_dq"),
             h.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="w_dq"),
             h.make_node("Conv", ["xd", "wd"], ["c1"], name="conv_q"),          # int8 data and weight
             h.make_node("Relu", ["c1"], ["r"], name="relu"),                   # not quantizable, not excluded
             h.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"], name="b_dq"),
             h.make_node("Conv", ["r", "W2", "bd"], ["c2"], name="conv_f"),     # float data and weight
             h.make_node("Add", ["c2", "A"], ["y"], name="add_kept")]           # excluded by name
    g = h.make_graph(nodes, "g", [_vi("x", [1, 1, 2, 2])], [_vi("y", [1, 2, 2, 2])], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)
    # conv_f computes in float although its bias passes through a DequantizeLinear (only data and weight count);
    # the Q/DQ nodes of a source model that already had some are never "kept", even when named in keep_nodes
    assert _kept_nodes(m, {"Conv"}, ["add_kept", "x_q", "x_dq", "w_dq"]) == ["conv_f", "add_kept"]
    assert _kept_nodes(m, {"Conv", "Relu"}, []) == ["relu", "conv_f"]  # graph order


# ---------------------------------------------------------------------------- flatten_gemm_bias: which biases
def test_flatten_gemm_bias_touches_only_row_and_single_value_biases_of_gemms():
    from workbench.precision.quantize import flatten_gemm_bias

    rng = np.random.default_rng(5)
    arr = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    inits = {"W": arr(3, 4), "W2": arr(3, 2), "Wt": arr(5, 3), "W1": arr(3, 1), "Cw": arr(1, 4), "Cfull": arr(2, 4),
             "Ccol": arr(2, 1), "C11": arr(1, 1), "C1": arr(1), "C0": arr(), "Cn1": arr(1), "C12": arr(1, 2),
             "Crow": arr(1, 4)}
    gemm = lambda name, w, c, **kw: h.make_node("Gemm", ["a1", w, c], [f"y_{name}"], name=name, **kw)  # noqa: E731
    nodes = [h.make_node("Relu", ["a"], ["a1"], name="pre"),
             h.make_node("Where", ["cond", "z", "Cw"], ["w_out"], name="where"),   # not a Gemm
             gemm("g_in", "W", "Cin"),                                              # bias is a graph input
             h.make_node("Gemm", ["a1", "W"], ["y_g_nobias"], name="g_nobias"),
             gemm("g_full", "W", "Cfull"),                                          # a full (M, N) bias
             gemm("g_col", "W", "Ccol"),                                            # one value per row (M, 1)
             gemm("g_wdyn", "Wdyn", "C11"),                                         # N unknown: weight is an input
             gemm("g_n1", "W1", "Cn1"),                                             # already [N] with N = 1
             gemm("g_11", "W", "C11"), gemm("g_1", "W", "C1"),                      # one value for all channels
             gemm("g_0", "Wt", "C0", transB=1),                                     # ... N from B's rows (transB)
             gemm("g_two", "W2", "C12"), gemm("g_row", "W", "Crow")]                # [1, N] rows
    shape = {"w_out": [2, 4], "y_g_two": [2, 2], "y_g_0": [2, 5], "y_g_n1": [2, 1]}
    outs = [n.output[0] for n in nodes[1:]]
    g = h.make_graph(nodes, "g", [_vi("a", [2, 3]), _vi("cond", [2, 4], T.BOOL), _vi("z", [2, 4]), _vi("Cin", [1, 4]),
                                  _vi("Wdyn", [3, 4])],
                     [_vi(o, shape.get(o, [2, 4])) for o in outs],
                     initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)
    feeds = {"a": arr(2, 3), "cond": rng.random((2, 4)) > 0.5, "z": arr(2, 4), "Cin": arr(1, 4), "Wdyn": arr(3, 4)}
    before = _run_all(m, feeds)
    # C11 is read by two Gemms (g_wdyn leaves it alone): g_11 gets its own copy
    assert flatten_gemm_bias(m) == ["g_11", "g_1", "g_0", "g_two", "g_row"]
    dims = {i.name: list(i.dims) for i in m.graph.initializer}
    assert dims == {"W": [3, 4], "W2": [3, 2], "Wt": [5, 3], "W1": [3, 1], "Cw": [1, 4], "Cfull": [2, 4],
                    "Ccol": [2, 1], "C11": [1, 1], "C1": [4], "C0": [5], "Cn1": [1], "C12": [2], "Crow": [4],
                    "C11__wb_flat_0": [4]}
    node = {n.name: n for n in m.graph.node}
    assert node["g_11"].input[2] == "C11__wb_flat_0" and node["g_wdyn"].input[2] == "C11"
    vals = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    np.testing.assert_array_equal(vals["C11__wb_flat_0"], np.full(4, inits["C11"][0, 0]))
    np.testing.assert_array_equal(vals["C0"], np.full(5, inits["C0"]))
    onnx.checker.check_model(m, full_check=True)
    for b, a in zip(before, _run_all(m, feeds)):
        np.testing.assert_array_equal(a, b)


def test_int8_cpu_form_on_a_gemm_with_a_single_value_bias():
    """A Gemm bias of one value ([1, 1] or [1], legal: broadcast to (M, N)) crashed ONNX Runtime's int32-bias
    quantization ("cannot reshape array of size 6 into shape (1,)"); broadcast to [N] first, it quantizes."""
    from workbench.precision import make_variant

    rng = np.random.default_rng(6)
    for cshape in ((1, 1), (1,)):
        w = numpy_helper.from_array(rng.normal(size=(16, 6)).astype(np.float32), "w")
        c = numpy_helper.from_array(np.full(cshape, 0.5, np.float32), "c")
        g = h.make_graph([h.make_node("Gemm", ["x", "w", "c"], ["y"], name="gemm")], "g", [_vi("x", [4, 16])],
                         [_vi("y", [4, 6])], initializer=[w, c])
        src = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
        calib = [{"x": rng.normal(size=(4, 16)).astype(np.float32)} for _ in range(16)]
        v = make_variant(src, "int8", calib=calib, progress=False, target="onnxruntime-cpu")
        assert v.recipe["gemm_bias_flattened"] == ["gemm"] and v.recipe["dequantize_nodes"] > 0
        x = calib[-1]["x"]
        ref, got = _run(src, {"x": x}), _run(v.model.proto, {"x": x})
        assert float(np.dot(ref.ravel(), got.ravel()) / (np.linalg.norm(ref) * np.linalg.norm(got))) > 0.99


def test_fp8_supported_without_onnxruntime_quantization(monkeypatch):
    """An onnxruntime build without its quantization package: fp8 is unsupported, and says why."""
    import sys

    from workbench.precision.quantize import fp8_supported

    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # makes the import fail
    ok, why = fp8_supported()
    assert ok is False and why.startswith("onnxruntime.quantization unavailable: "), why


# ---------------------------------------------------------------------------- pre-processing and calibration records
def _conv_bn_model(x_dims=(1, 2, 6, 6), y_dims=(1, 4, 6, 6)):
    """Conv -> BatchNormalization -> Relu: ORT's graph optimizer (quant_pre_process) fuses the BN into the Conv."""
    rng = np.random.default_rng(7)
    f = lambda n, *s: numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)  # noqa: E731
    inits = [f("W", 4, 2, 3, 3), f("B", 4), f("sc", 4), f("bi", 4), f("mu", 4),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "var")]
    nodes = [h.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             h.make_node("BatchNormalization", ["c", "sc", "bi", "mu", "var"], ["b"], name="bn"),
             h.make_node("Relu", ["b"], ["y"], name="relu")]
    g = h.make_graph(nodes, "g", [_vi("x", list(x_dims))], [_vi("y", list(y_dims))], initializer=inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _calib_x(n=16, seed=8):
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(size=(1, 2, 6, 6)).astype(np.float32)} for _ in range(n)]


def test_preprocess_fuses_unless_a_kept_node_would_vanish_or_it_is_off():
    from workbench.precision import make_variant

    ops = lambda v: [n.op_type for n in v.model.proto.graph.node if n.op_type not in ("QuantizeLinear",  # noqa: E731
                                                                                    "DequantizeLinear")]
    fused = make_variant(_conv_bn_model(), "int8", calib=_calib_x(), progress=False, target="tensorrt")
    assert fused.recipe["preprocess"] == {"applied": True, "skip_optimization": False}
    assert "BatchNormalization" not in ops(fused)  # folded into the Conv by ORT's optimizer
    kept = make_variant(_conv_bn_model(), "int8", calib=_calib_x(), progress=False, target="tensorrt",
                        keep_nodes=["bn"])
    assert kept.recipe["preprocess"] == {"applied": True, "skip_optimization": True,
                                         "note": "ORT graph optimization renamed/fused keep_nodes ['bn']"}
    assert "bn" in {n.name for n in kept.model.proto.graph.node} and "BatchNormalization" in ops(kept)
    off = make_variant(_conv_bn_model(), "int8", calib=_calib_x(), progress=False, target="tensorrt",
                       preprocess=False)
    assert off.recipe["preprocess"] == {"applied": False, "reason": "disabled (preprocess=False)"}
    assert "BatchNormalization" in ops(off)


def test_preprocess_failing_twice_quantizes_the_model_as_given(monkeypatch):
    """ONNX Runtime's pre-processing raising (a stand-in for its symbolic shape inference failing on an unusual
    graph): both attempts are recorded as failed and the recipe quantizes the model unprocessed."""
    import onnxruntime.quantization.shape_inference as si

    from workbench.precision import make_variant

    calls = []

    def failing(src, dst, **kw):
        calls.append(kw["skip_optimization"])
        raise RuntimeError("symbolic shape inference failed")

    monkeypatch.setattr(si, "quant_pre_process", failing)
    v = make_variant(_conv_bn_model(), "int8", calib=_calib_x(), progress=False, target="tensorrt")
    assert calls == [False, True]
    assert v.recipe["preprocess"] == {"applied": False, "reason": "quant_pre_process({'skip_optimization': True}) "
                                                                  "failed: RuntimeError: symbolic shape inference failed"}
    assert "BatchNormalization" in [n.op_type for n in v.model.proto.graph.node] and v.recipe["dequantize_nodes"] > 0


def test_calibration_record_counts_the_samples_it_ran():
    from workbench.precision import make_variant

    v = make_variant(_conv_bn_model(), "int8", calib=_calib_x(12), progress=False, target="tensorrt",
                     calibration_method="percentile", min_samples=1)
    c = v.recipe["calibration"]
    assert c["method"] == "percentile" and c["num_samples"] == 12 and c["runs"]["samples"] == 12
    assert c["calibrator_options"] == {"num_bins": 2048, "percentile": 99.999}
    assert c["synthetic"] is False and c["seconds"] > 0


def test_calibration_options_reach_the_data_preparation():
    """num_calib, batch_size, shapes and min_samples, given to make_variant, shape the calibration set."""
    import warnings

    from workbench.precision import make_variant

    m = _conv_bn_model(("n", 2, "h", "w"), ("n", 4, "h", "w"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        v = make_variant(m, "int8", calib="synthetic", progress=False, target="tensorrt", num_calib=8, batch_size=4,
                         shapes={"x": [4, 2, 6, 6]}, min_samples=1)
    c = v.recipe["calibration"]
    assert c["synthetic"] is True and c["num_samples"] == 8 and c["num_batches"] == 2 and c["runs"]["samples"] == 8
    # no few-samples warning (min_samples=1) and no dynamic dims defaulted to 1 (shapes gives h and w)
    texts = [str(w.message) for w in seen]
    assert not [t for t in texts if "sample" in t or "dynamic dims" in t], texts


def test_a_bad_target_or_placement_is_refused_before_the_data_is_read():
    import pytest

    from workbench.errors import UsageError
    from workbench.precision import make_variant

    bad_data = [{"not_an_input": np.ones((1, 2, 6, 6), np.float32)}]  # would be a DataError if it were read
    with pytest.raises(UsageError, match="unknown int8 target 'bogus'"):
        make_variant(_conv_bn_model(), "int8", calib=bad_data, progress=False, target="bogus")
    with pytest.raises(UsageError, match="unknown placement 'bogus'"):
        make_variant(_conv_bn_model(), "int8", calib=bad_data, progress=False, placement="bogus")


def test_initializers_listed_as_graph_inputs_are_dropped_and_counted():
    from workbench.precision import make_variant

    m = _conv_bn_model()
    m.graph.input.extend([_vi("W", [4, 2, 3, 3]), _vi("B", [4])])  # IR < 4 style: weights listed as inputs too
    v = make_variant(m, "int8", calib=_calib_x(), progress=False, target="tensorrt")
    assert v.recipe["dropped_initializer_inputs"] == 2
    assert [i.name for i in v.model.proto.graph.input] == ["x"]  # the variant needs only x


def test_the_recipe_writes_nothing_in_the_working_directory(tmp_path, monkeypatch):
    from workbench.precision import make_variant

    monkeypatch.chdir(tmp_path)
    v = make_variant(_conv_bn_model(), "int8", calib=_calib_x(), progress=False, target="tensorrt")
    assert v.recipe["dequantize_nodes"] > 0 and list(tmp_path.iterdir()) == []


def test_the_calibration_bar_names_the_model_and_method(capsys):
    from workbench.precision import make_variant

    make_variant(_conv_bn_model(), "int8", calib=_calib_x(), progress=True, target="tensorrt")
    err = capsys.readouterr().err
    assert "calibrating g (minmax)" in err, err[-500:]
    make_variant(_conv_bn_model(), "int8", calib=_calib_x(), progress=False, target="tensorrt")
    assert "calibrating" not in capsys.readouterr().err  # progress=False: no bar (quiet sweeps)


def test_tool_modelopt_without_modelopt_installed_says_so():
    import importlib.util

    import pytest

    from workbench.errors import BackendUnavailable
    from workbench.precision import make_variant

    if importlib.util.find_spec("modelopt") is not None:
        pytest.skip("NVIDIA ModelOpt is installed here")
    for precision in ("int8", "fp8"):
        with pytest.raises(BackendUnavailable, match="tool='modelopt' needs NVIDIA ModelOpt"):
            make_variant(_conv_bn_model(), precision, calib=_calib_x(), progress=False, tool="modelopt")


class _OldQuantType:  # onnxruntime before float8 (1.15): only the integer QuantTypes
    QInt8 = 0
    QUInt8 = 1


def test_fp8_on_an_onnxruntime_without_float8(monkeypatch):
    """Without ModelOpt: an UnsupportedError naming the reason; with tool='modelopt' asked for, ModelOpt's absence
    is the error (the ORT check does not apply)."""
    import importlib.util

    import onnxruntime.quantization as oq
    import pytest

    from workbench.errors import BackendUnavailable, UnsupportedError
    from workbench.precision import make_variant

    if importlib.util.find_spec("modelopt") is not None:
        pytest.skip("NVIDIA ModelOpt is installed here")
    monkeypatch.setattr(oq, "QuantType", _OldQuantType)
    with pytest.raises(UnsupportedError, match=r"^fp8 recipe: this onnxruntime has no QuantType.QFLOAT8E4M3FN"):
        make_variant(_conv_bn_model(), "fp8", calib=_calib_x(), progress=False)
    with pytest.raises(BackendUnavailable, match="tool='modelopt' needs NVIDIA ModelOpt"):
        make_variant(_conv_bn_model(), "fp8", calib=_calib_x(), progress=False, tool="modelopt")


def test_fp8_without_float8_falls_back_to_modelopt_when_installed(monkeypatch):
    """A stand-in for NVIDIA ModelOpt (not installable here) records what the recipe hands it: the loaded model,
    the graph upgraded to opset 19, the request switched to tool='modelopt', the validated calibration set."""
    import onnxruntime.quantization as oq

    import workbench.precision.modelopt as mo
    from workbench.precision import make_variant

    calls = []

    def modelopt_standin(model, proto, req, precision, cset, method):
        calls.append((model.name, max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                      req.tool, precision, cset.num_samples, method))
        return "variant from modelopt"

    monkeypatch.setattr(oq, "QuantType", _OldQuantType)
    monkeypatch.setattr(mo, "modelopt_available", lambda: True)
    monkeypatch.setattr(mo, "quantize", modelopt_standin)
    out = make_variant(_conv_bn_model(), "fp8", calib=_calib_x(12), progress=False, min_samples=1,
                       calibration_method="entropy")
    assert out == "variant from modelopt"
    assert calls == [("g", 19, "modelopt", "fp8", 12, "entropy")]


def test_preprocess_merges_differently_named_batch_dims():
    """Exporters name one batch dim differently on two inputs ('a' and 'b' here, added together): ORT's symbolic
    shape inference merges them when asked (auto_merge) and fails otherwise; the recipe asks, so it pre-processes."""
    from workbench.precision import make_variant

    w = numpy_helper.from_array(np.random.default_rng(9).normal(size=(4, 4)).astype(np.float32), "w")
    g = h.make_graph([h.make_node("Add", ["x", "y"], ["s"], name="add"), h.make_node("MatMul", ["s", "w"], ["z"],
                                                                                     name="mm")], "g",
                     [_vi("x", ["a", 4]), _vi("y", ["b", 4])], [_vi("z", ["a", 4])], initializer=[w])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    rng = np.random.default_rng(10)
    calib = [{"x": rng.normal(size=(2, 4)).astype(np.float32), "y": rng.normal(size=(2, 4)).astype(np.float32)}
             for _ in range(4)]
    v = make_variant(m, "int8", calib=calib, progress=False, target="tensorrt", min_samples=1)
    assert v.recipe["preprocess"] == {"applied": True, "skip_optimization": False}


def test_min_samples_decides_between_warning_refusal_and_silence():
    import pytest

    from workbench.errors import DataError
    from workbench.precision import make_variant

    with pytest.warns(UserWarning, match=r"only 8 sample\(s\) \(fewer than 16\)"):
        default = make_variant(_conv_bn_model(), "int8", calib=_calib_x(8), progress=False, target="tensorrt")
    assert "only 8 sample(s)" in default.recipe["calibration"]["warning"]
    quiet = make_variant(_conv_bn_model(), "int8", calib=_calib_x(8), progress=False, target="tensorrt", min_samples=8)
    assert "warning" not in quiet.recipe["calibration"] and quiet.recipe["calibration"]["num_samples"] == 8
    with pytest.raises(DataError, match=r"calibration got 8 sample\(s\)"):
        make_variant(_conv_bn_model(), "int8", calib=_calib_x(8), progress=False, target="tensorrt", min_samples=9)
