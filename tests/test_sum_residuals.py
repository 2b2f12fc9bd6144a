"""Residual connections written as ``Sum`` (Caffe2/TF exporters; the onnx wheel's light ResNet-50 has 16) are
quantized like ``Add`` in ONNX Runtime's int8 form: before the rewrite ORT left each one in float with a
DequantizeLinear/QuantizeLinear round trip (the default int8 ResNet-50 missed the 2x goal). Oracles: ORT's
own float Sum on the same inputs, and ORT's optimized graph (which kernels actually run)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import workbench as wb
from workbench.precision import make_variant
from workbench.precision.quantize import sums_to_adds

RNG = np.random.default_rng(0)


def _session(proto, optimized_to=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if optimized_to:
        so.optimized_model_filepath = str(optimized_to)
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _residual_model(n_sum_inputs: int = 2) -> onnx.ModelProto:
    """x -> Conv -> Relu -> Conv -> Sum(conv2, x[, more]) -> Relu -> y, 8 channels; the same weights each call."""
    rng = np.random.default_rng(1)
    w1 = nh.from_array(rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32), "w1")
    w2 = nh.from_array(rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32), "w2")
    extra = [f"x{i}" for i in range(n_sum_inputs - 2)]
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             h.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1])]
    for e in extra:
        nodes.append(h.make_node("Relu", ["x"], [e], name=f"relu_{e}"))
    nodes += [h.make_node("Sum", ["c2", "x", *extra], ["s"], name="residual"),
              h.make_node("Relu", ["s"], ["y"], name="relu_out")]
    g = h.make_graph(nodes, "residual", [h.make_tensor_value_info("x", T.FLOAT, [1, 8, 16, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 8, 16, 16])], [w1, w2])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def test_sums_to_adds_is_exact_and_keeps_names():
    x = RNG.normal(size=(1, 8, 16, 16)).astype(np.float32)
    for k in (2, 4):
        m = _residual_model(k)
        want = _session(m).run(None, {"x": x})[0]
        p = onnx.ModelProto()
        p.CopyFrom(m)
        assert sums_to_adds(p) == ["residual"]
        onnx.checker.check_model(p, full_check=True)
        ops = Counter(n.op_type for n in p.graph.node)
        assert ops["Sum"] == 0 and ops["Add"] == k - 1
        adds = [n for n in p.graph.node if n.op_type == "Add"]
        assert adds[0].name == "residual" and adds[-1].output[0] == "s"
        got = _session(p).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_int8_ort_form_quantizes_sum_residuals(tmp_path):
    src = tmp_path / "residual.onnx"
    onnx.save(_residual_model(2), src)
    before = src.read_bytes()
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=RNG.normal(size=(16, 8, 16, 16)).astype(np.float32))
    v = make_variant(wb.load(src), "int8", calib=calib, progress=False, backend="onnxruntime")
    assert src.read_bytes() == before  # the source is never written
    assert v.recipe["sums_as_adds"] == ["residual"]
    assert "Sum" not in {n.op_type for n in v.model.proto.graph.node}
    _session(v.model.proto, optimized_to=tmp_path / "opt.onnx")
    ran = Counter(n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node)
    # the residual add runs as an integer kernel; no float Sum/Add left between the convolutions
    assert ran["QLinearAdd"] == 1 and ran["Sum"] == 0 and ran["Add"] == 0, ran
    x = RNG.normal(size=(1, 8, 16, 16)).astype(np.float32)
    ref = _session(_residual_model(2)).run(None, {"x": x})[0].ravel()
    out = _session(v.model.proto).run(None, {"x": x})[0].ravel()
    assert float(ref @ out / np.linalg.norm(ref) / np.linalg.norm(out)) > 0.995


def test_tensorrt_form_leaves_sum_alone(tmp_path):
    src = tmp_path / "residual.onnx"
    onnx.save(_residual_model(2), src)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=RNG.normal(size=(16, 8, 16, 16)).astype(np.float32))
    v = make_variant(wb.load(src), "int8", calib=calib, progress=False, target="tensorrt")
    assert v.recipe["sums_as_adds"] == []  # Add is not in TensorRT's Q/DQ placement: nothing to gain
    assert "Sum" in {n.op_type for n in v.model.proto.graph.node}
