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
