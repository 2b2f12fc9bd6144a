"""GPU path through ONNX Runtime's CUDA provider (run with `pytest -m gpu` on a machine with an NVIDIA
GPU and onnxruntime-gpu). Skipped elsewhere, with the reason printed by `pytest -ra`.

Every precision variant the CPU path builds must also build and run on the GPU, agree with the CPU
FP32 reference, be timed with CUDA events, and give per-layer rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.backends import BuildOptions, get_backend
from workbench.compare import metrics as M
from workbench.data import NpzDataset, synthetic_inputs
from workbench.variant import Variant

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


def _gpu_reason() -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime-gpu (CUDA execution provider) not installed"
    from workbench.device import cuda_device_info

    info = cuda_device_info(0)
    if "error" in info:
        return f"no NVIDIA GPU: {info['error']}"
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))]


@pytest.fixture(scope="module")
def digits():
    m = wb.load(SAMPLES / "digits_cnn.onnx")
    ds = NpzDataset(SAMPLES / "digits_test.npz", m, label_keys=["label"])
    return m, ds


@pytest.fixture(scope="module")
def reference(digits):
    m, ds = digits
    eng = get_backend("onnxruntime").build(Variant.of(m), options=BuildOptions(progress=False))
    return np.concatenate([eng.run(b)["logits"] for b in ds.batches(32)])


def test_device_facts_via_cuda_python_and_nvml():
    from workbench.device import cuda_device_info, gpu_memory_used

    info = cuda_device_info(0)
    major, minor = (int(x) for x in info["compute_capability"].split("."))
    assert info["name"] and major >= 7 and info["total_memory_bytes"] > 1 << 30
    mem = gpu_memory_used(0)
    assert "error" not in mem and 0 < mem["used_bytes"] <= mem["total_bytes"]


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "int8"])
def test_digits_variant_runs_on_cuda_and_matches_cpu(digits, reference, precision):
    from workbench.precision import make_variant

    m, ds = digits
    v = make_variant(m, precision, calib=SAMPLES / "digits_calib.npz" if precision == "int8" else None, progress=False)
    eng = get_backend("onnxruntime-cuda").build(v, options=BuildOptions(progress=False))
    assert eng.providers[0] == "CUDAExecutionProvider"
    logits = np.concatenate([eng.run(b)["logits"] for b in ds.batches(32)])
    cos = M.cosine_similarity(reference, logits)
    top1 = M.top1_accuracy(logits, ds.labels["label"])
    ref_top1 = M.top1_accuracy(reference, ds.labels["label"])
    assert cos > (0.9999 if precision in ("fp32", "tf32") else 0.99)
    assert top1 >= ref_top1 - 0.01


def test_bf16_variant_runs_on_cuda(digits, reference):
    """ORT CUDA has no bf16 MaxPool kernel: build_variants keeps MaxPool in fp32 and rebuilds."""
    m, ds = digits
    r = wb.build_variants(m, ["bf16"], "onnxruntime-cuda", progress=False)["bf16"]
    assert r.ok, r.reason
    assert "MaxPool" in r.variant.recipe["keep_op_types"]
    assert "MaxPool" in r.reason and "in fp32" in r.reason  # e.g. "kept MaxPool, GlobalAveragePool in fp32: ..."
    logits = np.concatenate([r.engine.run(b)["logits"] for b in ds.batches(32)])
    assert M.cosine_similarity(reference, logits) > 0.99


def test_latency_uses_cuda_events_and_layers_cover_run(digits):
    from workbench.measure.latency import measure_latency
    from workbench.measure.layers import coverage, profile_layers

    m, ds = digits
    eng = get_backend("onnxruntime-cuda").build(Variant.of(m), options=BuildOptions(progress=False))
    feeds = next(ds.batches(32))
    lat = measure_latency(eng, feeds, warmup=5, iterations=50)
    assert lat.timer == "cuda-events"
    s = lat.stats
    assert 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
    layers = profile_layers(eng, feeds, iterations=5)
    assert layers["provider"].isin(["CUDA", "CUDAExecutionProvider"]).any()  # ORT's trace says "CUDA"
    convs = {n.name for n in m.graph.node if n.op_type == "Conv"}
    assert convs <= set(layers["onnx_node"])
    cov = coverage(layers, lat)
    assert cov.ratio > 0


def test_transformer_dynamic_shapes_on_cuda():
    m = wb.load(SAMPLES / "transformer_block.onnx")
    cpu = get_backend("onnxruntime").build(Variant.of(m), options=BuildOptions(progress=False))
    gpu = get_backend("onnxruntime-cuda").build(Variant.of(m), options=BuildOptions(progress=False))
    for shape in [(1, 16, 64), (8, 128, 64)]:
        feeds = synthetic_inputs(m, {"x": shape}, seed=1)
        a, b = cpu.run(feeds)["y"], gpu.run(feeds)["y"]
        assert b.shape == shape
        assert M.cosine_similarity(a, b) > 0.9999


def test_roofline_peaks_are_plausible():
    from workbench.measure.roofline import measure_peaks

    p = measure_peaks(0, n=4096, copy_bytes=1 << 30)
    assert p.copy_gbps > 100  # any datacenter GPU moves > 100 GB/s device-to-device
    assert p.matmul_tflops["float16"] > p.matmul_tflops["float32"] > 1
