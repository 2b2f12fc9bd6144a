"""Roofline arithmetic (workbench.measure.roofline) by hand, and the peak-MatMul model run on ONNX Runtime CPU.

Measuring the peaks themselves (measure_matmul_tflops, measure_copy_gbps, measure_peaks) times a CUDA device:
tests/test_gpu_ort.py -m gpu. Here: the formulas with numbers worked out by hand, and the one-node model those
functions time, checked with onnx.checker and run on ORT's CPU provider against numpy.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto as T

from workbench.measure import roofline as R
from workbench.measure.roofline import DevicePeaks, layer_intensity, roofline_dtype, roofline_row

PEAKS = DevicePeaks(matmul_tflops={"float16": 400.0, "float32": 50.0, "tf32": float("nan")}, copy_gbps=4000.0)


def test_ridge_point_by_hand():
    # float16: 400e12 FLOP/s / 4000e9 B/s = 100 FLOP/B; float32: 50e12 / 4000e9 = 12.5
    assert PEAKS.ridge_point() == 100.0 and PEAKS.ridge_point("float16") == 100.0
    assert PEAKS.ridge_point("float32") == 12.5
    assert PEAKS.ridge_point("bfloat16") == 0.0  # no peak measured for it
    assert math.isnan(DevicePeaks(matmul_tflops={"float16": 1.0}).ridge_point())  # no copy peak
    d = DevicePeaks()
    assert d.matmul_tflops == {} and d.copy_gbps == 0.0 and d.matmul_n == 0 and d.copy_bytes == 0 and d.device == {}
    assert d.matmul_tflops is not DevicePeaks().matmul_tflops
    assert "MatMul" in d.method and "cudaMemcpy" in d.method and DevicePeaks.kind == "device_peaks"


def test_roofline_row_compute_bound_by_hand():
    # 2e12 FLOP and 1e9 B in 10 ms: 200 TFLOP/s, 100 GB/s, intensity 2000 FLOP/B (> ridge 100: compute bound)
    r = roofline_row(2e12, 1e9, 10.0, PEAKS, "float16")
    assert r["achieved_tflops"] == pytest.approx(200.0) and r["achieved_gbps"] == pytest.approx(100.0)
    assert r["arith_intensity"] == 2000.0 and r["peak_tflops"] == 400.0 and r["peak_gbps"] == 4000.0
    assert r["fraction_compute"] == pytest.approx(0.5) and r["fraction_memory"] == pytest.approx(0.025)
    assert r["attainable_tflops"] == 400.0  # min(400, 2000 x 4000 GB/s = 8000 TFLOP/s)
    assert r["fraction_of_roofline"] == pytest.approx(0.5)
    assert set(r) == {"achieved_tflops", "achieved_gbps", "arith_intensity", "peak_tflops", "peak_gbps",
                      "fraction_compute", "fraction_memory", "attainable_tflops", "fraction_of_roofline"}


def test_roofline_row_units_are_exact_powers_of_ten():
    # 4e14 FLOP and 3e12 B in exactly one second: 400 TFLOP/s and 3000 GB/s, exactly
    r = roofline_row(4e14, 3e12, 1000.0, PEAKS, "float16")
    assert r["achieved_tflops"] == 400.0 and r["achieved_gbps"] == 3000.0 and r["fraction_compute"] == 1.0


def test_roofline_row_memory_bound_by_hand():
    # 1e10 FLOP, 1e9 B in 1 ms: 10 TFLOP/s, 1000 GB/s, intensity 10 FLOP/B: attainable 10 x 4000 GB/s = 40 TFLOP/s
    r = roofline_row(1e10, 1e9, 1.0, PEAKS, "float32")
    assert r["achieved_tflops"] == pytest.approx(10.0) and r["achieved_gbps"] == pytest.approx(1000.0)
    assert r["attainable_tflops"] == pytest.approx(40.0) and r["fraction_of_roofline"] == pytest.approx(0.25)
    assert r["fraction_compute"] == pytest.approx(0.2) and r["fraction_memory"] == pytest.approx(0.25)
    assert roofline_row(1e10, 1e9, 1.0, PEAKS)["peak_tflops"] == 50.0  # default roof: float32


def test_roofline_row_missing_numbers_give_nan_not_errors():
    nan = math.isnan
    z = roofline_row(1e9, 1e6, 0.0, PEAKS, "float16")  # no latency
    assert nan(z["achieved_tflops"]) and nan(z["achieved_gbps"]) and nan(z["fraction_of_roofline"])
    assert z["arith_intensity"] == 1000.0
    neg = roofline_row(1e9, 1e6, -1.0, PEAKS, "float16")
    assert nan(neg["achieved_tflops"]) and nan(neg["achieved_gbps"])
    u = roofline_row(1e12, 1e9, 1.0, PEAKS, "int4")  # no roof for that dtype
    assert nan(u["peak_tflops"]) and nan(u["fraction_compute"]) and nan(u["attainable_tflops"])
    assert u["fraction_memory"] == pytest.approx(0.25)
    t = roofline_row(1e12, 1e9, 1.0, PEAKS, "tf32")  # measured as NaN (no kernel in that build)
    assert nan(t["fraction_compute"]) and nan(t["fraction_of_roofline"])
    zero_peak = roofline_row(1e12, 1e9, 1.0, DevicePeaks(matmul_tflops={"float32": 0.0}, copy_gbps=4000.0))
    assert nan(zero_peak["fraction_compute"]) and zero_peak["attainable_tflops"] == 0.0
    assert nan(zero_peak["fraction_of_roofline"])
    b0 = roofline_row(1e12, 0, 1.0, PEAKS, "float16")  # no byte count
    assert nan(b0["arith_intensity"]) and nan(b0["attainable_tflops"]) and nan(b0["fraction_of_roofline"])
    assert b0["achieved_gbps"] == 0.0 and b0["fraction_memory"] == 0.0
    nocopy = roofline_row(1e12, 1e9, 1.0, DevicePeaks(matmul_tflops={"float32": 50.0}), "float32")
    assert nan(nocopy["fraction_memory"]) and nocopy["attainable_tflops"] == 0.0
    assert nan(nocopy["fraction_of_roofline"]) and nocopy["fraction_compute"] == pytest.approx(20.0)


def test_layer_intensity_per_node():
    nodes = pd.DataFrame({"node": ["a", "b", "c", "d"], "flops": [100.0, 50.0, 7.0, 3.0], "bytes": [10.0, 0.0, -1.0, 1.0]})
    out = layer_intensity(nodes)
    assert out["arith_intensity"].iloc[0] == 10.0 and out["arith_intensity"].iloc[1:3].isna().all()
    assert out["arith_intensity"].iloc[3] == 3.0  # one byte is a byte count like any other
    assert "arith_intensity" not in nodes and out["node"].tolist() == ["a", "b", "c", "d"]


@pytest.mark.parametrize("elem,np_dt", [(T.FLOAT, np.float32), (T.FLOAT16, np.float16)])
def test_peak_matmul_model_runs_and_multiplies(elem, np_dt):
    m = R._matmul_model(8, elem)
    onnx.checker.check_model(m, full_check=True)
    assert [n.op_type for n in m.graph.node] == ["MatMul"] and m.graph.node[0].name == "peak_matmul"
    assert m.opset_import[0].version == 17 and m.ir_version == 9 and m.graph.name == "peak"
    assert [(i.name, i.type.tensor_type.elem_type) for i in m.graph.input] == [("a", elem), ("b", elem)]
    assert [d.dim_value for d in m.graph.input[1].type.tensor_type.shape.dim] == [8, 8]
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((8, 8)).astype(np_dt) for _ in range(2))
    y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})[0]
    assert y.dtype == np_dt and y.shape == (8, 8)
    np.testing.assert_allclose(y.astype(np.float32), a.astype(np.float32) @ b.astype(np.float32), rtol=2e-2, atol=2e-2)


def test_peak_matmul_model_for_bfloat16_takes_float32_and_casts_inside():
    m = R._matmul_model(4, T.BFLOAT16)
    onnx.checker.check_model(m, full_check=True)
    assert [(n.op_type, list(n.input), list(n.output)) for n in m.graph.node] == [
        ("Cast", ["a"], ["a_"]), ("Cast", ["b"], ["b_"]), ("MatMul", ["a_", "b_"], ["y"])]
    assert all(n.attribute[0].i == T.BFLOAT16 for n in m.graph.node[:2])
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [T.FLOAT, T.FLOAT]
    assert m.graph.output[0].type.tensor_type.elem_type == T.BFLOAT16
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    assert [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim] == [4, 4]


def test_roof_of_each_precision():
    assert {p: roofline_dtype(p) for p in ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")} == {
        "fp32": "float32", "tf32": "tf32", "fp16": "float16", "bf16": "bfloat16", "int8": "float16", "fp8": "float16"}
    assert R.PRECISION_ROOF == {"fp32": "float32", "tf32": "tf32", "fp16": "float16", "bf16": "bfloat16",
                                "int8": "float16", "fp8": "float16"}
    with pytest.raises(AttributeError, match="has no attribute 'NOPE'"):
        R.NOPE  # noqa: B018
    assert not hasattr(R, "precision_roof")
