"""GPU per-layer time from CUPTI (workbench.measure.cupti).

Two halves:

* CPU tests (always run): the attribution logic on records **recorded on a lent NVIDIA H200** with
  ``profile_layers_ort_cupti(record_to=...)`` (``tests/data/cupti_h200_*.json.gz``: raw CUPTI kernel/
  memcpy/memset/runtime/driver records, ORT's profiler trace and the clock markers of one profiled run).
  They check conservation (every device record lands in exactly one row), alignment, and mapping to the
  model's ONNX nodes, independently of a GPU.
* GPU tests (``pytest -m gpu``, skipped with the reason elsewhere): the live path on ORT's CUDA provider,
  including the coverage assertion Σ GPU layers / end-to-end within 0.85–1.15 on a GPU-bound model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.measure import cupti as C
from workbench.measure.native_log import capture_native_output, summarize

DATA = Path(__file__).resolve().parent / "data"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
RECORDINGS = sorted(DATA.glob("cupti_h200_*.json.gz"))


def _model_for(rec: dict):
    name = rec["variant"]
    import onnx

    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
    if name.startswith("digits_cnn"):
        return SAMPLES / "digits_cnn.onnx"
    if name.startswith("light_resnet50"):
        return light
    import os  # the real-model corpus cache (make realmodels), when present
    cache = Path(os.environ.get("WB_REALMODELS_CACHE", Path.home() / ".cache" / "trt-workbench" / "realmodels"))
    for stem in ("minilm_torchscript", "ppocr_det_v4"):
        if name.startswith(stem) and (cache / "models" / f"{stem}.onnx").is_file():
            return cache / "models" / f"{stem}.onnx"
    return None


# ---------------------------------------------------------------------------- CPU: recorded data
@pytest.mark.skipif(not RECORDINGS, reason="no recorded CUPTI data in tests/data")
@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name)
def test_recorded_attribution_conserves_every_device_record(path):
    rec = C.load_recording(path)
    att = C.attribute_recording(rec)
    # the chosen clock puts (nearly) every launch call inside an ORT model_run, and inside a node
    assert att["alignment"]["alignment"] > 0.95
    assert att["alignment"]["in_nodes_after"] >= att["alignment"]["in_nodes_before"]
    assert abs(att["alignment"]["refine_shift_ns"]) <= C.REFINE_MAX_NS
    # conservation: device records of the timed runs = node + copy + unattributed records
    dev = [r for r in rec["records"] if r["kind"] in C.DEVICE_KINDS]
    counted = (sum(n["records"] for n in att["nodes"].values()) + sum(c["records"] for c in att["copy"].values())
               + att["unattributed"]["records"])
    assert counted + att["counts"].get("before_timed_runs", 0) == len(dev)
    gpu_ns = (sum(n["gpu_ns"] for n in att["nodes"].values()) + sum(c["gpu_ns"] for c in att["copy"].values())
              + att["unattributed"]["gpu_ns"])
    assert gpu_ns <= sum(r["end"] - r["start"] for r in dev)
    assert att["runs"] == rec["iterations"]
    # most GPU time is attributed to nodes, not lost in "unattributed"
    assert att["unattributed"]["gpu_ns"] < 0.05 * gpu_ns
    tl = att["timeline"]
    assert 0 < tl["busy_ms"] <= tl["span_ms"] + 1e-9 and 0 <= tl["idle_share"] < 1


@pytest.mark.skipif(not RECORDINGS, reason="no recorded CUPTI data in tests/data")
@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name)
def test_recorded_rows_map_gpu_time_to_onnx_nodes(path):
    from workbench.measure.layers import _frame
    from workbench.measure.mapping import GraphIndex, name_nodes

    rec = C.load_recording(path)
    mpath = _model_for(rec)
    if mpath is None:
        pytest.skip(f"model of {rec['variant']} not in the repository")
    model = wb.load(mpath)
    if rec["variant"].startswith("light_resnet50"):  # recorded on the dynamic-batch edit of the suite
        import bench.gpu_suite as gs

        model = gs.dynamic_batch(model)
    proto = name_nodes(model.proto_with_data())
    ix = GraphIndex.of(proto)
    att = C.attribute_recording(rec)
    df = _frame(C.layer_rows(att, ix, {}), C.CUPTI_EXTRA)
    compute = {n.name for n in proto.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")}
    assert compute
    gpu_rows = df[df.time_basis == "cupti-gpu"]
    # every Conv/MatMul/Gemm of the model is covered by a row that got GPU time and kernel names from CUPTI
    busy = gpu_rows[gpu_rows.time_ms > 0]
    covered = {n for nodes in busy.onnx_nodes for n in nodes}
    # nodes ORT kept as kernels map by name; nodes it fused (attention, gelu...) need ORT's optimized graph,
    # which a recording does not hold: those are covered through the fused kernel's own node at least
    kept = compute & set(att["nodes"])
    assert kept <= covered, sorted(kept - covered)[:5]
    assert len(compute & covered) >= 0.6 * len(compute), sorted(compute - covered)[:5]
    conv_rows = busy[busy.layer_type.isin(["Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm"])]
    assert len(conv_rows) and (conv_rows.kernel_count >= 1).all() and conv_rows.kernels.str.len().gt(0).all()
    # Σ rows per iteration equals the attributed GPU time (nodes on the GPU + copies + unattributed)
    total_ns = (sum(n["gpu_ns"] for n in att["nodes"].values() if n["provider"] != "CPU")
                + sum(c["gpu_ns"] for c in att["copy"].values()) + att["unattributed"]["gpu_ns"])
    assert gpu_rows.time_ms.sum() == pytest.approx(total_ns / 1e6 / att["runs"], rel=1e-9)


def test_attribution_innermost_node_and_copy_rows():
    """Hand-made trace: a nested node (If containing a child) and work outside nodes."""
    events = [
        {"cat": "Session", "name": "model_run", "ts": 100, "dur": 100},
        {"cat": "Node", "name": "outer_kernel_time", "ts": 110, "dur": 50, "args": {"op_name": "If", "provider": "CUDAExecutionProvider"}},
        {"cat": "Node", "name": "inner_kernel_time", "ts": 120, "dur": 10, "args": {"op_name": "Relu", "provider": "CUDAExecutionProvider"}},
        {"cat": "Node", "name": "cpu_kernel_time", "ts": 170, "dur": 5, "args": {"op_name": "Shape", "provider": "CPUExecutionProvider"}},
    ]
    start, off = 1_000_000_000, 5_000
    markers = [{"cupti_ns": 1_000 + off, "time_ns": 1_000, "monotonic_ns": 10**15, "bracket_ns": 10}]

    def us(t):  # ORT µs -> CUPTI ns
        return start + int(t * 1000) + off

    recs = []
    for cid, (launch, kind) in enumerate([(125, "kernel"), (140, "kernel"), (190, "memcpy"), (195, "kernel")], 1):
        recs.append({"kind": "runtime", "cbid": 1, "start": us(launch), "end": us(launch) + 100, "correlation_id": cid, "thread_id": 1})
        rec = {"kind": kind, "start": us(launch) + 2000, "end": us(launch) + 5000, "correlation_id": cid, "stream_id": 1}
        rec.update({"name": f"k{cid}"} if kind == "kernel" else {"copy_kind": "DtoH", "bytes": 4})
        recs.append(rec)
    att = C.attribute(recs, events, ort_start_ns=start, markers=markers)
    assert att["alignment"]["clock"] == "time_ns" and att["alignment"]["refine_shift_ns"] == 0
    assert att["nodes"]["inner"]["records"] == 1 and att["nodes"]["inner"]["kernels"] == {"k1": 1}
    assert att["nodes"]["outer"]["records"] == 1 and att["nodes"]["outer"]["gpu_ns"] == 3000
    assert att["copy"]["memcpy DtoH"]["records"] == 1
    assert att["unattributed"]["records"] == 1
    stats, extra = C.attribution_stats(att)
    assert stats["cpu"]["time_basis"] == "host" and stats["inner"]["time_basis"] == "cupti-gpu"
    assert {e["onnx_node"] for e in extra} == {C.COPY_ONNX_NODE, C.UNATTRIBUTED_ONNX_NODE}


def test_clock_refinement_recovers_a_marker_error():
    """A marker 4 µs off: the refinement finds the shift that puts launches back inside their nodes."""
    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 1000}]
    events += [{"cat": "Node", "name": f"n{i}_kernel_time", "ts": 10 + 20 * i, "dur": 3,
                "args": {"op_name": "Add", "provider": "CUDAExecutionProvider"}} for i in range(40)]
    start = 10**12
    launches = np.array([start + (10 + 20 * i) * 1000 + 1500 for i in range(40)], dtype=np.int64)
    shift, before, after = C.refine_offset(events, start, 4000, launches)
    assert before == 0.0 and after == 1.0
    assert -5500 <= shift <= -2500  # within the node's 3 µs window around the true -4000


def test_cupti_path_is_skipped_cleanly_without_gpu():
    reason = C.cupti_unavailable()
    if reason is None:
        pytest.skip("CUPTI and a GPU are available here")
    assert "cupti" in reason.lower() or "gpu" in reason.lower()
    with pytest.raises(wb.WorkbenchError, match="CUPTI"):
        C.ActivityTrace()


def test_coverage_flags_both_sides_with_reasons():
    import pandas as pd

    from workbench.measure.latency import LatencyResult, latency_stats
    from workbench.measure.layers import coverage

    lat = LatencyResult(variant="v", backend="b", precision="fp32", batch=1, device={}, timer="cuda-events",
                        warmup=1, requested_iterations=3, time_budget_s=None, times_ms=[1.0, 1.0, 1.0],
                        stats=latency_stats([1.0, 1.0, 1.0]))
    df = pd.DataFrame({"time_ms": [0.5]})
    df.attrs.update(time_basis="cupti-gpu", gpu={"busy_ms": 0.5, "span_ms": 0.9, "idle_share": 0.44})
    c = coverage(df, lat)
    assert c.flagged and "idle 44%" in c.reason and c.basis == "cupti-gpu"
    df2 = pd.DataFrame({"time_ms": [3.0]})
    df2.attrs.update(time_basis="host-launch")
    c2 = coverage(df2, lat)
    assert c2.flagged and "host-side timing" in c2.reason
    df3 = pd.DataFrame({"time_ms": [1.02]})
    df3.attrs.update(time_basis="cupti-gpu", gpu={"busy_ms": 1.0, "span_ms": 1.0, "idle_share": 0.0})
    c3 = coverage(df3, lat)
    assert not c3.flagged and c3.reason == "" and c3.to_json()["upper"] == 1.1


def test_native_log_capture_and_summary():
    import os

    with capture_native_output() as log:
        for _ in range(3):
            os.write(2, b"2026-11-29 10:00:00.123 [W:onnxruntime:, conv.cc:123 X] [cudnn_frontend] Error: "
                        b"No execution plans support the graph.\n")
        os.write(1, b"something else 42\n")
    items = log.summary()
    assert items[0]["count"] == 3 and items[0]["fallback"] is True and "cuDNN" in items[0]["meaning"]
    assert any(i["message"] == "something else N" and i["meaning"] == "" for i in items)
    assert summarize("") == []


# ------------------------------------------------------------------------------------- GPU: live
def _gpu_reason() -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime-gpu (CUDA execution provider) not installed"
    return C.cupti_unavailable()




def _resnet_b32():
    import bench.gpu_suite as gs
    from workbench.data import synthetic_inputs

    m = gs.dynamic_batch(wb.load(gs.MODELS["resnet50"]))
    return m, synthetic_inputs(m, seed=0, batch=32)


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_gpu_layers_sum_to_latency_on_gpu_bound_model(precision, tmp_path):
    """The issue's bar: Σ GPU per-layer time / end-to-end latency within 0.85–1.15 (ResNet-50, batch 32)."""
    from workbench.backends import BuildOptions, get_backend
    from workbench.measure.latency import measure_latency
    from workbench.measure.layers import coverage, profile_layers
    from workbench.precision import make_variant

    m, feeds = _resnet_b32()
    v = make_variant(m, precision, progress=False)
    eng = get_backend("onnxruntime-cuda").build(v, options=BuildOptions(progress=False))
    try:
        lat = measure_latency(eng, feeds, warmup=10, iterations=50)
        df = profile_layers(eng, feeds, iterations=10, timing="gpu")
    finally:
        eng.close()
    assert df.attrs["source"] == "cupti" and set(df.time_basis) <= {"cupti-gpu", "host"}
    cov = coverage(df, lat)
    assert 0.85 <= cov.ratio <= 1.15, cov.to_json()
    assert df.attrs["alignment"]["alignment"] > 0.95
    convs = df[df.layer_type.isin(["Conv", "FusedConv"])]
    assert len(convs) and (convs.time_ms > 0).all() and convs.kernels.str.len().gt(0).all()


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))
def test_gpu_launch_bound_model_is_flagged_with_idle_reason():
    from workbench.backends import BuildOptions, get_backend
    from workbench.data import NpzDataset
    from workbench.measure.latency import measure_latency
    from workbench.measure.layers import coverage, profile_layers
    from workbench.variant import Variant

    m = wb.load(SAMPLES / "digits_cnn.onnx")
    feeds = next(NpzDataset(SAMPLES / "digits_test.npz", m, label_keys=["label"]).batches(1))
    eng = get_backend("onnxruntime-cuda").build(Variant.of(m), options=BuildOptions(progress=False))
    try:
        lat = measure_latency(eng, feeds, warmup=10, iterations=50)
        df = profile_layers(eng, feeds, iterations=10, timing="gpu")
    finally:
        eng.close()
    cov = coverage(df, lat)
    # a 0.1 ms model: kernels are a few µs each, the GPU waits for the host between them
    assert cov.ratio < 0.9 and cov.flagged and "idle" in cov.reason
    assert df.attrs["gpu"]["idle_share"] > 0.1


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))
def test_gpu_recording_roundtrip(tmp_path):
    from workbench.backends import BuildOptions, get_backend
    from workbench.precision import make_variant

    m, feeds = _resnet_b32()
    eng = get_backend("onnxruntime-cuda").build(make_variant(m, "fp16", progress=False), options=BuildOptions(progress=False))
    try:
        df = C.profile_layers_ort_cupti(eng, feeds, iterations=5, warmup=2, record_to=tmp_path / "r.json.gz")
    finally:
        eng.close()
    rec = C.load_recording(tmp_path / "r.json.gz")
    att = C.attribute_recording(rec)
    gpu_rows = df[df.time_basis == "cupti-gpu"]
    total = (sum(n["gpu_ns"] for n in att["nodes"].values() if n["provider"] != "CPU")
             + sum(c["gpu_ns"] for c in att["copy"].values()) + att["unattributed"]["gpu_ns"]) / 1e6 / att["runs"]
    assert gpu_rows.time_ms.sum() == pytest.approx(total)
    json.dumps(df.attrs["native_log"])  # plain data


def test_timing_choice_on_a_cpu_engine():
    """timing="gpu" refuses a CPU session with the reason; "host"/"auto" give the host basis; bad values are
    usage errors."""
    from workbench.backends import BuildOptions, get_backend
    from workbench.data import synthetic_inputs
    from workbench.measure.layers import profile_layers
    from workbench.variant import Variant

    m = wb.load(SAMPLES / "digits_cnn.onnx")
    eng = get_backend("onnxruntime").build(Variant.of(m), options=BuildOptions(progress=False))
    feeds = synthetic_inputs(m, batch=2)
    with pytest.raises(wb.WorkbenchError, match="CUDA provider"):
        profile_layers(eng, feeds, iterations=2, timing="gpu")
    with pytest.raises(wb.WorkbenchError, match="timing must be"):
        profile_layers(eng, feeds, iterations=2, timing="device")
    df = profile_layers(eng, feeds, iterations=2, timing="auto")
    assert df.attrs["time_basis"] == "host" and set(df.time_basis) == {"host"}


def test_per_layer_plots_name_the_gpu_time_basis():
    """Per-layer plots built from a CUPTI table (recorded on the H200) say the bars are GPU time."""
    import pandas as pd

    from workbench import plots

    rec = C.load_recording(DATA / "cupti_h200_digits_cnn_fp32_b32.json.gz")
    att = C.attribute_recording(rec)
    stats, _ = C.attribution_stats(att)
    df = pd.DataFrame([{"variant": rec["variant"], "backend": "onnxruntime-cuda", "precision": "fp32", "layer": k,
                        "layer_type": v["op"], "onnx_node": k, "time_ms": v["dur_us"] / 1000 / att["runs"],
                        "time_basis": v["time_basis"], "kernels": v["kernels"]} for k, v in stats.items()])
    fig = plots.layer_figure(df)
    assert fig.layout.yaxis.title.text.startswith("GPU time per run (ms, CUPTI)")
    # the hover of the slowest node names the GPU kernels that ran for it (drill-down)
    top = df.sort_values("time_ms").iloc[-1]
    bar = fig.data[0]
    hover = dict(zip(bar.x, bar.customdata))[top.onnx_node][1]
    assert "kernels:" in hover and top.kernels.split(" ×")[0][:40] in hover
    assert plots.time_basis_label(df.assign(time_basis="host-launch")).startswith("host launch time")
