"""Roofline: achieved TFLOP/s and GB/s against the device's *measured* peaks.

Peaks are measured once on the device, with the same software the workbench runs (no torch needed):

- matrix peak per dtype: a large square ``MatMul`` (default 8192³) built as a one-node ONNX model and
  run by ONNX Runtime's CUDA provider with inputs bound on the device (IOBinding), timed over several
  iterations after warm-up. FLOPs = 2·N³.
- memory peak: a device-to-device ``cudaMemcpy`` of a large buffer (default 2 GiB) through cuda-python,
  timed with CUDA events; bytes moved = 2 × size (read + write).

The variant's FLOPs and bytes come from ``workbench.inspect`` (per node, summed); achieved rates are
FLOPs / p50 latency and bytes / p50 latency. ``fraction_of_peak`` = max(achieved_tflops / peak_tflops,
achieved_gbps / peak_gbps): the closer roof. Arithmetic intensity = FLOPs / bytes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from ..records import Record


@dataclass
class DevicePeaks(Record):
    kind = "device_peaks"
    device: dict = field(default_factory=dict)
    matmul_tflops: dict = field(default_factory=dict)  # dtype -> TFLOP/s
    matmul_n: int = 0
    copy_gbps: float = 0.0
    copy_bytes: int = 0
    method: str = "ONNX Runtime CUDA MatMul (IOBinding) + cudaMemcpy D2D with CUDA events"

    def ridge_point(self, dtype: str = "float16") -> float:
        """FLOP/byte where the memory roof meets the compute roof."""
        return self.matmul_tflops.get(dtype, 0.0) * 1e12 / (self.copy_gbps * 1e9) if self.copy_gbps else float("nan")


def _matmul_model(n: int, elem_type: int):
    """One MatMul of n×n inputs. bfloat16 has no numpy dtype ORT can bind, so its inputs arrive as float32
    and are cast inside the graph (two n² casts: < 10 % of the n³ MatMul's time at n = 8192)."""
    from onnx import TensorProto, helper

    io_type = TensorProto.FLOAT if elem_type == TensorProto.BFLOAT16 else elem_type
    a = helper.make_tensor_value_info("a", io_type, [n, n])
    b = helper.make_tensor_value_info("b", io_type, [n, n])
    y = helper.make_tensor_value_info("y", elem_type, [n, n])
    nodes = [helper.make_node("MatMul", ["a_", "b_"] if io_type != elem_type else ["a", "b"], ["y"], name="peak_matmul")]
    if io_type != elem_type:
        nodes = [helper.make_node("Cast", ["a"], ["a_"], to=elem_type), helper.make_node("Cast", ["b"], ["b_"], to=elem_type)] + nodes
    g = helper.make_graph(nodes, "peak", [a, b], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def roofline_dtype(precision: str) -> str:
    """The matrix roof a variant of ``precision`` is measured against (``Recipe.roofline_dtype`` in the
    precision registry: int8/fp8 Q/DQ graphs on ORT run their MatMuls in float16)."""
    from ..precision import get_recipe

    return get_recipe(precision).roofline_dtype


def __getattr__(name: str):
    # ``PRECISION_ROOF``: {precision: roof dtype}, read from the precision registry.
    if name == "PRECISION_ROOF":
        from ..precision import REGISTRY

        return {p: r.roofline_dtype for p, r in REGISTRY.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def measure_matmul_tflops(dtypes=("float32", "tf32", "float16", "bfloat16"), n: int = 8192, iterations: int = 10,
                          device_id: int = 0) -> dict[str, float]:
    """Peak matrix rate per dtype through ONNX Runtime's CUDA provider ("tf32" = float32 with TF32 on)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailable("measuring GPU peaks needs onnxruntime-gpu (pip install 'trt-workbench[gpu]')")
    out = {}
    for name in dtypes:
        tf32 = name == "tf32"
        et = {"float32": TensorProto.FLOAT, "tf32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16,
              "bfloat16": TensorProto.BFLOAT16}[name]
        np_dt = np.float32 if et == TensorProto.BFLOAT16 else helper.tensor_dtype_to_np_dtype(et)
        model = _matmul_model(n, et)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(model.SerializeToString(), so,
                                        providers=[("CUDAExecutionProvider", {"device_id": device_id, "use_tf32": int(tf32)})])
        except Exception:  # e.g. no bf16 MatMul kernel in this build
            out[name] = float("nan")
            continue
        try:
            out[name] = _time_matmul(ort, sess, n, np_dt, iterations, device_id)
        except Exception:
            out[name] = float("nan")
    return out


def _time_matmul(ort, sess, n: int, np_dt, iterations: int, device_id: int) -> float:
    """TFLOP/s of one bound n×n MatMul session: inputs on the device, warm-up, then a timed loop."""
    rng = np.random.default_rng(0)
    a = ort.OrtValue.ortvalue_from_numpy(rng.standard_normal((n, n)).astype(np.float32).astype(np_dt), "cuda", device_id)
    b = ort.OrtValue.ortvalue_from_numpy(rng.standard_normal((n, n)).astype(np.float32).astype(np_dt), "cuda", device_id)
    io = sess.io_binding()
    io.bind_ortvalue_input("a", a)
    io.bind_ortvalue_input("b", b)
    io.bind_output("y", "cuda", device_id)
    for _ in range(3):
        sess.run_with_iobinding(io)
    io.synchronize_outputs()
    t = time.perf_counter()
    for _ in range(iterations):
        sess.run_with_iobinding(io)
    io.synchronize_outputs()
    dt = (time.perf_counter() - t) / iterations
    return 2.0 * n**3 / dt / 1e12


def measure_copy_gbps(nbytes: int = 2 << 30, iterations: int = 10, device_id: int = 0) -> float:
    """Device-to-device copy bandwidth (read + write bytes per second) with cuda-python and CUDA events."""
    try:
        from cuda.bindings import runtime as rt
    except ImportError as e:
        raise BackendUnavailable("measuring copy bandwidth needs cuda-python (pip install cuda-python)") from e

    def ok(res):
        err = res[0] if isinstance(res, tuple) else res
        if int(getattr(err, "value", err)) != 0:
            raise RuntimeError(f"CUDA call failed: {err}")
        return res[1] if isinstance(res, tuple) and len(res) == 2 else res

    ok(rt.cudaSetDevice(device_id))
    src = ok(rt.cudaMalloc(nbytes))
    dst = ok(rt.cudaMalloc(nbytes))
    start, stop = ok(rt.cudaEventCreate()), ok(rt.cudaEventCreate())
    try:
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        for _ in range(2):
            ok(rt.cudaMemcpy(dst, src, nbytes, kind))
        ok(rt.cudaDeviceSynchronize())
        ok(rt.cudaEventRecord(start, 0))
        for _ in range(iterations):
            ok(rt.cudaMemcpyAsync(dst, src, nbytes, kind, 0))
        ok(rt.cudaEventRecord(stop, 0))
        ok(rt.cudaEventSynchronize(stop))
        ms = ok(rt.cudaEventElapsedTime(start, stop))
    finally:
        rt.cudaFree(src)
        rt.cudaFree(dst)
        rt.cudaEventDestroy(start)
        rt.cudaEventDestroy(stop)
    return 2.0 * nbytes * iterations / (ms / 1e3) / 1e9


def measure_peaks(device_id: int = 0, *, n: int = 8192, copy_bytes: int = 2 << 30) -> DevicePeaks:
    from ..device import cuda_device_info

    return DevicePeaks(device=cuda_device_info(device_id), matmul_tflops=measure_matmul_tflops(n=n, device_id=device_id),
                       matmul_n=n, copy_gbps=measure_copy_gbps(copy_bytes, device_id=device_id), copy_bytes=copy_bytes)


def roofline_row(flops: float, bytes_moved: float, latency_ms: float, peaks: DevicePeaks,
                 compute_dtype: str = "float32") -> dict[str, Any]:
    """Achieved rates of one run against the measured roofs."""
    s = latency_ms / 1e3
    tflops = flops / s / 1e12 if s > 0 else float("nan")
    gbps = bytes_moved / s / 1e9 if s > 0 else float("nan")
    peak_t = peaks.matmul_tflops.get(compute_dtype, float("nan"))
    frac_t = tflops / peak_t if peak_t and peak_t == peak_t else float("nan")
    frac_b = gbps / peaks.copy_gbps if peaks.copy_gbps else float("nan")
    intensity = flops / bytes_moved if bytes_moved else float("nan")
    # Attainable = min(compute roof, intensity x memory roof); fraction against that attainable rate.
    attainable = min(peak_t, intensity * peaks.copy_gbps / 1e3) if intensity == intensity else float("nan")
    return {"achieved_tflops": tflops, "achieved_gbps": gbps, "arith_intensity": intensity,
            "peak_tflops": peak_t, "peak_gbps": peaks.copy_gbps, "fraction_compute": frac_t,
            "fraction_memory": frac_b, "attainable_tflops": attainable,
            "fraction_of_roofline": tflops / attainable if attainable and attainable == attainable else float("nan")}


def layer_intensity(nodes_frame) -> "Any":
    """Per-node arithmetic intensity (FLOPs/bytes) from an inspection's nodes frame (columns flops, bytes)."""
    df = nodes_frame.copy()
    df["arith_intensity"] = df["flops"] / df["bytes"].where(df["bytes"] > 0)
    return df
